"""The crash-point harness (ALICE, OSDI 2014; SQLite's crash tests): a run is crashed at every
file-system operation of its checkpoints and journals in turn, then resumed, and must lose no
finished epoch or trial and end exactly as an uninterrupted run.

In-process crashes (vertebra.durable.crash_at) let nothing reach the disk after the crash point,
as a kill would; real SIGKILLs are in tests/train/test_train.py and tests/design/test_nas_search.py.
"""
import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console
from safetensors.torch import load_file

from vertebra import durable
from vertebra.design.nas import EvolutionSettings, SearchConfig, SetSettings, TrialSettings, final_stage, search
from vertebra.design.nas.final import Grid
from vertebra.train import TrainConfig, train

from conftest import TINY_GENOTYPE as GENOTYPE
QUIET = Console(quiet=True)


@pytest.fixture(autouse=True)
def quick_pictures(monkeypatch):
    """The pictures are written through the same atomic steps, without drawing them: the crash points
    are in the file system, and matplotlib would take most of the harness's time."""
    def picture(*args):
        path = next(a for a in args if isinstance(a, Path))
        return durable.write_file(path, lambda temporary: temporary.write_bytes(b"\x89PNG"))

    monkeypatch.setattr("vertebra.train.loop.plot_history", picture)
    monkeypatch.setattr("vertebra.design.nas.plots.plot_rewards", picture)


def run_to_the_end(run, out):
    """Crash-free: the operations it makes, in order."""
    durable.crash_at(None)
    result = run(out, resume=False)
    return result, durable.operations()


def crash_then_resume(run, out, n):
    durable.crash_at(n)
    with pytest.raises(durable.SimulatedCrash):
        run(out, resume=False)
    durable.crash_at(None)
    return run(out, resume=True)


def weights_of(folder):
    manifest = json.loads((folder / "checkpoint.json").read_text())
    return manifest, load_file(folder / manifest["weights"]), load_file(folder / manifest["best"]["weights"])


def test_training_crashed_at_every_operation_resumes_to_the_uninterrupted_result(tmp_path, tiny_run):
    def run(out, resume):
        return train(TrainConfig(out=out, resume=resume, **tiny_run), QUIET)

    reference, operations = run_to_the_end(run, tmp_path / "whole")
    assert "unlink best-e0001.safetensors" in operations  # the run improves, so every kind of step is crossed
    whole_manifest, whole_last, whole_best = weights_of(tmp_path / "whole")
    for n in range(1, len(operations) + 1):
        out = tmp_path / f"crash{n:02d}"
        result = crash_then_resume(run, out, n)
        manifest, last, best = weights_of(out)
        where = f"crash at {operations[n - 1]} (operation {n})"
        assert manifest["epoch"] == 2 and manifest["best"] == whole_manifest["best"], where
        assert all(torch.equal(last[k], whole_last[k]) and torch.equal(best[k], whole_best[k]) for k in last), where
        assert result.test_accuracy == reference.test_accuracy, where
        leftovers = sorted(p.name for p in out.iterdir())
        assert leftovers == sorted(p.name for p in (tmp_path / "whole").iterdir()), where


def fake_trial(spec):
    """A deterministic stand-in for training: the crash points are in the search, not in the child."""
    digest = hashlib.sha256(json.dumps(spec["genotype"], sort_keys=True).encode()).digest()
    accuracy = 0.5 + digest[0] / 512
    return {"trial": spec["trial"], "genotype": spec["genotype"], "history": [accuracy], "params": 1, "macs": 1,
            "train_s": 0.0, "lr": spec["lr"], "weight_decay": spec["weight_decay"],
            "batch_size": spec["batch_size"], "epochs": spec["epochs"]}


@pytest.fixture
def instant_trials(monkeypatch):
    monkeypatch.setattr("vertebra.design.nas.trial.run_trial", fake_trial)


def search_outcome(out):
    journal = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    state = json.loads((out / "state.json").read_text())
    strategy = load_file(out / state["strategy_file"])
    return sorted((r["trial"], json.dumps(r["genotype"])) for r in journal), state, strategy


