"""Every model against its card, and every card against the recorded reference figures."""
import json
from pathlib import Path

import pytest
import torch

import vertebra
from conftest import ALL_MODELS
from vertebra.analysis import count_macs, count_params

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
LIBRARIES = ("torchvision", "timm", "pretrainedmodels")  # tools/record_reference.py records from these
RECORDED = {p.stem: json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))}


def meta_model(name):
    with torch.device("meta"):  # counting needs shapes only: no memory, no compute
        return vertebra.create_model(name)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_model_matches_its_card(name):
    card = vertebra.model_info(name)
    model = meta_model(name)
    params = count_params(model)
    if card.params is not None:
        assert params == pytest.approx(card.params, rel=card.params_tolerance, abs=0), (params, card.params)
        if card.params_tolerance == 0:
            assert params == card.params
    if card.macs is not None:
        assert count_macs(model, card.input_size) == pytest.approx(card.macs, rel=card.macs_tolerance)
    if card.reference.split()[0] in LIBRARIES:  # a library's figures are exact
        assert card.params_tolerance == 0 and card.macs_tolerance <= 0.01 and card.params is not None
    assert model.default_input_size == card.input_size
    assert card.paper and card.arxiv and card.idea and card.reference and card.year >= 1990


@pytest.mark.parametrize("name", sorted(RECORDED))
def test_card_holds_the_recorded_reference_figures(name):
    card, recorded = vertebra.model_info(name), RECORDED[name]
    assert card.reference == recorded["reference"] and card.layouts[0] == recorded["layout"]
    assert card.params == recorded["params"]
    assert card.macs == pytest.approx(recorded["macs"], rel=0.01)


def test_every_model_with_a_reference_library_is_recorded():
    from_libraries = [n for n in ALL_MODELS if vertebra.model_info(n).reference.split()[0] in LIBRARIES]
    assert sorted(from_libraries) == sorted(RECORDED)


def test_count_macs_counts_a_known_convolution():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, 10, in_chans=3) == 8 * 3 * 9 * 10 * 10
