"""EMA Euclidean codebook with the EnCodec buffer layout (`inited`, `cluster_size`, `embed`,
`embed_avg`), as WavTokenizer, X-Codec, SpeechTokenizer and DM-Codec checkpoints store it.

Why not the vector-quantize-pytorch adapter (`VectorQuantizer`): its nearest-neighbour search
ranks `sqrt(clamp(|x|^2 + |e|^2 - 2 x.e))`, summed in another order than these originals'
`-(|x|^2 - 2 x.e + |e|^2)`, so near-ties can pick a different code; it stores the buffers with a
leading heads axis under other names (`initted`); and its k-means / dead-code paths consume the
random generator differently. Converted checkpoints must give identical codes, so this module
reproduces the original arithmetic exactly and loads the original buffers unchanged.

Its name contains "codebook", so `ModalTokenizer` keeps it in fp32 under bf16/fp16 loads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from .output import QuantizerOutput


def _sample_rows(samples: torch.Tensor, count: int) -> torch.Tensor:
    if samples.shape[0] >= count:
        return samples[torch.randperm(samples.shape[0], device=samples.device)[:count]]
    return samples[torch.randint(0, samples.shape[0], (count,), device=samples.device)]


def _broadcast_from_rank0(tensors) -> None:
    # The original syncs the buffers after k-means and dead-code replacement so that every rank
    # keeps the same codebook; EMA statistics themselves are not reduced (as in the original).
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.broadcast(tensor.data, src=0)


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means seeded with random rows; empty clusters keep their previous centre."""
    dim = samples.shape[-1]
    means = _sample_rows(samples, num_clusters)
    bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    for _ in range(num_iters):
        # Expanded form of the squared distance: the broadcast difference needs N*K*D memory.
        distances = -(samples.pow(2).sum(1, keepdim=True) - 2 * samples @ means.t() + means.pow(2).sum(1)[None])
        assignment = distances.max(dim=-1).indices
        bins = torch.bincount(assignment, minlength=num_clusters)
        empty = bins == 0
        sums = torch.zeros(num_clusters, dim, dtype=samples.dtype, device=samples.device)
        sums.scatter_add_(0, assignment[:, None].expand(-1, dim), samples)
        means = torch.where(empty[:, None], means, sums / bins.masked_fill(empty, 1)[:, None])
    return means, bins


class EuclideanCodebook(nn.Module):
    """One codebook of `codebook_size` vectors of size `dim`, updated by exponential moving
    averages in training (no gradient), k-means initialised on the first training batch when
    `inited` is 0, with codes whose EMA usage falls below `threshold_ema_dead_code` re-drawn
    from the batch.

    `forward(x)` takes `[B, T, dim]` and returns a `QuantizerOutput` (codes `[B, 1, T]`,
    straight-through vectors, commitment MSE); `encode` / `lookup` are the inference halves.
    A fresh codebook starts from random vectors (so an untrained model gives varied codes) and
    `inited = 0` when `kmeans_init` is set, which only training reads.
    """

    def __init__(
        self,
        *,
        dim: int,
        codebook_size: int,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        threshold_ema_dead_code: float = 2.0,
    ):
        super().__init__()
        self.dim = dim
        self.codebook_size = codebook_size
        self.decay = decay
        self.epsilon = epsilon
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.threshold_ema_dead_code = threshold_ema_dead_code
        self.register_buffer("inited", torch.zeros(1))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", torch.empty(codebook_size, dim))
        self.register_buffer("embed_avg", torch.empty(codebook_size, dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # transformers' guarded init functions leave buffers loaded from a checkpoint untouched.
        init.kaiming_uniform_(self.embed)
        init.copy_(self.embed_avg, self.embed)
        init.zeros_(self.cluster_size)
        init.constant_(self.inited, 0.0 if self.kmeans_init else 1.0)

    # ----- inference --------------------------------------------------------------------------
    def _nearest(self, flat: torch.Tensor) -> torch.Tensor:
        embed = self.embed.t()
        # Same expression and summation order as the originals, so ties resolve identically.
        distance = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed + embed.pow(2).sum(0, keepdim=True))
        return distance.max(dim=-1).indices

    def encode(self, x: torch.Tensor) -> torch.LongTensor:
        """`[B, T, dim]` -> codes `[B, 1, T]`."""
        flat = x.reshape(-1, self.dim).to(self.embed.dtype)
        return self._nearest(flat).view(x.shape[0], 1, x.shape[1])

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes `[B, 1, T]` -> vectors `[B, T, dim]`."""
        return F.embedding(codes[:, 0], self.embed)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embed

    # ----- training ---------------------------------------------------------------------------
    @torch.no_grad()
    def _kmeans_init_(self, flat: torch.Tensor) -> None:
        means, bins = kmeans(flat, self.codebook_size, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.copy_(bins)
        self.inited.fill_(1.0)
        _broadcast_from_rank0(self.buffers())

    @torch.no_grad()
    def _expire_dead_codes_(self, flat: torch.Tensor) -> None:
        if self.threshold_ema_dead_code <= 0:
            return
        dead = self.cluster_size < self.threshold_ema_dead_code
        if not dead.any():
            return
        self.embed.copy_(torch.where(dead[:, None], _sample_rows(flat, self.codebook_size), self.embed))
        _broadcast_from_rank0(self.buffers())

    @torch.no_grad()
    def _ema_update_(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        onehot = F.one_hot(codes, self.codebook_size).to(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_((flat.t() @ onehot).t(), alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        self.embed.copy_(self.embed_avg / smoothed[:, None])

    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        flat = x.reshape(-1, self.dim).float()
        if self.training and not bool(self.inited.item()):
            self._kmeans_init_(flat.detach())
        codes = self._nearest(flat)
        quantized = F.embedding(codes, self.embed).view(x.shape).to(x.dtype)
        loss = x.new_zeros(())
        if self.training:
            # Expiry uses the codes chosen before it, as in the original.
            self._expire_dead_codes_(flat.detach())
            self._ema_update_(flat.detach(), codes)
            loss = F.mse_loss(quantized.detach(), x)
            quantized = x + (quantized - x).detach()
        return QuantizerOutput(quantized=quantized, codes=codes.view(x.shape[0], 1, x.shape[1]), loss=loss)
