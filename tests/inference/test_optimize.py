"""vertebra.optimize: BatchNorm folded, channels_last, inference mode, bfloat16, and the three
backends: onednn (the default: TorchScript frozen, oneDNN Graph fusion), inductor (torch.compile
with freezing) and eager.  The registry-wide check runs eager on every model and onednn on every
architecture (a deeper or wider twin through its smaller one: conftest.SHALLOWER_TWIN); compiling
takes seconds per model, so the inductor path is checked on a few small models."""
import copy
import importlib
import os
import warnings

import pytest
import torch
from torch import nn

import vertebra
from conftest import ALL_MODELS, checked_through_twin, lean_model, test_size
from vertebra.inference import fold_batchnorm
from vertebra.layers import SqueezeExcite
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
    model = with_trained_statistics(lean_model(name))  # a VGG's fc6 and fc7 at full width in FULL_WIDTH_VGG
    had_batchnorm = any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    size = test_size(model)
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        expected = model(x)
    assert relative_error(vertebra.optimize(model, backend="eager")(x), expected) <= 1e-4
    if checked_through_twin(name, model):  # traced as its smaller twin (conftest.py)
        return
    # The default backend, fused by oneDNN Graph -- except the recurrent models, whose unrolled
    # LSTM graphs oneDNN Graph fails on (torch 2.13): they fall back to eager, with a warning.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = vertebra.optimize(model)(x)
    fell_back = [str(w.message) for w in caught if "oneDNN Graph could not run" in str(w.message)]
    assert relative_error(got, expected) <= 1e-4
    assert bool(fell_back) == (vertebra.model_info(name).family in ("rnn", "lstm")), fell_back
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == had_batchnorm  # original untouched


def test_folding_removes_the_batchnorms_that_follow_convolutions():
    model = with_trained_statistics(vertebra.create_model("resnet50"))
    before = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    fast = vertebra.optimize(model, backend="eager")
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
    # The traced and compiled graphs return a list too; one image per call, so each level is
    # joined from two.
    for backend, micro_batch in (("eager", None), ("onednn", 1), ("inductor", 1)):
        got = vertebra.optimize(model, backend=backend, micro_batch=micro_batch)(x)
        assert len(got) == 2 and all(relative_error(g, e) <= 1e-4 for g, e in zip(got, expected)), backend
        assert [g.shape for g in got] == [e.shape for e in expected]
    assert vertebra.optimize(model).feature_info == model.feature_info


@pytest.mark.xdist_group("digits_model")
def test_bfloat16_agrees_with_fp32_on_the_digits_for_a_trained_model(digits_model, monkeypatch):
    from vertebra.hardware import cpu_supports_bf16
    from vertebra.train import digits

    model, _ = digits_model
    if not cpu_supports_bf16():  # elsewhere: the clear message
        with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
            vertebra.optimize(model, dtype=torch.bfloat16)
        return
    images, labels = digits().test.images, digits().test.labels
    fp32 = vertebra.optimize(model, backend="eager")(images).argmax(1)
    fp32_accuracy = float((fp32 == labels).float().mean())
    for backend in ("eager", "onednn"):
        bf16 = vertebra.optimize(model, dtype=torch.bfloat16, backend=backend)(images).argmax(1)
        # bf16 keeps 8 bits of mantissa: a digit near a decision boundary may flip, but the accuracy must hold
        agreement, accuracy = float((fp32 == bf16).float().mean()), float((bf16 == labels).float().mean())
        assert agreement >= 0.99 and accuracy >= fp32_accuracy - 0.015, (backend, agreement, accuracy, fp32_accuracy)
    module = importlib.import_module("vertebra.inference.optimize")  # the package exports the function
    monkeypatch.setattr(module, "cpu_supports_bf16", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
        vertebra.optimize(model, dtype=torch.bfloat16)


def generated_code(fn, *args):
    """What Inductor generates while ``fn(*args)`` runs (torch's run_and_get_code, without the
    reset of Dynamo's caches it starts with)."""
    from unittest import mock

    from torch._inductor.graph import GraphLowering

    code = []
    with mock.patch.object(GraphLowering, "save_output_code", code.append):
        out = fn(*args)
    return out, "\n".join(code)


class TinyNet(nn.Module):
    """A user-defined model class: Dynamo enters its forward itself (unlike torch.nn's own)."""

    def __init__(self):
        super().__init__()
        self.conv, self.act = nn.Conv2d(3, 4, 3), nn.ReLU()

    def forward(self, x):
        return self.act(self.conv(x))


def test_inductor_backend_freezes_and_fuses_the_convolutions():
    """The compiled graph calls oneDNN's prepacked convolution with the ReLU fused in -- only
    what freezing produces -- and the user's global Inductor config and model stay as they were."""
    from torch._inductor import config

    model = with_trained_statistics(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                  nn.Conv2d(8, 8, 3, padding=1), nn.Hardswish()))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    fast = vertebra.optimize(model, backend="inductor")
    got, code = generated_code(fast, x)
    assert relative_error(got, expected) <= 1e-4
    assert "convolution_pointwise" in code  # oneDNN's fused op, which only freezing calls
    assert config.freezing is False
    assert isinstance(model[1], nn.BatchNorm2d) and model[0].weight.requires_grad
    with torch.inference_mode():  # the caller's mode does not matter: no second compile
        assert generated_code(fast, x)[1] == ""
    x3 = torch.randn(3, 3, 16, 16)  # a new shape: compiled again
    with torch.no_grad():
        assert relative_error(fast(x3), model(x3)) <= 1e-4


