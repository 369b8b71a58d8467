"""TokenFlow checkpoints (ByteFlow-AI/TokenFlow) -> modalzoo `TokenFlowTokenizer` folders.

The releases (`tokenflow_clipb_32k_enhanced.pt`, `tokenflow_siglip_32k.pt`) and the training
script's saves are pickled dicts holding the weights under `"ema"`, `"model"` or `"state_dict"`
(looked up in that order, as the original's loader does) next to optimiser state and an
`argparse.Namespace`. They are opened with `torch.load(weights_only=True)` and modalzoo's
allow-list (`checkpoint_io`), so no code from the file runs. The teacher towers' weights are part
of the state dict, so nothing is downloaded.

The files carry no architecture config: `--variant` names one, `--config` gives a modalzoo
config.json or the original's `ModelArgs` fields as json (`teacher`, `enhanced_decoder`,
`infer_interpolate`, `codebook_size`, ...), and without either the variant is recognised from the
state dict (teacher from the key names, plain / enhanced decoder from its width).

Key mapping (original -> modalzoo):

    encoder.* / decoder.*                       pixel_encoder.* / pixel_decoder.*
      conv_blocks.{i}.res.{j}.nin_shortcut        {down|up}.{i}.res_blocks.{j}.shortcut
      conv_blocks.{i}.attn.{j}                    {down|up}.{i}.attn_blocks.{j}
      conv_blocks.{i}.{downsample|upsample}.conv  {down|up}.{i}.resample
    quant_conv / post_quant_conv                pixel_projection / pixel_post_projection
    quantize.embedding_vqkd / embedding_vqgan   quantizer.semantic_codebook / pixel_codebook
    encode_task_layer / decode_task_layer       semantic_projection / semantic_decoder_head
    decoder_vqkd.patch_embed.proj               semantic_decoder.patch_embed
    decoder_vqkd.{cls_token,pos_embed,fc_norm}  semantic_decoder.*
    decoder_vqkd.blocks.{i}.attn.q_bias/v_bias  semantic_decoder.transformer.layers.{i}.attn.qkv.bias
                                                  (q, zero k, v: BEiT's bias layout)
    decoder_vqkd.blocks.{i}.attn.proj           ...attn.out_proj (norm1/norm2/mlp keep their names)
    encoder_vqkd.* (OpenAI CLIP names)          semantic_encoder.tower.* (transformers CLIPVisionModel;
                                                  in_proj split into q/k/v_proj)
    encoder_vqkd.vision_model.* (SigLIP)        semantic_encoder.tower.*

Dropped on purpose: see `DROPPED`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from modalzoo.models.tokenflow import TokenFlowConfig, TokenFlowImageProcessor, TokenFlowTokenizer
from modalzoo.registry import VARIANTS

from .checkpoint_io import load_checkpoint

DROPPED = {
    r"quantize\.codebook_used": "code-usage history of training (a rolling buffer of recent indices)",
    r"scaling_layer\.(shift|scale)": "constant input normalisation (SigLIP mean/std 0.5), rebuilt in the model",
    r"encoder_vqkd\.proj": "CLIP's output projection, unused: the tokenizer reads the patch tokens",
}

_CLIP_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}


# ----- config ----------------------------------------------------------------------------------
def convert_config(original_config: Mapping[str, Any]) -> TokenFlowConfig:
    """The original's `ModelArgs` / training args fields (a dict) -> `TokenFlowConfig` of the
    released layouts: `teacher` ("clipb_224" or "siglip_384"), `enhanced_decoder`,
    `infer_interpolate` (CLIP-B at 256 px), `codebook_size`, `codebook_embed_dim`,
    `semantic_code_dim`, `commit_loss_beta`."""
    teacher = original_config.get("teacher")
    if teacher == "clipb_224":
        interpolate = bool(original_config.get("infer_interpolate", False))
        base = VARIANTS["tokenflow-clipb-32k-enhanced"].config_kwargs
        kwargs = dict(base)
        if not interpolate:
            kwargs.update(image_size=224, scales=(1, 2, 4, 6, 8, 10, 12, 14))
    elif teacher == "siglip_384":
        kwargs = dict(VARIANTS["tokenflow-siglip-32k"].config_kwargs)
    else:
        raise ValueError(f"unsupported teacher {teacher!r}: the released checkpoints use 'clipb_224' or 'siglip_384'")
    enhanced = bool(original_config.get("enhanced_decoder", False))
    kwargs.update(pixel_decoder_channels=256 if enhanced else 128, pixel_decoder_num_res_blocks=4 if enhanced else 2)
    kwargs.update(
        codebook_size=int(original_config.get("codebook_size", 32768)),
        pixel_code_dim=int(original_config.get("codebook_embed_dim", 8)),
        semantic_code_dim=int(original_config.get("semantic_code_dim", 32)),
    )
    if "commit_loss_beta" in original_config:
        kwargs["commitment_cost"] = float(original_config["commit_loss_beta"])
    return TokenFlowConfig(**kwargs)


def infer_original_config(original_state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The original's `ModelArgs` fields read off a state dict (teacher from the key names,
    decoder width, codebook sizes). CLIP checkpoints are assumed to run at 256 px with
    interpolated positions (the released t2i tokenizer); pass a config for 224 px."""
    if any(key.startswith("encoder_vqkd.vision_model.") for key in original_state_dict):
        teacher = "siglip_384"
    elif "encoder_vqkd.conv1.weight" in original_state_dict:
        teacher = "clipb_224"
    else:
        raise ValueError("cannot tell the teacher: neither CLIP (encoder_vqkd.conv1) nor SigLIP (encoder_vqkd.vision_model) keys")
    semantic = original_state_dict["quantize.embedding_vqkd.weight"]
    pixel = original_state_dict["quantize.embedding_vqgan.weight"]
    decoder_width = original_state_dict["decoder.conv_out.weight"].shape[1]
    return {
        "teacher": teacher,
        "enhanced_decoder": decoder_width == 256,
        "infer_interpolate": teacher == "clipb_224",
        "codebook_size": semantic.shape[0],
        "semantic_code_dim": semantic.shape[1],
        "codebook_embed_dim": pixel.shape[1],
    }


