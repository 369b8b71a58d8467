"""DM-Codec's three discriminators (`codec/discriminators.py`, trained together in `trainer.py`):
HiFi-GAN's multi-period (periods 2, 3, 5, 7, 11) and multi-scale (raw, x2 and x4 average-pooled;
the first spectrally normalised) discriminators, and EnCodec's multi-scale STFT discriminator
(32 filters, FFT 1024/2048/512/256/128). As one module with the `modalzoo.training`
discriminator layout: `forward(audio [B, 1, T])` -> (13 logits tensors, 13 feature-map lists).

`width` scales every hidden channel count (1.0 is the original; CPU test recipes use less).
The original's losses sum over the 13 sub-discriminators and its feature matching is 2 x the sum
over all 79 feature maps, where the shared trainer averages: recipes weight `adversarial` by 13
and `feature_matching` by 158 to get the same generator objective.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchaudio
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

NUM_LOGITS = 13  # 5 periods + 3 scales + 5 STFT resolutions
NUM_FEATURE_MAPS = 79  # 5 x 6 + 3 x 8 + 5 x 5


def _channels(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, width: float = 1.0):
        super().__init__()
        self.period = period
        sizes = [1] + [_channels(c, width) for c in (32, 128, 512, 1024)]
        convs = [nn.Conv2d(i, o, (5, 1), (3, 1), padding=(2, 0)) for i, o in zip(sizes[:-1], sizes[1:])]
        convs.append(nn.Conv2d(sizes[-1], sizes[-1], (5, 1), 1, padding=(2, 0)))
        self.convs = nn.ModuleList(weight_norm(conv) for conv in convs)
        self.conv_post = weight_norm(nn.Conv2d(sizes[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor):
        batch, channels, length = audio.shape
        if length % self.period:
            audio = F.pad(audio, (0, self.period - length % self.period), "reflect")
        hidden = audio.view(batch, channels, -1, self.period)
        features = []
        for conv in self.convs:
            hidden = F.leaky_relu(conv(hidden), 0.1)
            features.append(hidden)
        hidden = self.conv_post(hidden)
        features.append(hidden)
        return hidden.flatten(1), features


class ScaleDiscriminator(nn.Module):
    def __init__(self, width: float = 1.0, spectral: bool = False):
        super().__init__()
        norm = spectral_norm if spectral else weight_norm
        # (out channels, kernel, stride, groups)
        plan = [(128, 15, 1, 1), (128, 41, 2, 4), (256, 41, 2, 16), (512, 41, 4, 16), (1024, 41, 4, 16),
                (1024, 41, 1, 16), (1024, 5, 1, 1)]
        convs, channels = [], 1
        for out_channels, kernel, stride, groups in plan:
            out_channels = _channels(out_channels, width)
            groups = math.gcd(math.gcd(channels, out_channels), groups)
            convs.append(norm(nn.Conv1d(channels, out_channels, kernel, stride, groups=groups, padding=kernel // 2)))
            channels = out_channels
        self.convs = nn.ModuleList(convs)
        self.conv_post = norm(nn.Conv1d(channels, 1, 3, 1, padding=1))

    def forward(self, audio: torch.Tensor):
        features = []
        hidden = audio
        for conv in self.convs:
            hidden = F.leaky_relu(conv(hidden), 0.1)
            features.append(hidden)
        hidden = self.conv_post(hidden)
        features.append(hidden)
        return hidden.flatten(1), features


class STFTDiscriminator(nn.Module):
    def __init__(self, filters: int, n_fft: int, hop_length: int, win_length: int):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        kernel, stride = (3, 9), (1, 2)
        convs = [nn.Conv2d(2, filters, kernel, padding=(1, 4))]  # the original leaves this one un-normalised
        for dilation in (1, 2, 4):
            convs.append(weight_norm(nn.Conv2d(filters, filters, kernel, stride, dilation=(dilation, 1), padding=(dilation, 4))))
        convs.append(weight_norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(convs)
        self.conv_post = weight_norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, audio: torch.Tensor):
        window = torch.hann_window(self.win_length, device=audio.device, dtype=torch.float32)
        spectrum = torchaudio.functional.spectrogram(
            audio.float(), pad=0, window=window, n_fft=self.n_fft, hop_length=self.hop_length,
            win_length=self.win_length, power=None, normalized=True, center=False,
        )  # [B, 1, freq, frames], complex
        hidden = torch.cat([spectrum.real, spectrum.imag], dim=1).transpose(2, 3).to(audio.dtype)
        features = []
        for conv in self.convs:
            hidden = F.leaky_relu(conv(hidden), 0.2)
            features.append(hidden)
        return self.conv_post(hidden), features


class DMCodecDiscriminator(nn.Module):
    def __init__(self, *, width: float = 1.0, stft_filters: int = 32,
                 n_ffts=(1024, 2048, 512, 256, 128), hop_lengths=(256, 512, 128, 64, 32)):
        super().__init__()
        self.periods = nn.ModuleList(PeriodDiscriminator(p, width) for p in (2, 3, 5, 7, 11))
        self.scales = nn.ModuleList(ScaleDiscriminator(width, spectral=index == 0) for index in range(3))
        self.pool = nn.AvgPool1d(4, 2, padding=2)
        filters = _channels(stft_filters, width)
        self.stfts = nn.ModuleList(STFTDiscriminator(filters, n, h, n) for n, h in zip(n_ffts, hop_lengths))
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # torch's default conv init, as the original (its HiFi-GAN `init_weights` is never applied)
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            module.reset_parameters()

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, features = [], []
        for discriminator in self.periods:
            output, maps = discriminator(audio)
            logits.append(output)
            features.append(maps)
        scaled = audio
        for index, discriminator in enumerate(self.scales):
            if index:
                scaled = self.pool(scaled)
            output, maps = discriminator(scaled)
            logits.append(output)
            features.append(maps)
        for discriminator in self.stfts:
            output, maps = discriminator(audio)
            logits.append(output)
            features.append(maps)
        return logits, features
