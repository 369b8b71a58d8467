"""TiTok on the modalzoo contract, with tiny configs and real photographs (no downloads)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor, AutoModel

import modalzoo
from modalzoo.models.titok import TiTokImageProcessor, TiTokTokenizer

TITOK_VARIANTS = {
    "titok-l32": ([4096], 32),
    "titok-b64": ([4096], 64),
    "titok-s128": ([4096], 128),
    "titok-bl64-vq8k": ([8192], 64),
    "titok-bl128-vq8k": ([8192], 128),
    "titok-sl256-vq8k": ([8192], 256),
    "titok-ll32-vae-c16": ([], 32),
    "titok-bl64-vae-c16": ([], 64),
    "titok-bl128-vae-c16": ([], 128),
    "titok-tiny": ([64], 8),
}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return modalzoo.create_model("titok-tiny")


@pytest.fixture(scope="module")
def pixels():
    torch.manual_seed(1)
    return torch.rand(3, 3, 32, 32)


def test_every_released_variant_is_registered():
    rows = {row["name"]: row for row in modalzoo.list_models(family="titok")}
    assert set(rows) == set(TITOK_VARIANTS)
    for name, (sizes, tokens) in TITOK_VARIANTS.items():
        assert rows[name]["codebook_sizes"] == sizes
        assert rows[name]["max_tokens"] == tokens
        assert rows[name]["modality"] == "image"


def test_tiny_is_tiny(tiny):
    count = sum(p.numel() for p in tiny.parameters())
    assert 1_000 < count < 100_000
    assert tiny.config.is_legacy and tiny.num_codebooks == 1


def test_random_init_follows_the_original():
    torch.manual_seed(0)
    model = modalzoo.create_model("titok-tiny", encoder_hidden_size=64, encoder_num_heads=4, codebook_size=4096)
    layer = model.encoder.transformer.layers[0]
    assert abs(layer.mlp.fc1.weight.std().item() - 0.02) < 0.002
    assert torch.all(layer.mlp.fc1.bias == 0) and torch.all(layer.attn.qkv.bias == 0)
    xavier_bound = (6 / (64 + 3 * 64)) ** 0.5
    assert 0.9 * xavier_bound < layer.attn.qkv.weight.abs().max() <= xavier_bound
    assert abs(model.encoder.latent_tokens.std().item() - 64**-0.5) < 0.02
    assert abs(model.encoder.patch_embed.weight.std().item() - 0.02) < 0.002
    assert 0.9 / 4096 < model.quantizer.codebook.weight.abs().max() <= 1 / 4096
    assert model.pixel_code_embedding.weight.abs().max() <= 1 / 64
    assert torch.all(model.encoder.ln_pre.weight == 1)


def test_full_size_variants_build_on_meta():
    with torch.device("meta"):
        model = modalzoo.create_model("titok-l32")
    # TiTok-L-32 (incl. its MaskGIT-VQGAN decoder) has 641,054,735 parameters in the original
    assert sum(p.numel() for p in model.parameters()) == 641_054_735


def test_encode_decode_tiny(tiny, pixels):
    with torch.no_grad():
        encoded = tiny.encode(pixels)
        decoded = tiny.decode(encoded.codes)
    assert encoded.codes.shape == (3, 1, 8) and encoded.codes.dtype == torch.long
    assert encoded.codes_mask is None and encoded.latents is None
    assert 0 <= encoded.codes.min() and encoded.codes.max() < 64
    assert decoded.values.shape == (3, 3, 32, 32)
    assert torch.isfinite(decoded.values).all()
    # processor output goes straight in
    processed = TiTokImageProcessor(image_size=32)((pixels.numpy().transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    assert tiny.encode(**processed).codes.shape == (3, 1, 8)


def test_batch_items_encode_as_alone(tiny, pixels):
    with torch.no_grad():
        together = tiny.encode(pixels).codes
        alone = torch.cat([tiny.encode(pixels[i : i + 1]).codes for i in range(3)])
        assert torch.equal(together, alone)
        values = tiny.decode(together).values
        # mathematically independent; numerically, batch-size-dependent kernels round
        # differently and the random-init pixel decoder's GroupNorms amplify it
        assert torch.allclose(values[1:2], tiny.decode(together[1:2]).values, atol=1e-3)


def test_codes_are_nearest_l2_normalised_codebook_entries(tiny, pixels):
    features = tiny.encoder(pixels)
    codes = tiny.encode(pixels).codes[:, 0]
    codebook = F.normalize(tiny.quantizer.codebook.weight, dim=-1)
    similarity = F.normalize(features, dim=-1) @ codebook.T
    assert torch.equal(codes, similarity.argmax(-1))
    vectors = tiny.quantizer.lookup(codes[:, None])
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3, 8), atol=1e-5)


def _capture_ln_post(model, pixels):
    captured = {}
    handle = model.encoder.ln_post.register_forward_hook(lambda module, args, output: captured.setdefault("x", output))
    with torch.no_grad():
        features = model.encoder(pixels)
    handle.remove()
    return captured["x"], features


def test_legacy_encoder_keeps_the_no_permute_reshape(tiny, pixels):
    latents, features = _capture_ln_post(tiny, pixels)
    batch, tokens, width = latents.shape
    weight = tiny.encoder.proj_out.weight
    # the original: latents.reshape(B, W, K, 1) -> 1x1 conv -> [B, C, 1, K]
    expected = F.conv2d(latents.reshape(batch, width, tokens, 1), weight[:, :, None, None], tiny.encoder.proj_out.bias)
    assert torch.allclose(features, expected[..., 0].transpose(1, 2), atol=1e-6)
    # ... which is not the per-token projection
    assert not torch.allclose(features, latents @ weight.T + tiny.encoder.proj_out.bias, atol=1e-3)


def test_nonlegacy_head_predicts_rgb_patches(pixels):
    torch.manual_seed(0)
    model = modalzoo.create_model("titok-tiny", is_legacy=False, codebook_size=32, use_l2_norm=False)
    assert not hasattr(model, "pixel_decoder")
    latents, features = _capture_ln_post(model, pixels)
    assert torch.allclose(features, latents @ model.encoder.proj_out.weight.T + model.encoder.proj_out.bias, atol=1e-6)
    codes = model.encode(pixels).codes
    assert codes.max() < 32
    with torch.no_grad():
        patches = torch.randn(1, 16, 32)
        rgb = model.decoder.head.proj(patches).view(1, 4, 4, 8, 8, 3)
        # pixel (row 8*i + r, column 8*j + c) of channel k is patch (i, j)'s output (r, c, k)
        unfolded = rgb.permute(0, 5, 1, 3, 2, 4).reshape(1, 3, 32, 32)
        assert torch.allclose(model.decoder.head(patches, 4), model.decoder.head.conv_out(unfolded), atol=1e-6)
        assert torch.equal(unfolded[0, 2, 8 * 1 + 3, 8 * 2 + 5], rgb[0, 1, 2, 3, 5, 2])
        assert model.decode(codes).values.shape == (3, 3, 32, 32)


def test_vae_variant_is_continuous(pixels):
    torch.manual_seed(0)
    model = modalzoo.create_model("titok-tiny", is_legacy=False, quantize_mode="vae", token_size=4)
    assert model.codebook_sizes == [] and not hasattr(model, "quantizer")
    with torch.no_grad():
        encoded = model.encode(pixels)
        assert encoded.codes is None and encoded.latents.shape == (3, 8, 4)
        mean, logvar = model.encoder(pixels).chunk(2, dim=-1)
        assert torch.equal(encoded.latents, mean)
        first = model.encode(pixels, sample=True, generator=torch.Generator().manual_seed(3)).latents
        second = model.encode(pixels, sample=True, generator=torch.Generator().manual_seed(3)).latents
        assert torch.equal(first, second) and not torch.equal(first, mean)
        noise = torch.randn(3, 4, 8, generator=torch.Generator().manual_seed(3)).transpose(1, 2)
        assert torch.allclose(first, mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * noise, atol=1e-6)
        assert model.decode(latents=encoded.latents).values.shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="continuous"):
        model.decode(torch.zeros(1, 1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="latents"):
        model.decode(latents=torch.zeros(1, 8, 5))


def test_fixed_length_errors(tiny, pixels):
    with pytest.raises(ValueError, match="fixed 8 tokens.*One-D-Piece"):
        tiny.encode(pixels, num_tokens=4)
    codes = tiny.encode(pixels).codes
    with pytest.raises(ValueError, match="fixed 8 tokens"):
        tiny.decode(codes[..., :4])
    with pytest.raises(ValueError, match="fixed 8 tokens"):
        tiny.decode(codes, codes_mask=torch.arange(8)[None].expand(3, 8) < 5)
    assert tiny.encode(pixels, num_tokens=8).codes.shape[-1] == 8
    assert torch.equal(tiny.decode(codes, codes_mask=torch.ones(3, 8, dtype=torch.bool)).values, tiny.decode(codes).values)


def test_bad_input_is_a_clear_value_error(tiny):
    with pytest.raises(ValueError, match="32x32"):
        tiny.encode(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[batch, 3, height, width\]"):
        tiny.encode(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="out of vocabulary"):
        tiny.decode(torch.full((1, 1, 8), 64))
    with pytest.raises(ValueError, match="integer"):
        tiny.decode(torch.zeros(1, 1, 8))
    with pytest.raises(ValueError, match="latents"):
        tiny.decode(latents=torch.zeros(1, 8, 8))


def test_forward_trains_every_part(pixels):
    torch.manual_seed(0)
    model = modalzoo.create_model("titok-tiny").train()
    output = model(pixels)
    assert set(output.losses) == {"reconstruction", "commitment", "codebook"}
    assert torch.allclose(output.loss, sum(output.losses.values()))
    assert torch.allclose(output.losses["commitment"], 0.25 * output.losses["codebook"], rtol=1e-4)
    output.loss.backward()
    for name in ("encoder.patch_embed.weight", "encoder.latent_tokens", "quantizer.codebook.weight",
                 "decoder.head.fc2.weight", "pixel_code_embedding.weight", "pixel_decoder.conv_out.weight"):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert torch.equal(output.codes, model.eval().encode(pixels).codes)


def test_save_and_load_roundtrip(tiny, pixels, tmp_path):
    tiny.save_pretrained(tmp_path)
    TiTokImageProcessor.from_model_config(tiny.config).save_pretrained(tmp_path)
    loaded, info = AutoModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, TiTokTokenizer)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    with torch.no_grad():
        codes = tiny.encode(pixels).codes
        assert torch.equal(loaded.encode(pixels).codes, codes)
        assert torch.equal(loaded.decode(codes).values, tiny.decode(codes).values)
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert isinstance(processor, TiTokImageProcessor) and processor.image_size == 32

    half = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert half.quantizer.codebook.weight.dtype == torch.float32
    assert half.decoder.embed.weight.dtype == torch.bfloat16
    with torch.no_grad():
        # fp32 processor output goes into a bf16 model as is
        assert half.decode(half.encode(pixels).codes).values.dtype == torch.bfloat16


def test_processor_matches_the_original_transform(photographs):
    processor = TiTokImageProcessor()
    assert (processor.image_size, processor.resample, processor.value_range) == (256, "bicubic", (0.0, 1.0))
    coffee = photographs[1]  # 400 x 600
    pixel_values = processor(coffee)["pixel_values"]
    # torchvision's Resize(256, bicubic) on PIL + CenterCrop(256) + ToTensor
    resized = Image.fromarray(coffee).resize((384, 256), Image.Resampling.BICUBIC)
    expected = np.asarray(resized)[:, 64:320].astype(np.float32) / 255.0
    assert pixel_values.shape == (1, 3, 256, 256)
    assert np.allclose(pixel_values[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    out = processor.postprocess(torch.stack([pixel_values[0] * 2 - 0.5]))
    array = np.asarray(out[0])
    assert out[0].mode == "RGB" and array.min() == 0 and array.max() == 255


def test_real_photographs_round_trip(tiny, photographs):
    processor = modalzoo.create_processor(tiny.config)
    inputs = processor(photographs)  # 512x512 RGB, 400x600 RGB, 512x512 grayscale
    pixel_values = inputs["pixel_values"]
    assert pixel_values.shape == (3, 3, 32, 32)
    assert 0.0 <= pixel_values.min() and pixel_values.max() <= 1.0
    assert torch.equal(pixel_values[2, 0], pixel_values[2, 1])  # gray -> 3 equal channels
    with torch.no_grad():
        codes = tiny.encode(**inputs).codes
        values = tiny.decode(codes).values
    assert codes.shape == (3, 1, 8) and codes.max() < 64
    images = processor.postprocess(values)
    assert [image.size for image in images] == [(32, 32)] * 3
    assert all(image.mode == "RGB" for image in images)
    arrays = np.stack([np.asarray(image) for image in images])
    assert arrays.dtype == np.uint8
    expected = (values.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(arrays, expected)
