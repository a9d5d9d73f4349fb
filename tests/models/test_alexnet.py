"""What Krizhevsky et al. 2012 (and "One weird trick", 2014) say, checked on the built networks."""
import pytest
import torch
from torch import nn

import vertebra


def convs(model):
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


def test_paper_filters_kernels_and_the_two_gpu_split():
    model = vertebra.create_model("alexnet")
    assert [c.out_channels for c in convs(model)] == [96, 256, 384, 384, 256]
    assert [c.kernel_size[0] for c in convs(model)] == [11, 5, 3, 3, 3]
    assert convs(model)[0].stride == (4, 4)
    # conv3 reads both GPUs' maps; conv2, conv4 and conv5 only their own GPU's half
    assert [c.groups for c in convs(model)] == [1, 2, 1, 2, 2]
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [4096, 4096, 1000]


def test_grouped_conv2_keeps_the_towers_apart():
    conv2 = vertebra.create_model("alexnet").eval().stages[1].conv2
    x = torch.randn(1, 96, 13, 13)
    moved = x.clone()
    moved[:, 48:] += 1.0  # only the second GPU's input maps change
    with torch.no_grad():
        a, b = conv2(x), conv2(moved)
    assert torch.equal(a[:, :128], b[:, :128]) and not torch.equal(a[:, 128:], b[:, 128:])


def test_response_normalisation_is_the_papers_formula_within_each_tower():
    """b = a / (k + alpha * sum over n=5 neighbouring maps of a^2)^beta, k=2, alpha=1e-4, beta=0.75,
    the neighbours taken among the maps of the same GPU only."""
    lrn = vertebra.create_model("alexnet").stages[0].lrn1
    a = torch.randn(1, 16, 3, 3) * 10

    def papers(maps):
        squares = torch.nn.functional.pad(maps ** 2, (0, 0, 0, 0, 2, 2))
        return maps / (2 + 1e-4 * sum(squares[:, i:i + maps.shape[1]] for i in range(5))) ** 0.75

    torch.testing.assert_close(lrn(a), torch.cat([papers(a[:, :8]), papers(a[:, 8:])], 1))
    changed = a.clone()
    changed[:, 8:] *= 10  # the second GPU's maps
    assert torch.equal(lrn(a)[:, :8], lrn(changed)[:, :8])  # the first GPU never sees them
    assert hasattr(vertebra.create_model("alexnet").stages[1], "lrn2")
    assert not any(isinstance(m, nn.LocalResponseNorm) for m in vertebra.create_model("alexnet_tv").modules())


def test_overlapping_pooling_and_the_papers_map_sizes():
    model = vertebra.create_model("alexnet").eval()
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)  # s < z: overlapping
    with torch.no_grad():
        levels = vertebra.create_model("alexnet", features_only=True)(torch.randn(1, 3, 224, 224))
    assert [tuple(level.shape[1:]) for level in levels] == [(96, 27, 27), (256, 13, 13), (256, 6, 6)]


def test_paper_initialisation():
    model = vertebra.create_model("alexnet")
    biases = {name: module.bias.unique().tolist() for name, module in model.named_modules()
              if isinstance(module, (nn.Conv2d, nn.Linear))}
    assert biases == {"stages.0.conv1.conv": [0.0], "stages.1.conv2.conv": [1.0], "stages.2.conv3.conv": [0.0],
                      "stages.2.conv4.conv": [1.0], "stages.2.conv5.conv": [1.0], "head.fc6": [1.0],
                      "head.fc7": [1.0], "head.fc8": [0.0]}
    assert model.head.fc6.weight.std().item() == pytest.approx(0.01, rel=0.01)


def test_paper_drops_fc_outputs_torchvision_drops_fc_inputs():
    for name, inputs in (("alexnet", False), ("alexnet_tv", True)):
        head = vertebra.create_model(name, num_classes=3).train().head
        head.fc6.register_forward_pre_hook(lambda m, args: seen.append((args[0] == 0).float().mean()))
        seen = []
        head(torch.rand(4, 256, 6, 6) + 1.0)
        assert (seen[0] > 0.3) == inputs  # about half the pool5 inputs zeroed only in torchvision's


def test_single_tower_layout_of_torchvision():
    model = vertebra.create_model("alexnet_tv")
    assert [c.out_channels for c in convs(model)] == [64, 192, 384, 256, 256]
    assert all(c.groups == 1 for c in convs(model))


def test_groups_that_do_not_divide_raise():
    with pytest.raises(ValueError, match="conv2: groups=3"):
        vertebra.create_model("alexnet", groups=3)
    one_tower = vertebra.create_model("alexnet", groups=1)
    assert all(c.groups == 1 for c in convs(one_tower))
