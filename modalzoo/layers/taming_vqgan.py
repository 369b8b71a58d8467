"""The taming-transformers / LlamaGen VQGAN CNN (encoder and decoder), as TokenFlow's pixel branch
uses it.

Layout: GroupNorm(`norm_groups`, eps 1e-6) + swish residual blocks with a 1x1 `shortcut` when the
width changes, single-head spatial self-attention blocks at the lowest resolution (and in the
middle), stride-2 convolutions with the taming asymmetric (0, 1, 0, 1) padding to go down, nearest
2x upsampling + 3x3 convolution to go up. `channel_mult` is listed from full resolution down, as
in the original configs; the decoder runs `num_res_blocks + 1` residual blocks per level.

Blocks are stored in the order they run (`down.{i}` from full resolution, `up.{i}` from the lowest
resolution), as the originals store them. Attention runs through
`F.scaled_dot_product_attention`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fast_conv import upsample_nearest2x_conv3x3


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, norm_groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        residual = hidden_states if self.shortcut is None else self.shortcut(hidden_states)
        hidden_states = self.conv1(F.silu(self.norm1(hidden_states)))
        hidden_states = self.conv2(self.dropout(F.silu(self.norm2(hidden_states))))
        return residual + hidden_states


class AttnBlock(nn.Module):
    """Single-head self-attention over the h*w positions, 1x1 convolution projections."""

    def __init__(self, channels: int, *, norm_groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = hidden_states.shape
        normed = self.norm(hidden_states)
        query, key, value = (proj(normed).flatten(2).transpose(1, 2)[:, None] for proj in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(query, key, value)[:, 0]
        attended = attended.transpose(1, 2).reshape(batch, channels, height, width)
        return hidden_states + self.proj_out(attended)


class Downsample(nn.Conv2d):
    """3x3 stride-2 convolution after zero padding of one row/column at the bottom/right."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, stride=2, padding=0)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(hidden_states, (0, 1, 0, 1)))


class Upsample(nn.Conv2d):
    """Nearest-neighbour 2x upsampling followed by a 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return upsample_nearest2x_conv3x3(hidden_states, self)  # the same, without the 4x copy


class Level(nn.Module):
    """One resolution: residual blocks (each followed by attention at the lowest resolution), then
    an optional resampling."""

    def __init__(self, widths: list[tuple[int, int]], *, attention: bool, resample: nn.Module | None, norm_groups: int, dropout: float):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            ResnetBlock(i, o, norm_groups=norm_groups, dropout=dropout) for i, o in widths
        )
        self.attn_blocks = nn.ModuleList(
            AttnBlock(o, norm_groups=norm_groups) for _, o in widths
        ) if attention else nn.ModuleList()
        self.resample = resample

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for index, block in enumerate(self.res_blocks):
            hidden_states = block(hidden_states)
            if len(self.attn_blocks):
                hidden_states = self.attn_blocks[index](hidden_states)
        if self.resample is not None:
            hidden_states = self.resample(hidden_states)
        return hidden_states


def _middle(width: int, norm_groups: int, dropout: float) -> nn.ModuleList:
    return nn.ModuleList(
        [
            ResnetBlock(width, width, norm_groups=norm_groups, dropout=dropout),
            AttnBlock(width, norm_groups=norm_groups),
            ResnetBlock(width, width, norm_groups=norm_groups, dropout=dropout),
        ]
    )


class VQGANEncoder(nn.Module):
    """`[B, in_channels, H, W]` -> `[B, z_channels, H / 2**(L-1), W / 2**(L-1)]`."""

    def __init__(
        self,
        *,
        in_channels: int = 3,
        hidden_channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        norm_groups: int = 32,
        dropout: float = 0.0,
    ):
        super().__init__()
        channel_mult = list(channel_mult)
        levels = len(channel_mult)
        self.conv_in = nn.Conv2d(in_channels, hidden_channels, 3, padding=1)
        width = hidden_channels
        down = []
        for level, mult in enumerate(channel_mult):
            out_width = hidden_channels * mult
            widths = [(width if i == 0 else out_width, out_width) for i in range(num_res_blocks)]
            last = level == levels - 1
            down.append(
                Level(widths, attention=last, resample=None if last else Downsample(out_width), norm_groups=norm_groups, dropout=dropout)
            )
            width = out_width
        self.down = nn.ModuleList(down)
        self.mid = _middle(width, norm_groups, dropout)
        self.norm_out = nn.GroupNorm(norm_groups, width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, z_channels, 3, padding=1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(pixel_values)
        for level in self.down:
            hidden_states = level(hidden_states)
        for block in self.mid:
            hidden_states = block(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))


class VQGANDecoder(nn.Module):
    """`[B, z_channels, h, w]` -> `[B, out_channels, h * 2**(L-1), w * 2**(L-1)]`."""

    def __init__(
        self,
        *,
        out_channels: int = 3,
        hidden_channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        norm_groups: int = 32,
        dropout: float = 0.0,
    ):
        super().__init__()
        channel_mult = list(channel_mult)
        width = hidden_channels * channel_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, width, 3, padding=1)
        self.mid = _middle(width, norm_groups, dropout)
        up = []
        for level in reversed(range(len(channel_mult))):
            out_width = hidden_channels * channel_mult[level]
            widths = [(width if i == 0 else out_width, out_width) for i in range(num_res_blocks + 1)]
            up.append(
                Level(
                    widths,
                    attention=level == len(channel_mult) - 1,
                    resample=Upsample(out_width) if level != 0 else None,
                    norm_groups=norm_groups,
                    dropout=dropout,
                )
            )
            width = out_width
        self.up = nn.ModuleList(up)
        self.norm_out = nn.GroupNorm(norm_groups, width, eps=1e-6)
        self.conv_out = nn.Conv2d(width, out_channels, 3, padding=1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The output convolution's weight (adaptive GAN weighting reads its gradients)."""
        return self.conv_out.weight

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        hidden_states = self.conv_in(latents)
        for block in self.mid:
            hidden_states = block(hidden_states)
        for level in self.up:
            hidden_states = level(hidden_states)
        return self.conv_out(F.silu(self.norm_out(hidden_states)))
