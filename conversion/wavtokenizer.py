"""Original WavTokenizer Lightning checkpoints (`.ckpt` + the repo's yaml) -> modalzoo folders.

Kept: the SEANet encoder, the codebook, the Vocos backbone and the ISTFT head. Dropped, each
with its reason: the discriminators and loss modules (training only), the unused SEANet decoder
and the ISTFT window (recomputed). Any other key fails the conversion.

    modalzoo convert wavtokenizer --checkpoint wavtokenizer_large_unify_600_24k.ckpt \
        --config wavtokenizer_smalldata_frame40_3s_nq1_code4096_dim512_kmeans200_attn.yaml --output DIR

Without `--config` (or `--variant`) the architecture is read from the tensor shapes; with one,
it is checked against them, which catches the common frame40-yaml / 320-hop-checkpoint mix-up.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
import yaml

from modalzoo.layers.seanet import seanet_key_from_original
from modalzoo.models.wavtokenizer import RELEASES, WavTokenizerConfig, WavTokenizerFeatureExtractor, WavTokenizerModel
from modalzoo.registry import create_config

from .checkpoint_io import (
    check_architecture_matches,
    check_fits_model,
    load_checkpoint,
    model_shapes,
    save_converted,
    state_dict_of,
)

__all__ = ["convert_checkpoint", "convert_config", "convert_state_dict", "infer_config"]

ENCODER = "feature_extractor.encodec.encoder."
CODEBOOK = "feature_extractor.encodec.quantizer.vq.layers.0._codebook."
WINDOW = "head.istft.window"

DROPPED_PREFIXES = {
    "feature_extractor.encodec.decoder.": "unused SEANet decoder (audio is decoded by backbone + head)",
    "multiperioddisc.": "multi-period discriminator (training only)",
    "multiresddisc.": "multi-resolution discriminator (training only)",
    "dac.": "DAC discriminator (training only)",
    "dacdiscriminator.": "DAC discriminator held by its GAN loss (training only)",
    "melspec_loss.": "mel loss filterbank (training only; recomputed)",
    "disc_loss.": "discriminator loss (training only)",
    "gen_loss.": "generator loss (training only)",
    "feat_matching_loss.": "feature-matching loss (training only)",
}

# Encoder fields the original yaml cannot express (EncodecFeatures hard-codes them).
NOT_IN_YAML = ("encoder_num_filters", "encoder_num_lstm_layers")

# Fields that define the architecture: compared when a yaml / variant meets a checkpoint.
ARCHITECTURE_FIELDS = (
    "downsampling_ratios", "hidden_size", "codebook_size", "decoder_dim", "decoder_intermediate_dim",
    "decoder_num_layers", "adanorm_num_embeddings", "n_fft", "encoder_num_filters", "encoder_num_lstm_layers",
)

_EXPECTED_CLASSES = {
    "feature_extractor": "decoder.feature_extractors.EncodecFeatures",
    "backbone": "decoder.models.VocosBackbone",
    "head": "decoder.heads.ISTFTHead",
}


# ----- config ------------------------------------------------------------------------------------
def _model_init_args(original: dict) -> dict:
    """The `model.init_args` block of a LightningCLI yaml (or the block itself)."""
    if "model" in original and isinstance(original["model"], dict):
        original = original["model"]
    return original.get("init_args", original)


def convert_config(original: dict) -> WavTokenizerConfig:
    """An original training yaml (as a dict) -> `WavTokenizerConfig`."""
    args = _model_init_args(original)
    sections = {}
    for name, class_path in _EXPECTED_CLASSES.items():
        if name not in args:
            raise ValueError(f"the yaml has no model.init_args.{name} section")
        if args[name].get("class_path") != class_path:
            raise ValueError(
                f"unsupported {name} class {args[name].get('class_path')!r}; WavTokenizer releases use {class_path}"
            )
        sections[name] = args[name].get("init_args", {})
    features, backbone, head = sections["feature_extractor"], sections["backbone"], sections["head"]

    if features.get("encodec_model", "encodec_24khz") != "encodec_24khz":
        raise ValueError(f"unsupported encodec_model {features['encodec_model']!r} (only encodec_24khz exists)")
    if features.get("num_quantizers", 1) != 1:
        raise ValueError(f"num_quantizers={features['num_quantizers']}: inference uses exactly one codebook")
    if head.get("padding", "same") != "same":
        raise ValueError(f"ISTFT padding {head['padding']!r} is not supported (releases use 'same')")
    if backbone["dim"] != head["dim"]:
        raise ValueError(f"backbone dim {backbone['dim']} differs from head dim {head['dim']}")

    config = WavTokenizerConfig(
        sampling_rate=int(args.get("sample_rate", 24000)),
        downsampling_ratios=list(features.get("dowmsamples", (6, 5, 5, 4))),
        # The latent width; EncodecFeatures hard-codes the encoder (32 filters, 512-d, 2 LSTM
        # layers), so every release has 512 here. The filters / LSTM depth are no yaml options:
        # `convert_checkpoint` reads them from the tensor shapes.
        hidden_size=int(backbone.get("input_channels", 512)),
        codebook_size=int(features.get("vq_bins", 16384)),
        codebook_kmeans_iters=int(features.get("vq_kmeans", 800)),
        decoder_dim=int(backbone["dim"]),
        decoder_intermediate_dim=int(backbone["intermediate_dim"]),
        decoder_num_layers=int(backbone["num_layers"]),
        decoder_layer_scale_init_value=backbone.get("layer_scale_init_value"),
        adanorm_num_embeddings=backbone.get("adanorm_num_embeddings"),
        n_fft=int(head["n_fft"]),
        mel_loss_weight=float(args.get("mel_loss_coeff", 45.0)),
    )
    if int(head["hop_length"]) != config.hop_length:
        raise ValueError(
            f"head hop_length {head['hop_length']} differs from the encoder's total stride {config.hop_length} "
            f"(dowmsamples {config.downsampling_ratios})"
        )
    return config


def infer_config(state_dict: dict[str, torch.Tensor]) -> WavTokenizerConfig:
    """The architecture read from an original state dict's shapes."""

    def tensor(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise ValueError(f"not a WavTokenizer checkpoint: {key} is missing")
        return state_dict[key]

    # Downsampling convs double the channels and have kernel 2 * stride; listed in encoder order.
    strides = []
    for key, value in state_dict.items():
        match = re.fullmatch(re.escape(ENCODER) + r"model\.(\d+)\.conv\.conv\.weight_v", key)
        if match and value.shape[0] == 2 * value.shape[1] and value.shape[-1] % 2 == 0:
            strides.append((int(match.group(1)), value.shape[-1] // 2))
    lstm_layers = {int(m.group(1)) for k in state_dict if (m := re.search(r"\.lstm\.weight_ih_l(\d+)$", k)) and k.startswith(ENCODER)}
    convnext = {int(m.group(1)) for k in state_dict if (m := re.fullmatch(r"backbone\.convnext\.(\d+)\.dwconv\.weight", k))}
    codebook = tensor(CODEBOOK + "embed")
    embed = tensor("backbone.embed.weight")
    return WavTokenizerConfig(
        downsampling_ratios=[stride for _, stride in sorted(strides, reverse=True)],
        encoder_num_filters=int(tensor(ENCODER + "model.0.conv.conv.weight_v").shape[0]),
        encoder_num_lstm_layers=len(lstm_layers),
        hidden_size=int(codebook.shape[1]),
        codebook_size=int(codebook.shape[0]),
        decoder_dim=int(embed.shape[0]),
        decoder_intermediate_dim=int(tensor("backbone.convnext.0.pwconv1.weight").shape[0]),
        decoder_num_layers=len(convnext),
        adanorm_num_embeddings=int(state_dict["backbone.norm.scale.weight"].shape[0])
        if "backbone.norm.scale.weight" in state_dict else None,
        n_fft=int(tensor("head.out.weight").shape[0]) - 2,
    )


# ----- state dict --------------------------------------------------------------------------------
def _map_key(key: str) -> str | None:
    """Original key -> modalzoo key; None for keys this converter does not know."""
    if key.startswith(ENCODER):
        try:
            return "encoder." + seanet_key_from_original(key[len(ENCODER):])
        except KeyError:
            return None
    if key.startswith(CODEBOOK) and key[len(CODEBOOK):] in ("inited", "cluster_size", "embed", "embed_avg"):
        return "codebook." + key[len(CODEBOOK):]
    if key.startswith(("backbone.", "head.out.")):
        return key
    return None


def split_state_dict(state_dict: dict[str, torch.Tensor], config: WavTokenizerConfig):
    """-> (mapped state dict, {dropped prefix or key: reason}); raises on any unmapped key and on
    shape mismatches against `config`."""
    mapped, dropped, unmapped = {}, {}, []
    for key, value in state_dict.items():
        prefix = next((p for p in DROPPED_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            dropped[prefix] = DROPPED_PREFIXES[prefix]
            continue
        if key == WINDOW:
            expected = torch.hann_window(config.n_fft)
            if value.shape != expected.shape or (
                not value.is_meta and not torch.allclose(value.float().cpu(), expected, atol=1e-6)
            ):
                raise ValueError(f"{WINDOW} is not a periodic Hann window of {config.n_fft} samples")
            dropped[WINDOW] = "Hann window, recomputed by the model (non-persistent buffer)"
            continue
        new_key = _map_key(key)
        if new_key is None:
            unmapped.append(key)
        else:
            mapped[new_key] = value
    if unmapped:
        raise ValueError(f"{len(unmapped)} checkpoint keys are not mapped: " + ", ".join(sorted(unmapped)[:20]))

    check_fits_model(mapped, model_shapes(WavTokenizerModel, config))
    return mapped, dropped


def convert_state_dict(state_dict: dict[str, torch.Tensor], config: WavTokenizerConfig) -> dict[str, torch.Tensor]:
    """Original (Lightning `state_dict`) keys -> `WavTokenizerModel` keys. Raises on unmapped
    keys and on shapes that do not fit `config`; drops training-only and recomputed tensors."""
    return split_state_dict(state_dict, config)[0]


# ----- files -------------------------------------------------------------------------------------
def _variant_from_filename(path: Path) -> str | None:
    for name, (_, _, files, _) in RELEASES.items():
        if path.name in files:
            return name
    return None


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Converts an original `.ckpt` into a Hub-ready folder (config.json, model.safetensors,
    preprocessor_config.json). `config` is the original yaml, `variant` a registered
    wavtokenizer variant name; with neither, the architecture comes from the tensor shapes.
    Returns {"mapped": n, "dropped": {prefix_or_key: reason}, "missing": [...]}."""
    checkpoint_path = Path(checkpoint)
    state_dict = state_dict_of(load_checkpoint(checkpoint_path, trust_pickle=trust_pickle))
    inferred = infer_config(state_dict)
    if config is not None:
        with open(config) as handle:
            model_config = convert_config(yaml.safe_load(handle))
        for name in NOT_IN_YAML:
            setattr(model_config, name, getattr(inferred, name))
        check_architecture_matches(model_config, inferred, f"config {config}", ARCHITECTURE_FIELDS)
    elif variant is not None:
        model_config = create_config(variant)
        if model_config.model_type != "wavtokenizer":
            raise ValueError(f"{variant!r} is not a wavtokenizer variant")
        check_architecture_matches(model_config, inferred, f"variant {variant}", ARCHITECTURE_FIELDS)
    else:
        model_config = inferred
    model_config.variant = variant or _variant_from_filename(checkpoint_path)

    mapped, dropped = split_state_dict(state_dict, model_config)
    model = WavTokenizerModel(model_config)
    save_converted(model, mapped, WavTokenizerFeatureExtractor.from_model_config(model_config), output)
    return {"mapped": len(mapped), "dropped": dropped, "missing": []}

