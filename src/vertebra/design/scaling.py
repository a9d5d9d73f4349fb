"""Compound scaling (EfficientNet, Tan & Le 2019, arXiv:1905.11946, section 3.3).

Scale a baseline's depth by alpha^phi, its width by beta^phi and its input resolution by
gamma^phi, with alpha * beta^2 * gamma^2 ~ 2 and alpha, beta, gamma >= 1: a network's FLOPs
grow with depth, width squared and resolution squared, so each step of phi about doubles them.
Step 1 of the method searches alpha, beta, gamma on a grid at phi = 1 (``constrained_grid``,
trained by ``search_coefficients``); step 2 fixes them and scales up with larger phi
(``CompoundScaling.coefficients``; ``scaling_curves`` trains phi = 1..N against scaling one
dimension alone, the paper's Figures 3 and 8).  The coefficients apply to any stage table
(``scale_stages``) or to any registered family that takes ``width_mult`` and ``depth_mult``
(``scale_model``, ``scaled_genotype``).  Trials are the architecture search's: its executors and
its resumable journal.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ..layers.scaling import round_channels, round_repeats
from ..registry import builder_defaults, create_model


@dataclass(frozen=True)
class ScalingCoefficients:
    """How much wider, deeper and at which input resolution a scaled network runs."""

    width: float
    depth: float
    resolution: int

    def __post_init__(self):
        for name in ("width", "depth", "resolution"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class CompoundScaling:
    """The paper's rule: d = alpha^phi, w = beta^phi, r = gamma^phi under alpha * beta^2 * gamma^2 ~ 2.

    The defaults are the values the paper's grid search found for EfficientNet-B0 (alpha=1.2,
    beta=1.1, gamma=1.15, product 1.92).  ``tolerance`` is how far, relatively, the product
    may be from ``target`` (2: FLOPs double per unit of phi).
    """

    alpha: float = 1.2  # depth
    beta: float = 1.1  # width
    gamma: float = 1.15  # resolution
    base_resolution: int = 224
    target: float = 2.0
    tolerance: float = 0.05

    def __post_init__(self):
        for name in ("alpha", "beta", "gamma"):
            if not getattr(self, name) >= 1.0:
                raise ValueError(f"{name} must be >= 1 (scaling never shrinks a dimension), "
                                 f"got {getattr(self, name)}")
        if abs(self.flops_growth - self.target) > self.tolerance * self.target:
            raise ValueError(f"alpha * beta^2 * gamma^2 = {self.flops_growth:.4f} is not within "
                             f"{self.tolerance:.0%} of {self.target}: the rule needs FLOPs to grow by "
                             f"about {self.target}x per unit of phi")

    @property
    def flops_growth(self) -> float:
        """FLOPs factor per unit of phi: FLOPs grow as depth x width^2 x resolution^2."""
        return self.alpha * self.beta ** 2 * self.gamma ** 2

    def coefficients(self, phi: float) -> ScalingCoefficients:
        """Width, depth and resolution for compound coefficient ``phi`` (0 is the baseline)."""
        if isinstance(phi, bool) or not isinstance(phi, (int, float)) or not math.isfinite(phi) or phi < 0:
            raise ValueError(f"phi must be a finite number >= 0, got {phi!r}")
        return ScalingCoefficients(width=self.beta ** phi, depth=self.alpha ** phi,
                                   resolution=round(self.base_resolution * self.gamma ** phi))


def constrained_grid(step: float = 0.05, limit: float = 2.0, target: float = 2.0,
                     tolerance: float = 0.05) -> Iterator[tuple[float, float, float]]:
    """Step 1's search space: every (alpha, beta, gamma) on a ``step`` grid in [1, ``limit``]
    whose alpha * beta^2 * gamma^2 is within ``tolerance`` (relative) of ``target``."""
    if not 0 < step < limit - 1:
        raise ValueError(f"step must be in (0, limit - 1), got step={step}, limit={limit}")
    values = [v for i in range(int(round((limit - 1.0) / step)) + 1) if (v := round(1.0 + i * step, 10)) <= limit]
    for alpha in values:
        for beta in values:
            for gamma in values:
                if abs(alpha * beta ** 2 * gamma ** 2 - target) <= tolerance * target:
                    yield alpha, beta, gamma


def scale_stages(stages: Sequence[tuple[int, int]], coefficients: ScalingCoefficients,
                 divisor: int = 8) -> list[tuple[int, int]]:
    """Each stage's (channels, layers) scaled: channels by width through ``make_divisible``,
    layers by depth rounded up (``vertebra.layers.scaling``, which the model families use too)."""
    return [(round_channels(c, coefficients.width, divisor, layer=f"stage {i}"),
             round_repeats(n, coefficients.depth, layer=f"stage {i}"))
            for i, (c, n) in enumerate(stages)]


def scale_model(name: str, coefficients: ScalingCoefficients, **kwargs):
    """Build registered model ``name`` scaled by ``coefficients``.

    The family must take ``width_mult`` and ``depth_mult``; run the model at
    ``coefficients.resolution`` (families that record it take ``resolution=`` in ``kwargs``).
    """
    return create_model(name, width_mult=coefficients.width, depth_mult=coefficients.depth, **kwargs)


def scaled_genotype(baseline: str, coefficients: ScalingCoefficients) -> dict:
    """The baseline scaled, as a trial builds it: its own width and depth multipliers times the
    coefficients' (``mobilenet_v2_050`` at width 1.2 is width_mult 0.6)."""
    own = builder_defaults(baseline)
    lacking = [key for key in ("width_mult", "depth_mult") if key not in own]
    if lacking:
        raise ValueError(f"{baseline} takes no {' or '.join(lacking)}: compound scaling needs a family with "
                         f"both (efficientnet, mobilenet_v2)")
    return {"space": "models", "model": baseline,
            "kwargs": {"width_mult": round(own["width_mult"] * coefficients.width, 6),
                       "depth_mult": round(own["depth_mult"] * coefficients.depth, 6)}}


