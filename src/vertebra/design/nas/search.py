"""The search loop: propose m children, train them on the executor, reward the strategy, repeat.

Commit points, so that a kill at any moment loses nothing finished:
1. a proposed batch is written into ``state.json`` (with the strategy's state from before the
   proposal) before any child trains;
2. each finished child is appended to ``journal.jsonl`` at once;
3. after the batch's update the new strategy state replaces the old one (atomic rename).
``resume`` reloads the state, skips children the journal already holds and finishes the batch.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from safetensors.torch import load_file

from ...train.checkpoint import atomic_json, atomic_tensors
from .controller import ControllerSettings
from .executors import make_executor
from .journal import Journal
from .space import get_space
from .strategies import Proposal, make_strategy
from .trial import TrialSettings, trial_spec


@dataclass(frozen=True)
class DepthSchedule:
    """The paper's growing depth: ``start`` layers, ``step`` more every ``interval`` samples,
    fixed after ``final`` samples (the paper: 6, 2, 1,600, 12,800)."""

    start: int = 6
    step: int = 2
    interval: int = 1600
    final: int = 12800

    @classmethod
    def for_budget(cls, trials: int, start: int = 6, step: int = 2, growths: int = 3) -> "DepthSchedule":
        """The paper's shape at a small budget: ``growths`` increases, spread evenly over the trials."""
        interval = max(1, trials // (growths + 1))
        return cls(start, step, interval, interval * growths)

    def depth(self, trial: int) -> int:
        return self.start + self.step * (min(trial, self.final) // self.interval)


@dataclass
class SearchConfig:
    strategy: str  # "rl" | "random"
    space: str = "nas_cnn"
    trials: int = 64
    children_per_update: int = 4  # the paper's m
    workers: int = 2
    executor: str = "local"
    ray_address: str | None = None
    out: Path = Path("runs/search")
    resume: bool = False
    seed: int = 0
    # default: DepthSchedule.for_budget(trials); spaces that do not grow ignore it
    schedule: DepthSchedule | None = None
    space_settings: dict = field(default_factory=dict)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    trial: TrialSettings = field(default_factory=TrialSettings)


@dataclass
class SearchResult:
    out: Path
    records: list[dict]  # every finished trial, in trial order
    best: dict
    wall_s: float


def _identity(config: SearchConfig) -> dict:
    """What must match for --resume to continue a search rather than start another."""
    schedule = asdict(config.schedule) if config.schedule else None
    return {"strategy": config.strategy, "space": config.space, "space_settings": config.space_settings,
            "trials": config.trials, "children_per_update": config.children_per_update, "seed": config.seed,
            "schedule": schedule, "controller": asdict(config.controller), "trial": asdict(config.trial)}


def check_config(config: SearchConfig) -> SearchConfig:
    for name in ("trials", "children_per_update", "workers"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if config.strategy not in ("rl", "random"):
        raise ValueError(f"strategy must be 'rl' or 'random', got {config.strategy!r}")
    if config.executor not in ("local", "ray"):
        raise ValueError(f"executor must be 'local' or 'ray', got {config.executor!r}")
    if config.ray_address and config.executor != "ray":
        raise ValueError("--ray-address needs --executor ray")
    get_space(config.space, **config.space_settings)  # unknown space or setting: an error now
    out = Path(config.out)
    if out.is_dir() and any(out.iterdir()) and not config.resume:
        raise ValueError(f"output folder {out} already holds a search; pass --resume to continue it "
                         f"or choose another --out")
    if config.resume and not (out / "state.json").exists():
        raise ValueError(f"nothing to resume in {out}: it has no state.json")
    schedule = config.schedule or DepthSchedule.for_budget(config.trials)
    trial = config.trial
    if trial.input_pool is None:
        trial = replace(trial, input_pool=4 if config.space == "nas_cnn" and trial.data == "digits" else 1)
    return SearchConfig(**{**config.__dict__, "out": out, "schedule": schedule, "trial": trial})


class Search:
    def __init__(self, config: SearchConfig, console: Console):
        self.config, self.console = config, console
        self.space = get_space(config.space, **config.space_settings)
        self.strategy = make_strategy(config.strategy, self.space, config.seed, config.controller)
        self.journal = Journal(config.out / "journal.jsonl")
        self.next_trial, self.pending, self.updates = 0, [], []

    # --- state: the strategy's tensors + JSON, written atomically -------------------------------
    def save(self) -> None:
        tensors, saved = self.strategy.state()
        atomic_tensors(self.config.out / "strategy.safetensors", {k: v.contiguous() for k, v in tensors.items()})
        atomic_json(self.config.out / "state.json", {
            "identity": _identity(self.config), "next_trial": self.next_trial, "strategy": saved,
            "pending": [asdict(p) for p in self.pending], "updates": self.updates})

    def load(self) -> None:
        state = json.loads((self.config.out / "state.json").read_text())
        if state["identity"] != _identity(self.config):
            raise ValueError(f"{self.config.out} holds a different search ({state['identity']['strategy']} over "
                             f"{state['identity']['space']}, seed {state['identity']['seed']}, "
                             f"{state['identity']['trials']} trials); resume it with the same settings")
        tensors = load_file(self.config.out / "strategy.safetensors")
        self.strategy.load_state(tensors, state["strategy"])
        self.next_trial, self.updates = state["next_trial"], state["updates"]
        self.pending = [Proposal(**p) for p in state["pending"]]

    # --- the loop --------------------------------------------------------------------------------
    def depth(self, trial: int) -> int | None:
        return self.config.schedule.depth(trial) if self.space.grows else None

    def specs(self, proposals: list[Proposal]) -> list[dict]:
        folder = self.config.out / "trials"
        return [trial_spec(p.trial, p.genotype, self.config.trial, folder / f"{p.trial:05d}",
                           self.config.seed * 100_003 + p.trial) for p in proposals]

    def run(self) -> SearchResult:
        config, start = self.config, time.perf_counter()
        config.out.mkdir(parents=True, exist_ok=True)
        if config.resume:
            self.load()
            self.journal.trim()
        finished = {r["trial"]: r for r in self.journal.read()}
        if config.resume:
            self.console.print(f"resuming {config.out}: {len(finished)} of {config.trials} trials done")
        executor = make_executor(config.executor, config.workers, config.ray_address)
        try:
            with self.progress_bar() as bar:
                task = bar.add_task(f"{config.strategy} search of {config.space}", total=config.trials,
                                    completed=len(finished), best=0.0, last=0.0)
                self.show(bar, task, finished)
                while self.pending or self.next_trial < config.trials:
                    if not self.pending:
                        count = min(config.children_per_update, config.trials - self.next_trial)
                        self.pending = self.strategy.propose(self.next_trial, count, self.depth(self.next_trial))
                        self.next_trial += count
                        self.save()
                    todo = [p for p in self.pending if p.trial not in finished]
                    for record in executor.run(self.specs(todo)):
                        proposal = next(p for p in self.pending if p.trial == record["trial"])
                        record.update(depth=proposal.depth, values=proposal.values, strategy=config.strategy)
                        self.journal.append(record)
                        finished[record["trial"]] = record
                        self.show(bar, task, finished)
                    rewards = [finished[p.trial]["reward"] for p in self.pending]
                    update = self.strategy.update(self.pending, rewards)
                    self.updates.append({"trials": [p.trial for p in self.pending],
                                         "mean_reward": sum(rewards) / len(rewards), **update})
                    self.pending = []
                    self.save()
                    self.show(bar, task, finished)
        finally:
            executor.close()
        records = [finished[t] for t in sorted(finished)]
        best = max(records, key=lambda r: r["reward"])
        return SearchResult(config.out, records, best, time.perf_counter() - start)

    def progress_bar(self) -> Progress:
        """Trials done, best reward, mean reward of the last batch, elapsed and remaining time."""
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("best reward {task.fields[best]:.4f}  last batch {task.fields[last]:.4f}"),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=self.console)

    def show(self, bar: Progress, task, finished: dict) -> None:
        last = self.updates[-1]["mean_reward"] if self.updates else 0.0
        best = max((r["reward"] for r in finished.values()), default=0.0)
        bar.update(task, completed=len(finished), best=best, last=last)


def search(config: SearchConfig, console: Console | None = None) -> SearchResult:
    """Run (or resume) a search; writes journal.jsonl, state.json, strategy.safetensors, rewards.png
    and best_genotype.json into ``config.out``."""
    from .plots import plot_rewards

    config = check_config(config)
    console = console or Console()
    result = Search(config, console).run()
    atomic_json(config.out / "best_genotype.json", result.best["genotype"])
    plot_rewards(result.records, config.out / "rewards.png",
                 f"{config.strategy} search of {config.space}, {len(result.records)} trials")
    return result
