"""NetAdapt: the pruning rules of every supported family, the per-layer table, the algorithm, resume."""
import json
import random
from pathlib import Path

import pytest
import torch
from torch import nn

import vertebra
from vertebra.design import netadapt
from vertebra.design.channels import predicted_parameters, prune, trace_groups
from vertebra.design.latency import Layer, LatencyTable, network_layers
from vertebra.design.nas import TrialSettings
from vertebra.design.nas import trial as trial_module
from vertebra.design.netadapt import NetAdapt, NetAdaptSettings, budget_ms
from vertebra.train.data import digits, hold_out
from vertebra.train.loop import TrainConfig, train
from vertebra.weights import save_weights

# One of each block NetAdapt must handle: depthwise separable (V1), inverted residual (V2, MnasNet),
# with squeeze-and-excitation and hard-swish (V3), basic and bottleneck residuals, channel split (V2).
FAMILIES = ["mobilenet_v1_025", "mobilenet_v2_035", "mobilenetv3_small_100", "mnasnet0_5", "resnet18", "resnet50",
            "shufflenet_v2_x0_5"]


@pytest.mark.parametrize("name", FAMILIES)
def test_pruning_random_layers_keeps_every_family_valid(name, tmp_path):
    """The property: cut random layers to random widths; the network runs, has the parameter count the
    rules predict, and its weights file rebuilds the same function."""
    model = vertebra.create_model(name, num_classes=10, small_input=True).eval()
    rng = random.Random(name)
    for _ in range(4):
        groups, _ = trace_groups(model, 32)
        group = rng.choice(groups)
        width = rng.randint(1, group.channels)
        expected = predicted_parameters(model, group, width)
        prune(model, group, width)
        assert sum(p.numel() for p in model.parameters()) == expected
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    save_weights(model, tmp_path / "pruned.safetensors")
    rebuilt = vertebra.create_model(name, num_classes=10, small_input=True,
                                    pretrained=tmp_path / "pruned.safetensors").eval()
    torch.testing.assert_close(rebuilt(x), out)
    assert rebuilt.num_features == model.num_features
    assert [f.channels for f in rebuilt.feature_info] == [f.channels for f in model.feature_info]


def test_pruning_keeps_the_largest_filters_and_the_function_of_what_it_keeps():
    """Cutting a layer keeps the filters of largest L2 norm, and the kept channels compute exactly what
    they computed before (the consumers read the same channels)."""
    model = vertebra.create_model("mobilenet_v1_025", num_classes=10, small_input=True).eval()
    groups, _ = trace_groups(model, 32)
    group = groups[1]  # the first pointwise convolution's outputs
    weight = dict(model.named_modules())[group.producers[0]].weight.detach().clone()
    norms = weight.flatten(1).norm(dim=1)
    keep = prune(model, group, 8)
    assert set(keep.tolist()) == set(norms.topk(8).indices.tolist())
    torch.testing.assert_close(dict(model.named_modules())[group.producers[0]].weight, weight[keep])


def test_the_rules_join_what_must_shrink_together():
    """Residual sums join their writers; SE's fc2 joins the channels it scales; depthwise layers and
    norms follow; concatenation and channel split fix a width, and the reason names the op."""
    resnet = {g.name: g for g in trace_groups(vertebra.create_model("resnet18", small_input=True), 32)[0]}
    stem = resnet["stem.conv1.conv"]
    assert {"stages.0.0.conv2.conv", "stages.0.1.conv2.conv"} <= set(stem.producers)
    assert {"stages.0.0.conv1.conv", "stages.1.0.downsample.conv"} <= set(stem.consumers)
    v3 = trace_groups(vertebra.create_model("mobilenetv3_small_100", small_input=True), 32)[0]
    scaled = next(g for g in v3 if any(p.endswith("se.fc2") for p in g.producers))
    assert any(f.endswith("dw.conv") for f in scaled.followers) and any(c.endswith("se.fc1") for c in scaled.consumers)
    groups, fixed = trace_groups(vertebra.create_model("shufflenet_v2_x0_5", small_input=True), 32)
    assert not any(p.endswith("pw2.conv") for g in groups for p in g.producers)
    assert "cat" in fixed["stages.0.0.branch_main.pw2.conv"]


