"""One-D-Piece image processor: TiTok's (256 px bicubic resize + centre crop, [0, 1])."""

from __future__ import annotations

from ..titok.processing_titok import TiTokImageProcessor


class OneDPieceImageProcessor(TiTokImageProcessor):
    """Same transform as TiTok's; a class of its own so that AutoImageProcessor maps the
    one_d_piece model type to it."""
