"""Network morphisms: edits of a ``nas_cnn`` child that leave its function unchanged.

Elsken, Metzen and Hutter, "Simple and efficient architecture search for CNNs" (2017,
arXiv:1711.04528), after Net2Net (Chen, Goodfellow and Shlens 2016, arXiv:1511.05641): a child
starts from its parent's trained weights, edited so that (in eval mode) it computes exactly what
the parent did, and only then trains.  Three edits:

- ``widen`` layer i to more filters (Net2WiderNet): the new filters copy randomly chosen old ones
  (BN included), and every reader of layer i divides its weights on each copied channel by the
  number of copies, so the sum it computes is the same;
- ``deepen`` after layer i (Net2DeeperNet): a new conv-BN-ReLU layer initialised to the identity
  (a centred one-hot kernel; BN with mean 0, variance 1, gamma sqrt(1 + eps)) reads layer i, and
  i's readers read it instead; after a ReLU, ReLU is the identity;
- ``skip`` from layer i to a later layer j: i joins j's concatenated inputs with zero weights.

An edit is plain JSON (``{"kind": "widen", "layer": 2, "filters": 48, "seed": 7}``), so a proposal
carries its edits, and the worker applies them to the parent's weights (``inherit``).
"""
from __future__ import annotations

import random
from pathlib import Path

import torch

from ...models.nas_child import check_genotype, unconsumed_layers

WIDEN_FACTORS = (1.25, 1.5, 2.0)
DEEPEN_KERNELS = ((3, 3), (1, 1), (5, 5))


def _layer_key(index: int, name: str) -> str:
    return f"stages.{index}.conv.{name}"


def _input_slices(genotype: dict, reader: int | None) -> dict[int, slice]:
    """Where each input's channels sit in ``reader``'s concatenated input (None: the head's)."""
    layers = genotype["layers"]
    inputs = unconsumed_layers(layers) if reader is None else layers[reader]["inputs"]
    slices, start = {}, 0
    for j in inputs:
        slices[j] = slice(start, start + layers[j]["filters"])
        start += layers[j]["filters"]
    return slices


def _readers(genotype: dict, layer: int) -> list[int | None]:
    """The layers reading ``layer``, and None when the head does (it is unconsumed)."""
    readers = [j for j, entry in enumerate(genotype["layers"]) if layer in entry["inputs"]]
    return readers or [None]


def _reader_weight(reader: int | None) -> str:
    """The weight through which a reader sees its inputs (along dimension 1: a conv's or the head's)."""
    return "head.fc.weight" if reader is None else _layer_key(reader, "conv.weight")


def reductions(genotype: dict) -> list[int]:
    """Each layer's stride against the image (a concatenation takes its largest map)."""
    found = []
    for entry in genotype["layers"]:
        source = min((found[j] for j in entry["inputs"]), default=1)
        found.append(source * entry["stride"])
    return found


# -- the edits, on the genotype and on the weights ----------------------------------------------------
def edit_genotype(genotype: dict, edit: dict) -> dict:
    layers = [dict(entry, inputs=list(entry["inputs"])) for entry in genotype["layers"]]
    kind = edit["kind"]
    if kind == "widen":
        layers[edit["layer"]]["filters"] = edit["filters"]
    elif kind == "deepen":
        after = edit["after"]
        for entry in layers[after + 1:]:
            entry["inputs"] = [j + 1 if j > after else (after + 1 if j == after else j) for j in entry["inputs"]]
        height, width = edit["kernel"]
        layers.insert(after + 1, {"filter_height": height, "filter_width": width,
                                  "filters": layers[after]["filters"], "stride": 1, "inputs": [after]})
    elif kind == "skip":
        layers[edit["layer"]]["inputs"] = sorted(layers[edit["layer"]]["inputs"] + [edit["input"]])
    else:
        raise ValueError(f"unknown morphism {kind!r}: widen, deepen or skip")
    return check_genotype({"space": "nas_cnn", "layers": layers})


