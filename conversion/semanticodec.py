"""Original SemantiCodec releases (`haoheliu/SemantiCodec`) -> modalzoo folders.

A release is a folder `semanticodec_tokenrate_<25|50|100>/` with two plain state dicts,
`encoder.ckpt` (`AudioMAEConditionQuantResEncoder`) and `decoder.ckpt` (the latent diffusion
model), plus a k-means centroid file `codebook_idx/combine_*_audioset_dominate/codebook_*_0.npy`
shared by the repo. The vocabulary is the centroid file's: choose it with `--variant`
(`semanticodec-100-16384`), or point `--config` at the `.npy` itself.

    modalzoo convert semanticodec --checkpoint SemantiCodec/semanticodec_tokenrate_100 \
        --variant semanticodec-100-16384 --output semanticodec-100-16384

Kept: AudioMAE's encoder, the BiLSTM, its output projection and the acoustic codebook, the
centroids, and the decoder (mapped by `semanticodec_decoder.map_decoder_state_dict`). Dropped,
with the reason: AudioMAE's MAE decoder and mask token (pre-training only) and its fixed sin-cos
position table (recomputed, after checking it). Any other key fails the conversion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from modalzoo.models.semanticodec import RELEASES, SemantiCodecConfig, SemantiCodecFeatureExtractor, SemantiCodecModel, centroid_file
from modalzoo.models.semanticodec.decoder_semanticodec import released_decoder_config
from modalzoo.models.semanticodec.encoder_semanticodec import audiomae_pos_embed
from modalzoo.registry import create_config

from .checkpoint_io import check_fits_model, load_checkpoint, model_shapes, save_converted, state_dict_of

__all__ = ["convert_checkpoint", "convert_config", "convert_state_dict", "infer_architecture", "infer_config", "split_state_dict"]

AUDIOMAE = "audiomae.model."
POS_EMBED = AUDIOMAE + "pos_embed"
DROPPED_AUDIOMAE = {
    "mask_token": "MAE mask token (masked pre-training only)",
    "decoder_pos_embed": "MAE reconstruction decoder (pre-training only)",
    "decoder_embed.": "MAE reconstruction decoder (pre-training only)",
    "decoder_blocks.": "MAE reconstruction decoder (pre-training only)",
    "decoder_norm.": "MAE reconstruction decoder (pre-training only)",
    "decoder_pred.": "MAE reconstruction decoder (pre-training only)",
}
KEPT_AUDIOMAE = ("cls_token", "patch_embed.proj.", "blocks.", "norm.")
CODEBOOK_BUFFERS = ("initted", "cluster_size", "embed_avg", "embed")


# ----- config ------------------------------------------------------------------------------------
def convert_config(tokens_per_second: int, semantic_codebook_size: int, **overrides) -> SemantiCodecConfig:
    """The original's `get_config(token_rate, vocab_size)` -> `SemantiCodecConfig` (the encoder
    fields; the decoder's come from part B's `released_decoder_config`)."""
    return SemantiCodecConfig(tokens_per_second=tokens_per_second, semantic_codebook_size=semantic_codebook_size, **overrides)


def infer_architecture(encoder_state: dict[str, torch.Tensor], centroids: np.ndarray | torch.Tensor) -> dict[str, int]:
    """The config fields the tensor shapes fix: AudioMAE width and depth, the stacking (from the
    projection's width), BiLSTM depth, acoustic and semantic vocabularies."""
    try:
        hidden = encoder_state[AUDIOMAE + "cls_token"].shape[-1]
        feature_dim = encoder_state["encoder_output_linear.weight"].shape[0]
        acoustic = encoder_state["quantizer._codebook.embed"].shape[-2]
    except KeyError as error:
        raise ValueError(f"not a SemantiCodec encoder checkpoint: it lacks {error.args[0]!r}") from None
    stack = feature_dim // hidden
    rates = {1: 100, 2: 50, 4: 25}
    if feature_dim % hidden or stack not in rates:
        raise ValueError(f"feature width {feature_dim} is not 1, 2 or 4 AudioMAE widths ({hidden})")
    layers = 1 + max(int(k.split("_l")[-1].split("_")[0]) for k in encoder_state if k.startswith("encoder.weight_ih_l"))
    blocks = 1 + max(int(k.split(".")[3]) for k in encoder_state if k.startswith(AUDIOMAE + "blocks."))
    if centroids.ndim != 2 or centroids.shape[1] != feature_dim:
        raise ValueError(f"centroids must be [vocabulary, {feature_dim}] for this encoder, got {tuple(centroids.shape)}")
    return dict(
        tokens_per_second=rates[stack], semantic_codebook_size=int(centroids.shape[0]), acoustic_codebook_size=int(acoustic),
        audiomae_hidden_size=int(hidden), audiomae_num_layers=blocks, lstm_num_layers=layers,
    )


def infer_config(encoder_state: dict[str, torch.Tensor], centroids: np.ndarray | torch.Tensor, **overrides) -> SemantiCodecConfig:
    """`infer_architecture` as a config (the ViT-B head count and averaged depth of the releases
    unless `overrides` say otherwise)."""
    return SemantiCodecConfig(**{**infer_architecture(encoder_state, centroids), **overrides})


# ----- state dict --------------------------------------------------------------------------------
def _map_encoder_key(key: str) -> str | None:
    if key.startswith(AUDIOMAE):
        rest = key[len(AUDIOMAE):]
        return "encoder.audiomae." + rest if rest.startswith(KEPT_AUDIOMAE) else None
    if key.startswith("encoder.weight_") or key.startswith("encoder.bias_"):
        return "encoder.acoustic_lstm." + key[len("encoder."):]
    if key == "encoder_output_linear.weight":
        return "encoder.acoustic_proj.weight"
    if key.startswith("quantizer._codebook.") and key.rsplit(".", 1)[-1] in CODEBOOK_BUFFERS:
        return "encoder.acoustic_quantizer.vq." + key[len("quantizer."):]
    return None


def _dropped_reason(key: str) -> str | None:
    if key.startswith(AUDIOMAE):
        rest = key[len(AUDIOMAE):]
        return next((reason for prefix, reason in DROPPED_AUDIOMAE.items() if rest.startswith(prefix)), None)
    return None


def split_state_dict(
    encoder_state: dict[str, torch.Tensor],
    centroids: np.ndarray | torch.Tensor,
    config: SemantiCodecConfig,
    decoder_state: dict[str, torch.Tensor] | None = None,
    model: SemantiCodecModel | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(mapped state dict, {dropped key or prefix: reason}). Raises on unmapped keys, on a
    position table that is not AudioMAE's sin-cos one, and on shapes that do not fit `config`
    (or the already built `model`)."""
    mapped: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    unmapped = []
    for key, value in encoder_state.items():
        if key == POS_EMBED:
            expected = audiomae_pos_embed(config.audiomae_hidden_size, config.patch_grid)
            same_values = value.is_meta or torch.allclose(value.float(), expected, atol=1e-6)  # meta: key listings
            if tuple(value.shape) != tuple(expected.shape) or not same_values:
                raise ValueError(f"{POS_EMBED} is not AudioMAE's fixed sin-cos table for a {config.patch_grid} patch grid")
            dropped[POS_EMBED] = "fixed sin-cos position table, recomputed by the model"
            continue
        reason = _dropped_reason(key)
        if reason is not None:
            dropped[AUDIOMAE + key[len(AUDIOMAE):].split(".")[0]] = reason
            continue
        new_key = _map_encoder_key(key)
        if new_key is None:
            unmapped.append(key)
            continue
        if new_key.endswith("_codebook.cluster_size") and value.ndim == 1 or new_key.endswith(("_codebook.embed", "_codebook.embed_avg")) and value.ndim == 2:
            value = value[None]  # vector-quantize-pytorch < 0.10 had no heads axis
        mapped[new_key] = value
    if unmapped:
        raise ValueError(f"{len(unmapped)} encoder checkpoint keys are not mapped: " + ", ".join(sorted(unmapped)[:20]))
    if not torch.is_tensor(centroids):
        centroids = torch.from_numpy(np.asarray(centroids, dtype=np.float32))
    mapped["encoder.semantic_quantizer.codebook"] = centroids

    if decoder_state is not None:
        from .semanticodec_decoder import map_decoder_state_dict

        decoder_mapped, decoder_dropped = map_decoder_state_dict(decoder_state)
        mapped.update({"decoder." + key: value for key, value in decoder_mapped.items()})
        dropped.update({f"decoder.ckpt {key}": "not used by the decoder at inference" for key in decoder_dropped})

    expected = model_shapes(SemantiCodecModel, config) if model is None else {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_fits_model(mapped, expected, require_all=True, limit=30)
    return mapped, dropped


def convert_state_dict(
    encoder_state: dict[str, torch.Tensor],
    centroids: np.ndarray | torch.Tensor,
    config: SemantiCodecConfig,
    decoder_state: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Original encoder (+ decoder) state dicts and centroids -> `SemantiCodecModel` keys."""
    return split_state_dict(encoder_state, centroids, config, decoder_state)[0]


# ----- files -------------------------------------------------------------------------------------
def _find_centroids(folder: Path, variant: str | None, config_path: str | None) -> Path:
    if config_path is not None:
        path = Path(config_path)
        if path.suffix != ".npy" or not path.is_file():
            raise ValueError(f"--config must be the k-means centroid file (.npy) of the release, got {config_path}")
        return path
    if variant is not None:
        relative = centroid_file(*RELEASES[variant])
        for base in (folder, folder.parent):
            if (base / relative).is_file():
                return base / relative
        raise FileNotFoundError(f"{variant} needs its centroids {relative} next to (or inside) {folder}")
    candidates = sorted(folder.rglob("*.npy"))
    if len(candidates) != 1:
        raise ValueError(
            f"found {len(candidates)} .npy files under {folder}; name the release with --variant "
            "(e.g. semanticodec-100-16384) or the centroid file with --config"
        )
    return candidates[0]


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    trust_pickle: bool = False,
    decoder_config: dict | None = None,
) -> dict[str, Any]:
    """Converts a release folder (`encoder.ckpt`, `decoder.ckpt` and the centroids) into a
    Hub-ready folder. The decoder's config is the variant's, or the released one of the token
    rate read from the encoder; `decoder_config` overrides it (non-released decoders).
    Returns {"mapped": n, "dropped": {key: reason}, "missing": []}."""
    folder = Path(checkpoint)
    if not folder.is_dir():
        raise ValueError(f"--checkpoint must be a release folder holding encoder.ckpt (and decoder.ckpt), got {checkpoint}")
    if variant is not None and variant not in RELEASES and not variant.startswith("semanticodec-"):
        raise ValueError(f"{variant!r} is not a semanticodec variant; choose one of {', '.join(RELEASES)}")
    encoder_state = state_dict_of(load_checkpoint(folder / "encoder.ckpt", trust_pickle=trust_pickle))
    centroids = np.load(_find_centroids(folder, variant if variant in RELEASES else None, config), allow_pickle=False)
    if variant is not None:
        model_config = create_config(variant)
        if model_config.model_type != "semanticodec":
            raise ValueError(f"{variant!r} is not a semanticodec variant")
        found = infer_architecture(encoder_state, centroids)
        mismatched = [f"{name}: variant {variant} says {getattr(model_config, name)}, checkpoint has {value}" for name, value in found.items() if getattr(model_config, name) != value]
        if mismatched:
            raise ValueError(f"the checkpoint does not match variant {variant}:\n  " + "\n  ".join(mismatched))
    else:
        model_config = inferred = infer_config(encoder_state, centroids)
        model_config.variant = next(
            (name for name, (rate, vocabulary) in RELEASES.items() if (rate, vocabulary) == (inferred.tokens_per_second, inferred.semantic_codebook_size)),
            None,
        )
    if decoder_config is not None:
        model_config.decoder = decoder_config
    elif model_config.decoder is None:
        model_config.decoder = released_decoder_config(model_config.tokens_per_second)
    decoder_state = None
    if model_config.decoder is not None:
        decoder_path = folder / "decoder.ckpt"
        if not decoder_path.is_file():
            raise FileNotFoundError(f"{decoder_path} is missing: the release's decoder is part of the model")
        decoder_state = state_dict_of(load_checkpoint(decoder_path, trust_pickle=trust_pickle))

    model = SemantiCodecModel(model_config)
    mapped, dropped = split_state_dict(encoder_state, centroids, model_config, decoder_state, model=model)
    save_converted(model, mapped, SemantiCodecFeatureExtractor.from_model_config(model_config), output)
    return {"mapped": len(mapped), "dropped": dropped, "missing": []}
