"""FlexTok checkpoints (apple/ml-flextok, EPFL-VILAB/flextok_*) -> modalzoo `FlexTokTokenizer` folders.

The release format is one `model.safetensors` whose `__metadata__` holds the hydra config: one
entry per top-level key (`vae`, `encoder`, `decoder`, `regularizer`, `flow_matching_noise_module`,
`pipeline`, `_target_`), each `str()` of a dict, read back with `ast.literal_eval` (never `eval`).
`convert_config` walks that `_target_` graph (the encoder's and decoder's `module_dict`s) into
`FlexTokConfig` fields and refuses any module, option or wiring the modalzoo model does not
reproduce. The VAE is a diffusers `AutoencoderKL`: its weights are the file's `vae.vae.*`
tensors when present, otherwise the diffusers-format VAE repo (`EPFL-VILAB/flextok_vae_c16`:
`config.json` + `diffusion_pytorch_model.safetensors`) given as `vae=`, found next to the
checkpoint (`<folder>/<hf_hub_path>` or `<folder>/vae`), or downloaded from the config's
`hf_hub_path`.

Key mapping (original -> modalzoo; `<m>` is any module_dict name, recognised by its parameters):

    vae.vae.*                                      vae.*
    encoder.module_dict.<m>.patch_proj.*           encoder.patch_embed.*
    encoder.module_dict.<m>.registers              encoder.registers
    encoder.module_dict.<m>.blocks.{i}.attn.{wq,wk,wv,proj}.*  encoder.blocks.{i}.attn.*
    encoder.module_dict.<m>.blocks.{i}.mlp.{fc1,fc2,fc3}.*     encoder.blocks.{i}.mlp.*
    encoder.module_dict.<m>.proj.*                 encoder.to_latents.*
    decoder.module_dict.<m>.proj.* (LinearLayer)   decoder.from_latents.*
    decoder.module_dict.<m>.posembs [1, 1, D, R]   decoder.register_positions [R, D]
    decoder.module_dict.<m>.dropout_mask_token     decoder.mask_token
    decoder.module_dict.<m>.nullcond               decoder.null_condition
    decoder.module_dict.<m>.patch_proj.*           decoder.patch_embed.*
    decoder.module_dict.<m>.mlp.{0,2}.*            decoder.time_fc1 / time_fc2
    decoder.module_dict.<m>.blocks.{i}.adaLN_modulation.1.*    decoder.blocks.{i}.adaln_modulation.*
    decoder.module_dict.<m>.adaLN_modulation.1.* (head)        decoder.head_adaln.*
    decoder.module_dict.<m>.proj.* (ToPatchesLinearHead)       decoder.head.*

A `_checkpoint_wrapped_module.` segment (activation checkpointing) is removed first. Dropped on
purpose: the fixed 2-D sin-cos tables `*.posembs [1, D, G, G]` (modalzoo recomputes them; they
are checked equal first). Anything else unknown is an error, as is any shape mismatch.

Licence: the released weights are under the Apple Machine Learning Research Model License
(research purposes only). Every converted folder gets `LICENSE_NOTICE.md` and the notice in its
README; converted weights must not be re-published under another licence.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from modalzoo.models.flextok import FlexTokConfig, FlexTokImageProcessor, FlexTokTokenizer
from modalzoo.registry import VARIANTS

from .checkpoint_io import load_checkpoint, state_dict_of

LICENSE_NAME = "Apple Machine Learning Research Model License"
LICENSE_URL = "https://github.com/apple/ml-flextok/blob/main/LICENSE_WEIGHTS"
ATTRIBUTION = (
    "Apple Machine Learning Research Model is licensed under the Apple Machine Learning Research Model "
    "License Agreement."
)
LICENSE_NOTICE = f"""# Licence notice

