"""WavTokenizer conversion: parity with the original code (recorded fixtures), every released key
list, safe checkpoint loading, and the CLI entry point."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
import yaml
from transformers import AutoFeatureExtractor, AutoModel

import modalzoo  # noqa: F401  (registers the families)
from modalzoo import create_config, create_processor
from modalzoo.models.wavtokenizer import WavTokenizerModel

try:
    from modalzoo.conversion import checkpoint_io, wavtokenizer as converter
except ModuleNotFoundError:  # a source checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from conversion import checkpoint_io, wavtokenizer as converter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wavtokenizer"
TINY = {"tiny": 320, "tiny40": 600}
KEY_LISTS = {
    "wavtokenizer_smalldata_frame75_3s_nq1_code4096_dim512_kmeans200_attn.json": "wavtokenizer-75-small",
    "wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.json": "wavtokenizer-40-small",
}
PADDING_EDGE_FRAMES = WavTokenizerModel.PADDED_EDGE_FRAMES  # see tests/models/test_wavtokenizer.py


def _need(*paths: Path) -> None:
    missing = [str(p.relative_to(FIXTURES.parent)) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"parity fixture files not recorded yet: {', '.join(missing)}")


def _tiny_files(name: str) -> dict[str, Path]:
    folder = FIXTURES / name
    files = {
        "checkpoint": folder / "tiny.ckpt",
        "yaml": folder / "tiny.yaml",
        "input": FIXTURES / "input.npy",
        "codes": folder / "codes.npy",
        "features": folder / "features.npy",
        "audio": folder / "audio.npy",
    }
    _need(*files.values())
    return files


@pytest.fixture(scope="module", params=sorted(TINY))
def converted(request, tmp_path_factory):
    """(name, files, converted model, conversion summary) for each recorded tiny fixture."""
    files = _tiny_files(request.param)
    output = tmp_path_factory.mktemp(request.param)
    summary = converter.convert_checkpoint(str(files["checkpoint"]), str(output), config=str(files["yaml"]))
    return request.param, files, AutoModel.from_pretrained(output).eval(), summary


# ----- parity --------------------------------------------------------------------------------
def test_parity_identical_codes_and_audio(converted):
    name, files, model, _ = converted
    audio_in = torch.from_numpy(np.load(files["input"]))
    encoded = model.encode(audio_in)
    reference_codes = torch.from_numpy(np.load(files["codes"]))  # original layout [n_q, B, frames]
    assert encoded.codes.shape == (audio_in.shape[0], 1, audio_in.shape[-1] // TINY[name])
    assert torch.equal(encoded.codes, reference_codes.permute(1, 0, 2))
    features = model.codebook.lookup(encoded.codes).transpose(1, 2)
    torch.testing.assert_close(features, torch.from_numpy(np.load(files["features"])), atol=1e-6, rtol=0)
    with torch.no_grad():
        values = model.decode(encoded.codes).values
    reference = torch.from_numpy(np.load(files["audio"]))
    assert values.shape == (reference.shape[0], 1, reference.shape[-1])
    torch.testing.assert_close(values[:, 0], reference, atol=1e-5, rtol=0)


@pytest.mark.parametrize("stage", ["encoder_out", "backbone_out", "backbone_out_bw1"])
def test_parity_intermediate_stages(converted, stage):
    name, files, model, _ = converted
    path = FIXTURES / name / f"{stage}.npy"
    _need(path)
    reference = torch.from_numpy(np.load(path))
    with torch.no_grad():
        if stage == "encoder_out":
            ours = model.encoder(torch.from_numpy(np.load(files["input"])))
        else:
            features = torch.from_numpy(np.load(files["features"]))
            ours = model.backbone(features, 1 if stage.endswith("bw1") else 0)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_conversion_summary_reports_dropped_parts(converted):
    _, _, model, summary = converted
    assert summary["missing"] == []
    assert summary["mapped"] == len(model.state_dict())
    for prefix in ("multiperioddisc.", "multiresddisc.", "dac.", "dacdiscriminator.", "melspec_loss.",
                   "feature_extractor.encodec.decoder.", "head.istft.window"):
        assert prefix in summary["dropped"], prefix


def test_converted_folder_is_hub_ready(converted, tmp_path):
    name, files, model, _ = converted
    output = tmp_path / "out"
    converter.convert_checkpoint(str(files["checkpoint"]), str(output), config=str(files["yaml"]))
    assert {p.name for p in output.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    assert json.loads((output / "config.json").read_text())["model_type"] == "wavtokenizer"
    extractor = AutoFeatureExtractor.from_pretrained(output)
    assert (extractor.sampling_rate, extractor.hop_length) == (24000, TINY[name])


def test_real_speech_through_the_converted_model(converted):
    """The fixture's espeak-ng clip at 22.05 kHz, resampled by the feature extractor."""
    name, _, model, _ = converted
    path = FIXTURES / "speech_22050.wav"
    _need(path)
    samples, rate = soundfile.read(path, dtype="float32")
    assert rate == 22050
    processor = create_processor(model.config)
    batch = processor(samples, sampling_rate=rate)
    encoded = model.encode(**batch)
    real_samples = int(batch["padding_mask"].sum())
    assert abs(real_samples - len(samples) * 24000 / rate) <= 1
    assert encoded.codes.shape[-1] == int(encoded.codes_mask.sum()) == -(-real_samples // TINY[name])
    assert encoded.codes.unique().numel() > 8
    with torch.no_grad():
        decoded = model.decode(encoded.codes, codes_mask=encoded.codes_mask)
    assert decoded.values.shape[-1] == encoded.codes.shape[-1] * TINY[name]


def test_padded_batch_bound_on_the_original_weights(converted):
    """A padded item's codes equal its codes alone on all but the last PADDING_EDGE_FRAMES frames
    (the converted original weights, real speech cut mid-word)."""
    name, _, model, _ = converted
    path = FIXTURES / "speech_22050.wav"
    _need(path)
    samples, rate = soundfile.read(path, dtype="float32")
    clips = [samples[: len(samples) * k // 5 + 11 * k] for k in (2, 3, 5)]
    processor = create_processor(model.config)
    together = model.encode(**processor(clips, sampling_rate=rate))
    for index, clip in enumerate(clips):
        alone = model.encode(**processor(clip, sampling_rate=rate)).codes[0, 0]
        interior = alone.shape[-1] - PADDING_EDGE_FRAMES
        assert torch.equal(together.codes[index, 0, :interior], alone[:interior])


# ----- every released key list ----------------------------------------------------------------
@pytest.mark.parametrize("key_list", sorted(KEY_LISTS))
def test_full_size_key_list_maps_with_the_right_shapes(key_list):
    path = FIXTURES / "keys" / key_list
    _need(path)
    recorded = json.loads(path.read_text())
    state_dict = {key: torch.empty(shape, device="meta") for key, shape in recorded["state_dict"].items()}
    config = create_config(KEY_LISTS[key_list])
    inferred = converter.infer_config(state_dict)
    for field in converter.ARCHITECTURE_FIELDS:
        assert getattr(inferred, field) == getattr(config, field), field
    mapped, dropped = converter.split_state_dict(state_dict, config)
    with torch.device("meta"):
        model = WavTokenizerModel(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in mapped.items()} == expected
    kept = sum(1 for key in state_dict if key.startswith(tuple(recorded["inference_prefixes"])))
    assert len(mapped) == kept - 1 - sum(1 for k in state_dict if k.startswith("feature_extractor.encodec.decoder."))
    assert "head.istft.window" in dropped


def test_convert_config_reads_the_original_yaml():
    files = _tiny_files("tiny40")
    config = converter.convert_config(yaml.safe_load(files["yaml"].read_text()))
    assert config.downsampling_ratios == [6, 5, 5, 4] and config.hop_length == 600 and config.n_fft == 2400
    assert (config.codebook_size, config.decoder_dim, config.decoder_num_layers) == (64, 32, 2)
    assert config.token_rate == 40.0


# ----- failures -------------------------------------------------------------------------------
def test_mismatched_yaml_is_refused(tmp_path):
    files = _tiny_files("tiny")
    with pytest.raises(ValueError, match="downsampling_ratios"):
        converter.convert_checkpoint(str(files["checkpoint"]), str(tmp_path), config=str(FIXTURES / "tiny40" / "tiny.yaml"))


def test_unmapped_key_fails():
    files = _tiny_files("tiny")
    state_dict = checkpoint_io.state_dict_of(checkpoint_io.load_checkpoint(files["checkpoint"]))
    config = converter.convert_config(yaml.safe_load(files["yaml"].read_text()))
    config.encoder_num_filters, config.encoder_num_lstm_layers = 2, 2
    assert len(converter.convert_state_dict(state_dict, config)) == 136
    with pytest.raises(ValueError, match="not mapped: backbone_extra.weight"):
        converter.convert_state_dict({**state_dict, "backbone_extra.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="does not fit the config"):
        converter.convert_state_dict({**state_dict, "head.out.bias": torch.zeros(3)}, config)


class _NotAllowed:
    """Pickled by reference: loading it needs a GLOBAL outside the allow-list."""

    def __reduce__(self):
        return (_NotAllowed, ())


def test_unsafe_pickle_is_refused_by_name(tmp_path):
    files = _tiny_files("tiny")
    checkpoint = torch.load(files["checkpoint"], map_location="cpu", weights_only=True)
    checkpoint["hyper_parameters"]["callback"] = _NotAllowed()
    path = tmp_path / "unsafe.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(checkpoint_io.UnsafeCheckpointError, match=r"_NotAllowed.*--trust-pickle"):
        converter.convert_checkpoint(str(path), str(tmp_path / "out"), config=str(files["yaml"]))
    summary = converter.convert_checkpoint(str(path), str(tmp_path / "out"), config=str(files["yaml"]), trust_pickle=True)
    assert summary["missing"] == []


def test_lightning_globals_are_allowed(tmp_path):
    """Hyper-parameters pickled as Lightning's AttributeDict and numpy scalars load without Lightning."""
    module = type(sys)("pytorch_lightning.utilities.parsing")
    attribute_dict = type("AttributeDict", (dict,), {"__module__": "pytorch_lightning.utilities.parsing"})
    module.AttributeDict = attribute_dict
    saved = {name: sys.modules.get(name) for name in ("pytorch_lightning", "pytorch_lightning.utilities", module.__name__)}
    sys.modules.update({"pytorch_lightning": type(sys)("pytorch_lightning"),
                        "pytorch_lightning.utilities": type(sys)("pytorch_lightning.utilities"), module.__name__: module})
    try:
        torch.save({"state_dict": {"w": torch.ones(2)}, "hyper_parameters": attribute_dict(sample_rate=24000),
                    "best": np.float64(0.5)}, tmp_path / "lightning.ckpt")
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    loaded = checkpoint_io.load_checkpoint(tmp_path / "lightning.ckpt")
    assert loaded["hyper_parameters"] == {"sample_rate": 24000} and float(loaded["best"]) == 0.5


def test_cli_convert(tmp_path, capsys):
    files = _tiny_files("tiny")
    try:
        from modalzoo import cli
        import modalzoo.conversion  # noqa: F401  (the CLI imports converters from this namespace)
    except ModuleNotFoundError:
        pytest.skip("modalzoo is not installed (pip install -e .): modalzoo.conversion is unavailable")
    status = cli.main(["convert", "wavtokenizer", "--checkpoint", str(files["checkpoint"]),
                       "--config", str(files["yaml"]), "--output", str(tmp_path / "cli")])
    assert status in (0, None)
    printed = capsys.readouterr().out
    assert "keys mapped: 136" in printed and "multiperioddisc." in printed
    assert (tmp_path / "cli" / "model.safetensors").exists()
