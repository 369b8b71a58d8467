"""X-Codec: the five released checkpoints (as converted to `hf-audio/xcodec-*`), plus
`xcodec-tiny` for tests. Each is transformers' `XcodecModel` with the modalzoo contract."""

from ...registry import register_family, register_variant
from .configuration_xcodec import SEMANTIC_TEACHERS, XcodecTokenizerConfig
from .losses_xcodec import MultiFrequencyDiscriminator, XcodecGeneratorLoss
from .modeling_xcodec import XcodecTokenizer
from .processing_xcodec import XcodecFeatureExtractor

register_family(
    "xcodec_tokenizer",
    config_class=XcodecTokenizerConfig,
    model_class=XcodecTokenizer,
    processor_class=XcodecFeatureExtractor,
)

# name -> (teacher, Hub repo of the transformers conversion, original checkpoint, original yaml,
# description). Every release: 16 kHz, hop 320 (ratios 8,5,4,2), D = 256, 8 x 1024 codes,
# bandwidths 0.5-4 kbps; they differ in the teacher and the training data.
RELEASES = {
    "xcodec-hubert-librispeech": (
        "hubert_base", "hf-audio/xcodec-hubert-librispeech", "xcodec_speech_hubert_librispeech.pth",
        "config_hubert.yaml", "speech, HuBERT-base teacher, LibriSpeech",
    ),
    "xcodec-hubert-general": (
        "hubert_base_general", "hf-audio/xcodec-hubert-general", "xcodec_hubert_general_audio.pth",
        "config_hubert_general.yaml", "general audio, general-audio HuBERT teacher (200k h)",
    ),
    "xcodec-hubert-general-balanced": (
        "hubert_base_general", "hf-audio/xcodec-hubert-general-balanced", "xcodec_hubert_general_audio_v2.pth",
        "config_hubert_general.yaml", "general audio, more balanced data (v2), general-audio HuBERT teacher",
    ),
    "xcodec-wavlm-mls": (
        "wavlm_base_plus", "hf-audio/xcodec-wavlm-mls", "xcodec_speech_wavlm_mls.pth",
        "config_wavlm.yaml", "speech, WavLM-base-plus teacher, MLS",
    ),
    "xcodec-wavlm-more-data": (
        "wavlm_base_plus", "hf-audio/xcodec-wavlm-more-data", "xcodec_speech_wavlm_more_data.pth",
        "config_wavlm.yaml", "speech, WavLM-base-plus teacher, more data",
    ),
}

for _name, (_teacher, _repo, _file, _yaml, _description) in RELEASES.items():
    register_variant(
        _name, "xcodec_tokenizer", f"{_description}; {_repo}", semantic_model_config=dict(SEMANTIC_TEACHERS[_teacher])
    )

# ~90k parameters: a 2-layer, 16-wide HuBERT teacher (keeping the base model's 320-sample frame
# hop and its GroupNorm feature encoder), a 4-channel DAC encoder, a 32-channel decoder and
# 4 x 256 codes of 24 dims (0.4 kbps each).
TINY = dict(
    acoustic_model_config=dict(encoder_hidden_size=4, decoder_hidden_size=32, hidden_size=8, n_codebooks=1, codebook_size=4),
    semantic_model_config=dict(
        model_type="hubert", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        conv_dim=[8] * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2,
    ),
    codebook_size=256,
    target_bandwidths=[0.4, 0.8, 1.6],
    codebook_kmeans_iters=10,
)
register_variant("xcodec-tiny", "xcodec_tokenizer", "random-init test model, 50 frames/s, 4 x 256 codes", **TINY)

__all__ = [
    "RELEASES",
    "MultiFrequencyDiscriminator",
    "XcodecFeatureExtractor",
    "XcodecGeneratorLoss",
    "XcodecTokenizer",
    "XcodecTokenizerConfig",
]
