"""NAS search spaces as data: decisions, genotypes, sampling, and the children they build."""
import json
import random
from collections import Counter

import pytest
import torch

import vertebra
from vertebra.design.nas import SPACES, Anchor, Choice, MnasBlocksSpace, NasCnnSpace, get_space
from vertebra.models.nas_child import check_genotype

LAYER_KEYS = ["filter_height", "filter_width", "stride", "filters"]


def test_nas_cnn_decisions_come_anchor_first_per_layer():
    space = get_space("nas_cnn")
    assert isinstance(space, NasCnnSpace) and space.grows and space.default_depth == 6
    decisions = space.decisions(3)
    assert [d.name for d in decisions] == (
        [f"layer0.{k}" for k in LAYER_KEYS] + ["layer1.inputs"] + [f"layer1.{k}" for k in LAYER_KEYS]
        + ["layer2.inputs"] + [f"layer2.{k}" for k in LAYER_KEYS])
    assert decisions[0] == Choice("layer0.filter_height", (1, 3, 5, 7))
    assert decisions[2] == Choice("layer0.stride", (1, 2)) and decisions[3].options == (24, 36, 48, 64)
    assert decisions[9] == Anchor("layer2.inputs", 2)
    assert len(space.decisions()) == 6 * 4 + 5 and len(space.decisions(15)) == 15 * 4 + 14


def test_single_options_and_no_skips_drop_their_decisions():
    for strides in (None, (1,)):
        space = get_space("nas_cnn", strides=strides, skips=False)
        assert [d.name for d in space.decisions(2)] == [
            "layer0.filter_height", "layer0.filter_width", "layer0.filters",
            "layer1.filter_height", "layer1.filter_width", "layer1.filters"]
        genotype = space.genotype([3, 5, 24, 7, 1, 64], 2)
        assert [(l["stride"], l["inputs"]) for l in genotype["layers"]] == [(1, []), (1, [0])]
        assert genotype["layers"][1]["filter_height"] == 7 and genotype["layers"][1]["filters"] == 64


def test_mnas_blocks_decisions_are_fixed_at_seven_stages():
    space = get_space("mnas_blocks")
    assert isinstance(space, MnasBlocksSpace) and not space.grows and space.default_depth == 7
    names = [d.name for d in space.decisions()]
    assert names[:5] == ["stage0.block", "stage0.kernel", "stage0.expansion", "stage0.se", "stage0.layers"]
    assert len(names) == 35 and names[-1] == "stage6.layers" and space.decisions(7) == space.decisions()
    assert space.decisions()[3].options == (False, True)
    with pytest.raises(ValueError, match="fixed depth of 7 stages"):
        space.decisions(8)
    assert len(get_space("mnas_blocks", se=(True,), kernels=(5,)).decisions()) == 21


@pytest.mark.parametrize("name, settings", [
    ("nas_cnn", {}), ("nas_cnn", {"strides": None}), ("nas_cnn", {"skips": False, "filters": (16, 32)}),
    ("mnas_blocks", {}), ("mnas_blocks", {"blocks": ("mbconv",), "expansions": (3, 6)}),
])
def test_values_and_genotype_are_inverse(name, settings):
    space = get_space(name, **settings)
    rng = random.Random(1)
    for depth in ((None, 2, 9) if space.grows else (None,)):
        for _ in range(20):
            genotype = space.sample(rng, depth)
            values = space.values(genotype)
            assert len(values) == len(space.decisions(depth))
            assert space.genotype(values, depth) == genotype == check_genotype(genotype)
            assert json.loads(json.dumps(genotype)) == genotype  # plain JSON
            for decision, value in zip(space.decisions(depth), values):
                if isinstance(decision, Choice):
                    assert value in decision.options
                else:
                    assert value == sorted(value) and all(0 <= j < decision.layer for j in value)


