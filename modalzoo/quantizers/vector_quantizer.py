"""Single-codebook VQ: an adapter over `vector_quantize_pytorch.VectorQuantize`."""

from __future__ import annotations

import torch
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from .output import QuantizerOutput


class VectorQuantizer(nn.Module):
    """Nearest-neighbour VQ with optional cosine (l2-normalised) codes, EMA codebook updates,
    k-means initialisation and dead-code expiry, all delegated to vector-quantize-pytorch.

    Inputs are `[B, T, dim]`; codes come back as `[B, 1, T]`.
    """

    def __init__(
        self,
        *,
        dim: int,
        codebook_size: int,
        codebook_dim: int | None = None,
        use_cosine_sim: bool = False,
        ema_decay: float = 0.99,
        kmeans_init: bool = False,
        kmeans_iters: int = 10,
        threshold_ema_dead_code: float = 0,
        commitment_weight: float = 1.0,
        learnable_codebook: bool = False,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.vq = VectorQuantize(
            dim=dim,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            use_cosine_sim=use_cosine_sim,
            decay=ema_decay,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            threshold_ema_dead_code=threshold_ema_dead_code,
            commitment_weight=commitment_weight,
            learnable_codebook=learnable_codebook,
            ema_update=not learnable_codebook,
            rotation_trick=False,
        )

    @property
    def codebook(self) -> torch.Tensor:
        """`[codebook_size, codebook_dim]` code vectors (l2-normalised for cosine codebooks)."""
        return self.vq.codebook

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None) -> QuantizerOutput:
        quantized, indices, loss = self.vq(x, mask=mask)
        return QuantizerOutput(quantized=quantized, codes=indices.unsqueeze(1), loss=loss.sum())

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, 1, T]` codes -> `[B, T, dim]` vectors."""
        return self.vq.get_output_from_indices(codes[:, 0])
