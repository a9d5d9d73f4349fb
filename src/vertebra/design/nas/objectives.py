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
