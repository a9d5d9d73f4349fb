"""What Chollet 2017 (Xception) says, checked on the built network."""
import torch
from torch import nn

import vertebra
from vertebra.analysis import count_params
from vertebra.layers import SeparableConv
from vertebra.models.xception import XceptionModule


def meta_model(**kwargs):
    with torch.device("meta"):
        return vertebra.create_model("xception", **kwargs).eval()


def test_parameter_count_of_table_3():
    assert count_params(meta_model()) == 22_855_952


def test_36_convolutional_layers_in_14_modules():
    """Section 3: 36 convolutional layers form the feature extraction base, structured into 14
    modules, all with linear residual connections except the first (stem) and last (exit convs)."""
    model = meta_model()
    separable = [m for m in model.modules() if isinstance(m, SeparableConv)]
    plain = [model.stem.conv1.conv, model.stem.conv2.conv]
    assert len(plain) + len(separable) == 36
    modules = [m for m in model.modules() if isinstance(m, XceptionModule)]
    assert len(modules) + 2 == 14


def test_separable_convolution_has_no_nonlinearity_between_depthwise_and_pointwise():
    conv = meta_model().stages[2].block5.residual[1]
    assert isinstance(conv, SeparableConv)
    assert conv.dw.conv.groups == conv.dw.conv.in_channels == 728 and conv.pw.conv.kernel_size == (1, 1)
    assert [type(m) for m in conv.modules() if not isinstance(m, (nn.Sequential, SeparableConv))] == [nn.Conv2d] * 2


def test_flows_of_figure_5():
    stages = meta_model().stages
    middle = [m for m in stages[2] if isinstance(m.shortcut, nn.Identity)]
    assert len(middle) == 8  # the middle flow, repeated eight times
    for module in middle:
        widths = [m.pw.conv.out_channels for m in module.residual if isinstance(m, SeparableConv)]
        assert widths == [728, 728, 728] and isinstance(module.residual[0], nn.ReLU)
    exit_module = stages[3].block12
    assert [m.pw.conv.out_channels for m in exit_module.residual if isinstance(m, SeparableConv)] == [728, 1024]
    assert exit_module.shortcut.conv.stride == (2, 2) and isinstance(exit_module.residual[-1], nn.MaxPool2d)
    assert not isinstance(stages[0].block1.residual[0], nn.ReLU)  # follows the stem's ReLU directly
    x = torch.zeros(1, 3, 299, 299, device="meta")
    assert stages(meta_model().stem(x)).shape == (1, 2048, 10, 10)


def test_middle_flow_module_is_a_residual_around_the_separable_convolutions():
    module = vertebra.create_model("xception").eval().stages[2].block4
    x = torch.randn(1, 728, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(module(x), module.residual(x) + x)
        nn.init.zeros_(module.residual[-1].weight)  # the last BN silences the residual branch
        nn.init.zeros_(module.residual[-1].bias)
        assert torch.equal(module(x), x)


def test_small_input_pads_the_stem_and_keeps_the_weights():
    big, small = meta_model(), meta_model(small_input=True)
    assert {k: v.shape for k, v in small.state_dict().items()} == {k: v.shape for k, v in big.state_dict().items()}
    assert small.stem.conv1.conv.stride == (1, 1) and small.stem.conv2.conv.padding == (1, 1)
    x = torch.zeros(1, 3, 32, 32, device="meta")
    assert small.stages(small.stem(x)).shape[-2:] == (2, 2)
    assert [i.reduction for i in small.feature_info] == [2, 4, 8, 16]
