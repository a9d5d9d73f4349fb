"""Search spaces as data: a network is a sequence of categorical decisions (Zoph & Le 2017,
arXiv:1611.01578, section 3.1), which the controller emits one token at a time and random search
draws uniformly.  A point of the space is a genotype, plain JSON that ``create_model("nas_child",
genotype=...)`` builds.

- ``nas_cnn``, the paper's: per layer, an anchor point choosing which earlier layers it reads
  (section 3.3), then filter height, filter width, stride and number of filters.
- ``mnas_blocks``, MnasNet's factorized hierarchical space (Tan et al. 2019, arXiv:1807.11626,
  section 4.1): per stage of a fixed seven-stage skeleton, block type, kernel, expansion,
  squeeze-and-excitation and number of layers.
- ``models``, the survey's constructed set: registered models picked by name patterns (the width
  and depth variants of hand-designed families), one decision: which model.

A setting with a single option is fixed, not decided: ``strides=(1,)`` drops the stride decision
(the paper searched both with and without strides), ``skips=False`` drops the anchors.
"""
from __future__ import annotations

import dataclasses
import itertools
import numbers
import random
from dataclasses import dataclass
from typing import ClassVar

from ...models.nas_child import BLOCK_KERNELS, BLOCKS, FILTER_SIZES, MNAS_STAGES, STRIDES
from ...models.nas_child import check_genotype, describe_genotype

SPACES: dict[str, type] = {}  # name -> class; a new space is one class with @register_space


def register_space(cls: type) -> type:
    SPACES[cls.name] = cls
    return cls


@dataclass(frozen=True)
class Choice:
    """One categorical decision: ``name`` ("layer3.filter_height") picks one of ``options``."""

    name: str
    options: tuple


@dataclass(frozen=True)
class Anchor:
    """The paper's anchor point: layer ``layer`` reads any subset of layers 0..layer-1 (its value
    is the sorted list of their indices; an empty list reads the image)."""

    name: str
    layer: int


def _is_option(value, option) -> bool:
    return value == option and isinstance(value, bool) == isinstance(option, bool)


def _options(setting: str, values, allowed: tuple | None = None) -> tuple:
    """A setting's options as a non-empty tuple of distinct ints (or bools, or names) in ``allowed``."""
    if not isinstance(values, (tuple, list)) or not values:
        raise ValueError(f"{setting} must be a non-empty tuple of options, got {values!r}")
    for value in values:
        if allowed is not None and not any(type(value) is type(a) and value == a for a in allowed):
            raise ValueError(f"{setting}: {value!r} is not buildable; the options are {allowed}")
        if allowed is None and (type(value) is not int or value < 1):
            raise ValueError(f"{setting} must hold positive ints, got {value!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{setting} lists an option twice: {tuple(values)}")
    return tuple(values)


def _normalize(space, **settings) -> None:
    """Store checked settings on a frozen dataclass (from its ``__post_init__``)."""
    for name, value in settings.items():
        object.__setattr__(space, name, value)