# ----- state dict ------------------------------------------------------------------------------
def _pixel_key(part: str, rest: str) -> str:
    rest = rest.replace("nin_shortcut", "shortcut")
    direction = "down" if part == "pixel_encoder" else "up"
    if match := re.fullmatch(r"conv_blocks\.(\d+)\.res\.(\d+)\.(.+)", rest):
        return f"{part}.{direction}.{match[1]}.res_blocks.{match[2]}.{match[3]}"
    if match := re.fullmatch(r"conv_blocks\.(\d+)\.attn\.(\d+)\.(.+)", rest):
        return f"{part}.{direction}.{match[1]}.attn_blocks.{match[2]}.{match[3]}"
    if match := re.fullmatch(r"conv_blocks\.(\d+)\.(?:downsample|upsample)\.conv\.(.+)", rest):
        return f"{part}.{direction}.{match[1]}.resample.{match[2]}"
    return f"{part}.{rest}"


def _clip_key(rest: str) -> list[tuple[str, Callable | None]]:
    tower = "semantic_encoder.tower."
    fixed = {
        "class_embedding": "embeddings.class_embedding",
        "positional_embedding": "embeddings.position_embedding.weight",
        "conv1.weight": "embeddings.patch_embedding.weight",
    }
    if rest in fixed:
        return [(tower + fixed[rest], None)]
    if match := re.fullmatch(r"(ln_pre|ln_post)\.(weight|bias)", rest):
        return [(tower + ("pre_layrnorm" if match[1] == "ln_pre" else "post_layernorm") + "." + match[2], None)]
    if match := re.fullmatch(r"transformer\.resblocks\.(\d+)\.(.+)", rest):
        layer, inner = match[1], match[2]
        prefix = f"{tower}encoder.layers.{layer}."
        if match := re.fullmatch(r"attn\.in_proj_(weight|bias)", inner):
            # packed q, k, v rows -> three projections
            return [
                (f"{prefix}self_attn.{name}_proj.{match[1]}", lambda t, i=index: t.chunk(3, dim=0)[i])
                for index, name in enumerate(("q", "k", "v"))
            ]
        for old, new in _CLIP_BLOCK.items():
            if inner.startswith(old + "."):
                return [(prefix + new + inner[len(old) :], None)]
    return []


