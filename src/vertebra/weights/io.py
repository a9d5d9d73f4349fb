"""Reading and writing weights: vertebra's own safetensors files and torchvision/timm checkpoints.

Nothing here unpickles code: ``.pth``/``.pt``/``.bin`` files go through
``torch.load(weights_only=True)``, which refuses any pickled object but tensors and plain
containers.  Files are written atomically (vertebra.durable: a temporary file, fsynced, then a rename), so
a failed save never leaves a half-written file where a good one was.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..data_config import DataConfig
from ..durable import write_file
from .keymaps import KEYMAPS
from .shapes import apply_shapes

CARD_KEY = "vertebra"
_NESTED = ("state_dict", "model", "model_state_dict", "module", "net")
_SHOWN = 8  # keys named per kind of mismatch; the rest are counted


@dataclass
class LoadReport:
    """What ``load_weights`` did: the layout it read, and what it adapted or left out."""

    layout: str
    card: dict = field(default_factory=dict)
    adapted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def save_weights(model: nn.Module, path: str | Path, metadata: dict | None = None) -> Path:
    """Write ``model``'s state dict as safetensors, with a JSON card (name, kwargs, metadata)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"vertebra writes .safetensors files, got {path.name!r}")
    if not path.parent.is_dir():
        raise ValueError(f"folder {str(path.parent)!r} does not exist")
    card = {"format": 1, "model": getattr(model, "model_name", type(model).__name__),
            "kwargs": getattr(model, "model_kwargs", {}),
            "out_indices": getattr(model, "out_indices", None), "metadata": metadata or {}}
    if getattr(model, "layer_shapes", None):  # an adapted network: the widths its family does not build
        card["layer_shapes"] = model.layer_shapes
    header = {CARD_KEY: json.dumps(card, default=repr)}
    # safetensors refuses tensors that share memory; cloning gives each key its own storage.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    return write_file(path, lambda temporary: save_file(tensors, temporary, metadata=header))


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors of a weights file and its vertebra card ({} for foreign files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    with path.open("rb") as handle:
        magic = handle.read(2)
    if magic != b"PK" and magic[:1] != b"\x80":  # a torch.save zip archive, or a legacy pickle
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: it is neither a torch.save "
                         f"archive nor a pickle (starts with {magic!r})")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsupported object"
        raise ValueError(f"refusing {path}: it holds pickled Python objects, not only tensors, and "
                         f"vertebra never unpickles code (torch.load weights_only=True: {reason})") from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"cannot read {path} as a PyTorch checkpoint: {error}") from None
    return _state_dict_in(loaded, path), {}


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        with safe_open(str(path), framework="pt") as handle:
            card = json.loads((handle.metadata() or {}).get(CARD_KEY, "{}"))
            return {key: handle.get_tensor(key) for key in handle.keys()}, card
    except (SafetensorError, OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {path} as a safetensors file: {error}") from None


def _state_dict_in(loaded, path: Path) -> dict[str, torch.Tensor]:
    """Find the tensors in a checkpoint: a bare state dict, or one nested under a common key."""
    for _ in range(3):
        if isinstance(loaded, dict) and loaded and all(isinstance(v, torch.Tensor) for v in loaded.values()):
            # DistributedDataParallel saves every key under "module."
            if all(k.startswith("module.") for k in loaded):
                loaded = {k.removeprefix("module."): v for k, v in loaded.items()}
            return loaded
        nested = [k for k in _NESTED if isinstance(loaded, dict) and isinstance(loaded.get(k), dict)]
        if not nested:
            break
        loaded = loaded[nested[0]]
    raise ValueError(f"{path} holds no state dict (a mapping of names to tensors); "
                     f"got {type(loaded).__name__}")


def load_weights(model: nn.Module, path: str | Path, *, layout: str = "auto",
                 adapt: bool = False) -> LoadReport:
    """Load a weights file into ``model``; every key must match, or nothing is loaded.

    ``layout``: "auto" (vertebra's own names, else the key map that explains every key),
    "vertebra", or a key-map name from the model card's ``layouts``.  ``adapt=True`` (what
    ``create_model(pretrained=...)`` uses) leaves the classifier freshly initialised when
    its shape differs and sums or tiles the first convolution over a different ``in_chans``.
    A features-only model ignores the keys of the parts it removed.  A file of an adapted network
    (NetAdapt) records its layers' widths, and the model takes them before loading.
    """
    source, card = read_weights(path)
    if card.get("layer_shapes"):  # an adapted (pruned) network: take its widths first
        apply_shapes(model, card["layer_shapes"])
    target = model.state_dict()
    name, state = _convert(model, source, layout)
    report = LoadReport(layout=name, card=card)
    if adapt:
        _adapt(model, state, target, report)
    missing = sorted(set(target) - set(state))
    unexpected = sorted(set(state) - set(target))
    if getattr(model, "out_indices", None) is not None:
        report.skipped += unexpected
        for key in unexpected:
            del state[key]
        unexpected = []
    conflicts = [f"{k} {tuple(state[k].shape)} vs model {tuple(target[k].shape)}"
                 for k in sorted(set(state) & set(target)) if state[k].shape != target[k].shape]
    if missing or unexpected or conflicts:
        raise ValueError(_mismatch_message(model, path, name, card, missing, unexpected, conflicts))
    model.load_state_dict(state, strict=True)
    saved = ((card or {}).get("metadata") or {}).get("data_config")
    if saved:  # the preprocessing these weights were trained with: vertebra.data_config(model) gives it
        model.data_config = DataConfig.from_dict(saved)
    return report


def _convert(model: nn.Module, source: dict, layout: str) -> tuple[str, dict]:
    """Rename ``source`` keys into the model's names; ``auto`` takes the layout that explains most."""
    target_keys = set(model.state_dict())
    allowed = _layouts_of(model)
    # a features-only model lacks the head and later stages: their keys count against nothing
    extras_count = getattr(model, "out_indices", None) is None
    if layout not in ("auto", "vertebra") and layout not in allowed:
        raise ValueError(f"layout {layout!r} is not one {_model_name(model)} loads; "
                         f"choose 'auto', 'vertebra' or one of {list(allowed)}")
    names = ("vertebra", *allowed) if layout == "auto" else (layout,)
    best = None
    for name in names:
        if name == "vertebra":
            converted, unmatched = dict(source), []
        else:
            converted, unmatched = KEYMAPS[name].convert(source)
            converted.update((k, source[k]) for k in unmatched)  # reported as unexpected
        score = len(set(converted) & target_keys) - extras_count * len(set(converted) - target_keys)
        if best is None or score > best[0]:
            best = (score, name, converted)
    if layout == "auto" and best[0] <= 0:
        sample = ", ".join(list(source)[:4])
        raise ValueError(f"the keys of this file ({sample}, ...) are neither vertebra's names for "
                         f"{_model_name(model)} nor any layout it loads ({', '.join(allowed) or 'none'})")
    return best[1], best[2]


def _adapt(model: nn.Module, state: dict, target: dict, report: LoadReport) -> None:
    classifier = getattr(model, "classifier", None) or ()
    prefixes = tuple(f"{p}." for p in ((classifier,) if isinstance(classifier, str) else classifier))
    keys = {k for k in set(state) | set(target) if prefixes and k.startswith(prefixes)}
    for key in sorted(keys):  # another number of classes: fresh tensors where the shapes differ
        if key not in state or key not in target or state[key].shape != target[key].shape:
            if key in state:
                report.skipped.append(key)
            state.pop(key, None)
            if key in target:
                state[key] = target[key]
    # optional parts switched off (GoogLeNet's aux_logits=False leaves aux1 = None): not unexpected
    switched_off = [n for n, v in vars(model).items() if v is None and not n.startswith("_")]
    switched_off += [n for n, v in model._modules.items() if v is None]
    absent = tuple(f"{name}." for name in switched_off)
    for key in [k for k in state if absent and k.startswith(absent) and k not in target]:
        del state[key]
        report.skipped.append(key)
    key = f"{getattr(model, 'first_conv', '')}.weight"
    if key in state and key in target and state[key].shape[1] != target[key].shape[1]:
        state[key] = adapt_input_conv(state[key], target[key].shape[1])
        report.adapted.append(key)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """First-layer weights for ``in_chans`` inputs from RGB ones: summed over RGB for one
    channel; otherwise RGB tiled over the channels and scaled by 3 / in_chans, which keeps the
    response to a grey image when in_chans is a multiple of 3 (as timm does)."""
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_chans // weight.shape[1])
    tiled = weight.repeat(1, repeats, 1, 1)[:, :in_chans]
    return tiled * (weight.shape[1] / in_chans)


def _layouts_of(model: nn.Module) -> tuple[str, ...]:
    """The foreign layouts the model's card names (``create_model`` records them on the model)."""
    return tuple(getattr(model, "weight_layouts", ()))


def _model_name(model: nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)


def _mismatch_message(model, path, layout, card, missing, unexpected, conflicts) -> str:
    lines = [f"{path} does not fit {_model_name(model)} (read as layout {layout!r}"
             + (f", saved from {card.get('model')!r} with {card.get('kwargs')}" if card else "") + "):"]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape conflicts", conflicts)):
        if keys:
            more = f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
            lines.append(f"  {label} ({len(keys)}): {', '.join(keys[:_SHOWN])}{more}")
    if missing and not unexpected and not conflicts and all(k.startswith("aux") for k in missing):
        lines.append("  the file has no auxiliary classifiers: build the model with aux_logits=False")
    return "\n".join(lines)


def classes_in(model: nn.Module, state: dict[str, torch.Tensor]) -> int | None:
    """The number of classes a foreign state dict's classifier was trained for (None: no classifier
    found), read through ``model``'s key maps (any number of classes: only its names are used)."""
    _, converted = _convert(model, state, "auto")
    classifier = getattr(model, "classifier", None) or ()
    prefix = classifier if isinstance(classifier, str) else next(iter(classifier), None)
    weight = converted.get(f"{prefix}.weight") if prefix else None
    return int(weight.shape[0]) if weight is not None and weight.ndim >= 2 else None
