"""SemantiCodec's encoder (`AudioMAEConditionQuantResEncoder` of the original).

A 10.24 s filterbank segment `[1024, 128]` goes through a frozen AudioMAE ViT (timm blocks, as the
original) to 64 x 8 patch features; 1, 2 or 2 x 2 neighbouring patches form one code frame. The
semantic code is the nearest k-means centroid of that feature (a fixed codebook, not learned);
the acoustic code quantises what a BiLSTM reads from [feature | centroid] with an EMA
`VectorQuantize` (vector-quantize-pytorch, as the original).
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from ...modeling_utils import ComputedBuffers
from ...quantizers import VectorQuantizer
from .configuration_semanticodec import SemantiCodecConfig


def sincos_pos_embed_2d(embed_dim: int, grid: tuple[int, int]) -> torch.Tensor:
    """AudioMAE's fixed table `[1 + H * W, D]` (a zero row for the class token first), computed
    in float64 with numpy exactly as `pos_embed.get_2d_sincos_pos_embed_flexible`."""
    grid_h = np.arange(grid[0], dtype=np.float32)
    grid_w = np.arange(grid[1], dtype=np.float32)
    mesh = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape(2, 1, grid[0], grid[1])

    def one_axis(dim: int, positions: np.ndarray) -> np.ndarray:
        omega = np.arange(dim // 2, dtype=float)
        omega /= dim / 2.0
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", positions.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    # the first half encodes the mesh's first plane (which holds the column index)
    table = np.concatenate([one_axis(embed_dim // 2, mesh[0]), one_axis(embed_dim // 2, mesh[1])], axis=1)
    table = np.concatenate([np.zeros([1, embed_dim]), table], axis=0)
    return torch.from_numpy(table).float()


def audiomae_pos_embed(embed_dim: int, patch_grid: tuple[int, int]) -> torch.Tensor:
    """`[1, 1 + H * W, D]` for a (time H, frequency W) patch grid. AudioMAE's `PatchEmbed_org`
    reports its grid as (W, H) (`img_size[1] // p, img_size[0] // p`), so the table is laid out
    for an 8 x 64 grid while the patches run 64 x 8: the original's quirk, kept for its weights."""
    return sincos_pos_embed_2d(embed_dim, (patch_grid[1], patch_grid[0]))[None]


