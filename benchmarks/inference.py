"""vertebra's inference path against torchvision, side by side, one JSON line per measurement.

    python benchmarks/inference.py [--models resnet50 ...] [--batch-sizes 1 32] [--threads 2]

For each model (default: the issue's goal set; --all: every vertebra model whose reference is
torchvision) it times torchvision eager (NCHW), torchvision channels_last, vertebra eager,
vertebra.optimize(backend="eager") (BatchNorm folded, channels_last), vertebra.optimize() (the
default: the same, traced and frozen, fused by oneDNN Graph, a few images per call) and
vertebra.optimize(backend="inductor") (compiled by Inductor with freezing; --no-inductor skips
it), in one process with one thread count, at each batch size; the one-off first-call times
(trace, compile) are printed too.  The runners take turns, one timed sample each per round, so
that load from other processes on a shared machine falls on all of them alike; each figure is
the median of its samples, and each row says how much CPU other processes took meanwhile.  The same run
measures the fp32 roofline -- the fastest of several warm matrix products and convolutions,
through MKL and oneDNN, at the same thread count, re-measured beside every row and only ever
raised -- and prints each model's share of it (2 x MACs per image x images/s over the peak
FLOP/s).  Ratios are the figures to quote.  Without torchvision it still measures vertebra
and says so.

The runtimes people deploy with run in the same rounds: ONNX Runtime and OpenVINO (optional
imports; a missing one is named), each fed vertebra's own ONNX export of the same model and
weights at the row's batch size, with their documented CPU settings: all graph optimisations,
the same thread count, OpenVINO's latency hint and f32 precision (``--bf16``: OpenVINO's bf16 hint
beside vertebra.optimize(dtype=bfloat16)).  ONNX Runtime's threads are told not to spin after a
call; OpenVINO's (oneTBB) cannot be, so every runner's sample is followed by a short pause, off
the clock, in which idle threads stop spinning before the next runner starts.  Each row has
``optimized_vs_best_runtime``.

``--int8`` adds int8: vertebra.quantize (post-training static, per-channel weights, calibrated on
CALIBRATION_IMAGES random images of the row's size) and ONNX Runtime's own static quantization of
the same export (quantize_static, QDQ, unsigned activations and signed per-channel weights, after
its pre-processing, calibrated on the same images), with ``int8_vs_fp32`` and
``int8_vs_runtime_int8``.  It also measures accuracy honesty: on each model with synthetic weights
(its BatchNorm statistics and affine parameters drawn at random, so that the network is not the
degenerate one of a fresh initialisation) the top-1 agreement of bf16 and int8 with fp32 on the
digits' held-out split upscaled to the model's input size; and, in one more line, the same on
MobileNet V2 (0.35) trained on the digits (``--digits-epochs``).

The memory roofline beside the compute one: the run measures this machine's memory bandwidth (a
large copy and a triad, the better of the two), and each row gives the bound
max(2 x MACs / peak FLOP/s, bytes / bandwidth) per batch, with the bytes the ShuffleNet V2 memory
access cost that ``vertebra.profile`` counts, and vertebra.optimize's share of that bound.  That
count takes every tensor to memory and back; a share above 1 says the traffic stayed in the
caches (mobilenet_v2_100 at batch 1 measured 1.5 on first trial).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import vertebra  # noqa: E402
from vertebra.analysis import count_macs  # noqa: E402

GOALS = ["resnet50", "mobilenet_v2_100", "mobilenet_v3_large", "shufflenet_v2_x1_0", "efficientnet_b0"]
TORCHVISION_NAMES = {"mobilenet_v2_100": "mobilenet_v2"}


def roofline_probes() -> dict[str, tuple]:
    """The dense fp32 kernels that bound what a model can reach: name -> (call, FLOPs per call).

    An upper bound must be a rate no real model beats, so the probes are the kernels the models
    themselves run: square products through MKL (torch.mm), and products as 1x1 convolutions
    plus 3x3 convolutions through oneDNN, which on some CPUs (AMD, where MKL takes a slower
    path) is the faster of the two."""
    probes, last = {}, torch.channels_last
    for n in (1024, 2048, 4096):
        a, b = torch.randn(n, n), torch.randn(n, n)
        probes[f"mkl_gemm_{n}"] = (lambda a=a, b=b: a @ b), 2 * n ** 3
    for batch, channels, side in ((1, 1024, 64), (4, 512, 56), (1, 2048, 32)):
        x = torch.randn(batch, channels, side, side).contiguous(memory_format=last)
        w = torch.randn(channels, channels, 1, 1).contiguous(memory_format=last)
        probes[f"onednn_gemm_{batch * side * side}x{channels}x{channels}"] = (
            (lambda x=x, w=w: F.conv2d(x, w)), 2 * batch * side * side * channels ** 2)
    for batch, channels, side in ((8, 64, 56), (8, 128, 28), (8, 256, 14), (8, 512, 7)):
        x = torch.randn(batch, channels, side, side).contiguous(memory_format=last)
        w = torch.randn(channels, channels, 3, 3).contiguous(memory_format=last)
        probes[f"onednn_conv3x3_{channels}"] = (
            (lambda x=x, w=w: F.conv2d(x, w, padding=1)), 2 * 9 * batch * side * side * channels ** 2)
    return probes


def best_flops(fn, flops: float, repeats: int = 5) -> float:
    """FLOP/s of the fastest of ``repeats`` warm calls: the best the kernel sustains."""
    fn(), fn()  # warm-up: oneDNN builds its kernel, MKL its buffers
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return flops / fastest


def cpu_ticks() -> tuple[int, int, int] | None:
    """(busy, total) clock ticks of the whole machine and this process's busy ticks, from /proc
    (Linux; None elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(t) for t in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            mine = sum(int(t) for t in f.read().rsplit(")", 1)[1].split()[11:13])
    except (OSError, ValueError, IndexError):
        return None
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks), mine


