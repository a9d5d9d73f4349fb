"""Search strategies: the NAS paper's REINFORCE-trained controller, random search, and regularized evolution.

A strategy proposes children and learns from their scored records (each with its ``reward``).
A *synchronous* strategy (REINFORCE: the paper's m architectures per controller update) is given
a whole batch at once; an asynchronous one keeps one child per worker in flight and learns from
each as it finishes.  Its whole state (weights, optimizer, baseline, random-number generator)
goes into tensors + JSON, so a search killed at any moment resumes exactly.  A new strategy is
one class registered here with ``@register_strategy``.
"""
from __future__ import annotations

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


def make_strategy(name: str, space: SearchSpace, seed: int, settings: ControllerSettings | None = None):
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; the strategies are {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, seed, settings)
