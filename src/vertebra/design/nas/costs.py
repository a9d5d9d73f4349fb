"""The latency of a search's children, from the one latency table (vertebra.design.latency).

Children are timed as they train: the trial's input size and classes, the 32x32 stem for small
inputs, batch 1.  Before a latency-aware search trains anything, every block configuration its
space can build is timed (``prepare``), so no timing runs beside the training workers, and a
target no child can meet is refused.
"""
from __future__ import annotations


from ...analysis import count_macs
from ...registry import create_model
from ...train.data import class_names
from ..latency import LatencyTable
from .space import SearchSpace, model_args
from .trial import TrialSettings


def classes(trial: TrialSettings) -> int:
    return 10 if trial.data == "digits" else len(class_names(trial.data))


def build_child(genotype: dict, trial: TrialSettings):
    """The network a trial trains for ``genotype`` (any space's), untrained."""
    name, kwargs = model_args(genotype, trial.input_pool)
    return create_model(name, num_classes=classes(trial), small_input=(trial.input_size or 32) <= 64,
                        **kwargs, **trial.extra_model_kwargs)


def child_macs(genotype: dict, trial: TrialSettings) -> float:
    return float(count_macs(build_child(genotype, trial), trial.input_size or 32))


class ChildLatency:
    def __init__(self, table: LatencyTable, trial: TrialSettings):
        self.table, self.trial = table, trial
        self.input_size = trial.input_size or 32

    def model(self, genotype: dict):
        return build_child(genotype, self.trial)

    def __call__(self, genotype: dict) -> float:
        """Predicted milliseconds of the child ``genotype`` describes."""
        return self.table.predict(self.model(genotype), self.input_size)

    def prepare(self, space: SearchSpace) -> float:
        """Time every unit the space can build; returns the fastest child's predicted latency."""
        members = getattr(space, "members", None)
        if members:  # a set: each member timed unit by unit
            fastest = min(self(genotype) for genotype in members())
            self.table.save()
            return fastest
        cover = getattr(space, "latency_cover", None)
        if cover is None:
            raise ValueError(f"a latency objective needs a space whose blocks can be timed one by one; "
                             f"{space.name} cannot (its layers read each other's outputs): use mnas_blocks "
                             f"or models")
        stems, stages = [], {}
        for number, (genotype, shortest) in enumerate(cover()):
            units = self.table.unit_latencies(self.model(genotype), self.input_size)
            if shortest:  # the fewest layers per stage: this combination's cheapest version of each stage
                for unit in units:
                    if unit["name"].startswith("stages."):
                        index = int(unit["name"].split(".")[1])
                        stages.setdefault(index, {}).setdefault(number, 0.0)
                        stages[index][number] += unit["ms"]
                stems.append(sum(u["ms"] for u in units if not u["name"].startswith("stages.")))
        self.table.save()
        return min(stems) + sum(min(per_genotype.values()) for per_genotype in stages.values())


def reference_latency(name: str, table: LatencyTable, trial: TrialSettings) -> float:
    """The measured latency of a registered model as a child would run: ``--target-like``."""
    model = build_child({"space": "models", "model": name}, trial)
    return table.measure(model, max(trial.input_size or 32, model.min_input_size))
