import torch
from torch import nn

from vertebra.layers import ConvNormAct, NormAct


def test_conv_norm_act_parts_padding_and_bias():
    block = ConvNormAct(4, 8, 3, stride=2)
    assert [name for name, _ in block.named_children()] == ["conv", "bn", "act"]
    assert block.conv.padding == (1, 1) and block.conv.bias is None
    assert block(torch.randn(2, 4, 9, 9)).shape == (2, 8, 5, 5)


def test_conv_norm_act_matches_the_three_ops():
    block = ConvNormAct(3, 5, 5, groups=1, act=nn.ReLU).eval()
    block.bn.running_mean.uniform_(-1, 1)
    block.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 7, 7)
    expected = torch.relu(block.bn(nn.functional.conv2d(x, block.conv.weight, padding=2)))
    torch.testing.assert_close(block(x), expected)


def test_no_norm_gives_a_bias_and_no_act_gives_a_linear_output():
    block = ConvNormAct(2, 2, 1, norm=None, act=None)
    assert [name for name, _ in block.named_children()] == ["conv"]
    assert block.conv.bias is not None
    x = torch.randn(1, 2, 3, 3)
    assert (block(-x) + block(x) - 2 * block.conv.bias.view(1, -1, 1, 1)).abs().max() < 1e-6


def test_dilation_keeps_same_padding():
    block = ConvNormAct(2, 2, 3, dilation=2)
    assert block(torch.randn(1, 2, 10, 10)).shape == (1, 2, 10, 10)


def test_norm_act_is_bn_then_relu():
    layer = NormAct(3).eval()
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(layer(x), torch.relu(layer.bn(x)))


def test_bias_override():
    assert ConvNormAct(2, 2, 1, norm=None, act=None, bias=False).conv.bias is None
    assert ConvNormAct(2, 2, 1, bias=True).conv.bias is not None
