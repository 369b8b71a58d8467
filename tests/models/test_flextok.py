"""FlexTok on the modalzoo contract: tiny configs, the recorded fixture weights and real
photographs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from transformers import AutoImageProcessor, AutoModel

import modalzoo
from modalzoo.layers.adaln_transformer import sincos_2d_positions
from modalzoo.models.flextok import FlexTokImageProcessor, FlexTokTokenizer

TINY_FIXTURE = Path(__file__).parents[1] / "fixtures" / "flextok" / "tiny"
VARIANTS = {
    "flextok-d12-d12-in1k": 256,
    "flextok-d18-d18-in1k": 256,
    "flextok-d18-d28-in1k": 256,
    "flextok-d18-d28-dfn": 256,
    "flextok-tiny": 8,
}



@pytest.fixture(scope="module")
def tiny() -> FlexTokTokenizer:
    """flextok-tiny holding the weights recorded from the original (random init zeroes the heads,
    so every image would get the same codes)."""
    from modalzoo.conversion import flextok as conversion

    tensors, original = conversion.read_safetensors(TINY_FIXTURE / "model.safetensors")
    model = modalzoo.create_model("flextok-tiny")
    model.load_state_dict(conversion.convert_state_dict(tensors, model.config))
    return model.eval()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.from_numpy(np.load(TINY_FIXTURE / "input.npy"))


def test_every_released_variant_is_registered():
    rows = {row["name"]: row for row in modalzoo.list_models(family="flextok")}
    assert set(rows) == set(VARIANTS)
    for name, tokens in VARIANTS.items():
        assert rows[name]["codebook_sizes"] == [64000]
        assert rows[name]["max_tokens"] == tokens
        assert rows[name]["modality"] == "image"


def test_random_init_follows_the_original():
    torch.manual_seed(0)
    model = modalzoo.create_model("flextok-tiny", encoder_hidden_size=64, head_dim=16)
    block = model.encoder.blocks[0]
    bound = (6 / (64 + 64)) ** 0.5
    assert 0.9 * bound < block.attn.wq.weight.abs().max() <= bound
    assert abs(model.encoder.registers.std().item() - 0.02) < 0.005  # trunc_normal_(std=0.02), cut at +-2 as torch's default
    for zero in (model.encoder.to_latents.weight, model.decoder.head.weight, model.decoder.head_adaln.weight,
                 model.decoder.blocks[0].adaln_modulation.weight, model.decoder.blocks[0].adaln_modulation.bias):
        assert torch.all(zero == 0)
    assert torch.all(model.decoder.time_fc1.bias == 0) and model.decoder.time_fc1.weight.abs().max() > 0
    assert abs(model.decoder.mask_token.std().item() - 0.02) < 0.01
    assert torch.equal(model.encoder.positions.table, sincos_2d_positions(4, 64))
    assert not any(p.requires_grad for p in model.vae.parameters())


def test_processor_is_the_original_transform(photographs):
    """The original's demo transform: Resize(256) (bilinear, PIL), CenterCrop, ToTensor, Normalize(0.5, 0.5)."""
    processor = FlexTokImageProcessor()
    original = transforms.Compose(
        [transforms.Resize(256), transforms.CenterCrop(256), transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)]
    )
    batch = processor(photographs, return_tensors="pt")["pixel_values"]
    assert batch.shape == (3, 3, 256, 256)
    for index, photo in enumerate(photographs):
        expected = original(Image.fromarray(photo).convert("RGB"))
        assert torch.equal(batch[index], expected)
    assert batch.min() >= -1 and batch.max() <= 1 and batch.min() < -0.9 and batch.max() > 0.9
    # postprocess maps [-1, 1] back to the resized uint8 photograph
    resized = np.asarray(Image.fromarray(photographs[0]).resize((256, 256), Image.BILINEAR), dtype=np.int16)
    assert np.abs(np.asarray(processor.postprocess(batch)[0], dtype=np.int16) - resized).max() <= 1


def test_encode_returns_the_first_k_codes(tiny, pixels):
    full = tiny.encode(pixels, sample_posterior=False).codes
    assert full.shape == (2, 1, 8) and full.dtype == torch.long
    assert 0 <= int(full.min()) and int(full.max()) < 64000
    assert not torch.equal(full[0], full[1])
    for k in (1, 3, 7):
        assert torch.equal(tiny.encode(pixels, num_tokens=k, sample_posterior=False).codes, full[..., :k])
    for bad in (0, 9, True, 2.0):
        with pytest.raises(ValueError, match="num_tokens"):
            tiny.encode(pixels, num_tokens=bad)
    with pytest.raises(ValueError, match="32x32"):
        tiny.encode(torch.zeros(1, 3, 64, 64))


def test_batch_items_are_independent(tiny, pixels):
    batch = tiny.encode(pixels, sample_posterior=False).codes
    alone = torch.cat([tiny.encode(pixels[i : i + 1], sample_posterior=False).codes for i in range(2)])
    assert torch.equal(batch, alone)
    noise = tiny.initial_noise(2, torch.Generator().manual_seed(3))
    mask = torch.tensor([[True] * 3 + [False] * 5, [True] * 8])
    together = tiny.decode(batch, codes_mask=mask, num_steps=3, noise=noise).values
    first = tiny.decode(batch[:1, :, :3], num_steps=3, noise=noise[:1]).values
    second = tiny.decode(batch[1:], num_steps=3, noise=noise[1:]).values
    torch.testing.assert_close(together, torch.cat([first, second]), atol=1e-5, rtol=0)


