"""Original X-Codec checkpoints (`.pth` + the repo's yaml) -> modalzoo X-Codec folders, which load
both as `XcodecTokenizer` and as transformers' `XcodecModel`.

    modalzoo convert xcodec --checkpoint xcodec_speech_hubert_librispeech.pth \
        --config config_hubert.yaml --output DIR

The key mapping is transformers' (`models/xcodec/convert_xcodec_weights_to_hf.py`, whose
output for every released layout is recorded in `tests/fixtures/xcodec/keys/` and checked by
the tests): that script is not shipped in the transformers wheel, so it cannot be imported;
this module reproduces its tables and its post-processing (weight norm folded into `weight`,
as its `remove_weight_norm`) without its GPU requirement. The teacher's architecture comes from
the yaml's `semantic_techer` without a download; its weights are in the `.pth`.

Accepted inputs: the released plain state dicts (which may hold `io.BytesIO` entries; they are
dropped, as transformers' `safe_load` drops them) and the original trainer's checkpoints
(`{"codec_model": ..., "optimizer_g": ..., "mfd": ...}`; the optimiser, scheduler and
discriminator states are dropped). `--config` is the original yaml, or a transformers / modalzoo
`config.json`; without it (or `--variant`) the release layout is inferred from the tensors.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import torch
import yaml

from modalzoo.models.xcodec import RELEASES, XcodecFeatureExtractor, XcodecTokenizer, XcodecTokenizerConfig
from modalzoo.models.xcodec.configuration_xcodec import SEMANTIC_TEACHERS
from modalzoo.registry import create_config

from .checkpoint_io import check_fits_model, load_checkpoint, model_shapes, state_dict_of

__all__ = ["convert_checkpoint", "convert_config", "convert_state_dict", "infer_config", "map_key"]

# DAC widths that SoundStream.__init__ hard-codes (`dac2.Encoder(64, ...)`, `dac2.Decoder(D, 1024, ...)`).
ENCODER_WIDTH = 64
DECODER_WIDTH = 1024
RELEASE_BANDWIDTHS = [0.5, 1.0, 1.5, 2.0, 4.0]

TRAINER_ENTRIES = {
    "optimizer_g": "generator optimiser state (training only)",
    "optimizer_d": "discriminator optimiser state (training only)",
    "lr_scheduler_g": "generator LR schedule (training only)",
    "lr_scheduler_d": "discriminator LR schedule (training only)",
    "epoch": "trainer position (training only)",
    "steps": "trainer position (training only)",
    "mfd": "multi-frequency discriminator (training only)",
    "mpd": "multi-period discriminator (training only)",
    "msd": "multi-scale discriminator (training only)",
}


# ----- config ------------------------------------------------------------------------------------
def _generator_section(original: dict) -> dict:
    if "generator" in original:
        original = original["generator"]
    return original.get("config", original)


def convert_config(original: dict) -> XcodecTokenizerConfig:
    """An original yaml (as a dict; `generator.config` or that section itself) -> config."""
    generator = _generator_section(original)
    teacher = generator.get("semantic_techer", "hubert_base_general")  # SoundStream's default
    if teacher not in SEMANTIC_TEACHERS:
        raise ValueError(f"unknown semantic_techer {teacher!r}; the releases use {sorted(SEMANTIC_TEACHERS)}")
    ratios = [int(r) for r in generator.get("ratios", (8, 5, 4, 2))]
    sample_rate = int(generator.get("sample_rate", 16000))
    config = XcodecTokenizerConfig(
        target_bandwidths=[float(b) for b in generator.get("target_bandwidths", (1, 1.5, 2, 4, 6))],
        sample_rate=sample_rate,
        codebook_size=int(generator.get("bins", 1024)),
        acoustic_model_config={
            "encoder_hidden_size": ENCODER_WIDTH,
            "decoder_hidden_size": DECODER_WIDTH,
            "downsampling_ratios": ratios,
            "upsampling_ratios": ratios,
            "sampling_rate": sample_rate,
            "hidden_size": int(generator.get("D", 128)),
        },
        semantic_model_config=dict(SEMANTIC_TEACHERS[teacher]),
    )
    # SoundStream counts its quantizers as if every codebook had 10 bits.
    original_depth = int(1000 * config.target_bandwidths[-1] // (-(-sample_rate // config.hop_length) * 10))
    if original_depth != config.num_quantizers:
        raise ValueError(
            f"bins={config.codebook_size}: the original builds {original_depth} quantizers (it assumes 10-bit "
            f"codebooks) where transformers' XcodecConfig derives {config.num_quantizers}; only 1024-entry "
            "codebooks convert"
        )
    return config


def _read_config_file(path: str | Path) -> XcodecTokenizerConfig:
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        for name in ("model_type", "transformers_version", "architectures"):
            data.pop(name, None)
        return XcodecTokenizerConfig(**data)
    return convert_config(yaml.safe_load(text))


def infer_config(state_dict: dict[str, torch.Tensor]) -> XcodecTokenizerConfig:
    """The release layout read from an original state dict: teacher kind, D, codebook size and
    depth. Only the released architecture (base-size teacher, 64/1024-wide DAC) is inferred;
    other layouts need `config`."""
    def tensor(key: str) -> torch.Tensor:
        if key not in state_dict:
            raise ValueError(f"not an X-Codec checkpoint: {key} is missing")
        return state_dict[key]

    depth = len({m.group(1) for k in state_dict if (m := re.match(r"quantizer\.vq\.layers\.(\d+)\.", k))})
    embed = tensor("quantizer.vq.layers.0._codebook.embed")
    is_wavlm = any("rel_attn_embed" in k for k in state_dict)
    teacher = "wavlm_base_plus" if is_wavlm else "hubert_base"
    bandwidths = [b for b in RELEASE_BANDWIDTHS if b <= depth * 0.5]
    if embed.shape[0] != 1024 or not bandwidths or bandwidths[-1] != depth * 0.5:
        raise ValueError(f"cannot infer target_bandwidths for {depth} x {embed.shape[0]} codes; pass the original yaml as config")
    return convert_config(
        {
            "D": int(tensor("fc_post2.weight").shape[0]),
            "bins": int(embed.shape[0]),
            "target_bandwidths": bandwidths,
            "semantic_techer": teacher,
            "ratios": [8, 5, 4, 2],
            "sample_rate": 16000,
        }
    )


# ----- state dict --------------------------------------------------------------------------------
_UNIT = ("snake1", "conv1", "snake2", "conv2")  # DAC ResidualUnit.block order


def map_key(key: str, num_blocks: int = 4) -> str | None:
    """Original key -> transformers / modalzoo key (weight norm halves keep their `weight_g` /
    `weight_v` suffix; `convert_state_dict` folds them). None for keys outside the model."""
    if key.startswith("encoder."):
        rest = key[len("encoder.") :]
        if m := re.match(r"block\.(\d+)\.block\.([0-2])\.block\.([0-3])\.(.+)$", rest):
            return f"acoustic_encoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) + 1}.{_UNIT[int(m[3])]}.{m[4]}"
        if m := re.match(r"block\.(\d+)\.block\.([34])\.(.+)$", rest):
            return f"acoustic_encoder.block.{int(m[1]) - 1}.{'snake1' if m[2] == '3' else 'conv1'}.{m[3]}"
        if m := re.match(r"block\.(\d+)\.(.+)$", rest):
            name = {0: "conv1", num_blocks + 1: "snake1", num_blocks + 2: "conv2"}.get(int(m[1]))
            return f"acoustic_encoder.{name}.{m[2]}" if name else None
        return None
    if key.startswith("decoder_2."):
        rest = key[len("decoder_2.") :]
        if m := re.match(r"model\.(\d+)\.block\.([2-4])\.block\.([0-3])\.(.+)$", rest):
            return f"acoustic_decoder.block.{int(m[1]) - 1}.res_unit{int(m[2]) - 1}.{_UNIT[int(m[3])]}.{m[4]}"
        if m := re.match(r"model\.(\d+)\.block\.([01])\.(.+)$", rest):
            return f"acoustic_decoder.block.{int(m[1]) - 1}.{'snake1' if m[2] == '0' else 'conv_t1'}.{m[3]}"
        if m := re.match(r"model\.(\d+)\.(.+)$", rest):
            name = {0: "conv1", num_blocks + 1: "snake1", num_blocks + 2: "conv2"}.get(int(m[1]))
            return f"acoustic_decoder.{name}.{m[2]}" if name else None
        return None
    if key.startswith(("encoder_semantic.", "decoder_semantic.")):
        # the original's Conv1d wrappers hold their conv as `.conv`
        return re.sub(r"(^|\.)(conv[12]?)\.conv\.", r"\1\2.", key)
    if key.startswith("semantic_model."):
        # teachers saved with torch's old weight_norm (transformers < 4.3x) name its halves g / v
        return key.replace(".weight_g", ".parametrizations.weight.original0").replace(
            ".weight_v", ".parametrizations.weight.original1"
        )
    for old, new in (("fc_prior.", "fc."), ("fc_post1.", "fc1."), ("fc_post2.", "fc2.")):
        if key.startswith(old):
            return new + key[len(old) :]
    if m := re.match(r"quantizer\.vq\.layers\.(\d+)\._codebook\.(inited|cluster_size|embed|embed_avg)$", key):
        return f"quantizer.quantizers.{m[1]}.codebook.{m[2]}"
    return None


def convert_state_dict(state_dict: dict[str, torch.Tensor], config: XcodecTokenizerConfig) -> dict[str, torch.Tensor]:
    """Original `SoundStream` keys -> `XcodecTokenizer` / `XcodecModel` keys, weight norm folded
    (`weight = g * v / ||v||`, over every axis but 0, as torch's `weight_norm(dim=0)`). Raises on
    unmapped keys, on shapes that do not fit `config`, and on model keys left without a value."""
    num_blocks = len(config.acoustic_model_config.downsampling_ratios)
    mapped: dict[str, torch.Tensor] = {}
    halves: dict[str, dict[str, torch.Tensor]] = {}
    unmapped = []
    for key, value in state_dict.items():
        new_key = map_key(key, num_blocks)
        if new_key is None:
            unmapped.append(key)
        elif new_key.startswith(("acoustic_encoder.", "acoustic_decoder.")) and new_key.endswith(("weight_g", "weight_v")):
            halves.setdefault(new_key[: -len("_g")], {})[new_key[-1]] = value
        else:
            mapped[new_key] = value
    if unmapped:
        raise ValueError(f"{len(unmapped)} checkpoint keys are not mapped: " + ", ".join(sorted(unmapped)[:20]))
    for key, pair in halves.items():
        if set(pair) != {"g", "v"}:
            raise ValueError(f"{key}: weight norm needs both weight_g and weight_v, found only weight_{''.join(pair)}")
        mapped[key] = torch._weight_norm(pair["v"], pair["g"], 0)

    check_fits_model(mapped, model_shapes(XcodecTokenizer, config), require_all=True, limit=30)
    return mapped


# ----- files -------------------------------------------------------------------------------------
def _split_checkpoint(checkpoint: Any) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """-> (model state dict, {dropped entry: reason})."""
    dropped: dict[str, str] = {}
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("codec_model"), dict):
        for key in checkpoint:
            if key != "codec_model":
                dropped[key] = TRAINER_ENTRIES.get(key, "trainer state (training only)")
        checkpoint = checkpoint["codec_model"]
    if isinstance(checkpoint, dict):
        for key, value in list(checkpoint.items()):
            if isinstance(value, io.BytesIO):
                dropped[key] = "io.BytesIO entry, not a tensor (transformers' safe_load drops it too)"
        checkpoint = {k: v for k, v in checkpoint.items() if not isinstance(v, io.BytesIO)}
    return state_dict_of(checkpoint), dropped


def _variant_from_filename(path: Path) -> str | None:
    return next((name for name, release in RELEASES.items() if release[2] == path.name), None)


def convert_checkpoint(
    checkpoint: str,
    output: str,
    variant: str | None = None,
    config: str | None = None,
    trust_pickle: bool = False,
) -> dict[str, Any]:
    """Converts an original `.pth` into a folder (config.json, model.safetensors,
    preprocessor_config.json) that `XcodecTokenizer` and `XcodecModel` both load. `config` is the
    original yaml or a config.json, `variant` a registered xcodec variant name.
    Returns {"mapped": n, "dropped": {entry: reason}, "missing": []}."""
    checkpoint_path = Path(checkpoint)
    # The releases pickle a few io.BytesIO objects next to the tensors: data, not code.
    with torch.serialization.safe_globals([io.BytesIO]):
        loaded = load_checkpoint(checkpoint_path, trust_pickle=trust_pickle)
    state_dict, dropped = _split_checkpoint(loaded)

    if config is not None:
        model_config = _read_config_file(config)
    elif variant is not None:
        model_config = create_config(variant)
        if model_config.model_type != XcodecTokenizerConfig.model_type:
            raise ValueError(f"{variant!r} is not an xcodec variant")
    else:
        model_config = infer_config(state_dict)
    model_config.variant = variant or _variant_from_filename(checkpoint_path)

    mapped = convert_state_dict(state_dict, model_config)
    model = XcodecTokenizer(model_config)
    model.load_state_dict(mapped, strict=True)

    output_path = Path(output)
    output_path.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(output_path)
    XcodecFeatureExtractor.from_model_config(model_config).save_pretrained(output_path)
    return {"mapped": len(state_dict), "dropped": dropped, "missing": []}
