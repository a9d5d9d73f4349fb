"""NetAdapt (Yang et al. 2018, arXiv:1804.03230): trim a trained network until it meets a latency budget.

Each iteration asks for a latency reduction ``step`` (a share of the original latency, decaying by
``decay`` per iteration: the paper's schedule of Delta R_i).  For every layer that can shrink (a
channel group of ``design.channels``) it proposes the largest width that gives the reduction, by the
per-layer lookup table (``design.latency``), keeping the filters of largest L2 norm; each proposal is
fine-tuned briefly (short-term) on the training images and scored on a held-out part of them; one
is kept: the most accurate (the paper) or the one losing least accuracy per millisecond saved
(``select="ratio"``, MobileNet V3's change).  When the measured latency meets the budget, the
network is fine-tuned long-term.  The result is a real smaller network: its weights file records
its widths, so it loads, predicts and exports like any other.

The table predicts the layers (convolutions with their norm and activation, linear layers), each
timed alone; in the network they take longer (colder caches) and the rest (additions, pooling, the
framework's own time per call) adds to them.  So the table's sum is scaled by the current
network's measured-to-predicted ratio, re-measured every iteration: a reduction asked in measured
milliseconds is that over the ratio in the table's.

Everything resumes: ``plan.json`` fixes an iteration's proposals before any is trained (the timing is
noisy, a rerun might propose others), the proposals' trainings are a resumable grid, and
``selected.json`` commits the iteration.
"""
from __future__ import annotations

import copy
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console

from ..durable import FolderLock, as_saved, check_output_folder, differing, read_json, write_json
from ..registry import create_model, resolve
from ..weights import load_weights, read_weights, save_weights
from .channels import ChannelGroup, prune, trace_groups
from .latency import LatencyTable, network_layers
from .nas.trial import TrialSettings, trial_spec

CONTRACT = ("num_classes", "in_chans", "small_input")  # what the training engine sets itself


@dataclass(frozen=True)
class NetAdaptSettings:
    """The schedule, the selection and the fine-tuning of a NetAdapt run."""

    budget: str  # "0.5" (a share of the model's measured latency) or "12ms"
    select: str = "accuracy"  # or "ratio": accuracy lost per millisecond saved
    step: float = 0.05  # the first iteration's reduction, as a share of the original latency
    decay: float = 0.96  # each next iteration asks for this much of the previous reduction
    granularity: int = 8  # widths change by multiples of this many channels
    holdout: float = 0.2  # the share of the training images that scores the proposals
    short: TrialSettings = TrialSettings(epochs=1, lr=1e-3, warmup_epochs=0.0)
    long_epochs: int = 10  # the final network's fine-tuning
    long_at: tuple[float, ...] = ()  # also fine-tune long-term the first network under these shares
    threads: int = 2  # torch threads when timing
    compare: tuple[str, ...] = ()  # models trained from scratch for the plot (the family's width multipliers)
    compare_epochs: int = 10
    compare_lr: float = 3e-3
    max_iterations: int = 200

    def __post_init__(self):
        if self.select not in ("accuracy", "ratio"):
            raise ValueError(f"select must be 'accuracy' or 'ratio', got {self.select!r}")
        for name in ("step", "holdout"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0 < self.decay <= 1:
            raise ValueError(f"decay must be in (0, 1], got {self.decay}")
        for name in ("granularity", "long_epochs", "threads", "max_iterations"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), int) \
                    or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if any(not 0 < share < 1 for share in self.long_at):
            raise ValueError(f"long_at takes shares of the original latency in (0, 1), got {list(self.long_at)}")
        budget_ms(self.budget, 1.0)  # a malformed budget fails here, before any work


def budget_ms(budget: str, original_ms: float) -> float:
    """``budget`` in milliseconds: "12ms" as it says, "0.5" as that share of ``original_ms``."""
    text = str(budget).strip().lower()
    try:
        value = float(text[:-2]) if text.endswith("ms") else float(text)
    except ValueError:
        raise ValueError(f"a budget is a share of the model's latency (0.5) or milliseconds (12ms), "
                         f"got {budget!r}") from None
    if text.endswith("ms"):
        if not value > 0:
            raise ValueError(f"a budget in milliseconds must be positive, got {budget!r}")
        return value
    if not 0 < value < 1:
        raise ValueError(f"a budget given as a share of the model's latency must be in (0, 1), got {budget!r}")
    return value * original_ms


