"""Export a model to ONNX or TorchScript, and check the file against the PyTorch model.

ONNX goes through PyTorch's TorchScript-based exporter (``torch.onnx.export(dynamo=False)``):
it takes 0.2-0.5 s for a typical model where the dynamo exporter takes 2.5-5 s, and it needs
no onnxscript.  TorchScript is made with ``torch.jit.trace``: ``torch.jit.script`` cannot
compile the Backbone code (string annotations, keyword-only Python), and a trace records
exactly the eval-mode graph that ran.  A trace is specialised to the traced height and
width (the models' shape checks and size-dependent branches run once, in Python); the batch
dimension stays free.  Both export in eval mode, so training-only outputs (GoogLeNet's and
Inception-v3's auxiliary heads) are left out.

onnx and onnxruntime are an optional extra (``pip install vertebra[export]``): only
``check_onnx`` needs onnxruntime, and nothing here imports it until it is called.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import BinaryIO, Callable

import torch
from torch import nn
from torch.onnx import symbolic_helper

from .testing import relative_error

DEFAULT_OPSET = 17
OPSETS = range(13, 21)  # ReduceSum and Slice take their axes as inputs from opset 13 on
Target = str | os.PathLike | BinaryIO


class ExportError(ValueError):
    """A model, or one operation in it, that the exporter cannot express."""


# -- ONNX -----------------------------------------------------------------------------------
def export_onnx(model: nn.Module, path: Target, *, input_size: int | None = None, batch_size: int = 1,
                dynamic_batch: bool = False, opset: int = DEFAULT_OPSET) -> Target:
    """Write ``model`` as an ONNX file; returns ``path``.

    The input is named ``images`` (batch, in_chans, input_size, input_size); the output is
    ``logits`` (``features`` for ``num_classes=0``, ``feature0`` .. ``featureN`` for a
    features-only model).  ``dynamic_batch=True`` leaves the batch dimension free.  A path
    is written atomically (a failed export leaves an existing file as it was); a binary
    file object is written in place.  Raises ``ExportError`` naming the operation ONNX
    cannot express at ``opset``.
    """
    _check_opset(opset)
    require("onnx")  # the exporter serialises through it
    example = example_input(model, input_size, batch_size)
    output_names = _output_names(model)
    batch_axes = {name: {0: "batch"} for name in ("images", *output_names)} if dynamic_batch else None

    def write(target) -> None:
        torch.onnx.export(model, (example,), target, dynamo=False, opset_version=opset,
                          input_names=["images"], output_names=output_names, dynamic_axes=batch_axes)

    with _exporting(model), _adaptive_pooling_for_any_size(opset):
        try:
            with _graph_dump_dropped():
                _write(path, write)
        except RuntimeError as error:  # the exporter's errors, and the tracer's
            raise ExportError(_onnx_message(_name(model), error, opset)) from None
    return path


def check_onnx(path: Target | bytes, model: nn.Module, x: torch.Tensor) -> float:
    """Largest relative error between onnxruntime's outputs for ``x`` and ``model``'s."""
    ort = require("onnxruntime")
    source = path.getvalue() if isinstance(path, io.BytesIO) else path
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the caller's choice, as for PyTorch
    session = ort.InferenceSession(source if isinstance(source, bytes) else os.fspath(source), options,
                                   providers=["CPUExecutionProvider"])
    outputs = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})
    return _largest_error([torch.from_numpy(o) for o in outputs], _eager_outputs(model, x))


_OPERATOR = re.compile(r"operator '?([\w:.]+?)'?[ ,]")


def _onnx_message(name: str, error: RuntimeError, opset: int) -> str:
    text = str(error).strip().splitlines()[0].split(" Please feel free")[0]
    found = _OPERATOR.search(text)
    if isinstance(error, torch.onnx.errors.UnsupportedOperatorError) and found:
        added = re.search(r"added in version (\d+)", text)
        hint = f" (it is from opset {added.group(1)} on: pass opset={added.group(1)})" if added else ""
        return f"cannot export {name} to ONNX: operator '{found.group(1)}' is not supported at opset {opset}{hint}"
    if isinstance(error, torch.onnx.errors.OnnxExporterError) and found:
        return f"cannot export {name} to ONNX: operator '{found.group(1)}' at opset {opset}: {text}"
    return f"cannot export {name} to ONNX: {text}"


@contextlib.contextmanager
def _graph_dump_dropped():
    """Keep the exporter's dump of the whole graph off the terminal when it fails.

    On any error torch's exporter writes the TorchScript graph, thousands of lines, from C++
    straight to file descriptor 1; the ExportError says what failed.  Whatever else reached
    that descriptor meanwhile is passed on once the export succeeds.
    """
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no usable stdout descriptor: nothing to keep clean
        yield
        return
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 1)
            try:
                yield
            finally:
                os.dup2(saved, 1)
            captured.seek(0)
            data = captured.read()  # only reached when the export succeeded
            while data:
                data = data[os.write(1, data):]
    finally:
        os.close(saved)


def _check_opset(opset) -> None:
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise TypeError(f"opset must be an int, got {type(opset).__name__} {opset!r}")
    if opset not in OPSETS:
        raise ValueError(f"opset must be in {OPSETS.start}..{OPSETS.stop - 1}, got {opset}")


@contextlib.contextmanager
def _adaptive_pooling_for_any_size(opset: int):
    """Let ``adaptive_avg_pool2d`` export at any input size, for the length of one export.

    PyTorch's exporter handles it only where the output size divides the input size; AlexNet
    and VGG pool their last map to 6x6 and 7x7 and the recurrent models resample rows to
    their width, so at most input sizes they would not export.  The override is global
    while it is registered (a custom symbolic of the caller's for this op is replaced).
    """
    name = "aten::adaptive_avg_pool2d"
    torch.onnx.register_custom_op_symbolic(name, _adaptive_avg_pool2d, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic(name, opset)


def _adaptive_avg_pool2d(g, x, output_size):
    """Adaptive average pooling as ONNX ops: box averages are separable, so pool the height,
    then the width; cell i of n over length L averages [floor(i L / n), ceil((i + 1) L / n))."""
    if output_size.node().kind() == "onnx::Constant":
        sizes = symbolic_helper._parse_arg(output_size, "is")
    else:  # a list built at run time, e.g. (x.shape[-2], width)
        sizes = [_static_int(value) for value in symbolic_helper._unpack_list(output_size)]
    if None in sizes:
        return symbolic_helper._unimplemented("adaptive_avg_pool2d", "an output size unknown at export", x)
    if sizes == [1, 1]:  # every head's global pool
        return g.op("GlobalAveragePool", x)
    for axis, cells in zip((2, 3), sizes):
        x = _pool_axis(g, x, axis, cells)
    return x


def _static_int(value) -> int | None:
    """The int a graph value holds, where the exporter knows it: a constant, or a static
    dimension read from a shape (the recurrent models keep the height, ``x.shape[-2]``)."""
    node = value.node()
    if node.kind() == "onnx::Constant":
        return int(symbolic_helper._parse_arg(value, "i"))
    if node.kind() == "onnx::Gather":
        shape, index = node.inputs()
        if shape.node().kind() == "onnx::Shape" and index.node().kind() == "onnx::Constant":
            dims = symbolic_helper._get_tensor_sizes(next(shape.node().inputs()))
            return dims[int(symbolic_helper._parse_arg(index, "i"))] if dims else None
    return None


def _pool_axis(g, x, axis: int, cells: int):
    def const(values, dtype=torch.long):
        return g.op("Constant", value_t=torch.tensor(values, dtype=dtype))

    length = symbolic_helper._get_tensor_dim_size(x, axis)
    if length == cells:
        return x
    if length is None:  # unknown while exporting (AlexNet's LRN loses it): computed at run time
        length = g.op("Gather", g.op("Shape", x), const([axis]), axis_i=0)
    averages = []
    for i in range(cells):
        if isinstance(length, int):
            start, end = i * length // cells, -(-(i + 1) * length // cells)
            starts, ends, count = const([start]), const([end]), const([end - start], torch.float)
        else:
            starts = g.op("Div", g.op("Mul", length, const([i])), const([cells]))
            ends = g.op("Div", g.op("Add", g.op("Mul", length, const([i + 1])), const([cells - 1])),
                        const([cells]))
            count = g.op("Cast", g.op("Sub", ends, starts), to_i=1)  # 1: ONNX float
        piece = g.op("Slice", x, starts, ends, const([axis]), const([1]))
        averages.append(g.op("Div", g.op("ReduceSum", piece, const([axis]), keepdims_i=1), count))
    return g.op("Concat", *averages, axis_i=axis)


# -- TorchScript ----------------------------------------------------------------------------
def export_torchscript(model: nn.Module, path: Target, *, input_size: int | None = None,
                       batch_size: int = 1) -> Target:
    """Trace ``model`` in eval mode with ``torch.jit.trace`` and save it; returns ``path``.

    ``torch.jit.script`` is not used: it cannot compile the Backbone code.  The trace is
    specialised to ``input_size``; other batch sizes run.  Load it with ``torch.jit.load``.
    """
    example = example_input(model, input_size, batch_size)
    with _exporting(model):
        try:
            with torch.no_grad():
                # check_trace re-traces and compares: check_torchscript compares outputs instead
                traced = torch.jit.trace(model, (example,), check_trace=False, strict=False)
        except RuntimeError as error:
            raise ExportError(f"cannot trace {_name(model)} to TorchScript: "
                              f"{str(error).strip().splitlines()[0]}") from None
        _write(path, lambda target: torch.jit.save(traced, target))
    return path


def check_torchscript(path: Target | bytes, model: nn.Module, x: torch.Tensor) -> float:
    """Largest relative error between the saved TorchScript module's outputs for ``x`` and ``model``'s."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    if isinstance(source, io.BytesIO):
        source.seek(0)
    with quiet_tracing():
        loaded = torch.jit.load(source, map_location=x.device)
    # one plain run of the saved graph: the profiling executor's optimisation passes would
    # cost more than the run itself, and change no arithmetic on the CPU
    with torch.no_grad(), torch.jit.optimized_execution(False):
        outputs = loaded(x)
    return _largest_error(_as_list(outputs), _eager_outputs(model, x))


# -- shared ---------------------------------------------------------------------------------
def example_input(model: nn.Module, input_size: int | None = None, batch_size: int = 1, *,
                  seed: int = 0) -> torch.Tensor:
    """A seeded random batch the model accepts: (batch, in_chans, size, size), on its device.

    Exports trace with ``seed=0``; check with another seed, so that a value the trace froze
    into a constant shows up as an error.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    size = input_size if input_size is not None else getattr(model, "default_input_size", None)
    if size is None:
        raise ValueError(f"{_name(model)} has no default_input_size: pass input_size")
    for label, value in (("input_size", size), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    minimum = getattr(model, "min_input_size", 1)
    if size < minimum:
        raise ValueError(f"{_name(model)} needs inputs of at least {minimum}x{minimum}, got {size}x{size}")
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
    generator = torch.Generator().manual_seed(seed)  # the same file each time, and the caller's RNG untouched
    shape = (batch_size, getattr(model, "in_chans", 3), size, size)
    return torch.randn(shape, generator=generator).to(device, dtype)


def require(module: str):
    """Import an optional dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ModuleNotFoundError(f"{module} is not installed: it comes with the export extra, "
                                  f"pip install 'vertebra[export]'") from None


def _output_names(model: nn.Module) -> list[str]:
    if getattr(model, "out_indices", None) is not None:
        return [f"feature{i}" for i in range(len(model.out_indices))]
    if getattr(model, "num_classes", None) == 0:
        return ["features"]
    return ["logits"]


@contextlib.contextmanager
def _exporting(model: nn.Module):
    """Eval mode and no exporter chatter for the export; the model's own mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        with quiet_tracing():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def quiet_tracing():
    # Deprecation notices of torch.jit and the TorchScript ONNX exporter, and TracerWarnings
    # from the models' input checks (Python comparisons on shapes), on every export.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        yield


def _write(path: Target, write: Callable) -> None:
    """Write through ``write(target)``: a file object in place, a path atomically."""
    if hasattr(path, "write"):
        write(path)
        return
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str, a PathLike or a binary file object, got {type(path).__name__}")
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"folder {str(path.parent)!r} does not exist")
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _eager_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return _as_list(model(x))
    finally:
        model.train(was_training)


def _as_list(outputs) -> list[torch.Tensor]:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _largest_error(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> float:
    if len(actual) != len(expected):
        raise ValueError(f"the exported file gives {len(actual)} outputs, the model {len(expected)}")
    for a, e in zip(actual, expected):
        if tuple(a.shape) != tuple(e.shape):
            raise ValueError(f"the exported file gives an output of shape {tuple(a.shape)}, "
                             f"the model {tuple(e.shape)}")
    return max(relative_error(a.cpu(), e.cpu()) for a, e in zip(actual, expected))


def _name(model: nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)