class Concatenating(nn.Module):
    """Every convolution feeds a concatenation: no width can change."""

    in_chans = 3

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return torch.cat((self.a(x), self.b(x)), 1)


def test_a_network_with_nothing_to_adapt_names_the_layer_that_blocks_it():
    with pytest.raises(ValueError, match=r"cannot be adapted.*\ba\b.*cat in forward"):
        netadapt.adaptable_groups(Concatenating(), 8, "the toy")


def test_the_layer_table_keys_shapes_and_resizes_depthwise_layers_whole():
    model = vertebra.create_model("mobilenet_v2_035", num_classes=10, small_input=True)
    layers = network_layers(model, 32)
    assert len(layers) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    dw = layers["stages.1.0.dw.conv"]
    assert dw.depthwise and dw.norm and dw.act == "ReLU6"
    narrower = dw.with_channels(out=24)
    assert (narrower.input[0], narrower.out, narrower.groups) == (24, 24, 24) and narrower.key != dw.key
    assert Layer("conv", (8, 4, 4), 16, (3, 3), padding=(1, 1)).build()(torch.zeros(1, 8, 4, 4)).shape == (1, 16, 4, 4)


def test_budgets_and_settings_are_checked_before_any_work():
    assert budget_ms("0.5", 10.0) == 5.0 and budget_ms("12ms", 10.0) == 12.0
    for bad in ("fast", "1.5", "0", "-3ms"):
        with pytest.raises(ValueError, match="budget"):
            budget_ms(bad, 10.0)
    with pytest.raises(ValueError, match="select"):
        NetAdaptSettings(budget="0.5", select="speed")


def test_hold_out_is_a_fixed_disjoint_share_of_the_training_split():
    data = digits()
    first, second = hold_out(data, 0.2), hold_out(data, 0.2)
    assert first.val.indices == second.val.indices
    assert not set(first.val.indices) & set(first.train.indices)
    assert len(first.val) == round(0.2 * len(data.train)) and first.test is data.test


