"""GAN discriminators the families train against, by name.

Each returns `(logits, features)`: `logits` a list of tensors (one per sub-discriminator),
`features` a list (per sub-discriminator) of hidden feature maps for feature matching.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

DISCRIMINATORS: dict[str, Callable[..., nn.Module]] = {}


def register_discriminator(name: str):
    def wrap(factory):
        DISCRIMINATORS[name] = factory
        return factory

    return wrap


def create_discriminator(name: str, **kwargs) -> nn.Module:
    if name not in DISCRIMINATORS:
        raise KeyError(f"unknown discriminator {name!r}; known: {', '.join(sorted(DISCRIMINATORS))}")
    return DISCRIMINATORS[name](**kwargs)


@register_discriminator("patchgan")
class NLayerDiscriminator(nn.Module):
    """PatchGAN (pix2pix / taming-transformers `NLayerDiscriminator`): strided 4x4 convs with
    BatchNorm-free normalisation (GroupNorm here, so that DDP needs no SyncBatchNorm and a batch
    of one trains), LeakyReLU 0.2, one logit per patch. TiTok and MaskGIT-VQGAN train against it."""

    def __init__(self, *, in_channels: int = 3, base_channels: int = 64, num_layers: int = 3, num_groups: int = 32):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(in_channels, base_channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True))
        ]
        channels = base_channels
        for index in range(1, num_layers + 1):
            out_channels = base_channels * min(2**index, 8)
            stride = 2 if index < num_layers else 1
            layers.append(
                nn.Sequential(
                    nn.Conv2d(channels, out_channels, 4, stride=stride, padding=1, bias=False),
                    nn.GroupNorm(min(num_groups, out_channels), out_channels),
                    nn.LeakyReLU(0.2, True),
                )
            )
            channels = out_channels
        self.layers = nn.ModuleList(layers)
        self.head = nn.Conv2d(channels, 1, 4, stride=1, padding=1)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        # taming's weights_init: N(0, 0.02) convs, N(1, 0.02) norm scales
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, 0.02)
        elif isinstance(module, nn.GroupNorm):
            nn.init.normal_(module.weight, 1.0, 0.02)
            nn.init.zeros_(module.bias)

    def forward(self, values: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        features = []
        hidden = values
        for layer in self.layers:
            hidden = layer(hidden)
            features.append(hidden)
        return [self.head(hidden)], [features]


@register_discriminator("multi_frequency")
def multi_frequency_discriminator(**kwargs) -> nn.Module:
    """X-Codec's MultiFrequencyDiscriminator (2-D convs over mel-warped STFT magnitude and dB at
    several hops), defined with the family's losses in `modalzoo.models.xcodec`."""
    from modalzoo.models.xcodec import MultiFrequencyDiscriminator

    return MultiFrequencyDiscriminator(**kwargs)


@register_discriminator("mpd_msd_msstft")
def mpd_msd_msstft_discriminator(**kwargs) -> nn.Module:
    """DM-Codec's (and SpeechTokenizer's) HiFi-GAN multi-period + multi-scale and EnCodec
    multi-scale STFT discriminators as one module, defined in `modalzoo.models.dm_codec`."""
    from modalzoo.models.dm_codec.discriminators_dm_codec import DMCodecDiscriminator

    return DMCodecDiscriminator(**kwargs)


