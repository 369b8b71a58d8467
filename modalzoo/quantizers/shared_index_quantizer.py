"""TokenFlow's dual-codebook, shared-index VQ with VAR-style multi-scale residual quantization.

One index space of `codebook_size` entries owns two l2-normalised tables, a semantic one
(`semantic_dim`, e.g. 32) and a pixel one (`pixel_dim`, e.g. 8). A feature map `[B, S+P, H, W]`
is split into its semantic and pixel halves, each half is l2-normalised, and the index
minimising `d_semantic + pixel_weight * d_pixel` (squared Euclidean distances) is chosen for both.

Multi-scale residual quantization (`scales`, the last equal to the map's side): for every scale
s the residual is area-downsampled to s x s, quantized, bicubic-upsampled back to full size and
accumulated; the residual then loses the (stop-gradient) upsampled quantization. Codes are the
per-scale index grids flattened row-major and concatenated coarse to fine.

Why not vector-quantize-pytorch: converted checkpoints must reproduce the original's codes, which
come from its exact distance arithmetic (`|z|^2 + |e|^2 - 2 z.e` per half, then summed) and its
straight-through output `z + (q - z)`, which the residual and the understanding features inherit.

Both tables' names contain "codebook", so `ModalTokenizer` keeps them fp32 under bf16 loads; the
search runs in fp32 with autocast off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .embedding_vector_quantizer import Codebook
from .output import QuantizerOutput


@dataclass
class MultiScaleQuantizerOutput(QuantizerOutput):
    """`quantized`: `[B, S+P, H, W]` sum of the upsampled per-scale quantizations
    (straight-through in training); `codes`: `[B, 1, sum(s*s)]`; `loss` = `codebook_loss` +
    `commitment_loss`, each averaged over the scales used; `scales`: the scales used."""

    codebook_loss: torch.Tensor | None = None
    commitment_loss: torch.Tensor | None = None
    scales: list[int] | None = None


class SharedIndexQuantizer(nn.Module):
    def __init__(
        self,
        *,
        codebook_size: int,
        semantic_dim: int,
        pixel_dim: int,
        scales: Sequence[int],
        pixel_weight: float = 1.0,
        commitment_cost: float = 0.25,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.semantic_dim = semantic_dim
        self.pixel_dim = pixel_dim
        self.scales = [int(s) for s in scales]
        self.pixel_weight = pixel_weight
        self.commitment_cost = commitment_cost
        self.semantic_codebook = Codebook(codebook_size, semantic_dim)
        self.pixel_codebook = Codebook(codebook_size, pixel_dim)

    @property
    def dim(self) -> int:
        return self.semantic_dim + self.pixel_dim

    @property
    def num_tokens(self) -> int:
        return sum(s * s for s in self.scales)

    def scale_boundaries(self, scales: Sequence[int] | None = None) -> list[int]:
        """Offsets of each scale's first code in the flat sequence, plus the total at the end."""
        boundaries = [0]
        for scale in self.scales if scales is None else scales:
            boundaries.append(boundaries[-1] + scale * scale)
        return boundaries

    def _tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            F.normalize(self.semantic_codebook.weight.float(), p=2, dim=-1),
            F.normalize(self.pixel_codebook.weight.float(), p=2, dim=-1),
        )

    @staticmethod
    def _distances(flat: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return (
            torch.sum(flat**2, dim=1, keepdim=True)
            + torch.sum(table**2, dim=1)
            - 2 * torch.einsum("bd,dn->bn", flat, torch.einsum("n d -> d n", table))
        )

    def quantize_map(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.LongTensor, torch.Tensor, torch.Tensor]:
        """One scale: `[B, C, h, w]` -> (straight-through quantized map, indices `[B, h*w]`,
        codebook loss, commitment loss)."""
        batch, _, height, width = z.shape
        z = z.permute(0, 2, 3, 1).contiguous()
        semantic, pixel = torch.split(z, [self.semantic_dim, self.pixel_dim], dim=-1)
        semantic = F.normalize(semantic, p=2, dim=-1)
        pixel = F.normalize(pixel, p=2, dim=-1)
        semantic_table, pixel_table = self._tables()
        distances = self._distances(semantic.reshape(-1, self.semantic_dim), semantic_table) + self.pixel_weight * (
            self._distances(pixel.reshape(-1, self.pixel_dim), pixel_table)
        )
        indices = torch.argmin(distances, dim=1)
        normalized = torch.cat([semantic, pixel], dim=-1)
        quantized = torch.cat([semantic_table, pixel_table], dim=-1)[indices].view(normalized.shape)
        codebook_loss = torch.mean((quantized - normalized.detach()) ** 2)
        commitment_loss = self.commitment_cost * torch.mean((quantized.detach() - normalized) ** 2)
        quantized = normalized + (quantized - normalized).detach()
        return quantized.permute(0, 3, 1, 2), indices.view(batch, height * width), codebook_loss, commitment_loss

    def forward(self, features: torch.Tensor, *, scales: Sequence[int] | None = None) -> MultiScaleQuantizerOutput:
        """`features` `[B, S+P, H, W]` (H = W = the last scale). `scales` picks a subset of the
        configured scales (the training scale drop); the last one must stay."""
        scales = self.scales if scales is None else [int(s) for s in scales]
        side = self.scales[-1]
        if features.ndim != 4 or features.shape[1] != self.dim or tuple(features.shape[-2:]) != (side, side):
            raise ValueError(f"expected features [batch, {self.dim}, {side}, {side}], got {tuple(features.shape)}")
        with torch.autocast(device_type=features.device.type, enabled=False):
            residual = features.float()
            total = 0.0
            codes, codebook_losses, commitment_losses = [], [], []
            for scale in scales:
                downsampled = F.interpolate(residual, size=(scale, scale), mode="area")
                quantized, indices, codebook_loss, commitment_loss = self.quantize_map(downsampled)
                quantized = F.interpolate(quantized, size=(side, side), mode="bicubic")
                total = total + quantized
                residual = residual - quantized.detach()
                codes.append(indices)
                codebook_losses.append(codebook_loss)
                commitment_losses.append(commitment_loss)
            codebook_loss = sum(codebook_losses) / len(codebook_losses)
            commitment_loss = sum(commitment_losses) / len(commitment_losses)
        return MultiScaleQuantizerOutput(
            quantized=total,
            codes=torch.cat(codes, dim=1)[:, None],
            loss=codebook_loss + commitment_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            scales=scales,
        )

    def scales_for_length(self, length: int) -> list[int]:
        """The leading scales whose codes fill exactly `length` positions."""
        boundaries = self.scale_boundaries()
        if length not in boundaries[1:]:
            raise ValueError(
                f"{length} codes do not end at a scale boundary; this model's boundaries are {boundaries[1:]} "
                f"(scales {self.scales})"
            )
        return self.scales[: boundaries.index(length)]

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, 1, T]` (T a scale boundary: the first k scales) -> the summed, upsampled
        code map `[B, S+P, H, W]` (fp32)."""
        flat = codes[:, 0]
        scales = self.scales_for_length(flat.shape[1])
        side = self.scales[-1]
        table = torch.cat(self._tables(), dim=-1)
        total = 0.0
        offset = 0
        for scale in scales:
            vectors = table[flat[:, offset : offset + scale * scale]]
            offset += scale * scale
            grid = vectors.view(flat.shape[0], scale, scale, self.dim).permute(0, 3, 1, 2)
            total = total + F.interpolate(grid, size=(side, side), mode="bicubic")
        return total
