"""The perceptual term of the TiTok / MaskGIT recipes (1d-tokenizer
modeling/modules/perceptual_loss.py, `convnext_s`): reconstruction and input resized to 224 px
(bilinear, antialiased), ImageNet-normalised, through torchvision's ConvNeXt-S (IMAGENET1K_V1,
frozen, eval mode), and the mean squared error between the two sets of class logits.

The weights come from the local torch hub cache only (`torch.hub.get_dir()/checkpoints`, where
`torchvision.models.convnext_small(weights=...)` stores them) or from a path in the recipe:
training never downloads. Absent weights are a clear error naming the file and how to get it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def cached_convnext_small_weights() -> Path:
    from torchvision.models import ConvNeXt_Small_Weights

    url = ConvNeXt_Small_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


class ConvNeXtPerceptualLoss(nn.Module):
    """`loss(reconstruction, target)` on `[B, 3, H, W]` images in [0, 1]. `weights`: a state-dict
    file (default: the torch hub cache); `pretrained=False` keeps torchvision's random init
    (tests only: a random network measures nothing perceptual)."""

    def __init__(self, *, weights: str | Path | None = None, pretrained: bool = True):
        super().__init__()
        from torchvision.models import convnext_small

        self.network = convnext_small(weights=None)
        if pretrained:
            path = Path(weights) if weights else cached_convnext_small_weights()
            if not path.is_file():
                raise FileNotFoundError(
                    f"recipe: the perceptual term needs torchvision's ConvNeXt-S ImageNet weights at {path}; training "
                    "never downloads: fetch them once where a network is reachable (python -c \"import torchvision; "
                    "torchvision.models.convnext_small(weights='IMAGENET1K_V1')\"), set perceptual.weights to a copy, "
                    "or drop the term (perceptual=null)"
                )
            self.network.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.network.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD)[None, :, None, None], persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # frozen statistics, as the original's self.eval() per call

    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        images = F.interpolate(images, size=224, mode="bilinear", align_corners=False, antialias=True)
        return self.network((images - self.mean.to(images.dtype)) / self.std.to(images.dtype))

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self._logits(reconstruction).float(), self._logits(target).float())
