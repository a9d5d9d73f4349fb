"""Objectives: what turns a trial's raw record into the reward a strategy learns from.

A trial reports what it measured (validation accuracy per epoch, parameters, MACs, time); the
search driver scores it with the objective, so a journal can be re-scored under another one.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AccuracyObjective:
    """Zoph & Le's reward: the maximum validation accuracy of the last ``epochs`` epochs, to the
    power ``power`` (the paper: the last 5 epochs, cubed)."""

    epochs: int = 5
    power: float = 3.0
    name = "accuracy"

    def accuracy(self, record: dict) -> float:
        history = record.get("history") or [0.0]
        return max(history[-self.epochs:])

    def __call__(self, record: dict) -> float:
        if record.get("error"):
            return 0.0  # a child that failed to build or train
        return self.accuracy(record) ** self.power


def scored(records: list[dict], objective) -> list[dict]:
    """The records with their ``reward`` and ``val_accuracy`` under ``objective`` (new dicts)."""
    return [{**r, "reward": objective(r), "val_accuracy": 0.0 if r.get("error") else objective.accuracy(r)}
            for r in records]


@dataclass(frozen=True)
class MnasObjective:
    """MnasNet's platform-aware reward (Tan et al. 2019, Eq. 2): ACC(m) x (LAT(m) / T)^w, with
    w = alpha where LAT <= T and beta otherwise.  The soft constraint is alpha = beta = -0.07 (the
    paper's: twice the latency costs about 5% of relative accuracy); the hard one alpha = 0,
    beta = -1.  ``cost="macs"`` puts multiply-adds where latency was (EfficientNet's ACC x
    (FLOPS / T)^w), ``target`` then in MACs.  ACC is the maximum validation accuracy of the last
    ``epochs`` epochs, not cubed."""

    target: float
    alpha: float = -0.07
    beta: float = -0.07
    cost: str = "latency_ms"  # or "macs"
    epochs: int = 5
    name = "mnas"

    @classmethod
    def hard(cls, target: float, cost: str = "latency_ms") -> "MnasObjective":
        return cls(target, alpha=0.0, beta=-1.0, cost=cost)

    def __post_init__(self):
        if self.cost not in ("latency_ms", "macs"):
            raise ValueError(f"the mnas objective's cost is 'latency_ms' or 'macs', got {self.cost!r}")
        if not self.target > 0:
            raise ValueError(f"the mnas objective needs a positive target, got {self.target!r}")

    def accuracy(self, record: dict) -> float:
        history = record.get("history") or [0.0]
        return max(history[-self.epochs:])

    def __call__(self, record: dict) -> float:
        if record.get("error"):
            return 0.0
        ratio = record[self.cost] / self.target
        return self.accuracy(record) * ratio ** (self.alpha if ratio <= 1 else self.beta)


OBJECTIVES = {"accuracy": AccuracyObjective, "mnas": MnasObjective}


def make_objective(saved: dict):
    """An objective from its identity record ({"name": ..., **settings})."""
    settings = {k: v for k, v in saved.items() if k != "name"}
    return OBJECTIVES[saved["name"]](**settings)


def pareto_front(records: list[dict], cost: str) -> list[dict]:
    """The records no other beats on both accuracy (higher) and ``cost`` (lower), cheapest first."""
    front, best = [], -1.0
    for record in sorted((r for r in records if not r.get("error")), key=lambda r: (r[cost], -r["val_accuracy"])):
        if record["val_accuracy"] > best:
            front.append(record)
            best = record["val_accuracy"]
    return front
