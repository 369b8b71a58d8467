"""FlexTok (apple/ml-flextok): images as ordered 1D sequences of 1-256 tokens with a
rectified-flow decoder, https://arxiv.org/abs/2502.13967.

The released weights (EPFL-VILAB/flextok_*) are under the Apple Machine Learning Research Model
License: research use only. `modalzoo convert flextok` writes that notice into every converted
folder; converted weights must not be re-published under another licence.
"""

from ...registry import register_family, register_variant
from .configuration_flextok import FlexTokConfig
from .modeling_flextok import FlexTokTokenizer
from .processing_flextok import FlexTokImageProcessor

register_family("flextok", config_class=FlexTokConfig, model_class=FlexTokTokenizer, processor_class=FlexTokImageProcessor)

# Width = 64 x depth (head_dim 64); every release uses the 16-channel f8 VAE and 256 registers.
for _name, _encoder, _decoder, _description in (
    ("flextok-d12-d12-in1k", 12, 12, "FlexTok d12-d12 (ImageNet-1k): 1-256 tokens, 64,000 FSQ codes, rectified-flow decoder"),
    ("flextok-d18-d18-in1k", 18, 18, "FlexTok d18-d18 (ImageNet-1k): 1-256 tokens, 64,000 FSQ codes, rectified-flow decoder"),
    ("flextok-d18-d28-in1k", 18, 28, "FlexTok d18-d28 (ImageNet-1k): 1-256 tokens, 64,000 FSQ codes, rectified-flow decoder"),
    ("flextok-d18-d28-dfn", 18, 28, "FlexTok d18-d28 (DFN web images): 1-256 tokens, 64,000 FSQ codes, rectified-flow decoder"),
):
    register_variant(
        _name,
        "flextok",
        _description,
        encoder_hidden_size=64 * _encoder,
        encoder_num_layers=_encoder,
        decoder_hidden_size=64 * _decoder,
        decoder_num_layers=_decoder,
    )

# The layout of the recorded parity fixture (tests/fixtures/flextok/tiny): 32 px, an f4 4-channel
# VAE, 8 registers (~220k parameters with the VAE).
TINY = {
    "image_size": 32,
    "vae_latent_channels": 4,
    "vae_block_out_channels": (8, 16, 16),
    "vae_layers_per_block": 1,
    "vae_norm_num_groups": 4,
    "vae_scaling_factor": 0.8,
    "patch_size": 2,
    "num_registers": 8,
    "encoder_hidden_size": 32,
    "encoder_num_layers": 2,
    "decoder_hidden_size": 48,
    "decoder_num_layers": 2,
    "head_dim": 8,
}
register_variant("flextok-tiny", "flextok", "tiny FlexTok for tests: 32 px, 1-8 tokens, 64,000 FSQ codes", **TINY)

__all__ = ["FlexTokConfig", "FlexTokImageProcessor", "FlexTokTokenizer"]
