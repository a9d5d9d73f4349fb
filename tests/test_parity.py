"""Logits equal to torchvision's and timm's, with no reference library installed.

tools/record_reference.py recorded each reference model's logits after filling it with
synthetic_state_dict(manifest); here the same tensors go through vertebra's key map into
the vertebra model, which must give the same logits (DESIGN.md, "Reference parity").
"""
import json
import math
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vertebra
import vertebra.testing
from vertebra.testing import relative_error, synthetic_input, synthetic_state_dict
from vertebra.weights import KEYMAPS

FIXTURES = Path(__file__).parent / "fixtures" / "reference"
RECORDED = sorted(p.stem for p in FIXTURES.glob("*.json"))
REQUIRED = {"resnet18", "resnet50", "resnet152", "resnext50_32x4d", "resnext101_32x8d",
            "se_resnet50", "se_resnext50_32x4d", "senet154"}


def large_shared_tensors() -> set[tuple]:
    """(name, shape, seed) of the synthetic tensors of 2**24 or more values that several fixtures hold:
    VGG's fc6 and fc7, the same 120M values in all eight VGG fixtures."""
    held = Counter()
    for path in FIXTURES.glob("*.json"):
        info = json.loads(path.read_text())
        held.update((e["key"], tuple(e["shape"]), info["seed"]) for e in info["manifest"]
                    if math.prod(e["shape"]) >= 2 ** 24)
    return {entry for entry, count in held.items() if count > 1}


SHARED = large_shared_tensors()
GENERATED: dict[tuple, torch.Tensor] = {}  # the values of SHARED tensors, made once per worker
make_uniform = vertebra.testing.uniform


@pytest.fixture(autouse=True)
def _generate_shared_tensors_once(monkeypatch):
    """vertebra.testing.uniform is a pure function of (shape, seed, name): the shared tensors are made
    once and reused (synthetic_state_dict only reads them), the same values the fixtures were recorded
    with.  Making VGG's fc6 took 7 s a fixture; the VGG tests share one worker so that they share it."""
    def uniform(shape, seed, name):
        entry = (name, tuple(shape), seed)
        if entry not in SHARED:
            return make_uniform(shape, seed, name)
        if entry not in GENERATED:
            GENERATED[entry] = make_uniform(shape, seed, name)
        return GENERATED[entry]

    monkeypatch.setattr(vertebra.testing, "uniform", uniform)


def reference(name):
    info = json.loads((FIXTURES / f"{name}.json").read_text())
    return info, synthetic_state_dict(info["manifest"], info["seed"]), load_file(FIXTURES / f"{name}.safetensors")


def logits_error(model, info, recorded):
    errors = []
    with torch.no_grad():
        for size in info["sizes"]:
            x = synthetic_input((info["batch"], 3, size, size), info["seed"])
            errors.append(relative_error(model(x), recorded[f"logits_{size}"]))
    return max(errors)


def test_required_references_are_recorded():
    assert REQUIRED <= set(RECORDED)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xdist_group("vgg_parity"))
                                  if n.startswith("vgg") else n for n in RECORDED])
def test_logits_match_the_reference(name):
    info, state, recorded = reference(name)
    converted, unmatched = KEYMAPS[info["layout"]].convert(state)
    assert not unmatched
    model = vertebra.create_model(name).eval()
    model.load_state_dict(converted, strict=True)
    assert logits_error(model, info, recorded) <= 1e-4


def test_parity_catches_a_structural_difference():
    """The paper's stride placement differs from torchvision's, and the fixture sees it."""
    info, state, recorded = reference("resnet50")
    model = vertebra.create_model("resnet50", stride_in_1x1=True).eval()
    model.load_state_dict(KEYMAPS[info["layout"]].convert(state)[0])
    assert logits_error(model, info, recorded) > 1e-2


def test_synthetic_weights_are_deterministic_and_scaled():
    manifest = [{"key": "conv.weight", "shape": [64, 32, 3, 3], "dtype": "float32"},
                {"key": "bn.weight", "shape": [64], "dtype": "float32"},
                {"key": "bn.running_var", "shape": [64], "dtype": "float32"},
                {"key": "bn.num_batches_tracked", "shape": [], "dtype": "int64"}]
    a, b = synthetic_state_dict(manifest, 0), synthetic_state_dict(manifest, 0)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], synthetic_state_dict(manifest, 1)["conv.weight"])
    assert a["conv.weight"].var().item() == pytest.approx(2 / (32 * 9), rel=0.1)
    assert 0.25 <= a["bn.weight"].min() and a["bn.weight"].max() <= 0.75
    assert a["bn.num_batches_tracked"].dtype == torch.int64


@pytest.mark.parametrize("alias, name", [("mobilenet_v2", "mobilenet_v2_100"), ("legacy_xception", "xception")])
def test_an_alias_builds_the_model_the_peers_weights_fit(alias, name):
    """torchvision's and timm's names build vertebra's model of that layout: the peer's fixture fits it."""
    info, state, recorded = reference(name)
    model = vertebra.create_model(alias).eval()
    assert model.model_name == name and vertebra.model_info(alias).name == name
    model.load_state_dict(KEYMAPS[info["layout"]].convert(state)[0], strict=True)
    assert logits_error(model, info, recorded) <= 1e-4