def test_each_optimized_model_compiles_its_own_graphs():
    """Every vertebra model runs Backbone.forward; each optimized copy must still get compiled
    graphs of its own rather than fall back to eager once Dynamo's per-code-object limit fills."""
    x = torch.randn(1, 3, 8, 8)
    with torch._dynamo.config.patch(recompile_limit=1):  # the ninth model, sooner
        for family in (type("FamilyA", (TinyNet,), {}), type("FamilyB", (TinyNet,), {})):  # one forward
            model = family().eval()
            got, code = generated_code(vertebra.optimize(model, backend="inductor"), x)
            assert "convolution_pointwise" in code, family.__name__
            with torch.no_grad():
                assert relative_error(got, model(x)) <= 1e-4


def test_squeeze_excite_projections_as_sums_give_the_same_outputs():
    """The rewrite the compiled path applies (checked here in eager, where it is cheap): every
    SqueezeExcite's 1x1 convolutions become multiply-and-sum, with the same outputs."""
    from vertebra.inference.optimize import PooledProjection, squeeze_excite_as_sums

    model = with_trained_statistics(vertebra.create_model("mobilenet_v3_small"))
    rewritten = copy.deepcopy(model)
    assert squeeze_excite_as_sums(rewritten) == 9
    assert all(isinstance(m.fc1, PooledProjection) and isinstance(m.fc2, PooledProjection)
               for m in rewritten.modules() if isinstance(m, SqueezeExcite))
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(rewritten(x), model(x)) <= 1e-5
    assert squeeze_excite_as_sums(vertebra.create_model("resnet18")) == 0


def test_a_batch_runs_in_slices_with_the_same_outputs():
    model = with_trained_statistics(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                                                  SqueezeExcite(8, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    x = torch.randn(5, 3, 12, 12)
    with torch.no_grad():
        expected = model(x)
    for backend in ("onednn", "inductor"):
        fast = vertebra.optimize(model, backend=backend, micro_batch=2)  # slices of 2, 2 and 1: two graphs
        got = fast(x)
        assert got.shape == (5, 8) and relative_error(got, expected) <= 1e-4, backend
    from vertebra.inference.optimize import PooledProjection, micro_batch_size

    assert isinstance(fast.model[3].fc1, PooledProjection) and isinstance(model[3].fc1, nn.Conv2d)  # copy only

    assert micro_batch_size(torch.empty(32, 3, 224, 224), None, lambda: 4.1e9) == 4  # resnet50: four 224x224 images a call
    assert micro_batch_size(torch.empty(32, 3, 224, 224), None, lambda: 2.0e9) == 6
    assert micro_batch_size(torch.empty(32, 3, 224, 224), None, lambda: 0.3e9) == 8  # mobilenet_v2: eight
    assert micro_batch_size(torch.empty(256, 3, 32, 32), None, lambda: 4.1e9 / 49) == 196  # smaller images: more
    assert micro_batch_size(torch.empty(32, 3, 224, 224), 8, lambda: 4.1e9) == 8
    big = vertebra.optimize(vertebra.create_model("resnet50", num_classes=10), backend="eager")
    assert big.image_macs(torch.empty(1, 3, 64, 64)) == vertebra.analysis.count_macs(big.model, 64)


def test_onednn_backend_traces_once_per_shape_and_fuses():
    """The default backend: one frozen trace per input shape, run with oneDNN Graph's fused
    partitions; the user's TorchScript settings and model stay as they were."""
    model = with_trained_statistics(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                                  nn.Conv2d(8, 8, 3, padding=1), nn.Hardswish()))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    fast = vertebra.optimize(model)
    assert fast.backend == "onednn" and fast.runner.traced == {}  # traced on first use
    llga_before = torch._C._jit_llga_enabled()
    got = fast(x)
    assert relative_error(got, expected) <= 1e-4
    assert "oneDNNFusionGroup" in str(torch.jit.last_executed_optimized_graph())  # fused, not interpreted
    assert torch._C._jit_llga_enabled() == llga_before
    autocast_pass = torch._C._jit_set_autocast_mode(True)
    torch._C._jit_set_autocast_mode(autocast_pass)
    assert autocast_pass is True  # TorchScript's autocast pass on again after each call
    assert isinstance(model[1], nn.BatchNorm2d) and model[0].weight.requires_grad
    (traced,) = fast.runner.traced.values()
    fast(x)
    assert list(fast.runner.traced.values()) == [traced]  # the same trace, not a second one
    x3 = torch.randn(3, 3, 16, 16)  # a new shape: traced again
    with torch.no_grad():
        assert relative_error(fast(x3), model(x3)) <= 1e-4
    assert len(fast.runner.traced) == 2


def resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                    reason="reads resident memory from Linux's /proc; CI runs on Linux, so it runs there")
def test_onednn_backend_frees_what_it_traced():
    """Freezing a trace in place leaves its weights in TorchScript's global compilation unit for
    good (pytorch#96726); optimizing a model of 128 MB of weights three times must not keep three copies."""
    import gc

    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(8),
                          nn.Flatten(), nn.Linear(1024, 32768)).eval()  # 33.6M weights, cheap to run
    copy_mb = sum(p.numel() * p.element_size() for p in model.parameters()) / 2 ** 20
    x = torch.randn(1, 3, 64, 64)
    resident = []
    for _ in range(3):
        fast = vertebra.optimize(model)
        fast(x)
        del fast
        gc.collect()
        resident.append(resident_mb())
    assert resident[2] - resident[0] < copy_mb, resident  # a leak adds a copy each time: 256 MB here


