import pytest
import torch

from vertebra.layers import SqueezeExcite


def test_rescales_each_channel_by_its_gate():
    se = SqueezeExcite(8, 2)
    x = torch.randn(3, 8, 5, 5)
    pooled = x.mean((2, 3), keepdim=True)
    gate = torch.sigmoid(se.fc2(torch.relu(se.fc1(pooled))))
    torch.testing.assert_close(se(x), x * gate)
    assert se.fc1.weight.shape == (2, 8, 1, 1) and se.fc2.weight.shape == (8, 2, 1, 1)


def test_gate_depends_on_global_context_only():
    se = SqueezeExcite(4, 2)
    x = torch.randn(1, 4, 6, 6)
    shuffled = x.flatten(2)[..., torch.randperm(36)].view_as(x)  # same mean per channel
    ratio_x, ratio_s = se(x) / x, se(shuffled) / shuffled
    torch.testing.assert_close(ratio_x.amax((2, 3)), ratio_s.amax((2, 3)))


def test_custom_gate_and_bad_width():
    se = SqueezeExcite(4, 2, gate=torch.nn.Hardsigmoid)
    assert isinstance(se.gate, torch.nn.Hardsigmoid)
    with pytest.raises(ValueError, match="reduced_channels"):
        SqueezeExcite(4, 0)
