"""`vertebra.optimize`: an inference copy of a model, as fast as PyTorch gets on the CPU.

BatchNorm in eval mode is an affine map per channel, so after a convolution (or linear
layer) it folds into that layer's weights and bias: one op and one pass over memory fewer
per block.  The copy runs in inference mode, optionally in bfloat16, and then one of three
backends runs it.  ``onednn`` (the default) traces it to TorchScript with the weights frozen
in as constants and lets oneDNN Graph compile the traced graph into fused partitions --
convolutions with their activations, residual adds and pools -- whose weights are reordered
into oneDNN's blocked layout once.  ``inductor`` compiles it with torch.compile and freezing
(the same oneDNN convolutions, with generated C++ for the element-wise work between them; a
few times more overhead per convolution and seconds of compiling).  ``eager`` stops after
folding and channels_last.  A batch runs a few images at a time, which keeps activations in
cache.  On a 2-core AMD EPYC the default runs resnet50 at 0.83-0.86 of the fp32 roofline at
batch 32, and mobilenet_v2 1.4-1.5x as fast as the inductor backend at batch 1
(benchmarks/inference.py).
The model handed in is not changed.
"""
from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable

import torch
from torch import nn

from ..hardware import cpu_supports_bf16
from ..layers import SqueezeExcite

BACKENDS = ("onednn", "inductor", "eager")

# Inductor's settings for the compiled copy, set around each call to it (see inductor_config).
# freezing: weights as constants, prepacked and fused (above).  cpp_wrapper: the graph calls its
# kernels from generated C++ rather than Python, a few microseconds saved per op.  max_autotune:
# the classifier's matrix product takes the faster of MKL and Inductor's own micro-kernels (MKL
# takes a slow path on AMD CPUs).  The last two keep autotuning from printing its timings.
INDUCTOR_CONFIG = {"freezing": True, "cpp_wrapper": True, "max_autotune": True,
                   "autotune_num_choices_displayed": 0, "max_autotune_report_choices_stats": False}

# Images per call: a large batch runs in slices, which keeps activations in a 32 MB L3 cache
# and in the heap (glibc hands blocks over 32 MB back to the kernel after each call, and faulting
# their pages in again cost more than the convolutions: compiled mobilenet_v2 at batch 32 on a
# 2-core AMD EPYC, 154 images/s in one piece, 350 in slices of four).  A slice carries about
# SLICE_MACS of work, and between four and eight 224x224 images' worth of input values (more
# images when they are smaller): light models (mobilenets, shufflenet_v2, efficientnet_b0, 0.15-
# 0.4 GMACs an image) run eight, spreading each call's fixed costs over more images (oneDNN Graph,
# batch 32: 1-8% faster than four); heavy ones (resnet50 4.1 GMACs, densenet121 2.9) run four,
# whose activations fit the cache (eight: 2-4% and 8% slower).
SLICE_MACS = 12e9
SLICE_VALUES = (4 * 3 * 224 * 224, 8 * 3 * 224 * 224)


def fold_conv_bn(conv: nn.Conv2d | nn.Linear, bn: nn.BatchNorm2d | nn.BatchNorm1d) -> None:
    """Fold ``bn``'s running statistics and affine parameters into ``conv``, in place."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else 1 / torch.sqrt(bn.running_var + bn.eps)
    shift = (bn.bias if bn.affine else 0) - bn.running_mean * scale
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, *([1] * (conv.weight.ndim - 1))))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter(bias * scale + shift)


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every BatchNorm that directly follows a convolution or linear layer in an
    nn.Sequential (vertebra's ConvNormAct, torchvision-style blocks); returns how many."""
    folded = 0
    for module in model.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for first, second in zip(names, names[1:]):
            layer, norm = module._modules[first], module._modules[second]
            pair = ((isinstance(layer, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d))
                    or (isinstance(layer, nn.Linear) and isinstance(norm, nn.BatchNorm1d)))
            if pair and norm.track_running_stats:
                fold_conv_bn(layer, norm)
                module._modules[second] = nn.Identity()
                folded += 1
    return folded


