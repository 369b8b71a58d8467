"""TokenFlow on the modalzoo contract: tiny configs, the recorded fixture weights and real
photographs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoModel

import modalzoo
from modalzoo.models.tokenflow import TokenFlowImageProcessor, TokenFlowTokenizer
from modalzoo.quantizers.shared_index_quantizer import SharedIndexQuantizer

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tokenflow" / "tiny_clip"
VARIANTS = {"tokenflow-clipb-32k-enhanced": 817, "tokenflow-siglip-32k": 2227, "tokenflow-tiny": 39}


@pytest.fixture(scope="module")
def tiny() -> TokenFlowTokenizer:
    """tokenflow-tiny holding the weights recorded from the original."""
    from modalzoo.conversion import tokenflow as conversion
    from modalzoo.conversion.checkpoint_io import load_checkpoint

    original = conversion.original_state_dict_of(load_checkpoint(FIXTURE / "tokenflow_tiny.pt"))
    model = modalzoo.create_model("tokenflow-tiny")
    model.load_state_dict(conversion.convert_state_dict(original, model.config))
    return model.eval()


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.from_numpy(np.load(FIXTURE / "input.npy"))


def test_every_released_variant_is_registered():
    rows = {row["name"]: row for row in modalzoo.list_models(family="tokenflow")}
    assert set(rows) == set(VARIANTS)
    for name, tokens in VARIANTS.items():
        assert rows[name]["max_tokens"] == tokens
        assert rows[name]["modality"] == "image"
    assert rows["tokenflow-clipb-32k-enhanced"]["codebook_sizes"] == [32768]


def test_full_size_models_build_without_downloads():
    for name in ("tokenflow-clipb-32k-enhanced", "tokenflow-siglip-32k"):
        config = modalzoo.create_config(name)
        with torch.device("meta"):
            model = TokenFlowTokenizer(config)
        assert model.quantizer.semantic_codebook.weight.shape == (32768, 32)
        assert model.quantizer.pixel_codebook.weight.shape == (32768, 8)
    assert modalzoo.create_config("tokenflow-siglip-32k").grid_size == 27


def test_encode_returns_codes_per_scale(tiny, pixels):
    with torch.no_grad():
        encoded = tiny.encode(pixels, return_semantic=True)
    assert encoded.codes.shape == (2, 1, 39) and encoded.codes.dtype == torch.long
    assert encoded.codes_mask is None
    assert encoded.scales == [1, 2, 3, 5]
    assert encoded.scale_boundaries == [0, 1, 5, 14, 39]
    assert encoded.latents.shape == (2, 25, 20)
    # the two photographs get different codes at every scale but the coarsest ones may agree
    assert not torch.equal(encoded.codes[0], encoded.codes[1])
    # without return_semantic no features are computed
    assert tiny.encode(pixels).latents is None


def test_model_api_with_processor(tiny, photographs):
    processor = TokenFlowImageProcessor.from_model_config(tiny.config)
    inputs = processor(photographs[:2], return_tensors="pt")
    with torch.no_grad():
        codes = tiny.encode(**inputs).codes
        values = tiny.decode(codes).values
    assert values.shape == (2, 3, 40, 40)
    images = processor.postprocess(values)
    assert images[0].size == (40, 40) and images[0].mode == "RGB"


def test_processor_is_the_originals_center_crop(photographs, pixels):
    """ADM center_crop_arr + ToTensor + Normalize(0.5, 0.5): the recorder's input is the same
    transform, so the processor reproduces the fixture input exactly."""
    processor = TokenFlowImageProcessor(image_size=40)
    batch = processor(photographs[:2], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(batch, pixels, atol=1e-6, rtol=0)
    assert batch.min() >= -1 and batch.max() <= 1
    for name, size in (("tokenflow-clipb-32k-enhanced", 256), ("tokenflow-siglip-32k", 384)):
        processor = modalzoo.create_processor(name)
        out = processor(photographs, return_tensors="pt")["pixel_values"]
        assert out.shape == (3, 3, size, size) and processor.value_range == (-1.0, 1.0)


def test_decode_a_prefix_of_scales(tiny, pixels):
    with torch.no_grad():
        codes = tiny.encode(pixels).codes
        coarse = tiny.decode(codes[..., :14]).values
        full = tiny.decode(codes).values
    assert coarse.shape == full.shape == (2, 3, 40, 40)
    assert not torch.allclose(coarse, full)
    with pytest.raises(ValueError, match="scale boundary"):
        tiny.decode(codes[..., :10])
    with pytest.raises(ValueError, match="out of vocabulary"):
        tiny.decode(torch.full((1, 1, 39), 128))
    with pytest.raises(ValueError, match="codes_mask"):
        tiny.decode(codes, codes_mask=torch.ones(2, 39, dtype=torch.bool))


def test_decode_semantic(tiny, pixels):
    with torch.no_grad():
        codes = tiny.encode(pixels).codes
        semantic = tiny.decode_semantic(codes)
    assert semantic.shape == (2, 25, 24)
    expected = np.load(FIXTURE / "semantic.npy")
    np.testing.assert_allclose(semantic.numpy(), expected, atol=1e-5, rtol=0)


def test_a_batch_item_encodes_as_alone(tiny, pixels):
    with torch.no_grad():
        both = tiny.encode(pixels).codes
        alone = tiny.encode(pixels[1:]).codes
    assert torch.equal(both[1:], alone)


def test_wrong_input_is_rejected(tiny):
    with pytest.raises(ValueError, match="40x40"):
        tiny.encode(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="floating-point"):
        tiny.encode(torch.zeros(1, 3, 40, 40, dtype=torch.uint8))


def test_save_and_reload(tiny, pixels, tmp_path):
    tiny.save_pretrained(tmp_path)
    TokenFlowImageProcessor.from_model_config(tiny.config).save_pretrained(tmp_path)
    reloaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(AutoImageProcessor.from_pretrained(tmp_path), TokenFlowImageProcessor)
    with torch.no_grad():
        assert torch.equal(reloaded.encode(pixels).codes, tiny.encode(pixels).codes)
    half = AutoModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert half.quantizer.semantic_codebook.weight.dtype == torch.float32
    assert half.pixel_decoder.conv_in.weight.dtype == torch.bfloat16
    with torch.no_grad():
        values = half.decode(tiny.encode(pixels).codes).values
    assert values.shape == (2, 3, 40, 40) and torch.isfinite(values).all()


def test_training_forward_and_scale_drop(pixels):
    model = modalzoo.create_model("tokenflow-tiny", scale_drop_probability=1.0).train()
    output = model(pixels, generator=torch.Generator().manual_seed(0))
    assert set(output.losses) == {"reconstruction", "codebook", "commitment"}
    assert output.codes.shape[-1] < 39  # one scale dropped
    assert output.semantic_reconstruction.shape == (2, 25, 24)
    (output.loss + output.semantic_reconstruction.square().mean()).backward()
    assert model.pixel_encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.semantic_encoder.tower.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    assert model.quantizer.semantic_codebook.weight.grad.abs().sum() > 0
    model.eval()
    assert model(pixels).codes.shape[-1] == 39


def test_quantizer_sums_the_two_distances():
    torch.manual_seed(0)
    quantizer = SharedIndexQuantizer(codebook_size=16, semantic_dim=3, pixel_dim=2, scales=[1, 2])
    features = torch.randn(2, 5, 2, 2)
    output = quantizer(features)
    assert output.codes.shape == (2, 1, 5)
    # the finest scale quantizes the residual after the upsampled 1x1 code
    first = F.interpolate(quantizer.quantize_map(F.interpolate(features, size=(1, 1), mode="area"))[0], size=(2, 2), mode="bicubic")
    residual = (features - first).permute(0, 2, 3, 1).reshape(-1, 5)
    semantic = F.normalize(residual[:, :3], dim=-1)
    pixel = F.normalize(residual[:, 3:], dim=-1)
    table_s = F.normalize(quantizer.semantic_codebook.weight, dim=-1)
    table_p = F.normalize(quantizer.pixel_codebook.weight, dim=-1)
    distance = torch.cdist(semantic, table_s) ** 2 + torch.cdist(pixel, table_p) ** 2
    assert torch.equal(output.codes[:, 0, 1:].reshape(-1), distance.argmin(dim=1))
    # looking the codes up gives the quantized map (up to the straight-through rounding)
    torch.testing.assert_close(quantizer.lookup(output.codes), output.quantized, atol=1e-5, rtol=0)