class SearchSpace:
    """A sequence of decisions over ``depth`` units (layers or stages), and its genotypes.

    A subclass names its units (``unit``: "layer", ``units``: "layers") and gives each unit's
    fields in decision order, ``fields(index)``: (key, options) pairs, where options ``None``
    make the key an ``Anchor`` and a single option fixes the key without a decision.
    """

    name: ClassVar[str]
    grows: ClassVar[bool]  # whether depth is a setting that may grow during the search
    default_depth: ClassVar[int]
    unit: ClassVar[str]
    units: ClassVar[str]

    def fields(self, index: int) -> tuple[tuple[str, tuple | None], ...]:
        raise NotImplementedError

    def check_depth(self, depth: int | None) -> int:
        if depth is None:
            return self.default_depth
        if type(depth) is not int or depth < 1:
            raise ValueError(f"{self.name} depth must be a positive int, got {depth!r}")
        return depth

    def decisions(self, depth: int | None = None) -> list[Choice | Anchor]:
        """The decisions, in the order the controller emits them."""
        decisions = []
        for index in range(self.check_depth(depth)):
            for key, options in self.fields(index):
                name = f"{self.unit}{index}.{key}"
                if options is None:
                    decisions.append(Anchor(name, index))
                elif len(options) > 1:
                    decisions.append(Choice(name, options))
        return decisions

    def genotype(self, values: list, depth: int | None = None) -> dict:
        """The genotype of ``values``, one per decision of ``decisions(depth)``: an option per
        ``Choice``, a list of earlier layers per ``Anchor``."""
        depth = self.check_depth(depth)
        decisions = self.decisions(depth)
        if not isinstance(values, (list, tuple)):
            raise TypeError(f"values must be a list, got {type(values).__name__}")
        if len(values) != len(decisions):
            raise ValueError(f"{self.name} at depth {depth} has {len(decisions)} decisions, "
                             f"got {len(values)} values")
        chosen = {d.name: self.check_value(d, v) for d, v in zip(decisions, values)}
        # a key without a decision has a single option: the setting fixes it
        entries = [{key: chosen[name] if (name := f"{self.unit}{i}.{key}") in chosen else options[0]
                    for key, options in self.fields(i)} for i in range(depth)]
        return check_genotype({"space": self.name, self.units: entries})

    def check_value(self, decision: Choice | Anchor, value):
        if isinstance(decision, Choice):
            for option in decision.options:
                if _is_option(value, option):
                    return option
            raise ValueError(f"{self.name} decision {decision.name} must be one of {decision.options}, "
                             f"got {value!r}")
        layers = list(value) if isinstance(value, (list, tuple)) else [None]
        if (any(isinstance(j, bool) or not isinstance(j, numbers.Integral) for j in layers)
                or len(set(layers)) != len(layers) or not all(0 <= j < decision.layer for j in layers)):
            raise ValueError(f"{self.name} decision {decision.name} must be a list of distinct layers "
                             f"among 0..{decision.layer - 1}, got {value!r}")
        return sorted(int(j) for j in layers)

    def values(self, genotype) -> list:
        """The decisions' values that give ``genotype`` (the inverse of ``genotype()``)."""
        genotype = check_genotype(genotype)
        if genotype["space"] != self.name:
            raise ValueError(f"a {genotype['space']} genotype is not in the {self.name} space")
        entries = genotype[self.units]
        self.check_depth(len(entries))
        flat = {}
        for index, entry in enumerate(entries):
            for key, options in self.fields(index):
                if options is not None and not any(_is_option(entry[key], o) for o in options):
                    allowed = (f"one of {options}" if len(options) > 1
                               else f"{options[0]!r} (not a decision here)")
                    raise ValueError(f"{self.name} space, {self.unit} {index}: {key} must be {allowed}, "
                                     f"got {entry[key]!r}")
                flat[f"{self.unit}{index}.{key}"] = entry[key]
        return [flat[d.name] for d in self.decisions(len(entries))]

    def sample(self, rng: random.Random, depth: int | None = None) -> dict:
        """A uniformly random genotype; an anchor reads each earlier layer with probability 1/2."""
        if not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
        decisions = self.decisions(depth)
        values = [rng.choice(d.options) if isinstance(d, Choice) else
                  [j for j in range(d.layer) if rng.random() < 0.5] for d in decisions]
        return self.genotype(values, depth)

    def describe(self, genotype) -> str:
        self.values(genotype)  # in this space
        return describe_genotype(genotype)

    @classmethod
    def model_args(cls, genotype: dict, input_pool: int | None) -> tuple[str, dict]:
        """The registered model, and its keywords, that ``genotype`` builds."""
        return "nas_child", {"genotype": genotype, "input_pool": input_pool or 1}


