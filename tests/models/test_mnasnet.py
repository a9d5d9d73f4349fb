"""MnasNet as torchvision builds it (the authors' MnasNet-B1), checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra
from vertebra.layers import InvertedResidual, SeparableConv, SqueezeExcite

# (kernel, expansion, channels, repeats, stride) of each MBConv row after the stem and SepConv
ROWS = [(3, 3, 24, 3, 2), (5, 3, 40, 3, 2), (5, 6, 80, 3, 2), (3, 6, 96, 2, 1), (5, 6, 192, 4, 2),
        (3, 6, 320, 1, 1)]


def mbconvs(model):
    return [block for stage in model.stages for block in stage if isinstance(block, InvertedResidual)]


def test_stem_sepconv_and_mbconv_rows():
    model = vertebra.create_model("mnasnet1_0")
    assert model.stem.conv.out_channels == 32 and model.stem.conv.stride == (2, 2)
    sepconv = model.stages[0][0]
    assert isinstance(sepconv, SeparableConv) and sepconv.pw.conv.out_channels == 16
    assert hasattr(sepconv.dw, "act") and not hasattr(sepconv.pw, "act")  # a linear projection
    rows = []
    for block in mbconvs(model):
        dw = block.dw.conv
        k, t = dw.kernel_size[0], dw.out_channels // block.expand.conv.in_channels
        c, s = block.project.conv.out_channels, dw.stride[0]
        if rows and rows[-1][:3] == (k, t, c) and s == 1:
            rows[-1] = (k, t, c, rows[-1][3] + 1, rows[-1][4])
        else:
            rows.append((k, t, c, 1, s))
    assert rows == ROWS
    assert not any(isinstance(m, SqueezeExcite) for m in model.modules())  # B1: no SE
    assert [(i.channels, i.reduction) for i in model.feature_info] == [
        (16, 2), (24, 4), (40, 8), (96, 16), (320, 32)]
    assert model.conv_head.conv.out_channels == model.num_features == 1280


def test_batch_norm_momentum_is_the_papers_decay():
    norms = [m for m in vertebra.create_model("mnasnet0_5").modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.momentum == pytest.approx(1 - 0.9997) for m in norms)


@pytest.mark.parametrize("name, widths", [
    ("mnasnet0_5", [16, 8, 16, 24, 40, 48, 96, 160]),
    ("mnasnet1_3", [40, 24, 32, 56, 104, 128, 248, 416]),
])
def test_alpha_scales_every_width_but_the_last(name, widths):
    model = vertebra.create_model(name)
    stem, sepconv = model.stem.conv.out_channels, model.stages[0][0].pw.conv.out_channels
    rows = [block.project.conv.out_channels for block in mbconvs(model) if not block.has_shortcut]
    assert [stem, sepconv] + rows == widths
    assert model.num_features == 1280


def test_residuals_only_within_a_row():
    blocks = mbconvs(vertebra.create_model("mnasnet1_0"))
    assert sum(block.has_shortcut for block in blocks) == sum(n - 1 for _, _, _, n, _ in ROWS)
    block = blocks[1].eval()
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.project(block.dw(block.expand(x))) + x)


def test_bad_alpha_names_the_layer():
    with pytest.raises(ValueError, match="stem conv"):
        vertebra.create_model("mnasnet1_0", alpha=0)
    with pytest.raises(TypeError, match="alpha"):
        vertebra.create_model("mnasnet1_0", alpha=None)