class PooledProjection(nn.Module):
    """A 1x1 convolution on a pooled (N, C, 1, 1) map -- squeeze-excite's two projections -- as
    a broadcast multiply and sum.  Same numbers; but oneDNN spends ~20 us setting up each
    convolution call, more than the few thousand multiply-adds of a projection, where Inductor
    fuses this form with the pooling before it and the gate after it into loops of its own
    (batch 1, against torchvision: efficientnet_b0 1.80x -> 2.14x, mobilenet_v3_large 2.25x -> 2.75x)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight = nn.Parameter(conv.weight.detach().flatten(1).clone(), requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (x.flatten(1)[:, None, :] * self.weight).sum(-1)
        y = y if self.bias is None else y + self.bias
        return y[:, :, None, None]


def squeeze_excite_as_sums(model: nn.Module) -> int:
    """Replace the projections of every SqueezeExcite in ``model`` by PooledProjection; returns
    how many blocks changed.  For the compiled path only: eager PyTorch would build the
    (N, C_out, C_in) product in memory."""
    blocks = [m for m in model.modules() if isinstance(m, SqueezeExcite)
              and all(conv.kernel_size == (1, 1) and conv.groups == 1 for conv in (m.fc1, m.fc2))]
    for block in blocks:
        block.fc1, block.fc2 = PooledProjection(block.fc1), PooledProjection(block.fc2)
    return len(blocks)


def cxx_compiler() -> str | None:
    """The C++ compiler TorchInductor would use (``$CXX`` or g++), or None when there is none."""
    from torch._inductor import config

    names = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    return next((path for path in map(shutil.which, filter(None, names)) if path), None)


@contextlib.contextmanager
def inductor_config():
    """INDUCTOR_CONFIG for the length of one call to the compiled copy, the user's put back after.
    Dynamo reads ``freezing`` while tracing and Inductor while compiling, and a new input shape
    recompiles on any call, so it has to hold around every call: ``torch.compile(options=
    {"freezing": True})`` reaches Inductor only, and freezes nothing.  Inductor warns of its own
    deprecated calls while it compiles int8 graphs (vertebra.quantize): kept quiet."""
    from torch._inductor import config

    with config.patch(INDUCTOR_CONFIG), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "To copy construct from a tensor", UserWarning)
        warnings.filterwarnings("ignore", "TypedStorage is deprecated", UserWarning)
        yield


def compile_frozen(model: nn.Module):
    """torch.compile for a frozen copy.  dynamic=False: each input shape gets a graph of its own,
    specialised and prepacked, at a one-off cost of seconds.  isolate_recompiles: every vertebra
    model runs Backbone.forward, and Dynamo would otherwise count all their graphs against one
    limit of 8 and run the ninth optimized model in eager without a word.  The guard filter: the
    copy's weights are constants of its graph, so Dynamo need not check its modules on every call
    (hundreds of guards, ~0.4 ms at batch 1); the input's shape, layout and dtype are still checked."""
    return torch.compile(model, dynamic=False, isolate_recompiles=True,
                         options={"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})


@contextlib.contextmanager
def onednn_fusion():
    """TorchScript's oneDNN Graph fuser on, and its autocast pass off, for the length of a call;
    the user's settings put back after.  The trace records bfloat16 autocast's casts where they
    ran, so the pass would only add more, each a cut between fused partitions (resnet50 in bf16,
    batch 8: 80 images/s with it, 106 without).  (``torch.jit.fuser("fuser3")`` would set the
    first, but warns about nvfuser on every call.)"""
    was_fusing, was_casting = torch._C._jit_llga_enabled(), torch._C._jit_set_autocast_mode(False)
    torch.jit.enable_onednn_fusion(True)
    try:
        yield
    finally:
        torch.jit.enable_onednn_fusion(was_fusing)
        torch._C._jit_set_autocast_mode(was_casting)


def in_own_compilation_unit(module: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """``module`` through a torch.jit save and load: the copy lives in a compilation unit of its
    own, which goes when the copy goes.  Frozen where it was traced, its weights -- constants of
    the frozen graph -- would stay in TorchScript's one global compilation unit for the life of the
    process (pytorch#96726): every optimize would leak a copy of the model (vgg11: 530 MB each).
    Through a file, not an io.BytesIO, which torch writes and reads a few bytes at a time through
    Python: resnet50 takes 0.23 s there against 0.74 s."""
    with tempfile.TemporaryDirectory(prefix="vertebra-trace-") as folder:
        path = os.path.join(folder, "trace.pt")
        torch.jit.save(module, path)
        return torch.jit.load(path)


class OneDNNGraphRunner:
    """The copy traced to TorchScript once per input shape, frozen (weights as constants), and run
    with oneDNN Graph fusion: oneDNN compiles each convolution with the activations, residual adds
    and pooling around it into partitions -- whole residual stages of resnet50 -- once, and each
    call runs the compiled partitions.  torch.compile's frozen graphs reach the same oneDNN
    kernels, but spend more around them: on a chain of 50 tiny convolutions, 18 us per
    convolution and 95 us per call against 4.4 and 20 here; and compiling their C++ takes
    seconds where a trace takes well under one.
    A trace is specialised to its input's shape and layout (oneDNN Graph guards on them): one each.
    oneDNN Graph fails on some graphs (the unrolled LSTMs of the recurrent models, in torch 2.13);
    such a shape runs the folded copy in eager instead, with a warning."""

    def __init__(self, model: nn.Module):
        self.model, self.traced = model, {}

    def __call__(self, x: torch.Tensor):
        key = (tuple(x.shape), x.stride(), x.dtype)
        with onednn_fusion():
            runner = self.traced.get(key) or self.trace(key, x)
            return runner(x)

    def trace(self, key, x: torch.Tensor):
        from ..export import quiet_tracing

        try:
            with quiet_tracing():
                traced = torch.jit.trace(self.model, (x,), check_trace=False, strict=False)
                traced = torch.jit.freeze(in_own_compilation_unit(traced))
                for _ in range(2):  # TorchScript profiles the first call and fuses on the second
                    traced(x)
        except RuntimeError as error:
            warnings.warn(f"oneDNN Graph could not run {type(self.model).__name__} at input shape "
                          f"{tuple(x.shape)} ({str(error).splitlines()[0]}); that shape runs in eager, "
                          "BatchNorm folded", RuntimeWarning, stacklevel=4)
            traced = self.model
        self.traced[key] = traced
        return traced


def micro_batch_size(x: torch.Tensor, micro_batch: int | None, image_macs: Callable[[], float]) -> int:
    """Images per call for input ``x``: ``micro_batch`` when given, else by SLICE_MACS within
    SLICE_VALUES.  ``image_macs()`` (one image's multiply-adds) is asked only when the batch is
    larger than the smallest slice."""
    if micro_batch:
        return micro_batch
    fewest, most = (max(1, values // max(1, x[0].numel())) for values in SLICE_VALUES)
    if len(x) <= fewest:
        return fewest
    return min(most, max(fewest, round(SLICE_MACS / max(1.0, image_macs()))))


def join(parts) -> torch.Tensor:
    """The slices' outputs as one float32 batch (no copy when there was one slice)."""
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).float()


class InferenceModel(nn.Module):
    """The optimized copy: takes any float tensor (N, C, H, W) and returns float32, runs in
    inference mode (and bfloat16 autocast when asked) a slice of the batch at a time.  The first
    call at each slice shape traces (onednn backend, 0.3-2 s) or compiles (inductor,
    seconds)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype, backend: str, micro_batch: int | None = None):
        super().__init__()
        self.model, self.dtype, self.backend, self.micro_batch = model, dtype, backend, micro_batch
        self.macs_per_image = {}  # by input (channels, height, width), counted on first use
        self.runner = {"onednn": lambda: OneDNNGraphRunner(model), "inductor": lambda: compile_frozen(model),
                       "eager": lambda: model}[backend]()
        for name in ("feature_info", "num_features", "num_classes", "model_name", "default_input_size",
                     "min_input_size", "in_chans", "out_indices"):
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))

    def forward(self, x: torch.Tensor):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D input (batch, channels, height, width), got shape {tuple(x.shape)}")
        # Freezing needs gradients off: inference mode gives that and skips autograd bookkeeping.
        # Autocast's weight cache off, as PyTorch's recipe for tracing under autocast has it: the
        # trace has to see every cast happen.
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=torch.bfloat16, cache_enabled=False,
                                                    enabled=self.dtype == torch.bfloat16), \
                (inductor_config() if self.backend == "inductor" else contextlib.nullcontext()):
            x = x.float()  # no copy when it is float32 already
            if self.backend == "eager":
                # Eager convolutions run in the layout of their input.  oneDNN Graph and Inductor
                # pick layouts themselves: their first convolution reads NCHW as it comes, where
                # converting first costs a pass over the input (inductor's mobilenet_v2, batch 1:
                # 2.09x -> 2.39x torchvision).
                x = x.contiguous(memory_format=torch.channels_last)
            slice_size = micro_batch_size(x, self.micro_batch, lambda: self.image_macs(x))
            outs = [self.runner(part) for part in x.split(slice_size)]
        if isinstance(outs[0], (list, tuple)):  # features_only: one list of levels per slice
            return [join(level) for level in zip(*outs)]
        return join(outs)


    def image_macs(self, x: torch.Tensor) -> float:
        """Multiply-accumulates for one image of ``x``'s size (0 for a model the counter fails on,
        which then runs the largest slices)."""
        from ..analysis import count_macs

        key = tuple(x.shape[1:])
        if key not in self.macs_per_image:
            try:
                self.macs_per_image[key] = float(count_macs(self.model, key[1:], in_chans=key[0]))
            except (RuntimeError, ValueError, TypeError):
                self.macs_per_image[key] = 0.0
        return self.macs_per_image[key]


def check_micro_batch(micro_batch) -> None:
    if micro_batch is not None and (isinstance(micro_batch, bool) or not isinstance(micro_batch, int)
                                    or micro_batch < 1):
        raise ValueError(f"micro_batch must be a positive int or None (automatic), got {micro_batch!r}")


def optimize(model: nn.Module, *, dtype: torch.dtype = torch.float32, backend: str = "onednn",
             micro_batch: int | None = None, compile: bool | None = None) -> InferenceModel:
    """An inference copy of ``model``: BatchNorm folded, channels_last weights, eval and inference
    mode, optionally bfloat16 (CPUs with AVX512-BF16 or AMX).

    ``backend="onednn"`` (default) traces the copy to TorchScript and runs it with oneDNN Graph
    fusion; the first call at each input shape takes 0.3-2 s.  ``backend="inductor"`` compiles it
    with torch.compile and freezing instead: it needs a C++ compiler, its first call at each shape
    takes 5-12 s, and on a 2-core AMD EPYC it ran 2-40% slower than onednn on resnet50, the
    mobilenets and efficientnet_b0 (shufflenet_v2 at batch 32: 2-8% faster).  Either copy is frozen: to change its weights, optimize the model again.
    ``backend="eager"`` stops after folding and layout.  ``micro_batch`` is the number of images
    per call (default: four to eight at 224x224 by the model's multiply-adds, more for smaller images).
    ``compile=True/False`` picks inductor / eager.  fp32 outputs stay within 1e-4 of the eager model.
    PyTorch has deprecated TorchScript (torch 2.14 warns; vertebra keeps the warnings quiet): should
    a later torch drop it, ``backend="inductor"`` is the path that remains."""
    if compile is not None:
        if not isinstance(compile, bool):
            raise TypeError(f"compile must be True or False, got {compile!r}")
        backend = "inductor" if compile else "eager"
    if not isinstance(model, nn.Module):
        raise TypeError(f"optimize expects an nn.Module, got {type(model).__name__}")
    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    check_micro_batch(micro_batch)
    if backend == "inductor" and cxx_compiler() is None:
        raise RuntimeError("backend='inductor' compiles C++ and found no compiler (g++, or $CXX); "
                           "install one or use backend='eager'")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if dtype == torch.bfloat16 and device.type == "cpu" and not cpu_supports_bf16():
        raise ValueError("bfloat16 inference needs a CPU with AVX512-BF16 or AMX (this one has neither); "
                         "use dtype=torch.float32")
    fast = copy.deepcopy(model).eval()
    fold_batchnorm(fast)
    if backend == "inductor":
        squeeze_excite_as_sums(fast)
    # bfloat16 through autocast: convolutions and matrix products in bf16, the numerically
    # delicate ops (reductions, normalisations, softmax) kept in fp32 -- on a trained digits
    # model this agreed with fp32 on 99.6% of top-1 answers, casting every weight on 99.3%.
    fast = fast.to(memory_format=torch.channels_last)
    for parameter in fast.parameters():
        parameter.requires_grad_(False)
    return InferenceModel(fast, dtype, backend, micro_batch).eval()
