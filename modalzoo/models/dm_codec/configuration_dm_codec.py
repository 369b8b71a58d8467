"""DM-Codec configuration: a SpeechTokenizer-style codec (SEANet encoder ending in a
bidirectional LSTM, 8 x 1024 EnCodec RVQ, SEANet decoder) plus the `transform` head that
projects the first RVQ stage onto the distillation teachers' width. Both releases (LM-guided
and LM+SM-guided) share this architecture; they differ in the teachers used in training."""

from __future__ import annotations

import math

from ...modeling_utils import ModalTokenizerConfig

DISTILL_TEACHERS = (None, "llm", "hubert", "combined")


class DMCodecConfig(ModalTokenizerConfig):
    r"""
    sampling_rate: 16 kHz for both releases.
    downsampling_ratios: the original `strides` in SEANet (decoder) order; hop = their product.
    num_filters / num_residual_layers / residual_kernel_size / dilation_base / num_lstm_layers:
        the SEANet halves (`n_filters`, `n_residual_layers`, ..., `lstm_layers`).
    bidirectional_lstm: the encoder's LSTM is bidirectional (the decoder's never is).
    hidden_size: latent and codebook dimension (`dimension`).
    semantic_dimension: width of the `transform` projection of the first RVQ stage (768, the
        teachers' width); equal to `hidden_size` means no projection (the original's Identity).
    num_quantizers / codebook_size / codebook_*: the EMA RVQ (`n_q`, `codebook_size`; decay,
        k-means iterations, dead-code threshold and epsilon are the original's defaults).
    mel_* / reconstruction_loss_weight etc.: the original trainer's generator terms: multi-scale
        log-mel L1 at n_fft / 2^k (weights `mel_loss_lambdas`), time-domain L1, commitment and
        distillation weights (`recon_loss_lambda`, `commitment_loss_lambda`, `distill_loss_lambda`).
    distill_teacher: None (no distillation term), "llm" (LM only), "hubert" (SM only) or
        "combined" (LM + SM; averaged, or weighted by `distill_weights` = [speech, text] as the
        original's `combined_<w_sm>_<w_lm>`).
    speech_teacher / speech_teacher_layer: the SM teacher (a HuBERT repo id or local folder) and
        its hidden state ("avg" of all, or an index into `hidden_states`).
    asr_model / text_teacher / text_teacher_layer: the LM teacher: a wav2vec2 CTC model
        transcribes the audio, a BERT-family encoder embeds the transcript.
    """

    model_type = "dm_codec"

    sampling_rate: int = 16000
    downsampling_ratios: list[int] | tuple[int, ...] = (8, 5, 4, 2)
    num_filters: int = 64
    num_residual_layers: int = 1
    residual_kernel_size: int = 3
    dilation_base: int = 2
    num_lstm_layers: int = 2
    bidirectional_lstm: bool = True
    hidden_size: int = 1024
    semantic_dimension: int = 768
    num_quantizers: int = 8
    codebook_size: int = 1024
    codebook_decay: float = 0.99
    codebook_kmeans_iters: int = 50
    codebook_dead_code_threshold: float = 2.0
    codebook_epsilon: float = 1e-5
    mel_loss_lambdas: list[float] | tuple[float, ...] = (45.0, 1.0, 1.0, 1.0)
    num_mels: int = 80
    mel_n_fft: int = 1024
    mel_hop_length: int = 240
    mel_win_length: int = 1024
    mel_fmin: float = 0.0
    mel_fmax: float | None = None
    reconstruction_loss_weight: float = 500.0
    commitment_loss_weight: float = 10.0
    distillation_loss_weight: float = 120.0
    distill_teacher: str | None = None
    distill_weights: list[float] | tuple[float, ...] | None = None
    speech_teacher: str = "facebook/hubert-base-ls960"
    speech_teacher_layer: int | str = "avg"
    asr_model: str = "facebook/wav2vec2-base-960h"
    text_teacher: str = "bert-base-uncased"
    text_teacher_layer: int | str = "avg"

    def __post_init__(self, **kwargs):
        self.downsampling_ratios = [int(r) for r in self.downsampling_ratios]
        if not self.downsampling_ratios or min(self.downsampling_ratios) < 1:
            raise ValueError(f"downsampling_ratios must be positive integers, got {self.downsampling_ratios}")
        self.mel_loss_lambdas = [float(w) for w in self.mel_loss_lambdas]
        if self.distill_teacher not in DISTILL_TEACHERS:
            raise ValueError(f"distill_teacher must be one of {DISTILL_TEACHERS}, got {self.distill_teacher!r}")
        if self.distill_weights is not None:
            self.distill_weights = [float(w) for w in self.distill_weights]
            if len(self.distill_weights) != 2 or self.distill_teacher != "combined":
                raise ValueError("distill_weights = [speech, text] applies to distill_teacher='combined' only")
        for name in ("speech_teacher_layer", "text_teacher_layer"):
            value = getattr(self, name)
            if not (value == "avg" or isinstance(value, int)):
                raise ValueError(f"{name} must be 'avg' or a hidden-state index, got {value!r}")
        if self.num_filters < 2:
            raise ValueError(f"num_filters must be >= 2 (residual branches halve it), got {self.num_filters}")
        super().__post_init__(**kwargs)

    @property
    def hop_length(self) -> int:
        return math.prod(self.downsampling_ratios)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size] * self.num_quantizers

    @property
    def token_rate(self) -> float:
        return self.sampling_rate / self.hop_length

    @property
    def frame_rate(self) -> float:
        return self.token_rate
