"""What Szegedy et al. 2017 (Inception-v4, Inception-ResNet) say, checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra
from vertebra.models.inception_v4 import InceptionModule, InceptionResNetBlock

NAMES = ("inception_v4", "inception_resnet_v1", "inception_resnet_v2")


def meta_model(name, **kwargs):
    with torch.device("meta"):  # shapes only: no memory, no compute
        return vertebra.create_model(name, **kwargs).eval()


def grids(model, size):
    """(channels, height, width) after the stem and after each stage."""
    x = model.stem(torch.zeros(1, 3, size, size, device="meta"))
    shapes = [tuple(x.shape[1:])]
    for stage in model.stages:
        x = stage(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes


@pytest.mark.parametrize("name, widths", [
    ("inception_v4", (384, 384, 1024, 1536)),  # Fig. 3 stem, Fig. 4-6 modules
    ("inception_resnet_v1", (256, 256, 896, 1792)),  # Fig. 14 stem, Fig. 10-13
    ("inception_resnet_v2", (320, 320, 1088, 1536)),  # the published model (see its card)
])
def test_299_pixels_give_the_papers_35_17_8_grids(name, widths):
    shapes = grids(meta_model(name), 299)
    assert [s[0] for s in shapes] == list(widths)
    assert [s[1:] for s in shapes] == [(35, 35), (35, 35), (17, 17), (8, 8)]


@pytest.mark.parametrize("name", NAMES)
def test_min_input_size_is_where_the_valid_convolutions_stop_fitting(name):
    model = meta_model(name)
    assert model.min_input_size == 75
    assert grids(model, 75)[-1][1:] == (1, 1)
    with pytest.raises(RuntimeError):  # one pixel less and a valid 3x3 no longer fits
        grids(model, 74)


@pytest.mark.parametrize("name, blocks", [("inception_v4", (4, 7, 3)), ("inception_resnet_v1", (5, 10, 5)),
                                          ("inception_resnet_v2", (10, 20, 10))])
def test_blocks_per_grid(name, blocks):
    stages = meta_model(name).stages
    block = InceptionResNetBlock if "resnet" in name else InceptionModule
    counts = [sum(type(m) is block for m in (stage[1:] if i else stage)) for i, stage in enumerate(stages)]
    assert counts == list(blocks)
    assert all(type(stage[0]) is InceptionModule for stage in stages[1:])  # Reduction-A, Reduction-B


@pytest.mark.parametrize("name, klmn", [("inception_v4", (192, 224, 256, 384)),
                                        ("inception_resnet_v1", (192, 192, 256, 384)),
                                        ("inception_resnet_v2", (256, 256, 384, 384))])
def test_reduction_a_has_the_filters_of_table_1(name, klmn):
    reduction = meta_model(name).stages[1][0]
    k, l, m, n = klmn
    assert reduction.branch0.conv.out_channels == n and reduction.branch0.conv.stride == (2, 2)
    assert [layer.conv.out_channels for layer in reduction.branch1] == [k, l, m]
    assert reduction.branch1[2].conv.padding == (0, 0)  # "V": valid
    assert isinstance(reduction.branch2, nn.MaxPool2d)


def test_inception_c_splits_a_branch_into_parallel_1x3_and_3x1():
    module = meta_model("inception_v4").stages[2][1]
    split = module.branch1[1]
    assert (split.branch0.conv.kernel_size, split.branch1.conv.kernel_size) == ((1, 3), (3, 1))
    assert split.out_chs == 512 and module.out_chs == 1536


def test_scaled_residual_of_figure_20():
    """The branches' sum goes through a linear 1x1, is scaled and added to the input, then ReLU."""
    block = vertebra.create_model("inception_resnet_v1").eval().stages[0][0]
    assert block.scale == 0.17 and type(block.proj) is nn.Conv2d and block.proj.bias is not None
    x = torch.randn(2, 256, 9, 9)
    with torch.no_grad():
        residual = block.proj(block.concat(x))
        torch.testing.assert_close(block(x), torch.relu(x + 0.17 * residual))
        nn.init.zeros_(block.proj.weight)
        nn.init.zeros_(block.proj.bias)
        assert torch.equal(block(x), torch.relu(x))  # a silent branch leaves the identity (rectified)


@pytest.mark.parametrize("name", ["inception_resnet_v1", "inception_resnet_v2"])
def test_residual_scales_are_between_0_1_and_0_3(name):
    stages = meta_model(name).stages
    scales = [[m.scale for m in stage if isinstance(m, InceptionResNetBlock)] for stage in stages]
    assert set(scales[0]) == {0.17} and set(scales[1]) == {0.10}
    assert set(scales[2][:-1] if name.endswith("v2") else scales[2]) == {0.20}


def test_the_published_v2_ends_unscaled_without_relu_and_widens_to_1536():
    last_block, conv = meta_model("inception_resnet_v2").stages[2][-2:]
    assert last_block.scale == 1.0 and isinstance(last_block.act, nn.Identity)
    assert conv.conv.kernel_size == (1, 1) and conv.conv.out_channels == 1536


@pytest.mark.parametrize("name", NAMES)
def test_batchnorm_epsilon_of_the_tensorflow_models(name):
    assert {m.eps for m in meta_model(name).modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}


@pytest.mark.parametrize("name", NAMES)
def test_small_input_keeps_the_weights_and_halves_32_pixels_twice(name):
    big, small = meta_model(name), meta_model(name, small_input=True)
    shapes = {k: v.shape for k, v in big.state_dict().items()}
    assert {k: v.shape for k, v in small.state_dict().items()} == shapes
    assert [s[1:] for s in grids(small, 32)] == [(32, 32), (32, 32), (16, 16), (8, 8)]
    assert [i.reduction for i in small.feature_info] == [1, 2, 4]
    assert "small_input" in vertebra.model_info(name).notes
