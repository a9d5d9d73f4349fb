"""What the EfficientNet paper says, checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra
from vertebra.models.efficientnet import stochastic_depth_rates

# torchvision 0.29.1's efficientnet_b0..b7, printed from the reference models (stem channels,
# (output channels, layers) of features.1-7, channels of the 1x1 head convolution):
#   m = torchvision.models.get_model(name); [(s[0].out_channels, len(s)) for s in m.features[1:8]]
TORCHVISION = {
    "efficientnet_b0": (32, [(16, 1), (24, 2), (40, 2), (80, 3), (112, 3), (192, 4), (320, 1)], 1280),
    "efficientnet_b1": (32, [(16, 2), (24, 3), (40, 3), (80, 4), (112, 4), (192, 5), (320, 2)], 1280),
    "efficientnet_b2": (32, [(16, 2), (24, 3), (48, 3), (88, 4), (120, 4), (208, 5), (352, 2)], 1408),
    "efficientnet_b3": (40, [(24, 2), (32, 3), (48, 3), (96, 5), (136, 5), (232, 6), (384, 2)], 1536),
    "efficientnet_b4": (48, [(24, 2), (32, 4), (56, 4), (112, 6), (160, 6), (272, 8), (448, 2)], 1792),
    "efficientnet_b5": (48, [(24, 3), (40, 5), (64, 5), (128, 7), (176, 7), (304, 9), (512, 3)], 2048),
    "efficientnet_b6": (56, [(32, 3), (40, 6), (72, 6), (144, 8), (200, 8), (344, 11), (576, 3)], 2304),
    "efficientnet_b7": (64, [(32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)], 2560),
}
# The paper's (resolution, dropout) per model.
RESOLUTION_DROPOUT = {"efficientnet_b0": (224, 0.2), "efficientnet_b1": (240, 0.2),
                      "efficientnet_b2": (260, 0.3), "efficientnet_b3": (300, 0.3),
                      "efficientnet_b4": (380, 0.4), "efficientnet_b5": (456, 0.4),
                      "efficientnet_b6": (528, 0.5), "efficientnet_b7": (600, 0.5)}


def meta(name, **kwargs):
    with torch.device("meta"):
        return vertebra.create_model(name, **kwargs)


def blocks(model):
    return [block for stage in model.stages for block in stage]


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_scaling_rule_reproduces_each_models_stages(name):
    model = meta(name)
    stem, stages, head = TORCHVISION[name]
    assert model.stem.conv.out_channels == stem
    assert [(stage[0].project.conv.out_channels, len(stage)) for stage in model.stages] == stages
    assert model.conv_head.conv.out_channels == model.num_features == head
    resolution, dropout = RESOLUTION_DROPOUT[name]
    assert model.default_input_size == resolution and model.head.drop.p == dropout


def test_b0_follows_table_1():
    model = meta("efficientnet_b0")
    first = [stage[0] for stage in model.stages]
    assert [b.dw.conv.kernel_size[0] for b in first] == [3, 3, 5, 3, 5, 5, 3]
    expanded = [b.dw.conv.out_channels // b.expand.conv.in_channels if isinstance(b.expand, nn.Sequential)
                else 1 for b in first]
    assert expanded == [1, 6, 6, 6, 6, 6, 6]  # MBConv1, then MBConv6
    # Table 1 gives each stage's input resolution: 112, 112, 56, 28, 14, 14, 7, then 7 for the head
    assert [224 // info.reduction for info in model.feature_info] == [112, 56, 28, 14, 14, 7, 7]
    assert all(b.dw.conv.groups == b.dw.conv.in_channels for b in blocks(model))  # depthwise


def test_mbconv_uses_swish_and_squeeze_excitation_of_a_quarter_of_its_input():
    model = meta("efficientnet_b0")
    for block in blocks(model):
        in_chs = block.dw.conv.in_channels if isinstance(block.expand, nn.Identity) else block.expand.conv.in_channels
        assert block.se.fc1.out_channels == max(1, in_chs // 4)  # the block's input, not its expansion
        assert block.se.fc1.in_channels == block.dw.conv.out_channels
        assert isinstance(block.dw.act, nn.SiLU) and isinstance(block.se.act, nn.SiLU)
        assert isinstance(block.se.gate, nn.Sigmoid)
    second = model.stages[1][1]  # 24 -> 144 expanded, squeezed to 6
    assert (second.dw.conv.out_channels, second.se.fc1.out_channels) == (144, 6)
    assert isinstance(model.stem.act, nn.SiLU) and isinstance(model.conv_head.act, nn.SiLU)


def test_stochastic_depth_grows_linearly_over_the_blocks():
    model = meta("efficientnet_b0")  # the paper's training setting, 0.2, is the default
    everything = blocks(model)
    assert len(everything) == 16
    for index, block in enumerate(everything):
        if block.has_shortcut:
            assert block.drop_path.drop_prob == pytest.approx(0.2 * index / 16)
        else:  # a block that changes shape has no residual branch to drop
            assert isinstance(block.drop_path, nn.Identity)
    assert sum(b.has_shortcut for b in everything) == 16 - 7
    assert stochastic_depth_rates(4, 0.4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    off = meta("efficientnet_b0", drop_path_rate=0.0)
    assert all(b.drop_path.drop_prob == 0 for b in blocks(off) if b.has_shortcut)


def test_stochastic_depth_drops_whole_samples_in_training_only():
    block = vertebra.create_model("efficientnet_b0").stages[1][1].eval()
    block.drop_path.drop_prob = 0.5
    x = torch.randn(64, 24, 4, 4)
    with torch.no_grad():
        branch = block.project(block.se(block.dw(block.expand(x))))
        torch.testing.assert_close(block(x), branch + x)  # inference keeps every branch
        block.drop_path.train()  # BatchNorm stays in eval mode, so the branch is the same
        dropped = block(x) - x
        kept = (dropped.flatten(1) != 0).any(1)
        assert 0 < kept.sum() < 64  # some samples lose the branch, some keep it (scaled by 2)
        torch.testing.assert_close(dropped[kept], 2 * branch[kept])


def test_batchnorm_follows_the_weights_it_loads():
    assert meta("efficientnet_b0").stem.bn.eps == 1e-5
    tf = meta("efficientnet_b7").stem.bn
    assert (tf.eps, tf.momentum) == (1e-3, 0.01)  # TensorFlow's BatchNorm, as the ported weights
    assert meta("efficientnet_b0", bn_eps=1e-3).stages[3][0].dw.bn.eps == 1e-3


@pytest.mark.parametrize("kwargs, message", [
    (dict(width_mult=0.0), "width_mult=0.0 rounds the stem"),
    (dict(width_mult=-1.0), "width_mult=-1.0 rounds the stem"),
    (dict(depth_mult=0.0), "depth_mult=0.0 rounds stage 0"),
    (dict(depth_mult=float("nan")), "depth_mult=nan rounds stage 0"),
])
def test_multipliers_that_leave_a_layer_nothing_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        vertebra.create_model("efficientnet_b0", **kwargs)


def test_width_and_depth_multipliers_scale_a_custom_model():
    model = meta("efficientnet_b0", width_mult=0.5, depth_mult=2.0)
    assert [len(stage) for stage in model.stages] == [2, 4, 4, 6, 6, 8, 2]
    assert [info.channels for info in model.feature_info] == [8, 16, 24, 40, 56, 96, 160]


def test_features_only_ends_before_the_head_convolution():
    model = vertebra.create_model("efficientnet_b0", features_only=True).eval()
    assert not hasattr(model.conv_head, "conv")
    with torch.no_grad():
        last = model(torch.randn(1, 3, 64, 64))[-1]
    assert last.shape == (1, 320, 2, 2)