class MacsTable(LatencyTable):
    """A deterministic stand-in for the clock (the algorithm's tests must not depend on a noisy
    machine): a layer costs its multiply-adds, a network its layers plus a fixed 0.01 ms."""

    def layer_ms(self, layer: Layer) -> float:
        if layer.kind == "linear":
            return layer.input[0] * layer.out / 1e6
        _, height, width = layer.input
        out_size = (height // layer.stride[0]) * (width // layer.stride[1])
        return layer.input[0] // layer.groups * layer.out * layer.kernel[0] * layer.kernel[1] * out_size / 1e6

    def measure(self, model, input_size: int) -> float:
        return self.predict_layers(network_layers(model, input_size).values()) + 0.01


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """mobilenet_v1_025 trained briefly on the digits: the network to adapt."""
    out = tmp_path_factory.mktemp("base")
    train(TrainConfig(model="mobilenet_v1_025", epochs=1, limit=64, batch_size=16, optimizer="adamw",
                      out=out / "run"))
    return next((out / "run").glob("best-*.safetensors"))


SETTINGS = NetAdaptSettings(budget="0.8", step=0.15, holdout=0.05, long_epochs=1, granularity=8,
                            short=TrialSettings(epochs=1, limit=16, batch_size=16, lr=1e-3, warmup_epochs=0.0))


def adapt(weights, out, settings=SETTINGS, resume=False) -> dict:
    run = NetAdapt("mobilenet_v1_025", weights, settings, out, executor="inline", resume=resume,
                   table=MacsTable(threads=1))
    return run.run()


def test_netadapt_meets_the_budget_with_a_real_smaller_network_and_resumes(trained, tmp_path, monkeypatch):
    # a kill in iteration 1 after its proposals were fine-tuned, before it committed
    choose = NetAdapt._select

    def killed_in_iteration_1(self, plan, records):
        if (tmp_path / "run" / "iterations" / "000" / "selected.json").exists():
            raise KeyboardInterrupt
        return choose(self, plan, records)

    monkeypatch.setattr(NetAdapt, "_select", killed_in_iteration_1)
    with pytest.raises(KeyboardInterrupt):
        adapt(trained, tmp_path / "run")
    monkeypatch.setattr(NetAdapt, "_select", choose)
    fine_tuned_again = []
    monkeypatch.setattr(trial_module, "run_trial", lambda spec: fine_tuned_again.append(spec) or {})
    summary = adapt(trained, tmp_path / "run", resume=True)
    assert fine_tuned_again == []  # iteration 1's proposals came from its journal

    start, steps = summary["start"], summary["iterations"]
    assert len(steps) == 2 and steps[-1]["measured_ms"] <= summary["budget_ms"] < steps[0]["measured_ms"]
    for step in steps:  # each iteration kept one layer's narrower width
        assert step["channels"][1] < step["channels"][0] and step["channels"][1] % 8 == 0
    plan = json.loads((tmp_path / "run" / "iterations" / "001" / "plan.json").read_text())
    assert steps[1]["layer"] in [p["layer"] for p in plan["proposals"]]
    adapted = vertebra.create_model("mobilenet_v1_025", num_classes=10, small_input=True,
                                    pretrained=summary["adapted"])
    assert sum(p.numel() for p in adapted.parameters()) < start["params"]
    assert adapted(torch.zeros(1, 3, 32, 32)).shape == (1, 10)
    assert (tmp_path / "run" / "netadapt.png").stat().st_size > 10_000
    assert not list((tmp_path / "run" / "iterations").glob("*/trials/*/*.safetensors"))  # proposals tidied

    final = tmp_path / "run" / "final" / "checkpoint.json"
    committed = final.stat().st_mtime_ns
    again = adapt(trained, tmp_path / "run", resume=True)  # a finished run: nothing is trained again
    assert fine_tuned_again == [] and final.stat().st_mtime_ns == committed
    assert again["iterations"] == steps
    with pytest.raises(ValueError, match="--resume"):
        adapt(trained, tmp_path / "run")


def test_budgets_already_met_or_never_reachable_are_refused_before_training(trained, tmp_path):
    for budget, message in (("100ms", "already meets"), ("0.0001ms", "can never meet")):
        settings = NetAdaptSettings(budget=budget, short=SETTINGS.short)
        with pytest.raises(ValueError, match=message):
            adapt(trained, tmp_path / budget, settings)
        assert not (tmp_path / budget / "iterations").exists()


def test_ratio_selection_picks_the_least_accuracy_lost_per_millisecond():
    plan = {"predicted_ms": 10.0, "holdout_accuracy": 0.9,
            "proposals": [{"predicted_ms": 9.0}, {"predicted_ms": 6.0}]}
    records = [{"history": [0.88]}, {"history": [0.86]}]  # -0.02 for 1 ms against -0.04 for 4 ms
    run = NetAdapt.__new__(NetAdapt)
    run.settings = NetAdaptSettings(budget="0.5", select="ratio")
    assert run._select(plan, records) == 1
    run.settings = NetAdaptSettings(budget="0.5", select="accuracy")
    assert run._select(plan, records) == 0


def test_cli_refuses_a_foreign_or_missing_weights_file(tmp_path, capsys):
    from vertebra.cli import main

    torch.set_flush_denormal(False)  # the process default (conftest flushes for the tests), restored below
    assert main(["netadapt", "mobilenet_v1_025", "--weights", str(tmp_path / "none.safetensors"),
                 "--budget", "0.5", "--out", str(tmp_path / "out")]) == 2
    assert "not found" in capsys.readouterr().err
    torch.save(vertebra.create_model("mobilenet_v1_025").state_dict(), tmp_path / "foreign.pth")
    assert main(["netadapt", "mobilenet_v1_025", "--weights", str(tmp_path / "foreign.pth"), "--budget", "0.5",
                 "--out", str(tmp_path / "out")]) == 2
    assert "vertebra train" in capsys.readouterr().err
    # the command flushes subnormal floats while it runs, and hands the process back as it found it:
    # whatever trains next in the same process (a test, a notebook) computes with subnormals again
    kept_subnormals = torch.tensor([1e-39]).mul(1.0).item() > 0
    torch.set_flush_denormal(True)
    assert kept_subnormals
