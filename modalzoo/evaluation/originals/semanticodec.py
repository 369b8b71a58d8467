"""`modalzoo bench --compare-original PATH` for SemantiCodec (haoheliu/SemantiCodec-inference):
the original `AudioMAEConditionQuantResEncoder` and `LatentDiffusion` from a checkout, holding
the benchmarked model's weights (the converters' key maps applied backwards, key by key).

The original `SemantiCodec` wrapper downloads its checkpoints in `__init__`, so the plugin makes
a bare instance and sets what `__init__` would; `decode` is then the original's own method (one
item at a time, windows one after the other, two UNet calls per step for guidance). `encode`
runs `load_audio`'s padding and fbank on the tensor instead of a file, then the original encoder.
Needs torch, torchaudio, timm, vector-quantize-pytorch, numpy and huggingface_hub (imported only).
"""

from __future__ import annotations

import copy
import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import OriginalImplementation, checkout_on_path

RELEASED_VOCODER = {
    "upsample_initial_channel": 1024,
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [16, 16, 8, 4, 4],
    "resblock_kernel_sizes": [3, 7, 11],
    "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
}


def check_representable(decoder_config: dict) -> None:
    """The original hard-codes a 192 x 512 position table, 32-group norms and the released HiFi-GAN."""
    problems = []
    if (decoder_config["position_dim"], decoder_config["position_length"]) != (192, 512):
        problems.append("a 192-d x 512 position embedding")
    if decoder_config["unet"]["norm_num_groups"] != 32 or decoder_config["vae"]["norm_num_groups"] != 32:
        problems.append("32-group normalisation")
    if {k: list(map(list, v)) if k == "resblock_dilation_sizes" else list(v) if isinstance(v, (list, tuple)) else v for k, v in decoder_config["vocoder"].items()} != RELEASED_VOCODER:
        problems.append("the released HiFi-GAN")
    if decoder_config["vae"]["mel_bins"] != 64:
        problems.append("64 mel bins")
    if problems:
        raise ValueError("the original decoder hard-codes " + ", ".join(problems) + ": compare a released variant")


def original_model_config(get_config, decoder_config: dict, feature_dim: int) -> dict:
    """`get_config(...)["model"]` with the decoder's sizes (the released ones for released variants)."""
    check_representable(decoder_config)
    config = copy.deepcopy(get_config(100, 8192)[0]["model"])
    params = config["params"]
    unet = decoder_config["unet"]
    params["unet_config"]["params"].update(
        model_channels=unet["model_channels"], channel_mult=list(unet["channel_mult"]), num_res_blocks=unet["num_res_blocks"],
        attention_resolutions=list(unet["attention_resolutions"]), num_head_channels=unet["num_head_channels"],
        transformer_depth=unet["transformer_depth"], context_dim=[feature_dim + 192],
        in_channels=decoder_config["latent_channels"], out_channels=decoder_config["latent_channels"],
    )
    vae = decoder_config["vae"]
    first_stage = params["first_stage_config"]["params"]
    first_stage["embed_dim"] = decoder_config["latent_channels"]
    first_stage["ddconfig"].update(ch=vae["ch"], ch_mult=list(vae["ch_mult"]), num_res_blocks=vae["num_res_blocks"], z_channels=decoder_config["latent_channels"])
    params.update(
        channels=decoder_config["latent_channels"], latent_t_size=decoder_config["latent_time"],
        latent_f_size=vae["mel_bins"] // 2 ** (len(vae["ch_mult"]) - 1), timesteps=decoder_config["schedule"]["timesteps"],
        linear_start=decoder_config["schedule"]["linear_start"], linear_end=decoder_config["schedule"]["linear_end"],
    )
    return config


def original_decoder_state(original: nn.Module, decoder) -> dict[str, torch.Tensor]:
    """The original LatentDiffusion's state dict filled with our decoder's tensors; the keys the
    converter drops (EMA copy, derived schedule buffers, logvar) keep what the original built."""
    from modalzoo.conversion.semanticodec_decoder import decoder_key_map

    ours = decoder.state_dict()
    state = original.state_dict()
    names, _ = decoder_key_map(state)
    for key, our_key in names.items():
        if our_key not in ours or ours[our_key].numel() != state[key].numel():
            raise ValueError(f"the original's {key} has no counterpart of shape {tuple(state[key].shape)} in the model")
        state[key] = ours[our_key].reshape(state[key].shape)
    return state


def original_encoder_state(original: nn.Module, model) -> dict[str, torch.Tensor]:
    from modalzoo.conversion.semanticodec import _map_encoder_key

    ours = model.state_dict()
    state = original.state_dict()
    for key, value in state.items():
        our_key = _map_encoder_key(key)
        if our_key is None:
            continue  # MAE decoder / mask token / fixed position table: the original's own
        if our_key not in ours or ours[our_key].numel() != value.numel():
            raise ValueError(f"the original's {key} has no counterpart of shape {tuple(value.shape)} in the model")
        state[key] = ours[our_key].reshape(value.shape).to(value.dtype)
    return state


