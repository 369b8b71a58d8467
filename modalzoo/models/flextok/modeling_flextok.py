"""FlexTok (apple/ml-flextok): an image becomes an ordered 1D sequence of 1 to 256 FSQ codes.

Pipeline: a frozen diffusers `AutoencoderKL` turns pixels in [-1, 1] into latents; a register
encoder reads the latent's 2x2 patches (with 2-D sin-cos positions) followed by 256 learned
registers under the "causal-last" mask (patches attend to each other as a prefix, registers see
every patch and only the registers before them), and the registers, projected to 6 channels,
are FSQ-quantized. Because registers are causal, the first k codes describe the image on their
own: `encode(..., num_tokens=k)` returns them.

Decoding is a rectified flow in the VAE latent space: the codes (zero-padded to 256 and with
every register from k on replaced by a learned mask token, the original's nested dropout at
inference) condition an adaLN-zero transformer that predicts the velocity of noisy latent
patches; `num_steps` Euler steps from Gaussian noise (drawn per image from `generator`, exactly
as the original pipeline draws it), optionally with classifier-free guidance or the original's
normalized guidance (APG, https://arxiv.org/abs/2410.02416), then the VAE decodes. Decoding is
stochastic; a seeded generator gives bit-identical output.

Numerics follow the original: float32 parameter-free LayerNorms, QK-norm, softmax scale
8 / head_dim, SwiGLU, FSQ through vector-quantize-pytorch (its bound / round / index formulas
are the original's, so codes are identical), APG projections in float64. Attention runs through
SDPA with an explicit mask (`modalzoo.layers.adaln_transformer`), or FlexAttention on CUDA with
`config._attn_implementation = "flex_attention"`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from diffusers.models import AutoencoderKL
from torch import nn
from transformers import initialization as init

from ...layers.adaln_transformer import (
    FlexMask,
    TransformerBlock,
    XavierLinear,
    ZeroLinear,
    fp32_layer_norm,
    sincos_2d_positions,
)
from ...layers.fast_conv import fold_nearest_upsamplers
from ...modeling_utils import ComputedBuffers, DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from ...quantizers.scalar_quantizer import FiniteScalarQuantizer
from .configuration_flextok import FlexTokConfig

# The original's APG settings (MinRFPipeline: MomentumBuffer(-0.5), eta 0, norm threshold 2.5).
APG_MOMENTUM = -0.5
APG_ETA = 0.0
APG_NORM_THRESHOLD = 2.5
# TimestepEmbedder's maximal period (its default; FlexTok never changes it).
TIMESTEP_MAX_PERIOD = 256


def check_pixel_values(pixel_values: torch.Tensor, image_size: int) -> None:
    if not torch.is_tensor(pixel_values) or not pixel_values.is_floating_point():
        raise ValueError("pixel_values must be a floating-point tensor [batch, 3, height, width] in [-1, 1]")
    if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
        raise ValueError(f"pixel_values must be [batch, 3, height, width], got {tuple(pixel_values.shape)}")
    if tuple(pixel_values.shape[-2:]) != (image_size, image_size):
        raise ValueError(
            f"pixel_values must be {image_size}x{image_size} for this model, got "
            f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]} (use the model's image processor)"
        )


def build_vae(config: FlexTokConfig) -> AutoencoderKL:
    levels = len(config.vae_block_out_channels)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(config.vae_block_out_channels),
        layers_per_block=config.vae_layers_per_block,
        act_fn="silu",
        latent_channels=config.vae_latent_channels,
        norm_num_groups=config.vae_norm_num_groups,
        sample_size=config.image_size,
        scaling_factor=config.vae_scaling_factor,
    )
    fold_nearest_upsamplers(vae.decoder)  # same keys; the upsampling convs cost 16/36 as much
    return vae


def patchify(latents: torch.Tensor, patch_size: int) -> torch.Tensor:
    """`[B, C, H, W]` -> `[B, (H/p)*(W/p), p*p*C]`, each patch vector ordered (row, column,
    channel) as the original's `patchify` on channels-last latents."""
    batch, channels, height, width = latents.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    patches = latents.view(batch, channels, grid_h, patch_size, grid_w, patch_size)
    return patches.permute(0, 2, 4, 3, 5, 1).reshape(batch, grid_h * grid_w, patch_size * patch_size * channels)


