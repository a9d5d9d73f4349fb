import json

import pytest
import torch
from torch import nn

import vertebra
from vertebra.analysis import count_macs, count_params, profile


class Pointwise(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, 1, bias=False)

    def forward(self, x):
        return self.conv(x)


def test_memory_access_of_a_1x1_convolution_is_the_shufflenet_v2_formula():
    h = w = 14
    c1, c2 = 32, 64
    result = profile(Pointwise(c1, c2), (h, w), in_chans=c1, measure=False)
    conv = next(layer for layer in result.layers if layer.name == "conv")
    assert conv.memory_access == 4 * (h * w * (c1 + c2) + c1 * c2)  # float32 bytes
    assert conv.macs == h * w * c1 * c2 and conv.params == c1 * c2
    assert conv.activations == 4 * h * w * c2 and conv.output_shape == [1, c2, h, w]


def test_layers_add_up_to_the_model_totals():
    model = vertebra.create_model("resnet50")
    result = profile(model, 64, batch_size=2, measure=False)
    assert result.params == count_params(model) == vertebra.model_info("resnet50").params
    assert result.macs == count_macs(model, 64, batch_size=2)


def test_a_block_row_holds_its_own_element_wise_ops():
    result = profile("resnet18", 64, measure=False)
    block = next(layer for layer in result.layers if layer.name == "stages.0.0")
    assert block.kind == "BasicBlock" and block.macs == 0 and block.params == 0
    assert "add" in block.ops
    out = 64 * 16 * 16 * 4  # the sum reads two maps and writes one
    assert block.memory_access >= 3 * out


def test_views_cost_nothing():
    class Reshape(nn.Module):
        def forward(self, x):
            return x.view(x.shape[0], -1, x.shape[-1]).transpose(1, 2)

    result = profile(Reshape(), 8, measure=False)
    assert result.memory_access == 0 and result.activations == 0


def test_latency_is_measured_and_json_round_trips():
    result = profile("resnet18", 32, repeats=3, warmup=1)
    assert result.latency_ms > 0 and result.repeats == 3 and result.threads == torch.get_num_threads()
    assert sum(layer.latency_ms for layer in result.layers) > 0
    data = json.loads(result.to_json())
    assert data["params"] == result.params and data["layers"][0]["name"] == result.layers[0].name
    assert result.table(top=5).row_count == 6  # five layers and the total


# MACs at 224 as the papers state them ("FLOPs" there are multiply-adds), with the tolerance
# their rounding allows; MobileNet V3-Large's card explains its 1.1% gap (the authors' own
# release lists 217M for the same model).
PAPER_MACS = {
    "mobilenet_v1_100": (569e6, 0.005),  # Howard et al. 2017, Table 8
    "mobilenet_v2_100": (300e6, 0.01),  # Sandler et al. 2018, Table 4
    "mobilenet_v3_large": (219e6, 0.02),  # Howard et al. 2019, Table 3
    "shufflenet_v2_x1_0": (146e6, 0.01),  # Ma et al. 2018, Table 8
    "resnet50": (4.1e9, 0.01),  # torchvision's v1.5 layout; the paper's 3.8e9 counts its own stride placement
    "efficientnet_b0": (0.39e9, 0.02),  # Tan & Le 2019, Table 2
}


@pytest.mark.parametrize("name", sorted(PAPER_MACS))
def test_paper_figures(name):
    macs, tolerance = PAPER_MACS[name]
    with torch.device("meta"):
        model = vertebra.create_model(name)
    assert count_macs(model, 224) == pytest.approx(macs, rel=tolerance)


def test_resnet50_with_the_papers_stride_placement():
    """He et al. 2015, Table 1: 3.8 x 10^9 FLOPs, with the stride on the first 1x1."""
    with torch.device("meta"):
        paper = vertebra.create_model("resnet50", stride_in_1x1=True)
    assert count_macs(paper, 224) == pytest.approx(3.8e9, rel=0.08)


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 32x32, got 16x16"):
        profile("resnet18", 16, measure=False)
    with pytest.raises(TypeError, match="nn.Module or a model name"):
        profile(42, 32)
    with pytest.raises(ValueError, match="failed on an input of shape \\(1, 3, 8, 8\\)"):
        profile(Pointwise(5, 2), 8)
    with pytest.raises(ValueError, match="positive"):
        profile("resnet18", 64, batch_size=0)


def test_saved_tensor_bytes_counts_what_backward_keeps():
    from vertebra.analysis import saved_tensor_bytes

    layer = nn.Linear(64, 32)
    x = torch.randn(8, 64, requires_grad=True)
    out, saved = saved_tensor_bytes(layer, x)
    assert out.shape == (8, 32) and saved >= x.numel() * 4  # the input, kept for the weight gradient
    with torch.no_grad():
        assert saved_tensor_bytes(layer, x)[1] == 0