def load_network(model: str, weights: str | Path):
    """The trained network in ``weights`` (a vertebra file: its card rebuilds it, widths included)."""
    _, card = read_weights(weights)
    if not card:
        raise ValueError(f"{weights} is not a vertebra weights file: NetAdapt adapts a network trained by "
                         f"vertebra train (its card says how it was built and on what data)")
    if resolve(card["model"]) != resolve(model):
        raise ValueError(f"{weights} holds weights of {card['model']}, not {model}")
    network = create_model(model, **card["kwargs"])
    load_weights(network, weights)
    return network.eval(), card


def adaptable_groups(network, input_size: int, name: str) -> list[ChannelGroup]:
    """The layers of ``network`` whose width can change; an error naming what blocks them if none can."""
    if not hasattr(network, "in_chans"):
        raise ValueError(f"{name} cannot be adapted: NetAdapt trims image networks (vertebra's Backbone)")
    groups, fixed = trace_groups(network, input_size)
    if not groups:
        blocking = "; ".join(f"{layer}, whose outputs meet {why}" for layer, why in list(fixed.items())[:3])
        raise ValueError(f"{name} cannot be adapted: no layer's width can change: {blocking}")
    return groups


def proposal_widths(table: LatencyTable, layers: dict, current: float, group: ChannelGroup, reduction: float,
                    granularity: int) -> tuple[int, float] | None:
    """The largest width of ``group`` (a multiple of ``granularity`` below its own) whose predicted
    latency is at least ``reduction`` ms below the current one, and that prediction; None if even the
    narrowest does not give it.  ``current``: the table's prediction for ``layers`` as they are."""
    width = group.channels - (group.channels % granularity or granularity)
    while width >= 1:
        predicted = table.predict_layers(resized(layers, group, width).values())
        if current - predicted >= reduction:
            return width, predicted
        width -= granularity
    return None


def resized(layers: dict, group: ChannelGroup, width: int) -> dict:
    """The table's layers once ``group`` is ``width`` channels wide (nothing is built)."""
    changed = dict(layers)
    for name in group.producers + group.followers:
        if name in changed:
            changed[name] = changed[name].with_channels(out=width)
    for name in group.consumers:
        changed[name] = changed[name].with_channels(in_=width)
    return changed


def narrowest(table: LatencyTable, layers: dict, groups: list[ChannelGroup], granularity: int) -> float:
    """The predicted latency with every group at its narrowest width: no adaptation goes below it."""
    for group in groups:
        layers = resized(layers, group, min(granularity, group.channels))
    return table.predict_layers(layers.values())


