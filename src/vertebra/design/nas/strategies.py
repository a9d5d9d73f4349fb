"""Search strategies: the NAS paper's REINFORCE-trained controller, random search, and regularized evolution.

A strategy proposes children and learns from their scored records (each with its ``reward``).
A *synchronous* strategy (REINFORCE: the paper's m architectures per controller update) is given
a whole batch at once; an asynchronous one keeps one child per worker in flight and learns from
each as it finishes.  Its whole state (weights, optimizer, baseline, random-number generator)
goes into tensors + JSON, so a search killed at any moment resumes exactly.  A new strategy is
one class registered here with ``@register_strategy``.
"""
from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass

import torch

from ...train.checkpoint import join_optimizer, random_state_json, random_state_tuple, split_optimizer
from .controller import Controller, ControllerSettings
from .space import Choice, SearchSpace

STRATEGIES: dict[str, type] = {}


def register_strategy(cls: type) -> type:
    STRATEGIES[cls.name] = cls
    return cls


@dataclass
class Proposal:
    trial: int
    depth: int | None
    values: list
    genotype: dict
    epochs_factor: int = 1  # the child trains for this multiple of the trial settings' epochs
    parent: int | None = None  # the trial whose trained weights the child starts from (morphism search)
    inherit: dict | None = None  # {"genotype", "weights", "edits"}: the parent, and the edits that make the child


@register_strategy
class ReinforceStrategy:
    """The controller trained with REINFORCE and an exponential-moving-average baseline (Sec. 3.2):
    grad J = 1/m sum_k grad log P(a_k) (R_k - b).  The paper updates from m = 8 children per
    replica, with 100 replicas updating one shared controller asynchronously; here one controller
    takes synchronous batches of m (``children_per_update``, default max(workers, 4))."""

    name = "rl"
    synchronous = True
    settings_field = "controller"  # SearchConfig's field with this strategy's settings

    def __init__(self, space: SearchSpace, seed: int, settings: ControllerSettings | None = None):
        settings = settings or ControllerSettings()
        self.space, self.settings = space, settings
        torch.manual_seed(seed)  # the controller's initial weights follow the search seed
        self.controller = Controller(space.decisions(), settings)
        self.optimizer = torch.optim.Adam(self.controller.parameters(), lr=settings.lr)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: float | None = None

    def propose(self, first_trial: int, count: int, depth: int | None) -> list[Proposal]:
        decisions = self.space.decisions(depth)
        proposals = []
        with torch.no_grad():
            for trial in range(first_trial, first_trial + count):
                values, _, _ = self.controller.run(decisions, self.generator)
                proposals.append(Proposal(trial, depth, values, self.space.genotype(values, depth)))
        return proposals

    def update(self, proposals: list[Proposal], records: list[dict]) -> dict:
        """One policy-gradient step on a batch; returns what it did (for the search's state)."""
        rewards = [record["reward"] for record in records]
        if self.baseline is None:  # the first batch's mean: no initial bias toward whatever came first
            self.baseline = sum(rewards) / len(rewards)
        advantages = [reward - self.baseline for reward in rewards]
        loss = torch.zeros(())
        for proposal, advantage in zip(proposals, advantages):
            _, log_prob, _ = self.controller.run(self.space.decisions(proposal.depth), values=proposal.values)
            loss = loss - log_prob * advantage / len(proposals)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        decay = self.settings.baseline_decay
        for reward in rewards:
            self.baseline = decay * self.baseline + (1 - decay) * reward
        return {"baseline": self.baseline, "loss": float(loss.detach())}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        tensors = {f"controller.{k}": v.detach().clone() for k, v in self.controller.state_dict().items()}
        optimizer_tensors, optimizer_rest = split_optimizer(self.optimizer.state_dict())
        tensors.update(optimizer_tensors)
        tensors["generator"] = self.generator.get_state()
        return tensors, {"baseline": self.baseline, "optimizer": optimizer_rest,
                         "settings": asdict(self.settings)}

    def load_state(self, tensors: dict[str, torch.Tensor], saved: dict) -> None:
        weights = {k.removeprefix("controller."): v for k, v in tensors.items() if k.startswith("controller.")}
        self.controller.load_state_dict(weights)
        self.optimizer.load_state_dict(join_optimizer(tensors, saved["optimizer"]))
        self.generator.set_state(tensors["generator"])
        self.baseline = saved["baseline"]


