"""TokenFlow (ByteFlow-AI/TokenFlow): dual-codebook multi-scale image tokenizer,
https://arxiv.org/abs/2412.03069."""

from ...registry import register_family, register_variant
from .configuration_tokenflow import CLIP_B16, SIGLIP_SO400M, TokenFlowConfig
from .losses_tokenflow import PerceptualLoss, SemanticTeacher, semantic_cosine_loss
from .modeling_tokenflow import TokenFlowEncoderOutput, TokenFlowOutput, TokenFlowTokenizer
from .processing_tokenflow import TokenFlowImageProcessor

register_family(
    "tokenflow", config_class=TokenFlowConfig, model_class=TokenFlowTokenizer, processor_class=TokenFlowImageProcessor
)

register_variant(
    "tokenflow-clipb-32k-enhanced",
    "tokenflow",
    "TokenFlow CLIP-B/16 (t2i tokenizer): 256 px, 817 codes over 9 scales, 32k shared index, enhanced decoder",
    image_size=256,
    teacher="clip",
    semantic_encoder_config=CLIP_B16,
    semantic_feature_layer=-1,
    scales=(1, 2, 4, 6, 8, 10, 12, 14, 16),
    pixel_decoder_channels=256,
    pixel_decoder_num_res_blocks=4,
    semantic_decoder_hidden_size=768,
    semantic_decoder_grid_size=14,
    semantic_output_dim=512,
)
register_variant(
    "tokenflow-siglip-32k",
    "tokenflow",
    "TokenFlow SigLIP so400m/14 (understanding tokenizer): 384 px, 2227 codes over 15 scales, 32k shared index",
    image_size=384,
    teacher="siglip",
    semantic_encoder_config=SIGLIP_SO400M,
    semantic_feature_layer=-2,
    scales=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 17, 22, 27),
    pixel_decoder_channels=128,
    pixel_decoder_num_res_blocks=2,
    semantic_decoder_hidden_size=1152,
    semantic_decoder_grid_size=27,
    semantic_output_dim=1152,
)

# The CLIP-B layout at toy sizes (the parity fixture's): a 2-layer CLIP tower trained at 32 px and
# run at 40 px (interpolated positions), 4 scales (39 codes), 128 shared codes.
TINY = {
    "image_size": 40,
    "teacher": "clip",
    "semantic_encoder_config": {
        "hidden_size": 32,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 32,
        "patch_size": 8,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 24,
    },
    "semantic_feature_layer": -1,
    "semantic_code_dim": 16,
    "pixel_code_dim": 4,
    "codebook_size": 128,
    "scales": (1, 2, 3, 5),
    "pixel_encoder_channels": 8,
    "pixel_channel_mult": (1, 1, 2, 2),
    "pixel_encoder_num_res_blocks": 1,
    "pixel_z_channels": 16,
    "pixel_norm_groups": 4,
    "pixel_decoder_channels": 8,
    "pixel_decoder_num_res_blocks": 2,
    "semantic_decoder_hidden_size": 32,
    "semantic_decoder_num_layers": 2,
    "semantic_decoder_num_heads": 2,
    "semantic_decoder_grid_size": 4,
    "semantic_output_dim": 24,
    "perceptual_weight": 0.0,  # LPIPS weights are a download; the tiny recipe trains without it
}
register_variant("tokenflow-tiny", "tokenflow", "tiny TokenFlow (CLIP layout) for tests: 40 px, 39 codes, 128 codes", **TINY)

__all__ = [
    "PerceptualLoss",
    "SemanticTeacher",
    "TokenFlowConfig",
    "TokenFlowEncoderOutput",
    "TokenFlowImageProcessor",
    "TokenFlowOutput",
    "TokenFlowTokenizer",
    "semantic_cosine_loss",
]