def build_original_decoder(checkout: Path, decoder, feature_dim: int) -> nn.Module:
    with checkout_on_path(checkout, "semanticodec"):
        from semanticodec.config import get_config
        from semanticodec.modules.decoder.latent_diffusion.util import instantiate_from_config

        original = instantiate_from_config(original_model_config(get_config, decoder.config, feature_dim))
    original.load_state_dict(original_decoder_state(original, decoder), strict=True)
    return original.eval()


def load_original(checkout: Path, model) -> OriginalImplementation:
    config = model.config
    if config.audiomae_hidden_size != 768 or config.audiomae_num_layers != 12:
        raise ValueError("the original hard-codes AudioMAE ViT-B/16 (768 wide, 12 blocks): compare a released variant")
    device = model.device
    with checkout_on_path(checkout, "semanticodec"):
        from semanticodec.main import MEL_TARGET_LENGTH, SAMPLE_RATE, SEGMENT_DURATION, SemantiCodec
        from semanticodec.modules.encoder.encoder import AudioMAEConditionQuantResEncoder
        from semanticodec.utils import extract_kaldi_fbank_feature

        with tempfile.TemporaryDirectory() as folder:
            centroids = Path(folder) / "centroids.npy"
            np.save(centroids, model.encoder.semantic_quantizer.codebook.detach().float().cpu().numpy())
            encoder = AudioMAEConditionQuantResEncoder(
                centroid_npy_path=str(centroids), feature_dimension=config.feature_dim, lstm_layer=config.lstm_num_layers,
                codebook_size=config.acoustic_codebook_size,
            )
        encoder.load_state_dict(original_encoder_state(encoder, model), strict=True)
        decoder = build_original_decoder(checkout, model.decoder, 2 * config.feature_dim)

    # `SemantiCodec.__init__` without its downloads: the attributes its methods read.
    codec = SemantiCodec.__new__(SemantiCodec)
    nn.Module.__init__(codec)
    codec.token_rate = config.tokens_per_second
    codec.stack_factor_K = 100 / config.tokens_per_second
    codec.ddim_sample_step, codec.cfg_scale, codec.device = 50, 2.0, device
    codec.encoder = encoder.to(device).eval()
    codec.decoder = decoder.to(device).eval()
    codec.decoder.device = device  # LatentDiffusion picks cuda/mps/cpu itself; follow the model
    hop = model.hop_length

    def load_audio(waveform: torch.Tensor) -> tuple[torch.Tensor, float]:
        """`SemantiCodec.load_audio` on a `[1, samples]` tensor instead of a file."""
        duration = waveform.shape[1] / SAMPLE_RATE
        duration = duration + (0.16 - duration % 0.16)
        target_token_len = 8 * duration / 0.16 / codec.stack_factor_K
        segment = int(SAMPLE_RATE * SEGMENT_DURATION)
        waveform = torch.cat([waveform, torch.zeros(1, int(segment - waveform.shape[1] % segment), device=waveform.device)], dim=1)
        target = MEL_TARGET_LENGTH * int(waveform.shape[1] / segment)
        mel = extract_kaldi_fbank_feature(waveform, SAMPLE_RATE, target_length=target)["ta_kaldi_fbank"].unsqueeze(0)
        return mel.squeeze(1), target_token_len

    @torch.inference_mode()
    def encode(input_values: torch.Tensor, padding_mask: torch.Tensor | None = None, input_features=None) -> torch.Tensor:
        # `input_features` (the processor's fbank) is not used: the original computes its own
        codes = []
        for index in range(input_values.shape[0]):
            length = input_values.shape[-1] if padding_mask is None else int(padding_mask[index].sum())
            mel, target_token_len = load_audio(input_values[index, :, :length].float())
            tokens = codec.encoder(mel.to(device))[:, : math.ceil(target_token_len), :]  # SemantiCodec.encode
            codes.append(tokens[0].T)  # [2, frames]: semantic, acoustic
        frames = max(c.shape[-1] for c in codes)
        return torch.stack([torch.nn.functional.pad(c, (0, frames - c.shape[-1])) for c in codes])

    @torch.inference_mode()
    def decode(codes: torch.Tensor, codes_mask: torch.Tensor | None = None, num_steps: int = 50, guidance_scale: float = 2.0, **_) -> torch.Tensor:
        codec.ddim_sample_step, codec.cfg_scale = num_steps, guidance_scale
        values = torch.zeros(codes.shape[0], 1, codes.shape[-1] * hop, device=device)
        for index in range(codes.shape[0]):
            frames = codes.shape[-1] if codes_mask is None else int(codes_mask[index].sum())
            waveform = torch.from_numpy(np.asarray(codec.decode(codes[index, :, :frames].T[None].long())))
            waveform = waveform.reshape(-1)[: frames * hop].to(device=device, dtype=values.dtype)
            values[index, 0, : waveform.shape[0]] = waveform
        return values

    return OriginalImplementation(encode, decode)
