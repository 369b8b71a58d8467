"""`modalzoo bench --compare-original PATH` for TokenFlow (ByteFlow-AI/TokenFlow): the original
`TokenFlow` from a checkout (`PATH/tokenflow/tokenizer/vq_model.py`), loaded strictly with
`to_original_state_dict` (the converter run backwards), so both sides hold the same weights.

The original downloads its teacher in its constructor; here the teacher loaders are replaced by
randomly initialised towers of the same architecture (built empty, then filled with our
weights), so nothing is downloaded. It imports `get_parameter_device` / `get_parameter_dtype`
from `transformers.modeling_utils`, which transformers 5 no longer has; equivalent helpers are
provided while the checkout is imported. Only the released layouts can be built (the original
hard-codes its sizes): `tokenflow-clipb-32k-enhanced`, `tokenflow-siglip-32k`. The original needs
einops, timm, ftfy and regex.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from . import OriginalImplementation, checkout_on_path

_TEACHERS = {"clip": "clipb_224", "siglip": "siglip_384"}


@contextlib.contextmanager
def _transformers_4_helpers():
    import transformers.modeling_utils as modeling_utils

    added = []
    for name, fn in (
        ("get_parameter_device", lambda module: next(module.parameters()).device),
        ("get_parameter_dtype", lambda module: next(module.parameters()).dtype),
    ):
        if not hasattr(modeling_utils, name):
            setattr(modeling_utils, name, fn)
            added.append(name)
    try:
        yield
    finally:
        for name in added:
            delattr(modeling_utils, name)


def build_original(checkout: Path, model):
    from accelerate import init_empty_weights
    from transformers import SiglipVisionConfig, SiglipVisionModel

    from modalzoo.conversion.tokenflow import to_original_state_dict
    from modalzoo.registry import create_config

    config = model.config
    released = {"clip": "tokenflow-clipb-32k-enhanced", "siglip": "tokenflow-siglip-32k"}[config.teacher]
    reference = create_config(released).to_dict()
    differing = sorted(k for k in ("semantic_encoder_config", "scales", "pixel_channel_mult", "pixel_encoder_channels",
                                   "semantic_decoder_hidden_size", "semantic_decoder_num_layers", "pixel_z_channels")
                       if reference[k] != config.to_dict()[k])  # fmt: skip
    if differing:
        raise ValueError(f"the original hard-codes the released sizes; this model differs in {differing}")
    tower = dict(config.semantic_encoder_config)
    with _transformers_4_helpers(), checkout_on_path(Path(checkout) / "tokenflow", "tokenizer"):
        from tokenizer import vq_model
        from tokenizer.clip.model import VisionTransformer

        def clip_tower(*args, **kwargs):
            visual = VisionTransformer(tower["image_size"], tower["patch_size"], tower["hidden_size"],
                                       tower["num_hidden_layers"], tower["num_attention_heads"], tower["projection_dim"])  # fmt: skip
            del visual.proj
            return visual

        class RandomSiglip:
            @staticmethod
            def from_pretrained(*args, **kwargs):
                return SiglipVisionModel(SiglipVisionConfig(**tower))

        saved = vq_model.clip.load_clip_vision, vq_model.SiglipVisionModel
        vq_model.clip.load_clip_vision, vq_model.SiglipVisionModel = clip_tower, RandomSiglip
        try:
            with contextlib.redirect_stdout(None), init_empty_weights(include_buffers=False):
                original = vq_model.TokenFlowFunc(
                    codebook_size=config.codebook_size,
                    codebook_embed_dim=config.pixel_code_dim,
                    semantic_code_dim=config.semantic_code_dim,
                    teacher=_TEACHERS[config.teacher],
                    enhanced_decoder=config.pixel_decoder_channels == 256,
                    infer_interpolate=config.teacher == "clip" and config.image_size != 224,
                )
        finally:
            vq_model.clip.load_clip_vision, vq_model.SiglipVisionModel = saved
    expected = original.state_dict()
    prefix = "vision_model." if any(k.startswith("encoder_vqkd.vision_model.") for k in expected) else ""
    weights = to_original_state_dict(model.state_dict(), config, siglip_prefix=prefix)
    for key, value in expected.items():  # buffers the converter drops (usage history, input scaling)
        weights.setdefault(key, value)
    original.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in weights.items()}, strict=True, assign=True)
    return original.to(device=model.device, dtype=model.dtype).eval()


def wrap(original) -> OriginalImplementation:
    @torch.inference_mode()
    def encode(pixel_values: torch.Tensor) -> torch.Tensor:
        return original.encode(pixel_values)[2].reshape(pixel_values.shape[0], 1, -1)

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None) -> torch.Tensor:
        return original.decode_code(codes[:, 0])[1]

    return OriginalImplementation(encode, decode)


def load_original(checkout: Path, model) -> OriginalImplementation:
    return wrap(build_original(checkout, model))
