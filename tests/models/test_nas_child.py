"""The NAS child network: genotypes (nas_cnn, mnas_blocks) built under the model contract."""
import copy
import json

import pytest
import torch
from torch import nn

import vertebra
from vertebra.layers import InvertedResidual, SeparableConv, SqueezeExcite
from vertebra.models.nas_child import (EXAMPLE_GENOTYPE, check_genotype, describe_genotype, pad_concat,
                                       unconsumed_layers)


def layer(h=3, w=3, filters=24, stride=1, inputs=()):
    return {"filter_height": h, "filter_width": w, "filters": filters, "stride": stride,
            "inputs": list(inputs)}


def nas_cnn(*layers):
    return {"space": "nas_cnn", "layers": list(layers)}


def mnas(**overrides):
    stage = {"block": "mbconv", "kernel": 3, "expansion": 6, "se": False, "layers": 1, **overrides}
    return {"space": "mnas_blocks", "stages": [dict(stage) for _ in range(7)]}


def convs(model):
    return [stage.conv.conv for stage in model.stages if isinstance(stage.conv, nn.Sequential)]


def test_two_inputs_of_different_sizes_are_padded_and_concatenated():
    genotype = nas_cnn(layer(filters=24), layer(filters=36, stride=2, inputs=[0]),
                       layer(h=3, w=5, filters=48, inputs=[0, 1]), layer(filters=64, inputs=[1]))
    model = vertebra.create_model("nas_child", genotype=genotype, num_classes=3).eval()
    conv = convs(model)
    assert [c.in_channels for c in conv] == [3, 24, 24 + 36, 36]
    assert conv[2].kernel_size == (3, 5) and conv[2].padding == (1, 2)
    # layers 2 and 3 reach the classifier: 48 + 64 channels at the larger (unstrided) size
    assert unconsumed_layers(check_genotype(genotype)["layers"]) == [2, 3]
    assert model.num_features == model.head.fc.in_features == 48 + 64
    assert [(i.channels, i.reduction) for i in model.feature_info] == [
        (24, 1), (36, 2), (48, 1), (64, 2), (112, 1)]
    with torch.no_grad():
        levels = vertebra.create_model("nas_child", genotype=genotype, features_only=True).eval()(
            torch.randn(2, 3, 32, 32))
        assert [tuple(x.shape[1:]) for x in levels] == [(24, 32, 32), (36, 16, 16), (48, 32, 32),
                                                        (64, 16, 16), (112, 32, 32)]
        # the strided layer 3 is zero-padded at the bottom and right in the classifier's input
        assert levels[-1][:, 48:, 16:, :].abs().sum() == 0 and levels[-1][:, 48:, :16, :16].abs().sum() > 0
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_pad_concat_pads_zeros_at_the_bottom_and_right():
    big, small = torch.ones(1, 1, 4, 4), torch.full((1, 2, 2, 3), 2.0)
    out = pad_concat([big, small])
    assert out.shape == (1, 3, 4, 4)
    assert torch.equal(out[:, 1:, :2, :3], small) and out[:, 1:].sum() == small.sum()
    assert pad_concat([big]) is big


def test_a_layer_without_inputs_reads_the_image_or_the_stem():
    genotype = nas_cnn(layer(filters=24), layer(filters=36, inputs=[]))
    grey = vertebra.create_model("nas_child", genotype=genotype, in_chans=1)
    assert [c.in_channels for c in convs(grey)] == [1, 1]
    imagenet = vertebra.create_model("nas_child", genotype=genotype, small_input=False)
    assert [c.in_channels for c in convs(imagenet)] == [32, 32]
    # both layers are unconsumed: the classifier sees both
    assert imagenet.num_features == 60 and imagenet.default_input_size == 224


def test_input_pool_and_the_imagenet_stem_set_the_reductions():
    pooled = vertebra.create_model("nas_child", input_pool=4).eval()
    assert [i.reduction for i in pooled.feature_info] == [4, 4, 4, 8, 8, 8, 8] and pooled.min_input_size == 4
    with torch.no_grad():
        assert pooled.forward_features(torch.randn(1, 3, 32, 32)).shape[-1] == 4
    imagenet = vertebra.create_model("nas_child", small_input=False, num_classes=1000).eval()
    assert [i.reduction for i in imagenet.feature_info][::3] == [4, 8, 8]
    with torch.no_grad():
        assert imagenet(torch.randn(1, 3, 224, 224)).shape == (1, 1000)
    with pytest.raises(ValueError, match="input_pool must be >= 1"):
        vertebra.create_model("nas_child", input_pool=0)


