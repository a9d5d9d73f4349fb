"""Network morphisms: every edit keeps the network's function; hill climbing starts children from them."""
import json
import random

import pytest
import torch

import vertebra
from vertebra.design.nas import MorphSettings, SearchConfig, TrialSettings, get_space, search
from vertebra.design.nas.morphisms import apply_edits, edit_genotype, possible_edits, random_edit
from vertebra.weights import load_weights


def trained_looking(genotype, seed):
    """A random network whose BatchNorms hold statistics and scales like a trained one's."""
    torch.manual_seed(seed)
    model = vertebra.create_model("nas_child", genotype=genotype, input_pool=4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def relative_change(genotype, model, edits, x) -> float:
    child_genotype, state = apply_edits(genotype, model.state_dict(), edits)
    with torch.device("meta"):  # no initialisation to pay for: every tensor comes from the edited state
        child = vertebra.create_model("nas_child", genotype=child_genotype, input_pool=4)
    child.load_state_dict(state, assign=True)
    with torch.no_grad():
        before, after = model(x), child.eval()(x)
    return float((after - before).abs().max() / before.abs().max())


@pytest.mark.parametrize("seed", range(3))
def test_every_edit_keeps_the_function(seed):
    genotype = get_space("nas_cnn").sample(random.Random(seed), 6)
    model = trained_looking(genotype, seed)
    x = torch.randn(4, 3, 32, 32)
    rng = random.Random(seed)
    edits = possible_edits(genotype)
    assert {e["kind"] for e in edits} >= {"widen", "deepen"}
    for edit in edits:  # every edit this network admits, not a sample
        if edit["kind"] == "widen":
            edit = {**edit, "filters": genotype["layers"][edit["layer"]]["filters"] + rng.randint(1, 40),
                    "seed": rng.randrange(1000)}
        elif edit["kind"] == "deepen":
            edit = {**edit, "kernel": rng.choice([[3, 3], [1, 1], [5, 3]])}
        child = edit_genotype(genotype, edit)
        assert child != genotype  # the edit changed the architecture
        assert relative_change(genotype, model, [edit], x) <= 1e-5, edit
    chain, child = [], genotype  # several edits in a row, as a child of the search gets them
    for _ in range(4):
        chain.append(random_edit(child, rng))
        child = edit_genotype(child, chain[-1])
    assert relative_change(genotype, model, chain, x) <= 1e-5, chain


def test_skip_edits_exist_and_respect_the_concatenation():
    genotype = {"space": "nas_cnn", "layers": [
        {"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 1, "inputs": []},
        {"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 1, "inputs": [0]},
        {"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 2, "inputs": [1]},
        {"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 1, "inputs": [2]}]}
    skips = {(e["input"], e["layer"]) for e in possible_edits(genotype) if e["kind"] == "skip"}
    # 0 -> 2 keeps 2's map (same size); 0 -> 3 and 1 -> 3 would not: their maps are larger than layer 2's
    # output; nothing reads layer 3 (the head does), so no skip leaves from it
    assert skips == {(0, 2)}
    model = trained_looking(genotype, 0)
    assert relative_change(genotype, model, [{"kind": "skip", "layer": 2, "input": 0}], torch.randn(2, 3, 32, 32)) \
        <= 1e-5


def test_morph_search_starts_children_from_their_parents_weights(tmp_path):
    config = SearchConfig("morph", space="nas_cnn", out=tmp_path / "morph", executor="inline", seed=0,
                          morph=MorphSettings(children=2, edits=2, steps=2, start_epochs_factor=1),
                          trial=TrialSettings(epochs=1, limit=64))
    result = search(config)
    records = {r["trial"]: r for r in result.records}
    assert sorted(records) == list(range(5)) and "parent" not in records[0]
    lines = (tmp_path / "morph" / "proposals.jsonl").read_text().splitlines()
    proposals = {p["trial"]: p for p in map(json.loads, lines)}
    for trial in range(1, 5):
        parent = records[trial]["parent"]
        assert parent < trial and proposals[trial]["inherit"]["weights"] == records[parent]["weights"]
        # the weights the child started from compute what its parent's trained weights compute
        child = vertebra.create_model("nas_child", genotype=records[trial]["genotype"], input_pool=4)
        load_weights(child, tmp_path / "morph" / "trials" / f"{trial:05d}-inherited" / "inherited.safetensors")
        trained = vertebra.create_model("nas_child", genotype=records[parent]["genotype"], input_pool=4)
        load_weights(trained, records[parent]["weights"])
        x = torch.randn(2, 3, 32, 32)
        with torch.no_grad():
            assert torch.allclose(child.eval()(x), trained.eval()(x), rtol=1e-4, atol=1e-5)
    assert (tmp_path / "morph" / "morphisms.png").read_bytes()[:4] == b"\x89PNG"
