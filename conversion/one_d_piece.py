"""One-D-Piece checkpoints (turingmotors/One-D-Piece) -> modalzoo `OneDPieceTokenizer` folders.

One-D-Piece's state dicts are legacy TiTok's, key for key, so the mapping is TiTok's
(`conversion/titok.py`); only the config differs: there is no `is_legacy` flag (always legacy),
`strict_length_assertion: false` (any token prefix decodes) is implied by the model class, and
`model.type: "one_d_piece"` marks the tree. Formats: the `PyTorchModelHubMixin` folder
(`turing-motors/One-D-Piece-{S,B,L}-256`) and the training scripts' `pytorch_model.bin` state
dicts (stage-1 ones need the MaskGIT-VQGAN decoder merged in under `pixel_*`, as the original's
scripts do, before they convert).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from modalzoo.models.one_d_piece import OneDPieceConfig

from . import titok


def convert_config(original_config: Mapping[str, Any], **patched) -> OneDPieceConfig:
    """Original One-D-Piece config tree (as a dict) -> `OneDPieceConfig`."""
    vq_model, _ = titok.original_vq_model(original_config)
    if vq_model.get("quantize_mode", "vq") != "vq" or not vq_model.get("is_legacy", True):
        raise ValueError("One-D-Piece checkpoints are legacy VQ TiTok models; this config says otherwise")
    return OneDPieceConfig(**titok.config_kwargs(original_config, **patched))


def convert_state_dict(original_state_dict: Mapping[str, torch.Tensor], config: OneDPieceConfig) -> dict[str, torch.Tensor]:
    """Original state dict -> modalzoo state dict (TiTok's legacy mapping)."""
    return titok.convert_state_dict(original_state_dict, config)


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    *,
    trust_pickle: bool = False,
    **patched,
) -> dict:
    """Original One-D-Piece checkpoint -> Hub-ready folder; see `titok.convert_checkpoint`."""
    return titok.convert_checkpoint_with(
        convert_config, "one_d_piece", checkpoint, output, variant, config, trust_pickle=trust_pickle, **patched
    )


load_original_checkpoint = titok.load_original_checkpoint
to_original_config = titok.to_original_config
to_original_state_dict = titok.to_original_state_dict

__all__ = [
    "convert_checkpoint",
    "convert_config",
    "convert_state_dict",
    "load_original_checkpoint",
    "to_original_config",
    "to_original_state_dict",
]
