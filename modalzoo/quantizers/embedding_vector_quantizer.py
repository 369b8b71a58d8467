"""Plain-codebook VQ in the taming-transformers style (TiTok, One-D-Piece): a learned
`[codebook_size, dim]` table, optional l2 normalisation of tokens and codes, nearest neighbour
by squared Euclidean distance, straight-through gradients, and the VQ-VAE loss
`commitment_cost * |sg(q) - z|^2 + |q - sg(z)|^2`.

Why not the vector-quantize-pytorch adapter (`VectorQuantizer`): converted checkpoints must give
the original's codes exactly, and the original ranks `|z|^2 + |e|^2 - 2 z.e` computed in fp32
in that order (with both sides l2-normalised first when `use_l2_norm`), while
vector-quantize-pytorch ranks cosine similarity (`use_cosine_sim`) or a clamped square-rooted
distance, whose rounding can flip near-ties. Its codebook also lives under another key
(`_codebook.embed` with a heads axis) and is updated by EMA, whereas these originals learn the
table by gradient. So this module reproduces the original arithmetic step for step.

The table is `codebook.weight`: its name contains "codebook", so `ModalTokenizer` keeps it in
fp32 under bf16/fp16 loads, and the search always runs in fp32 with autocast off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .output import QuantizerOutput


@dataclass
class EmbeddingQuantizerOutput(QuantizerOutput):
    """`QuantizerOutput` plus the two loss terms whose sum is `loss` (unweighted by any
    outer quantizer weight; the commitment term already carries `commitment_cost`)."""

    commitment_loss: torch.Tensor | None = None
    codebook_loss: torch.Tensor | None = None


class Codebook(nn.Embedding):
    """A code table initialised U(-1/N, 1/N) (N = num_embeddings), as taming-style VQ layers are.
    The initialisation lives on the module that owns the weight because transformers only
    initialises (custom-code) modules that hold parameters themselves."""

    def reset_parameters(self) -> None:
        init.uniform_(self.weight, -1.0 / self.num_embeddings, 1.0 / self.num_embeddings)


class EmbeddingVectorQuantizer(nn.Module):
    """Inputs `[B, T, dim]`; codes come back as `[B, 1, T]`.

    `quantized` is fp32 and, with `use_l2_norm`, l2-normalised (as are the vectors `lookup`
    returns), exactly what the original hands its decoder.
    """

    def __init__(self, *, dim: int, codebook_size: int, use_l2_norm: bool = False, commitment_cost: float = 0.25):
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.use_l2_norm = use_l2_norm
        self.commitment_cost = commitment_cost
        self.codebook = Codebook(codebook_size, dim)

    def _code_vectors(self) -> torch.Tensor:
        weight = self.codebook.weight.float()
        return F.normalize(weight, dim=-1) if self.use_l2_norm else weight

    def nearest(self, flat: torch.Tensor) -> torch.LongTensor:
        """Indices of the nearest code for each row of fp32 `[N, dim]` (already normalised when
        `use_l2_norm`)."""
        codes = self._code_vectors()
        distances = (
            torch.sum(flat**2, dim=1, keepdim=True)
            + torch.sum(codes**2, dim=1)
            - 2 * torch.einsum("nd,dk->nk", flat, codes.T)
        )
        return torch.argmin(distances, dim=1)

    def forward(self, z: torch.Tensor) -> EmbeddingQuantizerOutput:
        if z.ndim != 3 or z.shape[-1] != self.dim:
            raise ValueError(f"expected tokens [batch, positions, {self.dim}], got {tuple(z.shape)}")
        batch, positions, _ = z.shape
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            flat = z.reshape(-1, self.dim)
            if self.use_l2_norm:
                flat = F.normalize(flat, dim=-1)
            indices = self.nearest(flat)
            quantized = self.lookup_indices(indices).view(batch, positions, self.dim)
            if self.use_l2_norm:
                z = F.normalize(z, dim=-1)
            commitment_loss = self.commitment_cost * torch.mean((quantized.detach() - z) ** 2)
            codebook_loss = torch.mean((quantized - z.detach()) ** 2)
            # straight-through estimator
            quantized = z + (quantized - z).detach()
        return EmbeddingQuantizerOutput(
            quantized=quantized,
            codes=indices.view(batch, 1, positions),
            loss=commitment_loss + codebook_loss,
            commitment_loss=commitment_loss,
            codebook_loss=codebook_loss,
        )

    def lookup_indices(self, indices: torch.Tensor) -> torch.Tensor:
        vectors = self.codebook(indices).float()
        return F.normalize(vectors, dim=-1) if self.use_l2_norm else vectors

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, 1, T]` codes -> `[B, T, dim]` fp32 vectors."""
        return self.lookup_indices(codes[:, 0])
