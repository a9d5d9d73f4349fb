"""The model registry: ``@register(name, **card)`` and ``create_model`` / ``list_models`` / ``model_info``.

Families register themselves when ``vertebra.models`` is imported; this module imports no model.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .backbone import Backbone


@dataclass(frozen=True)
class ModelCard:
    """What DESIGN.md asks every model to carry; the tests check the built model against it."""

    name: str
    family: str
    paper: str
    year: int
    arxiv: str
    idea: str
    input_size: int
    params: int | None  # reference parameter count (see ``reference``); None where none is published
    macs: int | None  # reference multiply-accumulates at ``input_size``; None where none is published
    reference: str  # where ``params`` and ``macs`` come from, e.g. "torchvision resnet50"
    # keyword arguments that build the reference model (tools/record_reference.py uses them)
    reference_kwargs: dict = field(default_factory=dict)
    params_tolerance: float = 0.0  # relative; non-zero only for figures a paper rounds
    macs_tolerance: float = 0.01  # relative: 1% of a reference library's count, 2% of a paper's
    layouts: tuple[str, ...] = ()  # foreign weight layouts (key maps in vertebra.weights) it loads
    notes: str = ""  # where this model departs from the paper or the reference, and why

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Entry:
    builder: Callable[..., Backbone]
    card: ModelCard
    accepted: frozenset[str] = field(default_factory=frozenset)


_MODELS: dict[str, _Entry] = {}
# create_model's own arguments: never forwarded blindly, so they are not "family" keywords.
_CONTRACT_ARGS = frozenset({"num_classes", "in_chans", "small_input"})


def register(name: str, **card) -> Callable:
    """Decorator: register ``builder(**kwargs) -> Backbone`` under ``name`` with its model card."""

    def decorator(builder: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        parameters = inspect.signature(builder).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            raise TypeError(f"builder of {name!r} takes **kwargs: list its keywords so typos are caught")
        _MODELS[name] = _Entry(builder, ModelCard(name=name, **card), frozenset(parameters))
        return builder

    return decorator


_ALIASES: dict[str, str] = {}  # another library's name -> the vertebra model it builds


def register_alias(alias: str, name: str) -> None:
    """Let ``alias`` (torchvision's or timm's name) build the registered model ``name``; a
    registered name is never shadowed, so an alias cannot hide a different architecture."""
    if alias in _MODELS:
        raise ValueError(f"{alias!r} is a registered model; an alias may not shadow it")
    if name not in _MODELS:
        raise ValueError(f"alias {alias!r} points to {name!r}, which is not registered")
    if _ALIASES.setdefault(alias, name) != name:
        raise ValueError(f"alias {alias!r} already resolves to {_ALIASES[alias]!r}, not {name!r}")


def aliases_of(name: str) -> list[str]:
    """The other libraries' names that build the registered model ``name``."""
    return sorted(alias for alias, target in _ALIASES.items() if target == name)


def resolve(name: str) -> str:
    """The registered name that ``name`` (a registered name or an alias) builds."""
    return _entry(name).card.name


def _entry(name) -> _Entry:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str, got {type(name).__name__} {name!r}")
    name = _ALIASES.get(name, name)
    if name not in _MODELS:
        close = difflib.get_close_matches(name, [*_MODELS, *_ALIASES], n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see vertebra.list_models()"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def list_models(pattern: str = "*", include_aliases: bool = False) -> list[str]:
    """Registered model names matching an fnmatch pattern (``"resne?t*"``), sorted; with
    ``include_aliases``, also torchvision's and timm's names that resolve to one (``resolve``)."""
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be a str, got {type(pattern).__name__}")
    names = [*_MODELS, *_ALIASES] if include_aliases else _MODELS
    return sorted(name for name in names if fnmatch.fnmatchcase(name, pattern))


def builder_defaults(name: str) -> dict:
    """The keyword arguments ``name`` is built with unless told otherwise (``mobilenet_v2_050``:
    ``width_mult=0.5``): what a scaled variant of it multiplies."""
    parameters = inspect.signature(_entry(name).builder).parameters
    return {key: p.default for key, p in parameters.items() if p.default is not inspect.Parameter.empty}


def model_info(name: str) -> ModelCard:
    """The model card of a registered model (an alias gives its model's card)."""
    return _entry(name).card


def create_model(name: str, *, num_classes: int | None = None, in_chans: int = 3,
                 pretrained: str | Path | None = None, features_only: bool = False,
                 out_indices: Sequence[int] | None = None, small_input: bool | None = None,
                 **family_kwargs) -> Backbone:
    """Build a registered model.

    ``pretrained`` is the path of a weights file: vertebra's own safetensors, or a
    torchvision/timm checkpoint (.pth/.pt/.safetensors) that a key map converts; a different
    ``num_classes`` leaves the classifier freshly initialised and a different ``in_chans``
    adapts the first convolution.  ``num_classes=None`` and ``small_input=None`` take the
    model's defaults: 1000 classes and the ImageNet stem, except for the CIFAR networks
    (10 classes, the 32x32 stem).  ``features_only=True`` returns a model whose forward
    gives the outputs of the stages in ``out_indices`` (all by default) as a list.
    """
    entry = _entry(name)
    name = entry.card.name  # an alias builds its model, under the model's own name
    unknown = sorted(set(family_kwargs) - (entry.accepted - _CONTRACT_ARGS))
    if unknown:
        accepted = sorted(entry.accepted - _CONTRACT_ARGS)
        raise TypeError(f"{name} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"it accepts num_classes, in_chans, small_input, pretrained, features_only, "
                        f"out_indices and {', '.join(accepted)}")
    if not isinstance(features_only, bool):
        raise TypeError(f"features_only must be a bool, got {type(features_only).__name__}")
    if out_indices is not None and not features_only:
        raise ValueError("out_indices applies only with features_only=True")
    kwargs = dict(in_chans=in_chans, **family_kwargs)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if small_input is not None:
        kwargs["small_input"] = small_input
    model = entry.builder(**kwargs)
    model.model_name = name
    model.weight_layouts = entry.card.layouts  # the foreign layouts vertebra.weights may read into it
    model.model_kwargs = {**kwargs, "num_classes": model.num_classes, "small_input": model.small_input}
    if pretrained is not None:
        from .weights import load_weights

        load_weights(model, pretrained, adapt=True)
    if features_only:
        model.as_feature_extractor(out_indices)
    return model
