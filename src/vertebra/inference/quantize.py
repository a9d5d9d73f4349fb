"""`vertebra.quantize`: int8 post-training static quantization, run through the compiled path.

The model is captured with torch.export (the batch dimension left free), BatchNorm folded
first; torchao's PT2E flow with the X86 Inductor quantizer then observes it on calibration
images (per-channel weight ranges, histogram-calibrated activation ranges) and converts it to
quantize/dequantize pairs around each convolution and linear layer.  Inductor, with freezing,
turns each pair and its convolution into one oneDNN int8 convolution whose weights are packed
once -- on CPUs with VNNI or AMX-INT8, several times the float32 throughput (benchmarks/
inference.py).  Layers the quantizer has no int8 kernel for (transposed convolutions, for one)
stay float32 and are named.  torchao is the optional extra ``vertebra[quantize]``; the compile
needs a C++ compiler, as ``optimize(backend="inductor")`` does.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from ..hardware import cpu_supports_int8
from .optimize import InferenceModel, check_micro_batch, cxx_compiler, fold_batchnorm

CALIBRATION_SLICE = 32  # images per calibration call: the observers see every image, memory stays small
WEIGHTED_OPS = ("conv", "linear", "addmm", "matmul", "mm")  # aten ops whose weight int8 would replace
MODEL_ATTRIBUTES = ("feature_info", "num_features", "num_classes", "model_name", "default_input_size",
                    "min_input_size", "in_chans", "out_indices")


@contextlib.contextmanager
def quiet_torchao():
    """torchao logs a warning for each of its CUDA kernel libraries it cannot load on a CPU
    machine, and torch one for each enum torchao registers; neither is about the user's model."""
    loggers = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def pt2e():
    """torchao's PT2E functions and the X86 Inductor quantizer, or a clear error without torchao."""
    try:
        with quiet_torchao():
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as error:
        raise ModuleNotFoundError("int8 quantization needs torchao (pip install 'vertebra[quantize]'); "
                                  f"importing it failed: {error}") from None
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())  # per-channel weights
    return prepare_pt2e, convert_pt2e, quantizer


def calibration_batches(data, in_chans: int | None) -> list[torch.Tensor]:
    """``data`` -- a (N, C, H, W) tensor, or an iterable of such tensors or of (images, labels)
    batches such as a DataLoader -- as a list of float batches, checked."""
    if isinstance(data, torch.Tensor):
        batches = [data]
    elif isinstance(data, Iterable) and not isinstance(data, (str, bytes)):
        batches = [batch[0] if isinstance(batch, (tuple, list)) and batch else batch for batch in data]
    else:
        raise TypeError(f"calibration_data must be a tensor (N, C, H, W) or an iterable of image batches, "
                        f"got {type(data).__name__}")
    for batch in batches:
        if not isinstance(batch, torch.Tensor):
            raise TypeError(f"calibration_data must hold image tensors, got a {type(batch).__name__}")
        channels = f"{in_chans}, " if in_chans else "C, "
        if batch.ndim != 4 or (in_chans and batch.shape[1] != in_chans):
            raise ValueError(f"calibration images must be (N, {channels}H, W) batches, got shape {tuple(batch.shape)}")
        if not batch.is_floating_point():
            raise TypeError(f"calibration images must be floating point (preprocessed), got {batch.dtype}")
    batches = [batch.float() for batch in batches if len(batch)]
    if not batches:
        raise ValueError("calibration_data is empty: int8 ranges are measured on images, give at least one "
                         "(a few hundred from the training data is typical)")
    if len({tuple(batch.shape[1:]) for batch in batches}) > 1:
        raise ValueError("calibration images must all have one size, got "
                         f"{sorted({tuple(batch.shape[1:]) for batch in batches})}")
    return batches


def capture(model: nn.Module, example: torch.Tensor) -> torch.fx.GraphModule:
    """``model`` as an ATen graph through torch.export, its batch dimension free."""
    batch = torch.export.Dim("batch", min=1)
    example = example[:1].expand(2, -1, -1, -1).contiguous()  # a batch of 2: 1 would be specialised
    try:
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},)).module()
    except Exception as error:  # torch.export raises several unrelated types; all mean "cannot capture"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"torch.export could not capture {type(model).__name__} for quantization: {first}") from None


def float_layers(prepared: torch.fx.GraphModule) -> list[str]:
    """The weighted layers (convolutions, linear layers) the quantizer left in float32, by module
    name and type: those whose weight got no observer."""
    names = []
    for node in prepared.graph.nodes:
        if node.op != "call_function" or len(node.args) < 2 or not any(op in str(node.target) for op in WEIGHTED_OPS):
            continue
        weight = node.args[1]
        if isinstance(weight, torch.fx.Node) and weight.op == "get_attr":  # an observed weight is a call_module
            stack = list(node.meta.get("nn_module_stack", {}).values())
            path, kind = stack[-1] if stack else (str(weight.target), "")
            names.append(f"{path} ({kind.rsplit('.', 1)[-1]})" if kind else path)
    return names


