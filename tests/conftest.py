import pytest
import torch

import vertebra

ALL_MODELS = vertebra.list_models()


def test_size(model) -> int:
    """A small input every stage can reduce: twice the model's minimum, at least 32."""
    return max(32, 2 * model.min_input_size)


test_size.__test__ = False  # a helper, not a test


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