class NetAdapt:
    """One run in ``out``: ``run()`` adapts, fine-tunes and returns the summary (resumable)."""

    def __init__(self, model: str, weights: str | Path, settings: NetAdaptSettings, out: str | Path, *,
                 data: str | None = None, executor: str = "local", workers: int = 2, resume: bool = False,
                 seed: int = 0,
                 latency_table: str | Path | None = None, remeasure: bool = False, console: Console | None = None,
                 table: LatencyTable | None = None):
        self.model, self.weights, self.settings = model, Path(weights), settings
        self.out, self.executor, self.workers, self.resume, self.seed = Path(out), executor, workers, resume, seed
        self.console = console or Console()
        self.original, self.card = load_network(model, weights)
        metadata = self.card.get("metadata", {})
        self.input_size = int(metadata.get("input_size") or 32)
        if data is None and metadata.get("data", "digits") != "digits":
            raise ValueError(f"{weights} was trained on an image folder: pass --data with that folder")
        self.trial = replace(settings.short, data=data or "digits", small_input=self.original.small_input,
                             input_size=self.input_size)
        self.table = table if table is not None else LatencyTable(latency_table or self.out / "latency_table.json",
                                           threads=settings.threads, remeasure=remeasure)

    # -- the run ------------------------------------------------------------------------
    def run(self) -> dict:
        out = check_output_folder(self.out)
        with FolderLock(out):
            self._check_identity()
            start = self._start()
            network, iteration = self.original, 0
            while (iteration_dir := out / "iterations" / f"{iteration:03d}").joinpath("selected.json").exists():
                network = load_network(self.model, iteration_dir / "network.safetensors")[0]
                _tidy(iteration_dir)  # what a kill between the commit and the clean-up left
                iteration += 1
            history = self._history()
            while (history[-1]["measured_ms"] if history else start["measured_ms"]) > start["budget_ms"]:
                if iteration >= self.settings.max_iterations:
                    raise ValueError(f"no network under {start['budget_ms']:.2f} ms after {iteration} iterations")
                network = self._iteration(iteration, network, start, history)
                history = self._history()
                iteration += 1
            finals = self._fine_tune_long(start, history)
            return self._summary(start, history, finals)

    def _check_identity(self) -> None:
        identity = {"model": self.model, "weights": str(self.weights.resolve()), "seed": self.seed,
                    "data": self.trial.data,
                    "settings": as_saved(asdict(self.settings))}
        path = self.out / "netadapt.json"
        if path.exists():
            recorded = read_json(path, "the NetAdapt run's identity")
            if not self.resume:
                raise ValueError(f"{self.out} already holds a NetAdapt run; pass --resume to continue it or "
                                 f"choose another --out")
            if recorded != identity:
                raise ValueError(f"{self.out} holds a NetAdapt run of other settings (differing: "
                                 f"{', '.join(differing(recorded, identity))}); move it away to run this one")
        else:
            write_json(path, identity)

    def _start(self) -> dict:
        """The original network's measured latency, the budget, and the checks made before any training."""
        path = self.out / "start.json"
        if path.exists():
            return read_json(path, "the NetAdapt run's start")
        groups = adaptable_groups(self.original, self.input_size, self.model)
        layers = network_layers(self.original, self.input_size)
        measured = self.table.measure(self.original, self.input_size)
        predicted = self.table.predict_layers(layers.values())
        budget = budget_ms(self.settings.budget, measured)
        # the most hopeful reading of the table: the narrowest network scaled as this one measures
        floor = narrowest(self.table, layers, groups, self.settings.granularity) * measured / predicted
        self.table.save()
        if measured <= budget:
            raise ValueError(f"{self.model} already meets the budget: it measures {measured:.2f} ms against "
                             f"{budget:.2f} ms ({self.settings.threads} threads, batch 1)")
        if floor > budget:
            raise ValueError(f"{self.model} can never meet {budget:.2f} ms: with every one of its {len(groups)} "
                             f"adaptable layers at its narrowest it is still predicted at {floor:.2f} ms")
        accuracy = self._accuracies(self.original)
        start = {"measured_ms": measured, "predicted_ms": predicted, "budget_ms": budget, "floor_ms": floor,
                 "layers": len(groups), "params": _params(self.original), **accuracy}
        write_json(path, start)
        self.console.print(f"{self.model}: {measured:.2f} ms measured ({predicted:.2f} ms in the table's layers), "
                           f"budget {budget:.2f} ms; {len(groups)} layers can shrink")
        return start

    def _history(self) -> list[dict]:
        folder, found = self.out / "iterations", []
        while (folder / f"{len(found):03d}" / "selected.json").exists():
            found.append(read_json(folder / f"{len(found):03d}" / "selected.json", "a NetAdapt iteration"))
        return found

    def _iteration(self, index: int, network, start: dict, history: list[dict]):
        folder = check_output_folder(self.out / "iterations" / f"{index:03d}", "the iteration folder")
        plan = self._plan(index, folder, network, start, history)
        if not plan["proposals"]:
            raise ValueError(f"iteration {index}: no layer can give the {plan['reduction_ms']:.3f} ms asked for; "
                             f"stopped at {plan['measured_ms']:.2f} ms against a budget of {start['budget_ms']:.2f}")
        from .nas.executors import run_grid

        specs = [trial_spec(i, {"space": "models", "model": self.model, "kwargs": self._kwargs()}, self.trial,
                            folder / "trials" / f"{i:03d}", self.seed, weights=str(folder / p["file"]),
                            holdout=self.settings.holdout) for i, p in enumerate(plan["proposals"])]
        with self.console.status(f"iteration {index}: fine-tuning {len(specs)} proposals short-term "
                                 f"({self.workers} workers)"):
            records = run_grid(folder / "trials", {"plan": plan["proposals"],
                                                   "trial": as_saved(asdict(self.trial))}, specs, self.executor,
                               self.workers)
        failed = [r for r in records if r.get("error")]
        if failed:
            raise RuntimeError(f"iteration {index}: fine-tuning proposal {failed[0]['trial']} failed: "
                               f"{failed[0]['error']}")
        chosen = self._select(plan, records)
        proposal, record = plan["proposals"][chosen], records[chosen]
        shutil.copyfile(record["weights"], folder / ".network.tmp")
        (folder / ".network.tmp").replace(folder / "network.safetensors")
        adapted = load_network(self.model, folder / "network.safetensors")[0]
        selected = {"iteration": index, "layer": proposal["layer"], "channels": [proposal["from"], proposal["to"]],
                    "predicted_ms": proposal["predicted_ms"] * plan["measured_ms"] / plan["predicted_ms"],
                    "measured_ms": self.table.measure(adapted, self.input_size),
                    "holdout_accuracy": record["history"][-1], "params": _params(adapted)}
        write_json(folder / "selected.json", selected)  # the commit point of the iteration
        _tidy(folder)
        self.console.print(f"iteration {index}: {proposal['layer']} {proposal['from']} -> {proposal['to']} channels, "
                           f"{selected['measured_ms']:.2f} ms measured, held-out accuracy "
                           f"{selected['holdout_accuracy']:.2%}")
        return adapted

    def _plan(self, index: int, folder: Path, network, start: dict, history: list[dict]) -> dict:
        """The iteration's proposals: one per layer that can give the reduction, fixed on disk before training."""
        if (folder / "plan.json").exists():
            return read_json(folder / "plan.json", "an iteration's plan")
        measured = history[-1]["measured_ms"] if history else start["measured_ms"]
        asked = self.settings.step * start["measured_ms"] * self.settings.decay ** index
        reduction = min(asked, measured - start["budget_ms"])
        groups, _ = trace_groups(network, self.input_size)
        layers = network_layers(network, self.input_size)
        predicted = self.table.predict_layers(layers.values())
        check_output_folder(folder / "proposals", "the proposals folder")
        plan = {"reduction_ms": reduction, "measured_ms": measured, "predicted_ms": predicted,
                "holdout_accuracy": self._accuracies(network, holdout_only=True)["holdout_accuracy"], "proposals": []}
        for _ in range(3):  # no single layer gives it: ask for half, twice, before giving up
            with self.console.status(f"iteration {index}: proposing a {reduction:.3f} ms reduction per layer"):
                for group in groups:
                    found = proposal_widths(self.table, layers, predicted, group, reduction * predicted / measured,
                                            self.settings.granularity)
                    if found is None:
                        continue
                    width, layer_ms = found
                    pruned = copy.deepcopy(network)
                    prune(pruned, group, width)
                    name = f"proposals/{len(plan['proposals']):03d}.safetensors"
                    save_weights(pruned, folder / name, metadata=self.card.get("metadata"))
                    plan["proposals"].append({"layer": group.name, "from": group.channels, "to": width,
                                              "predicted_ms": layer_ms, "file": name})
            if plan["proposals"]:
                break
            reduction /= 2
        plan["reduction_ms"] = reduction
        self.table.save()
        write_json(folder / "plan.json", plan)
        return plan

    def _select(self, plan: dict, records: list[dict]) -> int:
        accuracy = [r["history"][-1] for r in records]
        if self.settings.select == "accuracy":
            return max(range(len(records)), key=lambda i: (accuracy[i], -i))
        saved = [max(plan["predicted_ms"] - p["predicted_ms"], 1e-9) for p in plan["proposals"]]
        return max(range(len(records)), key=lambda i: ((accuracy[i] - plan["holdout_accuracy"]) / saved[i], -i))

    def _kwargs(self) -> dict:
        return {k: v for k, v in self.card["kwargs"].items() if k not in CONTRACT}

    def _accuracies(self, network, holdout_only: bool = False) -> dict:
        """Held-out, validation and test accuracy of ``network`` as the trials split the data."""
        from ..train.data import hold_out, load_data
        from ..train.loop import evaluate

        data = load_data(self.trial.data, val=self.trial.val, input_size=self.input_size)
        found = {"holdout_accuracy": evaluate(network, hold_out(data, self.settings.holdout).val)["accuracy"]}
        if not holdout_only:
            found["val_accuracy"] = evaluate(network, data.val)["accuracy"]
            found["test_accuracy"] = evaluate(network, data.test)["accuracy"] if data.test is not None else None
        return found

    # -- after the budget is met --------------------------------------------------------
    def _fine_tune_long(self, start: dict, history: list[dict]) -> list[dict]:
        """The last network, and the first under each ``long_at`` share, trained ``long_epochs`` more."""
        from ..train.loop import TrainConfig, train

        marks = sorted({*self.settings.long_at}, reverse=True)
        chosen = {}
        for share in marks:
            index = next((h["iteration"] for h in history if h["measured_ms"] <= share * start["measured_ms"]), None)
            if index is not None and index != len(history) - 1:
                chosen[index] = f"under {share:g}"
        chosen[len(history) - 1] = "final"
        finals = []
        for index, label in sorted(chosen.items()):
            folder = self.out / ("final" if label == "final" else f"final-{index:03d}")
            trial = self.trial
            config = TrainConfig(model=self.model, data=trial.data, val=trial.val, epochs=self.settings.long_epochs,
                                 batch_size=trial.batch_size, lr=trial.lr, optimizer=trial.optimizer,
                                 weight_decay=trial.weight_decay, warmup_epochs=trial.warmup_epochs, seed=self.seed,
                                 out=folder, resume=folder.exists(), input_size=self.input_size,
                                 small_input=trial.small_input, model_kwargs=self._kwargs(),
                                 weights=str(self.out / "iterations" / f"{index:03d}" / "network.safetensors"))
            self.console.print(f"long-term fine-tuning of iteration {index}'s network ({label}), "
                               f"{self.settings.long_epochs} epochs")
            result = train(config, console=Console(quiet=True))
            measured = self.table.measure(result.model, self.input_size)
            finals.append({"iteration": index, "label": label, "measured_ms": measured,
                           "val_accuracy": result.best_val_accuracy, "test_accuracy": result.test_accuracy,
                           "params": _params(result.model)})
            if label == "final":
                save_weights(result.model, self.out / "adapted.safetensors", metadata=self.card.get("metadata"))
        return finals

    def _summary(self, start: dict, history: list[dict], finals: list[dict]) -> dict:
        references = []
        if self.settings.compare:
            self.console.print(f"training the references from scratch: {', '.join(self.settings.compare)}")
            references = measured_references(list(self.settings.compare), replace(
                self.trial, epochs=self.settings.compare_epochs, lr=self.settings.compare_lr, warmup_epochs=0.2),
                self.out / "references", self.table, executor=self.executor, workers=self.workers, seed=self.seed)
        summary = {"model": self.model, "budget_ms": start["budget_ms"], "start": start, "iterations": history,
                   "fine_tuned": finals, "adapted": str(self.out / "adapted.safetensors"),
                   "references": [{k: r[k] for k in ("model", "measured_ms", "val_accuracy", "test_accuracy", "params")}
                                  for r in references]}
        write_json(self.out / "summary.json", summary)
        from .nas.plots import plot_netadapt

        plot_netadapt(summary, self.out / "netadapt.png", f"NetAdapt of {self.model} ({self.settings.select})")
        return summary


def _tidy(folder: Path) -> None:
    """A committed iteration keeps its plan, journal and chosen network; the proposals' weights go."""
    shutil.rmtree(folder / "proposals", ignore_errors=True)
    for leftover in (folder / "trials").glob("*/*.safetensors"):
        leftover.unlink(missing_ok=True)


def measured_references(names: list[str], trial: TrialSettings, out: Path, table: LatencyTable, *,
                        executor: str = "local", workers: int = 2, seed: int = 0) -> list[dict]:
    """Registered models (the family's width multipliers) trained from scratch as a search's references
    are (``nas.references``: resumable), each with its measured latency: NetAdapt's comparison."""
    from .nas.references import train_references

    records = train_references(names, trial, out, seed, executor, workers)
    for name, record in zip(names, records):
        if record.get("error"):
            raise RuntimeError(f"training {name} failed: {record['error']}")
        model = load_network(name, record["weights"])[0]
        record.update(model=name, measured_ms=table.measure(model, trial.input_size or 32),
                      val_accuracy=max(record["history"]), params=_params(model))
    table.save()
    return records


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())
