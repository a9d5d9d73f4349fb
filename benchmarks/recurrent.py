"""Forward + backward of vertebra's LSTM (written from its gate equations) against torch.nn.LSTM.

The row-by-row MNIST shape: sequence 28, batch 64, 28 inputs, hidden 128, 2 layers, on the CPU,
same process and thread count, the same weights; the two run interleaved after a warm-up and
each figure is the median of the repeats.  Prints one JSON line per measurement, then the
ratios (vertebra / torch.nn; the goal is <= 2 without return_gates), by
wall-clock time and by CPU time.

    .venv/bin/python benchmarks/recurrent.py [--repeats 30] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from vertebra.layers.recurrent import LSTM

SEQUENCE, BATCH, INPUTS, HIDDEN, LAYERS = 28, 64, 28, 128, 2


def step_time(run) -> tuple[float, float]:
    """Wall time, and the process's CPU time (steadier on a shared machine, with one thread)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    theirs = nn.LSTM(INPUTS, HIDDEN, LAYERS, batch_first=True)
    mine = LSTM(INPUTS, HIDDEN, LAYERS, batch_first=True)
    mine.load_state_dict(theirs.state_dict())
    x = torch.randn(BATCH, SEQUENCE, INPUTS)
    with torch.no_grad():  # the same function before timing it
        error = ((mine(x)[0] - theirs(x)[0]).norm() / theirs(x)[0].norm()).item()
    runs = {
        "torch.nn.LSTM": lambda: theirs(x)[0].sum().backward(),
        "vertebra LSTM": lambda: mine(x)[0].sum().backward(),
        "vertebra LSTM, return_gates": lambda: (mine(x, return_gates=True)[0].sum().backward()),
    }
    for run in runs.values():  # warm-up
        for _ in range(3):
            run()
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            times[name].append(step_time(run))
    medians = {name: statistics.median(wall for wall, _ in values) for name, values in times.items()}
    cpu = {name: statistics.median(used for _, used in values) for name, values in times.items()}
    shape = dict(sequence=SEQUENCE, batch=BATCH, inputs=INPUTS, hidden=HIDDEN, layers=LAYERS,
                 threads=torch.get_num_threads(), repeats=args.repeats)
    for name, median in medians.items():
        print(json.dumps({"benchmark": "lstm_forward_backward_cpu", "impl": name,
                          "median_ms": round(median * 1e3, 3), "median_cpu_ms": round(cpu[name] * 1e3, 3),
                          **shape}))
    ratios = {f"{clock}ratio{gates}_vs_torch": round(figures[name] / figures["torch.nn.LSTM"], 3)
              for clock, figures in (("", medians), ("cpu_", cpu))
              for gates, name in (("", "vertebra LSTM"), ("_with_gates", "vertebra LSTM, return_gates"))}
    print(json.dumps({"benchmark": "lstm_forward_backward_cpu", **ratios, "output_relative_error": error,
                      **shape}))


if __name__ == "__main__":
    main()