# ----- Vocos / WavTokenizer ---------------------------------------------------------------------------------
def _weight_norm(conv: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(conv)


class VocosPeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator as Vocos writes it (WavTokenizer decoder/discriminators.py
    `DiscriminatorP`): the waveform folded into `period` columns, five (5 x 1) convolutions with
    stride 3 (32, 128, 512, 1024, 1024 channels, scaled by `width`), LeakyReLU 0.1, a (3 x 1)
    output convolution. Feature maps: every hidden layer but the first, then the output."""

    def __init__(self, period: int, *, width: float = 1.0, kernel_size: int = 5, stride: int = 3):
        super().__init__()
        self.period = period
        sizes = [1] + [max(1, round(c * width)) for c in (32, 128, 512, 1024, 1024)]
        pad = (kernel_size // 2, 0)
        self.convs = nn.ModuleList(
            _weight_norm(nn.Conv2d(i, o, (kernel_size, 1), (stride if index < 4 else 1, 1), padding=pad))
            for index, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))
        )
        self.conv_post = _weight_norm(nn.Conv2d(sizes[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        batch, channels, length = audio.shape
        if length % self.period:
            audio = nn.functional.pad(audio, (0, self.period - length % self.period), "reflect")
        hidden = audio.view(batch, channels, -1, self.period)
        features = []
        for index, conv in enumerate(self.convs):
            hidden = nn.functional.leaky_relu(conv(hidden), 0.1)
            if index > 0:
                features.append(hidden)
        hidden = self.conv_post(hidden)
        features.append(hidden)
        return hidden.flatten(1), features


class VocosResolutionDiscriminator(nn.Module):
    """UnivNet's resolution discriminator as Vocos writes it (`DiscriminatorR`): the magnitude
    STFT (rectangular window, as the original: `window=None`) at one (n_fft, hop, win)
    resolution, five 2-D convolutions of `channels` channels, LeakyReLU 0.1, a 3 x 3 output.
    Feature maps: every hidden layer, then the output."""

    def __init__(self, resolution: tuple[int, int, int], *, channels: int = 64):
        super().__init__()
        self.resolution = tuple(int(v) for v in resolution)
        plan = [((7, 5), (2, 2), (3, 2)), ((5, 3), (2, 1), (2, 1)), ((5, 3), (2, 2), (2, 1)), (3, (2, 1), 1), (3, (2, 2), 1)]
        self.convs = nn.ModuleList(
            _weight_norm(nn.Conv2d(1 if index == 0 else channels, channels, kernel, stride=stride, padding=padding))
            for index, (kernel, stride, padding) in enumerate(plan)
        )
        self.conv_post = _weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        n_fft, hop_length, win_length = self.resolution
        # fp32 FFT (autocast cannot run complex bf16/fp16 FFTs of these sizes); the original's
        # window=None is this all-ones window, spelled out to keep torch from warning about it
        window = torch.ones(win_length, device=audio.device)
        return torch.stft(
            audio.float(), n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window, center=True,
            return_complex=True,
        ).abs()

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        hidden = self.spectrogram(audio[:, 0]).unsqueeze(1)
        features = []
        for conv in self.convs:
            hidden = nn.functional.leaky_relu(conv(hidden), 0.1)
            features.append(hidden)
        hidden = self.conv_post(hidden)
        features.append(hidden)
        return hidden.flatten(1), features


@register_discriminator("vocos_mpd_mrd")
class VocosMultiPeriodResolutionDiscriminator(nn.Module):
    """WavTokenizer's (Vocos') multi-period discriminator (periods 2, 3, 5, 7, 11) and
    multi-resolution discriminator ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512)) as one
    module in the trainer's layout: `forward(audio [B, 1, T])` -> (8 logits tensors: the 5 periods
    then the 3 resolutions, 8 feature-map lists). Unconditional, as WavTokenizer trains them
    (`num_embeddings=None`). `width` scales the period discriminators' channels and
    `mrd_channels` the resolution discriminators' (CPU test recipes use less than 1.0 / 64).

    The original's losses (decoder/experiment.py, decoder/loss.py) are hinge losses with the
    generator side `relu(1 - D(G(z)))` (recipe `loss: hinge_relu`), averaged within each of the
    two discriminators and added (mrd_loss_coeff 1); feature matching is the L1 sum over each
    discriminator's maps divided by its number of sub-discriminators. The shared trainer averages
    over all 8 logits and all 43 maps instead, so recipes weight `adversarial` by 2 and
    `feature_matching` by 10.75 (43 / 4): the same totals when every sub-discriminator's term is
    equal, a 1/4 per-term weight instead of 1/5 (MPD) and 1/3 (MRD) otherwise. The original's
    third discriminator (DAC's multi-band one) is not part of this module."""

    PERIODS = (2, 3, 5, 7, 11)
    RESOLUTIONS = ((1024, 256, 1024), (2048, 512, 2048), (512, 128, 512))

    def __init__(self, *, width: float = 1.0, mrd_channels: int = 64, periods=PERIODS, resolutions=RESOLUTIONS):
        super().__init__()
        self.periods = nn.ModuleList(VocosPeriodDiscriminator(int(p), width=width) for p in periods)
        self.resolutions = nn.ModuleList(VocosResolutionDiscriminator(r, channels=mrd_channels) for r in resolutions)

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        if audio.ndim != 3 or audio.shape[1] != 1:
            raise ValueError(f"vocos_mpd_mrd expects audio [batch, 1, samples], got {tuple(audio.shape)}")
        logits, features = [], []
        for discriminator in (*self.periods, *self.resolutions):
            logit, maps = discriminator(audio)
            logits.append(logit)
            features.append(maps)
        return logits, features
