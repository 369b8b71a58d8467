"""Pre-LN Vision Transformer blocks (the CLIP / open_clip layout) on PyTorch SDPA.

Used by TiTok and One-D-Piece, and meant for every family whose original builds its ViT from
`nn.MultiheadAttention` (CLIP towers, TokenFlow). Inputs are batch-first `[B, L, D]`; the query,
key and value projections stay packed in one `qkv` linear (rows in q, k, v order), which is
exactly the layout of `nn.MultiheadAttention.in_proj_weight`, so converters rename the key
instead of splitting it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): the activation of OpenAI's CLIP checkpoints."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


_ACTIVATIONS = {"gelu": nn.GELU, "quick_gelu": QuickGELU}


class QKVProjection(nn.Linear):
    """The packed query/key/value projection (`3 * hidden_size` rows in q, k, v order), initialised
    as `nn.MultiheadAttention.in_proj_weight` is: Xavier-uniform weight, zero bias."""

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a packed `qkv` projection, computed by
    `F.scaled_dot_product_attention` (flash / memory-efficient kernels where available)."""

    def __init__(self, hidden_size: int, num_heads: int, *, bias: bool = True):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv = QKVProjection(hidden_size, 3 * hidden_size, bias=bias)
        self.out_proj = nn.Linear(hidden_size, hidden_size, bias=bias)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`attention_mask`: bool (True = may attend) or additive float, broadcastable to
        `[B, heads, L, L]`."""
        batch, length, width = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch, length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask)
        return self.out_proj(attended.transpose(1, 2).reshape(batch, length, width))


class MLP(nn.Module):
    def __init__(self, hidden_size: int, intermediate_size: int, activation: str = "gelu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.act = _ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(intermediate_size, hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden_states)))


class ResidualAttentionBlock(nn.Module):
    """x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.attn = SelfAttention(hidden_size, num_heads)
        self.norm2 = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.mlp = MLP(hidden_size, int(hidden_size * mlp_ratio), activation)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        hidden_states = hidden_states + self.attn(self.norm1(hidden_states), attention_mask)
        return hidden_states + self.mlp(self.norm2(hidden_states))


class Transformer(nn.Module):
    """A stack of `ResidualAttentionBlock`s (`layers.{i}`)."""

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        *,
        mlp_ratio: float = 4.0,
        activation: str = "gelu",
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            ResidualAttentionBlock(
                hidden_size, num_heads, mlp_ratio=mlp_ratio, activation=activation, layer_norm_eps=layer_norm_eps
            )
            for _ in range(num_layers)
        )

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            hidden_states = layer(hidden_states, attention_mask)
        return hidden_states
