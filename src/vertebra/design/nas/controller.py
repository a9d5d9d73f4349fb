"""The NAS controller (Zoph & Le 2017, Sec. 3.1-3.3): an LSTM that writes a network one decision at a time.

At every step the controller's softmax picks one option of the current decision, and the
embedding of that choice is the next step's input.  Skip connections use the paper's anchor
points: layer i connects to earlier layer j with probability sigmoid(v^T tanh(W_prev h_j + W_curr h_i)).
Here h_j is the controller's state after layer j's last decision (its number of filters); in the
paper's figure h_j is the state at layer j's own anchor step, which comes first in the layer.  Both
summarise layer j; the later one has also seen j's filter shape.  Sampling runs without
gradients and records the choices; REINFORCE re-scores those choices with gradients.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...layers.recurrent import LSTMCell
from .space import Anchor, Choice


def decision_kind(name: str) -> str:
    """"layer3.filter_height" -> "filter_height": one softmax per kind, shared across layers, so
    the controller keeps its parameters when the depth grows."""
    return name.split(".", 1)[-1]


def decision_group(name: str) -> str:
    """"layer3.filter_height" -> "layer3": the layer (or stage) a decision describes."""
    return name.split(".", 1)[0]


@dataclass(frozen=True)
class ControllerSettings:
    hidden_size: int = 35  # the paper's
    num_layers: int = 2  # the paper's
    lr: float = 6e-4  # Adam, the paper's
    baseline_decay: float = 0.95  # exponential moving average of past rewards
    init_range: float = 0.08  # uniform initialisation of every weight (as in the paper's code base, TF-slim)


class Controller(nn.Module):
    """An LSTM policy over a search space's decisions."""

    def __init__(self, decisions: list[Choice | Anchor], settings: ControllerSettings = ControllerSettings()):
        super().__init__()
        hidden = settings.hidden_size
        self.cells = nn.ModuleList(LSTMCell(hidden, hidden) for _ in range(settings.num_layers))
        self.start = nn.Parameter(torch.zeros(1, hidden))  # the first step's input
        self.embeddings, self.heads = nn.ModuleDict(), nn.ModuleDict()
        for decision in decisions:
            if isinstance(decision, Choice):
                kind = decision_kind(decision.name)
                self.embeddings[kind] = nn.Embedding(len(decision.options), hidden)
                self.heads[kind] = nn.Linear(hidden, len(decision.options))
        self.attend_prev = nn.Linear(hidden, hidden, bias=False)  # W_prev
        self.attend_curr = nn.Linear(hidden, hidden, bias=False)  # W_curr
        self.attend_v = nn.Linear(hidden, 1, bias=False)  # v
        for weight in self.parameters():
            nn.init.uniform_(weight, -settings.init_range, settings.init_range)

    def step(self, x: torch.Tensor, state: list) -> tuple[torch.Tensor, list]:
        new_state = []
        for cell, (h, c) in zip(self.cells, state):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        return x, new_state

    def connection_logits(self, anchors: list[torch.Tensor], current: torch.Tensor) -> torch.Tensor:
        """The paper's attention: one logit per earlier layer for "feeds the current layer"."""
        earlier = self.attend_prev(torch.cat(anchors))  # (layers, hidden)
        return self.attend_v(torch.tanh(earlier + self.attend_curr(current))).squeeze(1)

    def run(self, decisions: list[Choice | Anchor], generator: torch.Generator | None = None,
            values: list | None = None) -> tuple[list, torch.Tensor, torch.Tensor]:
        """Sample values for ``decisions`` (values=None) or score the given ones.

        Returns (values, log-probability of the values, entropy of the policy along the way).
        Choice values are option values; Anchor values are sorted lists of earlier layer indices.
        """
        hidden = self.start.shape[1]
        state = [(torch.zeros(1, hidden), torch.zeros(1, hidden)) for _ in self.cells]
        x, chosen, anchors = self.start, [], {}
        log_prob, entropy = torch.zeros(()), torch.zeros(())
        for index, decision in enumerate(decisions):
            h, state = self.step(x, state)
            given = None if values is None else values[index]
            if isinstance(decision, Choice):
                x, value, lp, ent = self._choose(decision, h, generator, given)
            else:
                x, value, lp, ent = self._connect(decision, h, anchors, generator, given)
            chosen.append(value)
            log_prob, entropy = log_prob + lp, entropy + ent
            anchors[decision_group(decision.name)] = h  # the layer's state after its latest decision
        return chosen, log_prob, entropy

    @staticmethod
    def _anchor_states(layers: int, anchors: dict, h: torch.Tensor) -> list[torch.Tensor]:
        """h_j for each earlier layer j.  A layer whose every field is fixed made no decision, so the
        controller had nothing more to say about it: its anchor is the state of the layer before
        (the initial zero state for a leading run of such layers)."""
        states, last = [], torch.zeros_like(h)
        for j in range(layers):
            last = anchors.get(f"layer{j}", last)
            states.append(last)
        return states

    def _choose(self, decision: Choice, h, generator, given):
        kind = decision_kind(decision.name)
        distribution = torch.distributions.Categorical(logits=self.heads[kind](h).squeeze(0))
        if given is None:
            index = int(torch.multinomial(distribution.probs.detach(), 1, generator=generator))
        else:
            index = decision.options.index(given)
        x = self.embeddings[kind](torch.tensor([index]))
        return x, decision.options[index], distribution.log_prob(torch.tensor(index)), distribution.entropy()

    def _connect(self, decision: Anchor, h, anchors: dict, generator, given):
        earlier = self._anchor_states(decision.layer, anchors, h)
        probs = torch.sigmoid(self.connection_logits(earlier, h))
        if given is None:
            picks = torch.rand(probs.shape, generator=generator) < probs.detach()
        else:
            picks = torch.zeros(decision.layer, dtype=torch.bool)
            picks[list(given)] = True
        distribution = torch.distributions.Bernoulli(probs=probs)
        inputs = [j for j in range(decision.layer) if picks[j]]
        # the next input summarises the chosen layers (the start vector when none is chosen)
        x = torch.cat(earlier)[picks].mean(0, keepdim=True) if inputs else self.start
        return x, inputs, distribution.log_prob(picks.float()).sum(), distribution.entropy().sum()
