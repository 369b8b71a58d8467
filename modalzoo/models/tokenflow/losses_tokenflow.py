"""TokenFlow's training-only networks: the frozen semantic teacher and the LPIPS perceptual net.

They are not part of the tokenizer (not in its state dict, not trained, not saved); the model
holds them outside its module tree once `TokenFlowTokenizer.set_loss_networks` is called, or
loads them lazily in a training `forward` from `config.semantic_teacher` (a transformers folder
or Hub repo, read with `from_pretrained`) and `config.perceptual_network`.

The original (`tokenflow/tokenizer/vq_loss.py`) regresses the semantic decoder's output onto:

* CLIP: `encode_image(x, return_all_tokens=True) @ visual.proj`, i.e. the post-LayerNorm patch
  tokens of the last layer through the 512-d projection (here
  `CLIPVisionModelWithProjection`: `visual_projection(post_layernorm(h))[:, 1:]`), with the
  CLIP mean/std normalisation of [0, 1] pixels;
* SigLIP: `hidden_states[-2]` of `SiglipVisionModel`, pixels mapped to [-1, 1] by mean/std 0.5;

with the loss `mean(1 - cos(reconstruction, target))` over tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _unit_pixels(pixel_values: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], clamped, as the original's scaling layers."""
    return ((pixel_values.float() + 1.0) * 127.5).clamp(0, 255.0) / 255.0


class SemanticTeacher(nn.Module):
    """A frozen teacher tower giving the semantic loss target `[B, N, D]` for [-1, 1] pixels."""

    def __init__(self, tower: nn.Module, teacher: str):
        super().__init__()
        if teacher not in ("clip", "siglip"):
            raise ValueError(f"teacher must be 'clip' or 'siglip', got {teacher!r}")
        self.tower = tower.eval().requires_grad_(False)
        self.teacher = teacher
        mean, std = (CLIP_MEAN, CLIP_STD) if teacher == "clip" else ((0.5,) * 3, (0.5,) * 3)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str, teacher: str, **kwargs) -> SemanticTeacher:
        """`teacher="clip"`: a `CLIPVisionModelWithProjection` (or full CLIP) checkpoint;
        `teacher="siglip"`: a `SiglipVisionModel` (or full SigLIP) checkpoint."""
        if teacher == "clip":
            from transformers import CLIPVisionModelWithProjection as tower_class
        else:
            from transformers import SiglipVisionModel as tower_class
        return cls(tower_class.from_pretrained(name_or_path, **kwargs), teacher)

    def train(self, mode: bool = True):
        # always frozen and in eval mode, whatever the surrounding model does
        return super().train(False)

    @torch.no_grad()
    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixels = (_unit_pixels(pixel_values) - self.mean) / self.std
        pixels = pixels.to(next(self.tower.parameters()).dtype)
        size = self.tower.config.image_size
        interpolate = tuple(pixels.shape[-2:]) != (size, size)
        if self.teacher == "clip":
            output = self.tower(pixel_values=pixels, interpolate_pos_encoding=interpolate, output_hidden_states=True)
            hidden = output.hidden_states[-1]
            vision = getattr(self.tower, "vision_model", self.tower)
            tokens = vision.post_layernorm(hidden) if hasattr(vision, "post_layernorm") else hidden
            return self.tower.visual_projection(tokens)[:, 1:]
        output = self.tower(pixel_values=pixels, interpolate_pos_encoding=interpolate, output_hidden_states=True)
        return output.hidden_states[-2]


def semantic_cosine_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean over tokens of 1 - cos(reconstruction, target) (the original's
    `calculate_clip_rec_loss`)."""
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"the semantic reconstruction {tuple(reconstruction.shape)} and the teacher features "
            f"{tuple(target.shape)} differ: is the teacher the one this model was configured for?"
        )
    target = target.float() / target.float().norm(dim=-1, keepdim=True)
    reconstruction = reconstruction.float() / reconstruction.float().norm(dim=-1, keepdim=True)
    return (1 - (target * reconstruction).sum(-1)).mean()


class PerceptualLoss(nn.Module):
    """LPIPS (torchmetrics' implementation of Zhang et al.) on [-1, 1] pixels, frozen; VGG by
    default as the original. `pretrained=False` builds it with random weights and no download
    (tests)."""

    def __init__(self, network: str = "vgg", *, pretrained: bool = True):
        super().__init__()
        try:
            from torchmetrics.functional.image.lpips import _LPIPS
        except ImportError as error:  # pragma: no cover - depends on the installed extras
            raise ImportError("the perceptual loss needs torchmetrics: pip install 'modalzoo[eval]'") from error
        self.lpips = _LPIPS(pretrained=pretrained, net=network, pnet_rand=not pretrained).requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, reconstruction: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        return self.lpips(reconstruction.float(), reference.float(), normalize=False).mean()
