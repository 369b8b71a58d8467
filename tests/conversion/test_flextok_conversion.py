"""FlexTok converter, proven against data recorded from the original code
(tests/fixtures/flextok; see its README.md for how, and which configs are reconstructions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoImageProcessor, AutoModel

import modalzoo
from modalzoo.conversion import flextok as conversion
from modalzoo.layers.adaln_transformer import sincos_2d_positions
from modalzoo.models.flextok import FlexTokImageProcessor, FlexTokTokenizer
from tolerances import CROSS_CPU_ATOL

FIXTURES = Path(__file__).parents[1] / "fixtures" / "flextok"
TINY = FIXTURES / "tiny"
KEYS = {
    "d12_d12.json": "flextok-d12-d12-in1k",
    "d18_d18.json": "flextok-d18-d18-in1k",
    "d18_d28.json": "flextok-d18-d28-in1k",
    "dfn.json": "flextok-d18-d28-dfn",
}
# The hub VAE's config.json is not available offline: its layout is the original's VAE_BASE_CFG.
RELEASE_VAE_CONFIG = {
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "latent_channels": 16,
    "scaling_factor": 1.0,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
STEPS = 4
GUIDANCE = {
    "none": {"guidance_scale": 1.0, "norm_guidance": False},
    "cfg": {"guidance_scale": 3.0, "norm_guidance": False},
    "apg": {"guidance_scale": 7.5, "norm_guidance": True},
}



@pytest.fixture(scope="module")
def outputs():
    return dict(np.load(TINY / "outputs.npz"))


@pytest.fixture(scope="module")
def pixel_values():
    return torch.from_numpy(np.load(TINY / "input.npy"))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flextok") / "tiny"
    summary = conversion.convert_checkpoint(str(TINY), str(folder))
    return folder, summary


@pytest.fixture(scope="module")
def model(converted):
    return AutoModel.from_pretrained(converted[0]).eval()


def _meta_state_dict(record: dict) -> dict[str, torch.Tensor]:
    """The fixture's key/shape list as meta tensors, with real sin-cos tables (checked by value)."""
    state = {}
    for key, shape in record["state_dict"].items():
        if key.endswith("posembs") and shape[1] != 1:
            width, grid = shape[1], shape[-1]
            state[key] = sincos_2d_positions(grid, width).transpose(0, 1).reshape(1, width, grid, grid)
        else:
            state[key] = torch.empty(shape, device="meta")
    return state


# ----- full-size layouts ------------------------------------------------------------------------
@pytest.mark.parametrize("fixture, variant", sorted(KEYS.items()))
def test_released_layouts_map_completely(fixture, variant):
    record = json.loads((FIXTURES / "keys" / fixture).read_text())
    config = conversion.convert_config(record["config"], vae_config=RELEASE_VAE_CONFIG)
    registered = modalzoo.create_config(variant)
    for key in conversion._architecture(registered):
        if key != "vae_scaling_factor":
            assert getattr(config, key) == getattr(registered, key), key
    assert conversion.match_variant(config) in (variant, "flextok-d18-d28-in1k")

    converted, dropped, missing = conversion.map_state_dict(_meta_state_dict(record), config)
    assert missing == []
    assert sorted(dropped) == sorted(k for k in record["state_dict"] if k.endswith("posembs") and record["state_dict"][k][1] != 1)
    sincos = sum(int(np.prod(record["state_dict"][k])) for k in dropped)
    assert sum(v.numel() for v in converted.values()) == record["num_parameters"] - sincos
    with torch.device("meta"):
        model = FlexTokTokenizer(config)
    assert sum(p.numel() for p in model.parameters()) == record["num_parameters"] - sincos


def test_checkpoint_wrapper_segments_are_removed():
    """Blocks saved through an activation-checkpoint wrapper carry `_checkpoint_wrapped_module.`."""
    import re

    record = json.loads((FIXTURES / "keys" / "d12_d12.json").read_text())
    config = conversion.convert_config(record["config"], vae_config=RELEASE_VAE_CONFIG)
    wrapped = r"\1_checkpoint_wrapped_module."
    state = {re.sub(r"(\.blocks\.\d+\.)", wrapped, key): value for key, value in _meta_state_dict(record).items()}
    assert any("_checkpoint_wrapped_module" in key for key in state)
    converted, _, missing = conversion.map_state_dict(state, config)
    assert missing == [] and not any("_checkpoint" in key for key in converted)


# ----- the tiny model: parity with the original --------------------------------------------------
def test_conversion_summary(converted):
    folder, summary = converted
    assert summary["missing"] == []
    assert summary["mapped"] == len(load_file(TINY / "model.safetensors")) - 2
    assert sorted(summary["dropped"]) == [
        "decoder.module_dict.dec_patches_posemb_module.posembs",
        "encoder.module_dict.enc_posemb_module.posembs",
    ]
    assert isinstance(AutoImageProcessor.from_pretrained(folder), FlexTokImageProcessor)


