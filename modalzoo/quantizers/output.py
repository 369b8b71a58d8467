from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class QuantizerOutput:
    """The one return shape of every quantizer.

    quantized: `[B, T, D]` vectors (straight-through in training).
    codes: LongTensor `[B, Q, T]`, Q = 1 for single-codebook layers.
    loss: scalar auxiliary loss (commitment and codebook terms), zero when there is none.
    """

    quantized: torch.Tensor
    codes: torch.LongTensor
    loss: torch.Tensor
