import torch

from vertebra.layers import SeparableConv


def test_depthwise_then_pointwise():
    conv = SeparableConv(8, 16, 3, stride=2)
    assert conv.dw.conv.groups == 8 and conv.dw.conv.out_channels == 8 and conv.pw.conv.kernel_size == (1, 1)
    assert conv(torch.randn(1, 8, 10, 10)).shape == (1, 16, 5, 5)
    full = 8 * 16 * 9
    assert conv.dw.conv.weight.numel() + conv.pw.conv.weight.numel() == 8 * 9 + 8 * 16 < full


def test_bare_form_of_xception():
    conv = SeparableConv(4, 6, dw_norm=None, dw_act=None, pw_norm=None, pw_act=None, bias=False)
    assert [n for n, _ in conv.named_modules() if n.count(".") == 1] == ["dw.conv", "pw.conv"]
    x = torch.randn(1, 4, 5, 5)
    expected = torch.nn.functional.conv2d(torch.nn.functional.conv2d(x, conv.dw.conv.weight, padding=1, groups=4),
                                          conv.pw.conv.weight)
    torch.testing.assert_close(conv(x), expected)
