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
