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


# ----- training losses ----------------------------------------------------------------------------
def _tiny_clip_teacher(path: Path) -> Path:
    """A tiny random CLIP vision tower with projection, saved locally as a teacher checkpoint
    (CLIP-B/16's layout at toy sizes: 24-d projection = tokenflow-tiny's semantic output)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=24)  # fmt: skip
    CLIPVisionModelWithProjection(config).save_pretrained(path)
    return path


def test_semantic_loss_against_a_frozen_teacher_from_pretrained(pixels, tmp_path):
    from modalzoo.models.tokenflow import SemanticTeacher, semantic_cosine_loss

    teacher_path = _tiny_clip_teacher(tmp_path / "teacher")
    model = modalzoo.create_model("tokenflow-tiny", semantic_teacher=str(teacher_path), scale_drop_probability=0.0).train()
    output = model(pixels)
    assert set(output.losses) == {"reconstruction", "codebook", "commitment", "semantic"}
    assert 0.0 < output.losses["semantic"].item() < 2.0
    output.losses["semantic"].backward()
    assert model.semantic_decoder.patch_embed.weight.grad.abs().sum() > 0
    # the teacher is frozen and outside the tokenizer: not trained, not saved
    teacher = model._loss_network("teacher", pixels.device)
    assert isinstance(teacher, SemanticTeacher) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())
    assert not any(name.startswith("_loss") for name in model.state_dict())
    # the target is the projected post-LN patch tokens (the original's encode_image @ proj)
    target = teacher(pixels)
    tower = teacher.tower
    unit = (pixels + 1) / 2
    mean, std = teacher.mean, teacher.std
    hidden = tower(pixel_values=(unit - mean) / std, interpolate_pos_encoding=True).last_hidden_state
    expected = tower.visual_projection(tower.vision_model.post_layernorm(hidden))[:, 1:]
    torch.testing.assert_close(target, expected, atol=1e-5, rtol=0)
    assert semantic_cosine_loss(target, target).item() == pytest.approx(0.0, abs=1e-6)
    assert semantic_cosine_loss(-target, target).item() == pytest.approx(2.0, abs=1e-5)


def test_siglip_teacher_gives_the_second_to_last_hidden_state(tmp_path):
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from modalzoo.models.tokenflow import SemanticTeacher

    torch.manual_seed(0)
    tower = SiglipVisionModel(SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                                 num_attention_heads=2, image_size=24, patch_size=8))  # fmt: skip
    tower.save_pretrained(tmp_path)
    teacher = SemanticTeacher.from_pretrained(str(tmp_path), "siglip")
    pixels = torch.rand(1, 3, 24, 24) * 2 - 1
    expected = tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(teacher(pixels), expected, atol=1e-5, rtol=0)


def test_perceptual_term(pixels):
    from modalzoo.models.tokenflow import PerceptualLoss

    perceptual = PerceptualLoss("squeeze", pretrained=False)  # LPIPS layout, random weights: no download
    assert perceptual(pixels, pixels).item() == pytest.approx(0.0, abs=1e-6)
    model = modalzoo.create_model("tokenflow-tiny", perceptual_weight=1.0).set_loss_networks(perceptual=perceptual).train()
    output = model(pixels)
    # random LPIPS heads are not the trained non-negative ones: only finiteness is meaningful here
    assert "perceptual" in output.losses and torch.isfinite(output.losses["perceptual"])
    output.losses["perceptual"].backward()
    assert model.pixel_decoder.conv_out.weight.grad.abs().sum() > 0


def test_tiny_recipe_trains_with_every_term(tmp_path):
    """The shared trainer with TokenFlow's terms: L2, VQ/commitment, semantic cosine to a
    from_pretrained teacher and the PatchGAN hinge from step 2."""
    from modalzoo.training.config import load_recipe
    from modalzoo.training.engine import Trainer

    teacher = _tiny_clip_teacher(tmp_path / "teacher")
    recipe = load_recipe(
        "tokenflow_tiny",
        ["steps=2", "data.batch_size=2", "discriminator.start_step=1", "log_every=1", "eval_every=0", "save_every=0", "num_samples=0",
         "log_with=[csv]", f"model.overrides.semantic_teacher={teacher}", f"output_dir={tmp_path / 'run'}"],
    )  # fmt: skip
    trainer = Trainer(recipe, resume=False)
    logs = [trainer.train_step() for _ in range(2)]
    assert {"reconstruction", "codebook", "commitment", "semantic", "adversarial"} <= set(logs[-1])
    assert all(np.isfinite(value) for entry in logs for value in entry.values())
