"""SemantiCodec configuration: a frozen AudioMAE ViT whose patch features are quantised by a fixed
k-means codebook (semantic codes), a BiLSTM + EMA VQ on [AudioMAE feature | semantic centroid]
(acoustic codes), and a latent-diffusion decoder (its own sub-config, `decoder`).

The paper names a release by its token rate: semantic plus acoustic codes per second (25, 50 or
100). Each code frame holds one semantic and one acoustic code, so the contract's `token_rate`
(positions per second along T) is half of it: 50, 25 or 12.5 frames/s.
"""

from __future__ import annotations

from typing import Any

from ...modeling_utils import ModalTokenizerConfig

# The original's fixed front end (semanticodec/main.py, utils.py): 16 kHz, 10 ms Kaldi frames,
# 10.24 s segments of 1024 frames, normalised by AudioSet statistics.
MEL_FRAME_SHIFT_SAMPLES = 160
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974

# tokens_per_second -> (time patches, frequency patches) concatenated into one code frame.
PATCH_STACKS = {100: (1, 1), 50: (1, 2), 25: (2, 2)}
# tokens_per_second -> BiLSTM depth of the releases (config.py's `lstm_layer`).
RELEASED_LSTM_LAYERS = {100: 4, 50: 3, 25: 2}


class SemantiCodecConfig(ModalTokenizerConfig):
    r"""
    sampling_rate: audio rate in Hz (16 kHz in every release).
    tokens_per_second: the release's token rate (25, 50 or 100 semantic + acoustic codes per
        second); it fixes how many AudioMAE patches form one code frame (1, 2 side by side in
        frequency, or 2 x 2).
    semantic_codebook_size: rows of the k-means centroid file (the semantic vocabulary).
    acoustic_codebook_size / acoustic_codebook_decay / commitment_weight: the acoustic
        `VectorQuantize` (8192 codes, EMA decay 0.9, commitment 1.0 in every release).
    num_mel_bins / segment_frames / patch_size: the AudioMAE input (128 Kaldi bins x 1024 frames,
        16 x 16 patches, i.e. a 64 x 8 patch grid per 10.24 s segment).
    audiomae_*: the ViT (ViT-B/16 in the releases). Its output is the mean of the final
        LayerNorm applied after every block past `audiomae_contextual_depth` (blocks 9-11 of 12).
    lstm_num_layers: depth of the bidirectional acoustic LSTM; None picks the release's (4, 3, 2
        for 100, 50, 25 tokens/s).
    condition_dropout: share of training items whose diffusion conditioning is replaced by the
        unconditional one (classifier-free guidance; AudioLDM's 0.1).
    decoder: the latent-diffusion decoder's own config (a JSON dict from
        `decoder_semanticodec.released_decoder_config`); None builds an encoder-only model.
    """

    model_type = "semanticodec"

    sampling_rate: int = 16000
    tokens_per_second: int = 100
    semantic_codebook_size: int = 16384
    acoustic_codebook_size: int = 8192
    acoustic_codebook_decay: float = 0.9
    commitment_weight: float = 1.0
    num_mel_bins: int = 128
    segment_frames: int = 1024
    patch_size: int = 16
    audiomae_hidden_size: int = 768
    audiomae_num_layers: int = 12
    audiomae_num_heads: int = 12
    audiomae_mlp_ratio: float = 4.0
    audiomae_contextual_depth: int = 8
    audiomae_layer_norm_eps: float = 1e-6
    lstm_num_layers: int | None = None
    condition_dropout: float = 0.1
    decoder: dict[str, Any] | None = None

    def __post_init__(self, **kwargs):
        if self.tokens_per_second not in PATCH_STACKS:
            raise ValueError(f"tokens_per_second must be one of {sorted(PATCH_STACKS)}, got {self.tokens_per_second}")
        if self.sampling_rate != 16000:
            raise ValueError(f"SemantiCodec's front end is fixed at 16000 Hz, got sampling_rate={self.sampling_rate}")
        if not 0.0 <= self.condition_dropout <= 1.0:
            raise ValueError(f"condition_dropout must lie in [0, 1], got {self.condition_dropout}")
        if self.lstm_num_layers is None:
            self.lstm_num_layers = RELEASED_LSTM_LAYERS[self.tokens_per_second]
        time_stack, frequency_stack = PATCH_STACKS[self.tokens_per_second]
        for what, size, stack in (("segment_frames", self.segment_frames, time_stack), ("num_mel_bins", self.num_mel_bins, frequency_stack)):
            if size % (self.patch_size * stack):
                raise ValueError(f"{what}={size} must be a multiple of patch_size * {stack} = {self.patch_size * stack}")
        if self.audiomae_contextual_depth >= self.audiomae_num_layers - 1 or self.audiomae_contextual_depth < -1:
            raise ValueError(
                f"audiomae_contextual_depth must lie in [-1, audiomae_num_layers - 2] so that at least one block's "
                f"output is averaged, got {self.audiomae_contextual_depth} with {self.audiomae_num_layers} layers"
            )
        if self.audiomae_hidden_size % self.audiomae_num_heads:
            raise ValueError(f"audiomae_hidden_size {self.audiomae_hidden_size} must be a multiple of audiomae_num_heads {self.audiomae_num_heads}")
        super().__post_init__(**kwargs)

    # ----- derived sizes ------------------------------------------------------------------------
    @property
    def patch_stack(self) -> tuple[int, int]:
        """(time, frequency) AudioMAE patches concatenated into one code frame."""
        return PATCH_STACKS[self.tokens_per_second]

    @property
    def feature_dim(self) -> int:
        """Width of one frame's AudioMAE feature, semantic centroid and acoustic VQ vector."""
        time_stack, frequency_stack = self.patch_stack
        return self.audiomae_hidden_size * time_stack * frequency_stack

    @property
    def patch_grid(self) -> tuple[int, int]:
        return self.segment_frames // self.patch_size, self.num_mel_bins // self.patch_size

    @property
    def frames_per_segment(self) -> int:
        time_patches, frequency_patches = self.patch_grid
        time_stack, frequency_stack = self.patch_stack
        return (time_patches // time_stack) * (frequency_patches // frequency_stack)

    @property
    def segment_samples(self) -> int:
        return self.segment_frames * MEL_FRAME_SHIFT_SAMPLES

    @property
    def hop_length(self) -> int:
        """Samples per code frame (320, 640 or 1280 at 100, 50, 25 tokens/s)."""
        return self.segment_samples // self.frames_per_segment

    # ----- the contract -------------------------------------------------------------------------
    @property
    def codebook_sizes(self) -> list[int]:
        """[semantic, acoustic]: row 0 of `codes` holds k-means ids, row 1 the acoustic VQ ids."""
        return [self.semantic_codebook_size, self.acoustic_codebook_size]

    @property
    def token_rate(self) -> float:
        return self.sampling_rate / self.hop_length
