"""WavTokenizer: every released configuration, plus `wavtokenizer-tiny` for tests."""

from ...registry import register_family, register_variant
from .configuration_wavtokenizer import WavTokenizerConfig
from .modeling_wavtokenizer import WavTokenizerModel
from .processing_wavtokenizer import WavTokenizerFeatureExtractor

register_family(
    "wavtokenizer",
    config_class=WavTokenizerConfig,
    model_class=WavTokenizerModel,
    processor_class=WavTokenizerFeatureExtractor,
)

HOP_75 = {"downsampling_ratios": (8, 5, 4, 2)}  # 320 samples at 24 kHz
HOP_40 = {"downsampling_ratios": (6, 5, 5, 4)}  # 600 samples at 24 kHz

# name -> (config, Hub repo, checkpoint files, description). Every release pairs with the two
# small yamls of the original repo (frame75 <-> 320-hop, frame40 <-> 600-hop checkpoints).
RELEASES = {
    "wavtokenizer-75-small": (
        HOP_75, "novateur/WavTokenizer", ["WavTokenizer_small_320_24k_4096.ckpt"],
        "75 tokens/s, speech (LibriTTS, 585 h)",
    ),
    "wavtokenizer-40-small": (
        HOP_40, "novateur/WavTokenizer", ["WavTokenizer_small_600_24k_4096.ckpt"],
        "40 tokens/s, speech (LibriTTS, 585 h)",
    ),
    "wavtokenizer-75-medium-speech": (
        HOP_75, "novateur/WavTokenizer-medium-speech-75token",
        ["wavtokenizer_medium_speech_320_24k.ckpt", "wavtokenizer_medium_speech_320_24k_v2.ckpt"],
        "75 tokens/s, speech (medium data, ~10k h)",
    ),
    "wavtokenizer-75-medium-music-audio": (
        HOP_75, "novateur/WavTokenizer-medium-music-audio-75token",
        ["wavtokenizer_medium_music_audio_320_24k.ckpt", "wavtokenizer_medium_music_audio_320_24k_v2.ckpt"],
        "75 tokens/s, music and general audio (medium data, ~10k h)",
    ),
    "wavtokenizer-75-large-speech": (
        HOP_75, "novateur/WavTokenizer-large-speech-75token",
        ["wavtokenizer_large_speech_320_24k.ckpt", "wavtokenizer_large_speech_320_v2.ckpt"],
        "75 tokens/s, speech (large data, ~80k h)",
    ),
    "wavtokenizer-40-large-unify": (
        HOP_40, "novateur/WavTokenizer-large-unify-40token", ["wavtokenizer_large_unify_600_24k.ckpt"],
        "40 tokens/s, speech, music and audio (large data, ~80k h)",
    ),
}

for _name, (_config, _repo, _files, _description) in RELEASES.items():
    register_variant(_name, "wavtokenizer", f"{_description}; {_repo}", **_config)

register_variant(
    "wavtokenizer-tiny",
    "wavtokenizer",
    "random-init test model, 75 tokens/s, 256 codes",
    encoder_num_filters=4,
    encoder_num_lstm_layers=1,
    hidden_size=32,
    codebook_size=256,
    codebook_kmeans_iters=10,
    decoder_dim=32,
    decoder_intermediate_dim=64,
    decoder_num_layers=2,
    **HOP_75,
)

__all__ = ["RELEASES", "WavTokenizerConfig", "WavTokenizerFeatureExtractor", "WavTokenizerModel"]
