"""X-Codec configuration: transformers' `XcodecConfig` plus the modalzoo contract facts.

`XcodecTokenizerConfig` *is* an `XcodecConfig` (same fields, same sub-configs, same derived
properties), so a transformers-format X-Codec folder (`hf-audio/xcodec-*`) reads into it and a
saved modalzoo folder reads back into `XcodecConfig`. Its own `model_type` is
`xcodec_tokenizer`: registering `xcodec` would take transformers' own Auto mapping away from
`XcodecModel` for every program that imports modalzoo.
"""

from __future__ import annotations

from typing import Any

from transformers import XcodecConfig

from ...modeling_utils import ModalTokenizerConfig

# The frozen teachers of the releases, as transformers' conversion script reads them from the
# Hub (`facebook/hubert-base-ls960`, `microsoft/wavlm-base-plus`,
# `ZhenYe234/hubert_base_general_audio`). All three are base-size models whose architecture is
# the transformers default of their config class, so no download is needed to build them.
SEMANTIC_TEACHERS: dict[str, dict[str, Any]] = {
    "hubert_base": {"model_type": "hubert"},
    "wavlm_base_plus": {"model_type": "wavlm"},
    "hubert_base_general": {"model_type": "hubert"},
}

# The original yaml's (`config/codec_16k_6kbps_v3_vqdp.yaml`) generator weights. `adversarial`
# (MSE-GAN) and `feature_matching` apply when `forward` is given the discriminator; under the
# shared trainer the recipe's `loss_weights` carry them instead.
DEFAULT_LOSS_WEIGHTS = {
    "stft": 1.0,
    "subband_stft": 1.0,
    "commitment": 1.0,
    "semantic": 100.0,
    "adversarial": 1.0,
    "feature_matching": 20.0,
}


class XcodecTokenizerConfig(ModalTokenizerConfig, XcodecConfig):
    r"""
    Every `XcodecConfig` field (`target_bandwidths` in kbps, `sample_rate`, `codebook_size`,
    `acoustic_model_config` (a DacConfig: encoder/decoder widths and strides),
    `semantic_model_config` (the HuBERT / WavLM teacher), semantic encoder shape), plus:

    codebook_decay / codebook_kmeans_iters / codebook_dead_code_threshold: the EMA codebook's
        training settings (the original's 0.99, 50 k-means iterations on the first batch, 2).
    loss_weights: weights of `forward`'s terms in its `loss` (`stft`, `subband_stft`,
        `commitment`, `semantic`, and `adversarial` / `feature_matching` when a discriminator is
        given); the original's by default.
    """

    model_type = "xcodec_tokenizer"

    codebook_decay: float = 0.99
    codebook_kmeans_iters: int = 50
    codebook_dead_code_threshold: float = 2.0
    loss_weights: dict[str, float] | None = None

    def __post_init__(self, **kwargs):
        self.target_bandwidths = [float(b) for b in self.target_bandwidths]
        if not self.target_bandwidths or sorted(self.target_bandwidths) != self.target_bandwidths:
            raise ValueError(f"target_bandwidths must be increasing kbps values, got {self.target_bandwidths}")
        self.loss_weights = {**DEFAULT_LOSS_WEIGHTS, **(self.loss_weights or {})}
        unknown = sorted(set(self.loss_weights) - set(DEFAULT_LOSS_WEIGHTS))
        if unknown:
            raise ValueError(f"unknown loss_weights {unknown}; known: {sorted(DEFAULT_LOSS_WEIGHTS)}")
        super().__post_init__(**kwargs)
        if self.semantic_hop_length != self.hop_length:
            raise ValueError(
                f"the semantic teacher's frame hop ({self.semantic_hop_length} samples) must equal the acoustic "
                f"encoder's ({self.hop_length}): both streams are fused frame by frame"
            )

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        # A transformers X-Codec folder holds exactly these fields under model_type "xcodec".
        if config_dict.get("model_type") == XcodecConfig.model_type:
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    @classmethod
    def from_transformers(cls, config: XcodecConfig, **overrides) -> XcodecTokenizerConfig:
        data = config.to_dict()
        data.pop("model_type", None)
        data.pop("transformers_version", None)
        return cls(**{**data, **overrides})

    def to_transformers(self) -> XcodecConfig:
        """The plain `XcodecConfig` with the same architecture (modalzoo fields dropped)."""
        data = self.to_dict()
        for name in ("model_type", "transformers_version", "variant", *self._own_fields()):
            data.pop(name, None)
        return XcodecConfig(**data)

    @staticmethod
    def _own_fields() -> tuple[str, ...]:
        return ("codebook_decay", "codebook_kmeans_iters", "codebook_dead_code_threshold", "loss_weights")

    # ----- the contract -------------------------------------------------------------------------
    @property
    def sampling_rate(self) -> int:
        # transformers' XcodecConfig names it `sample_rate`; every other audio config here
        # (and the feature extractors) says `sampling_rate`.
        return self.sample_rate

    @property
    def semantic_hop_length(self) -> int:
        stride = 1
        for value in self.semantic_model_config.conv_stride:
            stride *= int(value)
        return stride

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size] * self.num_quantizers

    @property
    def token_rate(self) -> float:
        return self.sample_rate / self.hop_length

