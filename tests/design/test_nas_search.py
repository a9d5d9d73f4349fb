"""Real searches, small: children train on a slice of the digits for one epoch.

One uninterrupted local search is the reference; the Ray executor and a search killed with
SIGKILL and resumed must reproduce its architectures and rewards exactly.
"""
import json
import os
import signal
import subprocess
import sys
import time

from pathlib import Path

import pytest

from vertebra.design.nas import (AccuracyObjective, DepthSchedule, SearchConfig, TrialSettings, final_stage, scored,
                                 search)
from vertebra.design.nas.final import Grid

pytestmark = pytest.mark.xdist_group("nas_search")  # one worker runs the reference search for all
TRIAL = TrialSettings(epochs=1, limit=96, batch_size=32)
SCHEDULE = DepthSchedule(start=2, step=1, interval=2, final=2)
CLI_ARGS = ["--trials", "4", "--workers", "2", "--children-per-update", "2", "--epochs", "1", "--limit", "96",
            "--start-depth", "2", "--depth-step", "1", "--depth-interval", "2", "--depth-final", "2", "--seed", "7"]


def config(out, executor="local", **kw):
    return SearchConfig("rl", trials=4, children_per_update=2, workers=2, executor=executor, out=out, seed=7,
                        schedule=SCHEDULE, trial=TRIAL, **kw)


def children_of(pid):
    """Every descendant of ``pid`` (Linux /proc)."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*/children"):
            kids = [int(k) for k in task.read_text().split()]
            found += kids
            frontier += kids
    return found


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie is dead, awaiting its parent
    except OSError:
        return False


def journal(folder):
    lines = (folder / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "local"
    return search(config(out))


def test_search_writes_journal_state_plot_and_best(reference):
    raw = journal(reference.out)
    assert sorted(r["trial"] for r in raw) == list(range(4))
    assert [r["depth"] for r in sorted(raw, key=lambda r: r["trial"])] == [2, 2, 3, 3]
    assert not any("reward" in r for r in raw)  # the journal holds what was measured; the objective scores it
    records = sorted(scored(raw, AccuracyObjective()), key=lambda r: r["trial"])
    for record in records:
        assert "error" not in record, record.get("traceback")
        assert len(record["genotype"]["layers"]) == record["depth"] and len(record["history"]) == 1
        assert record["reward"] == pytest.approx(record["history"][-1] ** 3)
        assert record["params"] > 0 and record["macs"] > 0 and record["train_s"] > 0
    assert [(r["trial"], r["reward"]) for r in records] == [(r["trial"], r["reward"]) for r in
                                                            sorted(reference.records, key=lambda r: r["trial"])]
    state = json.loads((reference.out / "state.json").read_text())
    assert state["next_trial"] == 4 and state["pending"] == [] and len(state["updates"]) == 2
    assert state["updates"][0]["trials"] == [0, 1] and (reference.out / state["strategy_file"]).exists()
    best = max(records, key=lambda r: r["reward"])
    assert json.loads((reference.out / "best_genotype.json").read_text()) == best["genotype"]
    assert (reference.out / "rewards.png").read_bytes()[:4] == b"\x89PNG"


def test_ray_executor_runs_the_same_search(reference, tmp_path):
    result = search(config(tmp_path / "ray", executor="ray"))
    assert [(r["genotype"], r["reward"]) for r in result.records] == \
        [(r["genotype"], r["reward"]) for r in reference.records]


def test_sigkill_then_resume_loses_and_repeats_nothing(reference, tmp_path):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "vertebra", "search", "rl", "--out", str(out), *CLI_ARGS]
    wide = {**os.environ, "COLUMNS": "1000"}  # rich wraps at the terminal width
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=wide)
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        done = (out / "journal.jsonl").read_text().count("\n") if (out / "journal.jsonl").exists() else 0
        if done >= 1:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the search ended before it could be killed: {process.stderr.read()}"
    workers = children_of(process.pid)
    assert workers, "the search runs its children in worker processes"
    os.kill(process.pid, signal.SIGKILL)  # the search alone, mid-flight: its workers must not outlive it
    process.wait()
    deadline = time.time() + 10
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not [pid for pid in workers if alive(pid)], "worker processes survived the search"
    before = (out / "journal.jsonl").read_text()
    finished_before = [json.loads(line) for line in before.splitlines(keepends=True) if line.endswith("\n")]
    assert 1 <= len(finished_before) < 4

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300, env=wide)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(finished_before)} of 4 trials done" in resumed.stdout
    after = journal(out)
    assert after[:len(finished_before)] == finished_before  # finished trials kept, not re-trained
    assert sorted(r["trial"] for r in after) == list(range(4))  # none lost, none twice
    by_trial = {r["trial"]: r for r in after}
    assert [(by_trial[r["trial"]]["genotype"], by_trial[r["trial"]]["history"]) for r in reference.records] == \
        [(r["genotype"], r["history"]) for r in reference.records]
    assert "best reward" in resumed.stdout and "rewards.png" in resumed.stdout


def test_final_stage_grid_then_training(reference):
    grid = Grid(lr=(1e-3, 3e-3), weight_decay=(1e-4,), batch_size=(32,))
    result = final_stage(reference.out, grid=grid, settings=TRIAL, final_epochs=2, workers=2)
    assert [{k: r[k] for k in ("lr", "weight_decay", "batch_size")} for r in result.grid] == grid.points()
    best = max(result.grid, key=lambda r: r["reward"])
    assert result.best_point == {k: best[k] for k in ("lr", "weight_decay", "batch_size")}
    import vertebra

    genotype = json.loads(result.genotype.read_text())
    assert genotype == json.loads((reference.out / "best_genotype.json").read_text())
    model = vertebra.create_model("nas_child", genotype=result.genotype, num_classes=10, small_input=True,
                                  input_pool=4, pretrained=str(result.weights))
    from vertebra.train import digits
    from vertebra.train.loop import evaluate

    assert evaluate(model.eval(), digits().test)["accuracy"] == pytest.approx(result.test_accuracy)
