"""DM-Codec converter: both release shapes (plain generator state dict, trainer checkpoint),
parity with the original code's recorded outputs, the full-size key list, safe unpickling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo  # noqa: F401  (registers the families)
from modalzoo import create_config
from modalzoo.models.dm_codec import DMCodecModel

try:
    from modalzoo.conversion import checkpoint_io, dm_codec as converter
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from conversion import checkpoint_io, dm_codec as converter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dm_codec"


TINY = FIXTURES / "tiny"
PLAIN = TINY / "Model_best_dev.pt"
TRAINER = TINY / "ModelTrainer_00000001"
# the released config.json differs from tiny/config.json in these fields only (see the README)
RELEASED_OVERRIDES = {"n_filters": 64, "dimension": 1024, "semantic_dimension": 768, "codebook_size": 1024}


@pytest.fixture(scope="module")
def inputs() -> torch.Tensor:
    return torch.from_numpy(np.load(FIXTURES / "input.npy"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(model, summary) from the plain generator state dict through the file converter."""
    output = tmp_path_factory.mktemp("dm_codec_plain")
    summary = converter.convert_checkpoint(str(PLAIN), str(output), config=str(TINY / "config.json"))
    return AutoModel.from_pretrained(output).eval(), summary, output


# ----- parity ------------------------------------------------------------------------------------
def test_parity_identical_codes_and_audio(converted, inputs):
    model = converted[0]
    output = model.encode(inputs, return_semantic_features=True)
    expected_codes = np.load(TINY / "codes.npy").transpose(1, 0, 2)  # original: [n_q, B, T]
    np.testing.assert_array_equal(output.codes.numpy(), expected_codes)
    audio = model.decode(output.codes).values
    np.testing.assert_allclose(audio.numpy(), np.load(TINY / "audio.npy"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(output.latents.numpy(), np.load(TINY / "transform.npy"), rtol=0, atol=1e-5)
    np.testing.assert_allclose(model.encoder(inputs).detach().numpy(), np.load(TINY / "encoder_out.npy"), rtol=0, atol=1e-5)


def test_parity_with_fewer_quantizers(converted, inputs):
    model = converted[0]
    codes = model.encode(inputs, num_quantizers=3).codes
    assert codes.shape == (2, 3, 50)
    np.testing.assert_array_equal(codes.numpy(), np.load(TINY / "codes.npy").transpose(1, 0, 2)[:, :3])
    audio = model.decode(codes).values
    np.testing.assert_allclose(audio.numpy(), np.load(TINY / "audio_nq3.npy"), rtol=0, atol=1e-5)


def test_trainer_checkpoint_keeps_the_generator(tmp_path, inputs):
    summary = converter.convert_checkpoint(str(TRAINER), str(tmp_path), config=str(TINY / "config.json"))
    assert summary["mapped"] == 166 and summary["missing"] == []
    assert set(summary["dropped"]) == {"discriminators", "optim_g", "optim_d", "scheduler_g", "scheduler_d", "best_dev_mel_loss"}
    model = AutoModel.from_pretrained(tmp_path).eval()
    expected = np.load(TINY / "trainer_codes.npy").transpose(1, 0, 2)
    np.testing.assert_array_equal(model.encode(inputs).codes.numpy(), expected)
    generator = torch.load(TRAINER, map_location="cpu", weights_only=True)["generator"]
    mapped = converter.convert_state_dict(generator, model.config)
    for key, value in model.state_dict().items():
        assert torch.equal(value, mapped[key]), key


def test_converted_folder_is_hub_ready(converted):
    model, summary, folder = converted
    assert summary == {"mapped": 166, "dropped": {}, "missing": []}
    assert (folder / "model.safetensors").exists()
    extractor = AutoFeatureExtractor.from_pretrained(folder)
    assert extractor.sampling_rate == 16000 and extractor.hop_length == 320
    assert model.config.token_rate == 50 and model.codebook_sizes == [64] * 8


# ----- full-size release -------------------------------------------------------------------------
def _released_config() -> dict:
    original = json.loads((TINY / "config.json").read_text())
    return {**original, **RELEASED_OVERRIDES}


def test_full_size_key_list_maps_with_the_right_shapes():
    listing = json.loads((FIXTURES / "keys" / "config.json").read_text())
    state_dict = {key: torch.empty(shape, device="meta") for key, shape in listing["state_dict"].items()}
    config = converter.convert_config(_released_config())
    inferred = converter.infer_config(state_dict)
    for variant in ("dm-codec-lm-sm", "dm-codec-lm"):
        converter.check_architecture_matches(create_config(variant), inferred, variant, converter.ARCHITECTURE_FIELDS)
    mapped = converter.convert_state_dict(state_dict, config)
    with torch.device("meta"):
        model = DMCodecModel(config)
    assert set(mapped) == set(model.state_dict())
    assert listing["num_parameters"] == sum(p.numel() for p in model.parameters())
    assert model.num_codebooks == 8 and model.token_rate == 50


def test_convert_config_reads_the_original_json():
    config = converter.convert_config(_released_config())
    assert config.downsampling_ratios == [8, 5, 4, 2] and config.hop_length == 320
    assert (config.num_filters, config.hidden_size, config.semantic_dimension) == (64, 1024, 768)
    assert config.bidirectional_lstm and config.num_lstm_layers == 2
    assert (config.num_quantizers, config.codebook_size) == (8, 1024)
    assert config.mel_loss_lambdas == [45.0, 1.0, 1.0, 1.0] and config.mel_fmax is None
    assert (config.reconstruction_loss_weight, config.commitment_loss_weight, config.distillation_loss_weight) == (500, 10, 120)


def test_variant_records_the_teachers(tmp_path):
    converter.convert_checkpoint(str(PLAIN), str(tmp_path), config=str(TINY / "config.json"), variant="dm-codec-lm")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["distill_teacher"] == "llm" and config["variant"] == "dm-codec-lm"


def test_mismatched_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="num_filters: variant dm-codec-lm-sm says 64, checkpoint has 2"):
        converter.convert_checkpoint(str(PLAIN), str(tmp_path), variant="dm-codec-lm-sm")


def test_unmapped_key_fails():
    state_dict = torch.load(PLAIN, map_location="cpu", weights_only=True)
    config = converter.infer_config(state_dict)
    state_dict["encoder.model.99.mystery"] = torch.zeros(1)
    with pytest.raises(ValueError, match="not mapped: encoder.model.99.mystery"):
        converter.convert_state_dict(state_dict, config)


# ----- safe loading ------------------------------------------------------------------------------
class _NotAllowed:
    """Pickled by reference: loading it needs a GLOBAL outside the allow-list."""

    def __reduce__(self):
        return (_NotAllowed, ())


def test_pickled_code_is_refused(tmp_path):
    checkpoint = torch.load(TRAINER, map_location="cpu", weights_only=True)
    checkpoint["args"] = _NotAllowed()
    path = tmp_path / "unsafe.pt"
    torch.save(checkpoint, path)
    with pytest.raises(checkpoint_io.UnsafeCheckpointError, match=r"_NotAllowed.*--trust-pickle"):
        converter.convert_checkpoint(str(path), str(tmp_path / "out"))
    checkpoint.pop("args")
    torch.save({"generator": checkpoint["generator"], "hook": _NotAllowed()}, path)
    with pytest.raises(ValueError, match="unknown trainer checkpoint entries: hook"):
        converter.convert_checkpoint(str(path), str(tmp_path / "out"), trust_pickle=True)


def test_cli_convert(tmp_path, capsys):
    try:
        from modalzoo import cli
        import modalzoo.conversion  # noqa: F401  (the CLI imports converters from this namespace)
    except ModuleNotFoundError:
        pytest.skip("modalzoo is not installed (pip install -e .): modalzoo.conversion is unavailable")
    status = cli.main(["convert", "dm_codec", "--checkpoint", str(TRAINER), "--config", str(TINY / "config.json"),
                       "--output", str(tmp_path / "cli"), "--variant", "dm-codec-lm-sm"])
    assert status in (0, None)
    printed = capsys.readouterr().out
    assert "keys mapped: 166" in printed and "dropped discriminators" in printed
    assert (tmp_path / "cli" / "model.safetensors").exists() and (tmp_path / "cli" / "README.md").exists()


def test_inverse_mapping_restores_the_original_state_dict():
    """What the --compare-original plugin loads into the original `Model`."""
    original = torch.load(PLAIN, map_location="cpu", weights_only=True)
    config = converter.convert_config(json.loads((TINY / "config.json").read_text()))
    back = converter.to_original_state_dict(converter.convert_state_dict(original, config), config)
    assert set(back) == set(original)
    assert all(torch.equal(back[key], original[key]) for key in original)
    assert converter.convert_config(converter.to_original_config(config)).to_dict() == config.to_dict()