These weights are a **Model Derivative** of FlexTok by Apple Inc. and EPFL
(https://github.com/apple/ml-flextok), converted with modalzoo: the tensors were renamed and
reshaped into the modalzoo layout, nothing was retrained or fine-tuned, and the outputs match the
original code.

{ATTRIBUTION}

- Licence: [{LICENSE_NAME}]({LICENSE_URL}). Use, modification and redistribution are permitted
  **for Research Purposes only** (non-commercial scientific research); no commercial use,
  product development or use in a commercial product or service.
- Model Derivatives, including these converted weights, are limited to Research Purposes as well.
- These weights must not be re-published under any other licence. Whoever redistributes them must
  include a copy of the licence agreement and this attribution notice, and identify them as a
  Model Derivative.
- The modalzoo code (Apache-2.0) does not change the licence of the weights.
"""

# Released variant name -> Hub repo of the original checkpoint.
BASE_MODELS = {
    "flextok-d12-d12-in1k": "EPFL-VILAB/flextok_d12_d12_in1k",
    "flextok-d18-d18-in1k": "EPFL-VILAB/flextok_d18_d18_in1k",
    "flextok-d18-d28-in1k": "EPFL-VILAB/flextok_d18_d28_in1k",
    "flextok-d18-d28-dfn": "EPFL-VILAB/flextok_d18_d28_dfn",
}

# The original's VAE_BASE_CFG (flextok/vae_wrapper.py): the VAE built when no hf_hub_path is given.
_VAE_BASE = {"block_out_channels": [128, 256, 512, 512], "layers_per_block": 2, "norm_num_groups": 32}
# Settings of a diffusers AutoencoderKL config that modalzoo's VAE always has.
_VAE_FIXED = {
    "in_channels": 3,
    "out_channels": 3,
    "act_fn": "silu",
    "use_quant_conv": True,
    "use_post_quant_conv": True,
    "mid_block_add_attention": True,
    "shift_factor": None,
    "latents_mean": None,
    "latents_std": None,
}
# Config fields that do not describe the architecture (training and sampling defaults): ignored
# when matching a registered variant.
_TRAINING_FIELDS = {
    "nested_dropout_mode", "condition_dropout_prob", "flow_timestep_sampling", "flow_mode_scale",
    "sampling_num_steps", "sampling_guidance_scale", "sampling_norm_guidance",
}


# ----- reading the release format ----------------------------------------------------------------
def parse_metadata(metadata: Mapping[str, str]) -> dict[str, Any]:
    """The hydra config of a FlexTok safetensors file (`__metadata__` values are `str()` of
    Python literals, parsed with `ast.literal_eval` as the original's `load_safetensors`)."""
    config = {}
    for key, value in metadata.items():
        try:
            config[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            config[key] = value
    return config


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, parsed hydra config) of a release-format `model.safetensors`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
    return load_file(str(path)), parse_metadata(metadata)


def _target_class(node: Any) -> str:
    if not isinstance(node, Mapping) or "_target_" not in node:
        raise ValueError(f"expected a hydra node with a _target_, got {node!r:.200}")
    return str(node["_target_"]).rsplit(".", 1)[-1]


def _module_dict(original_config: Mapping[str, Any], part: str) -> list[tuple[str, str, dict]]:
    node = original_config.get(part)
    if node is None:
        raise ValueError(f"the original config has no {part!r} section; is this a FlexTok config?")
    if _target_class(node) != "SequentialModuleDictWrapper":
        raise ValueError(f"{part} must be a SequentialModuleDictWrapper, got {node['_target_']}")
    return [(name, _target_class(module), dict(module)) for name, module in node["module_dict"].items()]


def _one(modules: list[tuple[str, str, dict]], cls: str, part: str, *, where=None) -> tuple[int, dict]:
    found = [(i, cfg) for i, (_, c, cfg) in enumerate(modules) if c == cls and (where is None or where(cfg))]
    if len(found) != 1:
        raise ValueError(f"expected exactly one {cls} in the {part}, found {len(found)}")
    return found[0]


def _per_sample_op(cfg: Mapping[str, Any]) -> str:
    op = cfg.get("per_sample_op")
    target = op.get("_target_", "") if isinstance(op, Mapping) else str(op)
    return target.rsplit(".", 1)[-1]


def _check_transformer(cfg: Mapping[str, Any], part: str) -> dict:
    """FlexTransformer options -> shared block fields (refusing what modalzoo does not build)."""
    supported = {"gated_mlp": True, "qk_norm": True, "rope_forward_read_key": None, "score_mod_read_key": None}
    for key, expected in supported.items():
        value = cfg.get(key, expected)
        if value != expected:
            raise ValueError(f"{part} transformer has {key}={value!r}; modalzoo's FlexTok supports {expected!r}")
    for key in ("act_layer", "norm_layer"):
        if cfg.get(key) is not None:
            raise ValueError(f"{part} transformer sets {key}; modalzoo supports the original defaults (SiLU, Fp32LayerNorm)")
    dim, head_dim = int(cfg.get("dim", 768)), int(cfg.get("head_dim", 64))
    if dim % head_dim:
        raise ValueError(f"{part} transformer width {dim} is not a multiple of head_dim {head_dim}")
    return {
        "dim": dim,
        "depth": int(cfg.get("depth", 12)),
        "head_dim": head_dim,
        "mlp_ratio": float(cfg.get("mlp_ratio", 4.0)),
        "qkv_bias": bool(cfg.get("qkv_bias", False)),
        "proj_bias": bool(cfg.get("proj_bias", False)),
        "mlp_bias": bool(cfg.get("mlp_bias", False)),
    }


def _check_head(cfg: Mapping[str, Any], part: str) -> None:
    if cfg.get("use_mup_readout"):
        raise ValueError(
            f"the {part} head uses a muP readout (use_mup_readout=True), whose output scale depends on "
            "mup.set_base_shapes and is not stored in the checkpoint; not supported"
        )
    if "norm_layer" in cfg and cfg["norm_layer"] is not None:
        raise ValueError(f"the {part} head sets norm_layer; modalzoo supports the default parameter-free LayerNorm")
    if cfg.get("dtype_override") not in (None, "fp32", "float32"):
        raise ValueError(f"the {part} head has dtype_override={cfg['dtype_override']!r}; run the model in that dtype instead")


def _square(sizes, what: str) -> int:
    sizes = [int(s) for s in sizes]
    if len(sizes) != 2 or sizes[0] != sizes[1]:
        raise ValueError(f"{what} must be two equal sizes, got {sizes}")
    return sizes[0]


def _vae_kwargs(vae: Mapping[str, Any], vae_config: Mapping[str, Any] | None) -> dict:
    if _target_class(vae) != "StableDiffusionVAE":
        raise ValueError(f"unsupported VAE wrapper {vae.get('_target_')}")
    if vae.get("learnable_logvar"):
        raise ValueError("learnable_logvar VAEs are a training-only variant; not supported")
    # vae.dtype_override is an autocast the original may run the VAE under; modalzoo runs the
    # whole model in its own dtype, so it is not part of the architecture.
    layout = dict(_VAE_BASE, latent_channels=int(vae.get("latent_channels", 16)))
    scaling = vae.get("scaling_factor")
    if vae_config is not None:
        for key, expected in _VAE_FIXED.items():
            if key in vae_config and vae_config[key] != expected:
                raise ValueError(f"the VAE config has {key}={vae_config[key]!r}; modalzoo's VAE needs {expected!r}")
        for key, expected in (("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")):
            if any(block != expected for block in vae_config.get(key, [expected])):
                raise ValueError(f"the VAE config's {key} must all be {expected}, got {vae_config[key]}")
        layout = {key: vae_config.get(key, value) for key, value in layout.items()}
        if not scaling:  # the original: `scaling_factor or vae.config.scaling_factor`
            scaling = vae_config.get("scaling_factor")
    if not scaling:
        raise ValueError(
            "the VAE scaling factor is neither in the FlexTok config (vae.scaling_factor) nor given: pass the "
            "diffusers VAE folder (vae=..., e.g. EPFL-VILAB/flextok_vae_c16)"
        )
    return {
        "vae_latent_channels": int(layout["latent_channels"]),
        "vae_block_out_channels": [int(c) for c in layout["block_out_channels"]],
        "vae_layers_per_block": int(layout["layers_per_block"]),
        "vae_norm_num_groups": int(layout["norm_num_groups"]),
        "vae_scaling_factor": float(scaling),
        "vae_sample_posterior": bool(vae.get("sample_posterior", True)),
    }


_ENCODER_MODULES = {"PatchEmbedder", "PositionalEmbeddingAdder", "Registers1D", "BlockWiseSequencePacker",
                    "FlexTransformer", "SequenceUnpacker", "LinearHead", "PerSampleOp", "DictKeyFilter"}
_DECODER_MODULES = {"LinearLayer", "PositionalEmbeddingAdder", "MaskedNestedDropout", "LearnedNullCond", "ZeroNullCond",
                    "PerSampleOp", "PatchEmbedder", "BlockWiseSequencePacker", "TimestepEmbedder", "FlexTransformer",
                    "SequenceUnpacker", "ToPatchesLinearHead", "DictKeyFilter"}


def _encoder_kwargs(enc: list[tuple[str, str, dict]], fsq_levels: list[int], fsq_input: str) -> tuple[dict, dict]:
    """(config fields, facts the decoder is checked against) of the encoder's module dict."""
    for name, cls, cfg in enc:
        if cls not in _ENCODER_MODULES:
            raise ValueError(f"encoder module {name!r} ({cls}) has no modalzoo counterpart")
        if cls == "PerSampleOp" and _per_sample_op(cfg) != "channels_first_to_last":
            raise ValueError(f"encoder module {name!r} applies {_per_sample_op(cfg)}; only channels_first_to_last is known")
    i_patch, patch = _one(enc, "PatchEmbedder", "encoder")
    i_pos, pos = _one(enc, "PositionalEmbeddingAdder", "encoder")
    i_reg, reg = _one(enc, "Registers1D", "encoder")
    i_pack, pack = _one(enc, "BlockWiseSequencePacker", "encoder")
    i_trunk, trunk = _one(enc, "FlexTransformer", "encoder")
    i_unpack, unpack = _one(enc, "SequenceUnpacker", "encoder")
    i_head, head = _one(enc, "LinearHead", "encoder")
    if not (i_patch < i_pos < i_pack < i_trunk < i_unpack < i_head and i_reg < i_pack):
        raise ValueError("the encoder modules are not in the order patches -> positions -> registers -> transformer -> head")
    patches_key = patch["patches_list_write_key"]
    if pos.get("posemb_type", "sincos") != "sincos" or pos.get("posemb_scaling", "absolute") != "absolute":
        raise ValueError("the encoder's patch positions must be absolute 2-D sin-cos (posemb_type 'sincos')")
    if pos["read_key"] != patches_key:
        raise ValueError("the encoder's positional embedding is not added to the patches")
    if reg.get("ordering_mode", "nested") != "nested":
        raise ValueError(f"register ordering_mode {reg['ordering_mode']!r} is not supported (only 'nested')")
    if reg.get("n_eval") not in (None, reg["n_max"]):
        raise ValueError(f"Registers1D n_eval {reg['n_eval']} differs from n_max {reg['n_max']}; not supported")
    packed = list(pack["input_list_read_keys"])
    if pack.get("mask_mode", "full") != "causal_last" or packed != [patches_key, reg["registers_write_key"]]:
        raise ValueError("the encoder must pack [patches, registers] with mask_mode 'causal_last'")
    if list(unpack["inner_seq_write_keys"])[1] != head["read_key"] or head["write_key"] != fsq_input:
        raise ValueError("the encoder head must read the unpacked registers and feed the FSQ")
    _check_head(head, "encoder")
    blocks = _check_transformer(trunk, "encoder")
    if trunk.get("adaLN_emb_read_key") is not None:
        raise ValueError("an adaLN-conditioned encoder transformer is not supported")
    if int(patch["dim"]) != blocks["dim"] or int(reg["dim"]) != blocks["dim"]:
        raise ValueError("the encoder's patch / register width differs from its transformer width")
    if int(head["dim_out"]) != len(fsq_levels):
        raise ValueError(f"the encoder head has {head['dim_out']} outputs for {len(fsq_levels)} FSQ levels")
    fields = {
        "patch_size": _square(patch["patch_sizes"], "encoder patch_sizes"),
        "num_registers": int(reg["n_max"]),
        "encoder_hidden_size": blocks["dim"],
        "encoder_num_layers": blocks["depth"],
        "encoder_head_bias": bool(head.get("proj_bias", True)),
    }
    facts = {
        "blocks": blocks,
        "channels_in": int(patch["channels_in"]),
        "max_grid": _square(pos["max_sizes"], "encoder position max_sizes"),
    }
    return fields, facts


def _decoder_kwargs(dec: list[tuple[str, str, dict]], fsq_output: str, num_registers: int) -> tuple[dict, dict]:
    """(config fields, facts checked against the encoder) of the decoder's module dict."""
    for name, cls, cfg in dec:
        if cls not in _DECODER_MODULES:
            raise ValueError(f"decoder module {name!r} ({cls}) has no modalzoo counterpart")
        if cls == "PerSampleOp" and _per_sample_op(cfg) not in ("channels_first_to_last", "channels_last_to_first"):
            raise ValueError(f"decoder module {name!r} applies {_per_sample_op(cfg)}")
    i_from, from_latents = _one(dec, "LinearLayer", "decoder")
    i_drop, dropout = _one(dec, "MaskedNestedDropout", "decoder")
    nulls = [(i, cls, cfg) for i, (_, cls, cfg) in enumerate(dec) if cls in ("LearnedNullCond", "ZeroNullCond")]
    if len(nulls) != 1:
        raise ValueError(f"expected exactly one null-condition module in the decoder, found {len(nulls)}")
    i_null, null_class, null = nulls[0]
    _, patch = _one(dec, "PatchEmbedder", "decoder")
    i_pack, pack = _one(dec, "BlockWiseSequencePacker", "decoder")
    _, time = _one(dec, "TimestepEmbedder", "decoder")
    _, trunk = _one(dec, "FlexTransformer", "decoder")
    _, head = _one(dec, "ToPatchesLinearHead", "decoder")
    quants_key, patches_key = from_latents["write_key"], patch["patches_list_write_key"]
    if from_latents["read_key"] != fsq_output:
        raise ValueError("the decoder's input projection does not read the FSQ output")
    if not i_from < i_drop < i_null < i_pack:
        raise ValueError("the decoder must project the codes, apply nested dropout, then the null condition, then pack")
    if dropout["read_write_key"] != quants_key or null["read_write_key"] != quants_key:
        raise ValueError("nested dropout and the null condition must act on the projected registers")

    # positions: a learned 1-D table on the registers (optional), 2-D sin-cos on the patches
    register_positions, patch_grid = "none", None
    for index, (name, cls, cfg) in enumerate(dec):
        if cls != "PositionalEmbeddingAdder":
            continue
        if cfg["read_key"] == quants_key and register_positions == "none":
            if cfg.get("posemb_type") not in ("learnable_sum", "learnable_prod") or len(cfg["max_sizes"]) != 1:
                raise ValueError("the decoder's register positions must be a learned 1-D table")
            if cfg.get("posemb_scaling", "absolute") != "absolute" or not i_from < index < i_drop:
                raise ValueError("the decoder's register positions must be absolute and added before nested dropout")
            if int(cfg["max_sizes"][0]) != num_registers:
                raise ValueError("the decoder's register position table differs in length from the registers")
            register_positions = "learned"
        elif cfg["read_key"] == patches_key and patch_grid is None:
            if cfg.get("posemb_type", "sincos") != "sincos" or cfg.get("posemb_scaling", "absolute") != "absolute":
                raise ValueError("the decoder's patch positions must be absolute 2-D sin-cos")
            patch_grid = _square(cfg["max_sizes"], "decoder position max_sizes")
        else:
            raise ValueError(f"decoder positional embedding {name!r} reads {cfg['read_key']!r}: not one modalzoo has")
    if patch_grid is None:
        raise ValueError("the decoder has no 2-D sin-cos positions on its patches")

    packed = list(pack["input_list_read_keys"])
    if sorted(packed) != sorted([patches_key, quants_key]) or pack.get("mask_mode", "full") != "full":
        raise ValueError(f"the decoder must pack the patches and the registers with full attention, got {packed}")
    blocks = _check_transformer(trunk, "decoder")
    if trunk.get("adaLN_emb_read_key") != time["time_embedding_write_key"]:
        raise ValueError("the decoder transformer must be adaLN-conditioned on the time embedding")
    if trunk.get("adaLN_packing_fn_read_key") != pack.get("emb_packing_fn_write_key"):
        raise ValueError("the decoder transformer must expand adaLN with its packer's packing function")
    per_segment, expansion = bool(pack.get("per_subseq_embs", False)), int(trunk.get("adaLN_expansion", 1))
    if expansion != (2 if per_segment else 1):
        raise ValueError(f"adaLN_expansion {expansion} with per_subseq_embs={per_segment} is not a supported layout")
    if time.get("temb_as_tokens"):
        raise ValueError("time embeddings as tokens (temb_as_tokens) are not supported")
    _check_head(head, "decoder")
    if head["read_key"] != patches_key:
        raise ValueError("the decoder head must read the unpacked patches")
    head_adaln = head.get("adaLN_emb_read_key")
    if head_adaln not in (None, time["time_embedding_write_key"]) or head.get("adaLN_packing_fn_read_key") is not None:
        raise ValueError("the decoder head's adaLN must use the time embedding, expanded per image")
    if head_adaln is not None and head.get("adaLN_bias", True) is not True:
        raise ValueError("an adaLN head without bias is not supported")
    widths = [patch["dim"], from_latents["dim"], dropout["dim"], time["dim"], head["dim"]]
    if null_class == "LearnedNullCond":
        widths.append(null["dim"])
    if any(int(width) != blocks["dim"] for width in widths):
        raise ValueError("a decoder module's width differs from the decoder transformer's")
    fields = {
        "decoder_hidden_size": blocks["dim"],
        "decoder_num_layers": blocks["depth"],
        "decoder_input_bias": bool(from_latents.get("proj_bias", True)),
        "decoder_head_bias": bool(head.get("proj_bias", True)),
        "decoder_register_positions": register_positions,
        "null_condition": "learned" if null_class == "LearnedNullCond" else "zero",
        "null_condition_single_token": bool(null.get("replace_with_single_token", False)),
        "decoder_adaln_segments": expansion,
        "decoder_sequence_order": "patches_first" if packed[0] == patches_key else "registers_first",
        "decoder_head_adaln": head_adaln is not None,
        "timestep_frequency_size": int(time.get("frequency_embedding_size", 256)),
        "max_timestep": float(time.get("max_timestep", 1000.0)),
        "nested_dropout_mode": "pow2" if dropout.get("size_sampling_mode") == "pow2" else "uniform",
        "condition_dropout_prob": float(null.get("dropout_prob", 0.0)),
    }
    facts = {
        "blocks": blocks,
        "channels_in": int(patch["channels_in"]),
        "channels_out": int(head["channels_out"]),
        "patch_sizes": {_square(patch["patch_sizes"], "decoder patch_sizes"), _square(head["patch_sizes"], "head patch_sizes")},
        "max_grid": patch_grid,
    }
    return fields, facts


def config_kwargs(
    original_config: Mapping[str, Any], *, vae_config: Mapping[str, Any] | None = None, image_size: int | None = None
) -> dict:
    """`FlexTokConfig` keyword arguments for an original hydra config (as a dict).

    `vae_config` is the diffusers `config.json` of the VAE (architecture and scaling factor);
    without it the original's `VAE_BASE_CFG` layout is assumed and the scaling factor must be in
    the FlexTok config. `image_size` is the pixel side the model is used at; the original only
    fixes it through `vae_image_sizes` at decode time, so by default it is 256 (every release)
    or less when the position tables cover a smaller grid."""
    if "_target_" in original_config and _target_class(original_config) not in ("FlexTok", "FlexTokFromHub"):
        raise ValueError(f"not a FlexTok config: _target_ {original_config['_target_']}")
    kwargs = _vae_kwargs(dict(original_config.get("vae") or {}), vae_config)
    regularizer = dict(original_config.get("regularizer") or {})
    if _target_class(regularizer) != "FSQ":
        raise ValueError(f"unsupported regularizer {regularizer.get('_target_')}; FlexTok uses FSQ")
    kwargs["fsq_levels"] = [int(level) for level in regularizer["levels"]]
    pipeline = dict(original_config.get("pipeline") or {})
    if pipeline and _target_class(pipeline) != "MinRFPipeline":
        raise ValueError(f"unsupported sampler {pipeline.get('_target_')}; FlexTok uses MinRFPipeline")

    encoder, enc = _encoder_kwargs(
        _module_dict(original_config, "encoder"), kwargs["fsq_levels"], regularizer.get("latents_read_key")
    )
    decoder, dec = _decoder_kwargs(
        _module_dict(original_config, "decoder"), regularizer.get("quants_write_key"), encoder["num_registers"]
    )
    shared = ("head_dim", "mlp_ratio", "qkv_bias", "proj_bias", "mlp_bias")
    if any(enc["blocks"][key] != dec["blocks"][key] for key in shared):
        raise ValueError("encoder and decoder blocks differ in head_dim / mlp_ratio / biases; not supported")
    if dec["patch_sizes"] != {encoder["patch_size"]}:
        raise ValueError("encoder, decoder and head patch sizes differ")
    if {enc["channels_in"], dec["channels_in"], dec["channels_out"]} != {kwargs["vae_latent_channels"]}:
        raise ValueError("the patch embeddings' or the decoder head's channels differ from the VAE's latent channels")
    kwargs.update(encoder, **decoder, **{key: enc["blocks"][key] for key in shared}, patch_embed_bias=True)

    noise = dict(original_config.get("flow_matching_noise_module") or {})
    if noise:
        kwargs["flow_timestep_sampling"] = "logit_normal" if noise.get("ln", True) else "uniform"
        kwargs["flow_mode_scale"] = float(noise.get("mode_scale", 0.0))
    max_grid = min(enc["max_grid"], dec["max_grid"])
    pixels_per_cell = (2 ** (len(kwargs["vae_block_out_channels"]) - 1)) * encoder["patch_size"]
    kwargs["image_size"] = int(image_size) if image_size is not None else min(256, max_grid * pixels_per_cell)
    grid = kwargs["image_size"] // pixels_per_cell
    if grid > max_grid:
        raise ValueError(
            f"image_size {kwargs['image_size']} needs a {grid}x{grid} patch grid; the positions cover {max_grid}x{max_grid}"
        )
    return kwargs


def convert_config(
    original_config: Mapping[str, Any], *, vae_config: Mapping[str, Any] | None = None, image_size: int | None = None
) -> FlexTokConfig:
    """Original hydra config (as a dict) -> `FlexTokConfig` (see `config_kwargs`)."""
    return FlexTokConfig(**config_kwargs(original_config, vae_config=vae_config, image_size=image_size))


# ----- state dict --------------------------------------------------------------------------------
_BLOCK = re.compile(r"blocks\.(\d+)\.(attn\.(?:wq|wk|wv|proj)|mlp\.(?:fc1|fc2|fc3)|adaLN_modulation\.1)\.(weight|bias)")


def _strip_wrappers(key: str) -> str:
    return key.replace("._checkpoint_wrapped_module", "").replace("_checkpoint_wrapped_module.", "")


def _block_key(part: str, rest: str) -> str | None:
    match = _BLOCK.fullmatch(rest)
    if not match:
        return None
    index, layer, name = match.groups()
    layer = "adaln_modulation" if layer == "adaLN_modulation.1" else layer
    return f"{part}.blocks.{index}.{layer}.{name}"


def map_key(key: str, tensor: torch.Tensor, config: FlexTokConfig, modules: Mapping[str, set[str]]) -> tuple[str, Any] | None:
    """(modalzoo key, transform or None) for one original key, "drop:<reason>" for dropped keys,
    or None when unknown. `modules` maps each module_dict prefix to the names of its tensors (to
    tell the decoder's two `proj` layers apart)."""
    if key.startswith("vae.vae."):
        return "vae." + key[len("vae.vae.") :], None
    match = re.fullmatch(r"(encoder|decoder)\.module_dict\.([^.]+)\.(.+)", key)
    if not match:
        return None
    part, module, rest = match.groups()
    siblings = modules.get(f"{part}.{module}", set())
    if rest.startswith("blocks."):
        new = _block_key(part, rest)
        return (new, None) if new else None
    if rest in ("patch_proj.weight", "patch_proj.bias"):
        return f"{part}.patch_embed.{rest.split('.')[-1]}", None
    if rest == "posembs":
        if tensor.ndim == 4 and tensor.shape[0] == 1 and tensor.shape[1] == 1 and part == "decoder":
            # learnable_sum over one axis: [1, 1, D, R] -> [R, D]
            return "decoder.register_positions", lambda t: t[0, 0].transpose(0, 1).contiguous()
        if tensor.ndim == 4 and tensor.shape[0] == 1:
            return "drop:sincos", None
        return None
    if part == "encoder":
        if rest == "registers":
            return "encoder.registers", None
        if rest in ("proj.weight", "proj.bias"):
            return f"encoder.to_latents.{rest.split('.')[-1]}", None
        return None
    if rest == "dropout_mask_token":
        return "decoder.mask_token", None
    if rest == "nullcond":
        return "decoder.null_condition", None
    if match := re.fullmatch(r"mlp\.([02])\.(weight|bias)", rest):
        return f"decoder.time_fc{1 if match.group(1) == '0' else 2}.{match.group(2)}", None
    if match := re.fullmatch(r"adaLN_modulation\.1\.(weight|bias)", rest):
        return f"decoder.head_adaln.{match.group(1)}", None
    if rest in ("proj.weight", "proj.bias"):
        # two decoder modules own a `proj`: the input projection (LinearLayer, [width, levels])
        # and the patch head (ToPatchesLinearHead, [patch_dim, width], usually with adaLN)
        name = rest.split(".")[-1]
        shape = modules.get(f"shape:{part}.{module}")
        levels, patch_dim = len(config.fsq_levels), config.vae_latent_channels * config.patch_size**2
        if "adaLN_modulation.1.weight" in siblings or shape == (patch_dim, config.decoder_hidden_size):
            is_head = True
        elif shape == (config.decoder_hidden_size, levels):
            is_head = False
        else:
            return None
        return f"decoder.{'head' if is_head else 'from_latents'}.{name}", None
    return None


def _module_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    modules: dict[str, Any] = {}
    for key, tensor in state_dict.items():
        match = re.fullmatch(r"(encoder|decoder)\.module_dict\.([^.]+)\.(.+)", key)
        if match:
            part, module, rest = match.groups()
            modules.setdefault(f"{part}.{module}", set()).add(rest)
            if rest == "proj.weight":
                modules[f"shape:{part}.{module}"] = tuple(tensor.shape)
    return modules


def expected_shapes(config: FlexTokConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = FlexTokTokenizer(config)
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def map_state_dict(
    original_state_dict: Mapping[str, torch.Tensor], config: FlexTokConfig
) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(converted state dict, dropped keys with their reason, missing modalzoo keys).

    Raises ValueError on keys it cannot map, shapes that do not match `config`, and sin-cos
    tables that differ from modalzoo's."""
    from modalzoo.layers.adaln_transformer import sincos_2d_positions

    state = {_strip_wrappers(key): value for key, value in original_state_dict.items()}
    modules = _module_tensors(state)
    expected = expected_shapes(config)
    converted: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    unmapped: list[str] = []
    mismatched: list[str] = []
    for key, tensor in state.items():
        mapped = map_key(key, tensor, config, modules)
        if mapped is None:
            unmapped.append(key)
            continue
        new_key, transform = mapped
        if new_key == "drop:sincos":
            grid, width = tensor.shape[-1], tensor.shape[1]
            table = sincos_2d_positions(grid, width).transpose(0, 1).reshape(1, width, grid, grid)
            if tensor.shape[-2] != grid or not torch.allclose(tensor.float(), table, atol=1e-5):
                raise ValueError(f"{key} is not the 2-D sin-cos table modalzoo recomputes; refusing to drop it")
            dropped[key] = "fixed 2-D sin-cos position table; modalzoo recomputes it (checked equal)"
            continue
        if new_key not in expected:
            unmapped.append(key)
            continue
        value = transform(tensor) if transform is not None else tensor
        if tuple(value.shape) != expected[new_key]:
            mismatched.append(f"{key} {tuple(tensor.shape)} -> {new_key} expects {expected[new_key]}")
            continue
        if new_key in converted:
            raise ValueError(f"two original keys map to {new_key}")
        converted[new_key] = value
    if unmapped:
        raise ValueError(f"{len(unmapped)} original key(s) have no modalzoo counterpart: {', '.join(sorted(unmapped))}")
    if mismatched:
        raise ValueError("checkpoint shapes do not match the config (wrong --variant / --config?): " + "; ".join(mismatched))
    missing = sorted(set(expected) - set(converted))
    return converted, dropped, missing


def convert_state_dict(original_state_dict: Mapping[str, torch.Tensor], config: FlexTokConfig) -> dict[str, torch.Tensor]:
    """Original state dict -> modalzoo state dict for `config`; every key must map and every
    modalzoo tensor must be filled (the VAE's `vae.vae.*` included: see `vae_state_dict` for
    adding it from the diffusers VAE repo)."""
    converted, _, missing = map_state_dict(original_state_dict, config)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} key(s) this config needs: {', '.join(missing[:20])}")
    return converted


# ----- the VAE -----------------------------------------------------------------------------------
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def resolve_vae(source: str | os.PathLike) -> Path:
    """A diffusers VAE folder from a local folder or a Hub repo id (downloads config.json and
    diffusion_pytorch_model.safetensors only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if _REPO_ID.match(str(source)):
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(source), allow_patterns=["config.json", "diffusion_pytorch_model.safetensors"]))
    raise FileNotFoundError(f"VAE {source} is neither a folder nor a Hub repo id")


def read_vae_folder(folder: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """(diffusers config, `vae.*` tensors in modalzoo's naming) of a diffusers VAE folder, loaded
    through diffusers (which also renames the attention keys of very old diffusers files)."""
    from diffusers.models import AutoencoderKL

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    vae = AutoencoderKL.from_pretrained(str(folder), low_cpu_mem_usage=False)
    return config, {f"vae.{key}": value for key, value in vae.state_dict().items()}


def _candidate_vae_folders(checkpoint_dir: Path, original_config: Mapping[str, Any]) -> list[Path]:
    hub_path = (original_config.get("vae") or {}).get("hf_hub_path")
    folders = []
    if hub_path:
        folders.append(checkpoint_dir / str(hub_path))
    folders.append(checkpoint_dir / "vae")
    return [folder for folder in folders if (folder / "config.json").is_file()]


# ----- files -------------------------------------------------------------------------------------
def _read_config_file(path: str | os.PathLike) -> dict:
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text)
    return json.loads(text)


def load_original_checkpoint(
    checkpoint: str | os.PathLike, *, config: str | os.PathLike | None = None, trust_pickle: bool = False
) -> tuple[dict | None, dict[str, torch.Tensor], Path]:
    """(hydra config or None, state dict, folder of the checkpoint) from a release
    `model.safetensors`, a folder holding one, a Hub repo id, or a pickle state dict (which needs
    `config`, the hydra config as json / yaml)."""
    path = Path(checkpoint)
    if not path.exists() and _REPO_ID.match(str(checkpoint)):
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(str(checkpoint), allow_patterns=["model.safetensors", "config.json", "LICENSE*"]))
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"{path} has no model.safetensors")
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} is neither a file, a folder nor a Hub repo id")
    if path.suffix == ".safetensors":
        tensors, original_config = read_safetensors(path)
        original_config = original_config or None
        if original_config is None and (path.parent / "config.json").is_file():
            original_config = _read_config_file(path.parent / "config.json")  # PyTorchModelHubMixin folder
    else:
        tensors, original_config = state_dict_of(load_checkpoint(path, trust_pickle=trust_pickle)), None
    if config is not None:
        original_config = _read_config_file(config)
    return original_config, tensors, path.parent


def _architecture(config: FlexTokConfig) -> dict:
    return {key: getattr(config, key) for key in FlexTokConfig.__annotations__ if key not in _TRAINING_FIELDS}


def match_variant(config: FlexTokConfig) -> str | None:
    """The registered FlexTok variant with the same architecture (VAE scaling aside), if any."""
    target = {k: v for k, v in _architecture(config).items() if k != "vae_scaling_factor"}
    for name, variant in VARIANTS.items():
        if variant.family != "flextok":
            continue
        candidate = {k: v for k, v in _architecture(variant.build_config()).items() if k != "vae_scaling_factor"}
        if candidate == target:
            return name
    return None


def build_converted_model(config: FlexTokConfig, state_dict: Mapping[str, torch.Tensor]) -> FlexTokTokenizer:
    """The modalzoo model holding exactly `state_dict` (computed buffers rebuilt)."""
    with torch.device("meta"):
        model = FlexTokTokenizer(config)
    model.load_state_dict({key: value.contiguous() for key, value in state_dict.items()}, strict=True, assign=True)
    with torch.no_grad():
        for module in model.modules():
            compute = getattr(module, "computed_buffers", None)
            if compute is None:
                continue
            for name, value in compute().items():
                owner_name, _, buffer_name = name.rpartition(".")
                owner = module.get_submodule(owner_name) if owner_name else module
                owner.register_buffer(buffer_name, value.clone(), persistent=False)
    model.vae.requires_grad_(False)
    return model.eval()


def write_licence(output: str | os.PathLike, checkpoint_dir: Path | None = None) -> None:
    """LICENSE_NOTICE.md, the licence text when the original folder carries one, and the notice
    in README.md (appended when the card does not already carry it)."""
    output = Path(output)
    (output / "LICENSE_NOTICE.md").write_text(LICENSE_NOTICE)
    if checkpoint_dir is not None:
        for name in ("LICENSE_WEIGHTS", "LICENSE"):
            if (checkpoint_dir / name).is_file():
                shutil.copyfile(checkpoint_dir / name, output / "LICENSE")
                break
    readme = output / "README.md"
    text = readme.read_text() if readme.is_file() else ""
    if ATTRIBUTION not in text:
        if not text:
            text = (
                "---\nlicense: apple-amlr\nlibrary_name: modalzoo\ntags: [modalzoo, tokenizer, image-tokenizer, flextok]\n---\n"
                "# FlexTok (converted)\n\nFlexTok (https://github.com/apple/ml-flextok) converted to a modalzoo "
                "`FlexTokTokenizer`; load it with `transformers.AutoModel.from_pretrained` after `import modalzoo`.\n"
            )
        text = text.rstrip() + "\n\n" + LICENSE_NOTICE.replace("# Licence notice", "## Licence notice")
        readme.write_text(text)


def _save_folder(model: FlexTokTokenizer, output: Path, base_model: str | None) -> None:
    processor = FlexTokImageProcessor.from_model_config(model.config)
    try:
        from modalzoo.hub import save_for_hub
    except ImportError:  # the Hub helpers are optional
        save_for_hub = None
    if save_for_hub is not None:
        save_for_hub(model, output, processor=processor, base_model=base_model)
    else:
        model.save_pretrained(output)
        processor.save_pretrained(output)


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    trust_pickle: bool = False,
    *,
    vae: str | os.PathLike | None = None,
    image_size: int | None = None,
) -> dict:
    """Original FlexTok checkpoint (release `model.safetensors`, its folder or Hub repo id) ->
    Hub-ready folder (config.json, model.safetensors, preprocessor_config.json, README.md with the
    licence notice, LICENSE_NOTICE.md).

    `vae`: the diffusers VAE folder or repo id (default: the file's own `vae.vae.*` tensors, else
    `<checkpoint folder>/<hf_hub_path>` or `<checkpoint folder>/vae`, else the config's
    `hf_hub_path` from the Hub). `config`: a json / yaml hydra config replacing the file's
    metadata. Returns {"mapped": n, "dropped": {key: reason}, "missing": [...]}; raises ValueError
    on any unmapped key, missing key or shape mismatch.
    """
    original_config, original_state_dict, checkpoint_dir = load_original_checkpoint(
        checkpoint, config=config, trust_pickle=trust_pickle
    )
    if variant is not None and (variant not in VARIANTS or VARIANTS[variant].family != "flextok"):
        known = sorted(name for name, v in VARIANTS.items() if v.family == "flextok")
        raise ValueError(f"unknown flextok variant {variant!r}; known: {', '.join(known)}")
    if original_config is None:
        raise ValueError(
            f"{checkpoint} carries no FlexTok config (the release files hold it in their safetensors metadata): "
            "pass --config with the original hydra config (json or yaml)"
        )

    file_has_vae = any(key.startswith("vae.vae.") for key in original_state_dict)
    vae_config, vae_tensors, vae_origin = None, None, None
    if vae is not None:
        vae_folder = resolve_vae(vae)
    else:
        local = _candidate_vae_folders(checkpoint_dir, original_config)
        vae_folder = local[0] if local else None
        needs_scaling = not (original_config.get("vae") or {}).get("scaling_factor")
        if vae_folder is None and (not file_has_vae or needs_scaling):
            hub_path = (original_config.get("vae") or {}).get("hf_hub_path")
            if not hub_path or not (Path(str(hub_path)).is_dir() or _REPO_ID.match(str(hub_path))):
                raise ValueError(
                    f"no VAE weights in the checkpoint (or no VAE scaling factor in its config), and its VAE "
                    f"hf_hub_path {hub_path!r} is neither next to the checkpoint nor a Hub repo id: pass vae=<diffusers "
                    "VAE folder or repo id>, e.g. EPFL-VILAB/flextok_vae_c16"
                )
            vae_folder = resolve_vae(hub_path)
    if vae_folder is not None:
        vae_config, vae_tensors = read_vae_folder(vae_folder)
        vae_origin = str(vae_folder)

    model_config = convert_config(original_config, vae_config=vae_config, image_size=image_size)
    if variant is not None:
        expected = {k: v for k, v in _architecture(VARIANTS[variant].build_config()).items() if k != "vae_scaling_factor"}
        actual = _architecture(model_config)
        differing = sorted(key for key in expected if expected[key] != actual.get(key))
        if differing:
            raise ValueError(
                f"the checkpoint's config does not match variant {variant!r} in: "
                + ", ".join(f"{key}={actual.get(key)!r} (variant: {expected[key]!r})" for key in differing)
            )
    model_config.variant = variant or match_variant(model_config)

    state = dict(original_state_dict)
    dropped_vae: dict[str, str] = {}
    if vae is not None and file_has_vae:
        # an explicit VAE replaces the file's copy
        for key in [k for k in state if k.startswith("vae.vae.")]:
            state.pop(key)
            dropped_vae[key] = f"replaced by the VAE weights of {vae_origin}"
    converted, dropped, missing = map_state_dict(state, model_config)
    if vae_tensors is not None:
        for key, value in vae_tensors.items():
            converted.setdefault(key, value)
        missing = sorted(key for key in missing if key not in vae_tensors)
    if missing:
        raise ValueError(f"the checkpoint lacks {len(missing)} key(s) this config needs: {', '.join(missing[:20])}")
    model = build_converted_model(model_config, converted)

    output_path = Path(output)
    output_path.mkdir(parents=True, exist_ok=True)
    _save_folder(model, output_path, BASE_MODELS.get(model_config.variant or ""))
    write_licence(output_path, checkpoint_dir)
    return {"mapped": len(converted), "dropped": {**dropped, **dropped_vae}, "missing": missing}


# ----- the reverse direction (building the original from a modalzoo model) ----------------------
_ORIGINAL = "flextok.model."
# modalzoo key prefix -> original key prefix (tensor names below them are the same)
_REVERSE_PREFIXES = [
    ("vae.", "vae.vae."),
    ("encoder.patch_embed.", "encoder.module_dict.enc_patch_emb.patch_proj."),
    ("encoder.blocks.", "encoder.module_dict.enc_transformer.blocks."),
    ("encoder.to_latents.", "encoder.module_dict.enc_to_latents.proj."),
    ("decoder.from_latents.", "decoder.module_dict.dec_from_latents.proj."),
    ("decoder.patch_embed.", "decoder.module_dict.dec_noise_patch_emb.patch_proj."),
    ("decoder.time_fc1.", "decoder.module_dict.dec_time_embedder.mlp.0."),
    ("decoder.time_fc2.", "decoder.module_dict.dec_time_embedder.mlp.2."),
    ("decoder.blocks.", "decoder.module_dict.dec_transformer.blocks."),
    ("decoder.head_adaln.", "decoder.module_dict.dec_to_patches.adaLN_modulation.1."),
    ("decoder.head.", "decoder.module_dict.dec_to_patches.proj."),
]
_REVERSE_NAMES = {
    "encoder.registers": "encoder.module_dict.enc_register_module.registers",
    "decoder.mask_token": "decoder.module_dict.dec_nested_dropout.dropout_mask_token",
    "decoder.null_condition": "decoder.module_dict.dec_latent_dropout.nullcond",
}


def _node(target: str, **kwargs) -> dict:
    return {"_target_": _ORIGINAL + target, **kwargs}


def _op(name: str) -> dict:
    return {"_target_": _ORIGINAL + "utils.dict_ops." + name, "_partial_": True}


def to_original_config(config: FlexTokConfig, *, materialized_masks: bool = False, vae_hf_hub_path: str | None = None) -> dict:
    """The original's hydra config (as a dict) of a model with `config`: the inverse of
    `convert_config` (module names as in the reconstruction of tests/fixtures/flextok).
    `materialized_masks` makes the packers return dense masks (the original's SDPA path)."""
    c = config
    levels, grid, registers = len(c.fsq_levels), c.grid_size, c.num_registers
    enc, dec = c.encoder_hidden_size, c.decoder_hidden_size
    blocks = {"head_dim": c.head_dim, "mlp_ratio": c.mlp_ratio, "qkv_bias": c.qkv_bias, "proj_bias": c.proj_bias,
              "mlp_bias": c.mlp_bias}
    patch = [c.patch_size, c.patch_size]

    def packer(keys, prefix, mode, **extra):
        return _node("preprocessors.flex_seq_packing.BlockWiseSequencePacker", input_list_read_keys=keys,
                     packed_seq_write_key=f"{prefix}_packed_seq", block_mask_write_key=f"{prefix}_block_mask",
                     inner_packed_shapes_write_key=f"{prefix}_ps_inner", outer_packed_shapes_write_key=f"{prefix}_ps_outer",
                     mask_mode=mode, pad_to_multiple=128, return_materialized_mask=materialized_masks, **extra)

    encoder = {
        "enc_channels_to_last": _node("utils.dict_ops.PerSampleOp", read_key="vae_latents", write_key="enc_vae_latents_bhwc",
                                      per_sample_op=_op("channels_first_to_last")),
        "enc_patch_emb": _node("preprocessors.patching.PatchEmbedder", input_tensor_list_read_key="enc_vae_latents_bhwc",
                               patches_list_write_key="enc_patches", n_patches_write_key="enc_n_patches",
                               channels_in=c.vae_latent_channels, dim=enc, patch_sizes=patch, flatten_patches=False),
        "enc_posemb_module": _node("utils.posembs.PositionalEmbeddingAdder", read_key="enc_patches", write_key="enc_patches",
                                   dim=enc, max_sizes=[grid, grid], posemb_type="sincos", posemb_scaling="absolute"),
        "enc_register_module": _node("preprocessors.registers.Registers1D", input_tensor_list_read_key="enc_patches",
                                     register_sizes_read_write_key="register_sizes", registers_write_key="enc_registers",
                                     dim=enc, n_min=registers, n_max=registers, ordering_mode="nested"),
        "enc_seq_packer": packer(["enc_patches", "enc_registers"], "enc", "causal_last"),
        "enc_transformer": _node("trunks.transformers.FlexTransformer", input_seq_read_key="enc_packed_seq",
                                 output_seq_write_key="enc_packed_seq", dim=enc, depth=c.encoder_num_layers,
                                 block_mask_read_key="enc_block_mask", **blocks),
        "enc_unpacker": _node("postprocessors.seq_unpacking.SequenceUnpacker", packed_seq_read_key="enc_packed_seq",
                              inner_seq_write_keys=["enc_patches", "enc_registers"], inner_packed_shapes_read_key="enc_ps_inner",
                              outer_packed_shapes_read_key="enc_ps_outer"),
        "enc_to_latents": _node("postprocessors.heads.LinearHead", read_key="enc_registers", write_key="enc_registers",
                                dim=enc, dim_out=levels, use_mup_readout=False, proj_bias=c.encoder_head_bias),
    }
    decoder = {
        "dec_from_latents": _node("preprocessors.linear.LinearLayer", read_key="fsq_quants", write_key="dec_quants",
                                  dim_in=levels, dim=dec, proj_bias=c.decoder_input_bias),
    }
    if c.decoder_register_positions == "learned":
        decoder["dec_registers_posemb_module"] = _node(
            "utils.posembs.PositionalEmbeddingAdder", read_key="dec_quants", write_key="dec_quants", dim=dec,
            max_sizes=[registers], posemb_type="learnable_sum", posemb_scaling="absolute")
    decoder["dec_nested_dropout"] = _node(
        "preprocessors.token_dropout.MaskedNestedDropout", read_write_key="dec_quants", dim=dec,
        eval_keep_k_read_key="eval_keep_k", size_sampling_mode=c.nested_dropout_mode)
    null = {"read_write_key": "dec_quants", "eval_drop_flag_read_key": "eval_dropout_mask",
            "dropout_prob": c.condition_dropout_prob}
    if c.null_condition == "learned":
        decoder["dec_latent_dropout"] = _node("preprocessors.nullcond.LearnedNullCond", dim=dec,
                                              replace_with_single_token=c.null_condition_single_token, **null)
    else:
        decoder["dec_latent_dropout"] = _node("preprocessors.nullcond.ZeroNullCond", **null)
    order = ["dec_patches", "dec_quants"] if c.decoder_sequence_order == "patches_first" else ["dec_quants", "dec_patches"]
    segments = c.decoder_adaln_segments == 2
    decoder.update({
        "dec_noise_channels_to_last": _node("utils.dict_ops.PerSampleOp", read_key="vae_latents_noised",
                                            write_key="dec_noised_bhwc", per_sample_op=_op("channels_first_to_last")),
        "dec_noise_patch_emb": _node("preprocessors.patching.PatchEmbedder", input_tensor_list_read_key="dec_noised_bhwc",
                                     patches_list_write_key="dec_patches", n_patches_write_key="dec_n_patches",
                                     channels_in=c.vae_latent_channels, dim=dec, patch_sizes=patch, flatten_patches=False),
        "dec_patches_posemb_module": _node("utils.posembs.PositionalEmbeddingAdder", read_key="dec_patches",
                                           write_key="dec_patches", dim=dec, max_sizes=[grid, grid], posemb_type="sincos",
                                           posemb_scaling="absolute"),
        "dec_seq_packer": packer(order, "dec", "full", emb_packing_fn_write_key="dec_adaLN_packing_fn", per_subseq_embs=segments),
        "dec_time_embedder": _node("preprocessors.time_embedding.TimestepEmbedder", timesteps_read_key="timesteps",
                                   time_embedding_write_key="dec_temb", dim=dec,
                                   frequency_embedding_size=c.timestep_frequency_size, max_timestep=c.max_timestep),
        "dec_transformer": _node("trunks.transformers.FlexTransformer", input_seq_read_key="dec_packed_seq",
                                 output_seq_write_key="dec_packed_seq", dim=dec, depth=c.decoder_num_layers,
                                 block_mask_read_key="dec_block_mask", adaLN_emb_read_key="dec_temb",
                                 adaLN_packing_fn_read_key="dec_adaLN_packing_fn", adaLN_expansion=c.decoder_adaln_segments,
                                 **blocks),
        "dec_unpacker": _node("postprocessors.seq_unpacking.SequenceUnpacker", packed_seq_read_key="dec_packed_seq",
                              inner_seq_write_keys=order, inner_packed_shapes_read_key="dec_ps_inner",
                              outer_packed_shapes_read_key="dec_ps_outer"),
        "dec_to_patches": _node("postprocessors.heads.ToPatchesLinearHead", read_key="dec_patches",
                                write_key="vae_latents_reconst_bhwc", dim=dec, channels_out=c.vae_latent_channels,
                                patch_sizes=patch, use_mup_readout=False, proj_bias=c.decoder_head_bias,
                                adaLN_emb_read_key="dec_temb" if c.decoder_head_adaln else None),
        "dec_channels_to_first": _node("utils.dict_ops.PerSampleOp", read_key="vae_latents_reconst_bhwc",
                                       write_key="vae_latents_reconst", per_sample_op=_op("channels_last_to_first")),
    })
    wrapper = "utils.wrappers.SequentialModuleDictWrapper"
    return {
        "_target_": "flextok.flextok_wrapper.FlexTok",
        "vae": {"_target_": "flextok.vae_wrapper.StableDiffusionVAE", "images_read_key": "rgb",
                "vae_latents_read_key": "vae_latents_reconst", "vae_latents_write_key": "vae_latents",
                "images_reconst_write_key": "rgb_reconst", "vae_kl_loss_write_key": "vae_kl_loss",
                "latent_channels": c.vae_latent_channels, "scaling_factor": c.vae_scaling_factor,
                "hf_hub_path": vae_hf_hub_path, "sample_posterior": c.vae_sample_posterior, "frozen": True},
        "encoder": _node(wrapper, module_dict=encoder),
        "decoder": _node(wrapper, module_dict=decoder),
        "regularizer": {"_target_": "flextok.regularizers.quantize_fsq.FSQ", "latents_read_key": "enc_registers",
                        "quants_write_key": "fsq_quants", "tokens_write_key": "tokens", "levels": list(c.fsq_levels)},
        "flow_matching_noise_module": {"_target_": "flextok.flow_matching.noise_modules.MinRFNoiseModule",
                                       "clean_images_read_key": "vae_latents", "noised_images_write_key": "vae_latents_noised",
                                       "timesteps_write_key": "timesteps", "sigmas_write_key": "sigmas",
                                       "ln": c.flow_timestep_sampling == "logit_normal", "mode_scale": c.flow_mode_scale},
        "pipeline": {"_target_": "flextok.flow_matching.pipelines.MinRFPipeline", "_partial_": True,
                     "latents_read_key": "fsq_quants", "timesteps_read_key": "timesteps",
                     "noised_images_read_key": "vae_latents_noised", "reconst_write_key": "vae_latents_reconst",
                     "out_channels": c.vae_latent_channels},
    }


def to_original_state_dict(state_dict: Mapping[str, torch.Tensor], config: FlexTokConfig) -> dict[str, torch.Tensor]:
    """A modalzoo state dict in the original's key layout for `to_original_config(config)` (the
    inverse of `convert_state_dict`, with the sin-cos tables the original stores)."""
    from modalzoo.layers.adaln_transformer import sincos_2d_positions

    original = {}
    for key, tensor in state_dict.items():
        if key in _REVERSE_NAMES:
            original[_REVERSE_NAMES[key]] = tensor
        elif key == "decoder.register_positions":
            original["decoder.module_dict.dec_registers_posemb_module.posembs"] = tensor.transpose(0, 1)[None, None].contiguous()
        else:
            for ours, theirs in _REVERSE_PREFIXES:
                if key.startswith(ours):
                    name = key[len(ours):]
                    if ours.endswith("blocks.") and ".adaln_modulation." in name:
                        name = name.replace(".adaln_modulation.", ".adaLN_modulation.1.")
                    original[theirs + name] = tensor
                    break
            else:
                raise ValueError(f"{key} has no place in the original layout")
    grid = config.grid_size
    for part, module, width in (("encoder", "enc_posemb_module", config.encoder_hidden_size),
                                ("decoder", "dec_patches_posemb_module", config.decoder_hidden_size)):
        table = sincos_2d_positions(grid, width).transpose(0, 1).reshape(1, width, grid, grid)
        original[f"{part}.module_dict.{module}.posembs"] = table
    return original


__all__ = [
    "LICENSE_NOTICE",
    "config_kwargs",
    "convert_checkpoint",
    "convert_config",
    "convert_state_dict",
    "load_original_checkpoint",
    "map_key",
    "map_state_dict",
    "parse_metadata",
    "read_safetensors",
    "read_vae_folder",
    "to_original_config",
    "to_original_state_dict",
]
