"""vertebra.optimize: BatchNorm folded, channels_last, inference mode, bfloat16, torch.compile."""
import importlib

import pytest
import torch
from rich.console import Console
from torch import nn

import vertebra
from conftest import ALL_MODELS, test_size
from vertebra.inference import fold_batchnorm
from vertebra.testing import relative_error


def with_trained_statistics(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics, so that folding them is really exercised."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(module.num_features, generator=generator) * 0.5 + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=generator) * 0.2 - 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ALL_MODELS)
def test_optimized_fp32_equals_eager(name):
    model = with_trained_statistics(vertebra.create_model(name))
    size = test_size(model)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    fast = vertebra.optimize(model)
    assert relative_error(fast(x), expected) <= 1e-4
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == \
        any(isinstance(m, nn.BatchNorm2d) for m in vertebra.create_model(name).modules())  # original untouched


def test_folding_removes_the_batchnorms_that_follow_convolutions():
    model = with_trained_statistics(vertebra.create_model("resnet50"))
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fast = vertebra.optimize(model)
    assert before == 53 and not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert fold_batchnorm(vertebra.create_model("densenet121")) == 1  # pre-activation: BN precedes its conv
    conv = fast.model.stem.conv1.conv
    assert conv.bias is not None and conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in fast.parameters())


def test_features_only_models():
    model = with_trained_statistics(vertebra.create_model("resnet18", features_only=True, out_indices=(1, 3)))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    got = vertebra.optimize(model)(x)
    assert len(got) == 2 and all(relative_error(g, e) <= 1e-4 for g, e in zip(got, expected))
    assert vertebra.optimize(model).feature_info == model.feature_info


def test_bfloat16_agrees_with_fp32_on_the_digits_for_a_trained_model(tmp_path, monkeypatch):
    from vertebra.hardware import cpu_supports_bf16
    from vertebra.train import TrainConfig, digits, train
    from vertebra.train.checkpoint import load_checkpoint

    if not cpu_supports_bf16():  # elsewhere: the clear message
        with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
            vertebra.optimize(vertebra.create_model("mobilenet_v2_035"), dtype=torch.bfloat16)
        return
    train(TrainConfig("mobilenet_v2_035", epochs=12, optimizer="adamw", out=tmp_path / "run"), Console(quiet=True))
    model = vertebra.create_model("mobilenet_v2_035", num_classes=10, small_input=True)
    load_checkpoint(tmp_path / "run", "last", model)
    images = digits().test.images
    fp32 = vertebra.optimize(model)(images).argmax(1)
    bf16 = vertebra.optimize(model, dtype=torch.bfloat16)(images).argmax(1)
    assert (fp32 == bf16).float().mean() >= 0.99
    module = importlib.import_module("vertebra.inference.optimize")  # the package exports the function
    monkeypatch.setattr(module, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
        vertebra.optimize(model, dtype=torch.bfloat16)


def test_torch_compile_gives_the_same_outputs():
    model = with_trained_statistics(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    assert relative_error(vertebra.optimize(model, compile=True)(x), expected) <= 1e-4


def test_bad_arguments():
    with pytest.raises(TypeError, match="nn.Module"):
        vertebra.optimize("resnet18")
    with pytest.raises(ValueError, match="float32 or torch.bfloat16"):
        vertebra.optimize(vertebra.create_model("resnet18"), dtype=torch.float16)
