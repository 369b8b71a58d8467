"""Shared fixtures: real data that ships offline (scikit-image photographs, espeak-ng speech)."""

from __future__ import annotations

import os

# Tests never reach the real Hub: set before huggingface_hub reads its constants. Hub tests
# point HF_ENDPOINT at the local server they start and lift this for their own subprocesses.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The whole suite runs on one intra-op thread: the tiny models gain nothing from more, idle
    threads' spinning costs CPU on a busy 2-core machine, and CPU kernels sum in a
    thread-count-dependent order, so every test sees the same numerics whatever ran before it.
    Subprocesses that must match in-process results get OMP_NUM_THREADS=1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def photographs() -> list[np.ndarray]:
    """Real photographs of different sizes: astronaut 512x512, coffee 400x600, camera 512x512 (gray)."""
    skimage_data = pytest.importorskip("skimage.data")
    return [skimage_data.astronaut(), skimage_data.coffee(), skimage_data.camera()]


def synthesize_speech(path: Path, text: str) -> tuple[np.ndarray, int]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (.ci/run installs it with apt-get)")
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    samples, rate = soundfile.read(path, dtype="float32")
    return samples, rate


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> tuple[list[np.ndarray], int]:
    """Two real synthesized utterances of different lengths at espeak-ng's 22.05 kHz."""
    folder = tmp_path_factory.mktemp("speech")
    first, rate = synthesize_speech(folder / "a.wav", "The quick brown fox jumps over the lazy dog.")
    second, _ = synthesize_speech(folder / "b.wav", "Tokenizers turn sound into codes.")
    return [first, second], rate


@pytest.fixture(scope="session")
def speech_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("speech_file") / "hello.wav"
    synthesize_speech(path, "Hello from the model zoo.")
    return path
