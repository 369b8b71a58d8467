"""DM-Codec: both released checkpoints (LM-guided and LM+SM-guided distillation), plus
`dm-codec-tiny` for tests. Same architecture; the releases differ in their teachers."""

from ...registry import register_family, register_variant
from .configuration_dm_codec import DMCodecConfig
from .distillation_dm_codec import DMCodecTeachers, LanguageModelTeacher, SpeechModelTeacher
from .modeling_dm_codec import DMCodecModel
from .processing_dm_codec import DMCodecFeatureExtractor

register_family(
    "dm_codec",
    config_class=DMCodecConfig,
    model_class=DMCodecModel,
    processor_class=DMCodecFeatureExtractor,
)

# name -> (config, Google Drive file name in the original README, description). Both use the
# repo's config.json (16 kHz, hop 320, 8 x 1024 codes, 1024-d, BiLSTM encoder).
RELEASES = {
    "dm-codec-lm-sm": (
        {"distill_teacher": "combined"}, "DM-Codec_checkpoint_LM_SM",
        "LM + SM guided distillation (BERT on wav2vec2 transcripts + HuBERT), LibriSpeech",
    ),
    "dm-codec-lm": (
        {"distill_teacher": "llm"}, "DM-Codec_checkpoint_LM",
        "LM guided distillation (BERT on wav2vec2 transcripts), LibriSpeech",
    ),
}

for _name, (_config, _file, _description) in RELEASES.items():
    register_variant(_name, "dm_codec", f"{_description}; Google Drive {_file}", **_config)

# The parity fixture's tiny original config: 2 filters (BiLSTM width 32), 16-d latents, 8 x 64 codes.
TINY = dict(num_filters=2, hidden_size=16, semantic_dimension=8, codebook_size=64, codebook_kmeans_iters=10)
register_variant("dm-codec-tiny", "dm_codec", "random-init test model, 50 frames/s, 8 x 64 codes", **TINY)

__all__ = [
    "RELEASES",
    "DMCodecConfig",
    "DMCodecFeatureExtractor",
    "DMCodecModel",
    "DMCodecTeachers",
    "LanguageModelTeacher",
    "SpeechModelTeacher",
]
