"""Adversarial losses shared by the families: discriminator and generator sides of the hinge
(VQGAN: the generator minimises -D(G(z)); `hinge_relu`, Vocos / WavTokenizer: relu(1 - D(G(z)))),
least-squares and non-saturating GAN losses, feature matching, LeCam regularisation and the
VQGAN adaptive weight.

Discriminators return a list of logits tensors (one per sub-discriminator; a PatchGAN returns
one) and optionally a list of feature-map lists for feature matching.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def discriminator_loss(kind: str, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
    total = 0.0
    for real, fake in zip(real_logits, fake_logits):
        real, fake = real.float(), fake.float()
        if kind == "hinge":
            total = total + 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())
        elif kind == "hinge_relu":
            total = total + F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean()
        elif kind == "ls":
            total = total + ((1.0 - real) ** 2).mean() + (fake**2).mean()
        elif kind == "vanilla":
            total = total + 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
        else:
            raise ValueError(f"unknown GAN loss {kind!r}")
    return total / len(real_logits)


def generator_loss(kind: str, fake_logits: list[torch.Tensor]) -> torch.Tensor:
    total = 0.0
    for fake in fake_logits:
        fake = fake.float()
        if kind == "hinge":
            total = total - fake.mean()
        elif kind == "hinge_relu":
            # Vocos / WavTokenizer / MelGAN: the generator's hinge stops at margin 1 as well
            total = total + F.relu(1.0 - fake).mean()
        elif kind == "ls":
            total = total + ((1.0 - fake) ** 2).mean()
        elif kind == "vanilla":
            total = total + F.softplus(-fake).mean()
        else:
            raise ValueError(f"unknown GAN loss {kind!r}")
    return total / len(fake_logits)


def feature_matching_loss(real_features: list[list[torch.Tensor]], fake_features: list[list[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 distance between the discriminators' hidden features on real and fake input."""
    terms = [
        F.l1_loss(fake.float(), real.detach().float())
        for real_maps, fake_maps in zip(real_features, fake_features)
        for real, fake in zip(real_maps, fake_maps)
    ]
    return torch.stack(terms).mean()


class LeCamEMA(nn.Module):
    """LeCam regularisation (Tseng et al. 2021), as TiTok's stage 2 uses it: running means of
    the discriminator's real and fake logits, and a penalty on logits that cross them. The
    running means are buffers, so checkpoints carry them."""

    def __init__(self, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.register_buffer("real_mean", torch.zeros(()))
        self.register_buffer("fake_mean", torch.zeros(()))

    @torch.no_grad()
    def update(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> None:
        means = torch.stack(
            [torch.stack([r.float().mean() for r in real_logits]).mean(), torch.stack([f.float().mean() for f in fake_logits]).mean()]
        )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # every rank keeps the global batch's running means (equal per-rank batches)
            torch.distributed.all_reduce(means)
            means /= torch.distributed.get_world_size()
        real, fake = means
        self.real_mean.mul_(self.decay).add_(real, alpha=1 - self.decay)
        self.fake_mean.mul_(self.decay).add_(fake, alpha=1 - self.decay)

    def penalty(self, real_logits: list[torch.Tensor], fake_logits: list[torch.Tensor]) -> torch.Tensor:
        terms = [
            F.relu(real.float() - self.fake_mean).pow(2).mean() + F.relu(self.real_mean - fake.float()).pow(2).mean()
            for real, fake in zip(real_logits, fake_logits)
        ]
        return torch.stack(terms).mean()


def adaptive_weight(
    reconstruction_loss: torch.Tensor, adversarial_loss: torch.Tensor, last_layer: torch.Tensor, *, maximum: float = 1e4
) -> torch.Tensor:
    """VQGAN's balance: |grad rec| / |grad adv| at the decoder's last layer, clamped to
    [0, maximum] and detached."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    adv_grad = torch.autograd.grad(adversarial_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.float().norm() / (adv_grad.float().norm() + 1e-4)
    return weight.clamp(0.0, maximum).detach()
