"""Fixtures for the LLM bridge tests."""

from __future__ import annotations

import pytest
import torch
from bridge_helpers import train_bpe


@pytest.fixture(scope="session")
def bpe_tokenizer():
    return train_bpe()


@pytest.fixture(scope="session")
def bridge(bpe_tokenizer):
    """BPE text + reference-image-tiny (8x8 grid, 64 codes) + reference-audio-tiny (2 x 32 codes)."""
    from modalzoo.bridge import MultimodalTokenizer

    torch.manual_seed(0)
    return MultimodalTokenizer.from_tokenizers(bpe_tokenizer, {"image": "reference-image-tiny", "audio": "reference-audio-tiny"})
