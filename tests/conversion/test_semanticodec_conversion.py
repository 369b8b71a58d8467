"""SemantiCodec conversion: every key of the released encoder (and decoder) checkpoints of the three
token rates maps with the right shape; tiny original checkpoints recorded from
haoheliu/SemantiCodec-inference convert into models that give the original's codes exactly;
bad checkpoints are refused with errors that name the problem."""

from __future__ import annotations

import json
import pickle
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel

import modalzoo  # noqa: F401
from modalzoo import create_config
from modalzoo.conversion.checkpoint_io import UnsafeCheckpointError, load_checkpoint
from modalzoo.conversion.semanticodec import convert_checkpoint, infer_config, split_state_dict
from modalzoo.conversion.semanticodec_decoder import map_decoder_state_dict
from modalzoo.models.semanticodec import SemantiCodecModel
from modalzoo.models.semanticodec.decoder_semanticodec import _linear_alphas_cumprod

FIXTURES = Path(__file__).parents[1] / "fixtures" / "semanticodec"
ENCODER = FIXTURES / "encoder"
DECODER = FIXTURES / "decoder"


def released_states(rate: int) -> tuple[dict, dict]:
    """Meta tensors with the shapes of the released encoder.ckpt and decoder.ckpt of `rate`."""
    encoder = json.loads((ENCODER / "keys.json").read_text())[str(rate)]["state_dict"]
    decoder = json.loads((DECODER / "released_keys.json").read_text())["state_dict"]
    decoder = {k: v if isinstance(v, list) else v[str(rate)] for k, v in decoder.items()}
    meta = lambda shapes: {k: torch.empty(s, device="meta") for k, s in shapes.items()}  # noqa: E731
    return meta(encoder), meta(decoder)


@pytest.mark.parametrize("rate", [100, 50, 25])
def test_every_released_key_maps_with_its_shape(rate):
    encoder_state, decoder_state = released_states(rate)
    config = create_config(f"semanticodec-{rate}-16384")
    centroids = torch.empty(16384, config.feature_dim, device="meta")
    inferred = infer_config(encoder_state, centroids)
    assert (inferred.tokens_per_second, inferred.lstm_num_layers, inferred.audiomae_num_layers) == (rate, {100: 4, 50: 3, 25: 2}[rate], 12)
    # raises on any unmapped key, wrong shape, or model key left without a value
    mapped, dropped = split_state_dict(encoder_state, centroids, config, decoder_state)
    with torch.device("meta"):
        expected = SemantiCodecModel(config).state_dict()
    assert set(mapped) == set(expected)
    assert all(tuple(mapped[k].shape) == tuple(v.shape) for k, v in expected.items())
    encoder_kept = sum(1 for k in mapped if k.startswith("encoder."))
    # AudioMAE's 12 blocks x 12 tensors + 5, the LSTM's 8 per layer, the projection, 4 codebook buffers, centroids
    assert encoder_kept == 12 * 12 + 5 + 8 * inferred.lstm_num_layers + 1 + 4 + 1
    assert set(k for k in dropped if not k.startswith("decoder.ckpt")) == {
        "audiomae.model.pos_embed", "audiomae.model.mask_token", "audiomae.model.decoder_pos_embed",
        "audiomae.model.decoder_embed", "audiomae.model.decoder_blocks", "audiomae.model.decoder_norm",
        "audiomae.model.decoder_pred",
    }


def test_older_vector_quantize_layout_without_heads_axis_converts():
    encoder_state, decoder_state = released_states(100)
    for name in ("embed", "embed_avg", "cluster_size"):
        key = f"quantizer._codebook.{name}"
        encoder_state[key] = torch.empty(encoder_state[key].shape[1:], device="meta")
    config = create_config("semanticodec-100-4096")
    mapped, _ = split_state_dict(encoder_state, torch.empty(4096, 768, device="meta"), config, decoder_state)
    assert mapped["encoder.acoustic_quantizer.vq._codebook.embed"].shape == (1, 8192, 768)