def unpatchify(patches: torch.Tensor, patch_size: int, grid_size: int, channels: int) -> torch.Tensor:
    """Inverse of `patchify` for a square grid: `[B, G*G, p*p*C]` -> `[B, C, G*p, G*p]`."""
    batch = patches.shape[0]
    latents = patches.view(batch, grid_size, grid_size, patch_size, patch_size, channels)
    return latents.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, grid_size * patch_size, grid_size * patch_size)


class SinCosPositions(nn.Module, ComputedBuffers):
    """The fixed 2-D sin-cos table of a square patch grid, `[G*G, width]` (non-persistent:
    recomputed from the config, never loaded)."""

    def __init__(self, grid_size: int, width: int):
        super().__init__()
        self.grid_size, self.width = grid_size, width
        self.register_buffer("table", sincos_2d_positions(grid_size, width), persistent=False)

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        return {"table": sincos_2d_positions(self.grid_size, self.width)}

    def forward(self) -> torch.Tensor:
        return self.table


def _blocks(config: FlexTokConfig, width: int, depth: int, adaln_segments: int) -> nn.ModuleList:
    return nn.ModuleList(
        TransformerBlock(
            width,
            width // config.head_dim,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=config.qkv_bias,
            proj_bias=config.proj_bias,
            mlp_bias=config.mlp_bias,
            qk_norm=config.qk_norm,
            scale=8.0 / config.head_dim,
            norm_eps=config.norm_eps,
            adaln_segments=adaln_segments,
        )
        for _ in range(depth)
    )


