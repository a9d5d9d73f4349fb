import io
import json
import subprocess
import sys

import onnx
import pytest
import torch
from conftest import ALL_MODELS, checked_through_twin, lean_model, test_size

import vertebra
from vertebra.cli import main
from vertebra.export import (ExportError, check_onnx, check_torchscript, example_input, export_onnx,
                             export_torchscript)


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on this shared 2-core machine stall at random (a forward pass of 13 ms
    sometimes takes 2 s); one is steady, and correctness does not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_exports_to_onnx_and_torchscript(name):
    model = lean_model(name, num_classes=10)  # a VGG's fc6 and fc7 at full width once, in FULL_WIDTH_VGG
    if checked_through_twin(name, model, num_classes=10):  # exported as its smaller twin (conftest.py)
        return
    size = test_size(model)
    x = example_input(model, size, seed=1)  # not the traced input: frozen values would show
    onnx_file, script_file = io.BytesIO(), io.BytesIO()
    export_onnx(model, onnx_file, input_size=size)
    assert check_onnx(onnx_file, model, x) <= 1e-4
    export_torchscript(model, script_file, input_size=size)
    assert check_torchscript(script_file, model, x) <= 1e-6  # unchanged by the save/load round trip


def test_dynamic_batch_runs_other_batch_sizes(tmp_path):
    model = vertebra.create_model("mobilenet_v2_035", num_classes=5)
    fixed, free = tmp_path / "fixed.onnx", tmp_path / "free.onnx"
    export_onnx(model, fixed, input_size=32)
    export_onnx(model, free, input_size=32, dynamic_batch=True)
    batch3 = example_input(model, 32, batch_size=3)
    assert check_onnx(free, model, batch3) <= 1e-4
    with pytest.raises(Exception, match="(?i)dimension"):  # onnxruntime refuses batch 3 at a fixed batch 1
        check_onnx(fixed, model, batch3)
    graph = onnx.load(free).graph
    assert [i.name for i in graph.input] == ["images"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert onnx.load(fixed).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_features_only_models_export_every_level(tmp_path):
    model = vertebra.create_model("resnet18", features_only=True, out_indices=(1, 3))
    x = example_input(model, 64, batch_size=2)
    export_onnx(model, tmp_path / "f.onnx", input_size=64, dynamic_batch=True)
    assert [o.name for o in onnx.load(tmp_path / "f.onnx").graph.output] == ["feature0", "feature1"]
    assert check_onnx(tmp_path / "f.onnx", model, x) <= 1e-4
    export_torchscript(model, tmp_path / "f.pt", input_size=64)
    maps = torch.jit.load(tmp_path / "f.pt")(x)
    assert [tuple(m.shape) for m in maps] == [(2, 128, 8, 8), (2, 512, 2, 2)]
    assert check_torchscript(tmp_path / "f.pt", model, x) <= 1e-6


def test_export_is_in_eval_mode_and_leaves_the_model_training():
    model = vertebra.create_model("googlenet", num_classes=10).train()  # aux heads in training only
    buffer = io.BytesIO()
    export_onnx(model, buffer, input_size=64)
    assert [o.name for o in onnx.load_from_string(buffer.getvalue()).graph.output] == ["logits"]
    assert model.training and model.aux1.training


def test_onnx_reproduces_saved_weights(tmp_path, capsys):
    trained = vertebra.create_model("shufflenet_v2_x0_5", num_classes=4)
    with torch.no_grad():
        for parameter in trained.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    vertebra.save_weights(trained, tmp_path / "w.safetensors")
    out = tmp_path / "w.onnx"
    assert main(["export", "shufflenet_v2_x0_5", "--format", "onnx", "--weights",
                 str(tmp_path / "w.safetensors"), "--input-size", "32", "--out", str(out)]) == 0
    assert "relative error" in capsys.readouterr().out
    x = example_input(trained, 32, seed=1)
    assert check_onnx(out, trained, x) <= 1e-4
    fresh = vertebra.create_model("shufflenet_v2_x0_5", num_classes=4)
    assert check_onnx(out, fresh, x) > 1e-2  # the file holds the saved weights, not new ones
    # a checkpoint without vertebra's card (a bare state dict) needs the options that built it
    torch.save(trained.state_dict(), tmp_path / "w.pth")
    assert main(["export", "shufflenet_v2_x0_5", "--format", "torchscript", "--weights", str(tmp_path / "w.pth"),
                 "--num-classes", "4", "--input-size", "32", "--out", str(tmp_path / "w.pt")]) == 0
    assert check_torchscript(tmp_path / "w.pt", trained, x) <= 1e-6
    # beside each file, the preprocessing its inputs need: here torchvision's for this layout
    written = json.loads((tmp_path / "w.preprocessing.json").read_text())
    assert (written["resize_size"], written["mean"], written["source"]) == \
        (256, [0.485, 0.456, 0.406], "ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1")
    assert main(["export", "shufflenet_v2_x0_5", "--format", "onnx", "--weights", str(tmp_path / "w.safetensors"),
                 "--num-classes", "7", "--out", str(tmp_path / "w7.onnx")]) == 2
    assert "saved with 4 classes, not --num-classes 7" in capsys.readouterr().err


class Spectrum(torch.nn.Module):
    """The magnitude of a 2-D FFT: aten::fft_fft2 has no ONNX form at opset 17."""

    def forward(self, x):
        return torch.fft.fft2(x).abs()


def test_an_unsupported_operation_is_named_and_nothing_is_lost(tmp_path):
    with pytest.raises(ExportError, match=r"operator 'aten::fft_fft2' is not supported at opset 17"):
        export_onnx(Spectrum(), tmp_path / "new.onnx", input_size=8)
    assert list(tmp_path.iterdir()) == []  # no half-written file, no temporary left behind
    kept = tmp_path / "kept.onnx"
    kept.write_bytes(b"an earlier export")
    with pytest.raises(ExportError, match="fft_fft2"):
        export_onnx(Spectrum(), kept, input_size=8)
    assert kept.read_bytes() == b"an earlier export" and list(tmp_path.iterdir()) == [kept]


def test_cli_exports_checks_and_keeps_existing_files(tmp_path, capsys):
    out = tmp_path / "x.onnx"
    assert main(["export", "resnet18", "--format", "onnx", "--out", str(out), "--input-size", "32"]) == 0
    printed = capsys.readouterr().out
    assert "relative error" in printed and "MB" in printed
    error = float(printed.split("relative error ")[1].split()[0])
    assert error <= 1e-4
    before = out.read_bytes()
    assert main(["export", "resnet18", "--format", "torchscript", "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", "resnet18", "--format", "torchscript", "--out", str(out), "--input-size", "32",
                 "--force"]) == 0
    assert out.read_bytes() != before and "relative error 0.0e+00" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["export", "resnet18", "--format", "tflite", "--out", str(tmp_path / "y")])
    assert exit_.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["export", "resnet5", "--format", "onnx", "--out", str(tmp_path / "y")]) == 2
    assert "unknown model 'resnet5'" in capsys.readouterr().err