@register_space
@dataclass(frozen=True)
class NasCnnSpace(SearchSpace):
    """The paper's CNN space (section 3.3 and appendix): the controller starts at 6 layers and the
    search deepens it (by 2 every 1,600 children in the paper) through ``decisions(depth)``.

    Strides: the paper predicts a stride in [1, 2, 3] per layer (height and width as separate tokens
    in its Figure 4); here a layer has one square stride, from (1, 2) by default, and
    ``strides=(1, 2, 3)`` offers the paper's three."""

    filter_heights: tuple = (1, 3, 5, 7)
    filter_widths: tuple = (1, 3, 5, 7)
    filters: tuple = (24, 36, 48, 64)
    strides: tuple | None = (1, 2)
    skips: bool = True

    name: ClassVar[str] = "nas_cnn"
    grows: ClassVar[bool] = True
    default_depth: ClassVar[int] = 6
    unit: ClassVar[str] = "layer"
    units: ClassVar[str] = "layers"

    def __post_init__(self):
        _normalize(self, filter_heights=_options("filter_heights", self.filter_heights, FILTER_SIZES),
                   filter_widths=_options("filter_widths", self.filter_widths, FILTER_SIZES),
                   filters=_options("filters", self.filters),
                   strides=(1,) if self.strides is None else _options("strides", self.strides, STRIDES))
        if not isinstance(self.skips, bool):
            raise TypeError(f"skips must be a bool, got {type(self.skips).__name__}")

    def fields(self, index: int):
        # without skips, or for layer 0, the inputs are fixed: the previous layer (the image)
        inputs = None if self.skips and index else ([index - 1] if index else [],)
        return (("inputs", inputs), ("filter_height", self.filter_heights),
                ("filter_width", self.filter_widths), ("stride", self.strides), ("filters", self.filters))


@register_space
@dataclass(frozen=True)
class MnasBlocksSpace(SearchSpace):
    """MnasNet's per-stage decisions on its fixed skeleton (stage widths and strides of MnasNet-A1).

    The paper also searches each stage's skip op (pooling, identity or none) and its filter size
    (0.75x, 1x, 1.25x of MobileNet V2's); neither is part of this space: mbconv keeps its identity
    skip where shapes match and the widths are the skeleton's.
    """

    blocks: tuple = ("conv", "sepconv", "mbconv")
    kernels: tuple = (3, 5)
    expansions: tuple = (1, 3, 6)
    se: tuple = (False, True)
    layers: tuple = (1, 2, 3, 4)

    name: ClassVar[str] = "mnas_blocks"
    grows: ClassVar[bool] = False
    default_depth: ClassVar[int] = len(MNAS_STAGES)
    unit: ClassVar[str] = "stage"
    units: ClassVar[str] = "stages"

    def __post_init__(self):
        _normalize(self, blocks=_options("blocks", self.blocks, BLOCKS),
                   kernels=_options("kernels", self.kernels, BLOCK_KERNELS),
                   expansions=_options("expansions", self.expansions),
                   se=_options("se", self.se, (False, True)), layers=_options("layers", self.layers))

    def check_depth(self, depth: int | None) -> int:
        if depth not in (None, self.default_depth) or isinstance(depth, bool):
            raise ValueError(f"mnas_blocks has a fixed depth of {self.default_depth} stages (MnasNet's "
                             f"skeleton), got depth={depth!r}")
        return self.default_depth

    def fields(self, index: int):
        return (("block", self.blocks), ("kernel", self.kernels), ("expansion", self.expansions),
                ("se", self.se), ("layers", self.layers))

    def latency_cover(self):
        """(genotype, shortest) pairs whose blocks are every block this space builds: each
        combination of block, kernel, expansion and SE on every stage, with the fewest layers
        (shortest=True) and with two (the repeated block: same channels, stride 1)."""
        fewest = min(self.layers)
        for combination in itertools.product(self.blocks, self.kernels, self.expansions, self.se):
            stage = dict(zip(("block", "kernel", "expansion", "se"), combination))
            for layers, shortest in ((fewest, True), (2, False)):
                if shortest or max(self.layers) >= 2 > fewest:
                    yield {"space": self.name, "stages": [{**stage, "layers": layers}] * self.default_depth}, shortest


# the hand-designed mobile families whose members a set search compares by default
DEFAULT_CANDIDATES = ("mobilenet_v2_*", "mnasnet*", "shufflenet_v2_*", "mobilenet_v3_*")