def test_codes_are_identical(model, pixel_values, outputs):
    with torch.no_grad():
        latents = model.vae_encode(pixel_values, generator=torch.Generator().manual_seed(1234))
        np.testing.assert_allclose(latents.numpy(), outputs["vae_latents"], atol=CROSS_CPU_ATOL)
        features = model.encoder(latents)
        np.testing.assert_allclose(features.numpy(), outputs["registers"], atol=CROSS_CPU_ATOL)
        codes = model.encode(pixel_values, generator=torch.Generator().manual_seed(1234)).codes
    assert codes.dtype == torch.long
    assert torch.equal(codes[:, 0], torch.from_numpy(outputs["codes"]))
    # the original samples the posterior from the global RNG: a seeded global RNG gives the same codes
    torch.manual_seed(1234)
    assert torch.equal(model.encode(pixel_values).codes[:, 0], torch.from_numpy(outputs["codes"]))


@pytest.mark.parametrize("case, lengths", [("k1", (1, 1)), ("k3", (3, 3)), ("k8", (8, 8)), ("mixed", (3, 8))])
def test_decoded_latents_and_pixels_match(model, outputs, case, lengths):
    codes = torch.from_numpy(outputs["codes"])[:, None]
    if lengths[0] == lengths[1]:
        codes, mask = codes[..., : lengths[0]], None
    else:
        mask = torch.arange(codes.shape[-1])[None] < torch.tensor(lengths)[:, None]
    for guidance, options in GUIDANCE.items():
        if f"latents_{case}_{guidance}" not in outputs:
            continue
        generator = torch.Generator().manual_seed(4321)
        latents = model.decode_latents(codes, codes_mask=mask, num_steps=STEPS, generator=generator, **options)
        np.testing.assert_allclose(latents.numpy(), outputs[f"latents_{case}_{guidance}"], atol=1e-4, rtol=0)
        pixels = model.vae_decode(latents)
        np.testing.assert_allclose(pixels.numpy(), outputs[f"pixels_{case}_{guidance}"], atol=1e-4, rtol=0)


def test_decode_draws_the_original_noise(model, outputs):
    noise = model.initial_noise(2, torch.Generator().manual_seed(4321))
    assert torch.equal(noise, torch.from_numpy(outputs["noise"]))
    codes = torch.from_numpy(outputs["codes"])[:, None, :3]
    with_noise = model.decode(codes, num_steps=STEPS, noise=noise).values
    with_generator = model.decode(codes, num_steps=STEPS, generator=torch.Generator().manual_seed(4321)).values
    assert torch.equal(with_noise, with_generator)
    np.testing.assert_allclose(with_noise.numpy(), outputs["pixels_k3_apg"], atol=1e-4, rtol=0)


def test_single_velocity_evaluation(model, outputs):
    codes = torch.from_numpy(outputs["codes"])[:, None]
    quantized = model.quantizer.lookup(codes)
    noisy = torch.from_numpy(outputs["velocity_input_k5_t0.6"])
    timesteps = torch.full((2,), 0.6)
    with torch.no_grad():
        conditional = model.decoder.embed_registers(quantized, torch.tensor([5, 5]))
        unconditional = model.decoder.null_registers(2, 8, conditional.dtype, conditional.device)
        for name, registers in (("cond", conditional), ("uncond", unconditional)):
            velocity = model.velocity(noisy, timesteps, registers)
            np.testing.assert_allclose(velocity.numpy(), outputs[f"velocity_k5_t0.6_{name}"], atol=CROSS_CPU_ATOL, rtol=0)


def test_vae_from_the_diffusers_folder(tmp_path, model, outputs):
    """A checkpoint without `vae.vae.*` takes the VAE from the diffusers-format repo."""
    tensors = load_file(TINY / "model.safetensors")
    with safe_open(str(TINY / "model.safetensors"), framework="pt") as handle:
        metadata = handle.metadata()
    source = tmp_path / "release"
    source.mkdir()
    save_file({k: v for k, v in tensors.items() if not k.startswith("vae.")}, source / "model.safetensors", metadata=metadata)
    with pytest.raises(ValueError, match="no VAE weights|scaling factor"):
        conversion.convert_checkpoint(str(source), str(tmp_path / "refused"))
    summary = conversion.convert_checkpoint(str(source), str(tmp_path / "out"), vae=str(TINY / "vae"))
    assert summary["missing"] == []
    again = AutoModel.from_pretrained(tmp_path / "out").eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name