def test_decode_is_reproducible_for_a_generator(tiny, pixels):
    codes = tiny.encode(pixels, num_tokens=4, sample_posterior=False).codes
    first = tiny.decode(codes, num_steps=3, generator=torch.Generator().manual_seed(7)).values
    again = tiny.decode(codes, num_steps=3, generator=torch.Generator().manual_seed(7)).values
    other = tiny.decode(codes, num_steps=3, generator=torch.Generator().manual_seed(8)).values
    assert first.shape == (2, 3, 32, 32)
    assert torch.equal(first, again) and not torch.equal(first, other)
    # guidance options: none, CFG, APG, and a schedule as a function of t
    schedule = lambda t: 1.0 + 4.0 * t  # noqa: E731
    for options in ({"guidance_scale": 1.0}, {"guidance_scale": 3.0, "norm_guidance": False}, {"guidance_scale": schedule}):
        values = tiny.decode(codes, num_steps=2, generator=torch.Generator().manual_seed(7), **options).values
        assert torch.isfinite(values).all()


def test_decode_rejects_bad_codes(tiny):
    with pytest.raises(ValueError, match="out of vocabulary"):
        tiny.decode(torch.full((1, 1, 4), 64000))
    with pytest.raises(ValueError, match="registers"):
        tiny.decode(torch.zeros(1, 1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="prefix"):
        tiny.decode(torch.zeros(1, 1, 4, dtype=torch.long), codes_mask=torch.tensor([[True, False, True, True]]))
    with pytest.raises(ValueError, match="num_steps"):
        tiny.decode(torch.zeros(1, 1, 4, dtype=torch.long), num_steps=0)


def test_real_photographs_round_trip(tiny, photographs):
    processor = FlexTokImageProcessor.from_model_config(tiny.config)
    inputs = processor(photographs[:2], return_tensors="pt")
    encoded = tiny.encode(**inputs, num_tokens=5, generator=torch.Generator().manual_seed(0))
    decoded = tiny.decode(encoded.codes, num_steps=2, generator=torch.Generator().manual_seed(0))
    images = processor.postprocess(decoded.values)
    assert [image.size for image in images] == [(32, 32), (32, 32)]


def test_save_and_load_keep_outputs(tiny, pixels, tmp_path):
    tiny.save_pretrained(tmp_path)
    FlexTokImageProcessor.from_model_config(tiny.config).save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, FlexTokTokenizer)
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), FlexTokImageProcessor)
    assert torch.equal(loaded.decoder.positions.table, tiny.decoder.positions.table)
    assert torch.equal(loaded.quantizer.fsq._basis, tiny.quantizer.fsq._basis)
    codes = tiny.encode(pixels, sample_posterior=False).codes
    assert torch.equal(loaded.encode(pixels, sample_posterior=False).codes, codes)
    generator = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    assert torch.equal(loaded.decode(codes, num_steps=2, generator=generator()).values,
                       tiny.decode(codes, num_steps=2, generator=generator()).values)


def test_forward_trains_encoder_and_decoder(pixels):
    torch.manual_seed(0)
    model = modalzoo.create_model("flextok-tiny").train()
    with torch.no_grad():  # leave the zero init so that gradients reach every layer
        model.decoder.head.weight.normal_(0, 0.02)
        for block in model.decoder.blocks:
            block.adaln_modulation.weight.normal_(0, 0.02)
    output = model(pixels, generator=torch.Generator().manual_seed(0))
    assert set(output.losses) == {"flow", "quantizer"} and torch.isfinite(output.loss)
    output.loss.backward()
    assert model.encoder.registers.grad is not None and model.decoder.mask_token.grad is not None
    assert all(p.grad is None for p in model.vae.parameters())
    assert not model.vae.training


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention is used on CUDA only")
def test_flex_attention_matches_sdpa_on_cuda(tiny, pixels):
    model = FlexTokTokenizer(tiny.config).cuda().eval()
    model.load_state_dict(tiny.state_dict())
    inputs = pixels.cuda()
    sdpa_codes = model.encode(inputs, sample_posterior=False).codes
    sdpa = model.decode(sdpa_codes, num_steps=2, generator=torch.Generator("cuda").manual_seed(0)).values
    model.config._attn_implementation = "flex_attention"
    assert torch.equal(model.encode(inputs, sample_posterior=False).codes, sdpa_codes)
    flex = model.decode(sdpa_codes, num_steps=2, generator=torch.Generator("cuda").manual_seed(0)).values
    torch.testing.assert_close(flex, sdpa, atol=1e-4, rtol=0)


def test_other_config_branches_run():
    """Layouts the converter accepts besides the fixture's (each was compared with the original
    through the bench plugin during development: pixels within 3e-6)."""
    with pytest.raises(ValueError, match="single_token"):
        modalzoo.create_config("flextok-tiny", null_condition="zero", null_condition_single_token=True)
    for options in (
        {"null_condition": "zero", "decoder_sequence_order": "registers_first", "decoder_adaln_segments": 1,
         "decoder_head_adaln": False, "decoder_register_positions": "none"},
        {"null_condition_single_token": True, "qkv_bias": True, "proj_bias": True, "mlp_bias": True},
    ):
        model = modalzoo.create_model("flextok-tiny", **options)
        codes = torch.randint(0, 64000, (2, 1, 3))
        values = model.decode(codes, num_steps=2, generator=torch.Generator().manual_seed(0)).values
        assert values.shape == (2, 3, 32, 32) and torch.isfinite(values).all()
    with pytest.raises(NotImplementedError, match="single-token"):
        model(torch.zeros(1, 3, 32, 32))
