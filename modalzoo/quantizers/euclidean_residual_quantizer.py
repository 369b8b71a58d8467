"""EnCodec's residual vector quantizer (`ResidualVectorQuantization` of audiocraft / encodec,
vendored by SpeechTokenizer and DM-Codec): a stack of exact EMA `EuclideanCodebook`s, each
quantising what the previous ones left.

State-dict layout as transformers' Encodec: `layers.{i}.codebook.{inited, cluster_size, embed,
embed_avg}`. Inference repeats the original arithmetic operation for operation (same distance
expression, residual updated stage by stage, decoded vectors summed in stage order), so a
converted checkpoint gives identical codes. Training is EnCodec's order: k-means on the first
batch, dead-code expiry, then the EMA update (`EuclideanCodebook.forward`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .euclidean_codebook import EuclideanCodebook
from .output import QuantizerOutput


@dataclass
class ResidualQuantizerOutput(QuantizerOutput):
    """`QuantizerOutput` plus each stage's own (straight-through) vectors `[B, T, dim]`, which
    distillation losses read (SpeechTokenizer / DM-Codec distil into the first stage)."""

    stage_quantized: list[torch.Tensor] = field(default_factory=list)


class _Stage(nn.Module):
    # Exists for the `layers.{i}.codebook` key layout.
    def __init__(self, codebook: EuclideanCodebook):
        super().__init__()
        self.codebook = codebook


class EuclideanResidualQuantizer(nn.Module):
    """`num_quantizers` EMA codebooks of `codebook_size` vectors of size `dim`.

    `encode(x, num_quantizers=n)`: `[B, T, dim]` -> codes `[B, n, T]`; `lookup(codes)`: codes
    `[B, n, T]` (n <= num_quantizers, first n stages) -> `[B, T, dim]`; `forward` quantises
    with training updates and returns a `ResidualQuantizerOutput` whose `loss` is the mean of
    the stages' commitment MSEs (the original's `torch.mean(commit_loss)`).
    """

    def __init__(
        self,
        *,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        threshold_ema_dead_code: float = 2.0,
    ):
        super().__init__()
        self.dim = dim
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.layers = nn.ModuleList(
            _Stage(
                EuclideanCodebook(
                    dim=dim,
                    codebook_size=codebook_size,
                    decay=decay,
                    epsilon=epsilon,
                    kmeans_init=kmeans_init,
                    kmeans_iters=kmeans_iters,
                    threshold_ema_dead_code=threshold_ema_dead_code,
                )
            )
            for _ in range(num_quantizers)
        )

    def check_depth(self, num_quantizers: int | None) -> int:
        depth = self.num_quantizers if num_quantizers is None else int(num_quantizers)
        if not 1 <= depth <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.num_quantizers}], got {num_quantizers}")
        return depth

    def encode(self, x: torch.Tensor, num_quantizers: int | None = None) -> torch.LongTensor:
        residual = x
        codes = []
        for stage in self.layers[: self.check_depth(num_quantizers)]:
            indices = stage.codebook.encode(residual)
            residual = residual - stage.codebook.lookup(indices)
            codes.append(indices[:, 0])
        return torch.stack(codes, dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        self.check_depth(codes.shape[1])
        total = None
        for index, stage in enumerate(self.layers[: codes.shape[1]]):
            vectors = stage.codebook.lookup(codes[:, index : index + 1])
            total = vectors if total is None else total + vectors
        return total

    def forward(self, x: torch.Tensor, num_quantizers: int | None = None) -> ResidualQuantizerOutput:
        residual = x
        total = torch.zeros_like(x)
        codes, losses, stages = [], [], []
        for stage in self.layers[: self.check_depth(num_quantizers)]:
            output = stage.codebook(residual)
            residual = residual - output.quantized
            total = total + output.quantized
            codes.append(output.codes[:, 0])
            losses.append(output.loss)
            stages.append(output.quantized)
        return ResidualQuantizerOutput(
            quantized=total, codes=torch.stack(codes, dim=1), loss=torch.stack(losses).mean(), stage_quantized=stages
        )