def test_sample_is_reproducible_and_covers_every_option():
    space = get_space("nas_cnn")
    assert space.sample(random.Random(7)) == space.sample(random.Random(7))
    assert space.sample(random.Random(7)) != space.sample(random.Random(8))
    rng, seen, anchors = random.Random(0), {}, Counter()
    decisions = space.decisions()
    for _ in range(400):
        for decision, value in zip(decisions, space.values(space.sample(rng))):
            if isinstance(decision, Choice):
                seen.setdefault(decision.name, set()).add(value)
            else:
                anchors[decision.name, ()] += not value
                anchors.update((decision.name, j) for j in value)
    assert all(seen[d.name] == set(d.options) for d in decisions if isinstance(d, Choice))
    # each earlier layer is read with probability 1/2; layer 5 reads nothing (the image) 1/32 of the time
    for d in decisions:
        if isinstance(d, Anchor):
            assert all(150 < anchors[d.name, j] < 250 for j in range(d.layer))
    assert anchors["layer1.inputs", ()] > 150 and 0 < anchors["layer5.inputs", ()] < 40
    mnas = get_space("mnas_blocks")
    values = [mnas.values(mnas.sample(random.Random(seed))) for seed in range(100)]
    for index, decision in enumerate(mnas.decisions()):
        assert {v[index] for v in values} == set(decision.options)


def test_sampled_children_build_and_run():
    rng = random.Random(3)
    x = torch.randn(2, 3, 32, 32)
    for name, kwargs in (("nas_cnn", {"input_pool": 4}), ("nas_cnn", {}), ("mnas_blocks", {})):
        space = get_space(name, **({"layers": (1,)} if name == "mnas_blocks" else {}))
        genotype = space.sample(rng)
        model = vertebra.create_model("nas_child", genotype=genotype, num_classes=10, **kwargs).eval()
        with torch.no_grad():
            assert model(x).shape == (2, 10)
    deep = get_space("nas_cnn").sample(rng, 12)
    model = vertebra.create_model("nas_child", genotype=deep, input_pool=4).eval()
    with torch.no_grad():
        assert model(x).shape == (2, 10) and len(model.feature_info) == 13


def test_genotype_errors_name_the_decision():
    space = get_space("nas_cnn")
    values = space.values(space.sample(random.Random(0), 2))  # 4 + 1 + 4 values
    with pytest.raises(ValueError, match="nas_cnn at depth 2 has 9 decisions, got 8 values"):
        space.genotype(values[:-1], 2)
    bad = list(values)
    bad[1] = 4
    with pytest.raises(ValueError, match=r"layer0.filter_width must be one of \(1, 3, 5, 7\), got 4"):
        space.genotype(bad, 2)
    bad = list(values)
    bad[2] = True  # a bool is not the stride 1
    with pytest.raises(ValueError, match=r"decision layer0.stride must be one of \(1, 2\), got True"):
        space.genotype(bad, 2)
    for anchor in ([1], [0, 0], ["0"], [[0]], [False], 0):
        bad = list(values)
        bad[4] = anchor
        with pytest.raises(ValueError, match=r"layer1.inputs must be a list of distinct layers among 0..0"):
            space.genotype(bad, 2)
    bad[4] = (0,)
    assert space.genotype(bad, 2)["layers"][1]["inputs"] == [0]
    with pytest.raises(ValueError, match="depth must be a positive int, got 0"):
        space.decisions(0)
    with pytest.raises(TypeError, match="values must be a list"):
        space.genotype("1,3", 2)
    with pytest.raises(TypeError, match="rng must be a random.Random"):
        space.sample(0)


def test_values_rejects_genotypes_outside_the_space():
    genotype = {"space": "nas_cnn", "layers": [
        {"filter_height": 3, "filter_width": 3, "filters": 100, "stride": 1, "inputs": []},
        {"filter_height": 3, "filter_width": 3, "filters": 24, "stride": 2, "inputs": [0]}]}
    check_genotype(genotype)  # buildable, but not in the default space
    with pytest.raises(ValueError, match=r"nas_cnn space, layer 0: filters must be one of \(24, 36, 48, 64\)"):
        get_space("nas_cnn").values(genotype)
    genotype["layers"][0]["filters"] = 24
    with pytest.raises(ValueError, match=r"layer 1: stride must be 1 \(not a decision here\), got 2"):
        get_space("nas_cnn", strides=None).values(genotype)
    genotype["layers"][1].update(stride=1, inputs=[])
    with pytest.raises(ValueError, match=r"layer 1: inputs must be \[0\] \(not a decision here\), got \[\]"):
        get_space("nas_cnn", skips=False).values(genotype)
    with pytest.raises(ValueError, match="a nas_cnn genotype is not in the mnas_blocks space"):
        get_space("mnas_blocks").values(genotype)
    with pytest.raises(ValueError, match="layer 3: filter_height must be one of"):
        get_space("nas_cnn").values({"space": "nas_cnn", "layers": [
            {"filter_height": 3, "filter_width": 3, "filters": 24, "stride": 1, "inputs": []}] * 3 + [
            {"filter_height": 2, "filter_width": 3, "filters": 24, "stride": 1, "inputs": []}]})