@pytest.mark.parametrize("strategy", ["rl", "random", "evolution", "set"])
def test_search_crashed_at_every_operation_resumes_to_the_uninterrupted_result(tmp_path, instant_trials, strategy):
    budget = 3 if strategy == "set" else 4  # a set of two: both, then the better one at twice the epochs

    def run(out, resume):
        return search(SearchConfig(strategy, space="mnas_blocks", trials=budget, children_per_update=2, workers=2,
                                   executor="inline", out=out, resume=resume, seed=5,
                                   evolution=EvolutionSettings(population=2, sample=2), set=SetSettings(2)), QUIET)

    _, operations = run_to_the_end(run, tmp_path / "whole")
    assert any(o.startswith("append journal") for o in operations)
    trials, state, strategy_state = search_outcome(tmp_path / "whole")
    assert [t for t, _ in trials] == list(range(budget)) and state["pending"] == []
    for n in range(1, len(operations) + 1):
        crash_then_resume(run, tmp_path / f"crash{n:02d}", n)
        where = f"crash at {operations[n - 1]} (operation {n})"
        again, again_state, again_strategy = search_outcome(tmp_path / f"crash{n:02d}")
        assert again == trials, where  # every trial once: none lost, none twice
        assert again_state["updates"] == state["updates"], where
        assert all(torch.equal(again_strategy[k], strategy_state[k]) for k in strategy_state), where


def test_a_torn_journal_line_is_trained_again_even_after_its_update(tmp_path, instant_trials):
    def config(resume):
        return SearchConfig("rl", space="mnas_blocks", trials=4, children_per_update=2, executor="inline",
                            out=tmp_path / "s", resume=resume, seed=1)

    search(config(False), QUIET)
    journal = tmp_path / "s" / "journal.jsonl"
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # the last line torn
    lost = json.loads(lines[-1])["trial"]
    search(config(True), QUIET)
    trials = [json.loads(line)["trial"] for line in journal.read_text().splitlines()]
    assert sorted(trials) == [0, 1, 2, 3] and trials[-1] == lost


def test_final_stage_crashed_at_every_own_operation_resumes(tmp_path, instant_trials):
    searched = tmp_path / "search"
    search(SearchConfig("random", space="nas_cnn", trials=2, executor="inline", out=searched, seed=2,
                        trial=TrialSettings(epochs=1, limit=32, batch_size=16)), QUIET)
    (searched / "best_genotype.json").write_text(json.dumps(GENOTYPE))
    settings = TrialSettings(epochs=1, limit=32, batch_size=16, input_pool=4)
    grid = Grid(lr=(1e-3, 3e-3), weight_decay=(1e-4,), batch_size=(16,))

    def run(out, resume):
        copy = out / "search"
        if not resume:
            copy.mkdir(parents=True)
            for name in ("best_genotype.json", "state.json"):
                (copy / name).write_bytes((searched / name).read_bytes())
        return final_stage(copy, grid=grid, settings=settings, final_epochs=1, executor="inline", console=QUIET)

    reference, operations = run_to_the_end(run, tmp_path / "whole")
    inside_training = ("last-", "best-", "checkpoint.json", "curves.png", "run.json")
    own = [n for n, o in enumerate(operations, 1) if not o.split(" ", 1)[1].startswith(inside_training)]
    assert len(own) >= 8  # grid.json, two journal lines, the genotype and the weights
    for n in own:
        result = crash_then_resume(run, tmp_path / f"crash{n:02d}", n)
        where = f"crash at {operations[n - 1]} (operation {n})"
        assert result.best_point == reference.best_point and result.test_accuracy == reference.test_accuracy, where
        a, b = load_file(result.weights), load_file(reference.weights)
        assert all(torch.equal(a[k], b[k]) for k in a), where


def test_final_stage_refuses_a_changed_grid(tmp_path, instant_trials):
    searched = tmp_path / "search"
    search(SearchConfig("random", space="nas_cnn", trials=2, executor="inline", out=searched, seed=2,
                        trial=TrialSettings(epochs=1, limit=32, batch_size=16)), QUIET)
    settings = TrialSettings(epochs=1, limit=32, batch_size=16, input_pool=4)
    grid = Grid(lr=(1e-3,), weight_decay=(1e-4,), batch_size=(16,))
    from vertebra.design.nas.final import grid_search

    genotype = json.loads((searched / "best_genotype.json").read_text())
    grid_search(genotype, grid, settings, tmp_path / "grid", "inline", 1, None, 0)
    with pytest.raises(ValueError, match="differing: points"):
        grid_search(genotype, replace(grid, lr=(3e-3,)), settings, tmp_path / "grid", "inline", 1, None, 0)
