"""DARTS: differentiable architecture search (Liu, Simonyan and Yang 2019, arXiv:1806.09055).

Every edge of a cell becomes a *mixed operation*, the softmax(alpha)-weighted sum of all the
primitives, so one over-parameterised network holds every architecture of the space and the
choice is learned by gradient descent, not sampled and trained child by child.  The weights w
and the architecture alpha are trained in turn on two disjoint halves of the training split
(bilevel optimisation): w by SGD on the first half; alpha by Adam on the second, either with the
current w (first order, xi = 0) or through one unrolled step w' = w - xi grad_w L_train, whose
second-order term is a finite difference of two gradients (the paper's Eq. 7-8).  At the end each
node keeps its two strongest non-zero operations from distinct inputs: the genotype, which
``create_model("nas_child", genotype=...)`` builds and the training engine trains from scratch.

A search is one long training, not a set of trials: each epoch ends with a checkpoint of every
tensor (weights, alpha, both optimizers) and then one journal line (alpha's softmax and the derived
genotype) that commits it.  A killed search resumes from its last committed epoch and ends with
the same alpha and genotype as an uninterrupted one; every epoch's data order comes from the
seed and the epoch alone.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.utils.data import DataLoader, Subset

from ...durable import FolderLock, check_output_folder, read_json, remove, write_json, write_tensors
from ...models.darts_cells import PRIMITIVES, FactorizedReduce, make_op, reduction_cells, relu_conv_bn
from ...train.checkpoint import join_optimizer, split_optimizer
from .journal import Journal


@dataclass(frozen=True)
class DartsSettings:
    order: int = 1  # 1: first order (xi = 0); 2: the unrolled step's second-order term
    nodes: int = 4
    layers: int = 8
    init_channels: int = 16
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.025  # weights: SGD, momentum 0.9, cosine to lr_min (the paper's)
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    arch_lr: float = 3e-4  # alpha: Adam, betas (0.5, 0.999), weight decay 1e-3 (the paper's)
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    data: str = "digits"
    input_size: int = 16  # the digits are 8x8: 16x16 keeps two reductions meaningful
    small_input: bool = True
    limit: int | None = None  # search on only this many training images
    seed: int = 0
    # latency-aware search (FBNet, ProxylessNAS): alpha's loss + this weight x the expected latency in ms,
    # each mixed operation's softmax-weighted sum of its primitives' times (vertebra.design.latency's table)
    latency_weight: float = 0.0

    def check(self) -> "DartsSettings":
        if self.order not in (1, 2):
            raise ValueError(f"order must be 1 (first order) or 2 (second order), got {self.order!r}")
        first, second = reduction_cells(self.layers)
        if first < 1 or second - first < 2:
            raise ValueError(f"{self.layers} cells put the reductions at cells {first} and {second} with no normal "
                             "cell before or between them: use --layers 5 or more")
        for name in ("nodes", "init_channels", "epochs", "batch_size"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if self.init_channels % 2:
            raise ValueError(f"init_channels must be even (a factorized reduce halves it), got {self.init_channels}")
        if not isinstance(self.latency_weight, (int, float)) or self.latency_weight < 0:
            raise ValueError(f"latency_weight must be a number >= 0, got {self.latency_weight!r}")
        return self


# -- the over-parameterised network -----------------------------------------------------------------
class MixedOp(nn.Module):
    """sum_o softmax(alpha)_o * o(x) over every primitive (pooling followed by a BN, as in the paper's code)."""

    def __init__(self, chs: int, stride: int):
        super().__init__()
        self.stride = stride
        self.ops = nn.ModuleList(
            nn.Sequential(make_op(p, chs, stride, affine=False), nn.BatchNorm2d(chs, affine=False)) if "pool" in p
            else make_op(p, chs, stride, affine=False) for p in PRIMITIVES)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class SearchCell(nn.Module):
    def __init__(self, nodes: int, prev_prev: int, prev: int, chs: int, reduction: bool, reduction_prev: bool):
        super().__init__()
        self.nodes = nodes
        self.preprocess0 = FactorizedReduce(prev_prev, chs, affine=False) if reduction_prev else \
            relu_conv_bn(prev_prev, chs, affine=False)
        self.preprocess1 = relu_conv_bn(prev, chs, affine=False)
        self.edges = nn.ModuleList(MixedOp(chs, 2 if reduction and j < 2 else 1)
                                   for i in range(nodes) for j in range(i + 2))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states, edge = [self.preprocess0(s0), self.preprocess1(s1)], 0
        for _ in range(self.nodes):
            states.append(sum(self.edges[edge + j](h, weights[edge + j]) for j, h in enumerate(states)))
            edge += len(states) - 1
        return torch.cat(states[2:], 1)


class SearchNetwork(nn.Module):
    """The supernet: the derived network's skeleton with a mixed operation on every edge."""

    def __init__(self, settings: DartsSettings, in_chans: int, num_classes: int):
        super().__init__()
        self.in_chans = in_chans
        chs, nodes = settings.init_channels, settings.nodes
        stem = [nn.Conv2d(in_chans, 3 * chs, 3, padding=1, bias=False), nn.BatchNorm2d(3 * chs)]
        if not settings.small_input:
            stem = [nn.Conv2d(in_chans, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                    nn.Conv2d(32, 3 * chs, 3, padding=1, bias=False), nn.BatchNorm2d(3 * chs)]
        self.stem = nn.Sequential(*stem)
        prev_prev, prev, reduction_prev, self.reductions = 3 * chs, 3 * chs, False, []
        cells = []
        for index in range(settings.layers):
            reduction = index in reduction_cells(settings.layers)
            chs = chs * 2 if reduction else chs
            cells.append(SearchCell(nodes, prev_prev, prev, chs, reduction, reduction_prev))
            self.reductions.append(reduction)
            prev_prev, prev, reduction_prev = prev, nodes * chs, reduction
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(prev, num_classes)

    def edge_inputs(self, input_size: int) -> list[tuple[bool, list[tuple[tuple, int]]]]:
        """Per cell: whether it reduces, and each edge's input shape (batch 1) and stride, recorded
        from one pass in eval mode (no BatchNorm statistic changes)."""
        shapes: dict[int, tuple] = {}

        def record(module, args) -> None:  # returns None: the inputs go on unchanged
            shapes.setdefault(id(module), tuple(args[0].shape))

        hooks = [edge.register_forward_pre_hook(record) for cell in self.cells for edge in cell.edges]
        alphas = {kind: torch.zeros(len(self.cells[0].edges), len(PRIMITIVES)) for kind in ("normal", "reduce")}
        training = self.training
        try:
            with torch.no_grad():
                self.eval()(torch.zeros(1, self.in_chans, input_size, input_size), alphas)
        finally:
            for hook in hooks:
                hook.remove()
            self.train(training)
        return [(reduction, [(shapes[id(edge)], edge.stride) for edge in cell.edges])
                for cell, reduction in zip(self.cells, self.reductions)]

    def forward(self, x: torch.Tensor, alphas: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = {kind: F.softmax(alpha, dim=-1) for kind, alpha in alphas.items()}
        s0 = s1 = self.stem(x)
        for cell, reduction in zip(self.cells, self.reductions):
            s0, s1 = s1, cell(s0, s1, weights["reduce" if reduction else "normal"])
        return self.classifier(F.adaptive_avg_pool2d(s1, 1).flatten(1))


def primitive_latencies(network: "SearchNetwork", input_size: int, table) -> list[tuple[bool, torch.Tensor]]:
    """Per cell: (reduction, an edges x primitives tensor of milliseconds at batch 1), from ``table``."""
    found = []
    for reduction, edges in network.edge_inputs(input_size):
        # fresh copies of the modules the supernet runs (pools' BN included): timing sets eval mode
        rows = [[table.module_ms(op, shape) for op in MixedOp(shape[1], stride).ops] for shape, stride in edges]
        found.append((reduction, torch.tensor(rows)))
    return found


def expected_latency(alphas: dict[str, torch.Tensor], latencies) -> torch.Tensor:
    """sum over cells and edges of softmax(alpha) . each primitive's milliseconds: differentiable in alpha."""
    weights = {kind: F.softmax(alpha, dim=-1) for kind, alpha in alphas.items()}
    return sum((weights["reduce" if reduction else "normal"] * ms).sum() for reduction, ms in latencies)


def edge_count(nodes: int) -> int:
    return sum(i + 2 for i in range(nodes))


def derive(weights: torch.Tensor, nodes: int) -> list[list]:
    """Each node keeps its two strongest inputs (by their best non-zero weight) and, on each, that
    operation: the paper's discretisation, in its code's order (strongest edge first)."""
    none, genes, edge = PRIMITIVES.index("none"), [], 0
    for node in range(nodes):
        rows = weights[edge:edge + node + 2].clone()
        rows[:, none] = -1.0
        strongest = sorted(range(node + 2), key=lambda j: -float(rows[j].max()))[:2]
        genes += [[PRIMITIVES[int(rows[j].argmax())], j] for j in strongest]
        edge += node + 2
    return genes


def genotype_of(alphas: dict[str, torch.Tensor], settings: DartsSettings) -> dict:
    concat = list(range(2, 2 + settings.nodes))
    weights = {kind: F.softmax(alpha.detach(), dim=-1) for kind, alpha in alphas.items()}
    return {"space": "darts_cells", "normal": derive(weights["normal"], settings.nodes), "normal_concat": concat,
            "reduce": derive(weights["reduce"], settings.nodes), "reduce_concat": concat,
            "layers": settings.layers, "init_channels": settings.init_channels}


# -- bilevel optimisation ---------------------------------------------------------------------------
def _loss(network, params: dict | None, alphas: dict, x, y) -> torch.Tensor:
    logits = network(x, alphas) if params is None else functional_call(network, params, (x, alphas))
    return F.cross_entropy(logits, y)


def unrolled_alpha_gradient(network: nn.Module, alphas: dict, w_optimizer: torch.optim.SGD, train, val,
                            xi: float) -> list[torch.Tensor]:
    """grad_alpha L_val(w', alpha) - xi * [grad_alpha L_train(w+, alpha) - grad_alpha L_train(w-, alpha)] / 2 eps,
    w' = w - xi (momentum buffer + grad_w L_train(w) + weight decay w), w+- = w +- eps grad_w' L_val(w'),
    eps = 0.01 / ||grad_w' L_val(w')||: the paper's Eq. 7 with the Hessian-vector product of Eq. 8."""
    names, weights = zip(*[(n, p) for n, p in network.named_parameters()])
    group = w_optimizer.param_groups[0]
    grads = torch.autograd.grad(_loss(network, None, alphas, *train), weights)
    moved = {}
    for name, weight, grad in zip(names, weights, grads):
        buffer = w_optimizer.state.get(weight, {}).get("momentum_buffer")
        step = grad + group["weight_decay"] * weight + (group["momentum"] * buffer if buffer is not None else 0)
        moved[name] = (weight - xi * step).detach().requires_grad_()
    alpha_list = list(alphas.values())
    val_loss = _loss(network, moved, alphas, *val)
    *alpha_grads, = torch.autograd.grad(val_loss, alpha_list, retain_graph=True)
    moved_grads = torch.autograd.grad(val_loss, list(moved.values()))
    eps = 0.01 / torch.sqrt(sum((g * g).sum() for g in moved_grads))
    sides = []
    for sign in (1.0, -1.0):
        shifted = {n: (w + sign * eps * g).detach() for n, w, g in zip(names, weights, moved_grads)}
        sides.append(torch.autograd.grad(_loss(network, shifted, alphas, *train), alpha_list))
    return [a - xi * (plus - minus) / (2 * eps) for a, plus, minus in zip(alpha_grads, *sides)]


def _cosine(settings: DartsSettings, epoch: int) -> float:
    return settings.lr_min + 0.5 * (settings.lr - settings.lr_min) * (1 + math.cos(math.pi * epoch / settings.epochs))


def _halves(settings: DartsSettings):
    from ...train.data import load_data

    data = load_data(settings.data, input_size=settings.input_size, seed=settings.seed)
    count = len(data.train) if settings.limit is None else min(settings.limit, len(data.train))
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(settings.seed))[:count].tolist()
    return data, Subset(data.train, order[:count // 2]), Subset(data.train, order[count // 2:])


def _loader(dataset, settings: DartsSettings, epoch: int, stream: int) -> DataLoader:
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch * 2 + stream)
    return DataLoader(dataset, batch_size=settings.batch_size, shuffle=True, generator=generator, drop_last=True)


# -- the search: one long training, checkpointed and journaled every epoch ----------------------------
@dataclass
class DartsResult:
    out: Path
    genotype: dict
    history: list[dict]
    wall_s: float  # this run's search time (not counting epochs done before a resume)


class DartsSearch:
    """``DartsSearch(settings, out, resume).run(console)``: the files in ``out`` are ``settings.json``,
    ``journal.jsonl`` (one line per epoch), ``state-eNNNN.safetensors`` + ``.json`` (the last epoch's
    tensors), ``genotype.json``, ``alphas.png`` and ``cells.svg`` (the derived cells)."""

    def __init__(self, settings: DartsSettings, out: str | Path, resume: bool = False):
        self.settings, self.out, self.resume = settings.check(), Path(out), resume
        torch.manual_seed(settings.seed)
        self.data, self.train_half, self.arch_half = _halves(settings)
        if len(self.arch_half) < settings.batch_size:
            raise ValueError(f"{len(self.arch_half)} images in each half of the training split: fewer than one "
                             f"batch of {settings.batch_size}; lower --batch-size or raise --limit")
        self.network = SearchNetwork(settings, self.data.in_chans, len(self.data.classes))
        edges = edge_count(settings.nodes)
        self.alphas = {kind: nn.Parameter(1e-3 * torch.randn(edges, len(PRIMITIVES))) for kind in ("normal", "reduce")}
        self.w_optimizer = torch.optim.SGD(self.network.parameters(), settings.lr, momentum=settings.momentum,
                                           weight_decay=settings.weight_decay)
        self.a_optimizer = torch.optim.Adam(list(self.alphas.values()), settings.arch_lr, betas=(0.5, 0.999),
                                            weight_decay=settings.arch_weight_decay)
        self.journal = Journal(self.out / "journal.jsonl")
        self.latencies = None  # per cell: the primitives' milliseconds, with latency_weight > 0

    def _latency_table(self) -> None:
        from ..latency import LatencyTable

        table = LatencyTable(self.out / "latency_table.json")
        self.latencies = primitive_latencies(self.network, self.settings.input_size, table)
        table.save()

    # -- files ------------------------------------------------------------------------------------
    def _start(self) -> list[dict]:
        """The epochs already committed (resume), after checking the folder and the settings."""
        settings = asdict(self.settings)
        if (self.out / "settings.json").exists():
            if not self.resume:
                raise ValueError(f"{self.out} holds a DARTS search: pass --resume to continue it, or another --out")
            recorded = read_json(self.out / "settings.json", "DARTS settings")
            changed = [k for k in settings if recorded.get(k) != settings[k]]
            if changed:
                raise ValueError(f"--resume with other settings than the search in {self.out}: {', '.join(changed)} "
                                 f"differ (recorded: {', '.join(f'{k}={recorded.get(k)!r}' for k in changed)})")
        else:
            write_json(self.out / "settings.json", settings)
        self.journal.trim()
        history = self.journal.read()
        if history:
            self._load(history[-1]["epoch"])
        return history

    def _save(self, epoch: int) -> None:
        w_tensors, w_rest = split_optimizer(self.w_optimizer.state_dict())
        a_tensors, a_rest = split_optimizer(self.a_optimizer.state_dict())
        tensors = {**{f"w.{k}": v.contiguous() for k, v in self.network.state_dict().items()},
                   **{f"alpha.{k}": v.detach().clone() for k, v in self.alphas.items()},
                   **{f"w_opt.{k}": v for k, v in w_tensors.items()}, **{f"a_opt.{k}": v for k, v in a_tensors.items()}}
        write_tensors(self.out / f"state-e{epoch:04d}.safetensors", tensors)
        write_json(self.out / f"state-e{epoch:04d}.json", {"epoch": epoch, "w_opt": w_rest, "a_opt": a_rest})

    def _load(self, epoch: int) -> None:
        from safetensors.torch import load_file

        tensors = load_file(self.out / f"state-e{epoch:04d}.safetensors")
        rest = read_json(self.out / f"state-e{epoch:04d}.json", "DARTS state")
        part = lambda prefix: {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        self.network.load_state_dict(part("w."))
        with torch.no_grad():
            for kind, value in part("alpha.").items():
                self.alphas[kind].copy_(value)
        self.w_optimizer.load_state_dict(join_optimizer(part("w_opt."), rest["w_opt"]))
        self.a_optimizer.load_state_dict(join_optimizer(part("a_opt."), rest["a_opt"]))

    def _commit(self, record: dict) -> None:
        """The journal line commits the epoch; only then does the previous epoch's state go."""
        self.journal.append(record)
        for old in (f"state-e{record['epoch'] - 1:04d}.safetensors", f"state-e{record['epoch'] - 1:04d}.json"):
            if (self.out / old).exists():
                remove(self.out / old)

    # -- training ---------------------------------------------------------------------------------
    def _epoch(self, epoch: int) -> dict:
        settings, alpha_list = self.settings, list(self.alphas.values())
        lr = _cosine(settings, epoch)
        for group in self.w_optimizer.param_groups:
            group["lr"] = lr
        self.network.train()
        correct = seen = arch_correct = 0
        loss_sum = 0.0
        for (x, y), (xv, yv) in zip(_loader(self.train_half, settings, epoch, 0),
                                    _loader(self.arch_half, settings, epoch, 1)):
            if settings.order == 2:
                grads = unrolled_alpha_gradient(self.network, self.alphas, self.w_optimizer, (x, y), (xv, yv), lr)
            else:
                logits = self.network(xv, self.alphas)
                arch_correct += int((logits.argmax(1) == yv).sum())
                grads = torch.autograd.grad(F.cross_entropy(logits, yv), alpha_list)
            if self.latencies is not None:  # the latency term does not depend on the weights: its gradient adds
                penalty = torch.autograd.grad(settings.latency_weight * expected_latency(self.alphas, self.latencies),
                                              alpha_list)
                grads = [g + p for g, p in zip(grads, penalty)]
            for alpha, grad in zip(alpha_list, grads):
                alpha.grad = grad.detach()
            self.a_optimizer.step()
            self.w_optimizer.zero_grad(set_to_none=True)
            logits = self.network(x, {k: a.detach() for k, a in self.alphas.items()})
            loss = F.cross_entropy(logits, y)
            loss.backward()
            nn.utils.clip_grad_norm_(self.network.parameters(), settings.grad_clip)
            self.w_optimizer.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        softmax = {kind: F.softmax(a.detach(), -1) for kind, a in self.alphas.items()}
        latency = None if self.latencies is None else round(float(expected_latency(
            {k: a.detach() for k, a in self.alphas.items()}, self.latencies)), 4)
        return {"epoch": epoch, "expected_latency_ms": latency, "lr": lr, "train_loss": loss_sum / seen,
                "train_accuracy": correct / seen, "arch_accuracy": arch_correct / seen if settings.order == 1 else None,
                "alphas": {kind: w.tolist() for kind, w in softmax.items()},
                "genotype": genotype_of(self.alphas, settings)}

    def _draw_cells(self, genotype: dict) -> None:
        """cells.svg: the derived normal and reduction cells as nodes and operations (vertebra.draw)."""
        from ...diagrams import draw
        from ...registry import create_model

        with torch.device("meta"):
            network = create_model("nas_child", genotype=genotype, num_classes=len(self.data.classes),
                                   in_chans=self.data.in_chans, small_input=self.settings.small_input)
        draw(network, "blocks", self.settings.input_size, self.out / "cells.svg", force=True)

    def run(self, console=None) -> DartsResult:
        check_output_folder(self.out)
        with FolderLock(self.out):
            history = self._start()
            if self.settings.latency_weight > 0:
                self._latency_table()
            started = time.perf_counter()
            for epoch in range(len(history), self.settings.epochs):
                begun = time.perf_counter()
                record = self._epoch(epoch)
                record["seconds"] = time.perf_counter() - begun
                self._save(epoch)
                self._commit(record)
                history.append(record)
                if console is not None:
                    console.print(f"epoch {epoch + 1}/{self.settings.epochs}: train loss {record['train_loss']:.3f}, "
                                  f"accuracy {record['train_accuracy']:.1%}, {record['seconds']:.0f} s; normal cell "
                                  f"{' '.join(op for op, _ in record['genotype']['normal'])}", soft_wrap=True)
            genotype = history[-1]["genotype"]
            write_json(self.out / "genotype.json", genotype)
            from .plots import plot_alphas

            plot_alphas(history, self.out / "alphas.png", f"DARTS ({'first' if self.settings.order == 1 else 'second'}"
                        f" order), {self.settings.layers} cells, {self.settings.init_channels} channels")
            self._draw_cells(genotype)
        return DartsResult(self.out, genotype, history, time.perf_counter() - started)
