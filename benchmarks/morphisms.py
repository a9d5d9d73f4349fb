"""Hill climbing over network morphisms against the NAS paper's RL search, on the digits (nas_cnn).

Both search ``nas_cnn`` children on the embedded digits (8x8 images upsampled to 32x32, pooled by
4, one thread per child, two at once) with the paper's accuracy reward.  RL trains ``--rl-trials``
children from scratch at ``--rl-epochs`` each; morphism search trains its first network at 4x
``--morph-epochs`` and then ``--steps`` x ``--children`` children at ``--morph-epochs``, each from
its parent's trained weights.  The figure that counts is the *total training time* (the sum of
every child's training seconds, in trial order) until a child first reaches 98%, 99%, 99.5% and
100% validation accuracy, and the best accuracy of each search.  One JSON line per search, then one
comparison line.

    .venv/bin/python benchmarks/morphisms.py [--seed 0]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from rich.console import Console

from vertebra.design.nas import MorphSettings, SearchConfig, TrialSettings, search


TARGETS = (0.98, 0.99, 0.995, 1.0)  # the digits' validation split has 270 images: 1.0 is none wrong


def summary(name: str, result, wall_s: float) -> dict:
    records = sorted(result.records, key=lambda r: r["trial"])
    spent, reached = 0.0, {}
    for record in records:
        spent += record["train_s"]
        for target in TARGETS:
            if target not in reached and (record.get("val_accuracy") or 0.0) >= target - 1e-9:
                reached[target] = {"trial": record["trial"], "train_s": round(spent, 1)}
    best = max(records, key=lambda r: r.get("val_accuracy") or 0.0)
    return {"search": name, "trials": len(records), "best_val_accuracy": best["val_accuracy"],
            "best_trial": best["trial"], "total_train_s": round(spent, 1), "wall_s": round(wall_s, 1),
            **{f"first_at_{t:.1%}": reached.get(t) for t in TARGETS}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rl-trials", type=int, default=64)
    parser.add_argument("--rl-epochs", type=int, default=2)
    parser.add_argument("--children", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--morph-epochs", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    quiet, lines = Console(quiet=True), []
    with tempfile.TemporaryDirectory() as folder:
        runs = {"rl": SearchConfig("rl", space="nas_cnn", trials=args.rl_trials, workers=args.workers,
                                   out=Path(folder) / "rl", seed=args.seed, trial=TrialSettings(epochs=args.rl_epochs)),
                "morph": SearchConfig("morph", space="nas_cnn", workers=args.workers, out=Path(folder) / "morph",
                                      seed=args.seed, trial=TrialSettings(epochs=args.morph_epochs),
                                      morph=MorphSettings(children=args.children, steps=args.steps))}
        for name, config in runs.items():
            started = time.perf_counter()
            result = search(config, quiet)
            lines.append(summary(name, result, time.perf_counter() - started))
            print(json.dumps(lines[-1]), flush=True)
    rl, morph = lines
    ratios = {}
    for target in TARGETS:
        key = f"first_at_{target:.1%}"
        ratios[key] = round(rl[key]["train_s"] / morph[key]["train_s"], 2) if rl[key] and morph[key] else None
    print(json.dumps({"comparison": "training time to each accuracy, rl / morph (None: one never got there)",
                      **ratios, "rl_total_train_s": rl["total_train_s"], "morph_total_train_s": morph["total_train_s"]}))


if __name__ == "__main__":
    main()
