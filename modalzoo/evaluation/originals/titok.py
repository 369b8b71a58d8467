"""`modalzoo bench --compare-original PATH` for TiTok (bytedance/1d-tokenizer) and, through
`one_d_piece.py`, One-D-Piece (turingmotors/One-D-Piece): the original network from a checkout,
built from `to_original_config(model.config)` and loaded strictly with `to_original_state_dict`
(the converter run backwards), so both sides hold the same weights.

Only the original's hard-coded sizes can be built (the released variants, e.g. `titok-s128`,
`titok-bl64-vq8k`, `one-d-piece-s256`); the VAE variants return latents, not codes, and are not
compared. The original needs omegaconf, einops, accelerate and torchvision.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import OriginalImplementation, checkout_on_path


def build_original(checkout: Path, model, module: str, class_name: str):
    from omegaconf import OmegaConf

    from modalzoo.conversion.titok import to_original_config, to_original_state_dict

    if model.config.quantize_mode != "vq":
        raise ValueError("the VAE variants return latents, not codes: compare a VQ variant")
    with checkout_on_path(checkout, "modeling", "utils"):
        original_class = getattr(__import__(module, fromlist=[class_name]), class_name)
        original = original_class(OmegaConf.create(to_original_config(model.config)))
    original.load_state_dict(to_original_state_dict(model.state_dict(), model.config), strict=True)
    return original.to(device=model.device, dtype=model.dtype).eval()


def wrap(original) -> OriginalImplementation:
    @torch.inference_mode()
    def encode(pixel_values: torch.Tensor) -> torch.Tensor:
        return original.encode(pixel_values)[1]["min_encoding_indices"].reshape(pixel_values.shape[0], 1, -1)

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None) -> torch.Tensor:
        return original.decode_tokens(codes)

    return OriginalImplementation(encode, decode)


def load_original(checkout: Path, model) -> OriginalImplementation:
    return wrap(build_original(checkout, model, "modeling.titok", "TiTok"))
