import json

import numpy as np
import pytest
import torch
from PIL import Image

from vertebra.train.data import DIGITS_FILE, BadImage, ImageFolder, collate, digits, image_folder
from vertebra.train.transforms import EvalTransform, TrainTransform, random_resized_crop


def test_digits_split_is_fixed_stratified_and_32x32_rgb():
    first, second = digits(), digits()
    assert (len(first.train), len(first.val), len(first.test)) == (1257, 270, 270)
    assert torch.equal(first.test.images, second.test.images)
    image, label = first.train[0]
    assert image.shape == (3, 32, 32) and -1.0 <= image.min() and image.max() <= 1.0 and 0 <= label <= 9
    for split in (first.train, first.val, first.test):
        counts = torch.bincount(split.labels, minlength=10).float()
        assert counts.min() / counts.max() > 0.85  # every class in proportion


def test_embedded_digits_are_scikit_learns_with_their_stratified_split():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
    from embed_digits import digits_and_split

    expected = digits_and_split()
    with np.load(DIGITS_FILE) as stored:
        assert sorted(stored.files) == sorted(expected)
        for name, array in expected.items():
            assert np.array_equal(stored[name], array), name


def write_folder(root, classes, per_class=3, size=(20, 16)):
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            colour = (40 * index, 255 - 40 * index, 10 * i)
            Image.new("RGB", size, colour).save(root / name / f"{i}.png")


def test_image_folder_reads_classes_and_reports_corrupt_files(tmp_path):
    write_folder(tmp_path, ["cat", "dog"])
    (tmp_path / "dog" / "broken.jpg").write_bytes(b"not an image")
    folder = ImageFolder(tmp_path)
    assert folder.classes == ["cat", "dog"] and len(folder) == 7
    items = [folder[i] for i in range(len(folder))]
    bad = [item for item in items if isinstance(item, BadImage)]
    assert len(bad) == 1 and bad[0].path.endswith("broken.jpg") and "UnidentifiedImageError" in bad[0].reason
    images, labels, skipped = collate(items)
    assert images.shape[0] == 6 and labels.tolist().count(1) == 3 and skipped == bad


@pytest.mark.parametrize("setup, message", [
    (lambda root: None, "data folder not found"),
    (lambda root: root.mkdir(), "no images in"),
    (lambda root: write_folder(root, ["only"]), "one class only"),
])
def test_folder_errors_come_before_training(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(ValueError, match=message):
        image_folder(root, None, 0.2, 32, seed=0)


def test_validation_split_and_folder(tmp_path):
    write_folder(tmp_path / "train", ["a", "b"], per_class=10)
    write_folder(tmp_path / "val", ["a", "b"], per_class=2)
    split = image_folder(tmp_path / "train", None, 0.2, 24, seed=0)
    assert (len(split.train), len(split.val)) == (16, 4) and split.classes == ["a", "b"]
    assert split.train[0][0].shape == (3, 24, 24)
    separate = image_folder(tmp_path / "train", tmp_path / "val", 0.2, 24, seed=0)
    assert len(separate.val) == 4
    write_folder(tmp_path / "other", ["a", "c"])
    with pytest.raises(ValueError, match="expected the training classes"):
        image_folder(tmp_path / "train", tmp_path / "other", 0.2, 24, seed=0)


def test_augmentation_is_deterministic_per_sample_and_epoch(tmp_path):
    write_folder(tmp_path, ["a", "b"], per_class=4, size=(40, 30))
    split = image_folder(tmp_path, None, 0.25, 16, seed=3)
    again = image_folder(tmp_path, None, 0.25, 16, seed=3)
    assert torch.equal(split.train[1][0], again.train[1][0])
    split.train.set_epoch(1)
    changed = [not torch.equal(split.train[i][0], again.train[i][0]) for i in range(len(split.train))]
    assert any(changed)


def test_transforms():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 50, 40)
    assert random_resized_crop(image, 20, generator).shape == (3, 20, 20)
    assert TrainTransform(24)(image, generator).shape == (3, 24, 24)
    out = EvalTransform(32)(torch.ones(3, 60, 80))
    assert out.shape == (3, 32, 32)
    np.testing.assert_allclose(out[0].numpy(), (1 - 0.485) / 0.229, rtol=1e-5)


def test_worker_count_and_cache_leave_training_bit_identical(tmp_path, monkeypatch, capsys):
    """The same run with 0 or 2 loading processes, decoded each epoch or cached, ends with the same
    weights: augmentation is seeded per sample, never by the worker that draws it."""
    from safetensors.torch import load_file

    from vertebra.train import TrainConfig, train
    from vertebra.train import data as data_module

    write_folder(tmp_path / "images", ["a", "b"], per_class=10, size=(40, 30))
    common = dict(data=str(tmp_path / "images"), input_size=32, epochs=2, batch_size=8, seed=1, optimizer="adamw")
    weights = {}
    for name, options in {"main": {"workers": 0}, "workers": {"workers": 2}, "cached": {"cache": True}}.items():
        result = train(TrainConfig("mobilenet_v2_035", out=tmp_path / name, **common, **options))
        record = result.history[-1]
        weights[name] = load_file(tmp_path / name / json.loads((tmp_path / name / "checkpoint.json").read_text())["weights"])
        assert record["images_per_s"] > 0 and record["elapsed_s"] >= record["epoch_s"] > 0
    for name in ("workers", "cached"):
        assert all(torch.equal(weights["main"][k], weights[name][k]) for k in weights["main"]), name
    monkeypatch.setattr(data_module, "available_memory", lambda: 1000)  # 20 images of 40x30 need 72,000 bytes
    split = image_folder(tmp_path / "images", None, 0.2, 32, seed=0, cache=True)
    assert split.cache_refused.startswith("the decoded images need") and split.train.base.dataset.decoded is None
    assert split.train[0][0].shape == (3, 32, 32)  # still read from disk
    with pytest.raises(ValueError, match="workers must be an int >= 0, got -1"):
        train(TrainConfig("mobilenet_v2_035", out=tmp_path / "bad", **common, workers=-1))
