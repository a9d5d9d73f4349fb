"""What the DenseNet paper (and its memory-efficient implementation) say, checked on the built networks."""
import pytest
import torch

import vertebra
from vertebra.analysis import saved_tensor_bytes
from vertebra.models.densenet import DenseNet
from vertebra.weights import KEYMAPS


def block_widths(model):
    return [info.channels for info in model.feature_info]


@pytest.mark.parametrize("name, k, stem, layers, widths", [
    ("densenet121", 32, 64, (6, 12, 24, 16), [256, 512, 1024, 1024]),
    ("densenet161", 48, 96, (6, 12, 36, 24), [384, 768, 2112, 2208]),
    ("densenet169", 32, 64, (6, 12, 32, 32), [256, 512, 1280, 1664]),
    ("densenet201", 32, 64, (6, 12, 48, 32), [256, 512, 1792, 1920]),
])
def test_table_1_growth_rates_depths_and_widths(name, k, stem, layers, widths):
    with torch.device("meta"):
        model = vertebra.create_model(name)
    assert [len(stage.denseblock) for stage in model.stages] == list(layers)
    assert model.stem.conv1.conv.out_channels == stem
    assert block_widths(model) == widths and model.num_features == widths[-1]
    for stage in model.stages:  # the bottleneck gives 4k maps, each layer adds k
        for layer in stage.denseblock.values():
            assert (layer.conv1.out_channels, layer.conv2.out_channels) == (4 * k, k)
    # 2 + 2 per dense layer + 1 per transition + FC: the name is the number of weighted layers
    weighted = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(weighted) == int(name.removeprefix("densenet"))


def test_each_layer_sees_every_earlier_map():
    """The block's output starts with its input unchanged, followed by each layer's k new maps,
    and layer i reads the concatenation of the input and the i maps before it."""
    model = vertebra.create_model("densenet121").eval()
    block = model.stages[1].denseblock
    x = torch.randn(1, 128, 8, 8)
    with torch.no_grad():
        out = block(x)
        assert out.shape[1] == 128 + 12 * 32 and torch.equal(out[:, :128], x)
        for i, layer in enumerate(block.values()):
            assert layer.norm1.bn.num_features == 128 + 32 * i
            new = layer([out[:, :128 + 32 * i]])
            torch.testing.assert_close(new, out[:, 128 + 32 * i:128 + 32 * (i + 1)])


def test_transitions_compress_by_half_and_pool():
    model = vertebra.create_model("densenet121")
    for index, stage in enumerate(model.stages[1:], start=1):
        conv = stage.transition.conv
        assert conv.out_channels == conv.in_channels // 2 == model.feature_info[index - 1].channels // 2
        assert isinstance(stage.transition.pool, torch.nn.AvgPool2d) and stage.transition.pool.stride == 2
    assert [i.reduction for i in model.feature_info] == [4, 8, 16, 32]
    assert not hasattr(model.stages[0], "transition")


def tiny(memory_efficient):
    torch.manual_seed(0)
    # one deep block at full resolution, where the concatenations dominate the activations
    return DenseNet((12,), growth_rate=8, stem_width=16, memory_efficient=memory_efficient,
                    num_classes=5, small_input=True).train()


def test_memory_efficient_mode_is_the_same_network_with_less_saved_memory():
    plain, efficient = tiny(False), tiny(True)
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(4, 3, 32, 32)
    out_plain, bytes_plain = saved_tensor_bytes(plain, x)
    out_efficient, bytes_efficient = saved_tensor_bytes(efficient, x)
    assert torch.equal(out_plain, out_efficient)
    out_plain.square().sum().backward()
    out_efficient.square().sum().backward()
    for (name, a), b in zip(plain.named_parameters(), efficient.parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
    # the recomputation does not count the batch twice in BatchNorm's running statistics
    for (name, a), b in zip(plain.state_dict().items(), efficient.state_dict().values()):
        assert torch.equal(a, b), name
    # the concatenations and bottleneck inputs are no longer stored
    assert bytes_efficient < 0.6 * bytes_plain


def test_memory_efficient_mode_does_not_checkpoint_without_gradients():
    model = tiny(True).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 32, 32)).shape == (1, 5)


def test_torchvision_old_checkpoint_names_load():
    """torchvision's published files name the dense layers' parts ``norm.1``, ``conv.2``."""
    keymap = KEYMAPS["torchvision_densenet"]
    assert keymap.rename("features.denseblock2.denselayer3.norm.1.weight")[0] == \
        "stages.1.denseblock.denselayer3.norm1.bn.weight"
    assert keymap.rename("features.denseblock2.denselayer3.conv2.weight")[0] == \
        "stages.1.denseblock.denselayer3.conv2.weight"
    assert keymap.rename("features.transition3.conv.weight")[0] == "stages.3.transition.conv.weight"


def test_small_input_stem_keeps_full_resolution():
    model = vertebra.create_model("densenet121", small_input=True)
    assert model.stem.conv1.conv.stride == (1, 1) and not hasattr(model.stem, "pool")
    assert [i.reduction for i in model.feature_info] == [1, 2, 4, 8]


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="compression"):
        vertebra.create_model("densenet121", compression=0.0)
    with pytest.raises(ValueError, match="transition 1: compression 0.001 rounds 16 channels to zero"):
        DenseNet((2, 2, 2, 2), growth_rate=4, stem_width=8, compression=0.001)
    with pytest.raises(ValueError, match="growth_rate"):
        vertebra.create_model("densenet121", growth_rate=0)
