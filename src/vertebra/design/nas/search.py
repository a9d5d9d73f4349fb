"""The search loop: a strategy proposes children, the executor trains them, the objective scores
them, the strategy learns; until the budget of trials is spent.

Commit points, so that a kill at any instruction loses nothing finished (vertebra.durable):
1. proposals are appended to ``proposals.jsonl``, then ``state.json`` (renamed into place) counts
   them as issued, with the strategy's state after proposing, in ``strategy-<version>.safetensors``;
2. each finished child is appended to ``journal.jsonl`` (fsynced) before it counts as done;
3. once the strategy has learnt from finished children, ``state.json`` is renamed again: they
   leave the pending set, and the strategy's state is the new version's.
``resume`` reloads the state, cuts a torn journal line (that child runs again), learns from
children that finished after the last commit, re-runs any counted child whose line is missing,
and carries on.  A lock on the folder keeps a second search out of it.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
    TimeRemainingColumn
from safetensors.torch import load_file

from ...durable import (FolderLock, as_saved, check_output_folder, differing, holds_work, is_scratch, read_json,
                        remove_unreferenced, write_json, write_tensors)
from ...registry import model_info
from .controller import ControllerSettings
from .executors import EXECUTORS, make_executor
from .journal import Journal
from .objectives import AccuracyObjective, MnasObjective, pareto_front, scored
from .space import get_space
from .strategies import STRATEGIES, EvolutionSettings, MorphSettings, Proposal, SetSettings, make_strategy
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
    strategy: str  # a name in STRATEGIES: "rl", "random", "evolution", "set", "morph"
    space: str = "nas_cnn"
    trials: int | None = None  # default: 64, or what a set search's rounds need
    children_per_update: int = 4  # m, children per REINFORCE update (the paper: 8 per replica)
    workers: int = 2
    executor: str = "local"
    ray_address: str | None = None
    out: Path = Path("runs/search")
    resume: bool = False
    seed: int = 0
    # default: DepthSchedule.for_budget(trials); spaces that do not grow ignore it
    schedule: DepthSchedule | None = None
    space_settings: dict = field(default_factory=dict)
    controller: ControllerSettings = field(default_factory=ControllerSettings)  # rl
    evolution: EvolutionSettings = field(default_factory=EvolutionSettings)  # evolution
    set: SetSettings = field(default_factory=SetSettings)  # set
    morph: MorphSettings = field(default_factory=MorphSettings)  # morph
    trial: TrialSettings = field(default_factory=TrialSettings)
    objective: AccuracyObjective | MnasObjective = field(default_factory=AccuracyObjective)
    latency_table: Path | None = None  # the latency objective's table (default: OUT/latency_table.json)
    remeasure: bool = False  # time every unit again where the table is from another machine
    # hand-designed models trained beside a cost-aware search's front; None: up to 4 of the mobile
    # families' members within a factor of two of the target (none for a search of the models space)
    references: tuple[str, ...] | None = None


@dataclass
class SearchResult:
    out: Path
    records: list[dict]  # every finished trial, in trial order
    best: dict
    wall_s: float
    references: list[dict] = field(default_factory=list)  # hand-designed models beside the front


def _strategy_settings(config: SearchConfig):
    """The settings of the configured strategy (its class names the SearchConfig field)."""
    settings_field = STRATEGIES[config.strategy].settings_field
    return getattr(config, settings_field) if settings_field else None


def _jsonable_settings(config: SearchConfig) -> dict | None:
    settings = _strategy_settings(config)
    return asdict(settings) if settings is not None else None


def _identity(config: SearchConfig) -> dict:
    """What must match for --resume to continue a search rather than start another."""
    schedule = asdict(config.schedule) if config.schedule else None
    return as_saved({"strategy": config.strategy, "space": config.space, "space_settings": config.space_settings,
            "trials": config.trials, "children_per_update": config.children_per_update, "seed": config.seed,
            "schedule": schedule, "strategy_settings": _jsonable_settings(config), "trial": asdict(config.trial),
            "objective": {"name": config.objective.name, **asdict(config.objective)}})


def _trials(config: SearchConfig, space) -> int:
    """The budget: given, or what the strategy's plan needs (a set search's rounds)."""
    needed = getattr(STRATEGIES[config.strategy], "trials_needed", None)
    if needed is None:
        return 64 if config.trials is None else config.trials
    plan = needed(_strategy_settings(config), space)
    if config.trials is not None and config.trials != plan:
        raise ValueError(f"a {config.strategy} search of this set trains {plan} children in all; --trials "
                         f"{config.trials} differs: leave --trials out")
    return plan


def check_config(config: SearchConfig) -> SearchConfig:
    if config.strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {config.strategy!r}; the strategies are {', '.join(STRATEGIES)}")
    space = get_space(config.space, **config.space_settings)  # unknown space or setting: an error now
    config = replace(config, trials=_trials(config, space))
    for name in ("trials", "children_per_update", "workers"):
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if config.executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {config.executor!r}")
    if config.ray_address and config.executor != "ray":
        raise ValueError("--ray-address needs --executor ray")
    for name in config.references or ():
        model_info(name)  # an unknown reference model: an error now, not after the search
    check_budget = getattr(STRATEGIES[config.strategy], "check_budget", None)
    if check_budget:
        check_budget(_strategy_settings(config), config.trials)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    _check_folder(out, config.resume)
    schedule = config.schedule or DepthSchedule.for_budget(config.trials)
    trial = config.trial
    if hasattr(space, "check_input"):
        space.check_input(trial.input_size or 32)
    if trial.input_pool is None:
        trial = replace(trial, input_pool=4 if config.space == "nas_cnn" and trial.data == "digits" else 1)
    return SearchConfig(**{**config.__dict__, "out": out, "schedule": schedule, "trial": trial})


STRATEGY_FILES = r"strategy-\d{6}\.safetensors"


def _check_folder(out: Path, resume: bool) -> bool:
    """A new search needs an empty folder; a resume continues a committed state, or starts afresh
    where a kill came before the first commit.  Checked again under the lock; returns whether
    there is a state to resume."""
    if holds_work(out) and not resume:
        raise ValueError(f"output folder {out} already holds a search; pass --resume to continue it "
                         f"or choose another --out")
    if not resume or (out / "state.json").exists():
        return resume
    foreign = [p.name for p in out.iterdir() if not is_scratch(p.name) and not re.fullmatch(STRATEGY_FILES, p.name)] \
        if out.is_dir() else []
    if foreign:
        raise ValueError(f"nothing to resume in {out}: it has no state.json, and holds {', '.join(foreign[:3])}, "
                         f"which are not a search's; choose another --out")
    return False


class Search:
    def __init__(self, config: SearchConfig, console: Console, latency=None):
        self.config, self.console, self.latency = config, console, latency  # latency: genotype -> ms
        self.space = get_space(config.space, **config.space_settings)
        self.strategy = make_strategy(config.strategy, self.space, config.seed, _strategy_settings(config))
        self.journal = Journal(config.out / "journal.jsonl")
        self.proposals_log = Journal(config.out / "proposals.jsonl")
        self.next_trial, self.pending, self.updates, self.version = 0, [], [], 0
        self.proposed: dict[int, Proposal] = {}
        self.finished: dict[int, dict] = {}  # trial -> raw record, in journal order
        self.best_reward = 0.0

    # --- state: one manifest naming a versioned tensor file -----------------------------------------
    def save(self) -> None:
        tensors, saved = self.strategy.state()
        self.version += 1
        name = f"strategy-{self.version:06d}.safetensors"
        write_tensors(self.config.out / name, {k: v.contiguous() for k, v in tensors.items()})
        write_json(self.config.out / "state.json", {  # the commit point
            "identity": _identity(self.config), "next_trial": self.next_trial, "pending": self.pending,
            "version": self.version, "strategy_file": name, "strategy": saved, "updates": self.updates})
        remove_unreferenced(self.config.out, STRATEGY_FILES, {name})

    def load(self) -> None:
        state = read_json(self.config.out / "state.json", "the search's state")
        changes = differing(state.get("identity") or {}, _identity(self.config))
        if changes:
            raise ValueError(f"{self.config.out} holds a different search (differing: {', '.join(changes)}); "
                             f"resume it with the same settings")
        tensors = load_file(self.config.out / state["strategy_file"])
        self.strategy.load_state(tensors, state["strategy"])
        self.next_trial, self.updates, self.version = state["next_trial"], state["updates"], state["version"]
        self.pending = state["pending"]

    # --- the loop --------------------------------------------------------------------------------
    def depth(self, trial: int) -> int | None:
        return self.config.schedule.depth(trial) if self.space.grows else None

    def spec(self, trial: int) -> dict:
        proposal, settings = self.proposed[trial], self.config.trial
        inherited = {"inherit": proposal.inherit, "parent": proposal.parent} if proposal.inherit else {}
        return trial_spec(trial, proposal.genotype, settings, self.config.out / "trials" / f"{trial:05d}",
                          self.config.seed * 100_003 + trial, epochs=settings.epochs * proposal.epochs_factor,
                          **inherited)

    def propose(self, count: int) -> None:
        new = self.strategy.propose(self.next_trial, count, self.depth(self.next_trial))
        for proposal in new:
            self.proposals_log.append(asdict(proposal))
            self.proposed[proposal.trial] = proposal
        self.next_trial += count
        self.pending = self.pending + [p.trial for p in new]
        self.save()

    def learn(self, trials: list[int]) -> None:
        """The strategy learns from these finished pending trials; then the state is committed."""
        records = scored([self.finished[t] for t in trials], self.config.objective)
        update = self.strategy.update([self.proposed[t] for t in trials], records)
        self.updates.append({"trials": trials, "mean_reward": sum(r["reward"] for r in records) / len(records),
                             **update})
        self.pending = [t for t in self.pending if t not in trials]
        self.save()

    def learn_from_finished(self) -> None:
        """Synchronous: the whole batch once it has finished; asynchronous: each child, in finishing order."""
        done = [t for t in self.finished if t in self.pending]
        if self.strategy.synchronous:
            if self.pending and len(done) == len(self.pending):
                self.learn(sorted(self.pending))
        elif done:
            for trial in done:
                self.learn([trial])

    def batch_size(self) -> int:
        """A synchronous strategy's next batch: its own where it plans one (a set search's round), else m."""
        own = getattr(self.strategy, "batch_size", None)
        return own() if own else self.config.children_per_update

    def refill(self) -> None:
        left = self.config.trials - self.next_trial
        if self.strategy.synchronous:
            if not self.pending and left:
                self.propose(min(self.batch_size(), left))
        elif left and len(self.pending) < self.config.workers:
            self.propose(min(self.config.workers - len(self.pending), left))

    def recover(self) -> list[int]:
        """After a kill: the journal's torn tail cut, the proposals read back; returns the counted
        trials whose journal line is missing (their strategy update already happened)."""
        self.load()
        self.journal.trim()
        self.proposals_log.trim()
        self.proposed = {p["trial"]: Proposal(**p) for p in self.proposals_log.read()}
        self.finished = {r["trial"]: r for r in self.journal.read()}
        self.best_reward = max(map(self.config.objective, self.finished.values()), default=0.0)
        counted = set(range(self.next_trial)) - set(self.pending)
        return sorted(t for t in counted if t not in self.finished)

    def run(self) -> SearchResult:
        config, start = self.config, time.perf_counter()
        lost = self.recover() if config.resume else []
        if config.resume:
            self.console.print(f"resuming {config.out}: {len(self.finished)} of {config.trials} trials done")
        executor = make_executor(config.executor, config.workers, config.ray_address)
        submitted: set[int] = set()
        try:
            with self.progress_bar() as bar:
                task = bar.add_task(f"{config.strategy} search of {config.space}", total=config.trials,
                                    completed=len(self.finished), best=0.0, last=0.0)
                self.show(bar, task)
                if not config.resume:
                    self.save()  # an empty search is resumable from the first instant
                while True:
                    self.learn_from_finished()
                    self.refill()
                    for trial in [*lost, *self.pending]:
                        if trial not in self.finished and trial not in submitted:
                            executor.submit(self.spec(trial))
                            submitted.add(trial)
                    if not executor.in_flight:
                        break
                    record = executor.wait()
                    record.update(depth=self.proposed[record["trial"]].depth,
                                  values=self.proposed[record["trial"]].values, strategy=config.strategy)
                    if self.latency:  # predicted from the table: the driver times nothing new here
                        record["latency_ms"] = self.latency(record["genotype"])
                    self.journal.append(record)
                    self.finished[record["trial"]] = record
                    self.best_reward = max(self.best_reward, config.objective(record))
                    self.show(bar, task)
        finally:
            executor.close()
        records = scored([self.finished[t] for t in sorted(self.finished)], config.objective)
        best = max(records, key=lambda r: r["reward"])
        return SearchResult(config.out, records, best, time.perf_counter() - start)

    def progress_bar(self) -> Progress:
        """Trials done, best reward, mean reward of the last batch, elapsed and remaining time."""
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("best reward {task.fields[best]:.4f}  last batch {task.fields[last]:.4f}"),
                        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=self.console)

    def show(self, bar: Progress, task) -> None:
        last = self.updates[-1]["mean_reward"] if self.updates else 0.0
        bar.update(task, completed=len(self.finished), best=self.best_reward, last=last)


def search(config: SearchConfig, console: Console | None = None) -> SearchResult:
    """Run (or resume) a search; writes journal.jsonl, proposals.jsonl, state.json,
    strategy-<version>.safetensors, rewards.png and best_genotype.json into ``config.out``."""
    from .plots import plot_morphisms, plot_pareto, plot_rewards

    config = check_config(config)
    console = console or Console()
    check_output_folder(config.out)
    with FolderLock(config.out):
        config = replace(config, resume=_check_folder(config.out, config.resume))
        latency = _latency_model(config, console)
        result = Search(config, console, latency).run()
        write_json(config.out / "best_genotype.json", result.best["genotype"])
        plot_rewards(result.records, config.out / "rewards.png",
                     f"{config.strategy} search of {config.space}, {len(result.records)} trials")
        if config.strategy == "morph":
            edits = {p["trial"]: (p.get("inherit") or {}).get("edits", []) for p in Journal(
                config.out / "proposals.jsonl").read()}
            plot_morphisms(result.records, edits, config.out / "morphisms.png",
                           f"hill climbing over network morphisms: {len(result.records)} networks")
        cost = getattr(config.objective, "cost", None)
        if cost:
            front = pareto_front(result.records, cost)
            write_json(config.out / "pareto.json", [{k: r[k] for k in ("trial", "val_accuracy", cost, "genotype")}
                                                    for r in front])
            result.references = _references(config, latency, console)
            plot_pareto(result.records, front, cost, config.objective.target, config.out / "pareto.png",
                        f"{config.strategy} search of {config.space}: accuracy against "
                        f"{'latency' if cost == 'latency_ms' else 'MACs'}", result.references)
    return result


def _references(config: SearchConfig, latency, console: Console) -> list[dict]:
    """The hand-designed models of similar cost, trained as the children were, scored likewise."""
    from .costs import child_macs
    from .references import candidates, genotype, nearest, train_references

    names = config.references
    if names is None:
        if config.space == "models":
            return []  # the set's members are themselves the hand-designed models
        cost_of = latency or (lambda g: child_macs(g, config.trial))
        names = nearest({name: cost_of(genotype(name)) for name in candidates()}, config.objective.target)
    if not names:
        return []
    console.print(f"training the reference models beside the front: {', '.join(names)}")
    records = train_references(list(names), config.trial, config.out / "references", config.seed,
                               config.executor, config.workers, config.ray_address)
    if latency:
        for record in records:
            record["latency_ms"] = latency(record["genotype"])
        latency.table.save()  # the models' blocks, timed once: a resumed search predicts the same
    return scored(records, config.objective)


def _latency_model(config: SearchConfig, console: Console):
    """For a latency objective: every block of the space timed before any training, and the target
    checked against the fastest child the space can build."""
    if getattr(config.objective, "cost", None) != "latency_ms":
        return None
    from ..latency import LatencyTable
    from .costs import ChildLatency

    table = LatencyTable(config.latency_table or config.out / "latency_table.json", threads=config.trial.threads,
                         remeasure=config.remeasure)
    latency = ChildLatency(table, config.trial)
    with console.status(f"timing the blocks of {config.space} ({len(table)} known)"):
        fastest = latency.prepare(get_space(config.space, **config.space_settings))
    if fastest > config.objective.target:
        raise ValueError(f"no child of {config.space} meets the target of {config.objective.target:.3f} ms: the "
                         f"fastest it can build is predicted at {fastest:.3f} ms")
    console.print(f"latency table {table.path}: {len(table)} blocks ({table.measured} timed now); fastest child "
                  f"{fastest:.2f} ms, target {config.objective.target:.2f} ms")
    return latency