class AudioMAEEncoder(ComputedBuffers, nn.Module):
    """The encoder half of AudioMAE's `MaskedAutoencoderViT` as SemantiCodec runs it
    (`forward_encoder_no_mask`): no masking, fixed sin-cos positions, and the output is the mean
    of `norm(x)` after every block past `contextual_depth`. The MAE decoder is not kept."""

    def __init__(self, config: SemantiCodecConfig):
        super().__init__()
        dim, patch = config.audiomae_hidden_size, config.patch_size
        self.grid = config.patch_grid
        self.contextual_depth = config.audiomae_contextual_depth
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        norm_layer = partial(nn.LayerNorm, eps=config.audiomae_layer_norm_eps)
        self.blocks = nn.ModuleList(
            Block(dim, config.audiomae_num_heads, config.audiomae_mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
            for _ in range(config.audiomae_num_layers)
        )
        self.norm = norm_layer(dim)
        # fixed (never trained) in the original: recomputed instead of stored
        self.register_buffer("pos_embed", audiomae_pos_embed(dim, self.grid), persistent=False)

    def computed_buffers(self) -> dict[str, torch.Tensor]:
        return {"pos_embed": audiomae_pos_embed(self.cls_token.shape[-1], self.grid)}

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """`[N, 1024, 128]` normalised filterbank -> `[N, 64 * 8, D]` patch features (time-major)."""
        x = self.patch_embed.proj(fbank[:, None]).flatten(2).transpose(1, 2)
        pos_embed = self.pos_embed.to(x.dtype)  # the computed table stays fp32 under bf16 loads
        x = x + pos_embed[:, 1:, :]
        cls_token = (self.cls_token + pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        contextual = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index > self.contextual_depth:
                contextual.append(self.norm(x))
        return torch.stack(contextual, dim=0).mean(dim=0)[:, 1:]


class KMeansQuantizer(nn.Module):
    """Nearest centroid of a fixed k-means codebook (the released `codebook_*.npy`), with the
    original's distance expansion ||a||^2 + ||c||^2 - 2 a.c so ties resolve identically."""

    def __init__(self, codebook_size: int, dim: int):
        super().__init__()
        self.register_buffer("codebook", torch.empty(codebook_size, dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.codebook)

    def encode(self, features: torch.Tensor) -> torch.LongTensor:
        """`[N, T, dim]` -> `[N, T]` centroid ids."""
        codebook = self.codebook.to(features.dtype)
        norm_features = features.pow(2).sum(dim=2, keepdim=True)
        norm_codebook = codebook.pow(2).sum(dim=1, keepdim=True)
        dot = torch.mm(features.reshape(-1, features.shape[-1]), codebook.t()).reshape(*features.shape[:2], -1)
        distances = norm_features + norm_codebook.t() - 2 * dot
        return torch.min(distances, dim=2).indices

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        return F.embedding(codes, self.codebook)


def stack_patches(features: torch.Tensor, grid: tuple[int, int], stack: tuple[int, int]) -> torch.Tensor:
    """`[N, H * W, D]` time-major patches -> `[N, (H / st) * (W / sf), st * sf * D]`: each frame
    concatenates a (st x sf) block of neighbouring patches, ordered (time, frequency, channel)
    as the original's `concat_1x2` / `concat_2x2`."""
    time_stack, frequency_stack = stack
    if stack == (1, 1):
        return features
    batch, dim = features.shape[0], features.shape[-1]
    height, width = grid
    blocks = features.reshape(batch, height // time_stack, time_stack, width // frequency_stack, frequency_stack, dim)
    blocks = blocks.permute(0, 1, 3, 2, 4, 5)
    return blocks.reshape(batch, (height // time_stack) * (width // frequency_stack), time_stack * frequency_stack * dim)


def real_frame_counts(fbank: torch.Tensor) -> list[int]:
    """Per segment, the index after its last non-constant filterbank frame (0 if none): the
    original's `padding_cutoff_index` (rows with std <= 1e-7 across bins are padding)."""
    constant = torch.std(fbank, dim=-1) <= 1e-7
    counts = []
    for row in constant:
        real = torch.nonzero(~row).flatten()
        counts.append(int(real[-1]) + 1 if real.numel() else 0)
    return counts


def mark_out_padding(features: torch.Tensor, real_frames: list[int], segment_frames: int) -> torch.Tensor:
    """Sets every code frame at or past ceil(T * real / segment_frames) to -1, as the original's
    `mark_out_padding` (so the BiLSTM and the decoder see silence as a constant -1)."""
    features = features.clone()
    length = features.shape[-2]
    for index, real in enumerate(real_frames):
        cutoff = math.ceil(length * (real / segment_frames))
        features[index, cutoff:] = -1.0
    return features


class SemantiCodecEncoder(nn.Module):
    """Filterbank segments `[N, 1024, 128]` -> semantic and acoustic codes `[N, frames]` each."""

    def __init__(self, config: SemantiCodecConfig):
        super().__init__()
        self.config = config
        dim = config.feature_dim
        self.audiomae = AudioMAEEncoder(config)
        self.audiomae.requires_grad_(False)  # frozen in the original: the centroids depend on it
        self.semantic_quantizer = KMeansQuantizer(config.semantic_codebook_size, dim)
        self.acoustic_lstm = nn.LSTM(
            input_size=2 * dim, hidden_size=2 * dim, num_layers=config.lstm_num_layers, batch_first=True, bidirectional=True
        )
        self.acoustic_proj = nn.Linear(4 * dim, dim, bias=False)
        self.acoustic_quantizer = VectorQuantizer(
            dim=dim,
            codebook_size=config.acoustic_codebook_size,
            ema_decay=config.acoustic_codebook_decay,
            commitment_weight=config.commitment_weight,
        )

    def semantic_features(self, fbank: torch.Tensor) -> torch.Tensor:
        """`[N, 1024, 128]` -> stacked AudioMAE features `[N, frames, feature_dim]`."""
        return stack_patches(self.audiomae(fbank), self.audiomae.grid, self.config.patch_stack)

    def _run_lstm(self, inputs: torch.Tensor) -> torch.Tensor:
        # On CPU the recurrent step of 2 or 3 sequences takes oneDNN's small-GEMM path, which
        # costs ~2.4x per sequence what batch 1 (GEMV) does, while 4 or more are cheaper per
        # sequence than batch 1 (measured on the released 1536-wide LSTM): run 2-3 one by one.
        if inputs.device.type == "cpu" and inputs.shape[0] in (2, 3):
            return torch.cat([self.acoustic_lstm(item[None])[0] for item in inputs])
        return self.acoustic_lstm(inputs)[0]

    def forward(self, fbank: torch.Tensor):
        """Returns (semantic codes `[N, F]`, acoustic `QuantizerOutput` (codes `[N, 1, F]`,
        quantised vectors, commitment loss), the real-frame counts of each segment)."""
        real_frames = real_frame_counts(fbank)
        with torch.no_grad():
            features = self.semantic_features(fbank)
        semantic_codes = self.semantic_quantizer.encode(features)
        centroids = self.semantic_quantizer.lookup(semantic_codes).to(features.dtype)  # fp32 codebook under bf16
        lstm_input = mark_out_padding(torch.cat([features, centroids], dim=-1), real_frames, fbank.shape[-2])
        residual = self.acoustic_proj(self._run_lstm(lstm_input))
        return semantic_codes, self.acoustic_quantizer(residual), real_frames
