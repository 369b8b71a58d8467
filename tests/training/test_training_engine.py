"""The training engine on the reference tokenizers: recipes and their errors, loss weighting,
mixed precision with fp32 codebooks (CPU autocast stands in for CUDA), the adversarial path,
schedules, EMA, and the bundled tiny recipes trained through `modalzoo train`."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from modalzoo.cli import main
from modalzoo.training import Trainer, load_recipe
from modalzoo.training.checkpoint import rng_state, set_rng_state
from modalzoo.training.config import config_from_dict
from modalzoo.training.ema import ModelEMA
from modalzoo.training.reporting import read_metrics
from modalzoo.training.schedules import lr_factor

FAST = ["log_with=[csv]", "num_samples=0", "data.eval_items=2", "eval_every=0", "save_every=0", "data.batch_size=4"]


def _trainer(tmp_path, *overrides, recipe="reference_image_tiny"):
    return Trainer(load_recipe(recipe, [*FAST, f"output_dir={tmp_path}", *overrides]), resume=False)


# ----- recipes ------------------------------------------------------------------------------------------------
def test_recipe_overrides_and_errors(tmp_path):
    config = load_recipe("reference_image_tiny", ["optim.lr=3e-4", "optim.betas=[0.5, 0.9]", "discriminator=null", "amp=bf16"])
    assert config.optim.lr == 3e-4 and config.optim.betas == [0.5, 0.9]
    assert config.discriminator is None and config.amp == "bf16"
    with pytest.raises(ValueError, match=r"unknown key\(s\) optim\.learning_rate"):
        load_recipe("reference_image_tiny", ["optim.learning_rate=1"])
    with pytest.raises(ValueError, match="amp must be one of"):
        load_recipe("reference_image_tiny", ["amp=fp8"])
    with pytest.raises(ValueError, match="key=value"):
        load_recipe("reference_image_tiny", ["steps"])
    with pytest.raises(FileNotFoundError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    with pytest.raises(ValueError, match="model.name is required"):
        config_from_dict({"data": {"source": "procedural:shapes"}})


def test_bundled_recipes_load():
    from pathlib import Path

    import modalzoo.training

    recipes = sorted((Path(modalzoo.training.__file__).parent / "recipes").glob("*.yaml"))
    assert len(recipes) >= 2
    for path in recipes:
        config = load_recipe(path)
        assert config.steps >= 1 and config.model.name


def test_unknown_loss_term_is_a_clear_error(tmp_path):
    trainer = _trainer(tmp_path, "loss_weights.perceptul=0.1")
    with pytest.raises(ValueError, match=r"unknown term\(s\) \['perceptul'\].*returns \['quantizer', 'reconstruction'\]"):
        trainer.train_step()


def test_loss_terms_are_weighted_by_the_recipe(tmp_path):
    trainer = _trainer(tmp_path, "discriminator=null", "loss_weights={reconstruction: 2.0}", "clip=null")
    logs = trainer.train_step()
    # quantizer is not named: weight 1
    assert trainer.loss_weights == {"reconstruction": 2.0, "quantizer": 1.0}
    assert logs["loss"] == pytest.approx(2 * logs["reconstruction"] + logs["quantizer"], rel=1e-5)


# ----- precision -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_keeps_codebooks_in_fp32(tmp_path, amp):
    trainer = _trainer(tmp_path, f"amp={amp}", "discriminator.start_step=0")
    seen = []
    codebook = trainer.model.quantizer.vq
    codebook.register_forward_pre_hook(lambda module, args: seen.append((args[0].dtype, torch.is_autocast_enabled("cpu"))))
    decoder_dtypes = []
    trainer.model.unpatchify.register_forward_hook(lambda module, args, output: decoder_dtypes.append(output.dtype))
    for _ in range(2):
        logs = trainer.train_step()
    assert set(seen) == {(torch.float32, False)}
    assert decoder_dtypes[0] == {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert trainer.scaler.is_enabled() == (amp == "fp16") == trainer.disc_scaler.is_enabled()
    assert all(math.isfinite(v) for v in logs.values())
    assert trainer.model.quantizer.vq._codebook.embed.dtype == torch.float32


# ----- adversarial training ---------------------------------------------------------------------------------------
def test_adversarial_warm_up_and_adaptive_weight(tmp_path):
    trainer = _trainer(
        tmp_path,
        "discriminator.start_step=1",
        "discriminator.adaptive_weight=true",
        "discriminator.last_layer=unpatchify.weight",
        "loss_weights.feature_matching=1.0",
    )
    before = {k: v.clone() for k, v in trainer.discriminator.state_dict().items()}
    first = trainer.train_step()
    assert "adversarial" not in first and "discriminator" not in first
    assert all(torch.equal(before[k], v) for k, v in trainer.discriminator.state_dict().items())
    second = trainer.train_step()
    assert {"adversarial", "discriminator", "adaptive_weight", "feature_matching", "logits_real"} <= set(second)
    assert second["adaptive_weight"] > 0
    assert any(not torch.equal(before[k], v) for k, v in trainer.discriminator.state_dict().items())
    assert trainer.lecam.real_mean != 0


def test_gradient_accumulation(tmp_path):
    trainer = _trainer(tmp_path, "grad_accum=2", "discriminator.start_step=0")
    assert trainer.items_per_step() == 8
    trainer.train_step()
    assert trainer.step == 1 and trainer.position.batches == 2


# ----- schedules, EMA, RNG -----------------------------------------------------------------------------------------
def test_schedule_warm_up_then_cosine_to_end_lr():
    factors = [lr_factor(s, name="cosine", base_lr=1e-3, warmup_steps=10, total_steps=110, end_lr=1e-4) for s in range(111)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[60] == pytest.approx(0.55)
    assert factors[110] == pytest.approx(0.1)
    assert lr_factor(50, name="constant", base_lr=1e-3, warmup_steps=0, total_steps=10, end_lr=0) == 1.0


def test_ema_warms_up_and_copies_buffers():
    model = torch.nn.BatchNorm1d(2)
    ema = ModelEMA(model, decay=0.999)
    assert ema.current_decay(0) == pytest.approx(0.1) and ema.current_decay(10**6) == 0.999
    with torch.no_grad():
        model.weight.fill_(2.0)
        model.running_mean.fill_(5.0)
    ema.update(model, step=0)
    assert torch.allclose(ema.model.weight, torch.full((2,), 1.9))
    assert torch.equal(ema.model.running_mean, model.running_mean)


def test_rng_state_round_trip():
    import random

    import numpy as np

    state = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(1))
    torch.save(state, "/dev/null")
    set_rng_state(state)
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(1), expected[2])


# ----- the tiny recipes through the command line ---------------------------------------------------------------------
def _first_and_last(series):
    values = [value for _, value in series]
    head, tail = values[: len(values) // 4 or 1], values[-(len(values) // 4 or 1) :]
    return sum(head) / len(head), sum(tail) / len(tail)


def test_tiny_image_recipe_trains_on_photographs(tmp_path, photo_folder):
    from transformers import AutoModel

    output = tmp_path / "run"
    code = main(
        ["train", "reference_image_tiny", f"data.source=imagefolder:{photo_folder}", "steps=30", "eval_every=15",
         "save_every=15", "log_every=1", "log_with=[csv]", f"output_dir={output}"]
    )  # fmt: skip
    assert code == 0
    metrics = read_metrics(output)
    first, last = _first_and_last(metrics["train/reconstruction"])
    assert last < 0.7 * first, (first, last)
    assert [step for step, _ in metrics["eval/psnr"]] == [15, 30]
    assert sorted(p.name for p in (output / "samples" / "step-00000030").iterdir())[:2] == ["0.png", "1.png"]
    final = output / "final"
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "README.md", "training_recipe.yaml"} <= {
        p.name for p in final.iterdir()
    }
    card = (final / "README.md").read_text()
    assert "## Training" in card and "reconstruction" in card and "psnr" in card.lower()
    reloaded = AutoModel.from_pretrained(final)
    assert type(reloaded).__name__ == "ReferenceImageTokenizer"
    assert yaml.safe_load((final / "training_recipe.yaml").read_text())["steps"] == 30


def test_tiny_audio_recipe_trains_on_speech(tmp_path, speech_folder):
    output = tmp_path / "run"
    code = main(
        ["train", "reference_audio_tiny", f"data.source=audiofolder:{speech_folder}", "data.batch_size=4", "steps=30",
         "log_every=1", "eval_every=0", "log_with=[csv]", f"output_dir={output}"]
    )  # fmt: skip
    assert code == 0
    metrics = read_metrics(output)
    first, last = _first_and_last(metrics["train/reconstruction"])
    assert last < 0.8 * first, (first, last)  # a 2x32-code linear codec on speech: 0.0108 -> 0.0077
    assert {"0-original.wav", "0-reconstruction.wav"} <= {p.name for p in (output / "samples" / "step-00000030").iterdir()}
    assert "eval/si_sdr" in metrics


def test_push_to_hub_uploads_the_final_folder(tmp_path, monkeypatch):
    import modalzoo.training.reporting as reporting

    pushed = []
    monkeypatch.setattr(reporting, "push_folder", lambda folder, repo: pushed.append((folder, repo)))
    code = main(["train", "reference_image_tiny", *FAST, "steps=2", "discriminator=null", f"output_dir={tmp_path}", "--push-to-hub", "me/tiny"])
    assert code == 0
    assert pushed == [(tmp_path / "final", "me/tiny")]


# ----- the family recipes' CPU variants ---------------------------------------------------------------------------
def test_titok_tiny_recipe_reconstruction_falls(tmp_path):
    output = tmp_path / "run"
    code = main(["train", "titok_tiny", "steps=12", "data.batch_size=4", "discriminator.start_step=10", "log_every=1",
                 "eval_every=0", "num_samples=0", "log_with=[csv]", f"output_dir={output}"])  # fmt: skip
    assert code == 0
    first, last = _first_and_last(read_metrics(output)["train/reconstruction"])
    assert last < 0.6 * first, (first, last)


def test_wavtokenizer_tiny_recipe_runs_in_bf16_with_an_fp32_codebook(tmp_path):
    trainer = Trainer(load_recipe("wavtokenizer_tiny", [*FAST, "data.batch_size=2", "amp=bf16", f"output_dir={tmp_path}"]), resume=False)
    codebook = trainer.model.codebook
    assert codebook.inited.item() == 0
    logs = [trainer.train_step() for _ in range(2)]
    assert codebook.inited.item() == 1 and codebook.embed.dtype == torch.float32  # k-means ran on the first batch
    assert trainer.loss_weights == {"mel": 45.0, "commitment": 1000.0, "adversarial": 2.0, "feature_matching": 10.75}
    assert all(math.isfinite(v) for entry in logs for v in entry.values())
