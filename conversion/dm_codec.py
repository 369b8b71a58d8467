"""Original DM-Codec checkpoints (`.pt` + the repo's `config.json`) -> modalzoo folders.

Two release shapes are read: the plain generator state dict that the original's
`Model.load_from_checkpoint` expects (`Model_best_dev.pt`, what the Google Drive releases hold),
and a trainer checkpoint `{'generator', 'discriminators', 'optim_g', 'optim_d', 'scheduler_g',
'scheduler_d', 'best_dev_mel_loss'}` (`ModelTrainer_<step>`), whose generator is kept and whose
other entries are dropped with their reason. Pickles are opened without running code (see
`checkpoint_io`); `trust_pickle=True` lifts that for trusted files.

    modalzoo convert dm_codec --checkpoint Model_best_dev.pt --config config.json --output DIR \
        --variant dm-codec-lm-sm

Without `--config` (or `--variant`) the architecture is read from the tensor shapes; with one,
it is checked against them. The original config and checkpoint do not say which teachers trained
them; `--variant` (dm-codec-lm-sm / dm-codec-lm) records it in the converted config.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from modalzoo.layers.seanet import seanet_key_from_original
from modalzoo.models.dm_codec import DMCodecConfig, DMCodecFeatureExtractor, DMCodecModel
from modalzoo.registry import create_config

from .checkpoint_io import (
    check_architecture_matches,
    check_fits_model,
    load_checkpoint,
    model_shapes,
    save_converted,
    state_dict_of,
)

__all__ = [
    "convert_checkpoint", "convert_config", "convert_state_dict", "infer_config", "split_state_dict",
    "to_original_config", "to_original_state_dict",
]

CODEBOOK = re.compile(r"quantizer\.vq\.layers\.(\d+)\._codebook\.(inited|cluster_size|embed|embed_avg)")
TRAINER_ENTRIES = {
    "discriminators": "MPD / MSD / MS-STFT discriminators (training only)",
    "optim_g": "generator optimiser state (training only)",
    "optim_d": "discriminator optimiser state (training only)",
    "scheduler_g": "generator LR schedule (training only)",
    "scheduler_d": "discriminator LR schedule (training only)",
    "best_dev_mel_loss": "validation bookkeeping (training only)",
}
ARCHITECTURE_FIELDS = (
    "downsampling_ratios", "num_filters", "hidden_size", "semantic_dimension", "bidirectional_lstm",
    "num_lstm_layers", "num_residual_layers", "num_quantizers", "codebook_size",
)


# ----- config ------------------------------------------------------------------------------------
def convert_config(original: dict) -> DMCodecConfig:
    """The original `config.json` (as a dict) -> `DMCodecConfig`."""
    if original.get("activation", "ELU") != "ELU":
        raise ValueError(f"unsupported activation {original['activation']!r} (the releases use ELU)")
    distill_type = original.get("distill_type", "d_axis")
    if distill_type != "d_axis":
        raise ValueError(f"distill_type {distill_type!r} is not supported (the releases use d_axis)")
    return DMCodecConfig(
        sampling_rate=int(original.get("sample_rate", 16000)),
        downsampling_ratios=list(original.get("strides", (8, 5, 4, 2))),
        num_filters=int(original.get("n_filters", 64)),
        num_residual_layers=int(original.get("n_residual_layers", 1)),
        residual_kernel_size=int(original.get("residual_kernel_size", 3)),
        dilation_base=int(original.get("dilation_base", 2)),
        num_lstm_layers=int(original.get("lstm_layers", 2)),
        bidirectional_lstm=bool(original.get("bidirectional", False)),
        hidden_size=int(original.get("dimension", 1024)),
        semantic_dimension=int(original.get("semantic_dimension", 768)),
        num_quantizers=int(original.get("n_q", 8)),
        codebook_size=int(original.get("codebook_size", 1024)),
        mel_loss_lambdas=list(original.get("mel_loss_lambdas", (45, 1, 1, 1))),
        num_mels=int(original.get("num_mels", 80)),
        mel_n_fft=int(original.get("n_fft", 1024)),
        mel_hop_length=int(original.get("hop_size", 240)),
        mel_win_length=int(original.get("win_size", 1024)),
        mel_fmin=float(original.get("fmin", 0)),
        # the loss reads `fmax_for_loss` (null: Nyquist); `fmax` only draws the logged spectrograms
        mel_fmax=original.get("fmax_for_loss"),
        reconstruction_loss_weight=float(original.get("recon_loss_lambda", 500)),
        commitment_loss_weight=float(original.get("commitment_loss_lambda", 10)),
        distillation_loss_weight=float(original.get("distill_loss_lambda", 120)),
    )


def _strip_wrappers(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # accelerate's get_state_dict unwraps DDP; a hand-saved DDP / compiled model does not
    for prefix in ("module.", "_orig_mod."):
        if state_dict and all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix):]: value for key, value in state_dict.items()}
    return state_dict


def infer_config(state_dict: dict[str, torch.Tensor]) -> DMCodecConfig:
    """The architecture read from an original generator state dict's shapes."""
    state_dict = _strip_wrappers(state_dict)

    def tensor(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise ValueError(f"not a DM-Codec generator state dict: {key} is missing")
        return state_dict[key]

    first = tensor("encoder.model.0.conv.conv.weight_v")
    num_filters = int(first.shape[0])
    strides = []
    for key, value in state_dict.items():
        match = re.fullmatch(r"encoder\.model\.(\d+)\.conv\.conv\.weight_v", key)
        if match and value.shape[0] == 2 * value.shape[1] and value.shape[-1] % 2 == 0 and value.shape[-1] > 2:
            strides.append((int(match.group(1)), value.shape[-1] // 2))
    lstm_layers = {int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"encoder\.model\.\d+\.lstm\.weight_ih_l(\d+)", k))}
    bidirectional = any(re.fullmatch(r"encoder\.model\.\d+\.lstm\.weight_ih_l\d+_reverse", k) for k in state_dict)
    stages = {int(m.group(1)) for k in state_dict if (m := CODEBOOK.fullmatch(k))}
    embed = tensor("quantizer.vq.layers.0._codebook.embed")
    resblocks = [k for k in state_dict if re.fullmatch(r"encoder\.model\.\d+\.block\.1\.conv\.conv\.weight_v", k)]
    hidden_size = int(embed.shape[1])
    return DMCodecConfig(
        downsampling_ratios=[stride for _, stride in sorted(strides, reverse=True)],
        num_filters=num_filters,
        num_residual_layers=max(1, len(resblocks) // max(1, len(strides))),
        num_lstm_layers=len(lstm_layers),
        bidirectional_lstm=bidirectional,
        hidden_size=hidden_size,
        semantic_dimension=int(state_dict["transform.weight"].shape[0]) if "transform.weight" in state_dict else hidden_size,
        num_quantizers=len(stages),
        codebook_size=int(embed.shape[0]),
    )


# ----- state dict --------------------------------------------------------------------------------
def _map_key(key: str) -> str | None:
    """Original key -> modalzoo key; None for keys this converter does not know."""
    for half in ("encoder", "decoder"):
        if key.startswith(half + ".model."):
            try:
                return f"{half}." + seanet_key_from_original(key[len(half) + 1 :])
            except KeyError:
                return None
    match = CODEBOOK.fullmatch(key)
    if match:
        return f"quantizer.layers.{match.group(1)}.codebook.{match.group(2)}"
    if key in ("transform.weight", "transform.bias"):
        return key
    return None


def split_state_dict(state_dict: dict[str, torch.Tensor], config: DMCodecConfig) -> dict[str, torch.Tensor]:
    """-> the mapped state dict; raises on any unmapped key and on shapes that do not fit `config`."""
    mapped, unmapped = {}, []
    for key, value in _strip_wrappers(state_dict).items():
        new_key = _map_key(key)
        if new_key is None:
            unmapped.append(key)
        else:
            mapped[new_key] = value
    if unmapped:
        raise ValueError(f"{len(unmapped)} checkpoint keys are not mapped: " + ", ".join(sorted(unmapped)[:20]))
    check_fits_model(mapped, model_shapes(DMCodecModel, config))
    return mapped


def convert_state_dict(state_dict: dict[str, torch.Tensor], config: DMCodecConfig) -> dict[str, torch.Tensor]:
    """Original generator keys -> `DMCodecModel` keys (every original key is kept: encoder,
    codebooks with their EMA buffers, decoder and `transform`). Raises on unmapped keys and on
    shapes that do not fit `config`."""
    return split_state_dict(state_dict, config)


# ----- the other way (for `modalzoo bench --compare-original`) ------------------------------------------
def to_original_config(config: DMCodecConfig) -> dict:
    """`DMCodecConfig` -> the original `config.json` fields its `Model(config)` reads (plus the
    loss settings of its trainer)."""
    return {
        "n_filters": config.num_filters, "strides": list(config.downsampling_ratios), "dimension": config.hidden_size,
        "semantic_dimension": config.semantic_dimension, "bidirectional": config.bidirectional_lstm,
        "dilation_base": config.dilation_base, "residual_kernel_size": config.residual_kernel_size,
        "n_residual_layers": config.num_residual_layers, "lstm_layers": config.num_lstm_layers, "activation": "ELU",
        "codebook_size": config.codebook_size, "n_q": config.num_quantizers, "sample_rate": config.sampling_rate,
        "num_mels": config.num_mels, "n_fft": config.mel_n_fft, "hop_size": config.mel_hop_length,
        "win_size": config.mel_win_length, "fmin": config.mel_fmin, "fmax_for_loss": config.mel_fmax,
        "mel_loss_lambdas": list(config.mel_loss_lambdas), "recon_loss_lambda": config.reconstruction_loss_weight,
        "commitment_loss_lambda": config.commitment_loss_weight, "distill_type": "d_axis",
        "distill_loss_lambda": config.distillation_loss_weight,
    }


_WEIGHT_NORM_BACK = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v", "bias": "bias"}


def to_original_state_dict(state_dict: dict[str, torch.Tensor], config: DMCodecConfig) -> dict[str, torch.Tensor]:
    """`DMCodecModel` keys -> the original generator's keys, inverting `convert_state_dict` key
    by key (each result is checked to map back to where it came from)."""
    from transformers.models.encodec.modeling_encodec import EncodecConvTranspose1d

    with torch.device("meta"):
        model = DMCodecModel(config)
    original = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"quantizer\.layers\.(\d+)\.codebook\.(\w+)", key)
        half = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
        if match:
            new_key = f"quantizer.vq.layers.{match.group(1)}._codebook.{match.group(2)}"
        elif half:
            name, index, rest = half.groups()
            conv = re.fullmatch(r"((?:block\.\d+\.|shortcut\.)?)conv\.(.+)", rest)
            if conv:
                prefix, leaf = conv.groups()
                transposed = not prefix and isinstance(getattr(model, name).layers[int(index)], EncodecConvTranspose1d)
                new_key = f"{name}.model.{index}.{prefix}{'convtr.convtr' if transposed else 'conv.conv'}.{_WEIGHT_NORM_BACK[leaf]}"
            else:
                new_key = f"{name}.model.{index}.{rest}"
        else:
            new_key = key
        if _map_key(new_key) != key:
            raise ValueError(f"no original key maps to {key}")
        original[new_key] = value
    return original


# ----- files -------------------------------------------------------------------------------------
def _generator_and_dropped(checkpoint: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    dropped = {}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("generator"), dict):
        unknown = sorted(set(checkpoint) - set(TRAINER_ENTRIES) - {"generator"})
        if unknown:
            raise ValueError(f"unknown trainer checkpoint entries: {', '.join(map(str, unknown))}")
        dropped = {name: reason for name, reason in TRAINER_ENTRIES.items() if name in checkpoint}
        return checkpoint["generator"], dropped
    return state_dict_of(checkpoint), dropped


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Converts an original generator `.pt` or trainer checkpoint into a Hub-ready folder
    (config.json, model.safetensors, preprocessor_config.json). `config` is the original
    `config.json`, `variant` a registered dm_codec variant (which also records the teachers);
    with neither, the architecture comes from the tensor shapes.
    Returns {"mapped": n, "dropped": {entry: reason}, "missing": []}."""
    state_dict, dropped = _generator_and_dropped(load_checkpoint(Path(checkpoint), trust_pickle=trust_pickle))
    inferred = infer_config(state_dict)
    if config is not None:
        with open(config) as handle:
            model_config = convert_config(json.load(handle))
        check_architecture_matches(model_config, inferred, f"config {config}", ARCHITECTURE_FIELDS)
        if variant is not None:
            variant_config = create_config(variant)
            if variant_config.model_type != "dm_codec":
                raise ValueError(f"{variant!r} is not a dm_codec variant")
            model_config.distill_teacher = variant_config.distill_teacher
    elif variant is not None:
        model_config = create_config(variant)
        if model_config.model_type != "dm_codec":
            raise ValueError(f"{variant!r} is not a dm_codec variant")
        check_architecture_matches(model_config, inferred, f"variant {variant}", ARCHITECTURE_FIELDS)
    else:
        model_config = inferred
    model_config.variant = variant

    mapped = split_state_dict(state_dict, model_config)
    model = DMCodecModel(model_config)
    save_converted(model, mapped, DMCodecFeatureExtractor.from_model_config(model_config), output)
    return {"mapped": len(mapped), "dropped": dropped, "missing": []}
