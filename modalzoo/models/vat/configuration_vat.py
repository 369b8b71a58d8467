"""VAT configuration (arXiv 2412.02202; no code or weights were released, so every size below is a
free parameter; the paper fixes only the design).

Encoder: `num_points` surface points (xyz + normal, xyz Fourier-embedded with `fourier_bands`
octaves) are concatenated with `num_latent_tokens` learned latent tokens and run through one
Transformer; the latent outputs become a Gaussian (mu, sigma) with `latent_dim` channels.
Quantizer: multi-scale residual quantization over the 1-D token axis, token counts `scales`
(increasing, the last equal to `num_latent_tokens`), one shared codebook of `codebook_size`
vectors of `latent_dim` channels. Codes are one `[B, 1, sum(scales)]` sequence, coarse to fine.
Decoder: the dequantised tokens plus 3 x `triplane_low_res`^2 learned triplane tokens through a
Transformer, a CNN upsampler to `triplane_res`^2 planes with `triplane_channels` features, and an
MLP occupancy head on the summed bilinear plane features at a query point.
"""

from __future__ import annotations

from ...modeling_utils import ModalTokenizerConfig


class VATConfig(ModalTokenizerConfig):
    """Defaults are `vat-base`, a plausible paper-scale layout (the authors' exact sizes are not
    public): 256 latent tokens in 11 scales (583 codes), 8192 codes of 64 channels, 3x256^2 planes.

    Attributes:
        num_points: surface points the processor samples per shape.
        fourier_bands: octaves of the sin/cos embedding of xyz (frequencies 2^k * pi, k < bands).
        encoder_* / decoder_*: Transformer width, depth and heads (MLP = `mlp_ratio` x width).
        num_latent_tokens: N, the length of the 1-D latent sequence.
        latent_dim: channels of mu / sigma and of the codebook vectors.
        scales: tokens per scale, increasing, ending at `num_latent_tokens`.
        codebook_size: entries of the one codebook shared by every scale.
        kl_weight / commitment_weight / codebook_weight: the weights `forward` applies to the KL
            term (to N(0, I)), the commitment term and the codebook term; the recipe's
            `loss_weights` multiply these again (1.0 there keeps them).
        quant_resi: VAR's Phi refinement: an upsampled scale becomes (1 - r) h + r conv1d(h).
        dead_code_threshold: codes whose running usage per batch falls below this are re-seeded
            from current residuals in training (0 turns it off).
        quantize_start_step: training forwards run without quantization (the decoder reads the
            Gaussian sample) until this many optimisation steps have been counted; the paper's
            first phase. The codebook still fits the (detached) latents meanwhile.
        triplane_low_res / triplane_res: plane side out of the Transformer / after the CNN
            (a power-of-two ratio); triplane_channels: features per plane at `triplane_res`.
        triplane_patch_size: each triplane token writes a patch of this side (pixel shuffle), so
            the Transformer runs 3 x (triplane_low_res / patch)^2 tokens; 1: a token per texel.
        upsampler_channels: width of the CNN upsampler.
        mlp_hidden_size / mlp_layers: the occupancy head.
        query_fourier_bands: when > 0 the head also reads the query's Fourier-embedded xyz next to
            the three plane features (as Convolutional Occupancy Networks' decoder does); 0: plane
            features only.
        grid_resolution: default occupancy grid side that `decode` returns.
        num_near_queries / num_uniform_queries: training queries per shape the processor samples
            near the surface and uniformly in the cube.
        near_surface_sigmas: standard deviations of the Gaussian offsets of the near-surface
            queries from surface samples (one drawn per query).
    """

    model_type = "vat"

    num_points: int = 8192
    fourier_bands: int = 8
    encoder_hidden_size: int = 512
    encoder_num_layers: int = 8
    encoder_num_heads: int = 8
    num_latent_tokens: int = 256
    latent_dim: int = 64
    scales: list[int] | tuple[int, ...] = (1, 2, 4, 8, 16, 24, 32, 48, 64, 128, 256)
    codebook_size: int = 8192
    kl_weight: float = 1e-3
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    quant_resi: float = 0.5
    dead_code_threshold: float = 0.01
    quantize_start_step: int = 200_000
    decoder_hidden_size: int = 512
    decoder_num_layers: int = 8
    decoder_num_heads: int = 8
    triplane_low_res: int = 32
    triplane_res: int = 256
    triplane_channels: int = 32
    triplane_patch_size: int = 1
    upsampler_channels: int = 128
    mlp_hidden_size: int = 128
    mlp_layers: int = 4
    query_fourier_bands: int = 0
    mlp_ratio: float = 4.0
    grid_resolution: int = 128
    num_near_queries: int = 4096
    num_uniform_queries: int = 4096
    near_surface_sigmas: tuple[float, ...] = (0.005, 0.02)

    def __post_init__(self, **kwargs):
        self.scales = [int(s) for s in self.scales]
        self.near_surface_sigmas = [float(s) for s in self.near_surface_sigmas]
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        for prefix in ("encoder", "decoder"):
            width, heads = getattr(self, f"{prefix}_hidden_size"), getattr(self, f"{prefix}_num_heads")
            if width % heads:
                raise ValueError(f"{prefix}_hidden_size {width} must be divisible by {prefix}_num_heads {heads}")
        if not self.scales or any(b <= a for a, b in zip(self.scales, self.scales[1:])) or self.scales[0] < 1:
            raise ValueError(f"scales must be positive and strictly increasing, got {self.scales}")
        if self.scales[-1] != self.num_latent_tokens:
            raise ValueError(f"the last scale ({self.scales[-1]}) must equal num_latent_tokens ({self.num_latent_tokens})")
        ratio = self.triplane_res // self.triplane_low_res
        if self.triplane_res % self.triplane_low_res or ratio & (ratio - 1):
            raise ValueError(
                f"triplane_res ({self.triplane_res}) must be a power-of-two multiple of triplane_low_res ({self.triplane_low_res})"
            )
        if self.triplane_patch_size < 1 or self.triplane_low_res % self.triplane_patch_size:
            raise ValueError(
                f"triplane_low_res ({self.triplane_low_res}) must be a multiple of triplane_patch_size ({self.triplane_patch_size})"
            )
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {self.codebook_size}")
        if not self.near_surface_sigmas or min(self.near_surface_sigmas) <= 0:
            raise ValueError(f"near_surface_sigmas must be positive, got {self.near_surface_sigmas}")
        if self.mlp_layers < 1 or self.num_points < 1 or self.fourier_bands < 0:
            raise ValueError("mlp_layers and num_points must be >= 1 and fourier_bands >= 0")

    @property
    def scale_boundaries(self) -> list[int]:
        """Code positions where each scale ends: codes[..., :scale_boundaries[s-1]] are the
        first s scales."""
        boundaries, total = [], 0
        for count in self.scales:
            total += count
            boundaries.append(total)
        return boundaries

    @property
    def codebook_sizes(self) -> list[int]:
        return [self.codebook_size]

    @property
    def max_tokens(self) -> int:
        return sum(self.scales)