def test_strides_past_the_map_size_leave_one_pixel():
    # six stride-2 layers on 8x8 pooled digits: the maps stop at 1x1, the child still runs
    model = vertebra.create_model("nas_child", genotype=nas_cnn(
        layer(stride=2), *(layer(stride=2, inputs=[i]) for i in range(5))), input_pool=4).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 24, 1, 1)


def test_default_is_the_example_genotype():
    model = vertebra.create_model("nas_child")
    assert model.genotype == check_genotype(EXAMPLE_GENOTYPE) and model.num_classes == 10
    strides = [c.stride[0] for c in convs(model)]
    assert len(strides) == 6 and strides.count(2) == 1
    assert any(len(l["inputs"]) > 1 for l in EXAMPLE_GENOTYPE["layers"])
    card = vertebra.model_info("nas_child")
    assert (card.family, card.arxiv, card.input_size) == ("nas", "1611.01578", 32)
    assert card.params is None and card.macs is None
    assert "genotype" in card.notes and "small_input=False" in card.notes


def test_genotype_json_file_round_trip(tmp_path):
    genotype = nas_cnn(layer(h=7, w=1, filters=64), layer(h=1, w=7, inputs=[0]),
                       layer(stride=2, inputs=[1, 0]))
    path = tmp_path / "child.json"
    path.write_text(json.dumps(genotype))
    from_dict = vertebra.create_model("nas_child", genotype=genotype, num_classes=4).eval()
    for source in (path, str(path)):
        from_file = vertebra.create_model("nas_child", genotype=source, num_classes=4).eval()
        assert from_file.genotype == from_dict.genotype == check_genotype(genotype)
        from_file.load_state_dict(from_dict.state_dict())
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.equal(from_file(x), from_dict(x))
    assert from_dict.genotype["layers"][2]["inputs"] == [0, 1]  # normalized: sorted
    assert json.loads(json.dumps(from_dict.genotype)) == from_dict.genotype


