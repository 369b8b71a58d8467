"""Finite scalar quantisation: an adapter over `vector_quantize_pytorch.FSQ`."""

from __future__ import annotations

import torch
from torch import nn
from vector_quantize_pytorch import FSQ

from ..modeling_utils import ComputedBuffers
from .output import QuantizerOutput


class FiniteScalarQuantizer(nn.Module, ComputedBuffers):
    """FSQ with the given `levels` (implicit codebook of prod(levels) entries, no parameters
    unless `dim` differs from `len(levels)`, where in/out projections are learned).

    Inputs `[B, T, dim]`; codes `[B, 1, T]`.
    """

    def __init__(self, *, levels: list[int], dim: int | None = None):
        super().__init__()
        self.levels = list(levels)
        # FSQ calls .item() while building its buffers, which fails under the meta device that
        # from_pretrained constructs models on; they are tiny, so build them on the CPU.
        with torch.device("cpu"):
            self.fsq = FSQ(levels=self.levels, dim=dim)
        self.codebook_size = int(self.fsq.codebook_size)

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        # FSQ keeps its levels, basis and implicit codebook as non-persistent buffers.
        levels = torch.tensor(self.levels, dtype=torch.int32)
        basis = torch.cumprod(torch.tensor([1] + self.levels[:-1]), dim=0, dtype=torch.int32)
        with torch.device("cpu"):
            fresh = FSQ(levels=self.levels)
        return {"fsq._levels": levels, "fsq._basis": basis, "fsq.implicit_codebook": fresh.implicit_codebook}

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        quantized, indices = self.fsq(x)
        return QuantizerOutput(quantized=quantized, codes=indices.unsqueeze(1), loss=x.new_zeros(()))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """`[B, 1, T]` codes -> `[B, T, dim]` vectors."""
        return self.fsq.indices_to_codes(codes[:, 0])
