import os

import pytest
import torch

import vertebra

ALL_MODELS = vertebra.list_models()

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each
    torch.set_num_threads(1)


def test_size(model) -> int:
    """A small input every stage can reduce: twice the model's minimum, at least 32."""
    return max(32, 2 * model.min_input_size)


test_size.__test__ = False  # a helper, not a test


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The smallest real training run: a one-layer NAS child on 32 digits, two epochs (about 0.3 s).
TINY_GENOTYPE = {"space": "nas_cnn", "layers": [{"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 1,
                                                 "inputs": []}]}


@pytest.fixture
def tiny_run() -> dict:
    """TrainConfig keyword arguments of the smallest real training run; it improves at epoch 2."""
    return dict(model="nas_child", epochs=2, batch_size=16, limit=32, optimizer="adamw", lr=0.003,
                model_kwargs={"genotype": TINY_GENOTYPE, "input_pool": 4})