def test_without_the_export_extra(tmp_path):
    code = ("import sys; sys.modules['onnx'] = sys.modules['onnxruntime'] = None\n"
            "import vertebra, vertebra.export, vertebra.cli\n"
            "assert vertebra.cli.main(['export', 'resnet18', '--format', 'onnx', '--out', 'x.onnx']) == 2")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == ("vertebra export: error: onnx is not installed: it comes with the export "
                                  "extra, pip install 'vertebra[export]'")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_exporter_is_left_as_it_was():
    # vertebra's adaptive-pooling rule is registered for the length of its own exports only
    export_onnx(vertebra.create_model("rnn_classifier", num_classes=3), io.BytesIO(), input_size=32)
    pool = torch.nn.AdaptiveAvgPool2d(3)  # 4 -> 3 cells: torch's own rule refuses it
    with pytest.raises(torch.onnx.errors.SymbolicValueError, match="not factor of input size"):
        torch.onnx.export(pool, (torch.randn(1, 2, 4, 4),), io.BytesIO(), dynamo=False)
    assert check_onnx(export_onnx(pool, io.BytesIO(), input_size=4), pool, torch.randn(1, 3, 4, 4)) <= 1e-6


def test_bad_arguments_are_clear_errors(tmp_path):
    model = vertebra.create_model("resnet18", num_classes=2)
    with pytest.raises(ValueError, match="opset must be in 13..20, got 11"):
        export_onnx(model, io.BytesIO(), input_size=32, opset=11)
    with pytest.raises(ValueError, match="at least 32x32, got 16x16"):
        export_torchscript(model, io.BytesIO(), input_size=16)
    with pytest.raises(TypeError, match="expected a torch.nn.Module, got str"):
        export_onnx("resnet18", io.BytesIO())
    with pytest.raises(ValueError, match="does not exist"):
        export_onnx(model, tmp_path / "no" / "x.onnx", input_size=32)
    with pytest.raises(ValueError, match="pass input_size"):
        export_onnx(Spectrum(), io.BytesIO())


class Census(torch.nn.Module):
    def forward(self, x):
        return {"positive": int((x > 0).sum())}  # a Python int: nothing a trace can return


def test_an_untraceable_model_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match=r"cannot trace Census to TorchScript: output 1 .* cannot be understood"):
        export_torchscript(Census(), tmp_path / "c.pt", input_size=4)
    assert list(tmp_path.iterdir()) == []
