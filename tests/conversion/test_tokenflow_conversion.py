"""TokenFlow converter, proven against data recorded from the original code at random init
(tests/fixtures/tokenflow; see its README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModel

from modalzoo.conversion import tokenflow as conversion
from modalzoo.conversion.checkpoint_io import UnsafeCheckpointError
from modalzoo.models.tokenflow import TokenFlowConfig, TokenFlowImageProcessor, TokenFlowTokenizer
from modalzoo.registry import create_config

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tokenflow"
KEY_LISTS = {
    "tokenflow-clipb-32k-enhanced.json": "tokenflow-clipb-32k-enhanced",
    "tokenflow-siglip-32k.json": "tokenflow-siglip-32k",
}


def tiny_siglip_config() -> TokenFlowConfig:
    """The tiny SigLIP-layout original of tests/fixtures/tokenflow/tiny_siglip."""
    siglip = json.loads((FIXTURES / "tiny_siglip" / "meta.json").read_text())["siglip"]
    tower = {key: siglip[key] for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "image_size", "patch_size", "hidden_act", "layer_norm_eps")}
    return TokenFlowConfig(
        image_size=24,
        teacher="siglip",
        semantic_encoder_config=tower,
        semantic_feature_layer=-2,
        semantic_code_dim=16,
        pixel_code_dim=4,
        codebook_size=128,
        scales=(1, 2, 3),
        pixel_encoder_channels=8,
        pixel_channel_mult=(1, 1, 1, 1, 1),
        pixel_encoder_num_res_blocks=1,
        pixel_z_channels=16,
        pixel_norm_groups=4,
        pixel_decoder_channels=8,
        pixel_decoder_num_res_blocks=1,
        semantic_decoder_hidden_size=32,
        semantic_decoder_num_layers=2,
        semantic_decoder_num_heads=2,
        semantic_decoder_grid_size=3,
        semantic_output_dim=32,
    )


CASES = {"tiny_clip": lambda: create_config("tokenflow-tiny"), "tiny_siglip": tiny_siglip_config}


@pytest.mark.parametrize("file_name", sorted(KEY_LISTS))
def test_full_size_checkpoints_map_completely(file_name):
    record = json.loads((FIXTURES / "keys" / file_name).read_text())
    config = create_config(KEY_LISTS[file_name])
    assert config.scales == record["scales"]
    state = {key: torch.empty(shape, device="meta") for key, shape in record["keys"]}
    converted, dropped, missing = conversion.map_state_dict(state, config)
    assert missing == []
    assert "quantize.codebook_used" in dropped
    # what the key names say about the variant agrees with the registered one
    inferred = conversion.convert_config(conversion.infer_original_config(state))
    assert conversion._match_variant(inferred) == KEY_LISTS[file_name]


def test_released_token_counts():
    assert create_config("tokenflow-clipb-32k-enhanced").max_tokens == 817
    assert create_config("tokenflow-siglip-32k").max_tokens == 2227
    assert create_config("tokenflow-siglip-32k").pixel_input_size == 432


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request, tmp_path_factory):
    folder = FIXTURES / request.param
    output = tmp_path_factory.mktemp(request.param)
    summary = conversion.convert_checkpoint(folder / "tokenflow_tiny.pt", output, config=CASES[request.param]())
    return request.param, folder, output, summary


def test_tiny_conversion_summary(converted):
    name, _, _, summary = converted
    assert summary["missing"] == []
    assert set(summary["dropped"]) <= {"quantize.codebook_used", "scaling_layer.shift", "scaling_layer.scale"}
    assert summary["mapped"] > 100


def test_parity_with_the_original(converted):
    name, folder, output, _ = converted
    model = AutoModel.from_pretrained(output).eval()
    assert isinstance(model, TokenFlowTokenizer)
    meta = json.loads((folder / "meta.json").read_text())
    pixels = torch.from_numpy(np.load(folder / "input.npy"))
    codes = np.load(folder / "codes.npy")
    with torch.no_grad():
        encoded = model.encode(pixels, return_semantic=True)
        decoded = model.decode(torch.from_numpy(codes)[:, None]).values
        semantic = model.decode_semantic(torch.from_numpy(codes)[:, None])
    np.testing.assert_array_equal(encoded.codes[:, 0].numpy(), codes)
    assert encoded.scales == meta["scales"]
    assert encoded.scale_boundaries == meta["scale_boundaries"]
    quantized = np.load(folder / "quantized.npy")
    np.testing.assert_allclose(encoded.latents.numpy(), quantized.reshape(*quantized.shape[:2], -1).transpose(0, 2, 1), atol=1e-5, rtol=0)
    np.testing.assert_allclose(decoded.numpy(), np.load(folder / "decoded.npy"), atol=1e-5, rtol=0)
    np.testing.assert_allclose(semantic.numpy(), np.load(folder / "semantic.npy"), atol=1e-5, rtol=0)
    # the original's decode of the straight-through map (encode -> decode without codes)
    with torch.no_grad():
        code_map = model.quantizer(model._features(pixels)).quantized
        np.testing.assert_allclose(model._render(code_map).numpy(), np.load(folder / "decoded_from_encode.npy"), atol=1e-5, rtol=0)


def test_processor_saved_with_the_model(converted):
    name, _, output, _ = converted
    processor = AutoImageProcessor.from_pretrained(output)
    assert isinstance(processor, TokenFlowImageProcessor)
    assert processor.value_range == (-1.0, 1.0)
    assert processor.image_size == {"tiny_clip": 40, "tiny_siglip": 24}[name]


def _tiny_state():
    from modalzoo.conversion.checkpoint_io import load_checkpoint

    return conversion.original_state_dict_of(load_checkpoint(FIXTURES / "tiny_clip" / "tokenflow_tiny.pt"))


def test_wrappers_in_the_original_loader_order(tmp_path):
    state = _tiny_state()
    other = {key: torch.zeros_like(value) for key, value in state.items()}
    assert conversion.original_state_dict_of({"model": other, "ema": state})["decoder.conv_in.bias"] is state["decoder.conv_in.bias"]
    assert conversion.original_state_dict_of({"state_dict": state}) is not None
    assert conversion.original_state_dict_of(state).keys() == state.keys()
    with pytest.raises(ValueError, match="no TokenFlow weights"):
        conversion.original_state_dict_of({"optimizer": {}})


def test_pickled_code_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": _tiny_state(), "hook": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="trust-pickle"):
        conversion.convert_checkpoint(path, tmp_path / "out", variant="tokenflow-tiny")


def test_unknown_and_mismatched_keys_fail_loudly():
    state = dict(_tiny_state())
    config = create_config("tokenflow-tiny")
    with pytest.raises(ValueError, match="no modalzoo counterpart"):
        conversion.map_state_dict({**state, "decoder_vqkd.head.weight": torch.zeros(1)}, config)
    with pytest.raises(ValueError, match="do not match"):
        conversion.map_state_dict(state, create_config("tokenflow-tiny", codebook_size=64))
    del state["quant_conv.weight"]
    with pytest.raises(ValueError, match="lacks"):
        conversion.convert_state_dict(state, config)


def test_cli_convert(tmp_path, capsys):
    from modalzoo.cli import main

    main(["convert", "tokenflow", "--checkpoint", str(FIXTURES / "tiny_clip" / "tokenflow_tiny.pt"), "--output", str(tmp_path / "out"), "--variant", "tokenflow-tiny"])
    printed = capsys.readouterr().out
    assert "dropped quantize.codebook_used" in printed
    assert (tmp_path / "out" / "model.safetensors").is_file()
    assert (tmp_path / "out" / "README.md").is_file()
    assert json.loads((tmp_path / "out" / "config.json").read_text())["variant"] == "tokenflow-tiny"


def test_fixture_pickle_holds_data_only():
    with open(FIXTURES / "tiny_clip" / "tokenflow_tiny.pt", "rb") as handle:
        assert handle.read(2) == b"PK"  # zip format, read with torch.load(weights_only=True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_inverse_mapping_gives_the_original_state_dict_back(case):
    """`to_original_state_dict` (used to run the original on our weights in `modalzoo bench
    --compare-original`) undoes the conversion exactly, apart from the dropped buffers."""
    from modalzoo.conversion.checkpoint_io import load_checkpoint

    original = conversion.original_state_dict_of(load_checkpoint(FIXTURES / case / "tokenflow_tiny.pt"))
    config = CASES[case]()
    back = conversion.to_original_state_dict(conversion.convert_state_dict(original, config), config)
    kept = {key: value for key, value in original.items() if conversion._dropped_reason(key) is None}
    assert set(back) == set(kept)
    for key, value in kept.items():
        assert torch.equal(back[key], value), key