@register_space
@dataclass(frozen=True)
class ModelsSpace(SearchSpace):
    """A constructed set of registered models, named by fnmatch patterns (``"mobilenet_v2_*"``): the
    survey's third family searches such a set rather than building networks from decisions.  Each
    member trains as registered, with the 32x32 stem on small inputs; its genotype is its name."""

    candidates: tuple = DEFAULT_CANDIDATES

    name: ClassVar[str] = "models"
    grows: ClassVar[bool] = False
    default_depth: ClassVar[int] = 1
    unit: ClassVar[str] = "model"
    units: ClassVar[str] = "models"

    def __post_init__(self):
        from ...registry import list_models

        if isinstance(self.candidates, str) or not isinstance(self.candidates, (tuple, list)) or not self.candidates:
            raise ValueError(f"candidates must be a non-empty tuple of model name patterns, got {self.candidates!r}")
        names: list[str] = []
        for pattern in self.candidates:
            matched = [n for n in list_models(pattern) if n != "nas_child"]
            if not matched:
                raise ValueError(f"candidate pattern {pattern!r} matches no registered model (vertebra list)")
            names += [n for n in matched if n not in names]
        _normalize(self, candidates=tuple(self.candidates), names=tuple(names))

    def check_depth(self, depth: int | None) -> int:
        if depth is not None and depth != 1:
            raise ValueError(f"the models space picks one model: depth 1, got depth={depth!r}")
        return 1

    def fields(self, index: int):
        return (("model", self.names),)

    def genotype(self, values: list, depth: int | None = None) -> dict:
        self.check_depth(depth)
        decisions = self.decisions()
        if not isinstance(values, (list, tuple)) or len(values) != len(decisions):
            raise ValueError(f"the models space takes {len(decisions)} value (a model name), got {values!r}")
        model = self.check_value(decisions[0], values[0]) if decisions else self.names[0]
        return {"space": self.name, "model": model}

    def values(self, genotype) -> list:
        if not isinstance(genotype, dict) or genotype.get("space") != self.name or \
                genotype.get("model") not in self.names:
            raise ValueError(f"{genotype!r} is not a member of this set ({', '.join(self.names)})")
        return [genotype["model"]] if len(self.names) > 1 else []

    def describe(self, genotype) -> str:
        from ...registry import model_info

        self.values(genotype)  # in this set
        card = model_info(genotype["model"])
        return f"{card.name}: {card.family} ({card.paper}, {card.year})"

    def members(self) -> list[dict]:
        return [{"space": self.name, "model": name} for name in self.names]

    def check_input(self, input_size: int) -> None:
        """Every member must take the trial's images (with the 32x32 stem where they are small)."""
        import torch

        from ...registry import create_model

        with torch.device("meta"):
            too_small = [(name, size) for name in self.names
                         if (size := create_model(name, num_classes=10, small_input=input_size <= 64).min_input_size)
                         > input_size]
        if too_small:
            named = ", ".join(f"{name} needs {size}" for name, size in too_small)
            raise ValueError(f"the candidates must take {input_size}x{input_size} images: {named}; "
                             f"leave them out of --candidates or raise the input size")

    @classmethod
    def model_args(cls, genotype: dict, input_pool: int | None) -> tuple[str, dict]:
        return genotype["model"], dict(genotype.get("kwargs", {}))  # e.g. a scaled family's multipliers


def model_args(genotype: dict, input_pool: int | None = None) -> tuple[str, dict]:
    """The registered model and keywords that build a genotype of any space."""
    space = SPACES.get(genotype.get("space") if isinstance(genotype, dict) else None, SearchSpace)
    return space.model_args(genotype, input_pool)


def get_space(name: str, **settings) -> SearchSpace:
    """The search space ``name`` (one of ``SPACES``) with its settings."""
    if name not in SPACES:
        raise ValueError(f"unknown search space {name!r}; the spaces are {', '.join(SPACES)}")
    accepted = [f.name for f in dataclasses.fields(SPACES[name])]
    unknown = sorted(set(settings) - set(accepted))
    if unknown:
        raise TypeError(f"{name} has no setting(s) {', '.join(unknown)}; it takes {', '.join(accepted)}")
    return SPACES[name](**settings)
