"""What the GoogLeNet, BN-Inception and Inception v3 papers say, checked on the built networks."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import vertebra
from vertebra.models.inception import GoogLeNetOutputs, InceptionOutputs, auxiliary_loss

# GoogLeNet Table 1, "output size" column: the depth after each Inception module.
TABLE_1_DEPTHS = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832,
                  "5a": 832, "5b": 1024}


def modules(model, prefix):
    return {name.removeprefix(prefix): m for stage in model.stages for name, m in stage.named_children()
            if name.startswith(prefix)}


@pytest.mark.parametrize("name, five", [("googlenet", 5), ("googlenet_tv", 3)])
def test_googlenet_table_1(name, five):
    model = vertebra.create_model(name)
    inception = modules(model, "inception")
    assert {k: m.out_chs for k, m in inception.items()} == TABLE_1_DEPTHS
    assert all(m.branch5x5[1].conv.kernel_size == (five, five) for m in inception.values())
    with torch.no_grad():
        levels = vertebra.create_model(name, features_only=True).eval()(torch.randn(1, 3, 224, 224))
    assert [tuple(x.shape[1:]) for x in levels] == [(192, 56, 56), (480, 28, 28), (832, 14, 14), (1024, 7, 7)]


def test_paper_googlenet_has_no_batch_norm_and_torchvisions_has_it_everywhere():
    paper, tv = vertebra.create_model("googlenet"), vertebra.create_model("googlenet_tv")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in paper.modules())
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in paper.modules()) == 2
    norms = [m for m in tv.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == sum(isinstance(m, nn.Conv2d) for m in tv.modules()) and norms[0].eps == 1e-3


def test_auxiliary_classifiers_in_training_only():
    model = vertebra.create_model("googlenet_tv", num_classes=10).train()
    out = model(torch.randn(2, 3, 64, 64))
    assert isinstance(out, GoogLeNetOutputs) and [t.shape for t in out] == [(2, 10)] * 3
    assert model.aux1.conv.conv.in_channels == 512 and model.aux2.conv.conv.in_channels == 528  # after 4a, 4d
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)
    plain = vertebra.create_model("googlenet_tv", aux_logits=False).train()
    assert isinstance(plain(torch.randn(2, 3, 64, 64)), torch.Tensor)
    assert sum(p.numel() for p in plain.parameters()) == 6_624_904


def test_auxiliary_loss_weights():
    target = torch.tensor([1, 0])
    logits, a1, a2 = torch.randn(3, 2, 4).unbind(0)
    expected = F.cross_entropy(logits, target) + 0.3 * (F.cross_entropy(a1, target) + F.cross_entropy(a2, target))
    loss = auxiliary_loss(GoogLeNetOutputs(logits, a1, a2), target, F.cross_entropy)
    torch.testing.assert_close(loss, expected)
    v3 = auxiliary_loss(InceptionOutputs(logits, a1), target, F.cross_entropy)
    torch.testing.assert_close(v3, F.cross_entropy(logits, target) + 0.4 * F.cross_entropy(a1, target))
    torch.testing.assert_close(auxiliary_loss(logits, target, F.cross_entropy), F.cross_entropy(logits, target))


def test_auxiliary_heads_leave_with_the_classifier():
    model = vertebra.create_model("googlenet", features_only=True)
    assert not any(k.startswith(("aux", "head")) for k in model.state_dict())
    assert vertebra.create_model("inception_v3", num_classes=0).aux is None


def test_bn_inception_figure_5():
    model = vertebra.create_model("bn_inception")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size != (5, 5) and c.bias is None for c in convs)  # 5x5 -> two 3x3; no bias before BN
    # one BN after each convolution, but after the separable conv1's pair (depthwise 7x7, then 1x1)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs) - 1
    assert convs[0].groups == 3 and convs[0].out_channels == 24 and convs[1].kernel_size == (1, 1)
    inception = modules(model, "inception")
    assert {k: m.out_chs for k, m in inception.items()} == {
        "3a": 256, "3b": 320, "3c": 576, "4a": 576, "4b": 576, "4c": 608, "4d": 608, "4e": 1056, "5a": 1024,
        "5b": 1024}
    reduce_3c = inception["3c"]
    assert reduce_3c.branch1x1 is None and len(reduce_3c.branch_pool) == 1  # no 1x1, pool passes through
    assert isinstance(inception["4a"].branch_pool[0], nn.AvgPool2d)
    assert isinstance(inception["5b"].branch_pool[0], nn.MaxPool2d)
    with torch.no_grad():
        levels = vertebra.create_model("bn_inception", features_only=True).eval()(torch.randn(1, 3, 224, 224))
    assert [x.shape[-1] for x in levels] == [56, 28, 14, 7]


def test_inception_v3_factorised_convolutions_and_grids():
    model = vertebra.create_model("inception_v3").eval()
    module = model.stages[2].mixed_6b
    assert module.branch7x7_2.conv.kernel_size == (1, 7) and module.branch7x7_3.conv.kernel_size == (7, 1)
    expanded = model.stages[3].mixed_7b  # Figure 7: 1x3 and 3x1 side by side
    assert expanded.branch3x3_2a.conv.kernel_size == (1, 3) and expanded.branch3x3_2b.conv.kernel_size == (3, 1)
    with torch.no_grad():
        levels = vertebra.create_model("inception_v3", features_only=True).eval()(torch.randn(1, 3, 299, 299))
    assert [tuple(x.shape[1:]) for x in levels] == [(192, 71, 71), (288, 35, 35), (768, 17, 17), (2048, 8, 8)]
    no_aux = vertebra.create_model("inception_v3", aux_logits=False)
    assert sum(p.numel() for p in no_aux.parameters()) == 23_834_568


def test_inception_v3_auxiliary_head_at_299_and_on_small_inputs():
    model = vertebra.create_model("inception_v3", num_classes=5).train()
    out = model(torch.randn(2, 3, 299, 299))
    assert isinstance(out, InceptionOutputs) and out.aux_logits.shape == (2, 5)
    small = vertebra.create_model("inception_v3", num_classes=5, small_input=True).train()
    assert [t.shape for t in small(torch.randn(2, 3, 32, 32))] == [(2, 5), (2, 5)]


def test_transform_input_renormalises_imagenet_inputs():
    model = vertebra.create_model("googlenet_tv", transform_input=True)
    x = torch.rand(1, 3, 4, 4)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    # an image normalised with ImageNet's statistics comes out scaled to [-1, 1]
    torch.testing.assert_close(model.stem.transform((x - mean) / std), x * 2 - 1)
    with pytest.raises(ValueError, match="in_chans=1"):
        vertebra.create_model("inception_v3", transform_input=True, in_chans=1)


def test_the_training_engine_uses_each_papers_auxiliary_weight():
    import torch

    from vertebra.train.loop import training_loss

    assert vertebra.create_model("googlenet").aux_loss_weight == 0.3
    assert vertebra.create_model("inception_v3").aux_loss_weight == 0.4
    logits, aux = torch.zeros(2, 3), torch.tensor([[5.0, 0, 0], [0, 5.0, 0]])
    target = torch.tensor([2, 2])
    criterion = torch.nn.CrossEntropyLoss()
    loss, _ = training_loss(vertebra.models.inception.InceptionOutputs(logits, aux), target, criterion, 0.4)
    assert torch.isclose(loss, criterion(logits, target) + 0.4 * criterion(aux, target))
