"""VAT's multi-scale residual quantizer over a 1-D token sequence (VAR's scheme, one axis).

Scale s area-downsamples the current residual from N tokens to `scales[s]` tokens, looks every
token up in the one shared codebook, upsamples the chosen vectors back to N tokens (linear
interpolation), refines them with VAR's Phi (`(1 - r) h + r conv1d(h)`, one shared conv), adds
them to the reconstruction and subtracts them from the residual. The indices of all scales,
concatenated coarse to fine, are the codes; decoding any prefix of scales is well defined.

Training terms are VAR's: at every scale the running reconstruction is pulled towards the
latents (codebook term) and the latents towards the detached reconstruction (commitment term),
averaged over scales; the decoder receives the straight-through estimate. Codes whose running
usage falls below `dead_code_threshold` are re-seeded from the current residual vectors (this
also initialises a fresh codebook from data on the first training batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiScaleResidualQuantizer(nn.Module):
    def __init__(
        self,
        *,
        scales: list[int],
        codebook_size: int,
        dim: int,
        quant_resi: float = 0.5,
        dead_code_threshold: float = 0.0,
        usage_decay: float = 0.99,
    ):
        super().__init__()
        self.scales = list(scales)
        self.num_tokens = self.scales[-1]
        self.quant_resi = quant_resi
        self.dead_code_threshold = dead_code_threshold
        self.usage_decay = usage_decay
        self.codebook = nn.Embedding(codebook_size, dim)
        self.phi = nn.Conv1d(dim, dim, kernel_size=3, padding=1)
        # running count of uses per batch of each code (persistent: training resumes with it)
        self.register_buffer("codebook_usage", torch.zeros(codebook_size))

    @property
    def codebook_size(self) -> int:
        return self.codebook.num_embeddings

    # ----- helpers ------------------------------------------------------------------------------------
    @staticmethod
    def _resize(tokens: torch.Tensor, count: int, mode: str) -> torch.Tensor:
        """`[B, N, D]` -> `[B, count, D]` along the token axis."""
        if tokens.shape[1] == count:
            return tokens
        kwargs = {"align_corners": False} if mode == "linear" else {}
        return F.interpolate(tokens.transpose(1, 2), size=count, mode=mode, **kwargs).transpose(1, 2)

    def _refine(self, tokens: torch.Tensor) -> torch.Tensor:
        """VAR's Phi on the upsampled scale, `[B, N, D]`."""
        refined = self.phi(tokens.transpose(1, 2)).transpose(1, 2)
        return tokens * (1 - self.quant_resi) + refined * self.quant_resi

    def _expand(self, vectors: torch.Tensor) -> torch.Tensor:
        return self._refine(self._resize(vectors, self.num_tokens, "linear"))

    @torch.no_grad()
    def nearest(self, vectors: torch.Tensor) -> torch.LongTensor:
        """Index of the nearest codebook vector (Euclidean) for each vector of `[..., D]`."""
        codebook = self.codebook.weight.float()
        flat = vectors.detach().float().reshape(-1, codebook.shape[1])
        distances = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)[None]
        return distances.argmin(1).view(vectors.shape[:-1])

    # ----- quantize / dequantize ------------------------------------------------------------------------
    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.LongTensor, torch.Tensor, torch.Tensor]:
        """`latents [B, N, D]` -> (straight-through reconstruction `[B, N, D]`, codes `[B, T]`,
        codebook term, commitment term)."""
        if latents.ndim != 3 or latents.shape[1] != self.num_tokens:
            raise ValueError(f"expected latents [batch, {self.num_tokens}, dim], got {tuple(latents.shape)}")
        residual = latents
        reconstruction = torch.zeros_like(latents)
        codes, residuals = [], []
        codebook_term = latents.new_zeros(())
        commitment_term = latents.new_zeros(())
        for count in self.scales:
            target = self._resize(residual, count, "area")
            indices = self.nearest(target)
            expanded = self._expand(self.codebook(indices))
            reconstruction = reconstruction + expanded
            residual = residual - expanded
            codes.append(indices)
            residuals.append(target.detach().reshape(-1, target.shape[-1]))
            codebook_term = codebook_term + F.mse_loss(reconstruction, latents.detach())
            commitment_term = commitment_term + F.mse_loss(reconstruction.detach(), latents)
        codes = torch.cat(codes, dim=1)
        if self.training:
            self._track_usage(codes, torch.cat(residuals))
        straight_through = latents + (reconstruction - latents).detach()
        return straight_through, codes, codebook_term / len(self.scales), commitment_term / len(self.scales)

    def dequantize(self, codes: torch.LongTensor, num_scales: int | None = None) -> torch.Tensor:
        """Codes `[B, T]` (the first k scales, T = their total) -> latents `[B, N, D]` from the
        first `num_scales` scales (default: every scale present)."""
        boundaries = [sum(self.scales[: s + 1]) for s in range(len(self.scales))]
        if codes.shape[1] not in boundaries:
            raise ValueError(
                f"codes hold {codes.shape[1]} positions, which is no whole number of scales; "
                f"the first s scales end at positions {boundaries}"
            )
        present = boundaries.index(codes.shape[1]) + 1
        num_scales = present if num_scales is None else num_scales
        if not 1 <= num_scales <= present:
            raise ValueError(f"num_scales must be in [1, {present}] for these codes, got {num_scales}")
        reconstruction, start = 0, 0
        for count in self.scales[:num_scales]:
            reconstruction = reconstruction + self._expand(self.codebook(codes[:, start : start + count]))
            start += count
        return reconstruction

    @torch.no_grad()
    def _track_usage(self, codes: torch.LongTensor, residuals: torch.Tensor) -> None:
        counts = torch.bincount(codes.flatten(), minlength=self.codebook_size).float() / codes.shape[0]
        self.codebook_usage.mul_(self.usage_decay).add_(counts, alpha=1 - self.usage_decay)
        if self.dead_code_threshold <= 0:
            return
        dead = (self.codebook_usage < self.dead_code_threshold).nonzero().flatten()
        if dead.numel() == 0:
            return
        # Re-seed from random residual vectors, with a little noise when there are fewer
        # residuals than dead codes so that the copies do not coincide. `.data`: the lookup
        # graph of this step saves indices only, never the codebook weights.
        picks = torch.randint(len(residuals), (dead.numel(),), device=residuals.device)
        seeds = residuals[picks].to(self.codebook.weight.dtype)
        seeds = seeds + 1e-3 * seeds.std().clamp_min(1e-6) * torch.randn_like(seeds)
        self.codebook.weight.data[dead] = seeds
        self.codebook_usage[dead] = 1.0  # a grace period before it can be re-seeded again
