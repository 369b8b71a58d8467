"""The MaskGIT-VQGAN pixel decoder (Google's MaskGIT tokenizer as ported by open-muse), which
legacy TiTok and One-D-Piece checkpoints carry as their final pixel stage.

Faithful to the checkpoints, quirks included:

* convolutions use TensorFlow "SAME" padding (`SameConv2d`); for the stride-1 odd kernels of
  this decoder it is the symmetric `k // 2`, and the asymmetric TF split is kept for the rest;
* when a residual block changes width, its 1x1 `shortcut` is applied to the block's *output*,
  not to its input (`h + shortcut(h)`): a bug of the open-muse port that the released weights
  were trained with;
* GroupNorm(`norm_groups`, eps 1e-6); nearest-neighbour 2x upsampling followed by a 3x3 conv.

`up` is stored in the order the blocks run (lowest resolution first); the original stores it
reversed and iterates it reversed, which converters undo by index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .fast_conv import upsample_nearest2x_conv3x3


def same_padding(size: int, kernel_size: int, stride: int, dilation: int) -> tuple[int, int]:
    """TF "SAME": total padding so that output = ceil(size / stride), the odd pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` with TensorFlow "SAME" padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, bias: bool = True):
        # Stride 1 with an odd kernel pads k // 2 on every side whatever the input size, which the
        # convolution itself can do without a padded copy of the input.
        self._static = stride == 1 and kernel_size % 2 == 1
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2 if self._static else 0, bias=bias
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        if not self._static:
            top, bottom = same_padding(hidden_states.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
            left, right = same_padding(hidden_states.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
            if top or bottom or left or right:
                hidden_states = F.pad(hidden_states, [left, right, top, bottom])
        return super().forward(hidden_states)


class MaskGitResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, *, norm_groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(norm_groups, in_channels, eps=1e-6)
        self.conv1 = SameConv2d(in_channels, out_channels, 3, bias=False)
        self.norm2 = nn.GroupNorm(norm_groups, out_channels, eps=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = SameConv2d(out_channels, out_channels, 3, bias=False)
        # out -> out, not in -> out: it maps the block output (see the module docstring)
        self.shortcut = SameConv2d(out_channels, out_channels, 1, bias=False) if in_channels != out_channels else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Without autograd, activations are overwritten in place: at full resolution each fresh
        # tensor is tens of MB, and allocating it costs as much as the activation itself.
        inplace = not torch.is_grad_enabled()
        residual = hidden_states
        hidden_states = self.conv1(F.silu(self.norm1(hidden_states), inplace=inplace))
        hidden_states = self.conv2(self.dropout(F.silu(self.norm2(hidden_states), inplace=inplace)))
        if self.shortcut is not None:
            residual = self.shortcut(hidden_states)
        return hidden_states.add_(residual) if inplace else hidden_states + residual


class MaskGitUpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_res_blocks: int, *, upsample: bool, norm_groups: int, dropout: float):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            MaskGitResnetBlock(in_channels if i == 0 else out_channels, out_channels, norm_groups=norm_groups, dropout=dropout)
            for i in range(num_res_blocks)
        )
        self.upsample_conv = SameConv2d(out_channels, out_channels, 3) if upsample else None

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            hidden_states = block(hidden_states)
        if self.upsample_conv is not None:
            hidden_states = upsample_nearest2x_conv3x3(hidden_states, self.upsample_conv)
        return hidden_states


class MaskGitVQGANDecoder(nn.Module):
    """`[B, z_channels, h, w]` latents -> `[B, out_channels, h * 2**(L-1), w * 2**(L-1)]`.

    `channel_mult` is listed from full resolution down (L = len(channel_mult) levels), as in the
    original config: level i has `hidden_channels * channel_mult[i]` channels.
    """

    def __init__(
        self,
        *,
        z_channels: int = 256,
        out_channels: int = 3,
        hidden_channels: int = 128,
        channel_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        norm_groups: int = 32,
        dropout: float = 0.0,
    ):
        super().__init__()
        channel_mult = list(channel_mult)
        levels = len(channel_mult)
        width = hidden_channels * channel_mult[-1]
        self.conv_in = SameConv2d(z_channels, width, 3)
        self.mid = nn.ModuleList(
            MaskGitResnetBlock(width, width, norm_groups=norm_groups, dropout=dropout) for _ in range(num_res_blocks)
        )
        up = []
        for level in reversed(range(levels)):
            out_width = hidden_channels * channel_mult[level]
            up.append(
                MaskGitUpBlock(
                    width, out_width, num_res_blocks, upsample=level != 0, norm_groups=norm_groups, dropout=dropout
                )
            )
            width = out_width
        self.up = nn.ModuleList(up)
        self.norm_out = nn.GroupNorm(norm_groups, width, eps=1e-6)
        self.conv_out = SameConv2d(width, out_channels, 3)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        # Channels-last activations: oneDNN's 3x3 convolutions over 128 channels at full
        # resolution run about 20% faster in it (the weights stay NCHW; PyTorch follows the input).
        hidden_states = self.conv_in(latents.contiguous(memory_format=torch.channels_last))
        for block in self.mid:
            hidden_states = block(hidden_states)
        for block in self.up:
            hidden_states = block(hidden_states)
        pixels = self.conv_out(F.silu(self.norm_out(hidden_states), inplace=not torch.is_grad_enabled()))
        return pixels.contiguous()
