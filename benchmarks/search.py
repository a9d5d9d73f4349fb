"""Every search strategy at an equal budget of trained epochs, on the digits, over several seeds.

Each strategy searches ``mnas_blocks`` (32x32 digits, the 32x32 stem, one thread per child, two
children at once) with MnasNet's soft latency reward and the target set by mobilenet_v2_050's
measured latency (``--objective accuracy`` for the plain NAS reward).  The budget is counted in
trained epochs, so the strategies compare at equal cost: rl, random and evolution train
``budget / child_epochs`` children at ``child_epochs`` each; set search trains N samples of the
space by successive halving, its first round at the epochs that make its rounds add up to the
budget.  The peer, trained in the same run with each seed, is mobilenet_v2_050 at the children's
epochs.

Two strategies search other spaces, since that is what they edit, at the same budget of epochs:
``morph`` hill-climbs over network morphisms of ``nas_cnn`` (its first network trains 4 epochs,
then ``budget - 4`` children train 1 epoch each from their parent's weights, ``--morph-children``
per step, climbing by accuracy since ``nas_cnn``'s latency cannot be predicted
layer by layer); ``darts`` trains one DARTS supernet (``darts_cells``, ``--darts-layers`` cells of
``--darts-channels``, 16x16 inputs) for ``budget - child_epochs`` epochs, each one pass over the
training split (half for the weights, half for alpha), then trains the derived network from
scratch as a child, at 32x32 for ``child_epochs``.  Both are scored with the same reward.

One JSON line per run: the best child by reward, its validation accuracy, its latency measured
whole (not predicted), params, MACs, trials, epochs actually trained and wall time; then one
summary line per strategy (mean over seeds, and its accuracy relative to random search's).

    .venv/bin/python benchmarks/search.py [--seeds 3] [--budget 32] [--child-epochs 2] [--set-size 8]
        [--strategies rl random evolution set morph darts]
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
from vertebra.design.nas.darts import DartsSearch, DartsSettings
from vertebra.design.nas.strategies import MorphSettings
from vertebra.design.nas.trial import run_trial, trial_spec
from vertebra.design.nas.references import genotype, train_references

QUIET = Console(quiet=True)


def set_first_epochs(budget: int, size: int) -> int:
    """The first round's epochs that make successive halving's rounds spend about ``budget``."""
    per_epoch = sum(n * 2 ** i for i, n in enumerate(SuccessiveHalvingStrategy.rounds(size)))
    return max(1, round(budget / per_epoch))


def morph_settings(args) -> MorphSettings:
    """The first network at 4 epochs, then 1-epoch children, ``--morph-children`` a step, to the budget."""
    start = MorphSettings().start_epochs_factor
    return MorphSettings(children=args.morph_children, steps=max(1, (args.budget - start) // args.morph_children))


def config(strategy: str, seed: int, args, objective, table: Path, out: Path) -> SearchConfig:
    epochs = {"set": set_first_epochs(args.budget, args.set_size), "morph": 1}.get(strategy, args.child_epochs)
    trials = None if strategy in ("set", "morph") else args.budget // args.child_epochs
    population = max(2, (trials or 4) // 2)  # half the budget random, half evolved
    return SearchConfig(strategy, space="nas_cnn" if strategy == "morph" else "mnas_blocks", trials=trials,
                        children_per_update=4, workers=args.workers, out=out, seed=seed,
                        trial=TrialSettings(epochs=epochs, limit=args.limit),
                        evolution=EvolutionSettings(population, sample=min(3, population)),
                        set=SetSettings(args.set_size), morph=morph_settings(args), objective=objective,
                        latency_table=table, references=())


def run(strategy: str, seed: int, args, objective, table: LatencyTable, folder: Path) -> dict:
    if strategy == "darts":  # one supernet, not a set of trials
        return darts(seed, args, objective, table, folder)
    # nas_cnn's layers read each other's outputs, so its children's latency cannot be predicted block by
    # block: morphism search climbs by accuracy, and its best is scored with the reward afterwards
    climb = AccuracyObjective() if strategy == "morph" else objective
    start = time.perf_counter()
    result = search(config(strategy, seed, args, climb, table.path, folder / f"{strategy}-{seed}"), QUIET)
    wall = time.perf_counter() - start
    best = result.best
    latency = table.measure(build_child(best["genotype"], TrialSettings()), 32)
    reward = objective({**best, "latency_ms": latency}) if strategy == "morph" else best["reward"]
    return {"benchmark": "search", "strategy": strategy, "seed": seed, "trials": len(result.records),
            "epochs_trained": sum(r["epochs"] for r in result.records), "best_trial": best["trial"],
            "val_accuracy": round(best["val_accuracy"], 4), "reward": round(reward, 4),
            "latency_ms": round(latency, 3), "params": best["params"], "macs": best["macs"],
            "wall_s": round(wall, 1)}


def darts(seed: int, args, objective, table: LatencyTable, folder: Path) -> dict:
    """One supernet for the budget less a child's epochs, then its derived network trained as a child is."""
    settings = DartsSettings(layers=args.darts_layers, init_channels=args.darts_channels, seed=seed,
                             epochs=args.budget - args.child_epochs, limit=args.limit)
    start = time.perf_counter()
    found = DartsSearch(settings, folder / f"darts-{seed}").run()
    child = TrialSettings(epochs=args.child_epochs, limit=args.limit)
    record = run_trial(trial_spec(0, found.genotype, child, folder / f"darts-{seed}" / "child", seed))
    wall = time.perf_counter() - start
    if record.get("error"):
        raise RuntimeError(f"the derived DARTS network failed to train: {record['error']}")
    record["latency_ms"] = table.measure(build_child(found.genotype, TrialSettings()), 32)
    return {"benchmark": "search", "strategy": "darts", "seed": seed, "trials": 1,
            "epochs_trained": settings.epochs + args.child_epochs, "best_trial": 0,
            "val_accuracy": round(objective.accuracy(record), 4), "reward": round(objective(record), 4),
            "latency_ms": round(record["latency_ms"], 3), "params": record["params"], "macs": record["macs"],
            "search_s": round(sum(h["seconds"] for h in found.history), 1), "wall_s": round(wall, 1)}


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
    parser.add_argument("--strategies", nargs="+", default=["rl", "random", "evolution", "set", "morph", "darts"])
    parser.add_argument("--budget", type=int, default=32, help="trained epochs per search")
    parser.add_argument("--child-epochs", type=int, default=2)
    parser.add_argument("--set-size", type=int, default=8)
    parser.add_argument("--morph-children", type=int, default=4)
    parser.add_argument("--darts-layers", type=int, default=5)
    parser.add_argument("--darts-channels", type=int, default=8)
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