class FlexTokEncoder(nn.Module):
    """VAE latents `[B, C, h, w]` -> register features `[B, R, len(fsq_levels)]` (before FSQ)."""

    def __init__(self, config: FlexTokConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.patch_size = config.patch_size
        self.norm_eps = config.norm_eps
        patch_dim = config.vae_latent_channels * config.patch_size**2
        self.patch_embed = XavierLinear(patch_dim, width, bias=config.patch_embed_bias)
        self.positions = SinCosPositions(config.grid_size, width)
        self.registers = nn.Parameter(torch.empty(config.num_registers, width))
        self.blocks = _blocks(config, width, config.encoder_num_layers, adaln_segments=0)
        self.to_latents = ZeroLinear(width, len(config.fsq_levels), bias=config.encoder_head_bias)

    def forward(self, latents: torch.Tensor, *, use_flex: bool = False) -> torch.Tensor:
        patches = self.patch_embed(patchify(latents, self.patch_size)) + self.positions().to(latents.dtype)
        batch, num_patches = patches.shape[:2]
        registers = self.registers.to(patches.dtype).expand(batch, -1, -1)
        hidden_states = torch.cat([patches, registers], dim=1)
        # causal-last: patches are a prefix every token sees; registers see the registers before them
        mask = FlexMask(hidden_states.shape[1], prefix_length=num_patches, use_flex=use_flex)
        for block in self.blocks:
            hidden_states = block(hidden_states, mask)
        registers = hidden_states[:, num_patches:]
        return self.to_latents(fp32_layer_norm(registers, self.norm_eps))


class FlexTokDecoder(nn.Module):
    """The rectified-flow transformer: (noisy latents, time, register conditioning) -> velocity."""

    def __init__(self, config: FlexTokConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.config = config
        self.width = width
        self.patch_size = config.patch_size
        self.grid_size = config.grid_size
        self.channels = config.vae_latent_channels
        self.norm_eps = config.norm_eps
        patch_dim = config.vae_latent_channels * config.patch_size**2

        self.from_latents = XavierLinear(len(config.fsq_levels), width, bias=config.decoder_input_bias)
        if config.decoder_register_positions == "learned":
            self.register_positions = nn.Parameter(torch.empty(config.num_registers, width))
        self.mask_token = nn.Parameter(torch.empty(width))
        if config.null_condition == "learned":
            self.null_condition = nn.Parameter(torch.empty(width))
        self.patch_embed = XavierLinear(patch_dim, width, bias=config.patch_embed_bias)
        self.positions = SinCosPositions(config.grid_size, width)
        self.time_fc1 = XavierLinear(config.timestep_frequency_size, width)
        self.time_fc2 = XavierLinear(width, width)
        self.blocks = _blocks(config, width, config.decoder_num_layers, adaln_segments=config.decoder_adaln_segments)
        if config.decoder_head_adaln:
            self.head_adaln = ZeroLinear(width, 2 * width)
        self.head = ZeroLinear(width, patch_dim, bias=config.decoder_head_bias)

    # ----- conditioning ------------------------------------------------------------------------
    def embed_registers(self, quantized: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """FSQ vectors `[B, R, d]` -> register inputs `[B, R, width]`; registers at positions >=
        `keep[b]` become the learned mask token (nested dropout at inference)."""
        registers = self.from_latents(quantized)
        if self.config.decoder_register_positions == "learned":
            registers = registers + self.register_positions[: registers.shape[1]].to(registers.dtype)
        kept = torch.arange(registers.shape[1], device=registers.device)[None, :] < keep.to(registers.device)[:, None]
        return torch.where(kept[..., None], registers, self.mask_token.to(registers.dtype))

    def null_registers(self, batch: int, length: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The unconditional registers of classifier-free guidance."""
        length = 1 if self.config.null_condition_single_token else length
        if self.config.null_condition == "learned":
            return self.null_condition.to(dtype).expand(batch, length, -1)
        return torch.zeros(batch, length, self.width, dtype=dtype, device=device)

    def time_embedding(self, timesteps: torch.Tensor) -> torch.Tensor:
        """`[B]` times in [0, max_timestep] -> `[B, width]` (DiT's sinusoidal embedding + MLP)."""
        if bool((timesteps > self.config.max_timestep).any()):
            raise ValueError(f"timesteps must be <= max_timestep {self.config.max_timestep}")
        half = self.config.timestep_frequency_size // 2
        # same operation order as the original, so the frequencies are bit-identical
        freqs = (1000.0 / self.config.max_timestep) * torch.exp(
            -math.log(TIMESTEP_MAX_PERIOD) * torch.arange(start=0, end=half, dtype=torch.float32) / half
        ).to(device=timesteps.device)
        args = timesteps[:, None].float() * freqs[None]
        embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.config.timestep_frequency_size % 2:
            embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
        embedding = embedding.to(self.time_fc1.weight.dtype)
        return self.time_fc2(F.silu(self.time_fc1(embedding)))

    # ----- velocity ----------------------------------------------------------------------------
    def forward(
        self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, registers: torch.Tensor, *, use_flex: bool = False
    ) -> torch.Tensor:
        patches = self.patch_embed(patchify(noisy_latents, self.patch_size)) + self.positions().to(noisy_latents.dtype)
        registers = registers.to(patches.dtype)
        condition = self.time_embedding(timesteps).to(patches.dtype)
        num_patches = patches.shape[1]
        patches_first = self.config.decoder_sequence_order == "patches_first"
        parts = [patches, registers] if patches_first else [registers, patches]
        hidden_states = torch.cat(parts, dim=1)
        segments = [part.shape[1] for part in parts] if self.config.decoder_adaln_segments == 2 else [hidden_states.shape[1]]
        mask = FlexMask(hidden_states.shape[1], use_flex=use_flex)
        for block in self.blocks:
            hidden_states = block(hidden_states, mask, condition, segments)
        patches = hidden_states[:, :num_patches] if patches_first else hidden_states[:, -num_patches:]
        patches = fp32_layer_norm(patches, self.norm_eps)
        if self.config.decoder_head_adaln:
            shift, scale = self.head_adaln(F.silu(condition))[:, None].chunk(2, dim=-1)
            patches = patches * (1.0 + scale) + shift
        return unpatchify(self.head(patches), self.patch_size, self.grid_size, self.channels)


class MomentumBuffer:
    """Running average of the guidance direction (the original's `MomentumBuffer`)."""

    def __init__(self, momentum: float):
        self.momentum = momentum
        self.running_average: torch.Tensor | float = 0

    def update(self, value: torch.Tensor) -> torch.Tensor:
        self.running_average = value + self.momentum * self.running_average
        return self.running_average


def normalized_guidance(
    conditional: torch.Tensor,
    unconditional: torch.Tensor,
    guidance_scale: float,
    momentum_buffer: MomentumBuffer | None = None,
    *,
    eta: float = APG_ETA,
    norm_threshold: float = APG_NORM_THRESHOLD,
) -> torch.Tensor:
    """Adaptive projected guidance per item of `[B, C, H, W]` predictions: the guidance
    direction (with momentum), its norm clipped to `norm_threshold`, minus its component along
    the conditional prediction (projection in float64), scaled by `guidance_scale - 1`."""
    dims = [-1, -2, -3]
    difference = conditional - unconditional
    if momentum_buffer is not None:
        difference = momentum_buffer.update(difference)
    if norm_threshold > 0:
        norm = difference.norm(p=2, dim=dims, keepdim=True)
        difference = difference * torch.minimum(torch.ones_like(difference), norm_threshold / norm)
    dtype = difference.dtype
    direction = F.normalize(conditional.double(), dim=dims)
    parallel = (difference.double() * direction).sum(dim=dims, keepdim=True) * direction
    orthogonal = difference.double() - parallel
    update = orthogonal.to(dtype) + eta * parallel.to(dtype)
    return conditional + (guidance_scale - 1) * update


class FlexTokTokenizer(ModalTokenizer):
    """FlexTok on the modalzoo contract.

    * `encode(pixel_values, num_tokens=k)` -> codes `[B, 1, k]` (1 <= k <= num_registers), the
      first k of the image's ordered codes. The VAE samples its posterior (as the original):
      pass `generator` for reproducible codes, or `sample_posterior=False` for the mean.
    * `decode(codes, codes_mask=None, num_steps=25, guidance_scale=7.5, norm_guidance=True,
      generator=None)` (defaults from `config.sampling_*`) -> pixels `[B, 3, S, S]` roughly in
      [-1, 1] (not clamped). Items may have different lengths through `codes_mask` (a prefix
      mask `[B, T]`).
    * `forward(pixel_values)` -> the rectified-flow loss with nested dropout, for training.
    """

    config_class = FlexTokConfig
    modality = "image"
    main_input_name = "pixel_values"
    input_modalities = "image"
    supports_variable_length = True
    _supports_flex_attn = True
    _no_split_modules = ["TransformerBlock"]

    def __init__(self, config: FlexTokConfig):
        super().__init__(config)
        self.vae = build_vae(config)
        self.vae.requires_grad_(False)
        self.encoder = FlexTokEncoder(config)
        # vector-quantize-pytorch's FSQ computes the original's bound (tanh with eps 1e-3 and the
        # even-level offset), rounding, normalisation and index basis with the same float32 ops;
        # its index `.round()` only acts on values that are already integers, so codes and
        # quantized vectors are identical (checked against the recorded fixture).
        self.quantizer = FiniteScalarQuantizer(levels=config.fsq_levels)
        self.decoder = FlexTokDecoder(config)
        self.post_init()

    # ----- init --------------------------------------------------------------------------------
    def _init_family_weights(self, module: nn.Module) -> None:
        # the original's init: learned tokens trunc-normal(0.02); linear layers initialise
        # themselves (XavierLinear / ZeroLinear); the VAE keeps diffusers' (PyTorch default) init.
        if isinstance(module, FlexTokEncoder):
            init.trunc_normal_(module.registers, std=0.02)
        elif isinstance(module, FlexTokDecoder):
            for parameter in module.parameters(recurse=False):
                init.trunc_normal_(parameter, std=0.02)

    def train(self, mode: bool = True):
        super().train(mode)
        self.vae.eval()  # frozen, as the original's StableDiffusionVAE(frozen=True)
        return self

    # ----- helpers -----------------------------------------------------------------------------
    @property
    def use_flex_attention(self) -> bool:
        return getattr(self.config, "_attn_implementation", None) == "flex_attention"

    def _check_num_tokens(self, num_tokens: int | None) -> int:
        total = self.config.num_registers
        if num_tokens is None:
            return total
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int):
            raise ValueError(f"num_tokens must be an int, got {num_tokens!r}")
        if not 1 <= num_tokens <= total:
            raise ValueError(f"num_tokens must be in [1, {total}], got {num_tokens}")
        return num_tokens

    @torch.no_grad()
    def vae_encode(
        self, pixel_values: torch.Tensor, *, generator: torch.Generator | None = None, sample_posterior: bool | None = None
    ) -> torch.Tensor:
        """Pixels in [-1, 1] -> scaled VAE latents `[B, C, h, w]` (a posterior sample drawn
        from `generator`, or the global RNG as the original, unless `sample_posterior=False`).
        The VAE is frozen: no gradients flow through it."""
        check_pixel_values(pixel_values, self.config.image_size)
        sample = self.config.vae_sample_posterior if sample_posterior is None else sample_posterior
        posterior = self.vae.encode(pixel_values.to(self.vae.dtype)).latent_dist
        latents = posterior.sample(generator=generator) if sample else posterior.mode()
        return latents * self.config.vae_scaling_factor

    @torch.no_grad()
    def vae_decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents -> pixels (the VAE is frozen: no gradients flow through it)."""
        return self.vae.decode(latents.to(self.vae.dtype) / self.config.vae_scaling_factor).sample

    def _lengths(self, codes: torch.Tensor, codes_mask: torch.Tensor | None) -> torch.Tensor:
        batch, _, length = codes.shape
        if codes_mask is None:
            return torch.full((batch,), length, dtype=torch.long, device=codes.device)
        codes_mask = torch.as_tensor(codes_mask, device=codes.device).bool()
        if tuple(codes_mask.shape) != (batch, length):
            raise ValueError(f"codes_mask must be [batch, positions] = {(batch, length)}, got {tuple(codes_mask.shape)}")
        lengths = codes_mask.sum(-1)
        prefix = torch.arange(length, device=codes.device)[None, :] < lengths[:, None]
        if not torch.equal(prefix, codes_mask):
            raise ValueError("codes_mask must be a prefix mask: FlexTok codes are ordered, an item keeps its first k")
        if bool((lengths < 1).any()):
            raise ValueError("every item needs at least one code (codes_mask has an all-False row)")
        return lengths

    # ----- the contract ------------------------------------------------------------------------
    def encode(
        self,
        pixel_values: torch.Tensor,
        *,
        num_tokens: int | None = None,
        generator: torch.Generator | None = None,
        sample_posterior: bool | None = None,
    ) -> EncoderOutput:
        """Pixels `[B, 3, S, S]` in [-1, 1] -> the first `num_tokens` codes `[B, 1, k]`.

        All registers are computed and the first k returned: registers are causal, so these are
        exactly the first k codes of the full sequence."""
        num_tokens = self._check_num_tokens(num_tokens)
        latents = self.vae_encode(pixel_values, generator=generator, sample_posterior=sample_posterior)
        features = self.encoder(latents, use_flex=self.use_flex_attention)
        codes = self.quantizer(features).codes
        return EncoderOutput(codes=codes[..., :num_tokens].long())

    def initial_noise(self, batch: int, generator: torch.Generator | None = None, *, device=None, dtype=None) -> torch.Tensor:
        """The sampler's starting point: one `[1, C, h, w]` standard-normal draw per image, in
        order, from `generator` (the original pipeline's draws, so a generator seeded the same
        gives the same noise in both)."""
        device = self.device if device is None else device
        size = self.config.latent_size
        draws = [
            torch.randn((1, self.config.vae_latent_channels, size, size), generator=generator, device=device)
            for _ in range(batch)
        ]
        return torch.cat(draws).to(dtype or self.dtype)

    def velocity(
        self, noisy_latents: torch.Tensor, timesteps: torch.Tensor, registers: torch.Tensor
    ) -> torch.Tensor:
        """One decoder evaluation (`registers` from `decoder.embed_registers` / `null_registers`)."""
        return self.decoder(noisy_latents, timesteps, registers, use_flex=self.use_flex_attention)

    @torch.no_grad()
    def decode_latents(
        self,
        codes: torch.Tensor,
        *,
        codes_mask: torch.Tensor | None = None,
        num_steps: int | None = None,
        guidance_scale: float | Callable[[float], float] | None = None,
        norm_guidance: bool | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Codes -> VAE latents `[B, C, h, w]` by `num_steps` Euler steps of the rectified flow
        (the part of `decode` before the VAE)."""
        codes = self.check_codes(codes)
        config = self.config
        num_steps = config.sampling_num_steps if num_steps is None else num_steps
        guidance_scale = config.sampling_guidance_scale if guidance_scale is None else guidance_scale
        norm_guidance = config.sampling_norm_guidance if norm_guidance is None else norm_guidance
        batch, _, length = codes.shape
        total = config.num_registers
        if length > total:
            raise ValueError(f"codes have {length} positions; this model has {total} registers")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        lengths = self._lengths(codes, codes_mask)
        # as the original's detokenize: zero-pad to all registers; padded ones become mask tokens
        padded = F.pad(codes, (0, total - length))
        quantized = self.quantizer.lookup(padded).to(self.dtype)
        conditional = self.decoder.embed_registers(quantized, lengths)
        do_guidance = callable(guidance_scale) or guidance_scale != 1.0
        if do_guidance:
            unconditional = self.decoder.null_registers(batch, total, conditional.dtype, conditional.device)
            # one batched pass when both conditionings have the same length
            stacked = unconditional.shape[1] == conditional.shape[1]
            both = torch.cat([conditional, unconditional]) if stacked else None
            buffers = MomentumBuffer(APG_MOMENTUM) if norm_guidance else None

        if noise is None:
            latents = self.initial_noise(batch, generator)
        else:
            expected = (batch, self.config.vae_latent_channels, self.config.latent_size, self.config.latent_size)
            if tuple(noise.shape) != expected:
                raise ValueError(f"noise must have shape {expected}, got {tuple(noise.shape)}")
            latents = noise.to(device=self.device, dtype=self.dtype)

        step = 1.0 / num_steps
        for index in range(num_steps, 0, -1):
            t = index / num_steps
            timesteps = t * torch.ones(batch, device=latents.device)
            if not do_guidance:
                velocity = self.velocity(latents, timesteps, conditional)
            else:
                if stacked:
                    both_velocity = self.velocity(torch.cat([latents, latents]), timesteps.repeat(2), both)
                    velocity, velocity_uncond = both_velocity.chunk(2)
                else:
                    velocity = self.velocity(latents, timesteps, conditional)
                    velocity_uncond = self.velocity(latents, timesteps, unconditional)
                scale = guidance_scale(t) if callable(guidance_scale) else guidance_scale
                if norm_guidance:
                    velocity = normalized_guidance(velocity, velocity_uncond, scale, buffers)
                else:
                    velocity = velocity_uncond + scale * (velocity - velocity_uncond)
            latents = latents - step * velocity
        return latents

    @torch.no_grad()
    def decode(
        self,
        codes: torch.Tensor,
        *,
        codes_mask: torch.Tensor | None = None,
        num_steps: int | None = None,
        guidance_scale: float | Callable[[float], float] | None = None,
        norm_guidance: bool | None = None,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Codes `[B, 1, k]` (1 <= k <= num_registers) -> pixels `[B, 3, S, S]`.

        Unset sampling options come from the config (`sampling_*`: 25 steps, guidance 7.5 with
        APG, the original README's settings). `guidance_scale` 1.0 disables guidance; otherwise `norm_guidance` picks APG (the
        original README's setting) or plain classifier-free guidance. `guidance_scale` may be a
        function of the flow time t in (0, 1]. `noise` replaces the generator's initial draw."""
        latents = self.decode_latents(
            codes,
            codes_mask=codes_mask,
            num_steps=num_steps,
            guidance_scale=guidance_scale,
            norm_guidance=norm_guidance,
            generator=generator,
            noise=noise,
        )
        return DecoderOutput(values=self.vae_decode(latents))

    def forward(self, pixel_values: torch.Tensor, *, generator: torch.Generator | None = None) -> TokenizerOutput:
        """Rectified-flow training step: random kept length per image (nested dropout), random
        condition dropout, a noisy latent at a random time; the loss is the velocity MSE."""
        config = self.config
        latents = self.vae_encode(pixel_values, generator=generator)
        batch = latents.shape[0]
        quantized = self.quantizer(self.encoder(latents, use_flex=self.use_flex_attention))
        keep = self._sample_keep(batch, latents.device, generator)
        registers = self.decoder.embed_registers(quantized.quantized, keep)
        if config.condition_dropout_prob > 0:
            if config.null_condition_single_token:
                raise NotImplementedError(
                    "training with a single-token null condition needs per-item sequence lengths; set "
                    "condition_dropout_prob=0 or null_condition_single_token=False"
                )
            drop = torch.rand(batch, generator=generator, device=latents.device) < config.condition_dropout_prob
            null = self.decoder.null_registers(batch, registers.shape[1], registers.dtype, registers.device)
            registers = torch.where(drop[:, None, None], null, registers)
        noise = torch.randn(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        sigmas = self._sample_sigmas(batch, latents.device, generator).to(latents.dtype)
        noisy = sigmas[:, None, None, None] * noise + (1.0 - sigmas[:, None, None, None]) * latents
        velocity = self.decoder(noisy, sigmas, registers, use_flex=self.use_flex_attention)
        flow = F.mse_loss(velocity.float(), (noise - latents).float())
        losses = {"flow": flow, "quantizer": quantized.loss}
        return TokenizerOutput(loss=sum(losses.values()), losses=losses, codes=quantized.codes)

    def _sample_keep(self, batch: int, device, generator) -> torch.Tensor:
        total = self.config.num_registers
        if self.config.nested_dropout_mode == "uniform":
            return torch.randint(1, total + 1, (batch,), generator=generator, device=device)
        powers = torch.tensor([2**i for i in range(total.bit_length()) if 2**i <= total], device=device)
        return powers[torch.randint(0, len(powers), (batch,), generator=generator, device=device)]

    def _sample_sigmas(self, batch: int, device, generator) -> torch.Tensor:
        if self.config.flow_timestep_sampling == "logit_normal":
            return torch.sigmoid(torch.randn(batch, generator=generator, device=device))
        sigmas = torch.rand(batch, generator=generator, device=device)
        if self.config.flow_mode_scale:
            sigmas = 1 - sigmas - self.config.flow_mode_scale * (torch.cos(math.pi * sigmas / 2) ** 2 - 1 + sigmas)
        return sigmas
