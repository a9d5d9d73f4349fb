"""What "Searching for MobileNetV3" says, checked on the built networks."""
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vertebra
from vertebra.layers import SqueezeExcite
from vertebra.testing import synthetic_state_dict

FIXTURES = Path(__file__).parents[1] / "fixtures" / "reference"

# Tables 1 and 2 written out again: (kernel, exp size, #out, SE, NL, stride) per bneck
TABLE_1 = [(3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
           (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
           (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
           (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
           (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1)]
TABLE_2 = [(3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
           (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
           (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
           (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)]


def bnecks(model):
    return [block for stage in model.stages for block in stage]


def table_row(block):
    dw = block.dw.conv
    nonlinearity = {nn.ReLU: "RE", nn.Hardswish: "HS"}[type(block.dw.act)]
    return (dw.kernel_size[0], dw.out_channels, block.project.conv.out_channels,
            not isinstance(block.se, nn.Identity), nonlinearity, dw.stride[0])


@pytest.mark.parametrize("name, table, last, hidden", [("mobilenet_v3_large", TABLE_1, 960, 1280),
                                                       ("mobilenet_v3_small", TABLE_2, 576, 1024)])
def test_the_papers_tables(name, table, last, hidden):
    model = vertebra.create_model(name)
    assert model.stem.conv.out_channels == 16 and model.stem.conv.stride == (2, 2)
    assert isinstance(model.stem.act, nn.Hardswish)
    assert [table_row(block) for block in bnecks(model)] == table
    # conv2d 1x1 with BN and h-swish, pool, then two 1x1 convs without BN ("NBN") on the pooled map
    assert model.conv_head.conv.out_channels == model.num_features == last
    assert isinstance(model.conv_head.act, nn.Hardswish)
    head = model.head
    assert (head.hidden.in_features, head.hidden.out_features, head.fc.in_features) == (last, hidden, hidden)
    assert head.hidden.bias is not None and not any(isinstance(m, nn.BatchNorm1d) for m in head.modules())
    # Small: Table 2 marks its last 1x1 conv with SE, the released model (and torchvision) has none
    assert not any(isinstance(m, SqueezeExcite) for m in model.conv_head.modules())


def test_h_swish_and_the_hard_sigmoid_gate():
    x = torch.linspace(-5, 5, 41)
    block = bnecks(vertebra.create_model("mobilenet_v3_large"))[-1]
    torch.testing.assert_close(block.dw.act(x.clone()), x * F.relu6(x + 3) / 6)  # h-swish
    torch.testing.assert_close(block.se.gate(x.clone()), F.relu6(x + 3) / 6)  # h-sigmoid
    assert isinstance(block.se.act, nn.ReLU)


def test_squeeze_is_a_quarter_of_the_expansion_rounded_to_8():
    blocks = bnecks(vertebra.create_model("mobilenet_v3_large"))
    squeezes = {block.dw.conv.out_channels: block.se.fc1.out_channels
                for block in blocks if not isinstance(block.se, nn.Identity)}
    assert squeezes == {72: 24, 120: 32, 480: 120, 672: 168, 960: 240}


def test_batch_norm_is_tensorflows():
    model = vertebra.create_model("mobilenet_v3_small")
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.01 for m in norms)


def test_no_classes_leaves_the_pooled_features_without_the_hidden_layer():
    model = vertebra.create_model("mobilenet_v3_large", num_classes=0).eval()
    assert not any(k.startswith("head.") for k in model.state_dict())
    with torch.no_grad():
        x = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(model(x), model.forward_features(x).mean((2, 3)))
    model.reset_classifier(10)
    assert model.head.hidden.out_features == 1280 and model(x).shape == (1, 10)


def test_width_multiplier():
    model = vertebra.create_model("mobilenet_v3_large", width_mult=0.75)
    assert [block.project.conv.out_channels for block in bnecks(model)][-1] == 120
    assert model.num_features == 720 and model.head.hidden.out_features == 960
    with pytest.raises(ValueError, match="stem conv"):
        vertebra.create_model("mobilenet_v3_small", width_mult=-1.0)


def test_pretrained_with_other_classes_keeps_the_body(tmp_path):
    """torchvision's checkpoint loads; a new number of classes re-initialises only the classifier,
    the hidden layer before it keeps its pretrained weights."""
    manifest = json.loads((FIXTURES / "mobilenet_v3_small.json").read_text())["manifest"]
    state = synthetic_state_dict(manifest)
    torch.save(state, tmp_path / "small.pth")
    model = vertebra.create_model("mobilenet_v3_small", num_classes=10, pretrained=tmp_path / "small.pth")
    assert torch.equal(model.stem.conv.weight, state["features.0.0.weight"])
    assert model.head.hidden.weight.shape == state["classifier.0.weight"].shape
    assert torch.equal(model.head.hidden.weight, state["classifier.0.weight"])
    assert model.head.fc.out_features == 10
