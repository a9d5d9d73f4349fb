"""The models that follow a paper directly, against the figures the paper prints.

No library holds these layouts, so the paper's own tables are the reference: each figure is checked
within the rounding the paper prints it with, and where a printed figure disagrees with the
paper's own layer sizes the test pins the arithmetic the card states.
"""
import pytest
import torch
from torch import nn

import vertebra

# GoogLeNet Table 1, one row per group of layers: (weights in K = 1024, operations in M = 10^6).
GOOGLENET_TABLE_1 = {"conv1": (2.7, 34), "conv2-3": (112, 360), "3a": (159, 128), "3b": (380, 304), "4a": (364, 73),
                     "4b": (437, 88), "4c": (463, 100), "4d": (580, 119), "4e": (840, 170), "5a": (1072, 54),
                     "5b": (1388, 71), "linear": (1000, 1)}


def row_of(name: str) -> str:
    if name.startswith("stem.conv1"):
        return "conv1"
    if name.startswith("stages.0."):
        return "conv2-3"
    if name.startswith("head."):
        return "linear"
    return name.split(".")[2].removeprefix("inception")


def rows(model: nn.Module, size: int = 224) -> dict[str, list[int]]:
    """[weights, multiply-adds] per Table 1 row: convolution and linear weights, no biases."""
    totals: dict[str, list[int]] = {}

    def count(name):
        def hook(module, args, out):
            per_output = module.weight.numel() // (module.out_channels if isinstance(module, nn.Conv2d)
                                                   else module.out_features)
            entry = totals.setdefault(row_of(name), [0, 0])
            entry[0] += module.weight.numel()
            entry[1] += out[0].numel() * per_output
        return hook

    hooks = [m.register_forward_hook(count(n)) for n, m in model.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear)) and not n.startswith("aux")]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return totals


def test_googlenet_against_table_1():
    counted = rows(vertebra.create_model("googlenet", aux_logits=False))
    assert counted["conv1"] == [2_712, 34_019_328]  # 7x7 depthwise x8 (1,176) then 1x1 24->64 (1,536)
    for row, (weights_k, ops_m) in GOOGLENET_TABLE_1.items():
        weights, macs = counted[row]
        if row == "5a":  # the table prints 54M and 1072K; its own filter counts give these
            assert (weights, macs) == (1_042_432, 1_042_432 * 49)
            continue
        assert abs(macs / 1e6 - ops_m) <= 0.7, (row, macs)  # each row within its printed rounding
    total_macs = sum(macs for _, macs in counted.values())
    assert total_macs / 1e6 == pytest.approx(1502 - 54 + 51.08, abs=0.5)  # Table 1's total, 5a as its filters
    total_weights = sum(weights for weights, _ in counted.values())
    assert total_weights == 6_983_576 and total_weights / 1024 == pytest.approx(6797.7, rel=0.004)
    dense = rows(vertebra.create_model("googlenet", stem="dense", aux_logits=False))["conv1"]
    assert dense == [9_408, 9_408 * 112 * 112]  # the Caffe model's conv1: 118M


def test_googlenet_auxiliary_heads_pool_5x5_stride_3_at_224():
    model = vertebra.create_model("googlenet").eval()
    x = torch.randn(1, 512, 14, 14)
    seen = []
    handle = model.aux1.conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        model.aux1(x)
    handle.remove()
    windows = torch.stack([x[..., 3 * i:3 * i + 5, :][..., 3 * j:3 * j + 5].mean((-2, -1))
                           for i in range(4) for j in range(4)], -1).view(1, 512, 4, 4)
    assert torch.allclose(seen[0], windows, atol=1e-6)  # windows of 5 at 0, 3, 6, 9
    torchvision_form = vertebra.create_model("googlenet_tv").eval()
    assert not torchvision_form.aux1.paper_pool  # adaptive, as torchvision's weights expect


def test_bn_inception_conv1_is_the_appendix_separable_convolution():
    counted = rows(vertebra.create_model("bn_inception"))
    assert counted["conv1"] == [2_712, 34_019_328]
    assert sum(p.numel() for p in vertebra.create_model("bn_inception").parameters()) == 11_278_528
    assert sum(p.numel() for p in vertebra.create_model("bn_inception", stem="dense").parameters()) == 11_285_224
    with pytest.raises(ValueError, match="stem must be 'separable'"):
        vertebra.create_model("bn_inception", stem="7x7")


@pytest.mark.parametrize("name, printed_millions", [("preact_resnet110", 1.7), ("preact_resnet164", 1.7),
                                                    ("preact_resnet1001", 10.2)])
def test_preact_cifar_weights_round_to_the_papers_table(name, printed_millions):
    model = vertebra.create_model(name)
    weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert round(weights / 1e6, 1) == printed_millions  # Table 1-2 count weights, not BatchNorm's


def test_preact_resnet110_shortcuts_are_parameter_free_and_the_first_unit_reads_the_activation():
    model = vertebra.create_model("preact_resnet110").eval()
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())
    transition = model.stages[1][0]
    x = torch.randn(2, 16, 32, 32)
    with torch.no_grad():
        expected = torch.cat([transition.norm1(x)[:, :, ::2, ::2], torch.zeros(2, 16, 16, 16)], 1)
        assert torch.equal(transition.downsample(transition.norm1(x)), expected)
        first = model.stages[0][0]
        nn.init.zeros_(first.conv2.weight)  # the residual branch silenced: what is left is the shortcut
        assert torch.allclose(first(x), first.norm1(x))
    with torch.no_grad():  # the paper's He initialisation: branches do not start at zero
        assert vertebra.create_model("preact_resnet110").stages[0][0].conv2.weight.abs().sum() > 0

