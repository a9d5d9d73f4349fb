"""What the MobileNetV2 paper says, checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra
from vertebra.layers import InvertedResidual

# Table 2 of the paper, written out again: (t, c, n, s) after a 32-channel stride-2 stem
TABLE_2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
           (6, 320, 1, 1)]


def bottlenecks(model):
    return [block for stage in model.stages for block in stage]


def expansion(block) -> int:
    expanded = block.dw.conv.in_channels
    return 1 if isinstance(block.expand, nn.Identity) else expanded // block.expand.conv.in_channels


def test_table_2():
    model = vertebra.create_model("mobilenet_v2_100")
    assert model.stem.conv.out_channels == 32 and model.stem.conv.stride == (2, 2)
    rows = []
    for block in bottlenecks(model):
        t, c, s = expansion(block), block.project.conv.out_channels, block.dw.conv.stride[0]
        if rows and rows[-1][:2] == (t, c) and s == 1:
            rows[-1] = (t, c, rows[-1][2] + 1, rows[-1][3])
        else:
            rows.append((t, c, 1, s))
    assert rows == TABLE_2
    assert model.conv_head.conv.kernel_size == (1, 1) and model.num_features == 1280
    assert [(i.channels, i.reduction) for i in model.feature_info] == [
        (16, 2), (24, 4), (32, 8), (96, 16), (320, 32)]


def test_linear_bottlenecks_and_relu6():
    for block in bottlenecks(vertebra.create_model("mobilenet_v2_100")):
        assert isinstance(block, InvertedResidual)
        assert not hasattr(block.project, "act")  # the projection is linear
        assert isinstance(block.dw.act, nn.ReLU6) and block.dw.conv.kernel_size == (3, 3)
        assert block.dw.conv.groups == block.dw.conv.out_channels


def test_shortcuts_join_the_bottlenecks_where_the_shape_is_kept():
    blocks = bottlenecks(vertebra.create_model("mobilenet_v2_100"))
    # every repeat after the first of a row: 0 + 1 + 2 + 3 + 2 + 2 + 0
    assert sum(block.has_shortcut for block in blocks) == 10
    block = blocks[1 + 2]  # the first repeat of the third row: 24 -> 32 channels, stride 2
    assert not block.has_shortcut
    block = blocks[1 + 2 + 1].eval()  # its second repeat keeps 32 channels at stride 1
    x = torch.randn(1, 32, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.project(block.dw(block.expand(x))) + x)


@pytest.mark.parametrize("name, stem, widths, last", [
    ("mobilenet_v2_035", 16, [8, 8, 16, 24, 32, 56, 112], 1280),
    ("mobilenet_v2_050", 16, [8, 16, 16, 32, 48, 80, 160], 1280),
    ("mobilenet_v2_140", 48, [24, 32, 48, 88, 136, 224, 448], 1792),
])
def test_width_multiplier_spares_the_last_conv_below_one(name, stem, widths, last):
    """Widths are multiples of 8; "we apply width multiplier to all layers except the very last
    convolutional layer", which grows with multipliers above one."""
    model = vertebra.create_model(name)
    assert model.stem.conv.out_channels == stem
    per_block = [width for width, (t, c, n, s) in zip(widths, TABLE_2) for _ in range(n)]
    assert [block.project.conv.out_channels for block in bottlenecks(model)] == per_block
    assert model.conv_head.conv.out_channels == model.num_features == last


def test_bad_width_multiplier_names_the_layer():
    with pytest.raises(ValueError, match="stem conv"):
        vertebra.create_model("mobilenet_v2_100", width_mult=0.0)
