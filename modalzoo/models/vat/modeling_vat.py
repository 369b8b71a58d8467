"""VAT: variational multi-scale tokenizer for 3D shapes ("3D representation in 512-Byte", arXiv
2412.02202). A clean-room implementation from the paper's figures and text: no code or weights
were released, so this is proven by training (see the model card), not by parity.

shape -> surface points (xyz + normal, Fourier features) ++ learned latent tokens -> Transformer
-> latent outputs only -> Gaussian (mu, sigma) -> multi-scale residual quantization on the 1-D
token axis (one codebook) -> codes `[B, 1, sum(scales)]`, coarse to fine.
codes (any prefix of scales) -> dequantised tokens ++ learned triplane tokens -> Transformer ->
low-resolution triplane -> CNN upsampler -> high-resolution triplane -> MLP -> occupancy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init

from ...modeling_utils import ComputedBuffers, DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from .configuration_vat import VATConfig
from .processing_vat import occupancy_grid_to_mesh
from .quantization_vat import MultiScaleResidualQuantizer


class FourierEmbedding(nn.Module, ComputedBuffers):
    """xyz -> [xyz, sin(2^k pi xyz), cos(2^k pi xyz)] for k < bands."""

    def __init__(self, bands: int):
        super().__init__()
        self.bands = bands
        self.register_buffer("frequencies", self._frequencies(), persistent=False)

    def _frequencies(self) -> torch.Tensor:
        return (2.0 ** torch.arange(self.bands, dtype=torch.float32)) * math.pi

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        return {"frequencies": self._frequencies()}

    @property
    def out_features(self) -> int:
        return 3 + 6 * self.bands

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        angles = (xyz[..., None] * self.frequencies).flatten(-2)
        return torch.cat([xyz, angles.sin(), angles.cos()], dim=-1)


def _transformer(width: int, layers: int, heads: int, mlp_ratio: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        width, heads, int(width * mlp_ratio), dropout=0.0, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)


class LogVarianceProjection(nn.Linear):
    """The log-variance head. Its bias starts at `INITIAL_LOG_VARIANCE` (sigma = e^-3): with a
    unit-variance start the sampled latents would be mostly noise and the decoder could only
    learn the average shape for hundreds of steps; the KL term widens sigma as training allows."""

    INITIAL_LOG_VARIANCE = -6.0


class VATEncoder(nn.Module):
    """Point features and learned latent tokens in one Transformer (in-context compression);
    the latent outputs become mu and log-variance."""

    def __init__(self, config: VATConfig):
        super().__init__()
        width = config.encoder_hidden_size
        self.embedding = FourierEmbedding(config.fourier_bands)
        self.point_proj = nn.Linear(self.embedding.out_features + 3, width)
        self.latent_tokens = nn.Parameter(torch.empty(config.num_latent_tokens, width))
        self.transformer = _transformer(width, config.encoder_num_layers, config.encoder_num_heads, config.mlp_ratio)
        self.to_mean = nn.Linear(width, config.latent_dim)
        self.to_log_variance = LogVarianceProjection(width, config.latent_dim)

    def forward(self, points: torch.Tensor, normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.point_proj(torch.cat([self.embedding(points), normals], dim=-1))
        latents = self.latent_tokens.expand(points.shape[0], -1, -1).to(features.dtype)
        hidden = self.transformer(torch.cat([latents, features], dim=1))
        latent_outputs = hidden[:, : latents.shape[1]]
        return self.to_mean(latent_outputs), self.to_log_variance(latent_outputs).clamp(-30.0, 20.0)


class TriplaneUpsampler(nn.Module):
    """x2 stages of (transposed conv, GroupNorm, SiLU, conv, SiLU), then a conv to the plane
    features; the three planes share the weights."""

    def __init__(self, in_channels: int, channels: int, out_channels: int, num_stages: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 3, padding=1), nn.SiLU()]
        for _ in range(num_stages):
            layers += [
                nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
                nn.GroupNorm(math.gcd(8, channels), channels),
                nn.SiLU(),
                nn.Conv2d(channels, channels, 3, padding=1),
                nn.SiLU(),
            ]
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        return self.layers(planes)


class VATDecoder(nn.Module):
    """Dequantised tokens ++ learned triplane tokens -> Transformer -> (a patch per token) low-res
    planes -> CNN -> triplane `[B, 3, C, R, R]` (planes xy, xz, yz); `occupancy_logits` reads it
    at query points."""

    def __init__(self, config: VATConfig):
        super().__init__()
        width = config.decoder_hidden_size
        self.patch = config.triplane_patch_size
        self.token_grid = config.triplane_low_res // self.patch
        self.latent_proj = nn.Linear(config.latent_dim, width)
        self.latent_positions = nn.Parameter(torch.empty(config.num_latent_tokens, width))
        self.triplane_tokens = nn.Parameter(torch.empty(3 * self.token_grid**2, width))
        self.transformer = _transformer(width, config.decoder_num_layers, config.decoder_num_heads, config.mlp_ratio)
        self.to_planes = nn.Linear(width, config.upsampler_channels * self.patch**2)
        stages = int(math.log2(config.triplane_res // config.triplane_low_res))
        self.upsampler = TriplaneUpsampler(config.upsampler_channels, config.upsampler_channels, config.triplane_channels, stages)
        # as in Convolutional Occupancy Networks' decoder, the head also sees the query position
        self.query_embedding = FourierEmbedding(config.query_fourier_bands) if config.query_fourier_bands else None
        layers: list[nn.Module] = []
        features = 3 * config.triplane_channels + (self.query_embedding.out_features if self.query_embedding else 0)
        for _ in range(config.mlp_layers - 1):
            layers += [nn.Linear(features, config.mlp_hidden_size), nn.SiLU()]
            features = config.mlp_hidden_size
        layers.append(nn.Linear(features, 1))
        self.occupancy_head = nn.Sequential(*layers)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        batch = latents.shape[0]
        tokens = self.latent_proj(latents) + self.latent_positions
        planes = self.triplane_tokens.expand(batch, -1, -1).to(tokens.dtype)
        hidden = self.transformer(torch.cat([tokens, planes], dim=1))[:, tokens.shape[1] :]
        grid = self.to_planes(hidden).view(batch * 3, self.token_grid, self.token_grid, -1).permute(0, 3, 1, 2)
        planes = self.upsampler(F.pixel_shuffle(grid, self.patch))
        return planes.view(batch, 3, *planes.shape[1:])

    def occupancy_logits(self, triplane: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Triplane `[B, 3, C, R, R]`, queries `[B, Q, 3]` in [-1, 1]^3 -> logits `[B, Q]`."""
        batch, _, channels, _, _ = triplane.shape
        features = []
        for plane, axes in zip(triplane.unbind(1), ((0, 1), (0, 2), (1, 2))):
            # grid_sample reads (width, height) = (first axis, second axis)
            grid = queries[..., list(axes)].unsqueeze(1).to(plane.dtype)
            sampled = F.grid_sample(plane, grid, mode="bilinear", padding_mode="border", align_corners=False)
            features.append(sampled[:, :, 0].transpose(1, 2))
        if self.query_embedding is not None:
            features.append(self.query_embedding(queries).to(features[0].dtype))
        return self.occupancy_head(torch.cat(features, dim=-1)).squeeze(-1)


