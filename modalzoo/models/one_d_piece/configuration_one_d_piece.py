"""One-D-Piece configuration: TiTok's legacy layout with 256 tokens whose every prefix decodes.

One-D-Piece (turingmotors/One-D-Piece) keeps TiTok's architecture and weights layout unchanged
(legacy encoder reshape, 4096 l2-normalised codes of 12 channels, MaskGIT-VQGAN pixel decoder)
and trains it with Tail Token Drop so that the first k of its 256 tokens, for any k, decode to
an image.
"""

from __future__ import annotations

from ..titok.configuration_titok import TiTokConfig


class OneDPieceConfig(TiTokConfig):
    """`TiTokConfig` with One-D-Piece-S-256's defaults; always the legacy layout."""

    model_type = "one_d_piece"

    encoder_hidden_size: int = 512
    encoder_num_layers: int = 8
    encoder_num_heads: int = 8
    decoder_hidden_size: int = 512
    decoder_num_layers: int = 8
    decoder_num_heads: int = 8
    num_latent_tokens: int = 256

    def _validate(self) -> None:
        if not self.is_legacy or self.quantize_mode != "vq":
            raise ValueError("One-D-Piece models use TiTok's legacy VQ layout (is_legacy=True, quantize_mode='vq')")
        super()._validate()
