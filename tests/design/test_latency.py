"""Measured latency as a search objective: the block lookup table, MnasNet's reward, the Pareto front."""
import json

import pytest
from rich.console import Console

import torch
from vertebra.design.latency import LatencyTable, units
from vertebra.design.nas import (AccuracyObjective, MnasObjective, SearchConfig, TrialSettings, get_space,
                                 pareto_front, search)
from vertebra.design.nas.costs import ChildLatency

SMALL = {"blocks": ("mbconv", "conv"), "kernels": (3,), "expansions": (1,), "se": (False,), "layers": (1, 2)}


def test_each_block_is_timed_once_and_the_table_is_kept(tmp_path):
    table = LatencyTable(tmp_path / "table.json", repeats=2)
    cost = ChildLatency(table, TrialSettings())
    space = get_space("mnas_blocks", **SMALL)
    fastest = cost.prepare(space)  # two combinations, with one and two layers per stage
    timed = table.measured
    assert timed == len(table) > 0 and 0 < fastest
    genotype = space.sample(__import__("random").Random(0))
    model = cost.model(genotype)
    assert [name for name, _ in units(model)][:2] == ["stem", "stages.0.0"] and units(model)[-1][0] == "head"
    predicted = cost(genotype)
    assert table.measured == timed  # every block of the space was already in the table
    assert predicted == pytest.approx(sum(u["ms"] for u in table.unit_latencies(model, 32)))
    assert fastest <= predicted
    table.save()
    again = LatencyTable(tmp_path / "table.json", repeats=2)
    assert again.entries == table.entries and again.predict(model, 32) == pytest.approx(predicted)
    assert again.measured == 0
    saved = json.loads((tmp_path / "table.json").read_text())
    saved["machine"]["cpu"] = "another CPU"
    (tmp_path / "table.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="measured on .*another CPU.*--remeasure"):
        LatencyTable(tmp_path / "table.json")
    assert len(LatencyTable(tmp_path / "table.json", remeasure=True)) == 0
    with pytest.raises(TypeError, match="stem, stages and head"):
        units(torch.nn.Linear(3, 3))


def test_mnas_reward_soft_and_hard_and_the_front():
    record = {"history": [0.5, 0.8], "latency_ms": 4.0, "macs": 100}
    assert MnasObjective(2.0)(record) == pytest.approx(0.8 * 2 ** -0.07)  # twice T: ~5% less
    assert MnasObjective(8.0)(record) == pytest.approx(0.8 * 0.5 ** -0.07)  # under T: a little more
    assert MnasObjective.hard(2.0)(record) == pytest.approx(0.4) and MnasObjective.hard(8.0)(record) == 0.8
    assert MnasObjective(50, cost="macs")(record) == pytest.approx(0.8 * 2 ** -0.07)
    assert MnasObjective(2.0)({**record, "error": "boom"}) == 0.0
    with pytest.raises(ValueError, match="positive target"):
        MnasObjective(0.0)
    points = [{"trial": i, "val_accuracy": a, "latency_ms": c} for i, (a, c) in
              enumerate([(0.5, 1.0), (0.7, 3.0), (0.6, 2.0), (0.65, 4.0), (0.9, 5.0)])]
    assert [p["trial"] for p in pareto_front(points, "latency_ms")] == [0, 2, 1, 4]


def fake_trial(spec):
    """Instant: a child's accuracy grows with its layers; a reference model's with its name's length."""
    genotype = spec["genotype"]
    layers = sum(stage["layers"] for stage in genotype["stages"]) if "stages" in genotype else len(genotype["model"])
    return {"trial": spec["trial"], "genotype": genotype, "history": [0.5 + layers / 100], "macs": layers,
            "epochs": spec["epochs"]}


def test_a_latency_aware_search_scores_with_the_table_and_draws_the_front(tmp_path, monkeypatch):
    monkeypatch.setattr("vertebra.design.nas.trial.run_trial", fake_trial)
    table = tmp_path / "table.json"

    def config(out, target, **kw):
        return SearchConfig("random", space="mnas_blocks", space_settings=SMALL, trials=6, executor="inline",
                            out=out, objective=MnasObjective(target), latency_table=table, **kw)

    with pytest.raises(ValueError, match="no child of mnas_blocks meets the target of 0.000 ms"):
        search(config(tmp_path / "impossible", 1e-6), Console(quiet=True))
    assert not (tmp_path / "impossible" / "journal.jsonl").exists()  # refused before training anything
    with pytest.raises(ValueError, match="unknown model 'mobilenet_v9'"):
        search(config(tmp_path / "unknown", 50.0, references=("mobilenet_v9",)), Console(quiet=True))
    assert not (tmp_path / "unknown").exists()
    result = search(config(tmp_path / "run", 50.0, references=("mobilenet_v2_035", "mnasnet0_5")),
                    Console(quiet=True))
    assert [r["genotype"]["model"] for r in result.references] == ["mobilenet_v2_035", "mnasnet0_5"]
    assert all(r["latency_ms"] > 0 and r["val_accuracy"] > 0.5 for r in result.references)
    assert len((tmp_path / "run" / "references" / "journal.jsonl").read_text().splitlines()) == 2
    for record in result.records:
        assert record["latency_ms"] > 0
        assert record["reward"] == pytest.approx(MnasObjective(50.0)(record))
    front = json.loads((tmp_path / "run" / "pareto.json").read_text())
    assert front and all({"genotype", "latency_ms", "val_accuracy"} <= set(f) for f in front)
    assert [f["trial"] for f in front] == [r["trial"] for r in pareto_front(result.records, "latency_ms")]
    assert (tmp_path / "run" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    again = search(config(tmp_path / "run", 50.0, references=("mobilenet_v2_035", "mnasnet0_5"), resume=True),
                   Console(quiet=True))
    assert again.references == result.references  # read back from their journal, not trained again
    assert not (tmp_path / "accuracy").exists()
    search(SearchConfig("random", space="mnas_blocks", trials=2, executor="inline", out=tmp_path / "accuracy",
                        objective=AccuracyObjective()), Console(quiet=True))
    assert not (tmp_path / "accuracy" / "pareto.json").exists()  # no cost, no front


def test_the_command_line_needs_one_target(tmp_path, capsys):
    from vertebra.cli import main

    assert main(["search", "evolution", "--objective", "mnas", "--out", str(tmp_path / "a")]) == 2
    assert "needs one target: --target-ms T or --target-like MODEL" in capsys.readouterr().err
    assert main(["search", "rl", "--target-ms", "3", "--out", str(tmp_path / "b")]) == 2
    assert "apply to --objective mnas" in capsys.readouterr().err
    assert main(["search", "rl", "--objective", "mnas", "--space", "nas_cnn", "--target-ms", "3", "--trials", "2",
                 "--out", str(tmp_path / "c")]) == 2
    assert "needs a space whose blocks can be timed one by one" in capsys.readouterr().err


def test_reference_models_are_the_nearest_in_cost_and_train_beside_a_macs_search(tmp_path, monkeypatch):
    from vertebra.design.nas.costs import child_macs
    from vertebra.design.nas.references import genotype, nearest

    costs = {"a": 1.0, "b": 1.9, "c": 2.1, "d": 4.5, "e": 0.9}
    assert nearest(costs, 2.0, count=3) == ["c", "b", "a"] and nearest(costs, 100.0) == []
    monkeypatch.setattr("vertebra.design.nas.trial.run_trial", fake_trial)
    few = ["mobilenet_v2_035", "mobilenet_v2_050", "mobilenet_v2_075", "mobilenet_v2_140", "mnasnet0_5"]
    monkeypatch.setattr("vertebra.design.nas.references.candidates", lambda: few)  # fewer models to count
    target = child_macs(genotype("mobilenet_v2_050"), TrialSettings())
    result = search(SearchConfig("random", space="mnas_blocks", space_settings=SMALL, trials=2, executor="inline",
                                 out=tmp_path / "macs", objective=MnasObjective(target, cost="macs")),
                    Console(quiet=True))
    names = [r["genotype"]["model"] for r in result.references]
    assert names[0] == "mobilenet_v2_050" and "mobilenet_v2_140" not in names and 1 <= len(names) <= 4
    assert all(target / 2 <= child_macs(genotype(n), TrialSettings()) <= 2 * target for n in names)
    models = search(SearchConfig("random", space="models", space_settings={"candidates": ("mobilenet_v2_035",)},
                                 trials=1, executor="inline", out=tmp_path / "models",
                                 objective=MnasObjective(target, cost="macs")), Console(quiet=True))
    assert models.references == []  # the set's members are the hand-designed models