class VATTokenizer(ModalTokenizer):
    config_class = VATConfig
    modality = "3d"
    main_input_name = "points"

    def __init__(self, config: VATConfig):
        super().__init__(config)
        self.encoder = VATEncoder(config)
        self.quantizer = MultiScaleResidualQuantizer(
            scales=config.scales,
            codebook_size=config.codebook_size,
            dim=config.latent_dim,
            quant_resi=config.quant_resi,
            dead_code_threshold=config.dead_code_threshold,
        )
        self.decoder = VATDecoder(config)
        # optimisation steps seen by `forward` in training mode: the switch out of the
        # unquantised first phase (persistent, so a resumed or fine-tuned run continues the count)
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))
        self.post_init()

    def _init_family_weights(self, module: nn.Module) -> None:
        if isinstance(module, LogVarianceProjection):
            init.constant_(module.bias, LogVarianceProjection.INITIAL_LOG_VARIANCE)
        elif isinstance(module, VATEncoder):
            init.normal_(module.latent_tokens, mean=0.0, std=0.02)
        elif isinstance(module, VATDecoder):
            init.normal_(module.latent_positions, mean=0.0, std=0.02)
            init.normal_(module.triplane_tokens, mean=0.0, std=0.02)

    @property
    def num_scales(self) -> int:
        return len(self.config.scales)

    # ----- checks ---------------------------------------------------------------------------------
    def _check_points(self, points: torch.Tensor, normals: torch.Tensor | None) -> None:
        if normals is None:
            raise ValueError("VAT encodes xyz together with normals: pass normals [B, P, 3] (the processor computes them)")
        for name, value in (("points", points), ("normals", normals)):
            if not torch.is_tensor(value) or value.ndim != 3 or value.shape[-1] != 3:
                shape = tuple(value.shape) if torch.is_tensor(value) else type(value).__name__
                raise ValueError(f"{name} must be a tensor [batch, num_points, 3], got {shape}")
        if points.shape != normals.shape:
            raise ValueError(f"points {tuple(points.shape)} and normals {tuple(normals.shape)} must have the same shape")

    def _prefix_codes(self, codes: torch.Tensor) -> torch.LongTensor:
        codes = self.check_codes(codes)
        if codes.shape[1] != 1:
            raise ValueError(f"VAT codes are one sequence [batch, 1, positions], got {codes.shape[1]} codebooks")
        return codes[:, 0]

    # ----- the contract ---------------------------------------------------------------------------
    def encode(self, points: torch.Tensor, normals: torch.Tensor | None = None, *, sample: bool = False,
               generator: torch.Generator | None = None) -> EncoderOutput:  # fmt: skip
        """Surface points and normals `[B, P, 3]` in [-1, 1]^3 -> codes `[B, 1, sum(scales)]`
        (scale s occupies positions `scale_boundaries[s-1]:scale_boundaries[s]`); `latents` are
        the Gaussian means `[B, N, latent_dim]`. `sample=True` quantizes a draw from the
        Gaussian (seeded by `generator`) instead of its mean."""
        self._check_points(points, normals)
        mean, log_variance = self.encoder(points, normals)
        latents = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = mean + (0.5 * log_variance).exp() * noise
        _, codes, _, _ = self.quantizer(latents)
        return EncoderOutput(codes=codes.unsqueeze(1), codes_mask=None, latents=mean)

    def decode_triplane(self, codes: torch.Tensor, *, num_scales: int | None = None) -> torch.Tensor:
        """Codes (every scale, or a prefix of whole scales) -> triplane `[B, 3, C, R, R]` decoded
        from the first `num_scales` scales (default: all scales present)."""
        return self.decoder(self.quantizer.dequantize(self._prefix_codes(codes), num_scales))

    def occupancy(self, triplane: torch.Tensor, queries: torch.Tensor, *, chunk_size: int = 65536) -> torch.Tensor:
        """Occupancy probabilities `[B, Q]` at query points `[B, Q, 3]`, in chunks of queries."""
        if queries.ndim != 3 or queries.shape[-1] != 3:
            raise ValueError(f"queries must be [batch, num_queries, 3], got {tuple(queries.shape)}")
        chunks = [self.decoder.occupancy_logits(triplane, part) for part in queries.split(chunk_size, dim=1)]
        return torch.cat(chunks, dim=1).sigmoid()

    @staticmethod
    def grid_points(resolution: int, device=None) -> torch.Tensor:
        """The `resolution`^3 grid on [-1, 1]^3 (index order x, y, z) as points `[R^3, 3]`."""
        axis = torch.linspace(-1.0, 1.0, resolution, device=device)
        return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=-1).view(-1, 3)

    def occupancy_grid(self, triplane: torch.Tensor, resolution: int) -> torch.Tensor:
        if resolution < 2:
            raise ValueError(f"resolution must be >= 2, got {resolution}")
        points = self.grid_points(resolution, triplane.device).expand(triplane.shape[0], -1, -1)
        return self.occupancy(triplane, points).view(-1, resolution, resolution, resolution)

    def decode(self, codes: torch.Tensor, *, codes_mask: torch.Tensor | None = None, num_scales: int | None = None,
               resolution: int | None = None) -> DecoderOutput:  # fmt: skip
        """Codes -> occupancy probabilities on a `resolution`^3 grid over [-1, 1]^3
        (`config.grid_resolution` by default), decoded from the first `num_scales` scales.
        `processor.postprocess` turns them into meshes."""
        if codes_mask is not None and not bool(torch.as_tensor(codes_mask).all()):
            raise ValueError("VAT codes have a fixed length; codes_mask must be None or all True")
        triplane = self.decode_triplane(codes, num_scales=num_scales)
        return DecoderOutput(values=self.occupancy_grid(triplane, resolution or self.config.grid_resolution))

    def extract_mesh(self, codes: torch.Tensor, *, num_scales: int | None = None, resolution: int | None = None,
                     threshold: float = 0.5) -> list:  # fmt: skip
        """Codes -> one trimesh mesh per item (marching cubes at `threshold` on the occupancy grid)."""
        grids = self.decode(codes, num_scales=num_scales, resolution=resolution).values
        return [occupancy_grid_to_mesh(grid, threshold) for grid in grids]

    # ----- training -----------------------------------------------------------------------------------
    @property
    def quantizing(self) -> bool:
        """False during the first (unquantised) training phase."""
        return not self.training or int(self.training_steps) >= self.config.quantize_start_step

    def forward(self, points: torch.Tensor, normals: torch.Tensor, queries: torch.Tensor, occupancy: torch.Tensor,
                near_surface: torch.Tensor | None = None) -> TokenizerOutput:  # fmt: skip
        """Loss terms by name: occupancy BCE on near-surface and on uniform queries (one
        `occupancy` term when `near_surface` is not given), `kl` (to N(0, I), x kl_weight),
        `codebook` and `commitment` (x their weights). In the first phase (`quantize_start_step`)
        the decoder reads the Gaussian sample and only the codebook term trains the codebook
        (on detached latents); `commitment` is then 0."""
        self._check_points(points, normals)
        config = self.config
        quantizing = self.quantizing
        if self.training:
            self.training_steps += 1
        mean, log_variance = self.encoder(points, normals)
        latents = mean + (0.5 * log_variance).exp() * torch.randn_like(mean) if self.training else mean
        if quantizing:
            decoder_input, codes, codebook_term, commitment_term = self.quantizer(latents)
        else:
            _, codes, codebook_term, _ = self.quantizer(latents.detach())
            decoder_input, commitment_term = latents, latents.new_zeros(())
        logits = self.decoder.occupancy_logits(self.decoder(decoder_input), queries)
        bce = F.binary_cross_entropy_with_logits(logits, occupancy.to(logits.dtype), reduction="none")
        if near_surface is None:
            losses = {"occupancy": bce.mean()}
        else:
            near = near_surface.bool()
            losses = {"occupancy_near": bce[near].mean(), "occupancy_uniform": bce[~near].mean()}
        kl = 0.5 * (mean.pow(2) + log_variance.exp() - 1.0 - log_variance).mean()
        losses.update(
            kl=config.kl_weight * kl,
            codebook=config.codebook_weight * codebook_term,
            commitment=config.commitment_weight * commitment_term,
        )
        return TokenizerOutput(loss=sum(losses.values()), losses=losses, codes=codes.unsqueeze(1), values=logits.detach())

    @torch.no_grad()
    def evaluate_reconstruction(self, batch: dict, metrics: list[str] | None = None, *, grid_resolution: int = 32):
        """The trainer's evaluation: codes from the inference path, occupancy at the batch's
        queries from every prefix of scales. Metrics: `iou` (uniform queries, all scales),
        `accuracy` (all queries), `iou_scale_<s>` and `cross_scale_iou_<s>` (prefix decode vs
        the full decode, uniform queries), `codebook_usage`. Returns (metrics, occupancy grids
        `[B, R, R, R]` at `grid_resolution` from all scales, for the sample meshes)."""
        wanted = set(metrics or ("iou", "accuracy", "iou_per_scale", "cross_scale_iou", "codebook_usage"))
        codes = self.encode(batch["points"], batch["normals"]).codes
        target = batch["occupancy"].bool()
        uniform = ~batch["near_surface"].bool() if "near_surface" in batch else torch.ones_like(target)
        predictions, triplane = [], None
        for scales in range(1, self.num_scales + 1):
            triplane = self.decode_triplane(codes, num_scales=scales)
            predictions.append(self.occupancy(triplane, batch["queries"]) > 0.5)

        def iou(a, b):  # per item, on the uniform queries; two empty shapes agree (1.0)
            a, b = a & uniform, b & uniform
            union = (a | b).sum(1).float()
            ratio = (a & b).sum(1).float() / union.clamp_min(1)
            return torch.where(union > 0, ratio, torch.ones_like(ratio)).mean().item()

        results = {}
        if "iou" in wanted:
            results["iou"] = iou(predictions[-1], target)
        if "accuracy" in wanted:
            results["accuracy"] = (predictions[-1] == target).float().mean().item()
        for scales, prediction in enumerate(predictions, start=1):
            if "iou_per_scale" in wanted:
                results[f"iou_scale_{scales}"] = iou(prediction, target)
            if "cross_scale_iou" in wanted:
                results[f"cross_scale_iou_{scales}"] = iou(prediction, predictions[-1])
        if "codebook_usage" in wanted:
            results["codebook_usage"] = codes.unique().numel() / self.config.codebook_size
        return results, self.occupancy_grid(triplane, grid_resolution)
