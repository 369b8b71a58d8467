"""`modalzoo demo` end to end on the shipped defaults (offline), and what it rests on: the shipped
folders load through the Auto classes, and the demo's samples were held out of their training."""

from __future__ import annotations

import json
import math
import runpy
from pathlib import Path

import pytest
import soundfile

from modalzoo.cli import main
from modalzoo.demo import AUDIO_MODEL, CLIP, IMAGE_MODEL, PHOTO, SAMPLES, load_pretrained

# Measured from the shipped models on the bundled samples (CPU, this machine): PSNR 15.60 dB
# (for scale: the photo's flat mean colour scores 18.36 dB, so titok_demo is still weak) and
# STOI 0.635. The floors leave room for BLAS differences across machines, not for a worse model.
PSNR_FLOOR, STOI_FLOOR = 14.5, 0.58
SCRIPT = Path(__file__).parents[1] / "training" / "scripts" / "train_demo_models.py"


def test_demo_end_to_end(tmp_path, capsys):
    assert main(["demo", "--output", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["image_tokens"] == 32 and len(summary["image_codes"]) == 32
    assert all(0 <= code < 256 for code in summary["image_codes"] + summary["audio_codes"])
    assert summary["audio_tokens"] == math.ceil(summary["audio_seconds"] * 75)
    assert summary["psnr"] > PSNR_FLOOR, summary["psnr"]
    assert summary["stoi"] > STOI_FLOOR, summary["stoi"]
    assert f"PSNR {summary['psnr']:.2f} dB" in printed and f"STOI {summary['stoi']:.3f}" in printed
    assert " ".join(str(c) for c in summary["image_codes"][:24]) in printed
    for name in ("photo.png", "photo_reconstruction.png", "speech.wav", "speech_reconstruction.wav", "demo.png", "codes.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    reconstruction, rate = soundfile.read(tmp_path / "speech_reconstruction.wav")
    assert rate == 24000 and abs(len(reconstruction) / rate - summary["audio_seconds"]) < 1e-6
    codes = json.loads((tmp_path / "codes.json").read_text())
    assert codes == {"image": summary["image_codes"], "audio": summary["audio_codes"]}


def test_shipped_models_load_with_the_auto_classes():
    from transformers import AutoModel

    import modalzoo.pretrained as pretrained

    for name, family in ((IMAGE_MODEL, "titok"), (AUDIO_MODEL, "wavtokenizer")):
        folder = pretrained.path(name)
        model = AutoModel.from_pretrained(folder)
        assert model.config.model_type == family
        assert sum(p.stat().st_size for p in folder.iterdir()) < 8 * 2**20  # a few MB each
        assert "## Training" in (folder / "README.md").read_text()
    with pytest.raises(FileNotFoundError, match="titok_demo"):
        pretrained.path("no-such-model")
    with pytest.raises(FileNotFoundError, match="available"):
        load_pretrained("no-such-model")


def test_demo_samples_were_held_out_of_training():
    script = runpy.run_path(str(SCRIPT))
    assert Path(PHOTO).stem in script["HELD_OUT_PHOTOS"] and Path(PHOTO).stem not in script["TRAIN_PHOTOS"]
    assert script["DEMO_SENTENCE"] in script["HELD_OUT_SENTENCES"] and script["DEMO_SENTENCE"] not in script["SENTENCES"]
    audio, rate = soundfile.read(SAMPLES / CLIP)
    assert rate == 22050 and 2.0 < len(audio) / rate < 6.0
