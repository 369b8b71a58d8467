"""X-Codec's residual quantizer with training: transformers' `XcodecResidualVectorQuantization`
has the inference half only (no EMA, no k-means, no commitment term).

The state-dict layout is transformers' (`quantizer.quantizers.{i}.codebook.{inited, cluster_size,
embed, embed_avg}`), and encode / decode repeat its arithmetic operation for operation, so the
same tensors give the same codes in both. Each codebook is modalzoo's EnCodec-layout
`EuclideanCodebook`; `XcodecCodebook` only changes the order of a training step to the one of
X-Codec's quantizer (`quantization/core_vq_lsx_version.py`): EMA update first, dead-code expiry
after it, so that re-drawn codes survive the step (in EnCodec's order the EMA normalisation
overwrites them at once).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...quantizers.euclidean_codebook import EuclideanCodebook
from ...quantizers.output import QuantizerOutput


class XcodecCodebook(EuclideanCodebook):
    def forward(self, x: torch.Tensor) -> QuantizerOutput:
        # fp32 whatever the autocast state: nearest-neighbour ties and small EMA increments
        # are lost in half precision.
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.reshape(-1, self.dim).float()
            if self.training and not bool(self.inited.item()):
                self._kmeans_init_(flat.detach())
            codes = self._nearest(flat)
            quantized = F.embedding(codes, self.embed).view(x.shape).to(x.dtype)
            loss = x.new_zeros((), dtype=torch.float32)
            if self.training:
                self._ema_update_(flat.detach(), codes)
                self._expire_dead_codes_(flat.detach())
                loss = F.mse_loss(quantized.detach().float(), x.float())
                quantized = x + (quantized - x).detach()
        return QuantizerOutput(quantized=quantized, codes=codes.view(x.shape[0], 1, x.shape[1]), loss=loss)


class XcodecQuantizerLayer(nn.Module):
    """One residual stage; exists for the `quantizers.{i}.codebook` key layout."""

    def __init__(self, codebook: XcodecCodebook):
        super().__init__()
        self.codebook = codebook


class XcodecResidualQuantizer(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.num_quantizers = config.num_quantizers
        self.codebook_size = config.codebook_size
        self.frame_rate = config.frame_rate
        self.quantizers = nn.ModuleList(
            XcodecQuantizerLayer(
                XcodecCodebook(
                    dim=config.codebook_dim,
                    codebook_size=config.codebook_size,
                    decay=config.codebook_decay,
                    kmeans_init=True,
                    kmeans_iters=config.codebook_kmeans_iters,
                    threshold_ema_dead_code=config.codebook_dead_code_threshold,
                )
            )
            for _ in range(config.num_quantizers)
        )

    # ----- transformers' bandwidth arithmetic -------------------------------------------------------------
    def get_bandwidth_per_quantizer(self) -> float:
        return math.log2(self.codebook_size) * self.frame_rate / 1000

    def get_num_quantizers_for_bandwidth(self, bandwidth: float | None = None) -> int:
        if bandwidth is not None and bandwidth > 0.0:
            return int(max(1, math.floor(bandwidth / self.get_bandwidth_per_quantizer())))
        return self.num_quantizers

    # ----- inference (transformers' operations, in its order) -------------------------------------------
    def encode_codes(self, embeddings: torch.Tensor, num_quantizers: int) -> torch.LongTensor:
        """`[B, D, F]` -> codes `[B, num_quantizers, F]`."""
        residual = embeddings
        codes = []
        for layer in self.quantizers[:num_quantizers]:
            indices = layer.codebook.encode(residual.permute(0, 2, 1))
            residual = residual - layer.codebook.lookup(indices).permute(0, 2, 1)
            codes.append(indices[:, 0])
        return torch.stack(codes, dim=1)

    def encode(self, embeddings: torch.Tensor, bandwidth: float | None = None) -> torch.LongTensor:
        """transformers' signature: `[B, D, F]` -> `[num_quantizers, B, F]`."""
        return self.encode_codes(embeddings, self.get_num_quantizers_for_bandwidth(bandwidth)).transpose(0, 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """transformers' signature: codes `[num_quantizers, B, F]` -> vectors `[B, D, F]`."""
        quantized_out = torch.full((), 0.0, device=codes.device)
        for layer, indices in zip(self.quantizers, codes):
            quantized_out = quantized_out + layer.codebook.lookup(indices[:, None]).permute(0, 2, 1)
        return quantized_out

    # ----- training ---------------------------------------------------------------------------------------
    def forward(
        self, vectors: torch.Tensor, num_quantizers: int, frame_mask: torch.Tensor | None = None
    ) -> QuantizerOutput:
        """`[B, F, D]` -> straight-through `[B, F, D]`, codes `[B, num_quantizers, F]` and the mean
        commitment MSE over the stages used (the original's `torch.mean(commit_loss)`). With
        `frame_mask`, only real frames are quantised and update the codebooks; padded frames get
        zero vectors and code 0."""
        if frame_mask is None:
            frame_mask = torch.ones(vectors.shape[:2], dtype=torch.bool, device=vectors.device)
        frame_mask = frame_mask.bool()
        residual = vectors[frame_mask][None]
        quantized_sum = torch.zeros_like(residual)
        codes, losses = [], []
        for layer in self.quantizers[:num_quantizers]:
            output = layer.codebook(residual)
            residual = residual - output.quantized
            quantized_sum = quantized_sum + output.quantized
            codes.append(output.codes[0, 0])
            losses.append(output.loss)
        quantized = vectors.new_zeros(vectors.shape).masked_scatter(frame_mask[..., None], quantized_sum[0])
        packed_codes = torch.stack(codes)  # [num_quantizers, frames]
        all_codes = packed_codes.new_zeros(num_quantizers, *vectors.shape[:2])
        all_codes[:, frame_mask] = packed_codes
        return QuantizerOutput(quantized=quantized, codes=all_codes.transpose(0, 1), loss=torch.stack(losses).mean())
