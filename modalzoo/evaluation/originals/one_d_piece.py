"""`modalzoo bench --compare-original PATH` for One-D-Piece: see `titok.py`."""

from __future__ import annotations

from pathlib import Path

from . import OriginalImplementation
from .titok import build_original, wrap


def load_original(checkout: Path, model) -> OriginalImplementation:
    return wrap(build_original(checkout, model, "modeling.one_d_piece", "OneDPiece"))
