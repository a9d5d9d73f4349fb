"""How well the latency table predicts whole networks: mnas_blocks children, predicted against measured.

Every block configuration of the space is timed once (vertebra.design.latency, batch 1, one thread
by default, the median of the repeats); then N sampled children (32x32 digits input, the 32x32
stem, 10 classes: as a search on the digits trains them) are predicted from the table and
measured whole.  Prints one JSON line per child, then the Spearman rank correlation and the mean
relative error (MnasNet found such a predictor good enough to search with; the issue's bar is
rho >= 0.9).

    .venv/bin/python benchmarks/latency_table.py [--children 30] [--threads 1] [--repeats 15]
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from pathlib import Path

from vertebra.design.latency import LatencyTable
from vertebra.design.nas import TrialSettings, get_space
from vertebra.design.nas.costs import ChildLatency


def ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0.0] * len(values)
    for rank, index in enumerate(order):
        result[index] = float(rank)
    return result


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    covariance = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    return covariance / (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--table", type=Path, help="reuse this table (default: a fresh one)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    table = LatencyTable(args.table or Path(folder) / "table.json", threads=args.threads, repeats=args.repeats)
    cost = ChildLatency(table, TrialSettings(threads=args.threads))
    space = get_space("mnas_blocks")
    cost.prepare(space)
    rng = random.Random(args.seed)
    predicted, measured = [], []
    for child in range(args.children):
        genotype = space.sample(rng)
        model = cost.model(genotype)
        predicted.append(cost(genotype))
        measured.append(table.measure(model, cost.input_size))
        print(json.dumps({"benchmark": "latency_table", "child": child, "predicted_ms": round(predicted[-1], 3),
                          "measured_ms": round(measured[-1], 3), "threads": args.threads}))
    errors = [abs(p - m) / m for p, m in zip(predicted, measured)]
    print(json.dumps({"benchmark": "latency_table", "children": args.children, "blocks": len(table),
                      "spearman_rho": round(spearman(predicted, measured), 3),
                      "mean_relative_error": round(statistics.mean(errors), 3),
                      "mean_predicted_over_measured":
                          round(statistics.mean(p / m for p, m in zip(predicted, measured)), 3),
                      "threads": args.threads, "repeats": args.repeats}))


if __name__ == "__main__":
    main()
