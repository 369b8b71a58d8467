"""TiTok and One-D-Piece converters, proven against data recorded from the original code
(tests/fixtures/titok, tests/fixtures/one_d_piece; see their README.md)."""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModel

from modalzoo.conversion import one_d_piece as odp_conversion
from modalzoo.conversion import titok as titok_conversion
from modalzoo.models.one_d_piece import OneDPieceTokenizer
from modalzoo.models.titok import TiTokImageProcessor, TiTokTokenizer
from tolerances import CROSS_CPU_ATOL

FIXTURES = Path(__file__).parents[1] / "fixtures"
TITOK_KEYS = {
    "titok-l32.json": "titok-l32",
    "titok-b64.json": "titok-b64",
    "titok-s128.json": "titok-s128",
    "titok-bl64-vq8k.json": "titok-bl64-vq8k",
    "titok-bl128-vq8k.json": "titok-bl128-vq8k",
    "titok-sl256-vq8k.json": "titok-sl256-vq8k",
    "titok-ll32-vae-c16.json": "titok-ll32-vae-c16",
    "titok-bl64-vae-c16.json": "titok-bl64-vae-c16",
    "titok-bl128-vae-c16.json": "titok-bl128-vae-c16",
}
ODP_KEYS = {
    "one-d-piece-s-256.json": "one-d-piece-s256",
    "one-d-piece-b-256.json": "one-d-piece-b256",
    "one-d-piece-l-256.json": "one-d-piece-l256",
}
# (family, fixture folder, converter module)
PARITY_CASES = {
    "legacy": ("titok", FIXTURES / "titok" / "legacy", titok_conversion),
    "nonlegacy": ("titok", FIXTURES / "titok" / "nonlegacy", titok_conversion),
    "vae": ("titok", FIXTURES / "titok" / "vae", titok_conversion),
    "one_d_piece": ("one_d_piece", FIXTURES / "one_d_piece" / "tiny", odp_conversion),
}


def require(*paths: Path) -> None:
    missing = [str(path.relative_to(FIXTURES)) for path in paths if not path.exists()]
    if missing:
        pytest.skip(f"parity fixture files not recorded yet: {', '.join(missing)}")


def patched_tables(folder: Path) -> dict:
    """The size tables the recorder patched into the original (tiny sizes, small pixel decoder)."""
    meta = json.loads((folder / "fixture_meta.json").read_text())
    return {
        "model_sizes": meta["patched_model_sizes"],
        "pixel_decoder": meta.get("patched_pixel_decoder"),
        "pixel_codebook": meta.get("patched_pixel_codebook"),
    }


@contextmanager
def recording_threads():
    # The fixtures were recorded with torch.set_num_threads(1); CPU convolution kernels sum in a
    # thread-count-dependent order, and these random-init pixel decoders amplify that rounding
    # to ~1e-5, so parity is checked in the recording's setting (where it is bit-exact).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def original_layout(array: np.ndarray) -> torch.Tensor:
    """`[B, C, 1, K]` (original) -> `[B, K, C]` (modalzoo)."""
    return torch.from_numpy(array)[:, :, 0].transpose(1, 2)