def map_key(key: str, config: TokenFlowConfig) -> list[tuple[str, Callable | None]]:
    """[(modalzoo key, tensor transform or None)] for one original key; [] if unknown. The
    semantic decoder's q/v biases are merged by `map_state_dict`."""
    fixed = {
        "quantize.embedding_vqkd.weight": "quantizer.semantic_codebook.weight",
        "quantize.embedding_vqgan.weight": "quantizer.pixel_codebook.weight",
        "decoder_vqkd.cls_token": "semantic_decoder.cls_token",
        "decoder_vqkd.pos_embed": "semantic_decoder.pos_embed",
    }
    if key in fixed:
        return [(fixed[key], None)]
    if match := re.fullmatch(r"(encoder|decoder)\.(.+)", key):
        return [(_pixel_key("pixel_encoder" if match[1] == "encoder" else "pixel_decoder", match[2]), None)]
    if match := re.fullmatch(r"(quant_conv|post_quant_conv)\.(weight|bias)", key):
        return [(("pixel_projection" if match[1] == "quant_conv" else "pixel_post_projection") + "." + match[2], None)]
    if match := re.fullmatch(r"(encode_task_layer|decode_task_layer)\.(\d)\.(weight|bias)", key):
        name = "semantic_projection" if match[1] == "encode_task_layer" else "semantic_decoder_head"
        return [(f"{name}.{match[2]}.{match[3]}", None)]
    if match := re.fullmatch(r"decoder_vqkd\.patch_embed\.proj\.(weight|bias)", key):
        return [(f"semantic_decoder.patch_embed.{match[1]}", None)]
    if match := re.fullmatch(r"decoder_vqkd\.fc_norm\.(weight|bias)", key):
        return [(f"semantic_decoder.fc_norm.{match[1]}", None)]
    if match := re.fullmatch(r"decoder_vqkd\.blocks\.(\d+)\.(.+)", key):
        layer, rest = match[1], match[2]
        rest = {"attn.proj.weight": "attn.out_proj.weight", "attn.proj.bias": "attn.out_proj.bias"}.get(rest, rest)
        return [(f"semantic_decoder.transformer.layers.{layer}.{rest}", None)]
    if key.startswith("encoder_vqkd.vision_model.") and config.teacher == "siglip":
        return [("semantic_encoder.tower." + key[len("encoder_vqkd.vision_model.") :], None)]
    if key.startswith("encoder_vqkd.") and config.teacher == "clip":
        return _clip_key(key[len("encoder_vqkd.") :])
    return []


def _dropped_reason(key: str) -> str | None:
    for pattern, reason in DROPPED.items():
        if re.fullmatch(pattern, key):
            return reason
    return None


