"""Search strategies: the paper's REINFORCE-trained controller, and random search to compare it with.

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

from ...train.checkpoint import join_optimizer, split_optimizer
from .controller import Controller, ControllerSettings
from .space import SearchSpace

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
        version, internal, gauss = self.rng.getstate()
        return {}, {"rng": [version, list(internal), gauss]}

    def load_state(self, tensors: dict[str, torch.Tensor], saved: dict) -> None:
        version, internal, gauss = saved["rng"]
        self.rng.setstate((version, tuple(internal), gauss))


def make_strategy(name: str, space: SearchSpace, seed: int, settings: ControllerSettings | None = None):
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; the strategies are {', '.join(STRATEGIES)}")
    return STRATEGIES[name](space, seed, settings)
