"""Every search strategy at an equal budget of trained epochs, on the digits, over several seeds.

Each strategy searches ``mnas_blocks`` (32x32 digits, the 32x32 stem, one thread per child, two
children at once) with MnasNet's soft latency reward and the target set by mobilenet_v2_050's
measured latency (``--objective accuracy`` for the plain NAS reward).  The budget is counted in
trained epochs, so the strategies compare at equal cost: rl, random and evolution train
``budget / child_epochs`` children at ``child_epochs`` each; set search trains N samples of the
space by successive halving, its first round at the epochs that make its rounds add up to the
budget.  The peer, trained in the same run with each seed, is mobilenet_v2_050 at the children's
epochs.

One JSON line per run: the best child by reward, its validation accuracy, its latency measured
whole (not predicted), params, MACs, trials, epochs actually trained and wall time; then one
summary line per strategy (mean over seeds, and its accuracy relative to random search's).

    .venv/bin/python benchmarks/search.py [--seeds 3] [--budget 32] [--child-epochs 2] [--set-size 8]
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from rich.console import Console

from vertebra.design.latency import LatencyTable
from vertebra.design.nas import (AccuracyObjective, EvolutionSettings, MnasObjective, SearchConfig, SetSettings,
                                 SuccessiveHalvingStrategy, TrialSettings, search)
from vertebra.design.nas.costs import build_child, reference_latency
from vertebra.design.nas.references import genotype, train_references

QUIET = Console(quiet=True)


def set_first_epochs(budget: int, size: int) -> int:
    """The first round's epochs that make successive halving's rounds spend about ``budget``."""
    per_epoch = sum(n * 2 ** i for i, n in enumerate(SuccessiveHalvingStrategy.rounds(size)))
    return max(1, round(budget / per_epoch))


def config(strategy: str, seed: int, args, objective, table: Path, out: Path) -> SearchConfig:
    epochs = set_first_epochs(args.budget, args.set_size) if strategy == "set" else args.child_epochs
    trials = None if strategy == "set" else args.budget // args.child_epochs
    population = max(2, (trials or 4) // 2)  # half the budget random, half evolved
    return SearchConfig(strategy, space="mnas_blocks", trials=trials, children_per_update=4, workers=args.workers,
                        out=out, seed=seed, trial=TrialSettings(epochs=epochs, limit=args.limit),
                        evolution=EvolutionSettings(population, sample=min(3, population)),
                        set=SetSettings(args.set_size), objective=objective, latency_table=table, references=())


def run(strategy: str, seed: int, args, objective, table: LatencyTable, folder: Path) -> dict:
    start = time.perf_counter()
    result = search(config(strategy, seed, args, objective, table.path, folder / f"{strategy}-{seed}"), QUIET)
    wall = time.perf_counter() - start
    best = result.best
    model = build_child(best["genotype"], TrialSettings())
    return {"benchmark": "search", "strategy": strategy, "seed": seed, "trials": len(result.records),
            "epochs_trained": sum(r["epochs"] for r in result.records), "best_trial": best["trial"],
            "val_accuracy": round(best["val_accuracy"], 4), "reward": round(best["reward"], 4),
            "latency_ms": round(table.measure(model, 32), 3), "params": best["params"], "macs": best["macs"],
            "wall_s": round(wall, 1)}


def peer(seed: int, args, table: LatencyTable, folder: Path) -> dict:
    """mobilenet_v2_050, trained as one child is."""
    settings = TrialSettings(epochs=args.child_epochs, limit=args.limit)
    start = time.perf_counter()
    [record] = train_references(["mobilenet_v2_050"], settings, folder / f"peer-{seed}", seed, "local", 1)
    model = build_child(genotype("mobilenet_v2_050"), TrialSettings())
    return {"benchmark": "search", "strategy": "mobilenet_v2_050", "seed": seed, "trials": 1,
            "epochs_trained": args.child_epochs, "val_accuracy": round(AccuracyObjective().accuracy(record), 4),
            "latency_ms": round(table.measure(model, 32), 3), "params": record["params"], "macs": record["macs"],
            "wall_s": round(time.perf_counter() - start, 1)}


def summary(rows: list[dict]) -> list[dict]:
    by_strategy: dict[str, list[dict]] = {}
    for row in rows:
        by_strategy.setdefault(row["strategy"], []).append(row)
    random_accuracy = statistics.mean(r["val_accuracy"] for r in by_strategy.get("random", rows))
    return [{"benchmark": "search", "summary": strategy, "seeds": len(runs),
             "val_accuracy_mean": round(statistics.mean(r["val_accuracy"] for r in runs), 4),
             "val_accuracy_min": min(r["val_accuracy"] for r in runs),
             "latency_ms_mean": round(statistics.mean(r["latency_ms"] for r in runs), 3),
             "epochs_trained_mean": round(statistics.mean(r["epochs_trained"] for r in runs), 1),
             "wall_s_mean": round(statistics.mean(r["wall_s"] for r in runs), 1),
             "accuracy_vs_random": round(statistics.mean(r["val_accuracy"] for r in runs) / random_accuracy, 3)}
            for strategy, runs in by_strategy.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--strategies", nargs="+", default=["rl", "random", "evolution", "set"])
    parser.add_argument("--budget", type=int, default=32, help="trained epochs per search")
    parser.add_argument("--child-epochs", type=int, default=2)
    parser.add_argument("--set-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--objective", choices=("mnas", "accuracy"), default="mnas")
    parser.add_argument("--limit", type=int, help="train each child on only N images (a quick check)")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="vertebra-search-bench-"))
    table = LatencyTable(folder / "latency_table.json")
    target = reference_latency("mobilenet_v2_050", table, TrialSettings())
    table.save()
    objective = MnasObjective(target) if args.objective == "mnas" else AccuracyObjective()
    rows = []

    def emit(row: dict) -> None:
        line = json.dumps(row)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as handle:
                handle.write(line + "\n")

    for seed in range(args.seeds):  # seeds outermost: a noisy stretch of the machine hits every strategy
        rows.append(peer(seed, args, table, folder))
        emit(rows[-1])
        for strategy in args.strategies:
            rows.append(run(strategy, seed, args, objective, table, folder))
            emit(rows[-1])
    for row in summary(rows):
        emit(row)


if __name__ == "__main__":
    main()
