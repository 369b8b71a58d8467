"""MultimodalTokenizer through the Hub: push_to_hub -> AutoTokenizer.from_pretrained (fake Hub)."""

from __future__ import annotations

from conftest import client_env, run_client


def test_bridge_round_trips_through_the_hub(fake_hub, tmp_path):
    report = run_client("bridge.py", tmp_path / "bridge.json", client_env(fake_hub, tmp_path / "home"), tmp_path)
    built, pulled, cached = report["built"], report["pulled"], report["cached"]
    assert {"tokenizer.json", "tokenizer_config.json", "image_tokenizer/model.safetensors",
            "image_tokenizer/preprocessor_config.json", "audio_tokenizer/config.json"} <= set(report["files"])
    assert pulled["class"] == cached["class"] == "MultimodalTokenizer"
    assert not built["errors"]
    assert built["shapes"] == [{"grid": [8, 8], "num_codebooks": 1}, {"num_frames": 125, "seconds": 0.5, "num_codebooks": 2}]
    for copy in (pulled, cached):
        # same ids for the same inputs, same readable text, and the embedded modality tokenizers
        # (loaded lazily from the repo's subfolders) decode to the same image and audio
        assert copy == built