def test_mnas_blocks_builds_the_skeleton_with_each_block_type():
    genotype = mnas(layers=2)
    kinds = ["conv", "sepconv", "mbconv", "mbconv", "sepconv", "conv", "mbconv"]
    for stage, kind in zip(genotype["stages"], kinds):
        stage["block"] = kind
    genotype["stages"][2].update(se=True, kernel=5, expansion=3)
    model = vertebra.create_model("nas_child", genotype=genotype, small_input=False).eval()
    assert model.stem.conv.conv.stride == (2, 2) and model.stem.conv.conv.out_channels == 32
    assert [(i.channels, i.reduction) for i in model.feature_info] == [
        (16, 2), (24, 4), (40, 8), (80, 16), (112, 16), (160, 32), (320, 32)]
    assert all(len(stage) == 2 for stage in model.stages)
    assert isinstance(model.stages[0][0], nn.Sequential) and model.stages[0][0].conv.kernel_size == (3, 3)
    assert isinstance(model.stages[1][0], SeparableConv) and not hasattr(model.stages[1][0].pw, "act")
    mbconv = model.stages[2]
    assert all(isinstance(b, InvertedResidual) for b in mbconv)
    assert isinstance(mbconv[0].se, SqueezeExcite) and mbconv[0].se.fc1.out_channels == 24 // 4
    assert mbconv[0].dw.conv.kernel_size == (5, 5) and mbconv[0].dw.conv.out_channels == 24 * 3
    assert not mbconv[0].has_shortcut and mbconv[1].has_shortcut  # identity skip where shapes match
    assert model.conv_head.conv.out_channels == model.num_features == 1280
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 10)
    small = vertebra.create_model("nas_child", genotype=mnas(se=True, block="conv")).eval()
    assert small.stem.conv.conv.stride == (1, 1) and small.feature_info[-1].reduction == 16
    assert isinstance(small.stages[0][0][1], SqueezeExcite)
    with torch.no_grad():
        assert small(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        features = vertebra.create_model("nas_child", genotype=genotype, features_only=True)(
            torch.randn(1, 3, 32, 32))
    assert [f.shape[1] for f in features] == [16, 24, 40, 80, 112, 160, 320]


def test_describe_genotype_has_a_line_per_layer_and_stage():
    text = describe_genotype(EXAMPLE_GENOTYPE)
    lines = text.splitlines()
    assert len(lines) == 1 + 6 + 1 and "layer 2: 5x5 conv, 36 filters, stride 1 <- layer 0, layer 1" in text
    assert lines[-1] == "  classifier <- layer 4, layer 5"
    text = describe_genotype(mnas(se=True, expansion=3))
    assert len(text.splitlines()) == 8
    assert "stage 3: 1 x mbconv 3x3, expansion 3, SE, 80 channels, stride 2" in text
    assert "expansion" not in describe_genotype(mnas(block="conv"))


def edit(genotype, change):
    genotype = copy.deepcopy(genotype)
    change(genotype)
    return genotype


EX = EXAMPLE_GENOTYPE
INVALID = [
    (edit(EX, lambda g: g["layers"][3].update(filter_height=4)),
     r"nas_cnn genotype, layer 3: filter_height must be one of \(1, 3, 5, 7\), got 4"),
    (edit(EX, lambda g: g["layers"][1].update(filter_width=True)), r"layer 1: filter_width must be one of"),
    (edit(EX, lambda g: g["layers"][0].update(filters=0)), r"layer 0: filters must be a positive int, got 0"),
    (edit(EX, lambda g: g["layers"][5].update(filters=3.5)), r"layer 5: filters must be a positive int"),
    (edit(EX, lambda g: g["layers"][2].update(stride=4)), r"layer 2: stride must be one of \(1, 2, 3\), got 4"),
    (edit(EX, lambda g: g["layers"][2].update(inputs=[5])),
     r"layer 2: inputs refers to layer 5, which does not come before it"),
    (edit(EX, lambda g: g["layers"][0].update(inputs=[0])), r"layer 0: inputs refers to layer 0"),
    (edit(EX, lambda g: g["layers"][3].update(inputs=[1, 1])), r"layer 3: inputs names a layer twice"),
    (edit(EX, lambda g: g["layers"][3].update(inputs="1")), r"layer 3: inputs must be a list"),
    (edit(EX, lambda g: g["layers"][4].pop("stride")), r"layer 4: missing stride \(expected keys"),
    (edit(EX, lambda g: g["layers"][4].update(kernel=3)), r"layer 4: unknown key\(s\) 'kernel'"),
    (edit(EX, lambda g: g["layers"].__setitem__(1, 3)), r"layer 1 must be an object"),
    (edit(EX, lambda g: g.update(layers=[])), r"nas_cnn genotype: layers must be a non-empty list"),
    (edit(EX, lambda g: g.update(depth=6)), r"nas_cnn genotype: unknown key\(s\) 'depth'"),
    (edit(EX, lambda g: g.pop("layers")), r"nas_cnn genotype: missing layers"),
    (edit(EX, lambda g: g.update(space="darts")),
     r"space must be one of \('nas_cnn', 'mnas_blocks', 'darts_cells'\), got 'darts'"),
    (edit(EX, lambda g: g.update(space=["nas_cnn"])), r"space must be one of .*got \['nas_cnn'\]"),
    (edit(EX, lambda g: g.pop("space")), r"space must be one of .*got None"),
    (edit(mnas(), lambda g: g["stages"][2].update(block="dconv")),
     r"mnas_blocks genotype, stage 2: block must be one of \('conv', 'sepconv', 'mbconv'\), got 'dconv'"),
    (edit(mnas(), lambda g: g["stages"][0].update(kernel=4)), r"stage 0: kernel must be one of \(3, 5, 7\)"),
    (edit(mnas(), lambda g: g["stages"][6].update(expansion=0)), r"stage 6: expansion must be a positive"),
    (edit(mnas(), lambda g: g["stages"][1].update(se=1)),
     r"stage 1: se must be one of \(False, True\), got 1$"),
    (edit(mnas(), lambda g: g["stages"][4].update(layers=0)), r"stage 4: layers must be a positive int"),
    (edit(mnas(), lambda g: g["stages"].pop()), r"stages must list 7 stages .*got 6"),
    (edit(mnas(), lambda g: g["stages"][3].pop("se")), r"stage 3: missing se"),
]


@pytest.mark.parametrize("genotype, message", INVALID)
def test_invalid_genotypes_name_the_bad_decision(genotype, message):
    with pytest.raises(ValueError, match=message):
        check_genotype(genotype)
    with pytest.raises(ValueError, match=message):
        vertebra.create_model("nas_child", genotype=genotype)


def test_bad_genotype_files_and_types(tmp_path):
    with pytest.raises(ValueError, match="genotype file .*missing.json' does not exist"):
        vertebra.create_model("nas_child", genotype=tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{'space': ")
    with pytest.raises(ValueError, match="bad.json' is not valid JSON"):
        check_genotype(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="holds a JSON list, not an object"):
        check_genotype(tmp_path / "list.json")
    with pytest.raises(TypeError, match="genotype must be a dict or the path of a JSON file, got int"):
        check_genotype(5)
    original = copy.deepcopy(EX)
    check_genotype(EX)
    assert EX == original  # checking never edits the caller's genotype
