"""The smallest member of every family trains on the embedded digits: a few steps lower its loss."""
import pytest
import torch
from torch import nn

import vertebra
from vertebra.analysis import count_params
from vertebra.train import digits
from vertebra.train.loop import AUX_WEIGHT, training_loss


def smallest_per_family() -> list[str]:
    smallest: dict[str, tuple[int, str]] = {}
    for name in vertebra.list_models():
        family = vertebra.model_info(name).family
        with torch.device("meta"):
            size = count_params(vertebra.create_model(name, num_classes=10, small_input=True))
        if family not in smallest or size < smallest[family][0]:
            smallest[family] = (size, name)
    return sorted(name for _, name in smallest.values())


DATA = digits()


@pytest.mark.parametrize("name", smallest_per_family())
def test_a_few_steps_lower_the_loss(name):
    torch.manual_seed(0)
    model = vertebra.create_model(name, num_classes=10, small_input=True).train()
    images, labels = DATA.train.images[:16], DATA.train.labels[:16]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for _ in range(6):
        loss, _ = training_loss(model(images), labels, criterion, AUX_WEIGHT)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-2:]) < sum(losses[:2]), losses
