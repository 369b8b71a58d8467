"""SemantiCodec's latent-diffusion decoder, assembled from diffusers / transformers components.

Split point with the encoder (verified in haoheliu/SemantiCodec-inference `main.py::decode`):
the original turns each token window into features with
`AudioMAEConditionQuantResEncoder.token_to_quantized_feature`, i.e.
`cat([acoustic VQ output, semantic k-means centroid], -1)` (acoustic FIRST), then pads the window
to its full length with -1 and calls `LatentDiffusion.generate_sample`. `features` given to
`SemantiCodecDecoder.generate` are exactly that concatenation, `[B, frames, feature_dim]`;
everything after it is here: the -1 window padding, the 192-d sinusoidal position embedding
concatenated to form the cross-attention context (`ddpm.py::generate_sample`), the zero-feature
unconditional context, DDIM with v-prediction and classifier-free guidance, the VAE, HiFi-GAN,
and the windowed overlap-add of long audio.

Components:
* UNet: diffusers' `AudioLDM2UNet2DConditionModel`. The original `openaimodel.UNetModel` has
  `extra_sa_layer=True`: every attention site holds a self-attention-only `SpatialTransformer`
  (context None, so its "cross" attention attends to itself) followed by a cross-attention one.
  That is exactly AudioLDM2's layout with `cross_attention_dim=[None, context_dim]` per block
  (`double_self_attention` for the first); plain `UNet2DConditionModel` has one transformer per
  site and cannot hold these weights.
* Sampler: diffusers' `DDIMScheduler` ("leading" spacing with offset 1 and alpha_prev of the last
  step = alphas_cumprod[0], as `make_ddim_timesteps`/`make_ddim_sampling_parameters`), with the
  original's float64-derived `alphas_cumprod` buffer.
* First stage: diffusers' `AutoencoderKL` (LDM Encoder/Decoder on the 64-bin mel, z=8) and the
  original's `scale_factor` buffer (`scale_by_std`).
* Vocoder: transformers' `SpeechT5HifiGan`: same layout as the original `Generator_old`
  (HiFi-GAN v1, weight norm removed, leaky slope 0.1 inside, default 0.01 before conv_post).
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.pipelines.audioldm2.modeling_audioldm2 import AudioLDM2UNet2DConditionModel
from torch import nn
from transformers import SpeechT5HifiGan, SpeechT5HifiGanConfig

from ...layers.fast_conv import convs1d_channels_last, fold_nearest_upsamplers

__all__ = ["SemantiCodecDecoder", "released_decoder_config", "tiny_decoder_config"]

_RELEASED_FEATURE_DIM = {100: 1536, 50: 3072, 25: 6144}
VOCODER_MARGIN_FRAMES = 64


def released_decoder_config(token_rate: int) -> dict:
    """The decoder of `semanticodec_tokenrate_{token_rate}` (`config.py::get_config`), shared by
    its four semantic vocabularies. A window is 10.24 s: 512 / K feature frames (K = 100 /
    token_rate) conditioning a 256 x 16 latent, a 1024 x 64 mel and 163840 samples."""
    if token_rate not in _RELEASED_FEATURE_DIM:
        raise ValueError(f"token_rate must be one of 25, 50, 100, got {token_rate!r}")
    return {
        "token_rate": token_rate,
        "sampling_rate": 16000,
        "window_frames": 512 * token_rate // 100,
        "overlap_ratio": 0.0625,
        "pad_value": -1.0,
        "position_dim": 192,
        "position_length": 512,
        "latent_channels": 8,
        "latent_time": 256,
        "unet": {
            "model_channels": 64,
            "channel_mult": [1, 2, 3, 5],
            "num_res_blocks": 2,
            "attention_resolutions": [8, 4, 2],
            "num_head_channels": 32,
            "transformer_depth": 1,
            "norm_num_groups": 32,
        },
        "schedule": {"timesteps": 1000, "linear_start": 0.0015, "linear_end": 0.0195},
        "vae": {"ch": 128, "ch_mult": [1, 2, 4], "num_res_blocks": 2, "mel_bins": 64, "norm_num_groups": 32},
        "vocoder": {
            "upsample_initial_channel": 1024,
            "upsample_rates": [5, 4, 2, 2, 2],
            "upsample_kernel_sizes": [16, 16, 8, 4, 4],
            "resblock_kernel_sizes": [3, 7, 11],
            "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5], [1, 3, 5]],
        },
    }


def tiny_decoder_config(feature_dim: int) -> dict:
    """A ~80k-parameter decoder with the released layout's kinds of block (UNet levels, self +
    cross attention, VAE levels, HiFi-GAN stages) at 50 frames/s like the 100 tokens/s model:
    a window is 16 frames = 0.32 s = 32 mel frames (16 bins) = 5120 samples."""
    if feature_dim <= 0:
        raise ValueError(f"feature_dim must be positive, got {feature_dim!r}")
    return {
        "token_rate": 100,
        "sampling_rate": 16000,
        "window_frames": 16,
        "overlap_ratio": 0.0625,
        "pad_value": -1.0,
        "position_dim": 8,
        "position_length": 16,
        "latent_channels": 4,
        "latent_time": 16,
        "unet": {
            "model_channels": 8,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_resolutions": [],  # attention (self + cross) in the middle block only
            "num_head_channels": 8,
            "transformer_depth": 1,
            "norm_num_groups": 4,
        },
        "schedule": {"timesteps": 1000, "linear_start": 0.0015, "linear_end": 0.0195},
        "vae": {"ch": 4, "ch_mult": [1, 2], "num_res_blocks": 1, "mel_bins": 16, "norm_num_groups": 4},
        "vocoder": {
            "upsample_initial_channel": 32,
            "upsample_rates": [5, 4, 2, 2, 2],
            "upsample_kernel_sizes": [10, 8, 4, 4, 4],
            "resblock_kernel_sizes": [3],
            "resblock_dilation_sizes": [[1, 3]],
        },
    }


def _linear_alphas_cumprod(schedule: dict) -> torch.Tensor:
    # `make_beta_schedule("linear")` + `register_schedule`: float64, cast to float32 at the end.
    betas = torch.linspace(schedule["linear_start"] ** 0.5, schedule["linear_end"] ** 0.5, schedule["timesteps"], dtype=torch.float64, device="cpu") ** 2
    return torch.tensor(np.cumprod(1.0 - betas.numpy(), axis=0), dtype=torch.float32)


def _sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    # `semanticodec.utils.PositionalEncoding`: sin on even, cos on odd channels.
    position = torch.arange(length).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2) * -(math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def build_unet(config: dict, context_dim: int) -> AudioLDM2UNet2DConditionModel:
    unet = config["unet"]
    channels = [unet["model_channels"] * m for m in unet["channel_mult"]]
    attention = [2**level in unet["attention_resolutions"] for level in range(len(channels))]
    heads = [max(1, c // unet["num_head_channels"]) for c in channels]
    return AudioLDM2UNet2DConditionModel(
        in_channels=config["latent_channels"],
        out_channels=config["latent_channels"],
        flip_sin_to_cos=True,
        freq_shift=0,
        down_block_types=tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        block_out_channels=tuple(channels),
        layers_per_block=unet["num_res_blocks"],
        norm_num_groups=unet["norm_num_groups"],
        norm_eps=1e-5,
        cross_attention_dim=[[None, context_dim] for _ in channels],
        transformer_layers_per_block=unet["transformer_depth"],
        attention_head_dim=tuple(heads),  # diffusers' historical name for the number of heads
        use_linear_projection=False,
    )


def build_vae(config: dict) -> AutoencoderKL:
    vae = config["vae"]
    levels = len(vae["ch_mult"])
    model = AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(vae["ch"] * m for m in vae["ch_mult"]),
        layers_per_block=vae["num_res_blocks"],
        latent_channels=config["latent_channels"],
        norm_num_groups=vae["norm_num_groups"],
        sample_size=vae["mel_bins"],
    )
    fold_nearest_upsamplers(model.decoder)  # the mel decoder's 2x upsampling, ~45% fewer FLOPs there
    return model


def build_vocoder(config: dict) -> SpeechT5HifiGan:
    voc = config["vocoder"]
    vocoder = SpeechT5HifiGan(
        SpeechT5HifiGanConfig(
            model_in_dim=config["vae"]["mel_bins"],
            sampling_rate=config["sampling_rate"],
            upsample_initial_channel=voc["upsample_initial_channel"],
            upsample_rates=list(voc["upsample_rates"]),
            upsample_kernel_sizes=list(voc["upsample_kernel_sizes"]),
            resblock_kernel_sizes=list(voc["resblock_kernel_sizes"]),
            resblock_dilation_sizes=[list(d) for d in voc["resblock_dilation_sizes"]],
            leaky_relu_slope=0.1,
            normalize_before=False,
        )
    )
    convs1d_channels_last(vocoder)  # ~25% less time for a 10 s window on one CPU thread
    return vocoder


class CrossAttentionKVCache(AttnProcessor2_0):
    """diffusers' SDPA attention for a cross-attention layer that, while `caching`, projects a
    context to keys/values once and reuses them as long as the same context tensor comes back:
    the conditioning is constant over all DDIM steps, and its projections (512 x 1728-6336 wide
    at all 16 cross-attention sites) are ~25 of a released CFG step's matmul GFLOPs. Outside
    sampling it is plain `AttnProcessor2_0`."""

    def __init__(self):
        super().__init__()
        self.caching = False
        self.clear()

    def clear(self):
        self.source, self.key, self.value = None, None, None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if not self.caching or encoder_hidden_states is None or attention_mask is not None or hidden_states.ndim != 3:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)
        batch, head_dim = hidden_states.shape[0], attn.inner_dim // attn.heads
        if encoder_hidden_states is not self.source:
            context = attn.norm_encoder_hidden_states(encoder_hidden_states) if attn.norm_cross else encoder_hidden_states
            self.key = attn.to_k(context).view(batch, -1, attn.heads, head_dim).transpose(1, 2)
            self.value = attn.to_v(context).view(batch, -1, attn.heads, head_dim).transpose(1, 2)
            self.source = encoder_hidden_states  # held, so identity cannot be reused by another tensor
        query = attn.to_q(hidden_states).view(batch, -1, attn.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(query, self.key, self.value, dropout_p=0.0, is_causal=False)
        out = attn.to_out[1](attn.to_out[0](out.transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)))
        if attn.residual_connection:
            out = out + hidden_states
        return out / attn.rescale_output_factor


class SemantiCodecDecoder(nn.Module):
    """Features `[B, frames, feature_dim]` -> 16 kHz waveform `[B, samples]` (see module docstring)."""

    def __init__(self, decoder_config: dict, feature_dim: int):
        super().__init__()
        self.config = decoder_config
        self.feature_dim = int(feature_dim)
        cfg = decoder_config
        self.context_dim = self.feature_dim + cfg["position_dim"]
        self.unet = build_unet(cfg, self.context_dim)
        self.vae = build_vae(cfg)
        self.vocoder = build_vocoder(cfg)
        self.register_buffer("alphas_cumprod", _linear_alphas_cumprod(cfg["schedule"]))
        self.register_buffer("scale_factor", torch.tensor(1.0))
        self.register_buffer("position_embedding", _sinusoidal_positions(cfg["position_length"], cfg["position_dim"]), persistent=False)

        self.window_frames = int(cfg["window_frames"])
        if self.window_frames > cfg["position_length"]:
            raise ValueError("window_frames exceeds the position embedding length")
        vae_factor = 2 ** (len(cfg["vae"]["ch_mult"]) - 1)
        self.latent_shape = (cfg["latent_channels"], cfg["latent_time"], cfg["vae"]["mel_bins"] // vae_factor)
        hop = math.prod(cfg["vocoder"]["upsample_rates"])
        self.window_samples = cfg["latent_time"] * vae_factor * hop
        if self.window_samples % self.window_frames:
            raise ValueError("a window's samples must be a whole number per feature frame")
        self.samples_per_frame = self.window_samples // self.window_frames
        self.overlap_frames = int(self.window_frames * cfg["overlap_ratio"])
        self.overlap_samples = self.overlap_frames * self.samples_per_frame

        processors = {}
        for name in self.unet.attn_processors:
            module = self.unet.get_submodule(name.removesuffix(".processor"))
            processors[name] = CrossAttentionKVCache() if module.is_cross_attention else AttnProcessor2_0()
        self._kv_caches = [p for p in processors.values() if isinstance(p, CrossAttentionKVCache)]
        self.unet.set_attn_processor(processors)  # (empties `processors`)

    @contextlib.contextmanager
    def cached_context(self):
        """Within: cross-attention keys/values of an unchanged context are computed once."""
        for cache in self._kv_caches:
            cache.caching = True
        try:
            yield
        finally:
            for cache in self._kv_caches:
                cache.caching = False
                cache.clear()

    # -- the sampler -------------------------------------------------------------------------
    def make_scheduler(self) -> DDIMScheduler:
        schedule = self.config["schedule"]
        scheduler = DDIMScheduler(
            num_train_timesteps=schedule["timesteps"],
            beta_start=schedule["linear_start"],
            beta_end=schedule["linear_end"],
            beta_schedule="scaled_linear",
            prediction_type="v_prediction",
            clip_sample=False,
            set_alpha_to_one=False,
            steps_offset=1,
            timestep_spacing="leading",
        )
        # The original's exact (float64-derived) cumulative products, not diffusers' float32 ones.
        alphas = self.alphas_cumprod.detach().float().cpu()
        scheduler.alphas_cumprod = alphas
        scheduler.final_alpha_cumprod = alphas[0]
        return scheduler

    def context(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(conditional, unconditional) cross-attention contexts for full windows `[N, W, D]`."""
        pe = self.position_embedding[: features.shape[1]].to(features.dtype).expand(features.shape[0], -1, -1)
        return torch.cat([features, pe], -1), torch.cat([torch.zeros_like(features), pe], -1)

    def predict(self, latents, timestep, context, guidance_scale):
        """The guided v-prediction (`DDIMSampler.p_sample_ddim`). With guidance, `context` is
        `[uncond; cond]` and the UNet runs once on the doubled batch."""
        t = torch.full((latents.shape[0],), int(timestep), dtype=torch.long, device=latents.device)
        if guidance_scale == 1.0:
            return self.unet(latents, t, encoder_hidden_states=context, return_dict=False)[0]
        out = self.unet(torch.cat([latents, latents]), torch.cat([t, t]), encoder_hidden_states=context, return_dict=False)[0]
        uncond, cond = out.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def sample_latents(self, window_features, *, num_steps, guidance_scale, generator=None, eta=1.0, initial_noise=None):
        """DDIM from noise to the diffusion latent for full windows `[N, W, D]`."""
        n = window_features.shape[0]
        device, dtype = window_features.device, window_features.dtype
        if initial_noise is None:
            latents = torch.randn((n, *self.latent_shape), generator=generator, device=device, dtype=dtype)
        else:
            if tuple(initial_noise.shape) != (n, *self.latent_shape):
                raise ValueError(f"initial_noise must be {(n, *self.latent_shape)}, got {tuple(initial_noise.shape)}")
            latents = initial_noise.to(device, dtype)
        context, uncond_context = self.context(window_features)
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(num_steps)
        if guidance_scale != 1.0:  # one tensor for all steps, so the key/value cache holds
            context = torch.cat([uncond_context, context])
        with self.cached_context():
            for t in scheduler.timesteps:
                v = self.predict(latents, t, context, guidance_scale)
                latents = scheduler.step(v, t, latents, eta=eta, generator=generator).prev_sample
        return latents

    @torch.no_grad()
    def latents_to_mel(self, latents: torch.Tensor) -> torch.Tensor:
        """`decode_first_stage`: latent `[N, C, T', F']` -> mel `[N, T, F]`."""
        # Channels-last: the VAE's convolutions at full mel resolution are faster in it (oneDNN).
        latents = (latents / self.scale_factor).contiguous(memory_format=torch.channels_last)
        return self.vae.decode(latents, return_dict=False)[0].squeeze(1).contiguous()

    @torch.no_grad()
    def latents_to_waveform(self, latents: torch.Tensor) -> torch.Tensor:
        """`decode_first_stage` + `mel_spectrogram_to_waveform`: latent -> mel -> audio."""
        return self.vocoder(self.latents_to_mel(latents))

    # -- windows -----------------------------------------------------------------------------
    def split_windows(self, length: int) -> list[tuple[int, int]]:
        """(start, end) frame spans of `long_token_split_window` for a sequence of `length` frames."""
        spans, start = [], 0
        while start + self.window_frames < length:
            spans.append((start, start + self.window_frames))
            start += self.window_frames - self.overlap_frames
        if length - start > 0:
            spans.append((start, length))
        return spans

    def overlap_add(self, windows: list[torch.Tensor]) -> torch.Tensor:
        """`overlap_add_waveform`: linear cross-fades over `overlap_samples` between windows."""
        n = self.overlap_samples
        out = windows[0]
        if n == 0:
            return torch.cat(windows, -1)
        fade_in = torch.from_numpy(np.linspace(0, 1, n)).to(out.dtype)
        fade_out = torch.from_numpy(np.linspace(1, 0, n)).to(out.dtype)
        for window in windows[1:]:
            mixed = out[..., -n:] * fade_out.to(out.device) + window[..., :n] * fade_in.to(out.device)
            out = torch.cat([out[..., :-n], mixed, window[..., n:]], -1)
        return out

    def vocoder_length(self, mel_frames: int) -> int:
        """Samples HiFi-GAN makes from `mel_frames` (each transposed conv: (L - 1) u - 2p + k)."""
        length = mel_frames
        for u, k in zip(self.config["vocoder"]["upsample_rates"], self.config["vocoder"]["upsample_kernel_sizes"]):
            length = (length - 1) * u - 2 * ((k - u) // 2) + k
        return length

    def vocode_windows(self, mels: list[torch.Tensor], owners: list[int], lengths: list[int], chunk: int) -> list[torch.Tensor]:
        """HiFi-GAN on each window's mel `[T, F]`. The original vocodes every window whole and then
        cuts the joined audio at the item's end; the vocoder is convolutional, so each item's last
        window is vocoded only up to that end plus `VOCODER_MARGIN_FRAMES` (over twice the released
        HiFi-GAN's ~22-frame receptive field): the kept samples are the same, the cut ones are never
        computed (most of a short clip's only window)."""
        full = mels[0].shape[0]
        window_samples = self.vocoder_length(full)
        keep = [full] * len(mels)
        for item, length in enumerate(lengths):
            mine = [i for i, owner in enumerate(owners) if owner == item]
            offset = (len(mine) - 1) * (window_samples - self.overlap_samples)  # where the last window starts
            needed = max(length * self.samples_per_frame - offset, self.overlap_samples + 1)
            frames = math.ceil(needed / math.prod(self.config["vocoder"]["upsample_rates"])) + VOCODER_MARGIN_FRAMES
            keep[mine[-1]] = min(full, frames)
        audio: list[torch.Tensor | None] = [None] * len(mels)
        whole = [i for i in range(len(mels)) if keep[i] == full]
        if mels[0].device.type == "cpu":
            chunk = 1  # measured on CPU: batched HiFi-GAN costs ~15 % more per window than one at a time
        for begin in range(0, len(whole), chunk):
            group = whole[begin : begin + chunk]
            for i, waveform in zip(group, self.vocoder(torch.stack([mels[i] for i in group])).unbind(0)):
                audio[i] = waveform
        for i in range(len(mels)):
            if audio[i] is None:
                audio[i] = self.vocoder(mels[i][None, : keep[i]])[0]
        return audio

    @torch.no_grad()
    def generate(self, features, *, num_steps=50, guidance_scale=2.0, generator=None, features_mask=None, eta=1.0, window_batch_size=None):
        """Decode features `[B, frames, feature_dim]` to `[B, frames * samples_per_frame]` audio.

        Each item is windowed as the original decodes one file (`main.py::decode`); the windows of
        all items are sampled in batches of `window_batch_size`: by default all at once on a GPU
        and one at a time on CPU, where a batch of windows measured 5-10% slower per window (one
        thread). `features_mask` `[B, frames]` (True = valid, a prefix) gives per-item lengths;
        samples past an item's end are zero. With the same `generator` state and window batches,
        the output is bit-identical.
        """
        if features.dim() != 3 or features.shape[-1] != self.feature_dim:
            raise ValueError(f"features must be [batch, frames, {self.feature_dim}], got {tuple(features.shape)}")
        batch, frames, _ = features.shape
        if frames == 0:
            raise ValueError("features must hold at least one frame")
        if features_mask is None:
            lengths = [frames] * batch
        else:
            if tuple(features_mask.shape) != (batch, frames):
                raise ValueError(f"features_mask must be [batch, frames] = {(batch, frames)}, got {tuple(features_mask.shape)}")
            lengths = features_mask.long().sum(-1).tolist()
            if min(lengths) == 0:
                raise ValueError("every item needs at least one valid frame in features_mask")

        windows, owners = [], []
        for item, length in enumerate(lengths):
            for start, end in self.split_windows(length):
                window = features.new_full((self.window_frames, self.feature_dim), self.config["pad_value"])
                window[: end - start] = features[item, start:end]
                windows.append(window)
                owners.append(item)
        stacked = torch.stack(windows)
        chunk = window_batch_size or (1 if features.device.type == "cpu" else len(windows))
        mels = []
        for begin in range(0, len(windows), chunk):
            latents = self.sample_latents(stacked[begin : begin + chunk], num_steps=num_steps, guidance_scale=guidance_scale, generator=generator, eta=eta)
            mels.extend(self.latents_to_mel(latents).unbind(0))
        audio = self.vocode_windows(mels, owners, lengths, chunk)

        out = features.new_zeros(batch, frames * self.samples_per_frame)
        for item, length in enumerate(lengths):
            item_windows = [audio[i] for i, owner in enumerate(owners) if owner == item]
            waveform = self.overlap_add(item_windows)[: length * self.samples_per_frame]
            out[item, : waveform.shape[-1]] = waveform
        return out
