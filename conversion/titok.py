"""TiTok checkpoints (bytedance/1d-tokenizer) -> modalzoo `TiTokTokenizer` folders.

Reads the two release formats:

* the `PyTorchModelHubMixin` folder of the Hub repos (`yucornetto/tokenizer_titok_*`):
  `config.json` holding the whole OmegaConf tree (`{"model": {"vq_model": {...}}, "dataset":
  {"preprocessing": {"crop_size": ...}}, ...}`) next to `model.safetensors`;
* the older plain state dicts (`fun-research/TiTok/tokenizer_titok_l32.bin`), opened with
  `torch.load(weights_only=True)`; these carry no config, so `--variant` or `--config` (the
  original yaml, e.g. configs/infer/TiTok/titok_l32.yaml) says what they are.

Key mapping (original -> modalzoo):

    latent_tokens                                  encoder.latent_tokens
    {encoder,decoder}.positional_embedding         {..}.position_embedding
    {encoder,decoder}.latent_token_positional_embedding  {..}.latent_position_embedding
    {..}.transformer.{i}.ln_1 / ln_2               {..}.transformer.layers.{i}.norm1 / norm2
    {..}.transformer.{i}.attn.in_proj_{weight,bias}  {..}.transformer.layers.{i}.attn.qkv.*   (kept packed: q, k, v rows)
    {..}.transformer.{i}.attn.out_proj.*           {..}.transformer.layers.{i}.attn.out_proj.*
    {..}.transformer.{i}.mlp.c_fc / c_proj         {..}.transformer.layers.{i}.mlp.fc1 / fc2
    encoder.conv_out (1x1 conv)                    encoder.proj_out (linear, kernel squeezed)
    decoder.decoder_embed                          decoder.embed
    decoder.ffn.0 / ffn.2 (legacy, 1x1 convs)      decoder.head.fc1 / fc2 (linear)
    decoder.ffn.0 (non-legacy, 1x1 conv)           decoder.head.proj (linear)
    decoder.conv_out (non-legacy, 3x3 conv)        decoder.head.conv_out
    quantize.embedding.weight                      quantizer.codebook.weight
    pixel_quantize.embedding.weight                pixel_code_embedding.weight
    pixel_decoder.up.{i}.block.{j}.*               pixel_decoder.up.{L-1-i}.res_blocks.{j}.*  (run order)
    pixel_decoder.up.{i}.upsample_conv.*           pixel_decoder.up.{L-1-i}.upsample_conv.*
    pixel_decoder.*.nin_shortcut                   pixel_decoder.*.shortcut
    everything else under encoder / decoder / pixel_decoder keeps its name.

Dropped on purpose: `quantize.embed_prob` (code-usage EMA of the training-only `clustering_vq`).
Any other key is an error, as is any shape that does not match the config.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from modalzoo.models.titok import TiTokConfig, TiTokImageProcessor, TiTokTokenizer
from modalzoo.models.titok.configuration_titok import MASKGIT_VQGAN_DECODER, VIT_SIZES
from modalzoo.registry import VARIANTS

# Keys an original checkpoint may hold that have no place in the converted model, with why.
DROPPED_KEYS = {
    "quantize.embed_prob": "code-usage EMA of the original's training-only clustering VQ (unused at inference)",
}

# Config fields that describe training, not the architecture: ignored when matching a variant.
_TRAINING_FIELDS = {"quantizer_weight", "kl_weight", "commitment_cost"}


# ----- config ----------------------------------------------------------------------------------
def original_vq_model(original_config: Mapping[str, Any]) -> tuple[dict, int]:
    """The `model.vq_model` section and the crop size of an original config tree (a bare
    `vq_model` dict is accepted too, with the released 256 px)."""
    if "model" in original_config:
        vq_model = dict(original_config["model"].get("vq_model") or {})
        crop_size = (original_config.get("dataset") or {}).get("preprocessing", {}).get("crop_size", 256)
    else:
        vq_model, crop_size = dict(original_config), 256
    if not vq_model:
        raise ValueError("the original config has no model.vq_model section; is this a TiTok config?")
    return vq_model, int(crop_size)


def _vit_size(name: str, model_sizes: Mapping[str, Mapping[str, int]] | None) -> tuple[int, int, int]:
    sizes = {key: (value["width"], value["num_layers"], value["num_heads"]) for key, value in (model_sizes or {}).items()}
    sizes = {**VIT_SIZES, **sizes}
    if name not in sizes:
        raise ValueError(
            f"unknown ViT size {name!r} in the original config; the original knows {sorted(VIT_SIZES)} "
            "(pass model_sizes={name: {width, num_layers, num_heads}} for a patched original)"
        )
    return sizes[name]


def config_kwargs(
    original_config: Mapping[str, Any],
    *,
    model_sizes: Mapping[str, Mapping[str, int]] | None = None,
    pixel_decoder: Mapping[str, Any] | None = None,
    pixel_codebook: Mapping[str, int] | None = None,
) -> dict:
    """`TiTokConfig` keyword arguments for an original config tree.

    model_sizes / pixel_decoder / pixel_codebook describe originals whose hard-coded tables were
    patched (the tiny parity fixtures): extra named ViT sizes `{name: {width, num_layers,
    num_heads}}`, the MaskGIT-VQGAN decoder config (`hidden_channels`, `channel_mult`,
    `num_res_blocks`, `z_channels`) and codebook (`num_embeddings`, `embedding_dim`).
    """
    vq, crop_size = original_vq_model(original_config)
    quantize_mode = vq.get("quantize_mode", "vq")
    is_legacy = bool(vq.get("is_legacy", True))
    finetune_decoder = bool(vq.get("finetune_decoder", True))
    if quantize_mode not in ("vq", "vae"):
        raise ValueError(f"unsupported quantize_mode {quantize_mode!r} (the original supports 'vq' and 'vae')")
    if is_legacy and not finetune_decoder:
        raise ValueError(
            "this is a stage-1 legacy checkpoint (finetune_decoder: false): its decoder predicts MaskGIT-VQGAN "
            "proxy codes and needs the MaskGIT-VQGAN decoder weights merged in under pixel_decoder.* / "
            "pixel_quantize.* (as the released stage-2 checkpoints have) before it can be converted"
        )
    if not is_legacy and finetune_decoder and quantize_mode == "vq":
        raise ValueError("non-legacy TiTok predicts RGB directly; finetune_decoder: true only exists for legacy models")

    kwargs: dict[str, Any] = {"image_size": crop_size, "quantize_mode": quantize_mode, "is_legacy": is_legacy}
    for prefix, key in (("encoder", "vit_enc"), ("decoder", "vit_dec")):
        width, layers, heads = _vit_size(vq[f"{key}_model_size"], model_sizes)
        kwargs.update(
            {
                f"{prefix}_hidden_size": width,
                f"{prefix}_num_layers": layers,
                f"{prefix}_num_heads": heads,
                f"{prefix}_patch_size": int(vq.get(f"{key}_patch_size", 16)),
            }
        )
    kwargs["num_latent_tokens"] = int(vq["num_latent_tokens"])
    kwargs["token_size"] = int(vq["token_size"])
    if quantize_mode == "vq":
        kwargs["codebook_size"] = int(vq["codebook_size"])
        kwargs["use_l2_norm"] = bool(vq.get("use_l2_norm", False))
        kwargs["commitment_cost"] = float(vq.get("commitment_cost", 0.25))
    if is_legacy:
        kwargs.update(MASKGIT_VQGAN_DECODER)
        if pixel_decoder:
            kwargs["pixel_decoder_channels"] = int(pixel_decoder.get("hidden_channels", kwargs["pixel_decoder_channels"]))
            kwargs["pixel_decoder_channel_mult"] = tuple(pixel_decoder.get("channel_mult", kwargs["pixel_decoder_channel_mult"]))
            kwargs["pixel_decoder_num_res_blocks"] = int(pixel_decoder.get("num_res_blocks", kwargs["pixel_decoder_num_res_blocks"]))
            kwargs["pixel_embedding_dim"] = int(pixel_decoder.get("z_channels", kwargs["pixel_embedding_dim"]))
        if pixel_codebook:
            kwargs["pixel_codebook_size"] = int(pixel_codebook.get("num_embeddings", kwargs["pixel_codebook_size"]))
            kwargs["pixel_embedding_dim"] = int(pixel_codebook.get("embedding_dim", kwargs["pixel_embedding_dim"]))
    return kwargs


def convert_config(original_config: Mapping[str, Any], **patched) -> TiTokConfig:
    """Original OmegaConf tree (as a dict) -> `TiTokConfig` (see `config_kwargs` for `patched`)."""
    return TiTokConfig(**config_kwargs(original_config, **patched))


# ----- state dict ------------------------------------------------------------------------------
def _squeeze_1x1(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.ndim == 4:
        if tuple(tensor.shape[2:]) != (1, 1):
            raise ValueError(f"expected a 1x1 convolution kernel, got shape {tuple(tensor.shape)}")
        return tensor.reshape(tensor.shape[:2])
    return tensor


_BLOCK_RENAMES = {
    "ln_1": "norm1",
    "ln_2": "norm2",
    "attn.in_proj_weight": "attn.qkv.weight",
    "attn.in_proj_bias": "attn.qkv.bias",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


def _rename_block(rest: str) -> str:
    for old, new in _BLOCK_RENAMES.items():
        if rest == old or rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def map_key(key: str, config: TiTokConfig) -> tuple[str, Callable[[torch.Tensor], torch.Tensor] | None] | None:
    """(modalzoo key, tensor transform or None) for one original key; None if it is unknown."""
    levels = len(config.pixel_decoder_channel_mult)
    if key == "latent_tokens":
        return "encoder.latent_tokens", None
    if key == "quantize.embedding.weight":
        return "quantizer.codebook.weight", None
    if key == "pixel_quantize.embedding.weight":
        return "pixel_code_embedding.weight", None

    if match := re.fullmatch(r"(encoder|decoder)\.transformer\.(\d+)\.(.+)", key):
        part, index, rest = match.groups()
        return f"{part}.transformer.layers.{index}.{_rename_block(rest)}", None
    if match := re.fullmatch(r"(encoder|decoder)\.(positional_embedding|latent_token_positional_embedding)", key):
        part, name = match.groups()
        return f"{part}.{'position_embedding' if name == 'positional_embedding' else 'latent_position_embedding'}", None
    if match := re.fullmatch(r"(encoder|decoder)\.(class_embedding|(?:ln_pre|ln_post)\.(?:weight|bias))", key):
        return key, None
    if match := re.fullmatch(r"encoder\.patch_embed\.(weight|bias)", key):
        return key, None
    if match := re.fullmatch(r"encoder\.conv_out\.(weight|bias)", key):
        return f"encoder.proj_out.{match.group(1)}", _squeeze_1x1
    if key == "decoder.mask_token":
        return key, None
    if match := re.fullmatch(r"decoder\.decoder_embed\.(weight|bias)", key):
        return f"decoder.embed.{match.group(1)}", None
    if match := re.fullmatch(r"decoder\.ffn\.(\d)\.(weight|bias)", key):
        index, name = match.groups()
        if config.is_legacy and index in ("0", "2"):
            return f"decoder.head.{'fc1' if index == '0' else 'fc2'}.{name}", _squeeze_1x1
        if not config.is_legacy and index == "0":
            return f"decoder.head.proj.{name}", _squeeze_1x1
        return None
    if match := re.fullmatch(r"decoder\.conv_out\.(weight|bias)", key):
        return (f"decoder.head.conv_out.{match.group(1)}", None) if not config.is_legacy else None

    if not config.is_legacy or not key.startswith("pixel_decoder."):
        return None
    rest = key[len("pixel_decoder.") :].replace("nin_shortcut", "shortcut")
    if re.fullmatch(r"(conv_in|norm_out|conv_out)\.(weight|bias)", rest):
        return key, None
    if re.fullmatch(r"mid\.\d+\.(norm1|conv1|norm2|conv2|shortcut)\.(weight|bias)", rest):
        return f"pixel_decoder.{rest}", None
    if match := re.fullmatch(r"up\.(\d+)\.(block\.(\d+)\.(?:norm1|conv1|norm2|conv2|shortcut)|upsample_conv)\.(weight|bias)", rest):
        level = int(match.group(1))
        if level >= levels:
            return None
        inner = match.group(2).replace("block.", "res_blocks.", 1)
        # the original stores `up` reversed (index = resolution level); modalzoo stores run order
        return f"pixel_decoder.up.{levels - 1 - level}.{inner}.{match.group(4)}", None
    return None


def expected_shapes(config: TiTokConfig, model_class: type[TiTokTokenizer] = TiTokTokenizer) -> dict[str, tuple[int, ...]]:
    """Parameter shapes of the modalzoo model for `config`, built on the meta device."""
    with torch.device("meta"):
        model = model_class(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def map_state_dict(
    original_state_dict: Mapping[str, torch.Tensor],
    config: TiTokConfig,
    model_class: type[TiTokTokenizer] = TiTokTokenizer,
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(converted state dict, dropped keys with their reason, missing modalzoo keys).

    Raises ValueError on keys it cannot map and on shapes that do not match `config`.
    """
    expected = expected_shapes(config, model_class)
    converted: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    unmapped: list[str] = []
    mismatched: list[str] = []
    for key, tensor in original_state_dict.items():
        if key in DROPPED_KEYS:
            dropped[key] = DROPPED_KEYS[key]
            continue
        mapped = map_key(key, config)
        if mapped is None or mapped[0] not in expected:
            unmapped.append(key)
            continue
        new_key, transform = mapped
        value = transform(tensor) if transform is not None else tensor
        if tuple(value.shape) != expected[new_key]:
            mismatched.append(f"{key} {tuple(tensor.shape)} -> {new_key} expects {expected[new_key]}")
            continue
        if new_key in converted:
            raise ValueError(f"two original keys map to {new_key}")
        converted[new_key] = value
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} original key(s) have no modalzoo counterpart for this config "
            f"(is_legacy={config.is_legacy}, quantize_mode={config.quantize_mode!r}): {', '.join(sorted(unmapped))}"
        )
    if mismatched:
        raise ValueError("checkpoint shapes do not match the config (wrong --variant / --config?): " + "; ".join(mismatched))
    missing = sorted(set(expected) - set(converted))
    return converted, dropped, missing


