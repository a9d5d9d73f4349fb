"""What the two ShuffleNet papers say, checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra
from vertebra.analysis import count_macs
from vertebra.models.shufflenet import ShuffleNetV1, ShuffleNetV2, ShuffleUnit


def meta(name, **kwargs):
    with torch.device("meta"):
        return vertebra.create_model(name, **kwargs)


# -- ShuffleNet V1 (Zhang et al. 2018) ----------------------------------------------------------
TABLE_1 = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
           8: (384, 768, 1536)}


@pytest.mark.parametrize("g", sorted(TABLE_1))
def test_v1_table_1_widths_repeats_and_groups(g):
    model = meta(f"shufflenet_v1_g{g}_x1_0")
    assert [i.channels for i in model.feature_info] == list(TABLE_1[g])
    assert [len(stage) for stage in model.stages] == [4, 8, 4]
    assert [unit.dwconv.conv.stride[0] for stage in model.stages for unit in stage][:5] == [2, 1, 1, 1, 2]
    units = [unit for stage in model.stages for unit in stage]
    # "we do not apply group convolution on the first pointwise layer of Stage 2"
    assert units[0].gconv1.conv.groups == 1
    assert all(u.gconv1.conv.groups == g for u in units[1:]) and all(u.gconv2.conv.groups == g for u in units)
    for unit in units:  # bottleneck a quarter of the output; the 3x3 is depthwise
        assert unit.gconv1.conv.out_channels == unit.gconv2.conv.in_channels
        assert unit.dwconv.conv.groups == unit.dwconv.conv.in_channels == unit.gconv1.conv.out_channels
    assert [stage[0].gconv1.conv.out_channels for stage in model.stages] == [w // 4 for w in TABLE_1[g]]


# (g, scale, MFLOPs (multiply-adds)): the paper's Table 1 (1x), Table 2 (0.5x: one figure for the
# row) and Table 5 (g = 3); at g = 8, where the paper has none (0.5x: Table 2's 38 cannot hold with
# Conv1 rounded to 16 maps), the authors' code README
PUBLISHED_MFLOPS = [(1, "x1_0", 143), (2, "x1_0", 140), (3, "x1_0", 137), (4, "x1_0", 133), (8, "x1_0", 137),
                    (1, "x0_5", 38), (2, "x0_5", 38), (3, "x0_5", 38), (4, "x0_5", 38),
                    (3, "x1_5", 292), (3, "x2_0", 524),
                    (8, "x0_5", 40), (8, "x1_5", 290), (8, "x2_0", 522)]


@pytest.mark.parametrize("g, scale, mflops", PUBLISHED_MFLOPS)
def test_v1_complexity_matches_the_published_mflops(g, scale, mflops):
    assert count_macs(meta(f"shufflenet_v1_g{g}_{scale}"), 224) / 1e6 == pytest.approx(mflops, rel=0.02)


def test_v1_scale_multiplies_every_stage_width():
    for scale, s in (("x0_5", 0.5), ("x1_5", 1.5), ("x2_0", 2.0)):
        model = meta(f"shufflenet_v1_g3_{scale}")
        assert [i.channels for i in model.feature_info] == [int(w * s) for w in TABLE_1[3]]


def branch(unit, x):
    return unit.gconv2(unit.dwconv(unit.shuffle(unit.gconv1(x))))


def reached_input_groups(unit, groups, channels):
    """Which input channel groups the first output group of the unit's branch depends on."""
    x = torch.randn(1, channels, 6, 6, requires_grad=True)
    branch(unit, x)[:, : channels // groups].sum().backward()
    per_group = x.grad.abs().sum((0, 2, 3)).view(groups, -1).sum(1)
    return (per_group > 0).tolist()


def test_v1_channel_shuffle_lets_each_group_see_every_group():
    unit = ShuffleUnit(48, 48, 12, 1, groups=3).eval()
    with torch.no_grad():
        for parameter in unit.parameters():
            parameter.uniform_(0.5, 1.0)  # all positive: no accidental zeros
    assert reached_input_groups(unit, 3, 48) == [True, True, True]
    unit.shuffle = nn.Identity()  # without the shuffle, stacked group convs stay in their group
    assert reached_input_groups(unit, 3, 48) == [True, False, False]


def test_v1_units_add_at_stride_1_and_concatenate_an_avg_pooled_shortcut_at_stride_2():
    x = torch.rand(1, 24, 8, 8)  # non-negative, as every unit's input (after a ReLU)
    down = ShuffleUnit(24, 240, 60, 2, groups=3, group_first=False).eval()
    same = ShuffleUnit(240, 240, 60, 1, groups=3).eval()
    with torch.no_grad():
        out = down(x)
        assert out.shape == (1, 240, 4, 4) and down.gconv2.conv.out_channels == 240 - 24
        torch.testing.assert_close(out[:, :24], nn.functional.avg_pool2d(x, 3, 2, 1))
        torch.testing.assert_close(same(out), torch.relu(branch(same, out) + out))
        assert (same.dwconv(torch.randn(1, 60, 4, 4)) < 0).any()  # no ReLU after the depthwise conv


def test_v1_rounding_where_widths_do_not_split():
    # 0.5x at g = 4: a quarter of 136 is 34, rounded up to a multiple of 4
    model = meta("shufflenet_v1_g4_x0_5")
    assert model.stages[0][0].gconv1.conv.out_channels == 36
    assert meta("shufflenet_v1_g8_x0_5").stem.conv1.conv.out_channels == 16  # 192 - 12 = 180 does not split
    assert meta("shufflenet_v1_g3_x1_5").stem.conv1.conv.out_channels == 24  # the authors' Conv1 at 1.5x


def test_v1_bad_scaling_raises_naming_the_stage():
    with pytest.raises(ValueError, match=r"stage 2: scale 0.3 gives 82 output channels; with g=4"):
        ShuffleNetV1(4, 0.3)
    with pytest.raises(ValueError, match="stage 2: scale 0.01 gives 2 output channels"):
        ShuffleNetV1(3, 0.01)
    with pytest.raises(ValueError, match=r"Conv1: 20 output channels; with g=8"):
        vertebra.create_model("shufflenet_v1_g8_x1_0", stem_width=20)
    with pytest.raises(ValueError, match="groups must be one of"):
        ShuffleNetV1(5, 1.0)


def test_v1_cards_say_what_their_figures_are():
    published = vertebra.model_info("shufflenet_v1_g3_x1_0")
    assert published.params == 1_900_000 and published.params_tolerance > 0
    assert "authors' code README" in published.reference and "137 MFLOPs" in published.notes
    assert published.macs == 137_000_000 and published.macs_tolerance == 0.02
    unpublished = vertebra.model_info("shufflenet_v1_g2_x1_5")
    assert unpublished.params is None and "none published" in unpublished.reference
    assert unpublished.macs is None and "no MFLOPs" in unpublished.notes


# -- ShuffleNet V2 (Ma et al. 2018) -------------------------------------------------------------
TABLE_5 = {"x0_5": (48, 96, 192, 1024), "x1_0": (116, 232, 464, 1024), "x1_5": (176, 352, 704, 1024),
           "x2_0": (244, 488, 976, 2048)}


@pytest.mark.parametrize("scale", sorted(TABLE_5))
def test_v2_table_5_widths_and_repeats(scale):
    model = meta(f"shufflenet_v2_{scale}")
    assert [i.channels for i in model.feature_info] + [model.num_features] == list(TABLE_5[scale])
    assert [len(stage) for stage in model.stages] == [4, 8, 4]
    assert [i.reduction for i in model.feature_info] == [8, 16, 32]
    assert model.conv5.conv.out_channels == TABLE_5[scale][-1]


def test_v2_complexity_of_table_5():
    assert count_macs(meta("shufflenet_v2_x1_0"), 224) / 1e6 == pytest.approx(146, rel=0.01)
    assert count_macs(meta("shufflenet_v2_x2_0"), 224) / 1e6 == pytest.approx(591, rel=0.02)


def test_v2_channel_split_keeps_half_and_shuffles_it_into_the_even_channels():
    model = vertebra.create_model("shufflenet_v2_x1_0").eval()
    unit = model.stages[0][1]
    x = torch.randn(1, 116, 7, 7)
    with torch.no_grad():
        out = unit(x)
    assert torch.equal(out[:, 0::2], x[:, :58])  # the identity half, interleaved by the 2-group shuffle
    # the other branch keeps an equal width throughout (guideline G1) and has no group convolutions
    convs = [m for m in unit.branch_main.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.in_channels == c.out_channels == 58 for c in convs)
    assert [c.groups for c in convs] == [1, 58, 1]


def test_v2_downsampling_unit_has_no_split_and_doubles_the_width():
    unit = vertebra.create_model("shufflenet_v2_x1_0").stages[1][0]
    assert unit.branch_proj.dw.conv.in_channels == unit.branch_main.pw1.conv.in_channels == 116
    assert unit.branch_proj.pw.conv.out_channels == unit.branch_main.pw2.conv.out_channels == 116
    with torch.no_grad():
        assert unit.eval()(torch.randn(1, 116, 8, 8)).shape == (1, 232, 4, 4)


def test_v2_widths_must_split_into_two_branches():
    with pytest.raises(ValueError, match="stage 3: 233 output channels do not split"):
        ShuffleNetV2((116, 233, 464))
