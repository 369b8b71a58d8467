"""Residual VQ: an adapter over `vector_quantize_pytorch.ResidualVQ`."""

from __future__ import annotations

import torch
from torch import nn
from vector_quantize_pytorch import ResidualVQ

from .output import QuantizerOutput


class ResidualVectorQuantizer(nn.Module):
    """A stack of `num_quantizers` codebooks, each quantising the previous residual.

    `forward(x, num_quantizers=n)` uses the first n layers (bandwidth selection in codecs).
    Inputs `[B, T, dim]`; codes `[B, n, T]`.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_quantizers: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        use_cosine_sim: bool = False,
        ema_decay: float = 0.99,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 0,
        commitment_weight: float = 1.0,
        quantize_dropout: bool = False,
    ):
        super().__init__()
        self.num_quantizers = num_quantizers
        self.codebook_size = codebook_size
        self.rvq = ResidualVQ(
            dim=dim,
            num_quantizers=num_quantizers,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            decay=ema_decay,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
            commitment_weight=commitment_weight,
            quantize_dropout=quantize_dropout,
            rotation_trick=False,
        )

    def _check_depth(self, num_quantizers: int | None) -> int:
        depth = self.num_quantizers if num_quantizers is None else num_quantizers
        if not 1 <= depth <= self.num_quantizers:
            raise ValueError(f"num_quantizers must be in [1, {self.num_quantizers}], got {num_quantizers}")
        return depth

    def forward(
        self, x: torch.Tensor, *, num_quantizers: int | None = None, mask: torch.Tensor | None = None
    ) -> QuantizerOutput:
        depth = self._check_depth(num_quantizers)
        residual = x
        quantized_total = torch.zeros_like(x)
        codes, losses = [], []
        # The layers are run one by one so that a truncated depth never touches (or updates) the
        # deeper codebooks, in training as in inference.
        for layer in self.rvq.layers[:depth]:
            quantized, indices, loss = layer(residual, mask=mask)
            residual = residual - quantized.detach()
            quantized_total = quantized_total + quantized
            codes.append(indices)
            losses.append(loss.sum())
        return QuantizerOutput(quantized=quantized_total, codes=torch.stack(codes, dim=1), loss=torch.stack(losses).sum())

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, n, T]` codes (n <= num_quantizers) -> `[B, T, dim]` summed vectors."""
        self._check_depth(codes.shape[1])
        return sum(layer.get_output_from_indices(codes[:, i]) for i, layer in enumerate(self.rvq.layers[: codes.shape[1]]))
