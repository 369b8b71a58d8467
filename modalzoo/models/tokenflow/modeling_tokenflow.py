"""TokenFlow (ByteFlow-AI/TokenFlow): dual-codebook image tokenizer for understanding and generation,
https://arxiv.org/abs/2412.03069.

Two encoders read the image: a semantic tower (the teacher's architecture, built from transformers'
`CLIPVisionModel` / `SiglipVisionModel`, fine-tuned) whose patch features are projected to
`semantic_code_dim` channels, and a VQGAN CNN whose latents are projected to `pixel_code_dim`
channels. Their concatenation is quantized by one shared index over two l2-normalised codebooks,
at several scales (VAR-style residual quantization, `SharedIndexQuantizer`). Decoding splits the
code map again: the VQGAN decoder renders pixels from the pixel half, and a small ViT (BEiT-v2
VQKD layout) reconstructs the teacher's features from the semantic half (training and
understanding use it).

Numerics follow the original where they matter: the position-embedding interpolation formula
(DINO's `scale_factor = (g + 0.1) / sqrt(N)`, not transformers' size-based one), the SigLIP input
scaling, the exact quantizer arithmetic, bicubic resizing of the pixel branch for SigLIP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel
from transformers import initialization as init

from ...layers.taming_vqgan import VQGANDecoder, VQGANEncoder
from ...layers.vit import QKVProjection, Transformer
from ...modeling_utils import DecoderOutput, EncoderOutput, ModalTokenizer, TokenizerOutput
from ...quantizers.shared_index_quantizer import SharedIndexQuantizer
from .configuration_tokenflow import TokenFlowConfig
from .losses_tokenflow import PerceptualLoss, SemanticTeacher, semantic_cosine_loss


@dataclass
class TokenFlowEncoderOutput(EncoderOutput):
    """`EncoderOutput` plus the multi-scale layout of `codes` `[B, 1, T]`: `scales` (sides, coarse
    to fine) and `scale_boundaries` (offset of each scale's first code, then T), so scale k's
    codes are `codes[..., scale_boundaries[k]:scale_boundaries[k + 1]]` (row-major k x k grid).
    `latents` (with `return_semantic=True`): the quantized feature map the understanding model
    (TokenFlow's LLaVA) consumes, `[B, H*W, semantic_code_dim + pixel_code_dim]`."""

    scales: list[int] | None = None
    scale_boundaries: list[int] | None = None


@dataclass
class TokenFlowOutput(TokenizerOutput):
    """`TokenizerOutput` plus `semantic_reconstruction` `[B, H*W, semantic_output_dim]`, which the
    trainer's semantic term compares with a frozen teacher's features."""

    semantic_reconstruction: torch.FloatTensor | None = None


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


def interpolate_position_embedding(patch_positions: torch.Tensor, grid_size: int) -> torch.Tensor:
    """`[N, D]` patch position embeddings of a sqrt(N) x sqrt(N) grid -> `[grid_size**2, D]`.

    The original (CLIP's and BEiT's `interpolate_pos_encoding`, from DINO) passes
    `scale_factor = (g + 0.1) / sqrt(N)` to a bicubic resize, so the sampling positions follow
    that factor rather than the output size; reproduced here for identical features."""
    trained = int(math.sqrt(patch_positions.shape[0]))
    if trained == grid_size:
        return patch_positions
    dim = patch_positions.shape[-1]
    factor = (grid_size + 0.1) / trained
    grid = patch_positions.reshape(1, trained, trained, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=(factor, factor), mode="bicubic")
    if tuple(grid.shape[-2:]) != (grid_size, grid_size):
        raise ValueError(f"cannot interpolate a {trained}x{trained} position grid to {grid_size}x{grid_size}")
    return grid.permute(0, 2, 3, 1).reshape(-1, dim)


class SemanticEncoder(nn.Module):
    """The teacher tower: `[B, 3, S, S]` in [-1, 1] -> patch features `[B, g*g, width]`."""

    def __init__(self, config: TokenFlowConfig):
        super().__init__()
        self.teacher = config.teacher
        self.feature_layer = config.semantic_feature_layer
        if config.teacher == "clip":
            self.tower = CLIPVisionModel(CLIPVisionConfig(**config.semantic_encoder_config))
        else:
            self.tower = SiglipVisionModel(SiglipVisionConfig(**config.semantic_encoder_config))

    def _clip_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        embeddings = self.tower.embeddings
        patches = embeddings.patch_embedding(pixel_values.to(embeddings.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)
        class_token = embeddings.class_embedding.to(patches.dtype) + patches.new_zeros(patches.shape[0], 1, patches.shape[-1])
        tokens = torch.cat([class_token, patches], dim=1)
        positions = embeddings.position_embedding.weight
        grid = int(math.isqrt(patches.shape[1]))
        positions = torch.cat([positions[:1], interpolate_position_embedding(positions[1:], grid)], dim=0)
        return self.tower.pre_layrnorm(tokens + positions.to(tokens.dtype))

    def _siglip_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # the original's ScalingLayerForSigLip: [-1, 1] -> [0, 1] (clamped) -> (x - 0.5) / 0.5
        unit = ((pixel_values.float() + 1.0) * 127.5).clamp(0, 255.0) / 255.0
        scaled = (unit - 0.5) / 0.5
        embeddings = self.tower.embeddings
        patches = embeddings.patch_embedding(scaled.to(embeddings.patch_embedding.weight.dtype))
        patches = patches.flatten(2).transpose(1, 2)
        positions = embeddings.position_embedding.weight
        grid = int(math.isqrt(patches.shape[1]))
        return patches + interpolate_position_embedding(positions, grid).to(patches.dtype)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.teacher == "clip":
            hidden_states = self._clip_embeddings(pixel_values)
        else:
            hidden_states = self._siglip_embeddings(pixel_values)
        layers = self.tower.encoder.layers
        # hidden_states[k] of transformers' output: after k layers (index 0 = embeddings)
        for layer in layers[: len(layers) + 1 + self.feature_layer]:
            hidden_states = layer(hidden_states, None)
        if self.teacher == "clip":
            return self.tower.post_layernorm(hidden_states)[:, 1:]
        return hidden_states


class SemanticDecoder(nn.Module):
    """The BEiT-v2 VQKD ViT decoder: `[B, semantic_code_dim, g, g]` -> `[B, g*g, width]`
    (patch size 1, class token, learned positions interpolated for other grids, pre-LN blocks
    with GELU and LayerNorm eps 1e-6, final `fc_norm` on the patch tokens)."""

    def __init__(self, config: TokenFlowConfig):
        super().__init__()
        width = config.semantic_decoder_hidden_size
        self.patch_embed = nn.Conv2d(config.semantic_code_dim, width, 1)
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.pos_embed = nn.Parameter(torch.empty(1, config.semantic_decoder_grid_size**2 + 1, width))
        self.transformer = Transformer(
            width,
            config.semantic_decoder_num_layers,
            config.semantic_decoder_num_heads,
            mlp_ratio=config.semantic_decoder_mlp_ratio,
            activation="gelu",
            layer_norm_eps=1e-6,
        )
        self.fc_norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, codes_map: torch.Tensor) -> torch.Tensor:
        patches = self.patch_embed(codes_map.to(self.patch_embed.weight.dtype)).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.to(patches.dtype).expand(patches.shape[0], -1, -1), patches], dim=1)
        positions = self.pos_embed[0]
        grid = codes_map.shape[-1]
        positions = torch.cat([positions[:1], interpolate_position_embedding(positions[1:], grid)], dim=0)
        hidden_states = self.transformer(tokens + positions.to(tokens.dtype))
        return self.fc_norm(hidden_states[:, 1:])


