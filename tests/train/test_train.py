"""The training engine on the embedded digits: resume after SIGKILL, determinism, output folders,
evaluate and predict.  A small, fast model keeps these at a few seconds each."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from vertebra import create_model
from vertebra.cli import build_parser, main
from vertebra.train import TrainConfig, train

MODEL = "mobilenet_v2_035"
QUICK = dict(epochs=2, batch_size=32, limit=256, seed=3, optimizer="adamw")


def final_weights(folder: Path) -> dict[str, torch.Tensor]:
    record = json.loads((folder / "checkpoint.json").read_text())
    return load_file(folder / record["weights"])


def untimed(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if not k.endswith("_s")} for epoch in history]  # times in seconds, /s


def run_cli(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vertebra", "train", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


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


def committed(folder: Path) -> int:
    """The last epoch the run in ``folder`` has committed (0: none)."""
    manifest = folder / "checkpoint.json"
    return json.loads(manifest.read_text())["epoch"] if manifest.exists() else 0


def test_sigkills_at_random_moments_then_resume_end_with_the_same_weights(tmp_path):
    """Killed three times at random moments (before the first epoch, mid-epoch or mid-write), the
    run resumed each time ends bitwise equal to an uninterrupted one."""
    args = ["nas_child", "--epochs", "3", "--batch-size", "32", "--limit", "256", "--seed", "3", "--optimizer", "adamw"]
    start = time.time()
    reference = run_cli(*args, "--out", str(tmp_path / "whole"))
    moments = random.Random(0)
    killed, kills = tmp_path / "killed", []
    for attempt in range(3):
        process = run_cli(*args, "--out", str(killed), *(["--resume"] if attempt else []))
        while process.poll() is None and committed(killed) < attempt:  # kill k lands after epoch k
            time.sleep(0.02)
        time.sleep(moments.uniform(0.0, 1.5))  # somewhere in the next epoch, or its checkpoint's writes
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            kills.append(committed(killed))
        process.wait()
    assert len(kills) >= 2, "the run ended before it could be killed"
    resumed = run_cli(*args, "--out", str(killed), "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    whole, again = final_weights(tmp_path / "whole"), final_weights(killed)
    assert json.loads((killed / "checkpoint.json").read_text())["epoch"] == 3
    assert all(torch.equal(whole[k], again[k]) for k in whole), f"killed after epochs {kills}"
    assert time.time() - start < 300
    print(f"killed after epochs {kills}")


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
                            (dict(lr=-1.0), "lr must be positive"), (dict(bn_momentum=0.0), "bn_momentum must be in")):
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


def test_layout_and_bf16_left_to_measurement_follow_it_are_cached_and_a_resume_keeps_them(tmp_path, monkeypatch,
                                                                                           tiny_run):
    from vertebra.train import precision

    monkeypatch.setenv("VERTEBRA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)
    # bf16 3x as fast, as ResNet-18 measured on AMX; NCHW a little (not 1.1x) faster
    timings = {"fp32_channels_last_s": 0.3, "bf16_channels_last_s": 0.1, "fp32_nchw_s": 0.29, "bf16_nchw_s": 0.095}
    calls = []
    monkeypatch.setattr(precision, "measure", lambda *args: calls.append(args) or dict(timings))
    first = {**tiny_run, "epochs": 1, "bf16": None, "channels_last": None}

    def chosen(folder):
        config = json.loads((tmp_path / folder / "checkpoint.json").read_text())["config"]
        return config["channels_last"], config["bf16"]

    parse = build_parser().parse_args  # vertebra train leaves both to measurement unless told
    assert [parse(["train", MODEL, *flag]).bf16 for flag in ([], ["--bf16"], ["--no-bf16"])] == [None, True, False]
    assert [parse(["train", MODEL, *flag]).channels_last for flag in ([], ["--channels-last"],
                                                                      ["--no-channels-last"])] == [None, True, False]
    train(TrainConfig(**first, out=tmp_path / "a"))
    assert chosen("a") == (True, True) and len(calls) == 1
    assert calls[0][-1] == [(True, False), (True, True), (False, False), (False, True)]  # every variant, once
    # the machine's timings are cached: a second run does not measure again
    train(TrainConfig(**first, out=tmp_path / "b"))
    assert len(calls) == 1 and chosen("b") == (True, True)
    # a resume keeps the run's choice, whatever a measurement would say now
    timings.update(bf16_channels_last_s=0.6, bf16_nchw_s=0.6, fp32_nchw_s=0.1)
    (tmp_path / "cache" / "precision.json").unlink()
    train(TrainConfig(**{**first, "epochs": 2}, out=tmp_path / "a", resume=True))
    record = json.loads((tmp_path / "a" / "checkpoint.json").read_text())
    assert record["epoch"] == 2 and chosen("a") == (True, True) and len(calls) == 1
    # a run that chose fp32 by hand resumes in fp32 when the command leaves the choice open
    train(TrainConfig(**{**first, "bf16": False}, out=tmp_path / "d"))
    assert chosen("d") == (False, False) and len(calls) == 2  # NCHW now measures 3x as fast
    timings.update(bf16_channels_last_s=0.1)
    train(TrainConfig(**{**first, "epochs": 2}, out=tmp_path / "d", resume=True))
    assert chosen("d") == (False, False)
    # a layout given by hand stands; bf16 is still measured (from the cache)
    train(TrainConfig(**{**first, "channels_last": True, "bf16": None}, out=tmp_path / "c"))
    assert chosen("c") == (True, False) and len(calls) == 2  # 0.1 x 1.2 > the 0.1 of fp32 NCHW
    # a CPU without bf16 and a layout given trains in fp32 without measuring
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    found = precision.decide_step(None, {}, 16, 3, 32, 10, channels_last=True)
    assert found == {"channels_last": True, "bf16": False, "reason": "this CPU has no bf16 instructions"}
    assert len(calls) == 2
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: True)  # a step that fails to run trains in fp32
    monkeypatch.setattr(precision, "measure", lambda *args: (_ for _ in ()).throw(RuntimeError("no bf16 kernel\n..")))
    found = precision.decide_step(None, {"model": "other"}, 16, 3, 32, 10)
    assert found == {"channels_last": True, "bf16": False, "reason": "timing the step failed: no bf16 kernel"}
    assert precision.describe(found) == "fp32, channels_last (timing the step failed: no bf16 kernel)"


def test_two_runs_started_together_measure_once_and_choose_alike(tmp_path, monkeypatch):
    import threading

    from vertebra.train import precision

    monkeypatch.setenv("VERTEBRA_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: False)
    calls = []

    def measure(*args):  # each measurement would see a different, noisy machine
        calls.append(args)
        time.sleep(0.2)
        return {"fp32_channels_last_s": 0.1 * len(calls), "fp32_nchw_s": 0.15}

    monkeypatch.setattr(precision, "measure", measure)
    found = []
    runs = [threading.Thread(target=lambda: found.append(precision.decide_step(None, {}, 16, 3, 32, 10)))
            for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert len(calls) == 1 and found[0]["channels_last"] == found[1]["channels_last"] is True
    assert sorted(f["cached"] for f in found) == [False, True]


def test_the_fastest_variant_wins_by_its_margin():
    from vertebra.train.precision import choose

    def times(cl32, cl16, nchw32, nchw16):
        return {"fp32_channels_last_s": cl32, "bf16_channels_last_s": cl16, "fp32_nchw_s": nchw32,
                "bf16_nchw_s": nchw16}

    both, no_bf16 = ((True, False), (False, True)), ((True, False), (False,))
    assert choose(times(1.0, 0.9, 0.95, 0.9), *both) == {"channels_last": True, "bf16": False}  # ties keep the default
    assert choose(times(1.0, 0.9, 0.9, 0.9), *both) == {"channels_last": False, "bf16": False}  # NCHW 1.11x
    assert choose(times(1.0, 0.8, 0.9, 0.9), *both) == {"channels_last": False, "bf16": False}  # bf16 1.125x: not
    assert choose(times(1.0, 0.7, 0.9, 0.9), *both) == {"channels_last": True, "bf16": True}  # 1.29x the best fp32
    assert choose(times(1.0, 0.5, 1.0, 0.3), (True,), (False, True)) == {"channels_last": True, "bf16": True}
    assert choose(times(1.0, 0.1, 0.5, 0.1), *no_bf16) == {"channels_last": False, "bf16": False}


def test_the_step_measurement_times_every_variant_and_leaves_the_model_and_random_numbers_alone():
    from vertebra.train.precision import describe, measure

    model = create_model(MODEL, num_classes=10, small_input=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = torch.get_rng_state()
    found = measure(model, 8, 3, 32, 10, [(True, False), (False, True)])
    assert set(found) == {"fp32_channels_last_s", "bf16_nchw_s"} and all(t > 0 for t in found.values())
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    line = describe({"times": found, "channels_last": True, "bf16": False})
    assert line.startswith("fp32, channels_last: a step took fp32 channels_last ") and "measured now" in line


def test_predict_reads_each_weights_with_its_own_preprocessing(tmp_path, capsys, tiny_run):
    """A run on an image folder records the preprocessing it evaluated with; a torchvision checkpoint
    (the parity fixture's synthetic weights) predicts with torchvision's published one."""
    import vertebra
    from vertebra.data_config import published
    from vertebra.testing import synthetic_state_dict
    from vertebra.train.predict import load_trained

    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (12, 10), (30 * i, 0, 0 if label == "a" else 200)).save(folder / label / f"{i}.png")
    train(TrainConfig(out=tmp_path / "run", data=str(folder), input_size=32, **{**tiny_run, "epochs": 1, "batch_size": 8}))
    weights = next((tmp_path / "run").glob("best-e*[0-9].safetensors"))
    trained, metadata = load_trained("nas_child", weights)
    assert metadata["data_config"]["input_size"] == 32 and metadata["data_config"]["resize_size"] == 37
    assert vertebra.data_config(trained).resize_size == 37  # loading the weights brings their preprocessing
    fixture = json.loads((Path(__file__).parents[1] / "fixtures" / "reference" / "resnet18.json").read_text())
    torch.save(synthetic_state_dict(fixture["manifest"], 0), tmp_path / "tv.pth")
    model, metadata = load_trained("resnet18", tmp_path / "tv.pth")
    assert model.num_classes == 1000 and metadata["data_config"] == published("resnet18").to_dict()
    capsys.readouterr()
    assert main(["predict", "resnet18", "--weights", str(tmp_path / "tv.pth"), str(folder / "a" / "0.png"),
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["top"]) == 5
    (folder / "b" / "broken.png").write_bytes((folder / "b" / "0.png").read_bytes()[:20])  # truncated
    assert main(["evaluate", "nas_child", "--weights", str(weights), "--data", str(folder), "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out)["count"] == 16 and "broken.png" in json.loads(captured.out)["unreadable"][0]
    assert "skipped" in captured.err and "broken.png" in captured.err


def test_friendlier_training_settings(tmp_path, tiny_run):
    from rich.console import Console

    with pytest.raises(ValueError, match="32 training images give no full batch of 64: pass --batch-size 32"):
        train(TrainConfig(out=tmp_path / "a", **{**tiny_run, "batch_size": 64}))
    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (12, 10), (30 * i, 0, 0)).save(folder / label / f"{i}.png")
    console = Console(record=True, width=200)
    train(TrainConfig(out=tmp_path / "b", data=str(folder), input_size=96, small_input=True,
                      **{**tiny_run, "epochs": 1, "batch_size": 8}), console)
    assert "warning: --small-input at 96x96 costs" in console.export_text()


def test_a_checkpoint_without_auxiliary_heads_says_what_to_build(tmp_path):
    import vertebra

    vertebra.save_weights(vertebra.create_model("googlenet_tv", aux_logits=False, num_classes=3), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="no auxiliary classifiers: build the model with aux_logits=False"):
        vertebra.load_weights(vertebra.create_model("googlenet_tv", num_classes=3), tmp_path / "w.safetensors")


def test_a_compiled_step_resumes_to_the_same_weights_and_says_when_it_cannot_compile(tmp_path, tiny_run, monkeypatch):
    """--compile (Inductor): a run stopped after epoch 1 and resumed ends bitwise equal to the
    uninterrupted compiled run, and close to the eager one (the kernels differ, the sums do not);
    the first step's compile time is kept out of the images/s.  Without a C++ compiler it trains
    eagerly and says so in one line."""
    from rich.console import Console

    from vertebra.train import loop

    torch._dynamo.reset()  # each run below starts as a new process would
    whole = train(TrainConfig(out=tmp_path / "whole", compile=True, **tiny_run))
    epoch_of = loop._train_epoch

    def dies_in_epoch_2(*args, **kwargs):
        if args[8] == 2:  # the epoch: the process dies after committing epoch 1
            raise KeyboardInterrupt
        return epoch_of(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=tmp_path / "resumed", compile=True, **tiny_run))
    monkeypatch.setattr(loop, "_train_epoch", epoch_of)
    torch._dynamo.reset()  # a new process compiles afresh
    train(TrainConfig(out=tmp_path / "resumed", compile=True, resume=True, **tiny_run))
    eager = train(TrainConfig(out=tmp_path / "eager", **tiny_run))
    a, b, c = (final_weights(tmp_path / name) for name in ("whole", "resumed", "eager"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.allclose(a[k], c[k], rtol=1e-3, atol=1e-4) for k in a)
    assert whole.history[0]["first_step_s"] > 0 and whole.history[1]["first_step_s"] is None
    assert abs(whole.history[-1]["train_loss"] - eager.history[-1]["train_loss"]) < 1e-3
    monkeypatch.setattr("vertebra.train.loop.shutil.which", lambda name: None)
    console = Console(record=True, width=200)
    train(TrainConfig(out=tmp_path / "no-compiler", compile=True, **{**tiny_run, "epochs": 1}), console)
    assert "--compile: no C++ compiler (g++) found for Inductor; training eagerly instead" in console.export_text()