def edit_weights(genotype: dict, state: dict[str, torch.Tensor], edit: dict) -> dict[str, torch.Tensor]:
    """The parent's state dict, edited so the child (``edit_genotype``) computes the same function."""
    state = dict(state)
    kind = edit["kind"]
    if kind == "widen":
        layer, old = edit["layer"], genotype["layers"][edit["layer"]]["filters"]
        generator = torch.Generator().manual_seed(edit["seed"])
        copies = torch.cat([torch.arange(old), torch.randint(0, old, (edit["filters"] - old,), generator=generator)])
        counts = torch.bincount(copies, minlength=old).to(state[_layer_key(layer, "conv.weight")].dtype)
        for name in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"):
            state[_layer_key(layer, name)] = state[_layer_key(layer, name)][copies].clone()
        for reader in _readers(genotype, layer):
            key, dim = _reader_weight(reader), 1
            part = _input_slices(genotype, reader)[layer]
            weight = state[key]
            shared = weight.narrow(dim, part.start, old).index_select(dim, copies)
            shape = [1] * weight.ndim
            shape[dim] = len(copies)
            shared = shared / counts[copies].reshape(shape)
            state[key] = torch.cat([weight.narrow(dim, 0, part.start), shared,
                                    weight.narrow(dim, part.stop, weight.shape[dim] - part.stop)], dim)
    elif kind == "deepen":
        after = edit["after"]
        moved = {}
        for key, value in state.items():
            parts = key.split(".")
            if parts[0] == "stages" and int(parts[1]) > after:
                parts[1] = str(int(parts[1]) + 1)
            moved[".".join(parts)] = value
        state = moved
        channels = genotype["layers"][after]["filters"]
        height, width = edit["kernel"]
        like = state[_layer_key(after, "conv.weight")]
        identity = torch.zeros(channels, channels, height, width, dtype=like.dtype)
        identity[torch.arange(channels), torch.arange(channels), height // 2, width // 2] = 1.0
        eps = edit.get("bn_eps", 1e-5)
        new = after + 1
        state.update({_layer_key(new, "conv.weight"): identity,
                      _layer_key(new, "bn.weight"): torch.full((channels,), (1.0 + eps) ** 0.5, dtype=like.dtype),
                      _layer_key(new, "bn.bias"): torch.zeros(channels, dtype=like.dtype),
                      _layer_key(new, "bn.running_mean"): torch.zeros(channels, dtype=like.dtype),
                      _layer_key(new, "bn.running_var"): torch.ones(channels, dtype=like.dtype),
                      _layer_key(new, "bn.num_batches_tracked"): torch.tensor(0)})
    elif kind == "skip":
        layer, source = edit["layer"], edit["input"]
        child = edit_genotype(genotype, edit)
        part = _input_slices(child, layer)[source]
        key = _layer_key(layer, "conv.weight")
        weight = state[key]
        zeros = weight.new_zeros(weight.shape[0], part.stop - part.start, *weight.shape[2:])
        state[key] = torch.cat([weight[:, :part.start], zeros, weight[:, part.start:]], 1)
    return state


# -- choosing edits ----------------------------------------------------------------------------------
def possible_edits(genotype: dict) -> list[dict]:
    """Every edit this network admits (widen and deepen take their size and seed later)."""
    layers, reduction = genotype["layers"], reductions(genotype)
    consumed = {j for entry in layers for j in entry["inputs"]}
    edits = [{"kind": "widen", "layer": i} for i in range(len(layers))]
    edits += [{"kind": "deepen", "after": i} for i in range(len(layers))]
    for j, entry in enumerate(layers):
        if not entry["inputs"]:
            continue  # a layer reading the image would read a concatenation instead: not the same function
        largest = min(reduction[k] for k in entry["inputs"])
        edits += [{"kind": "skip", "layer": j, "input": i} for i in range(j) if i not in entry["inputs"] and
                  i in consumed and reduction[i] >= largest]  # i's map no larger, and i still feeds another
    return edits


def random_edit(genotype: dict, rng: random.Random) -> dict:
    kinds: dict[str, list[dict]] = {}
    for edit in possible_edits(genotype):
        kinds.setdefault(edit["kind"], []).append(edit)
    edit = dict(rng.choice(kinds[rng.choice(sorted(kinds))]))
    if edit["kind"] == "widen":
        old = genotype["layers"][edit["layer"]]["filters"]
        edit.update(filters=max(old + 1, round(old * rng.choice(WIDEN_FACTORS))), seed=rng.randrange(2 ** 31))
    elif edit["kind"] == "deepen":
        edit["kernel"] = list(rng.choice(DEEPEN_KERNELS))
    return edit


def apply_edits(genotype: dict, state: dict | None, edits: list[dict]) -> tuple[dict, dict | None]:
    for edit in edits:
        state = None if state is None else edit_weights(genotype, state, edit)
        genotype = edit_genotype(genotype, edit)
    return genotype, state


def inherit(spec: dict, folder: Path) -> str:
    """For a trial: the parent's trained weights with the child's edits applied, saved in ``folder``;
    returns the file, which the training engine starts from."""
    from ...registry import create_model
    from ...weights import load_weights, save_weights

    parent = spec["inherit"]
    model = create_model("nas_child", genotype=parent["genotype"], input_pool=spec["model_kwargs"]["input_pool"])
    load_weights(model, parent["weights"])
    genotype, state = apply_edits(check_genotype(parent["genotype"]), model.state_dict(), parent["edits"])
    child = create_model("nas_child", genotype=genotype, input_pool=spec["model_kwargs"]["input_pool"])
    child.load_state_dict(state)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inherited.safetensors"
    save_weights(child, path)
    return str(path)
