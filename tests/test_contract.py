"""DESIGN.md's model contract, checked on every registered model at small inputs.

lean_model builds every VGG but the largest with narrow fc6 and fc7 (conftest.py): the contract does not
depend on their width, and the largest VGG keeps its real width in each test.  What only reads a model's
structure reads it on the meta device."""
import pytest
import torch

import vertebra
from vertebra.layers import DropPath
from conftest import ALL_MODELS, lean_model, test_size

pytestmark = pytest.mark.parametrize("name", ALL_MODELS)


def training_loss(output):
    """Models with auxiliary classifiers return a named tuple in training mode: use every head."""
    heads = output if isinstance(output, tuple) else (output,)
    return sum(head.logsumexp(1).sum() for head in heads if head is not None)


def test_forward_gives_logits(name):
    model = lean_model(name, num_classes=7).eval()
    size = test_size(model)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 7) and torch.isfinite(out).all()
    features = model.forward_features(torch.randn(1, 3, size, size))
    assert features.shape[1] == model.num_features
    assert model.forward_head(features, pre_logits=True).shape == (1, model.num_features)


def test_backward_reaches_every_parameter(name):
    model = lean_model(name, num_classes=5).train()
    with torch.no_grad():  # move zero-initialised weights off zero, where they would block gradients
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    for module in model.modules():  # stochastic depth may drop a whole branch of a batch of two
        if isinstance(module, DropPath):
            module.drop_prob = 0.0
    size = test_size(model)
    training_loss(model(torch.randn(2, 3, size, size))).backward()
    unreached = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not unreached, f"no gradient reaches {unreached[:5]}"


def structure(name, **kwargs):
    """The model on the meta device: its feature_info, modules and state-dict keys, no weights made."""
    with torch.device("meta"):
        return vertebra.create_model(name, **kwargs)


def test_features_only_matches_feature_info(name):
    full = structure(name)
    levels = len(full.feature_info)
    model = vertebra.create_model(name, features_only=True).eval()
    size = 2 * full.min_input_size * 2  # every level at least 2x2
    step = full.feature_info[-1].reduction
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, size, size))
        larger = model(torch.randn(1, 3, size + step, size + step))
    assert len(outputs) == len(model.feature_info) == levels
    for out, more, info in zip(outputs, larger, model.feature_info):
        assert out.shape[1] == info.channels
        # the reduction is the level's stride: `step` more input pixels give step / reduction more
        # outputs.  Unpadded ("valid") convolutions and pools (AlexNet, Inception v3) also shave a
        # border off, so a level may fall short of size / reduction, never exceed it.
        assert more.shape[-1] - out.shape[-1] == step // info.reduction, info
        assert out.shape[-1] <= size // info.reduction, info
        assert dict(model.named_modules())[info.module] is not None
    # negative indices count from the end; the model keeps only what it needs
    last_two = structure(name, features_only=True, out_indices=(-2, -1))
    assert [i.reduction for i in last_two.feature_info] == [i.reduction for i in full.feature_info[-2:]]
    first = structure(name, features_only=True, out_indices=(0,))
    assert len(first.stages) == 1 and not any(k.startswith("head.") for k in first.state_dict())
    with pytest.raises(ValueError, match="out of range"):
        structure(name, features_only=True, out_indices=(levels,))


def test_single_channel_input(name):
    model = lean_model(name, in_chans=1, num_classes=3).eval()
    size = test_size(model)
    with torch.no_grad():
        assert model(torch.randn(2, 1, size, size)).shape == (2, 3)


def test_num_classes_zero_gives_pooled_features(name):
    model = vertebra.create_model(name, num_classes=0).eval()
    size = test_size(model)
    with torch.no_grad():
        assert model(torch.randn(2, 3, size, size)).shape == (2, model.num_features)


def test_small_input_runs_at_32(name):
    model = lean_model(name, small_input=True, num_classes=10).eval()
    assert model.min_input_size <= 32 and model.default_input_size == 32
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
        last = model.forward_features(torch.randn(1, 3, 32, 32))
    assert last.shape[-1] == 32 // model.feature_info[-1].reduction


def test_reset_classifier(name):
    model = lean_model(name).eval()
    size = test_size(model)
    x = torch.randn(1, 3, size, size)
    model.reset_classifier(4)
    assert model(x).shape == (1, 4) and model.num_classes == 4
    model.reset_classifier(0)
    assert model(x).shape == (1, model.num_features)


def test_bad_inputs_raise_value_errors(name):
    model = lean_model(name).eval()
    size = test_size(model)
    cases = {
        "4-D input": torch.randn(3, size, size),
        "3 input channels, got 1": torch.randn(1, 1, size, size),
        "floating-point": torch.zeros(1, 3, size, size, dtype=torch.uint8),
        f"at least {model.min_input_size}": torch.randn(1, 3, model.min_input_size - 1, size),
    }
    for message, x in cases.items():
        with pytest.raises(ValueError, match=message):
            model(x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        model([[1.0]])


def test_save_load_round_trip(name, tmp_path):
    model = lean_model(name, num_classes=6).eval()
    path = vertebra.save_weights(model, tmp_path / f"{name}.safetensors", metadata={"note": "test"})
    again = lean_model(name, num_classes=6, pretrained=path).eval()
    size = test_size(model)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
