"""Each weights layout's preprocessing, against what torchvision, timm and pretrainedmodels publish
(recorded in the parity fixtures by tools/record_reference.py)."""
import json
from pathlib import Path

import pytest
import torch

import vertebra
from vertebra.data_config import DataConfig, data_config, published, vertebra_config
from vertebra.train.transforms import EvalTransform

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
RECORDED = {p.stem: json.loads(p.read_text())["preprocessing"] for p in sorted(FIXTURES.glob("*.json"))}


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_the_published_preprocessing_is_the_libraries_own(name):
    recorded, ours = RECORDED[name], published(name)
    assert ours is not None, f"{name} has a reference layout but no published preprocessing"
    assert (ours.input_size, ours.resize_size, ours.interpolation, ours.channel_order, ours.pixel_range) == \
        (recorded["input_size"], recorded["resize_size"], recorded["interpolation"], recorded["channel_order"],
         recorded["pixel_range"])
    assert ours.mean == pytest.approx(recorded["mean"]) and ours.std == pytest.approx(recorded["std"])
    assert ours.source == recorded["weights"]


def test_aliases_paper_forms_and_trained_weights_get_their_own():
    assert data_config("legacy_xception") == published("xception")  # timm's 299, mean 0.5, bicubic
    assert data_config("inception_v3").resize_size == 342 and data_config("resnet18").resize_size == 256
    assert data_config("googlenet") == vertebra_config(224)  # the paper's network: no published weights
    model = vertebra.create_model("resnet18")
    model.data_config = DataConfig(64, 72, source="my run")
    assert data_config(model).source == "my run"
    with pytest.raises(ValueError, match="resize_size 200 is smaller than the 224 crop"):
        DataConfig(224, 200)


def test_the_transform_follows_the_configuration():
    image = torch.rand(3, 40, 60)
    caffe = EvalTransform(data_config("bn_inception_caffe"))(image)
    plain = EvalTransform(DataConfig(224, 256, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)))(image)
    assert caffe.shape == plain.shape == (3, 224, 224)
    means = torch.tensor([104.0, 117.0, 128.0]).view(3, 1, 1)
    torch.testing.assert_close(caffe, plain.flip(0) * 255 - means)  # BGR, 0-255, less Caffe's means
    bicubic = EvalTransform(DataConfig(224, 256, interpolation="bicubic", mean=(0.0,) * 3, std=(1.0,) * 3))(image)
    assert not torch.allclose(bicubic, plain)
