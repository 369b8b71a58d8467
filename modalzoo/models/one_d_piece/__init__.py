"""One-D-Piece (turingmotors/One-D-Piece): TiTok with variable-length token prefixes,
https://arxiv.org/abs/2501.10064."""

from ...registry import register_family, register_variant
from ..titok import TINY as _TITOK_TINY
from ..titok import vit_size_kwargs
from ..titok.configuration_titok import MASKGIT_VQGAN_DECODER
from .configuration_one_d_piece import OneDPieceConfig
from .modeling_one_d_piece import OneDPieceTokenizer
from .processing_one_d_piece import OneDPieceImageProcessor

register_family(
    "one_d_piece", config_class=OneDPieceConfig, model_class=OneDPieceTokenizer, processor_class=OneDPieceImageProcessor
)

_COMMON = {"num_latent_tokens": 256, "codebook_size": 4096, "token_size": 12, "use_l2_norm": True, **MASKGIT_VQGAN_DECODER}
for _name, _size in (("one-d-piece-s256", "small"), ("one-d-piece-b256", "base"), ("one-d-piece-l256", "large")):
    register_variant(
        _name,
        "one_d_piece",
        f"One-D-Piece-{_size[0].upper()}-256: any 1-256 of 256 tokens, 4096 codes, MaskGIT-VQGAN pixel decoder",
        **vit_size_kwargs(_size, _size),
        **_COMMON,
    )
register_variant(
    "one-d-piece-tiny",
    "one_d_piece",
    "tiny One-D-Piece for tests: 32 px, any 1-16 of 16 tokens, 64 codes",
    **{**_TITOK_TINY, "num_latent_tokens": 16},
)

__all__ = ["OneDPieceConfig", "OneDPieceImageProcessor", "OneDPieceTokenizer"]