# ----- full-size key lists ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "family, file, variant",
    [("titok", file, variant) for file, variant in TITOK_KEYS.items()]
    + [("one_d_piece", file, variant) for file, variant in ODP_KEYS.items()],
)
def test_full_size_keys_map_with_the_right_shapes(family, file, variant):
    path = FIXTURES / family / "keys" / file
    require(path)
    record = json.loads(path.read_text())
    conversion = titok_conversion if family == "titok" else odp_conversion
    config = conversion.convert_config(record["config"])  # the bare model.vq_model section
    assert titok_conversion.match_variant(config, family) == variant
    original = {key: torch.empty(shape, device="meta") for key, shape in record["state_dict"].items()}
    converted, dropped, missing = titok_conversion.map_state_dict(original, config, _model_class(family))
    assert not dropped and not missing
    with torch.device("meta"):
        model = _model_class(family)(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected
    assert sum(value.numel() for value in converted.values()) == record["num_parameters"]


def _model_class(family):
    return TiTokTokenizer if family == "titok" else OneDPieceTokenizer


# ----- tiny parity --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each parity case converted with `convert_checkpoint` and reloaded with AutoModel."""
    cache = {}

    def get(case):
        if case not in cache:
            family, folder, conversion = PARITY_CASES[case]
            require(folder / "config.json", folder / "model.safetensors", folder / "fixture_meta.json")
            output = tmp_path_factory.mktemp(case)
            summary = conversion.convert_checkpoint(str(folder), str(output), **patched_tables(folder))
            model, info = AutoModel.from_pretrained(output, output_loading_info=True)
            cache[case] = (model.eval(), summary, info, output)
        return cache[case]

    return get


@pytest.mark.parametrize("case", PARITY_CASES)
def test_converted_folder_loads_with_every_key(converted, case):
    model, summary, info, output = converted(case)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert summary["missing"] == [] and summary["dropped"] == {}
    assert summary["mapped"] == len(model.state_dict())
    assert {path.name for path in output.iterdir()} >= {"config.json", "model.safetensors", "preprocessor_config.json"}
    processor = AutoImageProcessor.from_pretrained(output)
    assert isinstance(processor, TiTokImageProcessor) and processor.image_size == 32
    assert isinstance(model, _model_class(PARITY_CASES[case][0]))


@pytest.mark.parametrize("case", ["legacy", "nonlegacy", "one_d_piece"])
def test_vq_parity_with_the_original(converted, case):
    folder = PARITY_CASES[case][1]
    require(folder / "codes.npy", folder / "decoded.npy", folder / "z.npy")
    model = converted(case)[0]
    pixel_values = torch.from_numpy(np.load(folder / "input.npy"))
    with recording_threads(), torch.no_grad():
        features = model.encoder(pixel_values)
        codes = model.encode(pixel_values).codes
        decoded = model.decode(codes).values
        logits = model.decoder(model.quantizer.lookup(codes)) if model.config.is_legacy else None
    torch.testing.assert_close(features, original_layout(np.load(folder / "z.npy")), atol=CROSS_CPU_ATOL, rtol=0)
    assert torch.equal(codes, torch.from_numpy(np.load(folder / "codes.npy")))
    assert len(torch.unique(codes)) > 4  # the fixture's codes depend on the image
    torch.testing.assert_close(decoded, torch.from_numpy(np.load(folder / "decoded.npy")), atol=CROSS_CPU_ATOL, rtol=0)
    if logits is not None:
        expected = torch.from_numpy(np.load(folder / "logits.npy")).flatten(2).transpose(1, 2)
        torch.testing.assert_close(logits, expected, atol=CROSS_CPU_ATOL, rtol=0)


def test_vae_parity_with_the_original(converted):
    folder = PARITY_CASES["vae"][1]
    require(folder / "latents_mean.npy", folder / "decoded.npy", folder / "latents_sample_seed1234.npy")
    model = converted("vae")[0]
    pixel_values = torch.from_numpy(np.load(folder / "input.npy"))
    with recording_threads(), torch.no_grad():
        encoded = model.encode(pixel_values)
        decoded = model.decode(latents=encoded.latents).values
        sample = model.encode(pixel_values, sample=True, generator=torch.Generator().manual_seed(1234)).latents
    assert encoded.codes is None
    torch.testing.assert_close(encoded.latents, original_layout(np.load(folder / "latents_mean.npy")), atol=CROSS_CPU_ATOL, rtol=0)
    torch.testing.assert_close(sample, original_layout(np.load(folder / "latents_sample_seed1234.npy")), atol=CROSS_CPU_ATOL, rtol=0)
    torch.testing.assert_close(decoded, torch.from_numpy(np.load(folder / "decoded.npy")), atol=CROSS_CPU_ATOL, rtol=0)


@pytest.mark.parametrize("length", [1, 3, 8])
def test_one_d_piece_prefix_parity(converted, length):
    folder = PARITY_CASES["one_d_piece"][1]
    require(folder / f"decoded_k{length}.npy", folder / "codes.npy")
    model = converted("one_d_piece")[0]
    codes = torch.from_numpy(np.load(folder / "codes.npy"))
    with recording_threads(), torch.no_grad():
        decoded = model.decode(codes[..., :length]).values
        encoded = model.encode(torch.from_numpy(np.load(folder / "input.npy")), num_tokens=length).codes
    assert torch.equal(encoded, codes[..., :length])
    torch.testing.assert_close(decoded, torch.from_numpy(np.load(folder / f"decoded_k{length}.npy")), atol=CROSS_CPU_ATOL, rtol=0)


def test_one_d_piece_tail_token_drop_draws_as_the_original(converted):
    folder = PARITY_CASES["one_d_piece"][1]
    require(folder / "fixture_meta.json")
    lengths = json.loads((folder / "fixture_meta.json").read_text())["train_tail_token_drop"]["seed_to_length"]
    model = converted("one_d_piece")[0]
    pixel_values = torch.from_numpy(np.load(folder / "input.npy"))
    seen = []
    handle = model.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    try:
        model.train()
        for seed in lengths:
            torch.manual_seed(int(seed))
            with torch.no_grad():
                model(pixel_values)
    finally:
        handle.remove()
        model.eval()
    assert seen == [lengths[seed] for seed in lengths]


# ----- the .bin state dict -----------------------------------------------------------------------
def test_legacy_bin_state_dict(tmp_path):
    folder = FIXTURES / "titok" / "legacy"
    require(folder / "pytorch_model.bin", folder / "config.json", folder / "codes.npy")
    with pytest.raises(ValueError, match="--variant"):
        titok_conversion.convert_checkpoint(str(folder / "pytorch_model.bin"), str(tmp_path / "a"))
    summary = titok_conversion.convert_checkpoint(
        str(folder / "pytorch_model.bin"), str(tmp_path / "b"), config=str(folder / "config.json"), **patched_tables(folder)
    )
    assert summary["mapped"] == 118 and not summary["missing"]
    model = AutoModel.from_pretrained(tmp_path / "b")
    with torch.no_grad():
        codes = model.encode(torch.from_numpy(np.load(folder / "input.npy"))).codes
    assert torch.equal(codes, torch.from_numpy(np.load(folder / "codes.npy")))


def test_bin_needs_weights_only_compatible_pickles(tmp_path):
    import argparse

    path = tmp_path / "odd.bin"
    # any object but tensors and plain containers, e.g. the argparse namespace training scripts store
    torch.save({"latent_tokens": torch.zeros(1), "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(ValueError, match="--trust-pickle"):
        titok_conversion.load_original_checkpoint(path)


# ----- loud failures -----------------------------------------------------------------------------
def _copy_fixture(tmp_path, case) -> Path:
    folder = PARITY_CASES[case][1]
    require(folder / "config.json", folder / "model.safetensors", folder / "fixture_meta.json")
    copy = tmp_path / case
    shutil.copytree(folder, copy)
    return copy


def test_unmapped_key_fails_loudly_and_known_extras_are_dropped(tmp_path):
    copy = _copy_fixture(tmp_path, "nonlegacy")
    tensors = load_file(copy / "model.safetensors")
    save_file({**tensors, "decoder.extra_head.weight": torch.zeros(2)}, copy / "model.safetensors")
    with pytest.raises(ValueError, match="decoder.extra_head.weight"):
        titok_conversion.convert_checkpoint(str(copy), str(tmp_path / "out"), **patched_tables(copy))
    save_file({**tensors, "quantize.embed_prob": torch.zeros(64)}, copy / "model.safetensors")
    summary = titok_conversion.convert_checkpoint(str(copy), str(tmp_path / "out"), **patched_tables(copy))
    assert list(summary["dropped"]) == ["quantize.embed_prob"]


def test_missing_key_and_wrong_shapes_fail_loudly(tmp_path):
    copy = _copy_fixture(tmp_path, "nonlegacy")
    tensors = load_file(copy / "model.safetensors")
    config = titok_conversion.convert_config(json.loads((copy / "config.json").read_text()), **patched_tables(copy))
    with pytest.raises(ValueError, match="lacks 1 key.*decoder.mask_token"):
        titok_conversion.convert_state_dict({k: v for k, v in tensors.items() if k != "decoder.mask_token"}, config)
    tables = patched_tables(copy)
    tables["model_sizes"] = {**tables["model_sizes"], "tiny": {"width": 48, "num_layers": 2, "num_heads": 4}}
    with pytest.raises(ValueError, match="shapes do not match"):
        titok_conversion.convert_checkpoint(str(copy), str(tmp_path / "out"), **tables)


def test_variant_must_match_the_checkpoint(tmp_path):
    copy = _copy_fixture(tmp_path, "legacy")
    with pytest.raises(ValueError, match="does not match variant 'titok-l32'"):
        titok_conversion.convert_checkpoint(str(copy), str(tmp_path / "out"), variant="titok-l32", **patched_tables(copy))
    with pytest.raises(ValueError, match="unknown titok variant"):
        titok_conversion.convert_checkpoint(str(copy), str(tmp_path / "out"), variant="one-d-piece-s256")


def test_convert_config_of_the_released_yaml_and_its_errors():
    released = {
        "model": {"vq_model": {"codebook_size": 4096, "token_size": 12, "use_l2_norm": True, "commitment_cost": 0.25,
                               "vit_enc_model_size": "large", "vit_dec_model_size": "large", "vit_enc_patch_size": 16,
                               "vit_dec_patch_size": 16, "num_latent_tokens": 32, "finetune_decoder": True}},
        "dataset": {"preprocessing": {"crop_size": 256}},
    }
    config = titok_conversion.convert_config(released)
    assert titok_conversion.match_variant(config, "titok") == "titok-l32"
    assert (config.encoder_hidden_size, config.encoder_num_layers, config.encoder_num_heads) == (1024, 24, 16)
    stage1 = json.loads(json.dumps(released))
    stage1["model"]["vq_model"]["finetune_decoder"] = False
    with pytest.raises(ValueError, match="stage-1"):
        titok_conversion.convert_config(stage1)
    unknown = json.loads(json.dumps(released))
    unknown["model"]["vq_model"]["vit_enc_model_size"] = "tiny"
    with pytest.raises(ValueError, match="unknown ViT size 'tiny'"):
        titok_conversion.convert_config(unknown)
    with pytest.raises(ValueError, match="legacy VQ"):
        odp_conversion.convert_config({"model": {"vq_model": {"quantize_mode": "vae"}}})


# ----- back to the original (what `modalzoo bench --compare-original` needs) ---------------------
@pytest.mark.parametrize("case", PARITY_CASES)
def test_state_dict_maps_back_to_the_original_exactly(case):
    _, folder, conversion = PARITY_CASES[case]
    require(folder / "model.safetensors", folder / "config.json", folder / "fixture_meta.json")
    original = load_file(folder / "model.safetensors")
    config = conversion.convert_config(json.loads((folder / "config.json").read_text()), **patched_tables(folder))
    back = titok_conversion.to_original_state_dict(conversion.convert_state_dict(original, config), config)
    assert set(back) == set(original)
    assert all(torch.equal(back[key], original[key]) for key in original)


@pytest.mark.parametrize("variant", list(TITOK_KEYS.values()) + list(ODP_KEYS.values()))
def test_released_configs_map_back_to_the_original(variant):
    import modalzoo

    config = modalzoo.create_config(variant)
    family = config.model_type
    tree = titok_conversion.to_original_config(config)
    conversion = titok_conversion if family == "titok" else odp_conversion
    assert titok_conversion.match_variant(conversion.convert_config(tree), family) == variant
    if family == "one_d_piece":
        assert tree["model"]["type"] == "one_d_piece" and tree["model"]["vq_model"]["strict_length_assertion"] is False
    with pytest.raises(ValueError, match="hard-codes"):
        titok_conversion.to_original_config(modalzoo.create_config(f"{family.replace('_', '-')}-tiny"))