def train_points(baseline: str, points: list[tuple[str, ScalingCoefficients]], settings, out: Path,
                 executor: str = "local", workers: int = 2, seed: int = 0) -> list[dict]:
    """Each labelled scaling of the baseline trained as a search trial at its resolution; resumable
    (a finished point is never trained again).  Records carry ``label`` and the coefficients.

    Every point keeps the baseline's stem (the 32x32 stem where the baseline's input is 64 pixels
    or less, however large the scaled input) and trains with the same seed, so that what differs
    between two points is the scaling, not the stem or the draw of the data order."""
    from dataclasses import replace

    from .nas.executors import run_grid
    from .nas.objectives import AccuracyObjective, scored
    from .nas.trial import trial_spec

    if settings.small_input is None:
        settings = replace(settings, small_input=points[0][1].resolution <= 64)
    specs = [trial_spec(i, scaled_genotype(baseline, c), settings, Path(out) / f"{i:03d}", seed,
                        input_size=c.resolution) for i, (_, c) in enumerate(points)]
    identity = {"baseline": baseline, "points": [[label, asdict(c)] for label, c in points],
                "settings": asdict(settings), "seed": seed}
    records = scored(run_grid(out, identity, specs, executor, workers), AccuracyObjective(power=1.0))
    return [{**record, "label": label, **asdict(c)} for record, (label, c) in zip(records, points)]


def search_coefficients(baseline: str, settings, out: Path, *, step: float = 0.1, limit: float = 2.0,
                        base_resolution: int = 32, **run) -> tuple[CompoundScaling, list[dict]]:
    """Step 1: the baseline (first) and every (alpha, beta, gamma) of the constrained grid at phi = 1,
    trained; the most accurate grid point's coefficients, and every record."""
    grid = list(constrained_grid(step, limit))
    points = [("baseline", ScalingCoefficients(1.0, 1.0, base_resolution))]
    points += [(f"alpha {a:g}, beta {b:g}, gamma {g:g}", CompoundScaling(a, b, g, base_resolution).coefficients(1))
               for a, b, g in grid]
    records = train_points(baseline, points, settings, out, **run)
    best = max(range(1, len(records)), key=lambda i: (records[i]["val_accuracy"], -i))
    return CompoundScaling(*grid[best - 1], base_resolution=base_resolution), records


def scaling_curves(baseline: str, scaling: CompoundScaling, settings, out: Path, *, phis: Sequence[int] = (1, 2, 3),
                   **run) -> list[dict]:
    """Step 2 against one dimension alone (the paper's Figures 3 and 8): the baseline, then for each
    phi the compound scaling and each dimension scaled alone to the same growth of FLOPs
    (``target``^phi: depth by it, width and resolution by its square root), trained alike."""
    base, growth = scaling.base_resolution, scaling.target
    points = [("baseline", ScalingCoefficients(1.0, 1.0, base))]
    for phi in phis:
        points += [("width", ScalingCoefficients(growth ** (phi / 2), 1.0, base)),
                   ("depth", ScalingCoefficients(1.0, growth ** phi, base)),
                   ("resolution", ScalingCoefficients(1.0, 1.0, round(base * growth ** (phi / 2)))),
                   ("compound", scaling.coefficients(phi))]
    return train_points(baseline, points, settings, out, **run)