def quantize(model: nn.Module, calibration_data, *, micro_batch: int | None = None) -> InferenceModel:
    """An int8 copy of ``model``: post-training static quantization (per-channel weights,
    activation ranges calibrated on ``calibration_data``: a (N, C, H, W) tensor or an iterable of
    batches, e.g. a DataLoader, preprocessed as for inference), BatchNorm folded, compiled with
    Inductor on first call at each slice shape (seconds).  Returns an InferenceModel like
    ``optimize``'s, float32 in and out; ``.float_layers`` names the layers left in float32.
    The model handed in is not changed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize expects an nn.Module, got {type(model).__name__}")
    check_micro_batch(micro_batch)
    batches = calibration_batches(calibration_data, getattr(model, "in_chans", None))
    if cxx_compiler() is None:
        raise RuntimeError("int8 runs through Inductor, which compiles C++ and found no compiler (g++, or $CXX); "
                           "install one, or use vertebra.optimize for float32")
    prepare_pt2e, convert_pt2e, quantizer = pt2e()
    if not cpu_supports_int8():
        warnings.warn("this CPU has neither VNNI nor AMX-INT8 instructions: int8 runs, but likely slower than "
                      "float32 (vertebra.optimize)", RuntimeWarning, stacklevel=2)
    folded = copy.deepcopy(model).eval()
    fold_batchnorm(folded)
    with quiet_torchao(), torch.no_grad():
        prepared = prepare_pt2e(capture(folded, batches[0]), quantizer)
        for batch in batches:
            for part in batch.split(CALIBRATION_SLICE):
                prepared(part)
        left_float = float_layers(prepared)
        converted = convert_pt2e(prepared)
    if left_float:
        warnings.warn(f"no int8 kernel for {len(left_float)} layer(s), which stay float32: {', '.join(left_float)}",
                      RuntimeWarning, stacklevel=2)
    return as_inference_model(converted, model, left_float, micro_batch, tuple(batches[0].shape[1:]))


def as_inference_model(converted: nn.Module, model: nn.Module | dict, left_float: list[str],
                       micro_batch: int | None, image_shape: tuple) -> InferenceModel:
    """The converted graph behind InferenceModel's compiled (inductor) path, with the float
    model's attributes (``model`` itself, or a dict of them) and its MACs for the slice size."""
    from ..analysis import count_macs

    quantized = InferenceModel(converted, torch.float32, "inductor", micro_batch)
    attributes = model if isinstance(model, dict) else {name: getattr(model, name) for name in MODEL_ATTRIBUTES
                                                        if hasattr(model, name)}
    for name, value in attributes.items():
        setattr(quantized, name, value)
    quantized.float_layers, quantized.precision, quantized.image_shape = left_float, "int8", image_shape
    if isinstance(model, nn.Module):
        try:
            quantized.macs_per_image[image_shape] = float(count_macs(model, image_shape[1:], in_chans=image_shape[0]))
        except (RuntimeError, ValueError, TypeError):
            pass
    return quantized


def save_quantized(quantized: InferenceModel, path: str | Path, metadata: dict | None = None) -> Path:
    """Write an int8 model from ``quantize`` as a torch.export program (.pt2), atomically, with
    ``metadata`` (JSON) beside its graph; ``load_quantized`` reads it back."""
    from ..durable import write_file

    if getattr(quantized, "precision", None) != "int8":
        raise TypeError(f"save_quantized expects a model from vertebra.quantize, got {type(quantized).__name__}")
    example = torch.zeros(2, *quantized.image_shape)
    with quiet_torchao():
        program = torch.export.export(quantized.model, (example,),
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
    attributes = {name: getattr(quantized, name) for name in ("num_classes", "in_chans", "num_features")
                  if hasattr(quantized, name)}
    extra = {"vertebra.json": json.dumps({"metadata": metadata or {}, "attributes": attributes,
                                          "float_layers": quantized.float_layers,
                                          "image_shape": list(example.shape[1:])})}
    buffer = io.BytesIO()  # torch.export names a file not ending in .pt2 in a warning: the temporary would be
    torch.export.save(program, buffer, extra_files=extra)
    return write_file(path, lambda temporary: temporary.write_bytes(buffer.getvalue()))


def load_quantized(path: str | Path, *, micro_batch: int | None = None) -> tuple[InferenceModel, dict]:
    """An int8 model written by ``save_quantized``, ready to run, and the metadata saved with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    pt2e()  # torchao registers the quantized ops the program calls
    extra = {"vertebra.json": ""}
    try:
        with quiet_torchao():
            program = torch.export.load(path, extra_files=extra)
    except Exception as error:
        raise ValueError(f"{path} is not a quantized model saved by vertebra: {error}") from None
    if not extra["vertebra.json"]:
        raise ValueError(f"{path} is a torch.export program, but not one saved by vertebra quantize")
    saved = json.loads(extra["vertebra.json"])
    quantized = as_inference_model(program.module(), saved["attributes"], saved["float_layers"], micro_batch,
                                   tuple(saved["image_shape"]))
    return quantized, saved["metadata"]
