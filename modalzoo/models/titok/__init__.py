"""TiTok (bytedance/1d-tokenizer): 1D image tokenization, https://arxiv.org/abs/2406.07550."""

from ...registry import register_family, register_variant
from .configuration_titok import MASKGIT_VQGAN_DECODER, VIT_SIZES, TiTokConfig, vit_size_kwargs
from .modeling_titok import TiTokTokenizer
from .processing_titok import TiTokImageProcessor

register_family("titok", config_class=TiTokConfig, model_class=TiTokTokenizer, processor_class=TiTokImageProcessor)

_LEGACY = {"is_legacy": True, "codebook_size": 4096, "token_size": 12, "use_l2_norm": True, **MASKGIT_VQGAN_DECODER}
_VQ8K = {"is_legacy": False, "codebook_size": 8192, "token_size": 64, "use_l2_norm": False}
_VAE = {"is_legacy": False, "quantize_mode": "vae", "token_size": 16}

for _name, _encoder, _decoder, _tokens, _kind, _description in (
    ("titok-l32", "large", "large", 32, _LEGACY, "TiTok-L-32: 32 tokens, 4096 codes, MaskGIT-VQGAN pixel decoder"),
    ("titok-b64", "base", "base", 64, _LEGACY, "TiTok-B-64: 64 tokens, 4096 codes, MaskGIT-VQGAN pixel decoder"),
    ("titok-s128", "small", "small", 128, _LEGACY, "TiTok-S-128: 128 tokens, 4096 codes, MaskGIT-VQGAN pixel decoder"),
    ("titok-bl64-vq8k", "base", "large", 64, _VQ8K, "TiTok-BL-64 VQ: 64 tokens, 8192 codes, direct RGB decoder"),
    ("titok-bl128-vq8k", "base", "large", 128, _VQ8K, "TiTok-BL-128 VQ: 128 tokens, 8192 codes, direct RGB decoder"),
    ("titok-sl256-vq8k", "small", "large", 256, _VQ8K, "TiTok-SL-256 VQ: 256 tokens, 8192 codes, direct RGB decoder"),
    ("titok-ll32-vae-c16", "large", "large", 32, _VAE, "TiTok-LL-32 VAE: 32 continuous 16-channel tokens (no codes)"),
    ("titok-bl64-vae-c16", "base", "large", 64, _VAE, "TiTok-BL-64 VAE: 64 continuous 16-channel tokens (no codes)"),
    ("titok-bl128-vae-c16", "base", "large", 128, _VAE, "TiTok-BL-128 VAE: 128 continuous 16-channel tokens (no codes)"),
):
    register_variant(
        _name, "titok", _description, num_latent_tokens=_tokens, **vit_size_kwargs(_encoder, _decoder), **_kind
    )

# A legacy-layout TiTok small enough for tests and CPU smoke runs (~60k parameters).
TINY = {
    "image_size": 32,
    "encoder_patch_size": 8,
    "decoder_patch_size": 8,
    "encoder_hidden_size": 32,
    "encoder_num_layers": 2,
    "encoder_num_heads": 4,
    "decoder_hidden_size": 32,
    "decoder_num_layers": 2,
    "decoder_num_heads": 4,
    "num_latent_tokens": 8,
    "token_size": 8,
    "codebook_size": 64,
    "use_l2_norm": True,
    "is_legacy": True,
    "pixel_codebook_size": 64,
    "pixel_embedding_dim": 16,
    "pixel_decoder_channels": 8,
    "pixel_decoder_channel_mult": (2, 1, 1, 1),
    "pixel_decoder_num_res_blocks": 1,
    "pixel_decoder_norm_groups": 4,
}
register_variant("titok-tiny", "titok", "tiny legacy TiTok for tests: 32 px, 8 tokens, 64 codes", **TINY)

__all__ = ["VIT_SIZES", "TiTokConfig", "TiTokImageProcessor", "TiTokTokenizer", "vit_size_kwargs"]
