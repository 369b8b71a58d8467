"""WavTokenizer configuration: a SEANet encoder, one EMA codebook, and an attention-enhanced Vocos
decoder with an ISTFT head. Every release shares this architecture; they differ only in the
hop (320 samples = 75 tokens/s, or 600 = 40 tokens/s at 24 kHz) and in their training data."""

from __future__ import annotations

import math

from ...modeling_utils import ModalTokenizerConfig


class WavTokenizerConfig(ModalTokenizerConfig):
    r"""
    sampling_rate: audio rate in Hz (24 kHz for every release).
    downsampling_ratios: the original yaml's `dowmsamples`, in SEANet (decoder) order; the encoder
        strides through them reversed. Their product is `hop_length`.
    encoder_*: SEANet encoder (EnCodec 24 kHz layout: 32 filters, 1 residual layer per stage,
        2-layer LSTM, non-causal reflect-padded weight-normed convolutions).
    hidden_size: latent and codebook dimension.
    codebook_size / codebook_*: the EMA k-means codebook (decay, k-means iterations on the first
        training batch, dead-code threshold, Laplace epsilon).
    decoder_*: Vocos backbone width, ConvNeXt MLP width, depth, layer-scale init (None = 1/depth),
        AdaLayerNorm embeddings (None = plain LayerNorm), pos-net GroupNorm groups and dropout.
    n_fft: ISTFT size (window = n_fft, Hann); None means 4 * hop_length as in every release.
    mel_loss_weight / commitment_loss_weight: the original generator's weights on its log-mel L1
        and VQ commitment terms (the GAN terms come from the trainer's discriminators).
    """

    model_type = "wavtokenizer"

    sampling_rate: int = 24000
    downsampling_ratios: list[int] | tuple[int, ...] = (8, 5, 4, 2)
    encoder_num_filters: int = 32
    encoder_num_residual_layers: int = 1
    encoder_kernel_size: int = 7
    encoder_last_kernel_size: int = 7
    encoder_residual_kernel_size: int = 3
    encoder_dilation_base: int = 2
    encoder_compress: int = 2
    encoder_num_lstm_layers: int = 2
    hidden_size: int = 512
    codebook_size: int = 4096
    codebook_decay: float = 0.99
    codebook_kmeans_iters: int = 200
    codebook_dead_code_threshold: float = 2.0
    codebook_epsilon: float = 1e-5
    decoder_dim: int = 768
    decoder_intermediate_dim: int = 2304
    decoder_num_layers: int = 12
    decoder_layer_scale_init_value: float | None = None
    adanorm_num_embeddings: int | None = 4
    decoder_num_groups: int = 32
    decoder_dropout: float = 0.1
    n_fft: int | None = None
    mel_loss_weight: float = 45.0
    commitment_loss_weight: float = 1000.0

    def __post_init__(self, **kwargs):
        self.downsampling_ratios = [int(r) for r in self.downsampling_ratios]
        if not self.downsampling_ratios or min(self.downsampling_ratios) < 1:
            raise ValueError(f"downsampling_ratios must be positive integers, got {self.downsampling_ratios}")
        if self.n_fft is None:
            self.n_fft = 4 * self.hop_length
        if self.n_fft < self.hop_length or (self.n_fft - self.hop_length) % 2:
            raise ValueError(
                f"n_fft - hop_length must be even and >= 0 for the 'same'-padded ISTFT, got n_fft={self.n_fft}, "
                f"hop_length={self.hop_length}"
            )
        if self.decoder_dim % self.decoder_num_groups:
            raise ValueError(
                f"decoder_dim {self.decoder_dim} must be a multiple of decoder_num_groups {self.decoder_num_groups}"
            )
        super().__post_init__(**kwargs)

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsampling_ratios)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def token_rate(self) -> float:
        return self.sampling_rate / self.hop_length
