import json

import pytest
from torch import nn

import vertebra
from vertebra.analysis.guidelines import guidelines


@pytest.fixture(scope="module")
def resnext():
    return guidelines("resnext50_32x4d", 64, repeats=1)


def test_g1_lists_every_unequal_1x1_convolution(resnext):
    model = vertebra.create_model("resnext50_32x4d")
    expected = {name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)
                and m.kernel_size == (1, 1) and m.in_channels != m.out_channels}
    assert {f.layer for f in resnext.g1_unequal_1x1} == expected
    finding = next(f for f in resnext.g1_unequal_1x1 if f.layer == "stages.0.0.conv3.conv")
    assert finding.figures["ratio"] == 2.0 and finding.figures["over_balanced_bound"] > 1.0


def test_g2_finds_resnexts_grouped_3x3_and_no_depthwise(resnext):
    assert len(resnext.g2_group_convs) == 16  # one grouped 3x3 per block, 3 + 4 + 6 + 3 blocks
    assert all(f.figures["groups"] == 32 for f in resnext.g2_group_convs)
    assert resnext.depthwise_convs == 0


def test_g3_counts_projection_shortcuts_as_branches_and_identities_not(resnext):
    fragmented = {f.layer for f in resnext.g3_fragmented_blocks}
    assert fragmented == {"stages.0.0", "stages.1.0", "stages.2.0", "stages.3.0"}
    assert next(iter(resnext.g3_fragmented_blocks)).figures["branches"] == ["conv1", "downsample"]


def test_g4_share_is_measured_and_reported(resnext):
    assert 0 < resnext.g4_elementwise_ms < resnext.g4_total_ms
    assert resnext.g4_elementwise_share == pytest.approx(resnext.g4_elementwise_ms / resnext.g4_total_ms)
    data = json.loads(resnext.to_json())
    assert data["summary"]["G2 group convs"] == 16
    assert resnext.table().row_count >= len(resnext.g1_unequal_1x1) + 16


def test_plain_resnet_has_no_group_convolutions():
    report = guidelines("resnet18", 32, repeats=1)
    assert not report.g2_group_convs and report.g1_unequal_1x1  # only the 1x1 projections are unequal
    assert all(f.layer.endswith("downsample.conv") for f in report.g1_unequal_1x1)


def test_shufflenet_v2_departs_less_than_v1():
    """Ma et al. 2018 built V2 against G1 and G2: no 1x1 group convolutions, equal 1x1 widths."""
    v1 = guidelines("shufflenet_v1_g3_x1_0", 64, repeats=1)
    v2 = guidelines("shufflenet_v2_x1_0", 64, repeats=1)
    assert len(v2.g1_unequal_1x1) < len(v1.g1_unequal_1x1)
    assert len(v2.g2_group_convs) < len(v1.g2_group_convs) and not v2.g2_group_convs
    assert all(f.figures["groups"] == 3 for f in v1.g2_group_convs)
    assert v1.depthwise_convs == 16 and v2.depthwise_convs > 0


def test_mobilenet_v2_expands_and_projects_by_its_ratio():
    report = guidelines("mobilenet_v2_100", 64, repeats=1)
    assert not report.g2_group_convs and report.depthwise_convs == 17
    expansions = [f for f in report.g1_unequal_1x1 if f.layer.endswith("expand.conv")]
    assert expansions and all(f.figures["ratio"] == 6.0 for f in expansions)
