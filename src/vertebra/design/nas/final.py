"""The search's last stage (Zoph & Le, Sec. 4.1): grid-search the best architecture's training
settings, then train it fully with the best combination.

The paper's grid is learning rate, weight decay, batch-norm epsilon and the epoch at which the
learning rate decays (``Grid.papers()``; the paper gives the axes, not the values).  The decay point
is a share of training here, so a point found at the search's short proxy (2 epochs by default)
means the same in the long final run.  The default grid is learning rate, weight decay and batch
size.  Points are ranked on the proxy's validation accuracy, as the paper's search ranks children:
a short proxy favours settings that learn fast, which the final run does not always confirm.

Grid points are ordinary trials (same executor, their own journal, resumable); the final run goes
through vertebra.train and ends as a vertebra weights file beside the genotype it was built from.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rich.console import Console

from ...durable import FolderLock, check_output_folder, read_json, write_json
from ...weights import save_weights
from .executors import run_grid
from .objectives import AccuracyObjective, scored
from .space import model_args
from .trial import TrialSettings, trial_spec


@dataclass(frozen=True)
class Grid:
    lr: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    weight_decay: tuple[float, ...] = (1e-4, 5e-2)
    batch_size: tuple[int, ...] = (32, 64)
    bn_eps: tuple[float | None, ...] = (None,)  # None: the model's own (1e-5)
    lr_decay_at: tuple[float | None, ...] = (None,)  # None: cosine; else a 10x step at this share of training

    @classmethod
    def papers(cls) -> "Grid":
        """The NAS paper's four axes: learning rate, weight decay, batch-norm epsilon, decay point."""
        return cls(lr=(1e-3, 3e-3, 1e-2), weight_decay=(1e-4, 5e-2), batch_size=(32,), bn_eps=(1e-5, 1e-3),
                   lr_decay_at=(0.5, 0.75))

    def points(self) -> list[dict]:
        axes = {name: values for name, values in asdict(self).items() if values != (None,)}
        return [dict(zip(axes, combination)) for combination in itertools.product(*axes.values())]


@dataclass
class FinalResult:
    grid: list[dict]
    best_point: dict
    test_accuracy: float | None
    val_accuracy: float
    weights: Path
    genotype: Path


def grid_search(genotype: dict, grid: Grid, settings: TrialSettings, out: Path, executor: str, workers: int,
                ray_address: str | None, seed: int) -> list[dict]:
    """Every grid point trained as a trial; finished points (in ``out/journal.jsonl``) are not re-run.
    ``out/grid.json`` records what the points are; a different grid, genotype or setting is refused."""
    identity = {"genotype": genotype, "points": grid.points(), "settings": settings.__dict__, "seed": seed}
    specs = [trial_spec(index, genotype, settings, out / f"{index:03d}", seed, **point)
             for index, point in enumerate(grid.points())]
    return run_grid(out, identity, specs, executor, workers, ray_address)


def train_final(genotype: dict, point: dict, settings: TrialSettings, epochs: int, out: Path, seed: int,
                console: Console) -> FinalResult:
    """Train ``genotype`` with the grid's best point for ``epochs``; save weights and genotype."""
    from ...train.loop import TrainConfig, train

    model, model_kwargs = model_args(genotype, settings.input_pool)
    config = TrainConfig(model=model, data=settings.data, val=settings.val, epochs=epochs,
                         optimizer=settings.optimizer, warmup_epochs=min(1.0, 0.1 * epochs), seed=seed,
                         out=out / "train", resume=(out / "train").exists(), input_size=settings.input_size,
                         limit=settings.limit, model_kwargs={**model_kwargs, **settings.extra_model_kwargs}, **point)
    result = train(config, console=console)  # resumes only the same run (train's identity check)
    genotype_path = write_json(out / "genotype.json", genotype)
    weights = save_weights(result.model, out / f"{model}.safetensors",
                           metadata={"val_accuracy": result.best_val_accuracy, "test_accuracy": result.test_accuracy,
                                     "grid_point": point, "epochs": epochs})
    return FinalResult([], point, result.test_accuracy, result.best_val_accuracy, weights, genotype_path)


def final_stage(search_out: Path, *, grid: Grid = Grid(), settings: TrialSettings | None = None,
                final_epochs: int = 30, executor: str = "local", workers: int = 2, ray_address: str | None = None,
                seed: int = 0, console: Console | None = None) -> FinalResult:
    """Grid search then full training of the best genotype of the search in ``search_out``
    (``settings`` default to the search's own trial settings)."""
    console = console or Console()
    genotype_file = Path(search_out) / "best_genotype.json"
    if not genotype_file.exists():
        raise ValueError(f"{search_out} has no best_genotype.json: run the search first")
    genotype = read_json(genotype_file, "the search's best genotype")
    identity = read_json(Path(search_out) / "state.json", "the search's state")["identity"]
    searched = TrialSettings(**identity["trial"])
    # the grid trains one architecture, so only accuracy tells its points apart
    objective = AccuracyObjective(epochs=identity["objective"].get("epochs", 5))
    settings = settings or searched  # by default, children train in the grid as they did in the search
    if settings.input_pool is None:
        settings = replace(settings, input_pool=searched.input_pool)
    out = check_output_folder(Path(search_out) / "final")
    with FolderLock(out):
        axes = " x ".join(k for k in grid.points()[0])
        console.print(f"grid search over {len(grid.points())} points ({axes})")
        records = scored(grid_search(genotype, grid, settings, out / "grid", executor, workers, ray_address, seed),
                         objective)
        best = max(records, key=lambda r: r["reward"])
        point = {key: best[key] for key in grid.points()[0]}
        console.print(f"best grid point {point}: validation accuracy {best['val_accuracy']:.2%}")
        result = train_final(genotype, point, settings, final_epochs, out, seed, console)
    result.grid = records
    return result
