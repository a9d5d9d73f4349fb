"""vertebra.quantize: int8 post-training static quantization (torchao's PT2E flow, the X86
Inductor quantizer), its CLI, its file, and its errors.  Compiling an int8 graph takes seconds per
input shape, so the compiled runs are few: the digits-trained model through the CLI (calibrate,
compare, write), the file read back, and one small model with a layer left in float32."""
import importlib
import json
import warnings

import pytest
import torch
from torch import nn

import vertebra
from vertebra.cli import main
from vertebra.inference import load_quantized, save_quantized
from vertebra.testing import relative_error
from vertebra.train import digits

quantize_module = importlib.import_module("vertebra.inference.quantize")  # the package exports the function


@pytest.mark.xdist_group("digits_model")
def test_int8_through_the_cli_agrees_with_fp32_on_the_digits(digits_model, tmp_path, capsys):
    model, weights = digits_model
    out = tmp_path / "int8.pt2"
    assert main(["quantize", "mobilenet_v2_035", "--weights", str(weights), "--out", str(out), "--json",
                 "--calibration", "128"]) == 0
    result = json.loads(capsys.readouterr().out)
    test = digits().test
    with torch.no_grad():
        fp32 = model(test.images).argmax(1)
    assert result["count"] == len(test) and result["calibration_images"] == 128 and result["float_layers"] == []
    assert result["fp32_accuracy"] == pytest.approx(float((fp32 == test.labels).float().mean()))
    # int8 keeps a 256-level grid per channel: a few digits near a decision boundary may flip
    assert result["top1_agreement"] >= 0.98 and result["int8_accuracy"] >= result["fp32_accuracy"] - 0.015, result
    # the file says what was measured (that it runs as quantized: the small model's test below)
    loaded, metadata = load_quantized(out)
    assert metadata["model"] == "mobilenet_v2_035" and metadata["top1_agreement"] == result["top1_agreement"]
    assert loaded.num_classes == 10 and loaded.precision == "int8"
    # an existing file is refused without --force, and left as it was
    before = out.read_bytes()
    assert main(["quantize", "mobilenet_v2_035", "--weights", str(weights), "--out", str(out)]) == 2
    assert "exists: pass --force" in capsys.readouterr().err and out.read_bytes() == before


class WithTransposedConv(nn.Module):
    """A convolution, a transposed one (which the X86 quantizer has no int8 kernel for), a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
        self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.in_chans = 3

    def forward(self, x):
        return self.head(torch.relu(self.up(self.conv(x))))


def test_layers_without_an_int8_kernel_are_named_and_stay_float32_and_the_file_runs_the_same(tmp_path):
    model = WithTransposedConv().eval()
    with torch.no_grad():
        model.conv[1].running_var.uniform_(0.5, 1.5)
    calibration = torch.randn(40, 3, 12, 12)
    with pytest.warns(RuntimeWarning, match=r"which stay float32: up \(ConvTranspose2d\)"):
        quantized = vertebra.quantize(model, calibration)
    assert quantized.float_layers == ["up (ConvTranspose2d)"]
    x = torch.randn(6, 3, 12, 12)
    with torch.no_grad():
        expected = model(x)
    got = quantized(x)
    assert 1e-4 < relative_error(got, expected) < 0.05  # int8 ran, and close
    save_quantized(quantized, tmp_path / "small.pt2", {"note": "a test"})
    loaded, metadata = load_quantized(tmp_path / "small.pt2")
    assert torch.equal(loaded(x), got) and metadata == {"note": "a test"}
    assert loaded.float_layers == ["up (ConvTranspose2d)"] and loaded.in_chans == 3
    assert [p.name for p in tmp_path.iterdir()] == ["small.pt2"]  # no temporary left
    assert isinstance(model.conv[1], nn.BatchNorm2d) and model.training is False  # the original is untouched


def test_calibration_data_of_every_accepted_form():
    model = WithTransposedConv().eval()
    images = torch.randn(8, 3, 12, 12)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(8)), batch_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the transposed convolution, named above
        for data in (images, [images[:4], images[4:]], loader):
            assert vertebra.quantize(model, data).float_layers == ["up (ConvTranspose2d)"]


def test_bad_input():
    model = WithTransposedConv().eval()
    with pytest.raises(TypeError, match="expects an nn.Module, got str"):
        vertebra.quantize("resnet50", torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="calibration_data is empty"):
        vertebra.quantize(model, torch.empty(0, 3, 8, 8))
    with pytest.raises(ValueError, match="calibration_data is empty"):
        vertebra.quantize(model, [])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\) batches, got shape \(2, 1, 8, 8\)"):
        vertebra.quantize(model, torch.randn(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"got shape \(3, 8, 8\)"):
        vertebra.quantize(model, torch.randn(3, 8, 8))
    with pytest.raises(TypeError, match="floating point"):
        vertebra.quantize(model, torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(TypeError, match="a tensor \\(N, C, H, W\\) or an iterable"):
        vertebra.quantize(model, 3)
    with pytest.raises(ValueError, match="one size"):
        vertebra.quantize(model, [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 9, 9)])
    with pytest.raises(ValueError, match="micro_batch"):
        vertebra.quantize(model, torch.randn(2, 3, 8, 8), micro_batch=0)


def test_a_cpu_without_vnni_quantizes_and_says_it_will_be_slower(monkeypatch):
    monkeypatch.setattr(quantize_module, "cpu_supports_int8", lambda: False)
    with pytest.warns(RuntimeWarning, match="neither VNNI nor AMX-INT8 instructions: int8 runs, but likely slower"):
        quantize_module.quantize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval(), torch.randn(2, 3, 8, 8))


def test_without_torchao_or_a_compiler_the_error_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    monkeypatch.setattr(builtins, "__import__", no_torchao)
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'vertebra\[quantize\]'"):
        vertebra.quantize(model, torch.randn(2, 3, 8, 8))
    monkeypatch.setattr(builtins, "__import__", real_import)
    monkeypatch.setattr(quantize_module, "cxx_compiler", lambda: None)
    with pytest.raises(RuntimeError, match="found no compiler"):
        vertebra.quantize(model, torch.randn(2, 3, 8, 8))


def test_cli_refuses_bad_arguments_before_any_work(tmp_path, capsys):
    assert main(["quantize", "no_such_model", "--weights", "w.safetensors", "--out", str(tmp_path / "a.pt2")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["quantize", "resnet18", "--weights", "w.safetensors", "--out", str(tmp_path / "a.onnx")]) == 2
    assert "--out must end in .pt2" in capsys.readouterr().err
    assert main(["quantize", "resnet18", "--weights", "w.safetensors", "--out", str(tmp_path / "no" / "a.pt2")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["quantize", "resnet18", "--weights", str(tmp_path / "missing.safetensors"),
                 "--out", str(tmp_path / "a.pt2")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err and not (tmp_path / "a.pt2").exists()
    with pytest.raises(ValueError, match="not a quantized model saved by vertebra"):
        (tmp_path / "junk.pt2").write_bytes(b"not a zip")
        load_quantized(tmp_path / "junk.pt2")
