"""The training engine on the embedded digits: resume after SIGKILL, determinism, output folders,
evaluate and predict.  A small, fast model keeps these at a few seconds each."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vertebra.cli import main
from vertebra.train import TrainConfig, train

MODEL = "mobilenet_v2_035"
QUICK = dict(epochs=2, batch_size=32, limit=256, seed=3, optimizer="adamw")


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    record = json.loads((folder / "checkpoint.json").read_text())
    return load_file(folder / record["weights"])


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "images_per_s"} for epoch in history]


def run_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vertebra", "train", MODEL, *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def cli_args(out: Path, epochs: int) -> list[str]:
    return ["--out", str(out), "--epochs", str(epochs), "--batch-size", "32", "--limit", "256", "--seed", "3",
            "--optimizer", "adamw"]


def test_same_seed_same_result_and_the_run_is_written(tmp_path):
    first = train(TrainConfig(MODEL, out=tmp_path / "a", **QUICK))
    second = train(TrainConfig(MODEL, out=tmp_path / "b", **QUICK))
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert untimed(first.history) == untimed(second.history) and first.test_accuracy == second.test_accuracy
    assert first.history[-1]["train_loss"] < first.history[0]["train_loss"]
    names = {p.name for p in (tmp_path / "a").iterdir()}
    assert {"checkpoint.json", "run.json", "curves.png"} <= names
    assert any(n.startswith("last-e0002") and n.endswith(".state.safetensors") for n in names)
    record = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert record["model"] == MODEL and record["epoch"] == 2 and len(record["history"]) == 2
    other = train(TrainConfig(MODEL, out=tmp_path / "c", **{**QUICK, "seed": 4}))
    assert untimed(other.history) != untimed(first.history)


def test_an_existing_run_is_refused_without_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="already holds a run; pass --resume"):
        train(TrainConfig(MODEL, out=tmp_path / "run", **QUICK))
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_resume_after_sigkill_mid_epoch_ends_with_the_same_weights(tmp_path):
    reference = run_cli(*cli_args(tmp_path / "whole", 3))
    killed = run_cli(*cli_args(tmp_path / "killed", 3))
    marker = tmp_path / "killed" / "checkpoint.json"
    deadline = time.time() + 240
    while not marker.exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    assert killed.poll() is None, f"the run ended before it could be killed: {killed.stderr.read()}"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert json.loads(marker.read_text())["epoch"] == 1
    resumed = run_cli(*cli_args(tmp_path / "killed", 3), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    whole, again = final_weights(tmp_path / "whole"), final_weights(tmp_path / "killed")
    assert json.loads(marker.read_text())["epoch"] == 3
    assert all(torch.equal(whole[k], again[k]) for k in whole)


def test_evaluate_and_predict_a_trained_model(tmp_path, capsys):
    train(TrainConfig(MODEL, out=tmp_path / "run", **QUICK))
    capsys.readouterr()  # the training run's own report
    weights = next((tmp_path / "run").glob("best-e*[0-9].safetensors"))
    assert main(["evaluate", MODEL, "--weights", str(weights), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 270 and 0 <= result["accuracy"] <= 1 and len(result["per_class"]) == 10
    assert Path(result["confusion_png"]).exists()
    digit = tmp_path / "digit.png"
    Image.new("L", (8, 8), 0).save(digit)
    assert main(["predict", MODEL, "--weights", str(weights), str(digit), "--top-k", "3", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
    assert main(["predict", "resnet18", "--weights", str(weights), str(digit)]) == 2


def test_bad_training_settings_are_refused_before_any_work(tmp_path):
    for kwargs, message in ((dict(optimizer="rmsprop"), "optimizer"), (dict(epochs=0), "epochs"),
                            (dict(lr=-1.0), "lr must be positive")):
        with pytest.raises(ValueError, match=message):
            train(TrainConfig(MODEL, out=tmp_path / "x", **{**QUICK, **kwargs}))
    with pytest.raises(ValueError, match="unknown model"):
        train(TrainConfig("resnet5", out=tmp_path / "y"))
    assert not (tmp_path / "x").exists()


def test_bf16_autocast_trains_or_says_why_not(tmp_path, monkeypatch):
    from vertebra.hardware import cpu_supports_bf16

    config = TrainConfig(MODEL, out=tmp_path / "bf16", bf16=True, **{**QUICK, "epochs": 1, "limit": 64})
    if cpu_supports_bf16():
        result = train(config)
        assert torch.isfinite(torch.tensor(result.history[-1]["train_loss"]))
    monkeypatch.setattr("vertebra.train.loop.cpu_supports_bf16", lambda: False)
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
        train(TrainConfig(MODEL, out=tmp_path / "other", bf16=True, **QUICK))
