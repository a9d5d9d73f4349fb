"""Compound scaling (EfficientNet, section 3.3) and the width/depth rounding rule under it."""
import pytest
import torch

import vertebra
from vertebra.analysis import count_params
from vertebra.design import CompoundScaling, ScalingCoefficients, constrained_grid, scale_model, scale_stages
from vertebra.layers.scaling import round_channels, round_repeats
from vertebra.models.efficientnet import B0_STAGES

# The paper's published (width, depth, resolution) of B1-B7.
PUBLISHED = {"efficientnet_b1": (1.0, 1.1, 240), "efficientnet_b2": (1.1, 1.2, 260),
             "efficientnet_b3": (1.2, 1.4, 300), "efficientnet_b4": (1.4, 1.8, 380),
             "efficientnet_b5": (1.6, 2.2, 456), "efficientnet_b6": (1.8, 2.6, 528),
             "efficientnet_b7": (2.0, 3.1, 600)}


def test_channels_round_to_multiples_of_eight_and_repeats_round_up():
    assert [round_channels(c, 1.1) for c in (32, 40, 80, 112, 192, 320)] == [32, 48, 88, 120, 208, 352]
    assert round_channels(32, 1.2) == 40 and round_channels(16, 0.25) == 8  # never under one divisor
    assert round_channels(30, 1.0, divisor=4) == 32
    assert [round_repeats(n, 3.1) for n in (1, 2, 3, 4)] == [4, 7, 10, 13]
    assert round_repeats(1, 1.1) == 2  # a stage of one layer grows as soon as depth does


@pytest.mark.parametrize("multiplier", [0, -0.5, float("inf"), float("nan")])
def test_multipliers_that_leave_a_layer_nothing_name_it(multiplier):
    with pytest.raises(ValueError, match=r"width_mult=.* rounds stage 4 \(112 channels\) to zero"):
        round_channels(112, multiplier, layer="stage 4")
    with pytest.raises(ValueError, match=r"depth_mult=.* rounds stage 4 \(3 layers\) to zero"):
        round_repeats(3, multiplier, layer="stage 4")
    with pytest.raises(TypeError, match="must be a number"):
        round_channels(112, "1.0")


def test_compound_coefficients_follow_alpha_beta_gamma_to_the_power_phi():
    rule = CompoundScaling()
    assert rule.flops_growth == pytest.approx(1.2 * 1.1 ** 2 * 1.15 ** 2) == pytest.approx(1.92, abs=1e-3)
    assert rule.coefficients(0) == ScalingCoefficients(1.0, 1.0, 224)
    one = rule.coefficients(1)
    assert (one.width, one.depth, one.resolution) == (pytest.approx(1.1), pytest.approx(1.2), 258)
    three = rule.coefficients(3)
    assert (three.width, three.depth) == (pytest.approx(1.1 ** 3), pytest.approx(1.2 ** 3))
    # FLOPs ~ depth * width^2 * resolution^2 grow by the product per unit of phi
    growth = three.depth * three.width ** 2 * (224 * 1.15 ** 3 / 224) ** 2
    assert growth == pytest.approx(rule.flops_growth ** 3)


def test_the_constraint_is_enforced():
    with pytest.raises(ValueError, match="not within"):
        CompoundScaling(alpha=1.5, beta=1.3, gamma=1.3)  # FLOPs would grow 4.3x per phi
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        CompoundScaling(alpha=0.9, beta=1.2, gamma=1.2)
    with pytest.raises(ValueError, match="phi"):
        CompoundScaling().coefficients(-1)
    with pytest.raises(ValueError, match="width must be a positive"):
        ScalingCoefficients(0.0, 1.0, 224)


def test_the_grid_search_space_holds_the_papers_choice():
    grid = list(constrained_grid(step=0.05))
    assert (1.2, 1.1, 1.15) in grid
    assert all(abs(a * b * b * g * g - 2) <= 0.1 for a, b, g in grid)
    assert (1.0, 1.0, 1.0) not in grid and len(grid) > 10


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_scale_stages_gives_the_published_models_stages(name):
    width, depth, resolution = PUBLISHED[name]
    scaled = scale_stages([(c, n) for *_, c, n in B0_STAGES], ScalingCoefficients(width, depth, resolution))
    with torch.device("meta"):
        model = vertebra.create_model(name)
    assert scaled == [(stage[0].project.conv.out_channels, len(stage)) for stage in model.stages]


def test_scale_stages_spot_check_b7():
    # torchvision's efficientnet_b7 (printed from the reference): channels and layers of features.1-7
    b7 = scale_stages([(c, n) for *_, c, n in B0_STAGES], ScalingCoefficients(2.0, 3.1, 600))
    assert b7 == [(32, 4), (48, 7), (80, 7), (160, 10), (224, 10), (384, 13), (640, 4)]


def test_scale_model_builds_any_family_with_width_and_depth_multipliers():
    with torch.device("meta"):
        b7 = scale_model("efficientnet_b0", ScalingCoefficients(2.0, 3.1, 600), drop_rate=0.5)
        assert count_params(b7) == vertebra.model_info("efficientnet_b7").params
        with pytest.raises(TypeError, match="width_mult"):
            scale_model("resnet50", CompoundScaling().coefficients(1))


def scaled_trial(spec):
    """Instant: accuracy grows with depth and resolution, less with width (step 1 must find depth)."""
    kwargs = spec["genotype"]["kwargs"]
    accuracy = 0.5 + 0.2 * kwargs["depth_mult"] + 0.1 * kwargs["width_mult"] + 0.002 * spec["input_size"]
    return {"trial": spec["trial"], "genotype": spec["genotype"], "history": [min(accuracy, 0.99)],
            "macs": int(1e6 * kwargs["depth_mult"] * kwargs["width_mult"] ** 2 * (spec["input_size"] / 32) ** 2),
            "input_size": spec["input_size"], "epochs": spec["epochs"]}