def tiny_original(rate: int) -> tuple[dict, np.ndarray]:
    state = load_checkpoint(ENCODER / f"tiny{rate}" / "encoder.ckpt")
    return state, np.load(ENCODER / f"tiny{rate}" / "codebook_64_0.npy")


def tiny_config(rate: int, **overrides):
    layers = json.loads((ENCODER / f"tiny{rate}" / "config.json").read_text())["lstm_layer"]
    return create_config("semanticodec-tiny", tokens_per_second=rate, lstm_num_layers=layers, decoder=None, **overrides)


def test_unknown_missing_and_misshapen_keys_are_refused():
    state, centroids = tiny_original(100)
    config = tiny_config(100)
    with pytest.raises(ValueError, match="not mapped: audiomae.model.head.weight"):
        split_state_dict({**state, "audiomae.model.head.weight": torch.zeros(2)}, centroids, config)
    incomplete = {k: v for k, v in state.items() if k != "encoder.weight_hh_l1"}
    with pytest.raises(ValueError, match="encoder.acoustic_lstm.weight_hh_l1: missing from the checkpoint"):
        split_state_dict(incomplete, centroids, config)
    with pytest.raises(ValueError, match=r"encoder.semantic_quantizer.codebook: checkpoint \(64, 9\), model \(64, 8\)"):
        split_state_dict(state, np.zeros((64, 9), np.float32), config)
    moved = {**state, "audiomae.model.pos_embed": state["audiomae.model.pos_embed"] + 0.1}
    with pytest.raises(ValueError, match="not AudioMAE's fixed sin-cos table"):
        split_state_dict(moved, centroids, config)
    with pytest.raises(ValueError, match="centroids must be"):
        infer_config(state, np.zeros((64, 9), np.float32))
    with pytest.raises(ValueError, match="not a SemantiCodec encoder checkpoint"):
        infer_config({"model.diffusion_model.x": torch.zeros(1)}, centroids)