def others_cpu_share(before, after) -> float | None:
    """The share of all CPUs that other processes used between two cpu_ticks(): a row measured
    while it was high is worth repeating (two-thread runs slow down far more than in proportion)."""
    if before is None or after is None or after[1] == before[1]:
        return None
    busy, total, mine = (a - b for a, b in zip(after, before))
    return round(max(0.0, (busy - mine) / total), 3)


def memory_bandwidth(elements: int = 1 << 26, repeats: int = 5) -> dict[str, float]:
    """Bytes/s of the best of ``repeats`` large copies (read + write) and triads (a = b + s c: two
    reads, one write), on arrays of ``elements`` floats (256 MiB each), far beyond the caches."""
    a, b, c = torch.empty(elements), torch.rand(elements), torch.rand(elements)
    probes = {"copy": (lambda: a.copy_(b), 2), "triad": (lambda: torch.add(b, c, alpha=3.0, out=a), 3)}
    rates = {name: best_flops(fn, arrays * 4 * elements, repeats) for name, (fn, arrays) in probes.items()}
    return rates


def runtime_runners(model, name: str, x: torch.Tensor, threads: int, bf16: bool, folder: Path) -> tuple[dict, list]:
    """ONNX Runtime and OpenVINO on vertebra's own export of ``model``; and the notes on what is missing."""
    from vertebra.export import export_onnx

    path = folder / f"{name}-b{x.shape[0]}.onnx"
    export_onnx(model, path, input_size=x.shape[-1], batch_size=x.shape[0])
    array, found, notes = x.numpy(), {}, []
    try:
        import onnxruntime as ort
    except ImportError:
        notes.append("onnxruntime is not importable: pip install onnxruntime")
    else:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        for pool in ("intra", "inter"):  # idle threads block instead of spinning into the next runner's turn
            options.add_session_config_entry(f"session.{pool}_op.allow_spinning", "0")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: array}
        found["onnxruntime"] = lambda: session.run(None, feed)
    try:
        import openvino as ov
    except ImportError:
        notes.append("openvino is not importable: pip install openvino")
    else:
        core = ov.Core()
        precisions = {"openvino": "f32", **({"openvino_bf16": "bf16"} if bf16 else {})}
        for runner, precision in precisions.items():
            compiled = core.compile_model(str(path), "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                             "INFERENCE_NUM_THREADS": threads,
                                                             "INFERENCE_PRECISION_HINT": precision})
            request = compiled.create_infer_request()
            found[runner] = lambda request=request: request.infer({0: array}, share_inputs=True)
    return found, notes


