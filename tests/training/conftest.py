"""Real data folders for the trainer's tests: scikit-image photographs as an imagefolder and
espeak-ng speech as an audiofolder."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

PHOTOGRAPHS = ("astronaut", "coffee", "camera", "chelsea", "rocket", "immunohistochemistry", "coins", "colorwheel")
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Tokenizers turn sound into codes.",
    "A codec learns to rebuild the waveform.",
    "Seven silver swans swam silently seaward.",
    "Please call Stella and ask her to bring these things.",
    "The rainbow is a division of white light into many beautiful colors.",
    "She sells sea shells by the sea shore.",
    "Training needs data, patience and a learning rate.",
)


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """Eight real photographs (colour and grey, different aspect ratios), shorter side 64 px."""
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path_factory.mktemp("photos") / "train"
    folder.mkdir()
    for name in PHOTOGRAPHS:
        image = Image.fromarray(np.asarray(getattr(skimage_data, name)())).convert("RGB")
        scale = 64 / min(image.size)
        image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC).save(folder / f"{name}.png")
    return folder.parent


@pytest.fixture(scope="session")
def speech_folder(tmp_path_factory):
    """Eight espeak-ng utterances (22.05 kHz WAV) of different lengths."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it with apt-get)")
    folder = tmp_path_factory.mktemp("speech_folder")
    for index, sentence in enumerate(SENTENCES):
        subprocess.run(["espeak-ng", "-w", str(folder / f"{index}.wav"), sentence], check=True, capture_output=True)
    return folder
