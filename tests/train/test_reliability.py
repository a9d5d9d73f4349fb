"""Nothing lost, whatever happens: one writer per folder, resume only the same run, files never
destroyed by a resume, damaged state files named, file-system errors as one line, every unreadable
image reported.  (The crash-point harness is tests/test_crash_points.py.)"""
import errno
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from rich.console import Console

import vertebra
from vertebra import durable
from vertebra.cli import main
from vertebra.design.nas import SearchConfig, search
from vertebra.train import TrainConfig, train

QUIET = Console(quiet=True)


def test_a_second_writer_is_refused_naming_the_first(tmp_path, tiny_run):
    for run in (lambda out: train(TrainConfig(out=out, **tiny_run), QUIET),
                lambda out: search(SearchConfig("random", trials=1, executor="inline", out=out), QUIET)):
        out = tmp_path / f"busy{len(list(tmp_path.iterdir()))}"
        out.mkdir()
        with durable.FolderLock(out):  # as another process running in it holds it
            with pytest.raises(ValueError, match=rf"is in use by process {os.getpid()} \(.*\)"):
                run(out)
        assert [p.name for p in out.iterdir()] == [".lock"]


def test_resume_continues_only_the_same_run_and_says_what_differs(tmp_path, tiny_run):
    out = tmp_path / "run"
    train(TrainConfig(out=out, **{**tiny_run, "epochs": 1}), QUIET)
    changes = {"lr": 0.01, "small_input": False, "batch_size": 8, "seed": 1}
    with pytest.raises(ValueError, match="holds another run") as refused:
        train(TrainConfig(out=out, resume=True, **{**tiny_run, **changes}), QUIET)
    for field in changes:
        assert f"{field}: the run has" in str(refused.value)
    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(folder / label / f"{i}.png")
    with pytest.raises(ValueError, match="data: the run has .*'source': 'digits'"):
        train(TrainConfig(out=out, resume=True, data=str(folder), input_size=32, **tiny_run), QUIET)
    extended = train(TrainConfig(out=out, resume=True, **{**tiny_run, "epochs": 2}), QUIET)
    assert [h["epoch"] for h in extended.history] == [1, 2]  # --epochs may grow


def test_a_resume_never_destroys_what_it_did_not_commit(tmp_path, tiny_run):
    out = tmp_path / "old"
    out.mkdir()
    kept = {"last-e0002.safetensors": b"two", "best-e0001.safetensors": b"one", "last.json": b"{}"}
    for name, data in kept.items():
        (out / name).write_bytes(data)
    with pytest.raises(ValueError, match="holds files but no run.json"):
        train(TrainConfig(out=out, resume=True, **tiny_run), QUIET)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".lock"} == kept


def test_damaged_state_files_are_named(tmp_path, tiny_run, monkeypatch):
    out = tmp_path / "run"
    train(TrainConfig(out=out, **{**tiny_run, "epochs": 1}), QUIET)
    (out / "checkpoint.json").write_text('{"epoch": 1, "hist')
    with pytest.raises(ValueError, match=r"checkpoint.json \(the run's checkpoint manifest\) is damaged"):
        train(TrainConfig(out=out, resume=True, **tiny_run), QUIET)
    monkeypatch.setattr("vertebra.design.nas.trial.run_trial", lambda spec: {"trial": spec["trial"], "history": [0.5],
                                                                         "genotype": spec["genotype"]})
    searched = tmp_path / "search"
    search(SearchConfig("random", trials=1, executor="inline", out=searched), QUIET)
    (searched / "state.json").write_text("\n" * 798 + "{\n")
    with pytest.raises(ValueError, match=r"state.json \(the search's state\) is damaged"):
        search(SearchConfig("random", trials=1, executor="inline", out=searched, resume=True), QUIET)


