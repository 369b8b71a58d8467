from ...registry import register_family, register_variant
from .configuration_reference import ReferenceAudioConfig, ReferenceImageConfig
from .modeling_reference import ReferenceAudioTokenizer, ReferenceImageTokenizer
from .processing_reference import ReferenceAudioFeatureExtractor, ReferenceImageProcessor

register_family(
    "reference_image",
    config_class=ReferenceImageConfig,
    model_class=ReferenceImageTokenizer,
    processor_class=ReferenceImageProcessor,
)
register_family(
    "reference_audio",
    config_class=ReferenceAudioConfig,
    model_class=ReferenceAudioTokenizer,
    processor_class=ReferenceAudioFeatureExtractor,
)
register_variant("reference-image-tiny", "reference_image", "patch-VQ image tokenizer, 32 px, 64 codes")
register_variant("reference-audio-tiny", "reference_audio", "frame-RVQ codec, 16 kHz, 250 frames/s, 2x32 codes")

__all__ = [
    "ReferenceAudioConfig",
    "ReferenceAudioFeatureExtractor",
    "ReferenceAudioTokenizer",
    "ReferenceImageConfig",
    "ReferenceImageProcessor",
    "ReferenceImageTokenizer",
]
