"""Vocos decoder blocks: a ConvNeXt backbone (optionally with WavTokenizer's attention-enhanced
"pos-net" in front and AdaLayerNorm conditioning) and an inverse-STFT head.

Parameter names follow the Vocos / WavTokenizer releases (`embed`, `pos_net.{i}`, `norm`,
`convnext.{i}.{dwconv,norm,pwconv1,pwconv2,gamma}`, `final_layer_norm`, `out`), so their
checkpoints map one to one. Shared by WavTokenizer and any codec with a Vocos decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from ..modeling_utils import ComputedBuffers


def _as_condition(condition_id, batch_size: int, device: torch.device) -> torch.Tensor:
    """An int, a 0-d tensor, `[1]` or `[B]` -> LongTensor `[1 or B, 1]` of embedding rows."""
    ids = torch.as_tensor(condition_id, dtype=torch.long, device=device).reshape(-1)
    if ids.numel() not in (1, batch_size):
        raise ValueError(f"bandwidth_id must be a single id or one per item ({batch_size}), got {ids.numel()}")
    return ids[:, None]


class AdaLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are looked up per condition id (one row per bandwidth)."""

    def __init__(self, num_embeddings: int, dim: int, eps: float = 1e-6):
        super().__init__()
        self.dim = dim
        self.eps = eps
        self.scale = nn.Embedding(num_embeddings, dim)
        self.shift = nn.Embedding(num_embeddings, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        init.ones_(self.scale.weight)
        init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, condition_id) -> torch.Tensor:
        """`x` `[B, T, dim]`; `condition_id` as accepted by the backbone's `bandwidth_id`."""
        ids = _as_condition(condition_id, x.shape[0], x.device)
        normed = F.layer_norm(x, (self.dim,), eps=self.eps)
        return normed * self.scale(ids) + self.shift(ids)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (k7) -> (Ada)LayerNorm -> MLP with GELU -> layer scale, residual."""

    def __init__(
        self, dim: int, intermediate_dim: int, layer_scale_init_value: float, adanorm_num_embeddings: int | None = None
    ):
        super().__init__()
        self.layer_scale_init_value = layer_scale_init_value
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.adanorm = adanorm_num_embeddings is not None
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if self.adanorm else nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale_init_value))) if layer_scale_init_value > 0 else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for layer in (self.dwconv, self.pwconv1, self.pwconv2):
            init.trunc_normal_(layer.weight, std=0.02)
            init.zeros_(layer.bias)
        if self.gamma is not None:
            init.constant_(self.gamma, float(self.layer_scale_init_value))

    def forward(self, x: torch.Tensor, bandwidth_id=None) -> torch.Tensor:
        residual = x
        x = self.dwconv(x).transpose(1, 2)
        x = self.norm(x, bandwidth_id) if self.adanorm else self.norm(x)
        x = self.pwconv2(self.act(self.pwconv1(x)))
        if self.gamma is not None:
            x = self.gamma * x
        return residual + x.transpose(1, 2)


def _swish(x: torch.Tensor) -> torch.Tensor:
    # Written out as the original does: F.silu's fused kernel rounds differently (~1e-6).
    return x * torch.sigmoid(x)


def _group_norm(channels: int, num_groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=num_groups, num_channels=channels, eps=1e-6, affine=True)


class PosNetResBlock(nn.Module):
    """GroupNorm -> swish -> conv k3, twice (dropout before the second conv), residual."""

    def __init__(self, channels: int, num_groups: int = 32, dropout: float = 0.1):
        super().__init__()
        self.norm1 = _group_norm(channels, num_groups)
        self.conv1 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)
        self.norm2 = _group_norm(channels, num_groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv1d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(self.dropout(_swish(self.norm2(h))))
        return x + h


class PosNetAttention(nn.Module):
    """Single-head, non-causal self-attention over time with 1x1-conv projections, residual.

    Up to `exact_max_frames` frames it computes the scores with `bmm` + softmax exactly as the
    original (bit-identical outputs); longer inputs use `scaled_dot_product_attention`, whose
    fused kernels never hold the T x T matrix (differences ~1e-6).
    """

    exact_max_frames = 4096

    def __init__(self, channels: int, num_groups: int = 32):
        super().__init__()
        self.norm = _group_norm(channels, num_groups)
        self.q = nn.Conv1d(channels, channels, kernel_size=1)
        self.k = nn.Conv1d(channels, channels, kernel_size=1)
        self.v = nn.Conv1d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv1d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        q, k, v = self.q(h), self.k(h), self.v(h)
        if x.shape[-1] <= self.exact_max_frames:
            scores = torch.bmm(q.transpose(1, 2), k) * (q.shape[1] ** -0.5)
            attended = torch.bmm(v, torch.softmax(scores, dim=2).transpose(1, 2))
        else:
            # [B, C, T] -> [B, 1 head, T, C]
            q, k, v = (t.transpose(1, 2).unsqueeze(1) for t in (q, k, v))
            attended = F.scaled_dot_product_attention(q, k, v).squeeze(1).transpose(1, 2)
        return x + self.proj_out(attended)


class VocosBackbone(nn.Module):
    """Conv embed (k7) -> [pos-net] -> (Ada)LayerNorm -> ConvNeXt blocks -> LayerNorm.

    `forward(x [B, input_channels, T], bandwidth_id)` returns `[B, T, dim]`. With `use_pos_net`
    (WavTokenizer) two ResNet blocks, an attention block, two more ResNet blocks and a GroupNorm
    run before the norm; without it this is the plain Vocos backbone.
    """

    def __init__(
        self,
        *,
        input_channels: int,
        dim: int,
        intermediate_dim: int,
        num_layers: int,
        layer_scale_init_value: float | None = None,
        adanorm_num_embeddings: int | None = None,
        use_pos_net: bool = True,
        pos_net_num_groups: int = 32,
        pos_net_dropout: float = 0.1,
    ):
        super().__init__()
        self.adanorm = adanorm_num_embeddings is not None
        self.embed = nn.Conv1d(input_channels, dim, kernel_size=7, padding=3)
        self.pos_net = None
        if use_pos_net:
            self.pos_net = nn.Sequential(
                PosNetResBlock(dim, pos_net_num_groups, pos_net_dropout),
                PosNetResBlock(dim, pos_net_num_groups, pos_net_dropout),
                PosNetAttention(dim, pos_net_num_groups),
                PosNetResBlock(dim, pos_net_num_groups, pos_net_dropout),
                PosNetResBlock(dim, pos_net_num_groups, pos_net_dropout),
                _group_norm(dim, pos_net_num_groups),
            )
        self.norm = AdaLayerNorm(adanorm_num_embeddings, dim) if self.adanorm else nn.LayerNorm(dim, eps=1e-6)
        layer_scale = layer_scale_init_value or 1.0 / num_layers
        self.convnext = nn.ModuleList(
            [ConvNeXtBlock(dim, intermediate_dim, layer_scale, adanorm_num_embeddings) for _ in range(num_layers)]
        )
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-6)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        # Vocos draws the embed (and ConvNeXt) weights from N(0, 0.02); the pos-net keeps torch defaults.
        init.trunc_normal_(self.embed.weight, std=0.02)
        init.zeros_(self.embed.bias)

    def forward(self, x: torch.Tensor, bandwidth_id=0) -> torch.Tensor:
        x = self.embed(x)
        if self.pos_net is not None:
            x = self.pos_net(x)
        x = x.transpose(1, 2)
        x = self.norm(x, bandwidth_id) if self.adanorm else self.norm(x)
        x = x.transpose(1, 2)
        for block in self.convnext:
            x = block(x, bandwidth_id)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module, ComputedBuffers):
    """Inverse STFT with "same" padding: `T` frames -> exactly `T * hop_length` samples.

    `torch.istft` cannot do this: without `center=True` its NOLA check fails on the zero ends of
    the Hann window (pytorch#62323). This is the same computation written out (irfft, window,
    overlap-add with `fold`, division by the summed squared window, trimming
    `(n_fft - hop_length) / 2` samples on each side); the window spans the whole FFT.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.win_length = n_fft
        if n_fft < hop_length or (n_fft - hop_length) % 2:
            raise ValueError(
                f"n_fft - hop_length must be even and >= 0 for 'same' padding, got n_fft={n_fft}, hop_length={hop_length}"
            )
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        with torch.device("cpu"):
            return {"window": torch.hann_window(self.win_length)}

    def _overlap_add(self, frames: torch.Tensor, num_frames: int) -> torch.Tensor:
        length = (num_frames - 1) * self.hop_length + self.win_length
        summed = F.fold(frames, output_size=(1, length), kernel_size=(1, self.win_length), stride=(1, self.hop_length))
        pad = (self.win_length - self.hop_length) // 2
        return summed[:, 0, 0, pad : length - pad]

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex `[B, n_fft // 2 + 1, T]` -> real `[B, T * hop_length]`."""
        if spec.ndim != 3:
            raise ValueError(f"expected a complex spectrogram [B, bins, frames], got shape {tuple(spec.shape)}")
        num_frames = spec.shape[-1]
        window = self.window.float()
        frames = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * window[None, :, None]
        audio = self._overlap_add(frames, num_frames)
        envelope = self._overlap_add(window.square()[None, :, None].expand(1, -1, num_frames), num_frames)
        return audio / envelope


class ISTFTHead(nn.Module):
    """Linear -> (log-magnitude, phase) -> complex spectrum -> ISTFT.

    `forward(x [B, T, dim])` returns fp32 audio `[B, T * hop_length]`. Magnitudes are clipped at
    100 as in Vocos.
    """

    def __init__(self, *, dim: int, n_fft: int, hop_length: int):
        super().__init__()
        self.out = nn.Linear(dim, n_fft + 2)
        self.istft = ISTFT(n_fft=n_fft, hop_length=hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The spectral half runs in fp32 (complex bf16/fp16 FFTs are unsupported or inexact).
        log_magnitude, phase = self.out(x).transpose(1, 2).float().chunk(2, dim=1)
        magnitude = torch.exp(log_magnitude).clip(max=1e2)
        # Real and imaginary parts built as the original does (mag*cos, mag*sin), not via polar.
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return self.istft(spec)
