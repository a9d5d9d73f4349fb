"""What the four papers of the ResNet line say, checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra


def stride(conv_norm_act):
    return conv_norm_act.conv.stride[0]


def test_torchvision_stride_placement_and_the_papers_option():
    first = vertebra.create_model("resnet50").stages[1][0]
    assert (stride(first.conv1), stride(first.conv2)) == (1, 2)
    paper = vertebra.create_model("resnet50", stride_in_1x1=True).stages[1][0]
    assert (stride(paper.conv1), stride(paper.conv2)) == (2, 1)
    assert "stride_in_1x1=True" in vertebra.model_info("resnet50").notes


def test_resnext_cardinality_is_a_grouped_3x3():
    block = vertebra.create_model("resnext50_32x4d").stages[0][0]
    assert block.conv2.conv.groups == 32 and block.conv2.conv.in_channels == 32 * 4
    wide = vertebra.create_model("resnext101_32x8d").stages[3][0]
    assert wide.conv2.conv.groups == 32 and wide.conv2.conv.out_channels == 32 * 8 * 8


def test_squeeze_excitation_blocks():
    block = vertebra.create_model("se_resnet50").stages[1][0]
    assert stride(block.conv1) == 2  # the SENet models keep the paper's stride placement
    assert block.se.fc1.out_channels == 512 // 16 and block.se.fc2.out_channels == 512
    assert stride(vertebra.create_model("se_resnext50_32x4d").stages[1][0].conv2) == 2
    assert vertebra.create_model("se_resnet50").stem.pool.ceil_mode


def test_senet154_has_the_four_modifications_of_its_appendix():
    model = vertebra.create_model("senet154")
    assert [m.conv.kernel_size for m in (model.stem.conv1, model.stem.conv2, model.stem.conv3)] == [(3, 3)] * 3
    block = model.stages[0][0]
    assert block.conv1.out_channels == block.conv2.out_channels // 2  # first 1x1 halved
    assert model.stages[1][0].downsample.conv.kernel_size == (3, 3)  # 3x3 stride-2 projection
    assert model.head.drop.p == 0.2


def test_pre_activation_keeps_a_clean_identity_path():
    """A unit whose residual branch is zero passes its input through unchanged, negatives too;
    the original unit applies ReLU after the addition and cannot."""
    x = torch.randn(2, 256, 8, 8)
    preact = vertebra.create_model("preact_resnet50").eval().stages[0][1]
    original = vertebra.create_model("resnet50").eval().stages[0][1]
    with torch.no_grad():
        assert torch.equal(preact(x), x)
        assert torch.equal(original(x), torch.relu(x))
    untouched = vertebra.create_model("preact_resnet50", zero_init_last=False).stages[0][1]
    assert untouched.conv3.weight.abs().sum() > 0


def test_pre_activation_ends_with_bn_relu():
    model = vertebra.create_model("preact_resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (model.forward_features(x) >= 0).all()
        last_stage = model.stages(model.stem(x))
        assert (last_stage < 0).any()
        torch.testing.assert_close(model.forward_features(x), model.norm(last_stage))


@pytest.mark.parametrize("name, depth", [("preact_resnet110", 110), ("preact_resnet164", 164),
                                         ("preact_resnet1001", 1001)])
def test_cifar_networks_have_the_papers_depth(name, depth):
    model = vertebra.create_model(name)
    projections = {id(m.downsample) for stage in model.stages for m in stage if m.downsample is not None}
    weighted = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in projections]
    assert len(weighted) == depth
    assert model.stem.conv1.kernel_size == (3, 3) and model.stem.conv1.out_channels == 16


def test_stochastic_depth_grows_linearly_with_depth():
    model = vertebra.create_model("resnet50", drop_path_rate=0.2)
    rates = [block.drop_path.drop_prob for stage in model.stages for block in stage]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2) and rates == sorted(rates)


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="stem must be"):
        vertebra.create_model("resnet18", stem="huge")
    with pytest.raises(ValueError, match="BasicBlock supports only"):
        vertebra.create_model("resnet18", groups=32)