def _task_layer(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, in_features), nn.Tanh(), nn.Linear(in_features, out_features))


class TokenFlowTokenizer(ModalTokenizer):
    """TokenFlow on the modalzoo contract.

    * `encode(pixel_values)` -> codes `[B, 1, T]` (all scales, coarse to fine) with `scales` and
      `scale_boundaries`; `return_semantic=True` adds `latents`, the quantized features for
      understanding (`[B, H*W, semantic_code_dim + pixel_code_dim]`).
    * `decode(codes)` -> pixels `[B, 3, S, S]` in about [-1, 1] (not clamped). Codes may stop at
      any scale boundary (the first k scales), as the original's `decode_code`.
    * `decode_semantic(codes)` -> the semantic reconstruction `[B, H*W, semantic_output_dim]`.
    * `forward(pixel_values)` -> the training loss terms by name (L2, LPIPS, VQ/commitment,
      semantic cosine to a frozen teacher); the shared trainer adds the PatchGAN hinge term.
    """

    config_class = TokenFlowConfig
    modality = "image"
    main_input_name = "pixel_values"
    input_modalities = "image"
    _no_split_modules = ["SemanticEncoder"]

    def __init__(self, config: TokenFlowConfig):
        super().__init__(config)
        self.semantic_encoder = SemanticEncoder(config)
        self.semantic_projection = _task_layer(config.semantic_hidden_size, config.semantic_code_dim)
        self.pixel_encoder = VQGANEncoder(
            hidden_channels=config.pixel_encoder_channels,
            channel_mult=config.pixel_channel_mult,
            num_res_blocks=config.pixel_encoder_num_res_blocks,
            z_channels=config.pixel_z_channels,
            norm_groups=config.pixel_norm_groups,
        )
        self.pixel_projection = nn.Conv2d(config.pixel_z_channels, config.pixel_code_dim, 1)
        self.quantizer = SharedIndexQuantizer(
            codebook_size=config.codebook_size,
            semantic_dim=config.semantic_code_dim,
            pixel_dim=config.pixel_code_dim,
            scales=config.scales,
            pixel_weight=config.pixel_weight,
            commitment_cost=config.commitment_cost,
        )
        self.pixel_post_projection = nn.Conv2d(config.pixel_code_dim, config.pixel_z_channels, 1)
        self.pixel_decoder = VQGANDecoder(
            hidden_channels=config.pixel_decoder_channels,
            channel_mult=config.pixel_channel_mult,
            num_res_blocks=config.pixel_decoder_num_res_blocks,
            z_channels=config.pixel_z_channels,
            norm_groups=config.pixel_norm_groups,
        )
        self.semantic_decoder = SemanticDecoder(config)
        self.semantic_decoder_head = _task_layer(config.semantic_decoder_hidden_size, config.semantic_output_dim)
        self.post_init()

    # ----- training-only networks (kept outside the module tree: never saved or trained) -----------
    def set_loss_networks(
        self, *, teacher: nn.Module | None = None, perceptual: nn.Module | None = None
    ) -> TokenFlowTokenizer:
        """Frozen networks of the training losses: `teacher` (a `SemanticTeacher`, or a
        transformers tower that `SemanticTeacher` wraps) and `perceptual` (a callable
        `(reconstruction, reference) -> scalar`, e.g. `PerceptualLoss`)."""
        if teacher is not None and not isinstance(teacher, SemanticTeacher):
            teacher = SemanticTeacher(teacher, self.config.teacher)
        networks = dict(self.__dict__.get("_loss_networks", {}))
        networks.update({k: v for k, v in (("teacher", teacher), ("perceptual", perceptual)) if v is not None})
        # stored in __dict__ so that nn.Module does not register them as submodules
        self.__dict__["_loss_networks"] = networks
        return self

    def _loss_network(self, name: str, device: torch.device) -> nn.Module | None:
        networks = self.__dict__.setdefault("_loss_networks", {})
        if name not in networks:
            if name == "teacher" and self.config.semantic_teacher:
                networks[name] = SemanticTeacher.from_pretrained(self.config.semantic_teacher, self.config.teacher)
            elif name == "perceptual":
                networks[name] = PerceptualLoss(self.config.perceptual_network)
        network = networks.get(name)
        return network.to(device) if isinstance(network, nn.Module) else network

    # ----- initialisation (the original's) --------------------------------------------------------
    def _init_family_weights(self, module: nn.Module) -> None:
        # Linear layers of the task heads and the semantic decoder: trunc-normal(0.02), zero bias
        # (the original's `_init_weights`); the teacher tower keeps transformers' own init.
        if isinstance(module, nn.Linear) and not isinstance(module, QKVProjection):
            if not any(module is m for m in self.semantic_encoder.modules()):
                init.trunc_normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    init.zeros_(module.bias)
        elif isinstance(module, SemanticDecoder):
            init.trunc_normal_(module.cls_token, mean=0.0, std=0.02)
            init.trunc_normal_(module.pos_embed, mean=0.0, std=0.02)

    # ----- pieces -------------------------------------------------------------------------------
    def _features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`[B, 3, S, S]` -> the concatenated semantic + pixel feature map `[B, S+P, g, g]`."""
        semantic = self.semantic_encoder(pixel_values)
        semantic = self.semantic_projection(semantic.to(self.semantic_projection[-1].weight.dtype))
        grid = self.config.grid_size
        semantic = semantic.transpose(1, 2).reshape(semantic.shape[0], -1, grid, grid)
        pixel_input = pixel_values.to(self.pixel_encoder.conv_in.weight.dtype)
        if self.config.pixel_input_size != self.config.image_size:
            size = self.config.pixel_input_size
            pixel_input = F.interpolate(pixel_input, size=(size, size), mode="bicubic")
        pixel = self.pixel_projection(self.pixel_encoder(pixel_input))
        return torch.cat([semantic.to(pixel.dtype), pixel], dim=1)

    def _render(self, code_map: torch.Tensor) -> torch.Tensor:
        pixel_half = code_map[:, self.config.semantic_code_dim :]
        latents = self.pixel_post_projection(pixel_half.to(self.pixel_post_projection.weight.dtype))
        values = self.pixel_decoder(latents)
        if values.shape[-1] != self.config.image_size:
            size = self.config.image_size
            values = F.interpolate(values, size=(size, size), mode="bicubic")
        return values

    def _reconstruct_semantic(self, code_map: torch.Tensor) -> torch.Tensor:
        semantic_half = code_map[:, : self.config.semantic_code_dim]
        return self.semantic_decoder_head(self.semantic_decoder(semantic_half))

    def _code_map(self, codes: torch.Tensor) -> torch.Tensor:
        codes = self.check_codes(codes)
        if codes.shape[1] != 1:
            raise ValueError(f"codes must be [batch, 1, positions] (one shared index), got {tuple(codes.shape)}")
        return self.quantizer.lookup(codes)

    # ----- the contract --------------------------------------------------------------------------
    def encode(self, pixel_values: torch.Tensor, *, return_semantic: bool = False) -> TokenFlowEncoderOutput:
        """pixel_values `[B, 3, S, S]` in [-1, 1] -> codes `[B, 1, T]` over all scales."""
        check_pixel_values(pixel_values, self.config.image_size)
        quantized = self.quantizer(self._features(pixel_values))
        latents = quantized.quantized.flatten(2).transpose(1, 2) if return_semantic else None
        return TokenFlowEncoderOutput(
            codes=quantized.codes,
            latents=latents,
            scales=list(quantized.scales),
            scale_boundaries=self.quantizer.scale_boundaries(quantized.scales),
        )

    def decode(self, codes: torch.Tensor, *, codes_mask: torch.Tensor | None = None) -> DecoderOutput:
        """codes `[B, 1, T]`, T at a scale boundary -> values `[B, 3, S, S]` in about [-1, 1]."""
        if codes_mask is not None:
            raise ValueError("TokenFlow codes of one batch share their scales; pass codes without codes_mask")
        return DecoderOutput(values=self._render(self._code_map(codes)))

    def decode_semantic(self, codes: torch.Tensor) -> torch.Tensor:
        """codes `[B, 1, T]` -> the semantic reconstruction `[B, H*W, semantic_output_dim]` (the
        teacher-feature regression target of training)."""
        return self._reconstruct_semantic(self._code_map(codes))

    def _training_scales(self, generator: torch.Generator | None) -> list[int]:
        scales = list(self.config.scales)
        if len(scales) < 3 or self.config.scale_drop_probability <= 0:
            return scales
        device = generator.device if generator is not None else "cpu"
        if torch.rand((), generator=generator, device=device).item() < self.config.scale_drop_probability:
            drop = 1 + int(torch.randint(len(scales) - 1, (), generator=generator, device=device).item())
            scales.pop(drop)
        return scales

    def forward(
        self,
        pixel_values: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        return_semantic: bool = True,
    ) -> TokenFlowOutput:
        """Encode + decode with straight-through gradients. Losses (weighted by the config;
        `loss` is their sum), the original's mix: `reconstruction` (L2 on pixels), `codebook` +
        `commitment` (VQ, averaged over the scales used; a training step drops one scale with
        `scale_drop_probability`), `perceptual` (LPIPS) and `semantic` (1 - cosine to the frozen
        teacher's features; only when a teacher is configured or set). The PatchGAN hinge term
        comes from the shared trainer's discriminator (see the recipe)."""
        check_pixel_values(pixel_values, self.config.image_size)
        scales = self._training_scales(generator) if self.training else None
        quantized = self.quantizer(self._features(pixel_values), scales=scales)
        values = self._render(quantized.quantized)
        losses = {
            "reconstruction": self.config.reconstruction_weight * F.mse_loss(values.float(), pixel_values.float()),
            "codebook": self.config.quantizer_weight * quantized.codebook_loss,
            "commitment": self.config.quantizer_weight * quantized.commitment_loss,
        }
        semantic = None
        teacher = self._loss_network("teacher", pixel_values.device) if self.config.semantic_weight else None
        if return_semantic or teacher is not None:
            semantic = self._reconstruct_semantic(quantized.quantized)
        if teacher is not None:
            target = teacher(pixel_values)
            losses["semantic"] = self.config.semantic_weight * semantic_cosine_loss(semantic, target)
        if self.config.perceptual_weight:
            perceptual = self._loss_network("perceptual", pixel_values.device)
            losses["perceptual"] = self.config.perceptual_weight * perceptual(values, pixel_values)
        return TokenFlowOutput(
            loss=sum(losses.values()), losses=losses, codes=quantized.codes, values=values, semantic_reconstruction=semantic
        )
