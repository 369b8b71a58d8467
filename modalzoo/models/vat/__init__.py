"""VAT ("3D representation in 512-Byte: Variational tokenizer is the key for autoregressive 3D
generation", https://arxiv.org/abs/2412.02202): a clean-room implementation (no code or
weights were released). `vat-small` is trained here (`training/recipes/vat_small.yaml`) and
ships in `modalzoo/pretrained/vat_small`."""

from ...registry import register_family, register_variant
from .configuration_vat import VATConfig
from .modeling_vat import VATTokenizer
from .processing_vat import VATProcessor, occupancy_grid_to_mesh
from .quantization_vat import MultiScaleResidualQuantizer

register_family("vat", config_class=VATConfig, model_class=VATTokenizer, processor_class=VATProcessor)

register_variant(
    "vat-base",
    "vat",
    "paper-scale layout (sizes not public): 256 latents in 11 scales = 583 codes of 8192, 3x256^2 triplane",
)

# The configuration trained on CPU in this repository (modalzoo/pretrained/vat_small).
SMALL = {
    "num_points": 512,
    "fourier_bands": 6,
    "encoder_hidden_size": 64,
    "encoder_num_layers": 2,
    "encoder_num_heads": 4,
    "num_latent_tokens": 32,
    "latent_dim": 16,
    "scales": (1, 2, 4, 8, 16, 32),
    "codebook_size": 512,
    "kl_weight": 1e-4,
    "quantize_start_step": 700,
    "decoder_hidden_size": 64,
    "decoder_num_layers": 2,
    "decoder_num_heads": 4,
    "triplane_low_res": 8,
    "triplane_res": 32,
    "triplane_channels": 16,
    "upsampler_channels": 32,
    "mlp_hidden_size": 64,
    "mlp_layers": 3,
    "query_fourier_bands": 6,
    "mlp_ratio": 2.0,
    "grid_resolution": 64,
    "num_near_queries": 2048,
    "num_uniform_queries": 1024,
}
register_variant("vat-small", "vat", "CPU-trainable VAT: 32 latents in 6 scales = 63 codes of 512, 3x32^2 triplane", **SMALL)

TINY = {
    **SMALL,
    "num_points": 128,
    "fourier_bands": 4,
    "encoder_hidden_size": 32,
    "num_latent_tokens": 8,
    "latent_dim": 8,
    "scales": (1, 2, 4, 8),
    "codebook_size": 64,
    "quantize_start_step": 0,
    "decoder_hidden_size": 32,
    "triplane_low_res": 4,
    "triplane_res": 16,
    "triplane_channels": 8,
    "upsampler_channels": 16,
    "mlp_hidden_size": 32,
    "grid_resolution": 16,
}
register_variant("vat-tiny", "vat", "tiny VAT for tests: 8 latents in 4 scales = 15 codes of 64", **TINY)

__all__ = ["MultiScaleResidualQuantizer", "VATConfig", "VATProcessor", "VATTokenizer", "occupancy_grid_to_mesh"]
