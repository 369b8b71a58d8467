import torch
from torch import nn

from modalzoo.layers.vit import ResidualAttentionBlock, SelfAttention, Transformer


def test_self_attention_matches_multihead_attention_with_packed_weights():
    torch.manual_seed(0)
    width, heads = 32, 4
    reference = nn.MultiheadAttention(width, heads).eval()
    attention = SelfAttention(width, heads).eval()
    attention.qkv.weight.data.copy_(reference.in_proj_weight.data)
    attention.qkv.bias.data.copy_(torch.randn(3 * width))
    reference.in_proj_bias.data.copy_(attention.qkv.bias.data)
    attention.out_proj.load_state_dict(reference.out_proj.state_dict())
    x = torch.randn(3, 7, width)
    with torch.no_grad():
        expected = reference(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
        assert torch.allclose(attention(x), expected, atol=1e-6)


def test_attention_mask_blocks_positions():
    torch.manual_seed(0)
    attention = SelfAttention(16, 2).eval()
    x = torch.randn(1, 5, 16)
    mask = torch.ones(5, 5, dtype=torch.bool)
    mask[:, 3:] = False  # nobody attends to the last two positions
    changed = x.clone()
    changed[:, 3:] += 10.0
    with torch.no_grad():
        out, out_changed = attention(x, mask), attention(changed, mask)
    assert torch.allclose(out[:, :3], out_changed[:, :3], atol=1e-6)


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = ResidualAttentionBlock(16, 2).eval()
    x = torch.randn(2, 4, 16)
    with torch.no_grad():
        h = x + block.attn(block.norm1(x))
        expected = h + block.mlp.fc2(nn.functional.gelu(block.mlp.fc1(block.norm2(h))))
        assert torch.allclose(block(x), expected, atol=1e-6)


def test_transformer_stacks_layers():
    stack = Transformer(16, 3, 4)
    assert len(stack.layers) == 3
    assert stack(torch.randn(2, 5, 16)).shape == (2, 5, 16)
