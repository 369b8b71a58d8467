"""FlexTok configuration: plain fields for the frozen VAE, the register encoder, the FSQ and the
rectified-flow decoder (the original builds the same model from a hydra `_target_` graph; the
converter reads that graph into these fields).

Released layouts (apple/ml-flextok, EPFL-VILAB/flextok_*): a 16-channel f8 SDXL-layout VAE,
2x2 latent patches, 256 registers, FSQ levels [8, 8, 8, 5, 5, 5] (64,000 codes), width 64 x depth
with 64-dim heads: d12-d12 (768 / 768), d18-d18 (1152 / 1152), d18-d28 (1152 / 1792).
"""

from __future__ import annotations

import math

from ...modeling_utils import ModalTokenizerConfig

NULL_CONDITIONS = ("learned", "zero")
REGISTER_POSITIONS = ("learned", "none")
SEQUENCE_ORDERS = ("patches_first", "registers_first")


class FlexTokConfig(ModalTokenizerConfig):
    """Defaults are FlexTok d18-d28 (`flextok-d18-d28-in1k`).

    Attributes:
        image_size: square input side in pixels.
        vae_*: the diffusers `AutoencoderKL` (DownEncoderBlock2D / UpDecoderBlock2D per entry of
            `vae_block_out_channels`, so the VAE downsamples by 2 ** (len - 1)).
            `vae_scaling_factor` multiplies the latents after encoding (and divides them before
            decoding); `vae_sample_posterior` encodes a sample of the posterior (as the original)
            rather than its mean.
        patch_size: side of the square latent patches both transformers read.
        num_registers: register tokens, the most codes per image.
        fsq_levels: FSQ levels; the codebook has prod(levels) entries.
        encoder_* / decoder_*: transformer width and depth; heads = width / head_dim.
        head_dim, mlp_ratio, qkv_bias, proj_bias, mlp_bias, qk_norm, norm_eps: block options
            shared by both transformers (SwiGLU MLP of width 2/3 x mlp_ratio x width, softmax
            scale 8 / head_dim).
        encoder_head_bias / decoder_input_bias / decoder_head_bias / patch_embed_bias: biases of
            the small projections (to FSQ, from FSQ, to patches, patch embeddings).
        decoder_register_positions: "learned" (a learned position per register, added after the
            FSQ projection) or "none".
        null_condition: the unconditional input for guidance, "learned" (one learned vector) or
            "zero"; `null_condition_single_token` replaces the registers by one such token
            instead of filling all of them.
        decoder_adaln_segments: 2 gives image patches and registers separate adaLN modulation, 1
            shares it.
        decoder_sequence_order: order of the decoder's sequence ("patches_first" or
            "registers_first"; with 2 segments the first modulation goes to the first segment).
        decoder_head_adaln: the patch head is adaLN-modulated (shift and scale) by the time
            embedding.
        timestep_frequency_size / max_timestep: the sinusoidal time embedding (timesteps in
            [0, max_timestep]; frequencies scaled by 1000 / max_timestep, max period 256).
        sampling_num_steps / sampling_guidance_scale / sampling_norm_guidance: what `decode` uses
            when not told otherwise (the original README's 25 steps, guidance 7.5, APG on).
        nested_dropout_mode / condition_dropout_prob / flow_timestep_sampling /
            flow_mode_scale: training only (`forward`): how many registers to keep per image
            ("uniform" 1..R or "pow2"), how often to drop the condition, and how to sample flow
            times ("logit_normal", or "uniform" with the SD3 mode scale).
    """

    model_type = "flextok"

    image_size: int = 256
    vae_latent_channels: int = 16
    vae_block_out_channels: list[int] | tuple[int, ...] = (128, 256, 512, 512)
    vae_layers_per_block: int = 2
    vae_norm_num_groups: int = 32
    vae_scaling_factor: float = 1.0
    vae_sample_posterior: bool = True
    patch_size: int = 2
    num_registers: int = 256
    fsq_levels: list[int] | tuple[int, ...] = (8, 8, 8, 5, 5, 5)
    encoder_hidden_size: int = 1152
    encoder_num_layers: int = 18
    decoder_hidden_size: int = 1792
    decoder_num_layers: int = 28
    head_dim: int = 64
    mlp_ratio: float = 4.0
    qkv_bias: bool = False
    proj_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = True
    norm_eps: float = 1e-5
    patch_embed_bias: bool = True
    encoder_head_bias: bool = True
    decoder_input_bias: bool = True
    decoder_head_bias: bool = True
    decoder_register_positions: str = "learned"
    null_condition: str = "learned"
    null_condition_single_token: bool = False
    decoder_adaln_segments: int = 2
    decoder_sequence_order: str = "patches_first"
    decoder_head_adaln: bool = True
    timestep_frequency_size: int = 256
    max_timestep: float = 1.0
    sampling_num_steps: int = 25
    sampling_guidance_scale: float = 7.5
    sampling_norm_guidance: bool = True
    nested_dropout_mode: str = "uniform"
    condition_dropout_prob: float = 0.1
    flow_timestep_sampling: str = "logit_normal"
    flow_mode_scale: float = 0.0

    def __post_init__(self, **kwargs):
        self.vae_block_out_channels = [int(c) for c in self.vae_block_out_channels]
        self.fsq_levels = [int(level) for level in self.fsq_levels]
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        if self.image_size % self.vae_downsample_factor:
            raise ValueError(f"image_size {self.image_size} must be a multiple of the VAE factor {self.vae_downsample_factor}")
        if self.latent_size % self.patch_size:
            raise ValueError(f"the VAE latent side {self.latent_size} must be a multiple of patch_size {self.patch_size}")
        for prefix in ("encoder", "decoder"):
            width = getattr(self, f"{prefix}_hidden_size")
            if width % self.head_dim:
                raise ValueError(f"{prefix}_hidden_size {width} must be a multiple of head_dim {self.head_dim}")
            if width % 4:
                raise ValueError(f"{prefix}_hidden_size {width} must be divisible by 4 (2-D sin-cos positions)")
        if self.num_registers < 1:
            raise ValueError(f"num_registers must be >= 1, got {self.num_registers}")
        if any(level < 3 for level in self.fsq_levels):
            raise ValueError(f"FSQ levels must be >= 3, got {self.fsq_levels}")
        for name, value, allowed in (
            ("decoder_register_positions", self.decoder_register_positions, REGISTER_POSITIONS),
            ("null_condition", self.null_condition, NULL_CONDITIONS),
            ("decoder_sequence_order", self.decoder_sequence_order, SEQUENCE_ORDERS),
            ("nested_dropout_mode", self.nested_dropout_mode, ("uniform", "pow2")),
            ("flow_timestep_sampling", self.flow_timestep_sampling, ("logit_normal", "uniform")),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        if self.null_condition_single_token and self.null_condition != "learned":
            raise ValueError("null_condition_single_token needs the learned null condition (the original's ZeroNullCond has no such option)")
        if self.decoder_adaln_segments not in (1, 2):
            raise ValueError(f"decoder_adaln_segments must be 1 or 2, got {self.decoder_adaln_segments}")
        for group in self.vae_block_out_channels:
            if group % self.vae_norm_num_groups:
                raise ValueError(f"VAE width {group} is not divisible by vae_norm_num_groups {self.vae_norm_num_groups}")

    # ----- derived sizes ---------------------------------------------------------------------------
    @property
    def vae_downsample_factor(self) -> int:
        return 2 ** (len(self.vae_block_out_channels) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the VAE latent grid (32 for 256 px with an f8 VAE)."""
        return self.image_size // self.vae_downsample_factor

    @property
    def grid_size(self) -> int:
        """Side of the patch grid the transformers see."""
        return self.latent_size // self.patch_size

    @property
    def codebook_size(self) -> int:
        return math.prod(self.fsq_levels)

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def max_tokens(self) -> int:
        return self.num_registers