@register_strategy
class RandomStrategy:
    """Uniform samples of the space; nothing to learn."""

    name = "random"
    synchronous = False
    settings_field = None

    def __init__(self, space: SearchSpace, seed: int, settings=None):
        self.space, self.rng = space, random.Random(seed)

    def propose(self, first_trial: int, count: int, depth: int | None) -> list[Proposal]:
        proposals = []
        for trial in range(first_trial, first_trial + count):
            genotype = self.space.sample(self.rng, depth)
            proposals.append(Proposal(trial, depth, self.space.values(genotype), genotype))
        return proposals

    def update(self, proposals: list[Proposal], records: list[dict]) -> dict:
        return {}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {"rng": random_state_json(self.rng.getstate())}

    def load_state(self, tensors: dict[str, torch.Tensor], saved: dict) -> None:
        self.rng.setstate(random_state_tuple(saved["rng"]))


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 20  # P: the paper's is 100 (CIFAR) at 20,000 children; scaled to small budgets
    sample: int = 5  # S: tournament size (the paper: 25 of 100)
    crossover: float = 0.5  # share of children bred from two parents; the rest mutate one parent

    def __post_init__(self):
        for name in ("population", "sample"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"evolution {name} must be a positive integer, got {value!r}")
        if self.sample > self.population:
            raise ValueError(f"the tournament sample ({self.sample}) cannot exceed the population ({self.population})")
        if not 0 <= self.crossover <= 1:
            raise ValueError(f"crossover must be a rate in [0, 1], got {self.crossover!r}")


@register_strategy
class EvolutionStrategy:
    """Regularized (aging) evolution (Real et al. 2019, arXiv:1802.01548): the first P children are
    random; then each child's parent wins a tournament (the best of S members sampled from the
    population), with probability ``crossover`` a second parent is drawn the same way and the two
    are crossed uniformly over decisions, and one decision is mutated; every finished child joins
    the population and the oldest member leaves, so a lucky early architecture cannot stay forever.
    Steady state: a child is proposed whenever a worker frees, and each finished child is learnt at once."""

    name = "evolution"
    synchronous = False
    settings_field = "evolution"

    @staticmethod
    def check_budget(settings: EvolutionSettings, trials: int) -> None:
        if settings.population >= trials:
            raise ValueError(f"a population of {settings.population} needs more than {trials} trials: the first "
                             f"{settings.population} children are random, so nothing would evolve; lower "
                             f"--population or raise --trials")

    def __init__(self, space: SearchSpace, seed: int, settings: EvolutionSettings | None = None):
        self.space, self.settings = space, settings or EvolutionSettings()
        self.rng = random.Random(seed)
        self.population: list[dict] = []  # oldest first: {"trial", "depth", "values", "reward"}
        self.proposed = 0

    def propose(self, first_trial: int, count: int, depth: int | None) -> list[Proposal]:
        proposals = []
        for trial in range(first_trial, first_trial + count):
            seeding = self.proposed < self.settings.population or not self.population
            genotype = self.space.sample(self.rng, depth) if seeding else self.child(depth)
            proposals.append(Proposal(trial, depth, self.space.values(genotype), genotype))
            self.proposed += 1
        return proposals

    def tournament(self) -> dict:
        sample = self.rng.sample(self.population, min(self.settings.sample, len(self.population)))
        return max(sample, key=lambda member: member["reward"])

    def child(self, depth: int | None) -> dict:
        """A mutated (and maybe crossed) child; a child the space refuses, or one whose parents
        were of another depth, is drawn again (a random sample after ten tries)."""
        decisions = self.space.decisions(depth)
        for _ in range(10):
            values = list(self.tournament()["values"])
            if self.rng.random() < self.settings.crossover:
                other = self.tournament()["values"]
                values = [a if self.rng.random() < 0.5 else b for a, b in zip(values, other)]
            if len(values) != len(decisions):
                continue
            index = self.rng.randrange(len(values))
            values[index] = self.mutation(decisions[index], values[index])
            try:
                return self.space.genotype(values, depth)
            except ValueError:
                continue
        return self.space.sample(self.rng, depth)

    def mutation(self, decision, value):
        """Another option of a choice; for an anchor, one earlier layer added or removed."""
        if isinstance(decision, Choice):
            others = [o for o in decision.options if o != value]
            return self.rng.choice(others) if others else value
        if decision.layer == 0:
            return value
        flipped = self.rng.randrange(decision.layer)
        return sorted(set(value) ^ {flipped})

    def update(self, proposals: list[Proposal], records: list[dict]) -> dict:
        for proposal, record in zip(proposals, records):
            self.population.append({"trial": proposal.trial, "depth": proposal.depth, "values": proposal.values,
                                    "reward": record["reward"]})
            if len(self.population) > self.settings.population:
                self.population.pop(0)  # aging: the oldest leaves, however good
        return {"population_best": max(m["reward"] for m in self.population)}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {"rng": random_state_json(self.rng.getstate()), "population": self.population,
                    "proposed": self.proposed}

    def load_state(self, tensors: dict[str, torch.Tensor], saved: dict) -> None:
        self.rng.setstate(random_state_tuple(saved["rng"]))
        self.population, self.proposed = saved["population"], saved["proposed"]