def expected_shapes(config: TokenFlowConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = TokenFlowTokenizer(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def map_state_dict(
    original_state_dict: Mapping[str, torch.Tensor], config: TokenFlowConfig
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(converted state dict, dropped keys with their reason, missing modalzoo keys). Raises
    ValueError on unmapped keys and on shapes that do not match `config`."""
    expected = expected_shapes(config)
    converted: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    unmapped: list[str] = []
    mismatched: list[str] = []
    qv_biases: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in original_state_dict.items():
        reason = _dropped_reason(key)
        if reason is not None:
            dropped[key] = reason
            continue
        if match := re.fullmatch(r"decoder_vqkd\.blocks\.(\d+)\.attn\.(q_bias|v_bias)", key):
            qv_biases.setdefault(f"semantic_decoder.transformer.layers.{match[1]}.attn.qkv.bias", {})[match[2]] = tensor
            continue
        targets = map_key(key, config)
        if not targets or any(new_key not in expected for new_key, _ in targets):
            unmapped.append(key)
            continue
        for new_key, transform in targets:
            value = transform(tensor) if transform is not None else tensor
            if tuple(value.shape) != expected[new_key]:
                mismatched.append(f"{key} {tuple(tensor.shape)} -> {new_key} expects {expected[new_key]}")
                continue
            converted[new_key] = value
    for new_key, parts in qv_biases.items():
        if set(parts) != {"q_bias", "v_bias"} or new_key not in expected:
            unmapped.append(new_key.replace("semantic_decoder.transformer.layers.", "decoder_vqkd.blocks.") + " (q/v bias pair)")
            continue
        # BEiT adds no key bias (a key bias cannot change the attention weights anyway)
        converted[new_key] = torch.cat([parts["q_bias"], torch.zeros_like(parts["q_bias"]), parts["v_bias"]])
    if unmapped:
        raise ValueError(
            f"{len(unmapped)} original key(s) have no modalzoo counterpart for teacher {config.teacher!r}: "
            + ", ".join(sorted(unmapped)[:20])
        )
    if mismatched:
        raise ValueError("checkpoint shapes do not match the config (wrong --variant / --config?): " + "; ".join(mismatched))
    missing = sorted(set(expected) - set(converted))
    return converted, dropped, missing


def convert_state_dict(original_state_dict: Mapping[str, torch.Tensor], config: TokenFlowConfig) -> dict[str, torch.Tensor]:
    """Original state dict -> modalzoo state dict; every key must map and every modalzoo tensor
    must be filled."""
    converted, _, missing = map_state_dict(original_state_dict, config)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} key(s) this config needs: {', '.join(missing[:20])}")
    return converted


# ----- back to the original (to run the original on our weights, e.g. to time it) -------------
_CLIP_BLOCK_BACK = {new: old for old, new in _CLIP_BLOCK.items()}


def _original_pixel_key(key: str) -> str:
    part, rest = key.split(".", 1)
    rest = rest.replace(".shortcut.", ".nin_shortcut.")
    resample = "downsample" if part == "pixel_encoder" else "upsample"
    if match := re.fullmatch(r"(?:down|up)\.(\d+)\.res_blocks\.(\d+)\.(.+)", rest):
        rest = f"conv_blocks.{match[1]}.res.{match[2]}.{match[3]}"
    elif match := re.fullmatch(r"(?:down|up)\.(\d+)\.attn_blocks\.(\d+)\.(.+)", rest):
        rest = f"conv_blocks.{match[1]}.attn.{match[2]}.{match[3]}"
    elif match := re.fullmatch(r"(?:down|up)\.(\d+)\.resample\.(.+)", rest):
        rest = f"conv_blocks.{match[1]}.{resample}.conv.{match[2]}"
    return ("encoder." if part == "pixel_encoder" else "decoder.") + rest


def to_original_state_dict(
    state_dict: Mapping[str, torch.Tensor], config: TokenFlowConfig, *, siglip_prefix: str = "vision_model."
) -> dict[str, torch.Tensor]:
    """modalzoo state dict -> the original's keys (the inverse of `map_state_dict`, without the
    dropped buffers). `siglip_prefix`: "vision_model." for the original's transformers 4.x
    `SiglipVisionModel`, "" when the original runs under transformers 5."""
    original: dict[str, torch.Tensor] = {}
    clip_qkv: dict[str, dict[str, torch.Tensor]] = {}
    fixed = {
        "quantizer.semantic_codebook.weight": "quantize.embedding_vqkd.weight",
        "quantizer.pixel_codebook.weight": "quantize.embedding_vqgan.weight",
        "semantic_decoder.cls_token": "decoder_vqkd.cls_token",
        "semantic_decoder.pos_embed": "decoder_vqkd.pos_embed",
    }
    tower = "semantic_encoder.tower."
    for key, value in state_dict.items():
        if key in fixed:
            original[fixed[key]] = value
        elif key.startswith(("pixel_encoder.", "pixel_decoder.")):
            original[_original_pixel_key(key)] = value
        elif match := re.fullmatch(r"(pixel_projection|pixel_post_projection)\.(.+)", key):
            original[("quant_conv" if match[1] == "pixel_projection" else "post_quant_conv") + "." + match[2]] = value
        elif match := re.fullmatch(r"(semantic_projection|semantic_decoder_head)\.(.+)", key):
            original[("encode_task_layer" if match[1] == "semantic_projection" else "decode_task_layer") + "." + match[2]] = value
        elif match := re.fullmatch(r"semantic_decoder\.(patch_embed|fc_norm)\.(.+)", key):
            original[f"decoder_vqkd.{'patch_embed.proj' if match[1] == 'patch_embed' else 'fc_norm'}.{match[2]}"] = value
        elif match := re.fullmatch(r"semantic_decoder\.transformer\.layers\.(\d+)\.(.+)", key):
            layer, rest = match[1], match[2]
            prefix = f"decoder_vqkd.blocks.{layer}."
            if rest == "attn.qkv.bias":
                q_bias, _, v_bias = value.chunk(3)
                original[prefix + "attn.q_bias"], original[prefix + "attn.v_bias"] = q_bias, v_bias
            else:
                original[prefix + rest.replace("attn.out_proj.", "attn.proj.")] = value
        elif key.startswith(tower) and config.teacher == "siglip":
            original["encoder_vqkd." + siglip_prefix + key[len(tower) :]] = value
        elif key.startswith(tower):
            rest = key[len(tower) :]
            back = {
                "embeddings.class_embedding": "class_embedding",
                "embeddings.position_embedding.weight": "positional_embedding",
                "embeddings.patch_embedding.weight": "conv1.weight",
            }
            if rest in back:
                original["encoder_vqkd." + back[rest]] = value
            elif match := re.fullmatch(r"(pre_layrnorm|post_layernorm)\.(.+)", rest):
                original[f"encoder_vqkd.{'ln_pre' if match[1] == 'pre_layrnorm' else 'ln_post'}.{match[2]}"] = value
            elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", rest):
                clip_qkv.setdefault(f"encoder_vqkd.transformer.resblocks.{match[1]}.attn.in_proj_{match[3]}", {})[match[2]] = value
            elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", rest):
                inner = match[2]
                for new, old in _CLIP_BLOCK_BACK.items():
                    if inner.startswith(new + "."):
                        inner = old + inner[len(new) :]
                        break
                original[f"encoder_vqkd.transformer.resblocks.{match[1]}.{inner}"] = value
            else:
                raise ValueError(f"no original counterpart for {key}")
        else:
            raise ValueError(f"no original counterpart for {key}")
    for key, parts in clip_qkv.items():
        original[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return original


# ----- files -----------------------------------------------------------------------------------
def original_state_dict_of(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The weights of a loaded original checkpoint: `ema`, then `model`, then `state_dict` (the
    original's loader order), or the object itself when it is a state dict."""
    if isinstance(checkpoint, dict):
        for key in ("ema", "model", "state_dict"):
            inner = checkpoint.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                return dict(inner)
        if checkpoint and all(torch.is_tensor(v) for v in checkpoint.values()):
            return dict(checkpoint)
    raise ValueError("the checkpoint holds no TokenFlow weights (looked for 'ema', 'model', 'state_dict')")


def _config_from(config: Any, original_state_dict: Mapping[str, torch.Tensor], variant: str | None) -> TokenFlowConfig:
    if variant is not None:
        if variant not in VARIANTS or VARIANTS[variant].family != "tokenflow":
            known = sorted(name for name, v in VARIANTS.items() if v.family == "tokenflow")
            raise ValueError(f"unknown tokenflow variant {variant!r}; known: {', '.join(known)}")
        if config is None:
            return VARIANTS[variant].build_config()
    if isinstance(config, TokenFlowConfig):
        return config
    if isinstance(config, (str, os.PathLike)):
        config = json.loads(Path(config).read_text())
    if isinstance(config, Mapping):
        if config.get("model_type") == "tokenflow":
            fields = {k: v for k, v in config.items() if k not in ("model_type", "transformers_version", "architectures")}
            return TokenFlowConfig(**fields)
        return convert_config(config)
    return convert_config(infer_original_config(original_state_dict))


def _match_variant(config: TokenFlowConfig) -> str | None:
    ignore = {"variant", "transformers_version"}
    target = {k: v for k, v in config.to_dict().items() if k not in ignore}
    for name, variant in VARIANTS.items():
        if variant.family == "tokenflow":
            candidate = {k: v for k, v in variant.build_config().to_dict().items() if k not in ignore}
            if candidate == target:
                return name
    return None


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    variant: str | None = None,
    config: Any = None,
    *,
    trust_pickle: bool = False,
) -> dict:
    """Original TokenFlow `.pt` -> Hub-ready folder (config.json, model.safetensors,
    preprocessor_config.json). `config`: a `TokenFlowConfig`, a dict or a json path (modalzoo
    config or the original's ModelArgs fields). Returns {"mapped", "dropped", "missing"}; raises
    ValueError on any unmapped key, missing key or shape mismatch."""
    original = original_state_dict_of(load_checkpoint(checkpoint, trust_pickle=trust_pickle))
    model_config = _config_from(config, original, variant)
    model_config.variant = variant or _match_variant(model_config)
    converted, dropped, missing = map_state_dict(original, model_config)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} key(s) this config needs: {', '.join(missing[:20])}")
    with torch.device("meta"):
        model = TokenFlowTokenizer(model_config)
    model.load_state_dict({k: v.contiguous() for k, v in converted.items()}, strict=True, assign=True)
    model.eval()
    os.makedirs(output, exist_ok=True)
    model.save_pretrained(output)
    TokenFlowImageProcessor.from_model_config(model_config).save_pretrained(output)
    return {"mapped": len(converted), "dropped": dropped, "missing": missing}


__all__ = [
    "DROPPED",
    "convert_checkpoint",
    "convert_config",
    "convert_state_dict",
    "infer_original_config",
    "map_state_dict",
    "original_state_dict_of",
    "to_original_state_dict",
]