def test_licence_notice_is_written(converted):
    folder, _ = converted
    notice = (folder / "LICENSE_NOTICE.md").read_text()
    readme = (folder / "README.md").read_text()
    for text in (notice, readme):
        assert conversion.ATTRIBUTION in text
        assert "Research Purposes" in text or "research" in text.lower()
    assert "must not be re-published under" in notice
    assert "apple-amlr" in readme


# ----- refusals ----------------------------------------------------------------------------------
def _tiny_state_and_config():
    tensors, config = conversion.read_safetensors(TINY / "model.safetensors")
    vae_config = json.loads((TINY / "vae" / "config.json").read_text())
    return tensors, config, vae_config


def test_unknown_keys_and_shapes_fail_loudly():
    tensors, original, vae_config = _tiny_state_and_config()
    config = conversion.convert_config(original, vae_config=vae_config)
    with pytest.raises(ValueError, match="no modalzoo counterpart"):
        conversion.map_state_dict({**tensors, "decoder.module_dict.extra.weight": torch.zeros(1)}, config)
    bad = dict(tensors)
    bad["encoder.module_dict.enc_register_module.registers"] = torch.zeros(9, 32)
    with pytest.raises(ValueError, match="shapes do not match"):
        conversion.map_state_dict(bad, config)
    bad = dict(tensors)
    bad["encoder.module_dict.enc_posemb_module.posembs"] = torch.zeros_like(bad["encoder.module_dict.enc_posemb_module.posembs"])
    with pytest.raises(ValueError, match="sin-cos"):
        conversion.map_state_dict(bad, config)


def test_unsupported_configs_are_refused():
    _, original, vae_config = _tiny_state_and_config()
    mup = json.loads(json.dumps(original))
    mup["encoder"]["module_dict"]["enc_to_latents"]["use_mup_readout"] = True
    with pytest.raises(ValueError, match="muP"):
        conversion.convert_config(mup, vae_config=vae_config)
    causal = json.loads(json.dumps(original))
    causal["encoder"]["module_dict"]["enc_seq_packer"]["mask_mode"] = "full"
    with pytest.raises(ValueError, match="causal_last"):
        conversion.convert_config(causal, vae_config=vae_config)
    unknown = json.loads(json.dumps(original))
    unknown["decoder"]["module_dict"]["dec_mask_tokens"] = {
        "_target_": "flextok.model.preprocessors.mask_tokens.MaskTokenModule", "mask_tokens_write_key": "x", "dim": 48
    }
    with pytest.raises(ValueError, match="no modalzoo counterpart"):
        conversion.convert_config(unknown, vae_config=vae_config)
    no_scale = json.loads(json.dumps(original))
    no_scale["vae"]["scaling_factor"] = None
    with pytest.raises(ValueError, match="scaling factor"):
        conversion.convert_config(no_scale)


def test_metadata_is_parsed_without_evaluation():
    parsed = conversion.parse_metadata({"a": "{'x': [1, 2], 'y': None}", "b": "__import__('os').getcwd()"})
    assert parsed == {"a": {"x": [1, 2], "y": None}, "b": "__import__('os').getcwd()"}


def test_cli_convert(tmp_path):
    from modalzoo.cli import main

    assert main(["convert", "flextok", "--checkpoint", str(TINY / "model.safetensors"), "--output", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "model.safetensors").is_file() and (tmp_path / "cli" / "LICENSE_NOTICE.md").is_file()
    refused = ["convert", "flextok", "--checkpoint", str(TINY), "--output", str(tmp_path / "x")]
    refused += ["--variant", "flextok-d12-d12-in1k"]
    assert main(refused) == 2
    shutil.rmtree(tmp_path / "cli")


def test_reverse_conversion_round_trips():
    """`to_original_config` / `to_original_state_dict` (the bench plugin builds the original with
    them) invert the converter exactly on the recorded release-layout file."""
    tensors, original, vae_config = _tiny_state_and_config()
    config = conversion.convert_config(original, vae_config=vae_config)
    state = conversion.convert_state_dict(tensors, config)
    back = conversion.to_original_state_dict(state, config)
    assert set(back) == set(tensors)
    for key, tensor in tensors.items():
        assert torch.equal(back[key], tensor), key
    again = conversion.convert_config(conversion.to_original_config(config), vae_config=vae_config)
    assert again.to_dict() == config.to_dict()
    for options in ({"null_condition": "zero", "decoder_register_positions": "none"},
                    {"decoder_adaln_segments": 1, "decoder_head_adaln": False, "decoder_sequence_order": "registers_first"}):
        changed = modalzoo.create_config("flextok-tiny", **options)
        assert conversion.convert_config(conversion.to_original_config(changed), vae_config=vae_config).to_dict() == {
            **changed.to_dict(), "variant": None
        }