def fill_value(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The decoder recording's deterministic init (tests/fixtures/semanticodec/decoder/README.md)."""
    generator = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    x = torch.randn(shape, generator=generator)
    if len(shape) >= 2:
        fan_in = shape[0] * shape[2] // 2 if "ups." in key else int(np.prod(shape[1:]))
        return x / np.sqrt(fan_in)
    return 1.0 + 0.1 * x if key.endswith("weight") else 0.1 * x


@pytest.fixture(scope="module")
def parity_decoder() -> tuple[dict, dict]:
    return parity_decoder_checkpoint()


def parity_decoder_checkpoint() -> tuple[dict, dict]:
    """(original-layout decoder state dict, its modalzoo decoder config): the decoder parity case,
    whose 16-wide features are exactly the tiny 100 tokens/s encoder's [acoustic | semantic]."""
    meta = json.loads((DECODER / "parity.json").read_text())
    state = {key: fill_value(key, tuple(meta["state_dict"][key])) for key in meta["parameters"]}
    state["scale_factor"] = torch.tensor(meta["scale_factor"])
    state["alphas_cumprod"] = _linear_alphas_cumprod(meta["decoder_config"]["schedule"])
    return state, meta["decoder_config"]


@pytest.fixture(scope="module")
def release_folder(tmp_path_factory) -> Path:
    """A release laid out as on the Hub: semanticodec_tokenrate_100/{encoder,decoder}.ckpt and a
    codebook_idx/ folder beside it."""
    root = tmp_path_factory.mktemp("SemantiCodec")
    folder = root / "semanticodec_tokenrate_100"
    folder.mkdir()
    shutil.copy(ENCODER / "tiny100" / "encoder.ckpt", folder / "encoder.ckpt")
    (root / "codebook_idx").mkdir()
    shutil.copy(ENCODER / "tiny100" / "codebook_64_0.npy", root / "codebook_idx" / "codebook_64_0.npy")
    return folder


def test_convert_checkpoint_gives_the_original_codes_and_decoder(release_folder, parity_decoder, tmp_path):
    decoder_state, decoder_config = parity_decoder
    torch.save(decoder_state, release_folder / "decoder.ckpt")
    summary = convert_checkpoint(
        str(release_folder), str(tmp_path / "out"), variant="semanticodec-tiny",
        config=str(release_folder.parent / "codebook_idx" / "codebook_64_0.npy"), decoder_config=decoder_config,
    )
    assert summary["dropped"]["audiomae.model.decoder_blocks"].startswith("MAE reconstruction decoder")
    model = AutoModel.from_pretrained(tmp_path / "out").eval()
    assert isinstance(model, SemantiCodecModel) and model.config.variant == "semanticodec-tiny"
    inputs = np.load(ENCODER / "input_16k.npz")
    outputs = np.load(ENCODER / "tiny100" / "outputs.npz")
    codes = model.encode(torch.from_numpy(inputs["short"])[None, None]).codes
    np.testing.assert_array_equal(codes[0].T.numpy(), outputs["short_tokens"])
    # the decoder holds exactly what the decoder's own key map gives
    expected, _ = map_decoder_state_dict(decoder_state)
    loaded = model.decoder.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(loaded[key], value.float(), rtol=0, atol=0)


def test_convert_refuses_missing_decoder_and_ambiguous_centroids(tmp_path):
    encoder_only = tmp_path / "encoder_only"
    encoder_only.mkdir()
    shutil.copy(ENCODER / "tiny100" / "encoder.ckpt", encoder_only / "encoder.ckpt")
    shutil.copy(ENCODER / "tiny100" / "codebook_64_0.npy", encoder_only / "centroids.npy")
    with pytest.raises(FileNotFoundError, match="decoder.ckpt is missing"):
        convert_checkpoint(str(encoder_only), str(tmp_path / "out"), variant="semanticodec-tiny")
    shutil.copy(encoder_only / "centroids.npy", encoder_only / "other.npy")
    with pytest.raises(ValueError, match="found 2 .npy files"):
        convert_checkpoint(str(encoder_only), str(tmp_path / "out"))
    with pytest.raises(FileNotFoundError, match="needs its centroids codebook_idx/combine_512_audioset_dominate/codebook_8192_0.npy"):
        convert_checkpoint(str(encoder_only), str(tmp_path / "out"), variant="semanticodec-100-16384")
    with pytest.raises(ValueError, match="the checkpoint does not match variant semanticodec-25-4096"):
        convert_checkpoint(str(encoder_only), str(tmp_path / "out"), variant="semanticodec-25-4096", config=str(encoder_only / "centroids.npy"))


class _Payload:
    def __reduce__(self):
        return (print, ("this would run",))


def test_pickled_code_is_never_executed(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    state, centroids = tiny_original(100)
    torch.save({**state, "evil": _Payload()}, folder / "encoder.ckpt")
    np.save(folder / "codebook.npy", centroids)
    with pytest.raises((UnsafeCheckpointError, pickle.UnpicklingError), match="refusing to unpickle|Unsupported global"):
        convert_checkpoint(str(folder), str(tmp_path / "out"))


def test_cli_reports_a_missing_decoder_checkpoint(tmp_path, capsys):
    from modalzoo.cli import main

    folder = tmp_path / "semanticodec_tokenrate_100"
    folder.mkdir()
    shutil.copy(ENCODER / "tiny100" / "encoder.ckpt", folder / "encoder.ckpt")
    shutil.copy(ENCODER / "tiny100" / "codebook_64_0.npy", folder / "codebook_64_0.npy")
    code = main(["convert", "semanticodec", "--checkpoint", str(folder), "--output", str(tmp_path / "out"), "--variant", "semanticodec-tiny"])
    assert code != 0
    assert "decoder.ckpt is missing" in capsys.readouterr().err
