"""SEANet encoder and decoder (EnCodec's convolutional codec halves) from transformers'
`EncodecEncoder` / `EncodecDecoder`.

The EnCodec-derived originals (WavTokenizer, SpeechTokenizer / DM-Codec, ...) vendor Meta's
`SEANetEncoder`; transformers' `EncodecEncoder` computes the same function (verified bit-exact
against WavTokenizer's copy) with the same module order, so checkpoints map by renaming:
`model.{i}.conv.conv.weight_{g,v}` -> `layers.{i}.conv.parametrizations.weight.original{0,1}`.

SpeechTokenizer and DM-Codec end their encoder with a *bidirectional* LSTM (`bidirectional_lstm`):
its output has twice the channels, the skip connection repeats the input along channels, and
the last convolution reads the doubled width. transformers has no such option, so that one
layer (and the conv after it) is swapped for `SEANetBiLSTM` / a wider `EncodecConv1d`; every
other module is transformers' own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import torch
from transformers import EncodecConfig
from torch import nn
from transformers.models.encodec.modeling_encodec import EncodecConv1d, EncodecDecoder, EncodecEncoder, EncodecLSTM

from ..modeling_utils import ComputedBuffers

__all__ = ["SEANetBiLSTM", "SEANetDecoder", "SEANetEncoder", "seanet_key_from_original"]


def _encodec_config(**kwargs) -> EncodecConfig:
    return EncodecConfig(norm_type="weight_norm", **kwargs)


def _conv_buffers(root: nn.Module) -> dict[str, torch.Tensor]:
    # Each EncodecConv1d keeps its stride / effective kernel / total padding as non-persistent
    # buffers, which `from_pretrained` never loads.
    buffers = {}
    for name, module in root.named_modules():
        if isinstance(module, EncodecConv1d):
            conv = module.conv
            stride = torch.tensor(conv.stride[0], dtype=torch.int64)
            kernel_size = torch.tensor((conv.kernel_size[0] - 1) * conv.dilation[0] + 1, dtype=torch.int64)
            buffers[f"{name}.stride"] = stride
            buffers[f"{name}.kernel_size"] = kernel_size
            buffers[f"{name}.padding_total"] = kernel_size - stride
    return buffers


class SEANetBiLSTM(nn.Module):
    """SpeechTokenizer's `SLSTM(bidirectional=True)`: `[B, C, T]` -> `[B, 2C, T]`, with the input
    repeated along channels as the skip connection."""

    def __init__(self, dimension: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dimension, dimension, num_layers, bidirectional=True)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = hidden_states.permute(2, 0, 1)
        output = self.lstm(hidden_states)[0] + hidden_states.repeat(1, 1, 2)
        return output.permute(1, 2, 0)


class SEANetEncoder(EncodecEncoder, ComputedBuffers):
    """An `EncodecEncoder` built from the argument names of Meta's `SEANetEncoder`.

    `ratios` are given as SEANet does (decoder order); the encoder applies them reversed, so
    `(8, 5, 4, 2)` downsamples by 2, 4, 5 and then 8. The total stride (`hop_length`) is their product. Input
    `[B, channels, T]` -> `[B, dimension, ceil(T / stride)]`.
    """

    def __init__(
        self,
        *,
        channels: int = 1,
        dimension: int = 512,
        num_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        num_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        num_lstm_layers: int = 2,
        causal: bool = False,
        pad_mode: str = "reflect",
        true_skip: bool = False,
        bidirectional_lstm: bool = False,
    ):
        config = _encodec_config(
            audio_channels=channels,
            hidden_size=dimension,
            num_filters=num_filters,
            upsampling_ratios=list(ratios),
            num_residual_layers=num_residual_layers,
            kernel_size=kernel_size,
            last_kernel_size=last_kernel_size,
            residual_kernel_size=residual_kernel_size,
            dilation_growth_rate=dilation_base,
            compress=compress,
            num_lstm_layers=num_lstm_layers,
            use_causal_conv=causal,
            pad_mode=pad_mode,
            use_conv_shortcut=not true_skip,
        )
        super().__init__(config)
        self.hop_length = math.prod(ratios)
        if bidirectional_lstm:
            # layers end with [..., LSTM, ELU, conv]: widen the LSTM and the conv reading it
            width = num_filters * 2 ** len(ratios)
            self.layers[-3] = SEANetBiLSTM(width, num_lstm_layers)
            self.layers[-1] = EncodecConv1d(config, 2 * width, dimension, last_kernel_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # Before the LSTM every layer sees one item at a time and is memory-bound at the audio
        # rate; run item by item, its activations stay small (a batch's are fresh multi-MB
        # allocations whose page faults cost as much as the arithmetic). The LSTM and the
        # layers after it, at the frame rate, take the whole batch.
        lstm = next(i for i, layer in enumerate(self.layers) if isinstance(layer, (EncodecLSTM, SEANetBiLSTM)))
        items = []
        for item in hidden_states.split(1):
            for layer in self.layers[:lstm]:
                item = layer(item)
            items.append(item)
        hidden_states = torch.cat(items)
        for layer in self.layers[lstm:]:
            hidden_states = layer(hidden_states)
        return hidden_states

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        return _conv_buffers(self)


class SEANetDecoder(EncodecDecoder, ComputedBuffers):
    """An `EncodecDecoder` built from the argument names of Meta's `SEANetDecoder`: `[B,
    dimension, F]` -> `[B, channels, F * prod(ratios)]`, upsampling by `ratios` in order."""

    def __init__(
        self,
        *,
        channels: int = 1,
        dimension: int = 512,
        num_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        num_residual_layers: int = 1,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        compress: int = 2,
        num_lstm_layers: int = 2,
        causal: bool = False,
        pad_mode: str = "reflect",
        true_skip: bool = False,
        trim_right_ratio: float = 1.0,
    ):
        config = _encodec_config(
            audio_channels=channels,
            hidden_size=dimension,
            num_filters=num_filters,
            upsampling_ratios=list(ratios),
            num_residual_layers=num_residual_layers,
            kernel_size=kernel_size,
            last_kernel_size=last_kernel_size,
            residual_kernel_size=residual_kernel_size,
            dilation_growth_rate=dilation_base,
            compress=compress,
            num_lstm_layers=num_lstm_layers,
            use_causal_conv=causal,
            pad_mode=pad_mode,
            use_conv_shortcut=not true_skip,
            trim_right_ratio=trim_right_ratio,
        )
        super().__init__(config)
        self.hop_length = math.prod(ratios)

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        return _conv_buffers(self)


_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}


def seanet_key_from_original(key: str) -> str:
    """Maps a key relative to an original `SEANetEncoder` / `SEANetDecoder`
    (`model.3.block.1.conv.conv.weight_g`, `model.3.convtr.convtr.weight_v`,
    `model.13.lstm.weight_ih_l0_reverse`) to the `EncodecEncoder` / `EncodecDecoder` naming."""
    match = re.fullmatch(r"model\.(\d+)\.(.+)", key)
    if match is None:
        raise KeyError(f"not a SEANet key: {key!r}")
    index, rest = match.groups()
    conv = re.fullmatch(r"((?:block\.\d+\.|shortcut\.)?)(?:conv\.conv|convtr\.convtr)\.(weight_g|weight_v|bias)", rest)
    if conv is not None:
        prefix, name = conv.groups()
        return f"layers.{index}.{prefix}conv.{_WEIGHT_NORM.get(name, name)}"
    if re.fullmatch(r"lstm\.(weight|bias)_(ih|hh)_l\d+(?:_reverse)?", rest):
        return f"layers.{index}.{rest}"
    raise KeyError(f"unmapped SEANet key: {key!r}")
