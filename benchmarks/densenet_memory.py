"""Activation memory of DenseNet's memory-efficient mode against the plain one (one JSON line each).

Each measurement runs in a fresh process: build the model and the batch, warm the kernels up on a
tiny batch, then one training step (forward and backward); the figure is how far the process's
peak resident memory (CPU) or peak allocated memory (CUDA) rose during that step.  The bytes that
autograd saves for the backward pass are counted too (deterministic, the same on any machine).
torchvision's DenseNet is measured the same way when it is importable.

    python benchmarks/densenet_memory.py                       # densenet121, batch 8, 224px, CPU
    python benchmarks/densenet_memory.py --batch 16 --size 160 --device cuda
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from vertebra.analysis import saved_tensor_bytes  # the editable install puts vertebra on the path


def build(source: str, name: str, memory_efficient: bool) -> torch.nn.Module:
    if source == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None, memory_efficient=memory_efficient)
    import vertebra

    return vertebra.create_model(name, memory_efficient=memory_efficient)


def peak_bytes(device: str) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def child(args) -> None:
    torch.manual_seed(0)
    model = build(args.source, args.model, args.memory_efficient).to(args.device).train()
    model(torch.randn(2, 3, 64, 64, device=args.device)).sum().backward()  # warm-up, small
    model.zero_grad(set_to_none=False)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()  # weights, gradients and the batch
    else:
        before = peak_bytes("cpu")  # the peak so far: building and the warm-up
    start = time.perf_counter()
    model(x).sum().backward()
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    rise = peak_bytes(args.device) - before
    print(json.dumps({
        "source": args.source, "model": args.model, "memory_efficient": args.memory_efficient,
        "device": args.device, "batch": args.batch, "size": args.size, "threads": torch.get_num_threads(),
        "peak_rise_mib": round(rise / 2**20, 1),
        "saved_for_backward_mib": round(saved_tensor_bytes(model, x)[1] / 2**20, 1),
        "step_seconds": round(seconds, 3),
    }))


def run(args, source: str, memory_efficient: bool) -> dict:
    command = [sys.executable, __file__, "--child", "--source", source, "--model", args.model,
               "--batch", str(args.batch), "--size", str(args.size), "--device", args.device]
    if memory_efficient:
        command.append("--memory-efficient")
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = out.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="densenet121")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", default="vertebra", help=argparse.SUPPRESS)
    parser.add_argument("--memory-efficient", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    sources = ["vertebra"]
    try:
        import torchvision  # noqa: F401

        sources.append("torchvision")
    except ImportError:
        pass
    for source in sources:
        plain, efficient = run(args, source, False), run(args, source, True)
        print(json.dumps({
            "source": source, "model": args.model, "batch": args.batch, "size": args.size,
            "device": args.device,
            "peak_rise_ratio": round(efficient["peak_rise_mib"] / plain["peak_rise_mib"], 3),
            "saved_for_backward_ratio": round(efficient["saved_for_backward_mib"]
                                              / plain["saved_for_backward_mib"], 3),
            "time_ratio": round(efficient["step_seconds"] / plain["step_seconds"], 3),
        }), flush=True)


if __name__ == "__main__":
    main()