def test_output_paths_are_checked_before_any_work(tmp_path, tiny_run, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        train(TrainConfig(out=a_file, **tiny_run), QUIET)
    with pytest.raises(ValueError, match="cannot write /proc/vertebra-run"):  # a folder no one may create
        train(TrainConfig(out="/proc/vertebra-run", **tiny_run), QUIET)
    assert main(["train", "nas_child", "--out", str(a_file)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0  # one line
    assert main(["export", "resnet18", "--format", "torchscript", "--out", str(tmp_path)]) == 2
    assert "is a folder: name the file to write" in capsys.readouterr().err
    assert main(["export", "resnet18", "--format", "torchscript", "--out", "/proc/self/x.pt"]) == 2
    assert "cannot write /proc/self" in capsys.readouterr().err
    assert a_file.read_text() == "mine"


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path):
    def full(temporary):
        temporary.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(durable.OutputError, match=r"cannot write .*weights.safetensors: No space left on device"):
        durable.write_file(tmp_path / "weights.safetensors", full)
    assert list(tmp_path.iterdir()) == []


def test_bad_settings_of_every_data_source_are_refused(tmp_path, tiny_run):
    for split in (1.5, 0.0):
        with pytest.raises(ValueError, match=f"val_split must be in \\(0, 1\\), got {split}"):
            train(TrainConfig(out=tmp_path / "x", val_split=split, **tiny_run), QUIET)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_float_inputs_get_vertebras_message(dtype):
    model = vertebra.create_model("mobilenet_v1_025", num_classes=3).eval()
    with pytest.raises(ValueError, match=f"expects torch.float32 input like its weights, got {dtype}"):
        model(torch.zeros(1, 3, 32, 32, dtype=dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts for itself, but not float64
        if dtype == torch.float64:
            with pytest.raises(ValueError, match="expects torch.float32 input"):
                model(torch.zeros(1, 3, 32, 32, dtype=dtype))
        else:
            assert model(torch.zeros(1, 3, 32, 32, dtype=dtype)).shape == (1, 3)


def write_images(folder, count, bad):
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((40, 40, 3), 20 * i, np.uint8)).save(folder / label / f"{i}.png")
    for name, data in bad.items():
        (folder / "a" / name).write_bytes(data)


def test_every_unreadable_image_is_reported(tmp_path, tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 40x40 images are "bombs" above 2 x 600 pixels
    bomb = tmp_path / "bomb.png"
    Image.new("RGB", (40, 40)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    write_images(tmp_path / "train", 7, {"cut.png": b"\x89PNG\r\n", "text.jpg": b"not an image"})
    write_images(tmp_path / "val", 2, {"zero.png": b""})
    config = TrainConfig(out=tmp_path / "run", data=str(tmp_path / "train"), val=str(tmp_path / "val"),
                         input_size=32, **{**tiny_run, "epochs": 1, "batch_size": 16, "limit": None})
    result = train(config, Console(width=300))
    printed = capsys.readouterr().out
    for name in ("cut.png", "text.jpg", "zero.png"):
        assert f"skipped unreadable image {tmp_path}" in printed and name in printed
    assert result.history[0]["skipped_images"] + result.history[0]["val_skipped_images"] == 3
    assert "3 unreadable images skipped" in printed
    weights = next((tmp_path / "run").glob("best-e*.safetensors"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)
    good = tmp_path / "train" / "b" / "0.png"
    Image.new("RGB", (20, 20)).save(good)
    assert main(["predict", "nas_child", "--weights", str(weights), str(good), str(bomb), "--json"]) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["image"] == str(good)
    assert "DecompressionBombError" in err and "1 of 2 images unreadable" in err


def test_export_reads_the_class_count_from_foreign_weights(tmp_path, capsys):
    state = vertebra.create_model("mobilenet_v1_025", num_classes=10).state_dict()
    torch.save(state, tmp_path / "sd.pth")
    out = tmp_path / "m.pt"
    assert main(["export", "mobilenet_v1_025", "--format", "torchscript", "--weights", str(tmp_path / "sd.pth"),
                 "--out", str(out), "--input-size", "32"]) == 0, capsys.readouterr().err
    assert torch.jit.load(str(out))(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_the_nas_papers_final_grid_axes_reach_training(tmp_path, tiny_run):
    from vertebra.design.nas import Grid
    from vertebra.train.data import digits
    from vertebra.train.loop import build_model, build_optimizer

    points = Grid.papers().points()
    assert len(points) == 3 * 2 * 2 * 2 and set(points[0]) == {"lr", "weight_decay", "batch_size", "bn_eps",
                                                              "lr_decay_at"}
    assert set(Grid().points()[0]) == {"lr", "weight_decay", "batch_size"}
    config = TrainConfig(**{**tiny_run, "bn_eps": 1e-3, "bn_momentum": 0.25, "lr_decay_at": 0.5, "epochs": 4,
                            "warmup_epochs": 0})
    model = build_model(config, digits())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert norms and {m.eps for m in norms} == {1e-3} and {m.momentum for m in norms} == {0.25}
    defaults = build_model(TrainConfig(**tiny_run), digits())  # the recipe's 0.4, whatever the model's own
    assert {m.momentum for m in defaults.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.4}
    optimizer, scheduler = build_optimizer(config, model, steps_per_epoch=10)
    rates = []
    for _ in range(40):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    assert rates[:20] == [0.003] * 20 and rates[20:] == pytest.approx([0.0003] * 20)  # 10x at half-way
    with pytest.raises(ValueError, match="lr_decay_at must be a share of training"):
        train(TrainConfig(out=tmp_path / "x", **{**tiny_run, "lr_decay_at": 2.0}), QUIET)
