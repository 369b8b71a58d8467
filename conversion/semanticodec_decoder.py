"""Key map from a SemantiCodec `decoder.ckpt` (the original `LatentDiffusion` state dict) to
`modalzoo.models.semanticodec.decoder_semanticodec.SemantiCodecDecoder`.

* `model.diffusion_model.*` (openaimodel `UNetModel`, `extra_sa_layer=True`) -> `unet.*`
  (diffusers `AudioLDM2UNet2DConditionModel`): `input_blocks` / `middle_block` / `output_blocks`
  are cut into levels from the checkpoint itself (a level ends at a `Downsample` `op` on the way
  down, at an `Upsample` `conv` on the way up); the two `SpatialTransformer`s of an attention site
  become attentions `2j` (self) and `2j+1` (cross), whose inner names already agree.
* `first_stage_model.{encoder,decoder,quant_conv,post_quant_conv}.*` (LDM `AutoencoderKL`) ->
  `vae.*` (diffusers `AutoencoderKL`); the 1x1-conv attention projections become linears.
* `first_stage_model.vocoder.*` (HiFi-GAN `Generator_old`, weight norm removed) -> `vocoder.*`
  (`SpeechT5HifiGan`; `ups` is `upsampler`).
* `alphas_cumprod`, `scale_factor` are kept; the other schedule buffers are derived from them
  (`betas`, `sqrt_*`, `posterior_*`, ...), `logvar` is a training-only constant and `model_ema.*`
  is an EMA copy inference never uses: those are dropped and reported.
"""

from __future__ import annotations

import re

import torch

__all__ = ["decoder_key_map", "is_conv_as_linear", "map_decoder_state_dict"]

_DERIVED = {
    "betas",
    "alphas_cumprod_prev",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
    "logvar",
}

_UNET_RESBLOCK = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_VAE_RESBLOCK = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "nin_shortcut": "conv_shortcut"}
_VAE_ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def _is_transformer(rest: str) -> bool:
    return rest.split(".")[0] in {"norm", "proj_in", "proj_out", "transformer_blocks"}


def _unet_layout(keys: list[str]) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]], int]:
    """(input block -> (level, resnet or -1 for the downsampler), output block -> (up level,
    resnet), blocks per up level) read off the checkpoint's own keys."""
    prefix = "model.diffusion_model."
    inputs = sorted({int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"input_blocks\.(\d+)\.", k))})
    outputs = sorted({int(m.group(1)) for k in keys if (m := re.match(re.escape(prefix) + r"output_blocks\.(\d+)\.", k))})
    downsamplers = {n for n in inputs if f"{prefix}input_blocks.{n}.0.op.weight" in keys}
    down, level, j = {}, 0, 0
    for n in inputs[1:]:
        if n in downsamplers:
            down[n] = (level, -1)
            level, j = level + 1, 0
        else:
            down[n] = (level, j)
            j += 1
    levels = level + 1
    if not outputs or len(outputs) % levels:
        raise ValueError(f"output_blocks ({len(outputs)}) do not split into {levels} levels: not a SemantiCodec UNet")
    per_level = len(outputs) // levels
    up = {n: (i // per_level, i % per_level) for i, n in enumerate(outputs)}
    return down, up, per_level


def _map_unet(rest: str, down, up) -> str:
    if m := re.fullmatch(r"time_embed\.(0|2)\.(weight|bias)", rest):
        return f"time_embedding.linear_{1 if m.group(1) == '0' else 2}.{m.group(2)}"
    if m := re.fullmatch(r"input_blocks\.0\.0\.(weight|bias)", rest):
        return f"conv_in.{m.group(1)}"
    if m := re.fullmatch(r"out\.(0|2)\.(weight|bias)", rest):
        return f"{'conv_norm_out' if m.group(1) == '0' else 'conv_out'}.{m.group(2)}"
    if m := re.fullmatch(r"input_blocks\.(\d+)\.(\d+)\.(.+)", rest):
        n, sub, inner = int(m.group(1)), int(m.group(2)), m.group(3)
        if n not in down:
            raise KeyError(rest)
        level, j = down[n]
        block = f"down_blocks.{level}"
        if j < 0:
            if sub == 0 and inner.startswith("op."):
                return f"{block}.downsamplers.0.conv.{inner[3:]}"
            raise KeyError(rest)
        return _map_site(block, j, sub, inner, rest)
    if m := re.fullmatch(r"middle_block\.(\d+)\.(.+)", rest):
        sub, inner = int(m.group(1)), m.group(2)
        if _is_transformer(inner):
            return f"mid_block.attentions.{sub - 1}.{inner}"
        return _map_resblock(f"mid_block.resnets.{0 if sub == 0 else 1}", inner, rest)
    if m := re.fullmatch(r"output_blocks\.(\d+)\.(\d+)\.(.+)", rest):
        n, sub, inner = int(m.group(1)), int(m.group(2)), m.group(3)
        if n not in up:
            raise KeyError(rest)
        level, j = up[n]
        block = f"up_blocks.{level}"
        if sub > 0 and re.fullmatch(r"conv\.(weight|bias)", inner):
            return f"{block}.upsamplers.0.{inner}"
        return _map_site(block, j, sub, inner, rest)
    raise KeyError(rest)


def _map_site(block: str, j: int, sub: int, inner: str, rest: str) -> str:
    if sub == 0:
        return _map_resblock(f"{block}.resnets.{j}", inner, rest)
    if _is_transformer(inner) and sub in (1, 2):
        return f"{block}.attentions.{2 * j + sub - 1}.{inner}"
    raise KeyError(rest)


def _map_resblock(target: str, inner: str, rest: str) -> str:
    for original, ours in _UNET_RESBLOCK.items():
        if inner.startswith(original + "."):
            return f"{target}.{ours}{inner[len(original):]}"
    raise KeyError(rest)


def _map_vae(rest: str, decoder_levels: int) -> str:
    if re.fullmatch(r"(post_)?quant_conv\.(weight|bias)", rest):
        return rest
    if m := re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.(weight|bias)", rest):
        name = "conv_norm_out" if m.group(2) == "norm_out" else m.group(2)
        return f"{m.group(1)}.{name}.{m.group(3)}"
    if m := re.fullmatch(r"(encoder|decoder)\.mid\.(block_1|block_2|attn_1)\.(\w+)\.(weight|bias)", rest):
        part, module, layer, kind = m.groups()
        if module == "attn_1":
            return f"{part}.mid_block.attentions.0.{_VAE_ATTENTION[layer]}.{kind}"
        return f"{part}.mid_block.resnets.{0 if module == 'block_1' else 1}.{_VAE_RESBLOCK[layer]}.{kind}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", rest):
        return f"encoder.down_blocks.{m.group(1)}.resnets.{m.group(2)}.{_VAE_RESBLOCK[m.group(3)]}.{m.group(4)}"
    if m := re.fullmatch(r"encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)", rest):
        return f"encoder.down_blocks.{m.group(1)}.downsamplers.0.conv.{m.group(2)}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.block\.(\d+)\.(\w+)\.(weight|bias)", rest):
        level = decoder_levels - 1 - int(m.group(1))  # LDM counts up-levels from the finest
        return f"decoder.up_blocks.{level}.resnets.{m.group(2)}.{_VAE_RESBLOCK[m.group(3)]}.{m.group(4)}"
    if m := re.fullmatch(r"decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)", rest):
        return f"decoder.up_blocks.{decoder_levels - 1 - int(m.group(1))}.upsamplers.0.conv.{m.group(2)}"
    raise KeyError(rest)