def test_onednn_backend_falls_back_to_eager_with_a_warning(monkeypatch):
    """A graph oneDNN Graph (or the tracer) cannot run: that shape runs the folded copy in eager."""
    model = with_trained_statistics(nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()))
    x = torch.randn(2, 3, 10, 10)

    def broken(*args, **kwargs):
        raise RuntimeError("vector::_M_range_check: __n (which is 0) >= this->size() (which is 0)")

    monkeypatch.setattr(torch.jit, "freeze", broken)
    fast = vertebra.optimize(model)
    with pytest.warns(RuntimeWarning, match=r"oneDNN Graph could not run Sequential at input shape \(2, 3, 10, 10\) "
                                            r"\(vector::_M_range_check.*runs in eager"):
        got = fast(x)
    with torch.no_grad():
        assert relative_error(got, model(x)) <= 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(x)  # warned once per shape


@pytest.mark.parametrize("backend", ["onednn", "inductor"])
def test_compiled_backends_in_bfloat16(backend):
    from vertebra.hardware import cpu_supports_bf16

    if not cpu_supports_bf16():
        pytest.skip("this CPU has neither AVX512-BF16 nor AMX; the refusal on such CPUs is tested in "
                    "test_bfloat16_agrees_with_fp32_on_the_digits_for_a_trained_model")
    model = with_trained_statistics(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = model(x)
    got = vertebra.optimize(model, dtype=torch.bfloat16, backend=backend)(x)
    assert got.dtype == torch.float32 and 1e-5 < relative_error(got, expected) <= 2e-2  # bf16 ran, and well


def test_bad_arguments(monkeypatch):
    with pytest.raises(TypeError, match="nn.Module"):
        vertebra.optimize("resnet18")
    with pytest.raises(ValueError, match="float32 or torch.bfloat16"):
        vertebra.optimize(vertebra.create_model("resnet18"), dtype=torch.float16)
    with pytest.raises(ValueError, match="backend must be one of 'onednn', 'inductor', 'eager', got 'tensorrt'"):
        vertebra.optimize(vertebra.create_model("resnet18"), backend="tensorrt")
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="micro_batch must be a positive int or None"):
            vertebra.optimize(vertebra.create_model("resnet18"), micro_batch=bad)
    with pytest.raises(ValueError, match=r"expected a 4-D input .* got shape \(3, 64, 64\)"):
        vertebra.optimize(vertebra.create_model("resnet18"), backend="eager")(torch.randn(3, 64, 64))
    with pytest.raises(TypeError, match="expected a torch.Tensor, got list"):
        vertebra.optimize(vertebra.create_model("resnet18"), backend="eager")([1, 2])
    for backend in ("onednn", "inductor"):  # the model's own check, traced or compiled
        with pytest.raises(ValueError, match="expects 3 input channels, got 4"):
            vertebra.optimize(vertebra.create_model("resnet18"), backend=backend)(torch.randn(1, 4, 64, 64))
    module = importlib.import_module("vertebra.inference.optimize")
    monkeypatch.setattr(module, "cxx_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="no compiler.*backend='eager'"):
        vertebra.optimize(vertebra.create_model("resnet18"), backend="inductor")
    vertebra.optimize(vertebra.create_model("resnet18"))  # the default needs no compiler


def test_compile_flag_picks_the_backend():
    model = vertebra.create_model("resnet18", num_classes=10).eval()
    assert vertebra.optimize(model).backend == "onednn"
    assert vertebra.optimize(model, compile=False).backend == "eager"
    assert vertebra.optimize(model, compile=True).backend == "inductor"
    with pytest.raises(TypeError, match="compile must be True or False, got 'yes'"):
        vertebra.optimize(model, compile="yes")
