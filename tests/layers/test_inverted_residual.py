import pytest
import torch
from torch import nn

from vertebra.layers import InvertedResidual


def test_expand_depthwise_project_with_a_linear_bottleneck():
    block = InvertedResidual(16, 16, 3, 1, 96).eval()
    assert block.expand.conv.out_channels == 96 and block.dw.conv.groups == 96
    assert not hasattr(block.project, "act")  # linear bottleneck
    x = torch.randn(2, 16, 8, 8)
    branch = block.project(block.dw(block.expand(x)))
    torch.testing.assert_close(block(x), branch + x)


def test_no_shortcut_when_the_shape_changes_and_no_expand_at_ratio_one():
    block = InvertedResidual(32, 16, 3, 2, 32)
    assert isinstance(block.expand, nn.Identity) and not block.has_shortcut
    assert block(torch.randn(1, 32, 8, 8)).shape == (1, 16, 4, 4)


def test_squeeze_excitation_and_activation_choices():
    block = InvertedResidual(16, 24, 5, 1, 64, act=nn.Hardswish, se_chs=16, se_gate=nn.Hardsigmoid)
    assert block.se.fc1.out_channels == 16 and isinstance(block.se.gate, nn.Hardsigmoid)
    assert isinstance(block.dw.act, nn.Hardswish) and block.dw.conv.kernel_size == (5, 5)


def test_bad_settings():
    with pytest.raises(ValueError, match="expanded_chs=0"):
        InvertedResidual(8, 8, 3, 1, 0)
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(8, 8, 3, 3, 8)


def test_repeated_blocks_strides_only_the_first_of_each_row():
    from vertebra.layers.inverted_residual import repeated_blocks

    stage, out_chs, stride = repeated_blocks(8, [(16, 2, 2, 6), (24, 3, 1, 6)],
                                             lambda c, o, s, t: InvertedResidual(c, o, 3, s, c * t))
    assert len(stage) == 5 and out_chs == 24 and stride == 2
    assert [b.dw.conv.stride[0] for b in stage] == [2, 1, 1, 1, 1]
    assert [b.project.conv.out_channels for b in stage] == [16, 16, 24, 24, 24]