@pytest.mark.parametrize("name, settings, error, message", [
    ("enas", {}, ValueError, "unknown search space 'enas'; the spaces are nas_cnn, mnas_blocks, models"),
    ("nas_cnn", {"kernels": (3,)}, TypeError, "nas_cnn has no setting.* kernels; it takes filter_heights"),
    ("nas_cnn", {"filter_heights": (3, 4)}, ValueError,
     r"filter_heights: 4 is not buildable; the options are \(1, 3, 5, 7\)"),
    ("nas_cnn", {"filters": (24, 0)}, ValueError, "filters must hold positive ints, got 0"),
    ("nas_cnn", {"filters": (24, 24)}, ValueError, "filters lists an option twice"),
    ("nas_cnn", {"strides": (1, 4)}, ValueError, "strides: 4 is not buildable"),
    ("nas_cnn", {"filter_widths": ()}, ValueError, "filter_widths must be a non-empty tuple"),
    ("nas_cnn", {"skips": 1}, TypeError, "skips must be a bool"),
    ("mnas_blocks", {"blocks": ("mbconv", "fused")}, ValueError, "blocks: 'fused' is not buildable"),
    ("mnas_blocks", {"se": (0, 1)}, ValueError, r"se: 0 is not buildable; the options are \(False, True\)"),
    ("mnas_blocks", {"layers": (1, 2.5)}, ValueError, "layers must hold positive ints"),
    ("models", {"candidates": ("mobilenet_v2_*", "resnet9000*")}, ValueError,
     "candidate pattern 'resnet9000\\*' matches no registered model"),
    ("models", {"candidates": "mobilenet_v2_*"}, ValueError, "a non-empty tuple of model name patterns"),
])
def test_bad_spaces_and_settings_are_clear_errors(name, settings, error, message):
    with pytest.raises(error, match=message):
        get_space(name, **settings)


def test_describe_and_spaces():
    assert tuple(SPACES) == ("nas_cnn", "mnas_blocks", "models")
    space = get_space("mnas_blocks")
    genotype = space.sample(random.Random(0))
    lines = space.describe(genotype).splitlines()
    assert len(lines) == 8 and lines[1].startswith("  stage 0: ")
    nas_cnn = get_space("nas_cnn")
    assert len(nas_cnn.describe(nas_cnn.sample(random.Random(0), 4)).splitlines()) == 6
    with pytest.raises(ValueError, match="not in the nas_cnn space"):
        get_space("nas_cnn").describe(genotype)


def test_the_models_space_is_a_set_of_registered_models():
    space = get_space("models", candidates=("shufflenet_v2_x0_5", "mobilenet_v2_0*", "mobilenet_v2_050"))
    assert space.names == ("shufflenet_v2_x0_5", "mobilenet_v2_035", "mobilenet_v2_050", "mobilenet_v2_075")
    assert [d.options for d in space.decisions()] == [space.names]
    for genotype in space.members():
        assert space.genotype(space.values(genotype)) == genotype
    assert space.sample(random.Random(0)) in space.members()
    assert space.describe({"space": "models", "model": "mobilenet_v2_050"}).startswith("mobilenet_v2_050: mobilenet_v2")
    with pytest.raises(ValueError, match="not a member of this set"):
        space.values({"space": "models", "model": "resnet50"})
    name, kwargs = space.model_args(space.members()[0], input_pool=4)
    assert (name, kwargs) == ("shufflenet_v2_x0_5", {})
    assert get_space("models", candidates=("mobilenet_v2_050",)).decisions() == []  # one model: nothing to decide
    space.check_input(32)
    with pytest.raises(ValueError, match="mobilenet_v2_035 needs 16.*leave them out of --candidates"):
        space.check_input(8)
