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
