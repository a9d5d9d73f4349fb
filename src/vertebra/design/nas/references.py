"""Hand-designed models beside a search's Pareto front, trained exactly as its children were.

A front means something only next to what people would otherwise pick: MnasNet's Figure 1 puts
its searched models beside MobileNet V1/V2, ShuffleNet and NASNet.  The reference models train
with the search's own trial settings, executor and seed rule, each in ``OUT/references/<name>``,
journaled by name, so a resumed search trains only the ones it lacks; their cost comes from the
same latency table (or MAC count) as the children's.
"""
from __future__ import annotations

import math
from pathlib import Path

from ...durable import check_output_folder
from ...registry import list_models
from .executors import run_specs
from .journal import Journal
from .space import DEFAULT_CANDIDATES
from .trial import TrialSettings, trial_spec


def candidates() -> list[str]:
    """The mobile families' members a front is compared with by default."""
    return [name for pattern in DEFAULT_CANDIDATES for name in list_models(pattern)]


def genotype(name: str) -> dict:
    return {"space": "models", "model": name}


def nearest(costs: dict[str, float], target: float, count: int = 4) -> list[str]:
    """Up to ``count`` models whose cost is within a factor of two of ``target``, nearest first."""
    close = [name for name, cost in costs.items() if target / 2 <= cost <= 2 * target]
    return sorted(close, key=lambda name: abs(math.log(costs[name] / target)))[:count]


def train_references(names: list[str], settings: TrialSettings, out: Path, seed: int, executor: str,
                     workers: int, address: str | None = None) -> list[dict]:
    """Each named model trained as a child (finished ones read back from the journal), in ``names`` order."""
    journal = Journal(check_output_folder(out, "the references folder") / "journal.jsonl")
    journal.trim()
    finished = {record["genotype"]["model"]: record for record in journal.read()}
    specs = [trial_spec(index, genotype(name), settings, out / name, seed * 100_003 + 90_000 + index)
             for index, name in enumerate(names) if name not in finished]
    for record in run_specs(specs, journal, executor, workers, address):
        finished[record["genotype"]["model"]] = record
    return [finished[name] for name in names]
