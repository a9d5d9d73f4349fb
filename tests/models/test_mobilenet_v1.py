"""What the MobileNet (V1) paper says, checked on the built networks."""
import json
from pathlib import Path

import pytest
import torch
from torch import nn

import vertebra
from vertebra.analysis import count_macs
from vertebra.layers import SeparableConv
from vertebra.testing import synthetic_state_dict
from vertebra.weights import KEYMAPS

FIXTURES = Path(__file__).parents[1] / "fixtures" / "reference"


def separable_layers(model):
    return [layer for stage in model.stages for layer in stage]


def test_table_1_body():
    model = vertebra.create_model("mobilenet_v1_100")
    assert model.stem.conv.kernel_size == (3, 3) and model.stem.conv.stride == (2, 2)
    assert model.stem.conv.out_channels == 32
    layers = separable_layers(model)
    assert all(isinstance(layer, SeparableConv) for layer in layers)
    assert [layer.pw.conv.out_channels for layer in layers] == [64, 128, 128, 256, 256] + [512] * 6 + [1024] * 2
    assert [layer.dw.conv.stride[0] for layer in layers] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    for layer in layers:  # depthwise: one 3x3 filter per channel; pointwise: 1x1; BN and ReLU after both
        assert layer.dw.conv.groups == layer.dw.conv.in_channels == layer.dw.conv.out_channels
        assert layer.dw.conv.kernel_size == (3, 3) and layer.pw.conv.kernel_size == (1, 1)
        assert all(hasattr(part, "bn") and hasattr(part, "act") for part in (layer.dw, layer.pw))
    # "Counting depthwise and pointwise convolutions as separate layers, MobileNet has 28 layers"
    assert sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules()) == 28
    assert [(i.channels, i.reduction) for i in model.feature_info] == [
        (64, 2), (128, 4), (256, 8), (512, 16), (1024, 32)]


def test_separable_cost_is_the_papers_formula():
    """D_K * D_K * M * D_F * D_F + M * N * D_F * D_F multiply-adds (the paper's equation 5)."""
    layer = separable_layers(vertebra.create_model("mobilenet_v1_100"))[4]  # 28x28 at 224: 256 -> 256
    m, n, d_k, d_f = 256, 256, 3, 28
    assert count_macs(layer, d_f, in_chans=m) == d_k * d_k * m * d_f * d_f + m * n * d_f * d_f


@pytest.mark.parametrize("size, paper_macs", [(192, 418e6), (160, 290e6), (128, 186e6)])
def test_resolution_multiplier_is_the_input_size(size, paper_macs):
    """Table 7: 1.0 MobileNet at 192, 160 and 128 pixels."""
    with torch.device("meta"):
        model = vertebra.create_model("mobilenet_v1_100")
    assert count_macs(model, size) == pytest.approx(paper_macs, rel=0.01)


@pytest.mark.parametrize("alpha, name", [(0.25, "mobilenet_v1_025"), (0.5, "mobilenet_v1_050"),
                                         (0.75, "mobilenet_v1_075")])
def test_width_multiplier_thins_every_layer(alpha, name):
    full = separable_layers(vertebra.create_model("mobilenet_v1_100"))
    thin = vertebra.create_model(name)
    assert thin.stem.conv.out_channels == alpha * 32
    assert [layer.pw.conv.out_channels for layer in separable_layers(thin)] == [
        alpha * layer.pw.conv.out_channels for layer in full]
    assert thin.num_features == thin.head.fc.in_features == alpha * 1024


def test_relu6_by_default_and_the_papers_relu_as_an_option():
    x = torch.tensor([-1.0, 3.0, 10.0])
    model = vertebra.create_model("mobilenet_v1_100")
    assert torch.equal(model.stem.act(x.clone()), torch.tensor([0.0, 3.0, 6.0]))
    paper = vertebra.create_model("mobilenet_v1_100", relu6=False)
    assert not any(isinstance(m, nn.ReLU6) for m in paper.modules())
    assert torch.equal(paper.stem.act(x.clone()), torch.tensor([0.0, 3.0, 10.0]))


@pytest.mark.parametrize("bad", [0, -0.5, float("nan"), float("inf")])
def test_bad_width_multipliers_name_the_layer(bad):
    with pytest.raises(ValueError, match="stem conv"):
        vertebra.create_model("mobilenet_v1_100", width_mult=bad)


def test_width_multiplier_must_be_a_number():
    with pytest.raises(TypeError, match="width_mult"):
        vertebra.create_model("mobilenet_v1_100", width_mult="0.5")


def test_thinner_nets_load_the_timm_layout():
    """No library publishes the thinner nets, but checkpoints in timm's names load into them."""
    manifest = json.loads((FIXTURES / "mobilenet_v1_100.json").read_text())["manifest"]
    model = vertebra.create_model("mobilenet_v1_025")
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    renamed = {KEYMAPS["timm_mobilenetv1"].rename(entry["key"])[0]: entry for entry in manifest}
    assert set(renamed) == set(shapes)
    thin = [{**entry, "shape": shapes[key]} for key, entry in renamed.items()]
    converted, unmatched = KEYMAPS["timm_mobilenetv1"].convert(synthetic_state_dict(thin))
    assert not unmatched
    model.load_state_dict(converted, strict=True)
