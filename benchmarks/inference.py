"""vertebra's inference path against torchvision, side by side, one JSON line per measurement.

    python benchmarks/inference.py [--models resnet50 ...] [--batch-sizes 1 32] [--threads 2]

For each model (default: the issue's goal set; --all: every vertebra model whose reference is
torchvision) it times torchvision eager (NCHW), torchvision channels_last, vertebra eager and
vertebra.optimize, in one process with one thread count, at each batch size: warm-up, then the
median of repeats.  It measures the fp32 matrix-multiply roofline in the same run and prints
each model's share of it (2 x MACs per image x images/s over the peak FLOP/s).  Ratios are the
figures to quote.  Without torchvision it still measures vertebra and says so.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import vertebra  # noqa: E402
from vertebra.analysis import count_macs  # noqa: E402

GOALS = ["resnet50", "mobilenet_v2_100", "mobilenet_v3_large", "shufflenet_v2_x1_0", "efficientnet_b0"]
TORCHVISION_NAMES = {"mobilenet_v2_100": "mobilenet_v2"}


def median_seconds(fn, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """fp32 FLOP/s of the fastest of several square matrix products: the roofline."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    fastest = min(median_seconds(lambda: a @ b, 0, 1) for _ in range(repeats))
    return 2 * size ** 3 / fastest


def runners(name: str, batch: int, torchvision):
    model = vertebra.create_model(name).eval()
    size = model.default_input_size
    x = torch.randn(batch, 3, size, size)
    fast = vertebra.optimize(model)
    found = {}
    if torchvision is not None:
        reference = torchvision.models.get_model(TORCHVISION_NAMES.get(name, name), weights=None).eval()
        last = torchvision.models.get_model(TORCHVISION_NAMES.get(name, name), weights=None).eval()
        last = last.to(memory_format=torch.channels_last)
        x_last = x.contiguous(memory_format=torch.channels_last)
        found["torchvision_eager"] = lambda: reference(x)
        found["torchvision_channels_last"] = lambda: last(x_last)
    found["vertebra_eager"] = lambda: model(x)
    found["vertebra_optimized"] = lambda: fast(x)
    return found, size, count_macs(model, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=GOALS)
    parser.add_argument("--all", action="store_true", help="every model with a torchvision reference")
    parser.add_argument("--batch-sizes", nargs="*", type=int, default=[1, 32])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import torchvision
    except ImportError:
        torchvision = None
        print(json.dumps({"note": "torchvision is not importable: measuring vertebra only"}), flush=True)
    models = ([n for n in vertebra.list_models() if vertebra.model_info(n).reference.startswith("torchvision")]
              if args.all else args.models)
    peak = matmul_peak()
    print(json.dumps({"roofline_gflops": round(peak / 1e9, 1), "threads": args.threads,
                      "torch": torch.__version__}), flush=True)
    for name in models:
        for batch in args.batch_sizes:
            found, size, macs = runners(name, batch, torchvision)
            with torch.inference_mode():
                speed = {k: batch / median_seconds(fn, 2, args.repeats) for k, fn in found.items()}
            row = {"model": name, "batch": batch, "input_size": size, "threads": args.threads,
                   **{f"{k}_images_per_s": round(v, 2) for k, v in speed.items()},
                   "optimized_roofline_share": round(2 * macs * speed["vertebra_optimized"] / peak, 3)}
            if torchvision is not None:
                row["optimized_vs_torchvision_eager"] = round(speed["vertebra_optimized"] / speed["torchvision_eager"], 2)
                row["optimized_vs_torchvision_channels_last"] = round(
                    speed["vertebra_optimized"] / speed["torchvision_channels_last"], 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