def _map_vocoder(rest: str) -> str:
    if re.fullmatch(r"(conv_pre|conv_post)\.(weight|bias)", rest) or re.fullmatch(r"resblocks\.\d+\.convs[12]\.\d+\.(weight|bias)", rest):
        return rest
    if m := re.fullmatch(r"ups\.(\d+)\.(weight|bias)", rest):
        return f"upsampler.{m.group(1)}.{m.group(2)}"
    raise KeyError(rest)


def decoder_key_map(original_keys) -> tuple[dict[str, str], list[str]]:
    """({original key: our key}, dropped original keys) for a decoder checkpoint's key list.
    Raises ValueError naming every key it cannot place."""
    keys = list(original_keys)
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ValueError("not a SemantiCodec decoder checkpoint: no `model.diffusion_model.*` keys (is this encoder.ckpt?)")
    down, up, _ = _unet_layout(keys)
    decoder_levels = len({int(m.group(1)) for k in keys if (m := re.match(r"first_stage_model\.decoder\.up\.(\d+)\.", k))})
    names, dropped, unknown = {}, [], []
    for key in keys:
        try:
            if key.startswith("model_ema.") or key in _DERIVED:
                dropped.append(key)
            elif key in ("alphas_cumprod", "scale_factor"):
                names[key] = key
            elif key.startswith("model.diffusion_model."):
                names[key] = "unet." + _map_unet(key[len("model.diffusion_model.") :], down, up)
            elif key.startswith("first_stage_model.vocoder."):
                names[key] = "vocoder." + _map_vocoder(key[len("first_stage_model.vocoder.") :])
            elif key.startswith("first_stage_model."):
                names[key] = "vae." + _map_vae(key[len("first_stage_model.") :], decoder_levels)
            else:
                raise KeyError(key)
        except KeyError:
            unknown.append(key)
    if unknown:
        shown = ", ".join(unknown[:8]) + (f" ... ({len(unknown)} in all)" if len(unknown) > 8 else "")
        raise ValueError(f"decoder checkpoint keys with no place in SemantiCodecDecoder: {shown}")
    return names, dropped


def is_conv_as_linear(our_key: str) -> bool:
    """The VAE attention projections: 1x1 convolutions in the original, linears here."""
    return re.search(r"^vae\..*attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$", our_key) is not None


def map_decoder_state_dict(original_state: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(our state dict, dropped original keys). Raises ValueError naming every key it cannot place."""
    names, dropped = decoder_key_map(original_state)
    mapped = {}
    for key, new in names.items():
        value = original_state[key]
        if is_conv_as_linear(new):
            value = value.reshape(value.shape[0], value.shape[1])
        mapped[new] = value
    if "vocoder.conv_pre.weight" in mapped:
        # SpeechT5HifiGan's input-normalisation buffers; unused (normalize_before=False), identity values.
        mel_bins = mapped["vocoder.conv_pre.weight"].shape[1]
        mapped["vocoder.mean"], mapped["vocoder.scale"] = torch.zeros(mel_bins), torch.ones(mel_bins)
    return mapped, dropped