@dataclass(frozen=True)
class SetSettings:
    size: int | None = None  # N candidates; None: every member of a finite space (models), else 16 samples

    def __post_init__(self):
        if self.size is not None and (type(self.size) is not int or self.size < 2):
            raise ValueError(f"a set search needs a set of at least 2 candidates, got {self.size!r}")


@register_strategy
class SuccessiveHalvingStrategy:
    """Set search: a constructed set of candidates (the models a ``models`` space names, or N distinct
    samples of any space) narrowed by successive halving (Jamieson & Talwalkar 2016, arXiv:1502.07943;
    Hyperband's inner loop): every candidate trains at the trial's epochs, the better half is trained
    again from scratch at twice the epochs, and so on until one remains, trained longest.  A round is
    one synchronous batch; a tie goes to the candidate listed first."""

    name = "set"
    synchronous = True
    settings_field = "set"

    @staticmethod
    def set_size(settings: SetSettings, space: SearchSpace) -> int:
        members = getattr(space, "members", None)
        if members and settings.size and settings.size > len(members()):
            raise ValueError(f"a set of {settings.size} candidates cannot be drawn from the {len(members())} "
                             f"models the candidates name")
        return settings.size or (len(members()) if members else 16)

    @staticmethod
    def rounds(size: int) -> list[int]:
        """How many candidates each round trains: N, N/2 (rounded up), ..., 1."""
        sizes = [size]
        while sizes[-1] > 1:
            sizes.append(math.ceil(sizes[-1] / 2))
        return sizes

    @classmethod
    def trials_needed(cls, settings: SetSettings, space: SearchSpace) -> int:
        return sum(cls.rounds(cls.set_size(settings, space)))

    def __init__(self, space: SearchSpace, seed: int, settings: SetSettings | None = None):
        self.space, self.settings = space, settings or SetSettings()
        self.rng = random.Random(seed)
        self.size = self.set_size(self.settings, space)
        self.candidates: list[dict] = []  # drawn at the first proposal, which knows the depth
        self.alive: list[int] = []  # indices of the candidates still in the race
        self.round = 0

    def draw(self, depth: int | None) -> list[dict]:
        """N distinct candidates: the space's members in order where it lists them all, else samples."""
        members = getattr(self.space, "members", None)
        if members and self.settings.size is None:
            return members()
        drawn: list[dict] = []
        for _ in range(100 * self.size):
            genotype = self.space.sample(self.rng, depth)
            if genotype not in drawn:
                drawn.append(genotype)
            if len(drawn) == self.size:
                return drawn
        raise ValueError(f"{self.space.name} gave only {len(drawn)} distinct candidates in {100 * self.size} "
                         f"draws; ask for fewer than {self.size}")

    def batch_size(self) -> int:
        """This round's candidates (the whole set before the first)."""
        return len(self.alive) if self.candidates else self.size

    def propose(self, first_trial: int, count: int, depth: int | None) -> list[Proposal]:
        if not self.candidates:
            self.candidates = self.draw(depth)
            self.alive = list(range(len(self.candidates)))
        return [Proposal(trial, depth, self.space.values(self.candidates[index]), self.candidates[index],
                         epochs_factor=2 ** self.round)
                for trial, index in zip(range(first_trial, first_trial + count), self.alive)]

    def update(self, proposals: list[Proposal], records: list[dict]) -> dict:
        ranked = sorted(zip(proposals, records),
                        key=lambda pair: (-pair[1]["reward"], self.candidates.index(pair[0].genotype)))
        kept = sorted(self.candidates.index(p.genotype) for p, _ in ranked[:math.ceil(len(ranked) / 2)])
        self.alive = kept if len(ranked) > 1 else []  # the last round's single candidate ends the search
        self.round += 1
        return {"round": self.round - 1, "kept": kept}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {"rng": random_state_json(self.rng.getstate()), "candidates": self.candidates,
                    "alive": self.alive, "round": self.round}

    def load_state(self, tensors: dict[str, torch.Tensor], saved: dict) -> None:
        self.rng.setstate(random_state_tuple(saved["rng"]))
        self.candidates, self.alive, self.round = saved["candidates"], saved["alive"], saved["round"]


