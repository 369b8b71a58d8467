"""The ConvNeXt-S perceptual term of the TiTok recipes: weights from the local cache only (a
clear error otherwise), zero on identical images, and weighted into the generator's loss."""

from __future__ import annotations

import math

import pytest
import torch

from modalzoo.training import Trainer, load_recipe
from modalzoo.training.perceptual import ConvNeXtPerceptualLoss


def test_missing_weights_are_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ConvNeXt-S ImageNet weights at .*absent\.pth.*never downloads"):
        ConvNeXtPerceptualLoss(weights=tmp_path / "absent.pth")


def test_zero_on_identical_images_and_positive_otherwise():
    torch.manual_seed(0)
    loss = ConvNeXtPerceptualLoss(pretrained=False)
    loss.train()
    assert not loss.network.training  # frozen statistics, as the original
    image = torch.rand(1, 3, 32, 32)
    assert loss(image, image).item() == 0.0
    assert loss(image.flip(-1), image).item() > 0.0


def test_perceptual_term_is_weighted_into_the_generator_loss(tmp_path):
    overrides = ["perceptual={pretrained: false}", "loss_weights.perceptual=0.1", "discriminator=null", "log_with=[csv]",
                 "num_samples=0", "eval_every=0", "data.eval_items=0", "data.batch_size=1", f"output_dir={tmp_path}"]  # fmt: skip
    trainer = Trainer(load_recipe("titok_tiny", overrides), resume=False)
    logs = trainer.train_step()
    assert trainer.loss_weights["perceptual"] == 0.1
    assert math.isfinite(logs["perceptual"]) and logs["perceptual"] > 0
    expected = sum(trainer.loss_weights[k] * logs[k] for k in ("reconstruction", "commitment", "codebook", "perceptual"))
    assert logs["loss"] == pytest.approx(expected, rel=1e-5)
    assert not any(p.requires_grad for p in trainer.perceptual.parameters())


def test_perceptual_term_is_for_images(tmp_path):
    with pytest.raises(ValueError, match="perceptual term is for images"):
        Trainer(load_recipe("wavtokenizer_tiny", ["perceptual={pretrained: false}", f"output_dir={tmp_path}"]), resume=False)
