"""X-Codec conversion, proven against data recorded from the original code (zhenye234/xcodec) and
from transformers' conversion script (see tests/fixtures/xcodec/README.md): every released
layout's keys map to transformers' keys with the model's shapes, and a tiny original state dict
converts to a model with the original's exact codes and audio."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from transformers import XcodecModel

from modalzoo import cli, create_config
from modalzoo.conversion import xcodec as converter
from modalzoo.models.xcodec import XcodecTokenizer, XcodecTokenizerConfig

FIXTURES = Path(__file__).parents[1] / "fixtures" / "xcodec"
LAYOUTS = {
    "hubert_base": "xcodec-hubert-librispeech",
    "wavlm_base_plus": "xcodec-wavlm-mls",
    "hubert_base_general": "xcodec-hubert-general",
}


def _tiny_config() -> XcodecTokenizerConfig:
    """The tiny original's config: its yaml, plus the three widths SoundStream hard-codes and the
    tiny teacher it was built with (fixture README)."""
    config = converter.convert_config(yaml.safe_load((FIXTURES / "tiny" / "config_tiny.yaml").read_text()))
    data = {k: v for k, v in config.to_dict().items() if k not in ("model_type", "transformers_version", "codebook_dim")}
    data["acoustic_model_config"].update(encoder_hidden_size=4, decoder_hidden_size=32)
    data["semantic_model_config"] = json.loads((FIXTURES / "tiny" / "teacher_config.json").read_text())
    return XcodecTokenizerConfig(**data)


def _original_tiny() -> dict[str, torch.Tensor]:
    return torch.load(FIXTURES / "tiny" / "xcodec_tiny.pth", weights_only=True)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_released_layouts_map_like_transformers(layout):
    recorded = json.loads((FIXTURES / "keys" / f"{layout}.json").read_text())
    config = converter.convert_config(recorded["generator_config"])
    assert config.to_dict()["semantic_model_config"] == create_config(LAYOUTS[layout]).to_dict()["semantic_model_config"]
    for key, entry in recorded["state_dict"].items():
        mapped = converter.map_key(key)
        assert mapped.removesuffix("_g").removesuffix("_v") == entry["transformers_key"] or mapped == entry["transformers_key"], key
    # the whole original state dict (as meta tensors) converts: every model key filled, shapes checked
    original = {k: torch.empty(e["shape"], device="meta") for k, e in recorded["state_dict"].items()}
    assert converter.infer_config(original).to_dict()["semantic_model_config"]["model_type"] == config.semantic_model_config.model_type
    converted = converter.convert_state_dict(original, config)
    assert set(converted) == {e["transformers_key"] for e in recorded["state_dict"].values()}


def test_tiny_original_parity():
    config = _tiny_config()
    model = XcodecTokenizer(config).eval()
    model.load_state_dict(converter.convert_state_dict(_original_tiny(), config))
    audio = torch.from_numpy(np.load(FIXTURES / "tiny" / "input.npy"))
    embeddings, teacher = model._fused_embeddings(audio, None)
    torch.testing.assert_close(teacher, torch.from_numpy(np.load(FIXTURES / "tiny" / "teacher_features.npy")), atol=1e-5, rtol=0)
    torch.testing.assert_close(embeddings, torch.from_numpy(np.load(FIXTURES / "tiny" / "embeddings.npy")), atol=1e-5, rtol=0)
    for bandwidth in config.target_bandwidths:
        tag = f"{bandwidth:g}"  # the original yaml's spelling: 0.5, 1, 1.5
        expected_codes = torch.from_numpy(np.load(FIXTURES / "tiny" / f"codes_bw{tag}.npy")).transpose(0, 1)
        codes = model.encode(audio, bandwidth=bandwidth).codes
        assert torch.equal(codes, expected_codes)
        expected_audio = torch.from_numpy(np.load(FIXTURES / "tiny" / f"audio_bw{tag}.npy"))
        torch.testing.assert_close(model.decode(codes).values, expected_audio, atol=1e-5, rtol=0)
        with torch.no_grad():
            semantic = model(audio, bandwidth=bandwidth).losses["semantic"]
        assert float(semantic) == pytest.approx(float(np.load(FIXTURES / "tiny" / f"semantic_loss_bw{tag}.npy")), rel=1e-5)


def test_convert_checkpoint_and_cli(tmp_path, capsys):
    """The original trainer's checkpoint layout, with a stray BytesIO as the releases have, through
    `modalzoo convert xcodec`; the folder loads as XcodecTokenizer and as transformers' XcodecModel."""
    state = dict(_original_tiny())
    state["extra_state"] = io.BytesIO(b"not a tensor")
    torch.save({"codec_model": state, "optimizer_g": {"state": {}}, "mfd": {"w": torch.zeros(1)}, "steps": 3}, tmp_path / "ckpt.pth")
    config_path = tmp_path / "config.json"
    config_path.write_text(_tiny_config().to_json_string())

    status = cli.main(["convert", "xcodec", "--checkpoint", str(tmp_path / "ckpt.pth"), "--config", str(config_path), "--output", str(tmp_path / "out")])
    assert status == 0
    printed = capsys.readouterr().out
    assert f"keys mapped: {len(_original_tiny())}" in printed and "dropped extra_state" in printed and "dropped mfd" in printed

    audio = torch.from_numpy(np.load(FIXTURES / "tiny" / "input.npy"))
    expected = torch.from_numpy(np.load(FIXTURES / "tiny" / "codes_bw1.5.npy")).transpose(0, 1)
    ours = XcodecTokenizer.from_pretrained(tmp_path / "out")
    assert torch.equal(ours.encode(audio).codes, expected)
    plain = XcodecModel.from_pretrained(tmp_path / "out").eval()
    assert torch.equal(plain.encode(audio).audio_codes, expected)
    assert (tmp_path / "out" / "preprocessor_config.json").exists()


def test_conversion_errors(tmp_path):
    config = _tiny_config()
    state = _original_tiny()
    with pytest.raises(ValueError, match="not mapped"):
        converter.convert_state_dict({**state, "mystery.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="missing from the checkpoint"):
        converter.convert_state_dict({k: v for k, v in state.items() if not k.startswith("fc_post1")}, config)
    with pytest.raises(ValueError, match="does not fit"):
        converter.convert_state_dict(state, create_config("xcodec-tiny"))
    with pytest.raises(ValueError, match="semantic_techer"):
        converter.convert_config({"generator": {"config": {"semantic_techer": "whisper"}}})
    with pytest.raises(ValueError, match="10-bit"):
        converter.convert_config({"D": 8, "bins": 256, "target_bandwidths": [0.4, 1.6], "semantic_techer": "hubert_base"})
    # the released yaml values give the registered variant's config
    released = converter.convert_config(
        {"generator": {"config": {"n_filters": 32, "D": 256, "target_bandwidths": [0.5, 1, 1.5, 2, 4], "ratios": [8, 5, 4, 2],
                                  "sample_rate": 16000, "bins": 1024, "semantic_techer": "wavlm_base_plus"}}}
    )
    expected = create_config("xcodec-wavlm-mls").to_dict()
    assert {k: v for k, v in released.to_dict().items() if k != "variant"} == {k: v for k, v in expected.items() if k != "variant"}
