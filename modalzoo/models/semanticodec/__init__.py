"""SemantiCodec: the 12 released configurations (3 token rates x 4 semantic vocabularies),
plus `semanticodec-tiny` for tests."""

from ...registry import register_family, register_variant
from .configuration_semanticodec import SemantiCodecConfig
from .decoder_semanticodec import released_decoder_config, tiny_decoder_config
from .modeling_semanticodec import SemantiCodecModel
from .processing_semanticodec import SemantiCodecFeatureExtractor

register_family(
    "semanticodec",
    config_class=SemantiCodecConfig,
    model_class=SemantiCodecModel,
    processor_class=SemantiCodecFeatureExtractor,
)

HUB_REPO = "haoheliu/SemantiCodec"
TOKEN_RATES = (25, 50, 100)
SEMANTIC_VOCABULARIES = (4096, 8192, 16384, 32768)
# token rate -> the centroid folder of the Hub repo (config.py's `semantic_codebook`)
CENTROID_FOLDERS = {25: "combine_128_audioset_dominate", 50: "combine_256_audioset_dominate", 100: "combine_512_audioset_dominate"}


def centroid_file(tokens_per_second: int, semantic_vocabulary: int) -> str:
    """Path of a release's k-means centroids inside the Hub repo. The file names carry half the
    vocabulary (`get_config` maps vocabulary 4096 to `codebook_2048_0.npy`)."""
    return f"codebook_idx/{CENTROID_FOLDERS[tokens_per_second]}/codebook_{semantic_vocabulary // 2}_0.npy"


def bitrate_kbps(tokens_per_second: int, semantic_vocabulary: int, acoustic_vocabulary: int = 8192) -> float:
    frames_per_second = tokens_per_second / 2
    return frames_per_second * (semantic_vocabulary.bit_length() - 1 + acoustic_vocabulary.bit_length() - 1) / 1000


# name -> (tokens_per_second, semantic vocabulary); checkpoints `semanticodec_tokenrate_<rate>/`
RELEASES = {
    f"semanticodec-{rate}-{vocabulary}": (rate, vocabulary)
    for rate in TOKEN_RATES
    for vocabulary in SEMANTIC_VOCABULARIES
}

for _name, (_rate, _vocabulary) in RELEASES.items():
    register_variant(
        _name,
        "semanticodec",
        f"{_rate} tokens/s, {_vocabulary} semantic codes, {bitrate_kbps(_rate, _vocabulary):.2f} kbps; "
        f"{HUB_REPO} semanticodec_tokenrate_{_rate} + {centroid_file(_rate, _vocabulary)}",
        tokens_per_second=_rate,
        semantic_codebook_size=_vocabulary,
        decoder=released_decoder_config(_rate),
    )

# An 8-wide, 3-block AudioMAE on the released 1024 x 128 input, 100 tokens/s, a 2-layer 16-wide
# BiLSTM and 64 + 64 codes (the encoder of tests/fixtures/semanticodec/encoder/tiny100), and the
# tiny latent-diffusion decoder (0.32 s windows at the same 50 frames/s).
TINY = dict(
    tokens_per_second=100,
    semantic_codebook_size=64,
    acoustic_codebook_size=64,
    audiomae_hidden_size=8,
    audiomae_num_layers=3,
    audiomae_num_heads=2,
    audiomae_contextual_depth=0,
    lstm_num_layers=2,
    decoder=tiny_decoder_config(feature_dim=2 * 8),
)
register_variant("semanticodec-tiny", "semanticodec", "random-init test model, 100 tokens/s, 64 + 64 codes", **TINY)

__all__ = ["RELEASES", "SemantiCodecConfig", "SemantiCodecFeatureExtractor", "SemantiCodecModel", "centroid_file"]
