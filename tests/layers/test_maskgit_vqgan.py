import torch
import torch.nn.functional as F

import pytest

from modalzoo.layers.maskgit_vqgan import (
    MaskGitResnetBlock,
    MaskGitVQGANDecoder,
    SameConv2d,
    same_padding,
)


def test_same_padding_is_tensorflow_split():
    assert same_padding(8, 3, 1, 1) == (1, 1)
    assert same_padding(8, 4, 1, 1) == (1, 2)  # the odd pixel goes after
    assert same_padding(8, 3, 2, 1) == (0, 1)
    assert same_padding(7, 3, 2, 1) == (1, 1)


def test_same_conv_matches_explicit_padding():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 8)
    for kernel, stride, pads in ((3, 1, [1, 1, 1, 1]), (4, 1, [1, 2, 1, 2]), (3, 2, [0, 1, 0, 1])):
        conv = SameConv2d(2, 3, kernel, stride=stride)
        expected = F.conv2d(F.pad(x, pads), conv.weight, conv.bias, stride=stride)
        out = conv(x)
        assert out.shape[-1] == -(-8 // stride)
        assert torch.allclose(out, expected, atol=1e-6)


def test_shortcut_maps_block_output_not_input():
    torch.manual_seed(0)
    block = MaskGitResnetBlock(8, 16, norm_groups=4).eval()
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        h = block.conv1(F.silu(block.norm1(x)))
        h = block.conv2(F.silu(block.norm2(h)))
        assert torch.allclose(block(x), h + block.shortcut(h), atol=1e-6)
    same_width = MaskGitResnetBlock(8, 8, norm_groups=4)
    assert same_width.shortcut is None


def test_decoder_upsamples_and_runs_levels_in_order():
    decoder = MaskGitVQGANDecoder(z_channels=4, hidden_channels=8, channel_mult=(1, 2, 4), num_res_blocks=1, norm_groups=4)
    # run order: lowest resolution (widest) first, no upsampling after the last level
    assert [block.res_blocks[0].conv2.out_channels for block in decoder.up] == [32, 16, 8]
    assert [block.upsample_conv is not None for block in decoder.up] == [True, True, False]
    assert decoder(torch.randn(2, 4, 3, 3)).shape == (2, 3, 12, 12)


def test_inference_in_place_activations_match_autograd_path():
    torch.manual_seed(0)
    block = MaskGitResnetBlock(8, 16, norm_groups=4).eval()
    hidden = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        in_place = block(hidden.clone())
    with torch.enable_grad():
        reference = block(hidden.clone())
    assert torch.equal(in_place, reference.detach())
