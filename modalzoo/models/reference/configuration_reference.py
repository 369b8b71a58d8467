"""Configs of the two reference tokenizers: the smallest models that honour the whole contract.

They carry no published weights; tests, examples, the trainer's smoke runs and the benchmark's
smoke mode use them to exercise the shared machinery independently of any family's numerics.
"""

from __future__ import annotations

from ...modeling_utils import ModalTokenizerConfig


class ReferenceImageConfig(ModalTokenizerConfig):
    model_type = "reference_image"

    image_size: int = 32
    patch_size: int = 4
    hidden_size: int = 16
    codebook_size: int = 64
    codebook_dim: int = 8

    def __post_init__(self, **kwargs):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}")
        super().__post_init__(**kwargs)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def max_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2


class ReferenceAudioConfig(ModalTokenizerConfig):
    model_type = "reference_audio"

    sampling_rate: int = 16000
    hop_length: int = 64
    hidden_size: int = 16
    num_quantizers: int = 2
    codebook_size: int = 32

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size] * self.num_quantizers

    @property
    def token_rate(self) -> float:
        return self.sampling_rate / self.hop_length