@dataclass(frozen=True)
class MorphSettings:
    children: int = 8  # n: children per hill-climbing step
    edits: int = 3  # k: each child is 1 to k random morphisms of the current best
    steps: int = 10  # hill-climbing steps after the first network
    start_epochs_factor: int = 4  # the first network trains this multiple of a child's epochs

    def __post_init__(self):
        for name in ("children", "edits", "steps", "start_epochs_factor"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"morph {name} must be a positive integer, got {value!r}")


# Elsken et al. start from a small plain network: three 3x3 convolutions, the second with stride 2
MORPH_START = {"space": "nas_cnn", "layers": [
    {"filter_height": 3, "filter_width": 3, "filters": 32, "stride": 1, "inputs": []},
    {"filter_height": 3, "filter_width": 3, "filters": 32, "stride": 2, "inputs": [0]},
    {"filter_height": 3, "filter_width": 3, "filters": 64, "stride": 1, "inputs": [1]}]}


@register_strategy
class MorphStrategy:
    """Hill climbing over network morphisms (Elsken et al. 2017, arXiv:1711.04528): from the best
    network so far, n children, each 1 to k random function-preserving edits of it (``morphisms``),
    train briefly from its trained weights (the trial's warm-up and cosine schedule); the best of
    them and the parent becomes the next parent.  One step is one synchronous batch; the first
    trial is the starting network, trained from scratch."""

    name = "morph"
    synchronous = True
    settings_field = "morph"

    @staticmethod
    def trials_needed(settings: MorphSettings, space: SearchSpace) -> int:
        if space.name != "nas_cnn":
            raise ValueError(f"morphism search edits nas_cnn networks, not {space.name}: use --space nas_cnn")
        return 1 + settings.steps * settings.children

    def __init__(self, space: SearchSpace, seed: int, settings: MorphSettings | None = None):
        self.space, self.settings = space, settings or MorphSettings()
        self.rng = random.Random(seed)
        self.best: dict | None = None  # {"trial", "genotype", "weights", "reward"}

    def batch_size(self) -> int:
        return 1 if self.best is None else self.settings.children

    def propose(self, first_trial: int, count: int, depth: int | None) -> list[Proposal]:
        from .morphisms import edit_genotype, random_edit

        if self.best is None:
            return [Proposal(first_trial, depth, [], MORPH_START, epochs_factor=self.settings.start_epochs_factor)]
        proposals = []
        for trial in range(first_trial, first_trial + count):
            genotype, edits = self.best["genotype"], []
            for _ in range(self.rng.randint(1, self.settings.edits)):
                edits.append(random_edit(genotype, self.rng))
                genotype = edit_genotype(genotype, edits[-1])
            proposals.append(Proposal(trial, depth, [], genotype, parent=self.best["trial"],
                                      inherit={"genotype": self.best["genotype"], "weights": self.best["weights"],
                                               "edits": edits}))
        return proposals

    def update(self, proposals: list[Proposal], records: list[dict]) -> dict:
        candidates = [{"trial": p.trial, "genotype": p.genotype, "weights": r.get("weights"), "reward": r["reward"]}
                      for p, r in zip(proposals, records) if r.get("weights")]
        if self.best is not None:
            candidates.append(self.best)
        if not candidates:
            raise ValueError(f"trial {proposals[0].trial}, the starting network, failed: {records[0].get('error')}")
        self.best = max(candidates, key=lambda c: c["reward"])  # the parent stays if no child beats it
        return {"parent": self.best["trial"]}

    def state(self) -> tuple[dict[str, torch.Tensor], dict]:
        return {}, {"rng": random_state_json(self.rng.getstate()), "best": self.best}

    def load_state(self, tensors: dict[str, torch.Tensor], saved: dict) -> None:
        self.rng.setstate(random_state_tuple(saved["rng"]))
        self.best = saved["best"]


def make_strategy(name: str, space: SearchSpace, seed: int, settings: ControllerSettings | None = None):
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; the strategies are {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, seed, settings)
