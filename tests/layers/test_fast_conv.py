import pytest
import torch
import torch.nn.functional as F
from diffusers.models.upsampling import Upsample2D
from torch import nn

from modalzoo.layers.fast_conv import (
    ChannelsLastConv1d,
    ChannelsLastConvTranspose1d,
    FoldedUpsample2D,
    convs1d_channels_last,
    fold_nearest_upsamplers,
    upsample_nearest2x_conv3x3,
)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("size", [(5, 7), (16, 16)])
def test_folded_upsample_conv_equals_interpolate_then_conv(bias, size, memory_format):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 10, 3, padding=1, bias=bias)
    hidden = torch.randn(2, 6, *size).contiguous(memory_format=memory_format).requires_grad_()
    expected = conv(F.interpolate(hidden, scale_factor=2.0, mode="nearest"))
    folded = upsample_nearest2x_conv3x3(hidden, conv)
    assert folded.is_contiguous(memory_format=memory_format)
    assert folded.shape == expected.shape == (2, 10, 2 * size[0], 2 * size[1])
    torch.testing.assert_close(folded, expected, atol=2e-6, rtol=1e-6)
    # training goes through the same path: gradients agree too
    (weight_grad,) = torch.autograd.grad(folded.square().sum(), conv.weight)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), conv.weight)
    torch.testing.assert_close(weight_grad, expected_grad, atol=1e-4, rtol=1e-4)


def test_diffusers_upsamplers_fold_with_same_keys_and_values():
    torch.manual_seed(0)
    model = nn.Sequential(Upsample2D(6, use_conv=True), Upsample2D(6, use_conv=False), Upsample2D(6, use_conv_transpose=True))
    hidden = torch.randn(2, 6, 5, 9)
    with torch.no_grad():
        expected = [block(hidden) for block in model]
        keys = list(model.state_dict())
        assert fold_nearest_upsamplers(model) == 1  # only the nearest + 3x3 conv one
        assert type(model[0]) is FoldedUpsample2D and type(model[1]) is Upsample2D
        assert list(model.state_dict()) == keys
        for block, reference in zip(model, expected):
            torch.testing.assert_close(block(hidden), reference, atol=2e-6, rtol=1e-6)
        # an explicit output size keeps diffusers' own interpolation
        torch.testing.assert_close(model[0](hidden, output_size=(11, 19)), Upsample2D.forward(model[0], hidden, output_size=(11, 19)))


@pytest.mark.parametrize("stride, padding, dilation, groups", [(1, 5, 1, 1), (1, 15, 3, 1), (2, 1, 1, 1), (1, 2, 2, 4)])
def test_channels_last_conv1d_matches_conv1d(stride, padding, dilation, groups):
    torch.manual_seed(0)
    conv = nn.Conv1d(8, 12, 11 if padding >= 5 else 3, stride=stride, padding=padding, dilation=dilation, groups=groups)
    fast = ChannelsLastConv1d(8, 12, conv.kernel_size[0], stride=stride, padding=padding, dilation=dilation, groups=groups)
    fast.load_state_dict(conv.state_dict())
    hidden = torch.randn(3, 8, 50, requires_grad=True)
    out = fast(hidden)
    expected = conv(hidden)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # the output is [B, C, L] over [B, L, C] memory, and gradients flow as through nn.Conv1d
    assert out.stride(1) == 1
    (grad,) = torch.autograd.grad(out.square().sum(), hidden)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), hidden)
    torch.testing.assert_close(grad, expected_grad, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stride, kernel, padding, output_padding", [(5, 16, 6, 0), (2, 4, 1, 0), (3, 5, 1, 2)])
def test_channels_last_conv_transpose1d_matches(stride, kernel, padding, output_padding):
    torch.manual_seed(0)
    conv = nn.ConvTranspose1d(8, 6, kernel, stride=stride, padding=padding, output_padding=output_padding)
    fast = ChannelsLastConvTranspose1d(8, 6, kernel, stride=stride, padding=padding, output_padding=output_padding)
    fast.load_state_dict(conv.state_dict())
    hidden = torch.randn(2, 8, 17)
    with torch.no_grad():
        torch.testing.assert_close(fast(hidden), conv(hidden), atol=1e-5, rtol=1e-5)


def test_convs1d_channels_last_switches_plain_convs_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.ConvTranspose1d(8, 4, 4, stride=2, padding=1),
                          nn.Conv1d(4, 4, 3, padding=1, padding_mode="reflect"), nn.Conv2d(1, 1, 1))
    hidden = torch.randn(2, 4, 33)
    with torch.no_grad():
        expected = model[:4](hidden)
        keys = list(model.state_dict())
        assert convs1d_channels_last(model) == 3
        assert [type(m) for m in model][:3] == [ChannelsLastConv1d, nn.LeakyReLU, ChannelsLastConvTranspose1d]
        assert type(model[4]) is nn.Conv2d and list(model.state_dict()) == keys
        torch.testing.assert_close(model[:4](hidden), expected, atol=1e-5, rtol=1e-5)  # reflect padding: nn.Conv1d's path