def convert_state_dict(original_state_dict: Mapping[str, torch.Tensor], config: TiTokConfig) -> dict[str, torch.Tensor]:
    """Original state dict -> modalzoo state dict for `config`; every key must map and every
    modalzoo parameter must be filled."""
    converted, _, missing = map_state_dict(original_state_dict, config, _model_class_for(config))
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} key(s) this config needs: {', '.join(missing)}")
    return converted


def _model_class_for(config) -> type[TiTokTokenizer]:
    from modalzoo.registry import FAMILIES

    return FAMILIES[config.model_type].model_class


# ----- back to the original (to run the original on our weights, e.g. to time it) -------------
_BLOCK_RENAMES_BACK = {new: old for old, new in _BLOCK_RENAMES.items()}


def _unsqueeze_1x1(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.reshape(*tensor.shape, 1, 1) if tensor.ndim == 2 else tensor


def original_key(key: str, config: TiTokConfig) -> tuple[str, Callable[[torch.Tensor], torch.Tensor] | None]:
    """The original key (and tensor transform) for one modalzoo key: the inverse of `map_key`."""
    levels = len(config.pixel_decoder_channel_mult)
    fixed = {
        "encoder.latent_tokens": "latent_tokens",
        "quantizer.codebook.weight": "quantize.embedding.weight",
        "pixel_code_embedding.weight": "pixel_quantize.embedding.weight",
    }
    if key in fixed:
        return fixed[key], None
    if match := re.fullmatch(r"(encoder|decoder)\.transformer\.layers\.(\d+)\.(.+)", key):
        part, index, rest = match.groups()
        for new, old in _BLOCK_RENAMES_BACK.items():
            if rest == new or rest.startswith(new + "."):
                rest = old + rest[len(new) :]
                break
        return f"{part}.transformer.{index}.{rest}", None
    if match := re.fullmatch(r"(encoder|decoder)\.(position_embedding|latent_position_embedding)", key):
        part, name = match.groups()
        return f"{part}.{'positional_embedding' if name == 'position_embedding' else 'latent_token_positional_embedding'}", None
    if match := re.fullmatch(r"encoder\.proj_out\.(weight|bias)", key):
        return f"encoder.conv_out.{match.group(1)}", _unsqueeze_1x1
    if match := re.fullmatch(r"decoder\.embed\.(weight|bias)", key):
        return f"decoder.decoder_embed.{match.group(1)}", None
    if match := re.fullmatch(r"decoder\.head\.(fc1|fc2|proj)\.(weight|bias)", key):
        index = {"fc1": "0", "fc2": "2", "proj": "0"}[match.group(1)]
        return f"decoder.ffn.{index}.{match.group(2)}", _unsqueeze_1x1
    if match := re.fullmatch(r"decoder\.head\.conv_out\.(weight|bias)", key):
        return f"decoder.conv_out.{match.group(1)}", None
    if match := re.fullmatch(r"pixel_decoder\.up\.(\d+)\.(res_blocks\.(\d+)\.[^.]+|upsample_conv)\.(weight|bias)", key):
        inner = match.group(2).replace("res_blocks.", "block.", 1).replace("shortcut", "nin_shortcut")
        return f"pixel_decoder.up.{levels - 1 - int(match.group(1))}.{inner}.{match.group(4)}", None
    if key.startswith("pixel_decoder."):
        return key.replace(".shortcut.", ".nin_shortcut."), None
    return key, None


def to_original_state_dict(state_dict: Mapping[str, torch.Tensor], config: TiTokConfig) -> dict[str, torch.Tensor]:
    """modalzoo state dict -> the original's (`TiTok.load_state_dict(..., strict=True)` takes it)."""
    original = {}
    for key, value in state_dict.items():
        new_key, transform = original_key(key, config)
        original[new_key] = transform(value) if transform is not None else value
    return original


def to_original_config(config: TiTokConfig) -> dict:
    """modalzoo config -> the original's OmegaConf tree (as a dict) for `TiTok(OmegaConf.create(...))`
    / `OneDPiece(...)`. Only the sizes the original hard-codes can be expressed; anything else
    raises ValueError (a patched original would be needed)."""
    names = {sizes: name for name, sizes in VIT_SIZES.items()}
    vq: dict[str, Any] = {}
    for prefix, key in (("encoder", "vit_enc"), ("decoder", "vit_dec")):
        sizes = tuple(getattr(config, f"{prefix}_{field}") for field in ("hidden_size", "num_layers", "num_heads"))
        if sizes not in names:
            raise ValueError(f"the original hard-codes its ViT sizes {VIT_SIZES}; the {prefix} here is {sizes}")
        vq[f"{key}_model_size"] = names[sizes]
        vq[f"{key}_patch_size"] = getattr(config, f"{prefix}_patch_size")
    if config.mlp_ratio != 4.0 or config.layer_norm_eps != 1e-5:
        raise ValueError("the original hard-codes mlp_ratio 4 and LayerNorm eps 1e-5")
    vq.update(num_latent_tokens=config.num_latent_tokens, token_size=config.token_size)
    if config.quantize_mode == "vq":
        vq.update(codebook_size=config.codebook_size, use_l2_norm=config.use_l2_norm, commitment_cost=config.commitment_cost)
    else:
        vq["quantize_mode"] = "vae"
    vq.update(finetune_decoder=config.is_legacy, is_legacy=config.is_legacy)
    if config.is_legacy:
        pixel = {key: getattr(config, key) for key in MASKGIT_VQGAN_DECODER}
        pixel["pixel_decoder_channel_mult"] = tuple(pixel["pixel_decoder_channel_mult"])
        if pixel != MASKGIT_VQGAN_DECODER:
            raise ValueError(f"the original hard-codes its MaskGIT-VQGAN decoder {MASKGIT_VQGAN_DECODER}")
    tree = {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": config.image_size}}}
    if config.model_type == "one_d_piece":
        tree["model"]["type"] = "one_d_piece"
        vq["strict_length_assertion"] = False
        del vq["is_legacy"]
    return tree


# ----- files -----------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _read_config_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def _load_state_dict_file(path: Path, trust_pickle: bool) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=not trust_pickle)
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError subclasses and more
        if trust_pickle:
            raise
        raise ValueError(
            f"{path} holds pickled objects beyond tensors and containers, which weights_only loading refuses "
            f"({error}); if you trust the file, rerun with --trust-pickle (this executes code from it)"
        ) from error
    # some training scripts wrap the weights; the released files are plain state dicts
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            if not any(torch.is_tensor(value) for value in state.values()):
                state = state[wrapper]
    if not isinstance(state, dict) or not all(torch.is_tensor(value) for value in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    return dict(state)


def load_original_checkpoint(
    checkpoint: str | os.PathLike, *, config: str | os.PathLike | None = None, trust_pickle: bool = False
) -> tuple[dict | None, dict[str, torch.Tensor]]:
    """(original config tree or None, original state dict) from a mixin folder, a `.safetensors`
    / `.bin` / `.pt` file, or a Hub repo id. `config` (json or yaml) overrides the folder's."""
    path = Path(checkpoint)
    if not path.exists() and _REPO_ID.match(str(checkpoint)):
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(str(checkpoint), allow_patterns=["config.json", "*.safetensors", "*.bin"]))
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                weights = path / name
                break
        else:
            raise FileNotFoundError(f"{path} has neither model.safetensors nor pytorch_model.bin")
        original_config = _read_config_file(path / "config.json") if (path / "config.json").is_file() else None
    elif path.is_file():
        weights, original_config = path, None
    else:
        raise FileNotFoundError(f"checkpoint {checkpoint} is neither a file, a folder nor a Hub repo id")
    if config is not None:
        original_config = _read_config_file(config)
    return original_config, _load_state_dict_file(weights, trust_pickle)


def _architecture(config) -> dict:
    return {key: getattr(config, key) for key in TiTokConfig.__annotations__ if key not in _TRAINING_FIELDS}


def match_variant(config, family: str) -> str | None:
    """The registered variant of `family` whose architecture equals `config`'s, if any."""
    target = _architecture(config)
    for name, variant in VARIANTS.items():
        if variant.family == family and _architecture(variant.build_config()) == target:
            return name
    return None


def build_converted_model(config, state_dict: Mapping[str, torch.Tensor]) -> TiTokTokenizer:
    """The modalzoo model holding exactly `state_dict` (no random initialisation)."""
    with torch.device("meta"):
        model = _model_class_for(config)(config)
    model.load_state_dict({key: value.contiguous() for key, value in state_dict.items()}, strict=True, assign=True)
    return model.eval()


def convert_checkpoint_with(
    convert_config_fn: Callable[..., Any],
    family: str,
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    *,
    trust_pickle: bool = False,
    **patched,
) -> dict:
    """Shared by the TiTok and One-D-Piece converters (they differ only in `convert_config_fn`)."""
    original_config, original_state_dict = load_original_checkpoint(checkpoint, config=config, trust_pickle=trust_pickle)
    if variant is not None and (variant not in VARIANTS or VARIANTS[variant].family != family):
        known = sorted(name for name, v in VARIANTS.items() if v.family == family)
        raise ValueError(f"unknown {family} variant {variant!r}; known: {', '.join(known)}")
    if original_config is None:
        if variant is None:
            raise ValueError(
                f"{checkpoint} carries no config.json: pass --variant (one of the registered {family} variants) "
                "or --config (the original yaml/json config)"
            )
        model_config = VARIANTS[variant].build_config()
    else:
        model_config = convert_config_fn(original_config, **patched)
        if variant is not None:
            expected = _architecture(VARIANTS[variant].build_config())
            actual = _architecture(model_config)
            differing = sorted(key for key in expected if expected[key] != actual.get(key))
            if differing:
                raise ValueError(
                    f"the checkpoint's config does not match variant {variant!r} in: "
                    + ", ".join(f"{key}={actual.get(key)!r} (variant: {expected[key]!r})" for key in differing)
                )
        model_config.variant = variant or match_variant(model_config, family)

    converted, dropped, missing = map_state_dict(original_state_dict, model_config, _model_class_for(model_config))
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} key(s) this config needs: {', '.join(missing)}")
    model = build_converted_model(model_config, converted)
    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output)
    from modalzoo.registry import FAMILIES

    FAMILIES[family].processor_class.from_model_config(model_config).save_pretrained(output)
    return {"mapped": len(converted), "dropped": dropped, "missing": missing}


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    *,
    trust_pickle: bool = False,
    **patched,
) -> dict:
    """Original TiTok checkpoint (mixin folder, `.bin`/`.safetensors` file or Hub repo id) ->
    Hub-ready folder (config.json, model.safetensors, preprocessor_config.json).

    Returns {"mapped": n, "dropped": {key: reason}, "missing": [...]}; raises ValueError on any
    unmapped key, missing key or shape mismatch. `patched` is passed to `convert_config` for
    originals with patched size tables (see `config_kwargs`).
    """
    return convert_checkpoint_with(
        convert_config, "titok", checkpoint, output, variant, config, trust_pickle=trust_pickle, **patched
    )


__all__ = [
    "TiTokImageProcessor",
    "config_kwargs",
    "convert_checkpoint",
    "convert_config",
    "convert_state_dict",
    "load_original_checkpoint",
    "map_key",
    "map_state_dict",
    "original_key",
    "to_original_config",
    "to_original_state_dict",
]