def test_the_search_trains_the_grid_finds_the_best_and_resumes(tmp_path, monkeypatch):
    from vertebra.design.nas import TrialSettings
    from vertebra.design.nas.plots import plot_scaling
    from vertebra.design.scaling import scaled_genotype, scaling_curves, search_coefficients

    calls = []
    monkeypatch.setattr("vertebra.design.nas.trial.run_trial", lambda spec: calls.append(spec) or scaled_trial(spec))
    assert scaled_genotype("mobilenet_v2_050", ScalingCoefficients(1.2, 1.5, 32))["kwargs"] == \
        {"width_mult": 0.6, "depth_mult": 1.5}  # the baseline's own 0.5 times beta
    with pytest.raises(ValueError, match="resnet18 takes no width_mult or depth_mult"):
        scaled_genotype("resnet18", ScalingCoefficients(1.0, 1.0, 32))
    settings = TrialSettings(epochs=1)
    scaling, grid = search_coefficients("mobilenet_v2_050", settings, tmp_path / "grid", step=0.2, executor="inline")
    assert (scaling.alpha, scaling.beta, scaling.gamma) == (2.0, 1.0, 1.0)  # depth pays most in the fake
    assert grid[0]["label"] == "baseline" and len(grid) == 1 + len(list(constrained_grid(0.2)))
    assert [r["resolution"] for r in grid if r["label"] == "alpha 1, beta 1, gamma 1.4"] == [45]
    trained = len(calls)
    again, _ = search_coefficients("mobilenet_v2_050", settings, tmp_path / "grid", step=0.2, executor="inline")
    assert len(calls) == trained and again == scaling  # resumed from the journal: nothing trained twice
    with pytest.raises(ValueError, match="holds a grid of other settings"):
        search_coefficients("mobilenet_v2_050", settings, tmp_path / "grid", step=0.5, executor="inline")
    curves = scaling_curves("mobilenet_v2_050", scaling, settings, tmp_path / "curves", phis=(1, 2), executor="inline")
    assert [r["label"] for r in curves] == ["baseline"] + ["width", "depth", "resolution", "compound"] * 2
    at_phi_2 = {r["label"]: r for r in curves[5:]}  # each dimension alone grows FLOPs as compound does: 2^phi
    assert at_phi_2["depth"]["genotype"]["kwargs"]["depth_mult"] == 4.0 and at_phi_2["resolution"]["resolution"] == 64
    assert at_phi_2["width"]["genotype"]["kwargs"]["width_mult"] == 1.0  # 0.5 x 2
    assert {spec["small_input"] for spec in calls} == {True} and {spec["seed"] for spec in calls} == {0}
    compound = [r for r in curves if r["label"] == "compound"]
    assert [r["genotype"]["kwargs"]["depth_mult"] for r in compound] == [2.0, 4.0]
    figure = plot_scaling(curves, tmp_path / "scaling.png", "fake")
    assert figure.read_bytes()[:4] == b"\x89PNG"


def test_depth_multiplier_resolution_and_the_grid_limit():
    from vertebra.train.data import digits

    deeper = vertebra.create_model("mobilenet_v2_050", depth_mult=1.5, num_classes=10, small_input=True)
    assert sum(len(stage) for stage in deeper.stages) == 28  # the rows' 1,2,3,4,3,3,1 repeats x1.5, rounded up
    assert digits(48).train.images.shape[-1] == 48 and digits().train.images.shape[-1] == 32
    assert max(max(point) for point in constrained_grid(0.15, 2.0)) <= 2.0


def test_the_command_line_builds_a_scaled_baseline(capsys):
    from vertebra.cli import main

    assert main(["scale", "build", "mobilenet_v2_050", "--phi", "2"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "width_mult 0.605, depth_mult 1.44, resolution 42" in out
    assert main(["scale", "search", "resnet18", "--out", "/nonexistent/never"]) == 2  # refused before any work
    assert "resnet18 takes no width_mult or depth_mult" in capsys.readouterr().err


@pytest.mark.parametrize("name, layers", [("mobilenet_v1_050", 13), ("mobilenet_v3_small", 11),
                                          ("mobilenet_v2_050", 17), ("efficientnet_b0", 16)])
def test_every_family_with_a_width_multiplier_takes_a_depth_multiplier_that_deepens_it(name, layers):
    """Compound scaling's depth axis in every family that has its width axis; MobileNet V1 and V3 list
    each layer, so a stage deepens as a whole, its last rows repeated first."""
    with torch.device("meta"):
        base, deeper = (vertebra.create_model(name, depth_mult=d) for d in (1.0, 1.5))
        wider = vertebra.create_model(name, width_mult=1.5)
    assert sum(len(stage) for stage in base.stages) == layers
    assert sum(len(stage) for stage in deeper.stages) > layers
    assert count_params(wider) > count_params(base)
    assert all(len(d) >= len(b) for d, b in zip(deeper.stages, base.stages))


def test_spread_repeats_gives_extra_layers_to_the_last_rows():
    from vertebra.layers.scaling import spread_repeats

    assert spread_repeats([1, 1], 1.0) == [1, 1] and spread_repeats([1, 1, 1], 1.5) == [1, 2, 2]
    assert sum(spread_repeats([1] * 6, 1.2)) == 8
