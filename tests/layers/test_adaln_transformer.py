"""The adaLN transformer blocks shared by FlexTok-style models."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from modalzoo.layers.adaln_transformer import FlexMask, TransformerBlock, fp32_layer_norm


def test_causal_last_mask():
    dense = FlexMask(6, prefix_length=3).dense("cpu")
    # patches (0-2) see only patches; registers (3-5) see every patch and the registers up to themselves
    expected = torch.tensor(
        [[1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]]
    ).bool()
    assert torch.equal(dense, expected)
    assert FlexMask(4).dense("cpu").all()


def test_flex_attention_rule_equals_the_dense_mask():
    """The BlockMask FlexAttention gets on CUDA encodes the same rule (checked here with the
    uncompiled FlexAttention on the CPU)."""
    from torch.nn.attention.flex_attention import flex_attention

    torch.manual_seed(0)
    for length, prefix in ((24, 16), (20, None)):
        mask = FlexMask(length, prefix)
        query, key, value = (torch.randn(2, 4, length, 8) for _ in range(3))
        dense = F.scaled_dot_product_attention(query, key, value, attn_mask=mask.dense("cpu"), scale=0.5)
        flex = flex_attention(query, key, value, block_mask=mask.block_mask("cpu"), scale=0.5)
        torch.testing.assert_close(flex, dense, atol=1e-5, rtol=0)


def test_per_segment_adaln_equals_per_token_modulation():
    torch.manual_seed(0)
    block = TransformerBlock(16, 2, adaln_segments=2).eval()
    with torch.no_grad():
        block.adaln_modulation.weight.normal_(0, 0.1)
        block.adaln_modulation.bias.normal_(0, 0.1)
    hidden, condition, mask = torch.randn(2, 7, 16), torch.randn(2, 16), FlexMask(7)
    out = block(hidden, mask, condition, [4, 3])
    # the same computation with one modulation vector per token
    modulation = block.adaln_modulation(F.silu(condition)).view(2, 2, 96)
    per_token = torch.cat([modulation[:, :1].expand(2, 4, 96), modulation[:, 1:].expand(2, 3, 96)], dim=1)
    gate_attn, gate_mlp, shift_attn, scale_attn, shift_mlp, scale_mlp = per_token.chunk(6, dim=-1)
    x = hidden + gate_attn * block.attn(fp32_layer_norm(hidden) * (1 + scale_attn) + shift_attn, mask)
    x = x + gate_mlp * block.mlp(fp32_layer_norm(x) * (1 + scale_mlp) + shift_mlp)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