CALIBRATION_IMAGES = 32


def onnxruntime_int8(model, name: str, calibration: torch.Tensor, x: torch.Tensor, threads: int,
                     folder: Path):
    """ONNX Runtime's static int8 quantization of vertebra's export of ``model``, as its documentation
    has it for CPUs: pre-processing (shape inference, graph optimisation), then QDQ with uint8
    activations and per-channel int8 weights, calibrated on ``calibration``.  Returns a runner for
    ``x``, or None with the reason."""
    from vertebra.export import export_onnx

    try:
        import onnxruntime as ort
        from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                              quantize_static)
    except ImportError:
        return None, "onnxruntime.quantization is not importable: pip install onnxruntime"
    path, ready, quantized = (folder / f"{name}-b{x.shape[0]}-{kind}.onnx" for kind in ("float", "pre", "int8"))
    export_onnx(model, path, input_size=x.shape[-1], batch_size=x.shape[0])
    quant_pre_process(str(path), str(ready))

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration.split(x.shape[0]))  # the export has a fixed batch size

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None or len(batch) != x.shape[0] else {"images": batch.numpy()}

    quantize_static(str(ready), str(quantized), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    for pool in ("intra", "inter"):
        options.add_session_config_entry(f"session.{pool}_op.allow_spinning", "0")
    session = ort.InferenceSession(str(quantized), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return (lambda: session.run(None, feed)), None


def synthetic_weights(model):
    """``model`` with its BatchNorm statistics and affine parameters drawn at random (seeded): a
    fresh initialisation zeroes some of them (EfficientNet's last BatchNorm in each block, for one)
    and its outputs are then all near zero, where any precision would 'agree' by chance or not at all."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                for tensor, low, high in ((module.running_mean, -0.1, 0.1), (module.running_var, 0.5, 1.5),
                                          (module.weight, 0.5, 1.0), (module.bias, -0.1, 0.1)):
                    tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    return model.eval()


def top1_agreement(model, size: int, bf16: bool, images: torch.Tensor | None = None) -> dict:
    """Top-1 agreement of bf16 (when the CPU has it) and int8 with fp32 on the digits' held-out
    split (or ``images``), at ``size``; int8 calibrated on as many training images."""
    from vertebra.train import digits

    splits = digits(size)
    images = splits.test.images if images is None else images
    fp32 = vertebra.optimize(model)(images).argmax(1)
    found = {"int8": vertebra.quantize(model, splits.train.images[:len(images)])(images).argmax(1)}
    if bf16:
        found["bf16"] = vertebra.optimize(model, dtype=torch.bfloat16)(images).argmax(1)
    return {f"{kind}_top1_agreement": round(float((fp32 == top).float().mean()), 4) for kind, top in found.items()}


def digits_agreement(epochs: int, bf16: bool) -> dict:
    """MobileNet V2 (0.35, 32x32 stem) trained on the digits; its fp32 accuracy and the agreements."""
    from rich.console import Console

    from vertebra.train import TrainConfig, digits, train
    from vertebra.train.checkpoint import load_checkpoint

    run = Path(tempfile.mkdtemp(prefix="vertebra-int8-digits-")) / "run"
    train(TrainConfig("mobilenet_v2_035", epochs=epochs, out=run), Console(quiet=True))
    model = vertebra.create_model("mobilenet_v2_035", num_classes=10, small_input=True)
    load_checkpoint(run, model)
    test = digits().test
    accuracy = float((vertebra.optimize(model)(test.images).argmax(1) == test.labels).float().mean())
    return {"digits_model": "mobilenet_v2_035", "epochs": epochs, "fp32_test_accuracy": round(accuracy, 4),
            **top1_agreement(model.eval(), 32, bf16)}


def interleaved_seconds(runners: dict, rounds: int, sample_s: float = 0.05,
                        settle_s: float = 0.02) -> dict[str, list[float]]:
    """Seconds per call of each runner, one sample per round.  They take turns, so that a burst
    of load from elsewhere lands on all of them; a sample repeats a fast call enough times to
    last about ``sample_s``, above the timer's and the scheduler's noise."""
    calls = {}
    for name, fn in runners.items():
        fn()  # warm-up
        start = time.perf_counter()
        fn()
        calls[name] = max(1, round(sample_s / (time.perf_counter() - start)))
    samples = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
            time.sleep(settle_s)  # off the clock: spinning pool threads (oneTBB's, OpenMP's) go idle
    return samples


def first_call_seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return round(time.perf_counter() - start, 1)


def runners(name: str, batch: int, torchvision, inductor: bool, bf16: bool, int8: bool):
    """The callables to time, and how long each optimized copy's first call (trace or compile) took."""
    model = vertebra.create_model(name).eval()
    size = model.default_input_size
    x = torch.randn(batch, 3, size, size)
    folded = vertebra.optimize(model, backend="eager")
    fast = vertebra.optimize(model)
    first_calls = {"optimized_first_call_s": first_call_seconds(lambda: fast(x))}
    if inductor:
        compiled = vertebra.optimize(model, backend="inductor")
        first_calls["inductor_first_call_s"] = first_call_seconds(lambda: compiled(x))
    found = {}
    if torchvision is not None:
        reference = torchvision.models.get_model(TORCHVISION_NAMES.get(name, name), weights=None).eval()
        last = torchvision.models.get_model(TORCHVISION_NAMES.get(name, name), weights=None).eval()
        last = last.to(memory_format=torch.channels_last)
        x_last = x.contiguous(memory_format=torch.channels_last)
        found["torchvision_eager"] = lambda: reference(x)
        found["torchvision_channels_last"] = lambda: last(x_last)
    found["vertebra_eager"] = lambda: model(x)
    found["vertebra_folded"] = lambda: folded(x)
    found["vertebra_optimized"] = lambda: fast(x)
    if inductor:
        found["vertebra_inductor"] = lambda: compiled(x)
    if int8:
        with warnings.catch_warnings():  # a layer left in float32 is named in the row
            warnings.simplefilter("ignore", RuntimeWarning)
            quantized = vertebra.quantize(model, torch.randn(CALIBRATION_IMAGES, 3, size, size))
        first_calls["int8_first_call_s"] = first_call_seconds(lambda: quantized(x))
        first_calls["int8_float_layers"] = len(quantized.float_layers)
        found["vertebra_int8"] = lambda: quantized(x)
    if bf16:
        half = vertebra.optimize(model, dtype=torch.bfloat16)
        first_calls["optimized_bf16_first_call_s"] = first_call_seconds(lambda: half(x))
        found["vertebra_optimized_bf16"] = lambda: half(x)
    return found, size, model, first_calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=GOALS)
    parser.add_argument("--all", action="store_true", help="every model with a torchvision reference")
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=7, help="rounds of timed samples")
    parser.add_argument("--no-inductor", action="store_true", help="skip the inductor backend (seconds of compiling)")
    parser.add_argument("--no-runtimes", action="store_true", help="skip ONNX Runtime and OpenVINO")
    parser.add_argument("--bf16", action="store_true", help="add vertebra.optimize(dtype=bfloat16) and OpenVINO bf16")
    parser.add_argument("--int8", action="store_true", help="add vertebra.quantize and ONNX Runtime's static int8, "
                        "and the top-1 agreement of bf16 and int8 with fp32")
    parser.add_argument("--digits-epochs", type=int, default=12, help="--int8: epochs of the digits-trained model")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vertebra-inference-bench-"))
    torch.set_num_threads(args.threads)
    try:
        import torchvision
    except ImportError:
        torchvision = None
        print(json.dumps({"note": "torchvision is not importable: measuring vertebra only"}), flush=True)
    models = ([n for n in vertebra.list_models() if vertebra.model_info(n).reference.startswith("torchvision")]
              if args.all else args.models)
    probes = roofline_probes()
    rates = {name: best_flops(fn, flops) for name, (fn, flops) in probes.items()}
    best = max(rates, key=rates.get)
    peak = rates[best]
    bandwidth = memory_bandwidth()
    bytes_per_s = max(bandwidth.values())
    print(json.dumps({"roofline_gflops": round(peak / 1e9, 1), "threads": args.threads, "torch": torch.__version__,
                      "probes_gflops": {k: round(v / 1e9, 1) for k, v in rates.items()},
                      "memory_gb_per_s": {k: round(v / 1e9, 1) for k, v in bandwidth.items()}}), flush=True)
    if args.int8:
        print(json.dumps(digits_agreement(args.digits_epochs, args.bf16)), flush=True)
    for name in models:
        for batch in args.batch_sizes:
            found, size, model, first_calls = runners(name, batch, torchvision, not args.no_inductor, args.bf16,
                                                      args.int8)
            cost = vertebra.profile(model, size, batch, measure=False)
            macs = cost.macs / batch
            if not args.no_runtimes:
                deployed, notes = runtime_runners(model, name, torch.randn(batch, 3, size, size), args.threads,
                                                  args.bf16, folder)
                found.update(deployed)
                if args.int8:
                    runtime_int8, note = onnxruntime_int8(model, name, torch.randn(CALIBRATION_IMAGES, 3, size, size),
                                                          torch.randn(batch, 3, size, size), args.threads, folder)
                    notes += [note] if note else []
                    found.update({"onnxruntime_int8": runtime_int8} if runtime_int8 else {})
                for note in notes:
                    print(json.dumps({"note": note}), flush=True)
            found["roofline"] = probes[best][0]  # the winning probe again, under this row's load
            before = cpu_ticks()
            with torch.inference_mode():
                samples = interleaved_seconds(found, args.repeats)
            others = others_cpu_share(before, cpu_ticks())
            # The roofline only ever rises: the best rate the probe has reached in this run.
            peak = max(peak, probes[best][1] / min(samples.pop("roofline")))
            speed = {k: batch / statistics.median(times) for k, times in samples.items()}
            row = {"model": name, "batch": batch, "input_size": size, "threads": args.threads,
                   **first_calls, "others_cpu_share": others,
                   **{f"{k}_images_per_s": round(v, 2) for k, v in speed.items()},
                   "roofline_gflops": round(peak / 1e9, 1),
                   "optimized_roofline_share": round(2 * macs * speed["vertebra_optimized"] / peak, 3)}
            # the memory roofline: a batch cannot take less than its bytes over the bandwidth
            bound_s = max(2 * cost.macs / peak, cost.memory_access / bytes_per_s)
            row.update(memory_access_mb=round(cost.memory_access / 1e6, 1),
                       bound="memory" if cost.memory_access / bytes_per_s > 2 * cost.macs / peak else "compute",
                       optimized_share_of_bound=round(bound_s * speed["vertebra_optimized"] / batch, 3))
            deployed = [speed[k] for k in ("onnxruntime", "openvino") if k in speed]
            if deployed:
                row["optimized_vs_best_runtime"] = round(speed["vertebra_optimized"] / max(deployed), 2)
            if "vertebra_optimized_bf16" in speed:
                row["bf16_vs_fp32"] = round(speed["vertebra_optimized_bf16"] / speed["vertebra_optimized"], 2)
            if "vertebra_int8" in speed:
                row["int8_vs_fp32"] = round(speed["vertebra_int8"] / speed["vertebra_optimized"], 2)
                if "onnxruntime_int8" in speed:
                    row["int8_vs_runtime_int8"] = round(speed["vertebra_int8"] / speed["onnxruntime_int8"], 2)
                if batch == max(args.batch_sizes):  # once per model
                    row.update(top1_agreement(synthetic_weights(vertebra.create_model(name)), size, args.bf16))
            if "vertebra_inductor" in speed:
                row["optimized_vs_inductor"] = round(speed["vertebra_optimized"] / speed["vertebra_inductor"], 2)
            if torchvision is not None:
                row["optimized_vs_torchvision_eager"] = round(speed["vertebra_optimized"] / speed["torchvision_eager"], 2)
                row["optimized_vs_torchvision_channels_last"] = round(
                    speed["vertebra_optimized"] / speed["torchvision_channels_last"], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
