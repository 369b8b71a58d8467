"""Pre-norm transformer blocks with QK-norm, SwiGLU and optional per-segment adaLN-zero.

The layout of FlexTok's `FlexBlock` / `FlexBlockAdaLN` (apple/ml-flextok), and of DiT-style
rectified-flow decoders in general:

* parameter-free LayerNorms computed in float32 (`fp32_layer_norm`) before attention and MLP;
* separate `wq` / `wk` / `wv` / `proj` projections, LayerNorm over each head's query and key
  (QK-norm), and a configurable softmax scale (the muP rule `8 / head_dim`, which equals
  `1 / sqrt(head_dim)` at head_dim 64);
* a SwiGLU MLP (`fc2(silu(fc1(x)) * fc3(x))`) whose hidden width is two thirds of
  `mlp_ratio * width`, as the original's `GatedMlp`;
* adaLN-zero: a conditioning vector (the flow time embedding) is mapped to
  gate/shift/scale for attention and MLP. With `adaln_segments > 1` the sequence is a
  concatenation of segments (image patches, then registers) and each segment gets its own six
  vectors, the original's `adaLN_expansion` with `per_subseq_embs`.

Attention runs through `F.scaled_dot_product_attention` with an explicit boolean mask, or, on
CUDA, through FlexAttention with the same mask given as a `BlockMask` (`FlexMask`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init


def fp32_layer_norm(hidden_states: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """LayerNorm over the last axis without weight or bias, computed in float32 and returned in
    the input's dtype (the original's `Fp32LayerNorm(bias=False, elementwise_affine=False)`)."""
    normed = F.layer_norm(hidden_states.float(), hidden_states.shape[-1:], eps=eps)
    return normed.type_as(hidden_states)


class XavierLinear(nn.Linear):
    """Linear layer initialised with Xavier-uniform weights and a zero bias (the original's
    `weight_init_style="xavier"`)."""

    def reset_parameters(self) -> None:
        init.xavier_uniform_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)


class ZeroLinear(nn.Linear):
    """Linear layer initialised to zero (adaLN-zero modulation and zero-init output heads)."""

    def reset_parameters(self) -> None:
        init.zeros_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)


# ----- attention masks ---------------------------------------------------------------------------
class FlexMask:
    """A boolean attention rule over one item's sequence, usable by both attention paths:
    `dense(device)` is the `[L, L]` mask SDPA takes (True = may attend), `block_mask(device)` the
    FlexAttention `BlockMask` built from the same rule. `use_flex` picks FlexAttention for CUDA
    tensors (CPU tensors always go through SDPA)."""

    def __init__(self, length: int, prefix_length: int | None = None, *, use_flex: bool = False):
        # prefix_length None: full attention. Otherwise positions < prefix_length form a prefix
        # every position sees, and the rest attend causally (the original's "causal_last").
        self.length = int(length)
        self.prefix_length = None if prefix_length is None else int(prefix_length)
        self.use_flex = bool(use_flex)

    def dense(self, device: torch.device | str) -> torch.Tensor:
        return _dense_mask(self.length, self.prefix_length, str(device))

    def block_mask(self, device: torch.device | str):
        return _block_mask(self.length, self.prefix_length, str(device))


@lru_cache(maxsize=32)
def _dense_mask(length: int, prefix_length: int | None, device: str) -> torch.Tensor:
    if prefix_length is None:
        return torch.ones(length, length, dtype=torch.bool, device=device)
    query = torch.arange(length, device=device)[:, None]
    key = torch.arange(length, device=device)[None, :]
    return (key < prefix_length) | (key <= query)


@lru_cache(maxsize=32)
def _block_mask(length: int, prefix_length: int | None, device: str):
    from torch.nn.attention.flex_attention import create_block_mask

    if prefix_length is None:

        def rule(batch, head, query, key):
            return query >= 0

    else:

        def rule(batch, head, query, key):
            return (key < prefix_length) | (key <= query)

    return create_block_mask(rule, None, None, length, length, device=device)


@lru_cache(maxsize=1)
def _compiled_flex_attention() -> Callable:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


# ----- layers ------------------------------------------------------------------------------------
class QKNormAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections, QK-norm and a given scale."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        qkv_bias: bool = False,
        proj_bias: bool = False,
        qk_norm: bool = True,
        scale: float | None = None,
        norm_eps: float = 1e-5,
    ):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qk_norm = qk_norm
        self.scale = scale
        self.norm_eps = norm_eps
        self.wq = XavierLinear(hidden_size, hidden_size, bias=qkv_bias)
        self.wk = XavierLinear(hidden_size, hidden_size, bias=qkv_bias)
        self.wv = XavierLinear(hidden_size, hidden_size, bias=qkv_bias)
        self.proj = XavierLinear(hidden_size, hidden_size, bias=proj_bias)

    def _heads(self, projected: torch.Tensor) -> torch.Tensor:
        batch, length, _ = projected.shape
        return projected.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, hidden_states: torch.Tensor, mask: FlexMask) -> torch.Tensor:
        query = self._heads(self.wq(hidden_states))
        key = self._heads(self.wk(hidden_states))
        value = self._heads(self.wv(hidden_states))
        if self.qk_norm:
            query = fp32_layer_norm(query, self.norm_eps)
            key = fp32_layer_norm(key, self.norm_eps)
        if mask.use_flex and hidden_states.is_cuda:
            attended = _compiled_flex_attention()(
                query, key, value, block_mask=mask.block_mask(hidden_states.device), scale=self.scale
            )
        else:
            attended = F.scaled_dot_product_attention(
                query, key, value, attn_mask=mask.dense(hidden_states.device), scale=self.scale
            )
        batch, _, length, _ = attended.shape
        return self.proj(attended.transpose(1, 2).reshape(batch, length, -1))


class SwiGLU(nn.Module):
    """`fc2(silu(fc1(x)) * fc3(x))` with hidden width `int(2 * hidden_features / 3)`."""

    def __init__(self, hidden_size: int, hidden_features: int, *, bias: bool = False):
        super().__init__()
        gated = int(2 * hidden_features / 3)
        self.fc1 = XavierLinear(hidden_size, gated, bias=bias)
        self.fc2 = XavierLinear(gated, hidden_size, bias=bias)
        self.fc3 = XavierLinear(hidden_size, gated, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(hidden_states)) * self.fc3(hidden_states))


def _per_segment(values: torch.Tensor, segments: Sequence[int], fn: Callable[..., torch.Tensor], *params) -> torch.Tensor:
    """Applies `fn(segment_values, *segment_params)` to consecutive segments of the sequence axis;
    each of `params` is `[B, num_segments, D]` (one vector per segment, broadcast over it)."""
    if len(segments) == 1:
        return fn(values, *(p[:, 0:1] for p in params))
    pieces = values.split(list(segments), dim=1)
    return torch.cat([fn(piece, *(p[:, i : i + 1] for p in params)) for i, piece in enumerate(pieces)], dim=1)


def _modulate(values: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return values * (1.0 + scale) + shift


def _gate(values: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return gate * values


class TransformerBlock(nn.Module):
    """Pre-norm block `x + attn(norm(x))`, `x + mlp(norm(x))`; with `adaln_segments` > 0 it is
    adaLN-zero conditioned (`adaln_modulation` maps SiLU(condition) to `segments * 6 * width`,
    ordered gate_attn, gate_mlp, shift_attn, scale_attn, shift_mlp, scale_mlp per segment)."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        proj_bias: bool = False,
        mlp_bias: bool = False,
        qk_norm: bool = True,
        scale: float | None = None,
        norm_eps: float = 1e-5,
        adaln_segments: int = 0,
    ):
        super().__init__()
        self.norm_eps = norm_eps
        self.adaln_segments = adaln_segments
        self.attn = QKNormAttention(
            hidden_size, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias, qk_norm=qk_norm, scale=scale, norm_eps=norm_eps
        )
        self.mlp = SwiGLU(hidden_size, int(hidden_size * mlp_ratio), bias=mlp_bias)
        if adaln_segments:
            self.adaln_modulation = ZeroLinear(hidden_size, adaln_segments * 6 * hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        mask: FlexMask,
        condition: torch.Tensor | None = None,
        segments: Sequence[int] | None = None,
    ) -> torch.Tensor:
        if not self.adaln_segments:
            hidden_states = hidden_states + self.attn(fp32_layer_norm(hidden_states, self.norm_eps), mask)
            return hidden_states + self.mlp(fp32_layer_norm(hidden_states, self.norm_eps))
        segments = list(segments) if segments is not None else [hidden_states.shape[1]]
        if len(segments) != self.adaln_segments:
            raise ValueError(f"this block modulates {self.adaln_segments} segment(s), got {len(segments)}")
        batch, width = hidden_states.shape[0], hidden_states.shape[-1]
        modulation = self.adaln_modulation(F.silu(condition)).view(batch, self.adaln_segments, 6 * width)
        gate_attn, gate_mlp, shift_attn, scale_attn, shift_mlp, scale_mlp = modulation.chunk(6, dim=-1)

        normed = _per_segment(fp32_layer_norm(hidden_states, self.norm_eps), segments, _modulate, shift_attn, scale_attn)
        hidden_states = hidden_states + _per_segment(self.attn(normed, mask), segments, _gate, gate_attn)
        normed = _per_segment(fp32_layer_norm(hidden_states, self.norm_eps), segments, _modulate, shift_mlp, scale_mlp)
        return hidden_states + _per_segment(self.mlp(normed), segments, _gate, gate_mlp)


# ----- positions ---------------------------------------------------------------------------------
def sincos_2d_positions(grid_size: int, width: int, temperature: float = 10000.0) -> torch.Tensor:
    """`[grid_size * grid_size, width]` MoCo-v3 sin-cos table in row-major patch order, laid out
    as the original's `build_2d_sincos_posemb` for a square grid: the first half of the channels
    encodes the patch's row, the second half its column (sin then cos for each)."""
    if width % 4:
        raise ValueError(f"width {width} must be divisible by 4 for 2-D sin-cos positions")
    quarter = width // 4
    omega = 1.0 / (temperature ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    coords = torch.arange(grid_size, dtype=torch.float32)
    rows = coords.repeat_interleave(grid_size)
    columns = coords.repeat(grid_size)
    out_rows = torch.einsum("n,d->nd", rows, omega)
    out_columns = torch.einsum("n,d->nd", columns, omega)
    return torch.cat([out_rows.sin(), out_rows.cos(), out_columns.sin(), out_columns.cos()], dim=1)
