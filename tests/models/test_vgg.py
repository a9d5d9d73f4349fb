"""What Simonyan and Zisserman's Table 1 says, checked on the built networks.

Structure is checked on the meta device (no memory, no compute): these nets hold 133-144M
parameters, almost all in fc6.
"""
import pytest
import torch
from torch import nn

import vertebra


def meta(name, **kwargs):
    with torch.device("meta"):
        return vertebra.create_model(name, **kwargs)


@pytest.mark.parametrize("name, depth", [("vgg11", 11), ("vgg13", 13), ("vgg16", 16), ("vgg19", 19)])
def test_weight_layers_match_the_configuration_name(name, depth):
    model = meta(name)
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == depth
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) and c.padding == (1, 1)
               for c in weighted if isinstance(c, nn.Conv2d))


def test_table_1_widths_per_block():
    model = meta("vgg16")
    widths = [[m.out_channels for m in stage.modules() if isinstance(m, nn.Conv2d)] for stage in model.stages]
    assert widths == [[64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all(p.kernel_size == 2 and p.stride == 2 for p in pools)
    assert [i.reduction for i in model.feature_info] == [2, 4, 8, 16, 32]
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [4096, 4096, 1000]


def test_two_3x3_layers_see_a_5x5_field():
    """Sec. 2.3: a stack of two 3x3 convolutions has the receptive field of one 5x5."""
    # num_classes=0 leaves out the fully connected layers: quick to build
    first = vertebra.create_model("vgg13", num_classes=0, small_input=True).stages[0].eval()
    x = torch.randn(1, 3, 11, 11, requires_grad=True)
    first(x)[0, :, 5, 5].sum().backward()  # the centre output of the second 3x3
    rows, cols = x.grad[0].abs().sum(0).nonzero().unbind(1)
    assert (rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()) == (3, 7, 3, 7)


def test_batch_norm_forms():
    plain, bn = meta("vgg11"), meta("vgg11_bn")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 8  # one per convolution


def test_small_input_skips_the_first_pool():
    model = meta("vgg16", small_input=True)
    assert [i.reduction for i in model.feature_info] == [1, 2, 4, 8, 16]
    assert model(torch.empty(2, 3, 32, 32, device="meta")).shape == (2, 1000)


def test_fine_tuning_keeps_fc6_and_fc7():
    model = vertebra.create_model("vgg11")
    fc6 = model.head.fc6.weight
    model.reset_classifier(10)
    assert model.head.fc6.weight is fc6 and model.head.fc8.out_features == 10
    pooled = meta("vgg11", num_classes=0)
    assert pooled.head.fc6 is None and not any(k.startswith("head.") for k in pooled.state_dict())
