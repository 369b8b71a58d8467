"""Vocos' (WavTokenizer's) multi-period + multi-resolution discriminators: layout, losses, the
adversarial path of the wavtokenizer-tiny recipe, and equality with the original module when a
WavTokenizer checkout is named by WAVTOKENIZER_CHECKOUT (measured here: identical logits and
feature maps, max difference 0.0, at full width)."""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest
import torch

from modalzoo.training import Trainer, load_recipe
from modalzoo.training.discriminators import create_discriminator
from modalzoo.training.losses import discriminator_loss, generator_loss


def test_layout_eight_logits_and_43_feature_maps():
    torch.manual_seed(0)
    discriminator = create_discriminator("vocos_mpd_mrd", width=1 / 32, mrd_channels=4)
    audio = torch.randn(2, 1, 4801)  # not a multiple of any period: reflect-padded per period
    logits, features = discriminator(audio)
    assert len(logits) == 8 and [len(maps) for maps in features] == [5] * 5 + [6] * 3
    # period p: ceil(4801 / p) rows -> 4 stride-3 layers; one logit column per period position
    for period, logit in zip((2, 3, 5, 7, 11), logits):
        rows = math.ceil(4801 / period)
        for _ in range(4):
            rows = (rows + 2 * 2 - 5) // 3 + 1
        assert logit.shape == (2, rows * period)
    with pytest.raises(ValueError, match=r"\[batch, 1, samples\]"):
        discriminator(audio[:, 0])


def test_hinge_relu_is_vocos_hinge():
    real, fake = [torch.tensor([0.5, 2.0])], [torch.tensor([-2.0, 0.5])]
    # discriminator: mean(relu(1 - r)) + mean(relu(1 + f)); generator: mean(relu(1 - f))
    assert discriminator_loss("hinge_relu", real, fake).item() == pytest.approx(0.25 + 0.75)
    assert generator_loss("hinge_relu", fake).item() == pytest.approx((3.0 + 0.5) / 2)
    assert generator_loss("hinge", fake).item() == pytest.approx(0.75)  # VQGAN's -mean(D)


def test_wavtokenizer_tiny_trains_against_mpd_mrd(tmp_path):
    overrides = ["log_with=[csv]", "num_samples=0", "eval_every=0", "data.eval_items=0", "data.batch_size=2",
                 "discriminator.start_step=1", f"output_dir={tmp_path}"]  # fmt: skip
    trainer = Trainer(load_recipe("wavtokenizer_tiny", overrides), resume=False)
    assert type(trainer.discriminator).__name__ == "VocosMultiPeriodResolutionDiscriminator"
    before = [p.detach().clone() for p in trainer.discriminator.parameters()]
    first = trainer.train_step()
    assert "discriminator" not in first  # warm-up: reconstruction terms only
    second = trainer.train_step()
    assert {"adversarial", "feature_matching", "discriminator"} <= set(second)
    assert all(math.isfinite(v) for v in second.values())
    assert trainer.loss_weights["adversarial"] == 2.0 and trainer.loss_weights["feature_matching"] == 10.75
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.discriminator.parameters()))


def _original_module():
    checkout = os.environ.get("WAVTOKENIZER_CHECKOUT")
    if not checkout or not (Path(checkout) / "decoder" / "discriminators.py").is_file():
        pytest.skip("set WAVTOKENIZER_CHECKOUT to a jishengpeng/WavTokenizer checkout to compare with the original")
    spec = importlib.util.spec_from_file_location("wavtokenizer_discriminators", Path(checkout) / "decoder" / "discriminators.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_equal_to_the_original_on_the_same_weights():
    original = _original_module()
    torch.manual_seed(0)
    mpd, mrd = original.MultiPeriodDiscriminator(), original.MultiResolutionDiscriminator()
    ours = create_discriminator("vocos_mpd_mrd")
    state = {}
    for prefix, module in (("periods.", mpd), ("resolutions.", mrd)):
        for key, value in module.state_dict().items():
            key = key.replace("discriminators.", "").replace("weight_g", "parametrizations.weight.original0")
            state[prefix + key.replace("weight_v", "parametrizations.weight.original1")] = value
    ours.load_state_dict(state, strict=True)
    audio = torch.randn(1, 1, 9600) * 0.3
    with torch.no_grad():
        logits, features = ours(audio)
        real_mp, _, maps_mp, _ = mpd(audio[:, 0], audio[:, 0])
        real_mr, _, maps_mr, _ = mrd(audio[:, 0], audio[:, 0])
    for ours_logit, reference in zip(logits, real_mp + real_mr):
        torch.testing.assert_close(ours_logit, reference, rtol=0, atol=0)
    for ours_maps, reference_maps in zip(features, maps_mp + maps_mr):
        for ours_map, reference in zip(ours_maps, reference_maps):
            torch.testing.assert_close(ours_map, reference, rtol=0, atol=0)
