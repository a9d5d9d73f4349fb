import os
import tempfile

import pytest
import torch

import vertebra

ALL_MODELS = vertebra.list_models()

# vertebra train's bf16 decisions are cached per machine (train/precision.py): the tests' go to a
# folder of their own, never to the user's ~/.cache.
os.environ["VERTEBRA_CACHE_DIR"] = tempfile.mkdtemp(prefix="vertebra-test-cache-")

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each
    torch.set_num_threads(1)
# Subnormal floats flushed, as NetAdapt's timings and the deployment runtimes do: the briefly trained
# networks of the tests carry tiny values that x86 computes up to 50x slower.  Set once for every test,
# so that no test's speed or arithmetic depends on which test ran before it in the same worker.
torch.set_flush_denormal(True)


def test_size(model) -> int:
    """A small input every stage can reduce: twice the model's minimum, at least 32."""
    return max(32, 2 * model.min_input_size)


test_size.__test__ = False  # a helper, not a test


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Keep `--dist loadgroup`'s groups (the NAS search tests share one reference search on one worker).

    pytest-xdist sends a group to one worker by appending "@group" to each of its tests' node ids, but
    writes ``item._nodeid``, which pytest 9.2 no longer reads (node ids are structured), so every group
    is silently split (pytest-xdist#1386).  This worker-side hook, run after xdist's, applies the id it
    wrote; without xdist, or once xdist writes the id itself, there is nothing to do.
    """
    for item in items:
        grouped = getattr(item, "_nodeid", None)
        if isinstance(grouped, str) and grouped != item.nodeid and hasattr(item, "_id"):
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(grouped)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# The smallest real training run: a one-layer NAS child on 32 digits, two epochs (about 0.3 s).
TINY_GENOTYPE = {"space": "nas_cnn", "layers": [{"filter_height": 3, "filter_width": 3, "filters": 8, "stride": 1,
                                                 "inputs": []}]}


def draw_no_curves(monkeypatch) -> None:
    """Training writes curves.png after every epoch through the same atomic write, without drawing it
    (0.2 s an epoch with matplotlib): for tests of what a long run learns, not of its pictures."""
    from vertebra import durable

    def picture(history, path, title):
        return durable.write_file(path, lambda temporary: temporary.write_bytes(b"\x89PNG"))

    monkeypatch.setattr("vertebra.train.loop.plot_history", picture)


@pytest.fixture
def quick_curves(monkeypatch):
    draw_no_curves(monkeypatch)


@pytest.fixture
def tiny_run() -> dict:
    """TrainConfig keyword arguments of the smallest real training run; it improves at epoch 2."""
    return dict(model="nas_child", epochs=2, batch_size=16, limit=32, optimizer="adamw", lr=0.003,
                model_kwargs={"genotype": TINY_GENOTYPE, "input_pool": 4})


# VGG's fully connected head holds 120-124M of each VGG's 133-144M parameters at any num_classes
# and input size (fc6 reads the 7x7 pool5 grid: 25088 x 4096).  Copying and serialising it is
# most of the time a VGG takes in the registry-wide tests, and nothing they check depends on its
# width: lean_model gives each VGG its head with fc6 and fc7 LEAN_HIDDEN wide (the same layers,
# the same initialisation, the same operations), and FULL_WIDTH_VGG, the largest, keeps its real
# width in every one of those tests.
LEAN_HIDDEN = 64
FULL_WIDTH_VGG = "vgg19_bn"


# The tests that trace every model (ONNX and TorchScript export, optimize's oneDNN Graph path) check
# a deeper or wider variant through its smaller twin: a model built of exactly the same module types
# (each test checks that they are) traces through the same code, and tracing the 17 variants took
# about 220 of the suite's 2,040 worker-seconds; preact_resnet1001's 3,000-op graph alone 90.  The
# eager tests (the contract, parity with the reference, cards, diagrams) still run every model.
SHALLOWER_TWIN = {
    **dict.fromkeys(("resnet101", "resnet152"), "resnet50"),
    **dict.fromkeys(("preact_resnet101", "preact_resnet152"), "preact_resnet50"),
    "preact_resnet1001": "preact_resnet164",
    **dict.fromkeys(("resnext101_32x4d", "resnext101_32x8d", "resnext101_64x4d"), "resnext50_32x4d"),
    **dict.fromkeys(("se_resnet101", "se_resnet152"), "se_resnet50"),
    "se_resnext101_32x4d": "se_resnext50_32x4d",
    **dict.fromkeys(("densenet161", "densenet169", "densenet201"), "densenet121"),
    **dict.fromkeys(("efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7"), "efficientnet_b0"),
}


def checked_through_twin(name: str, model, **kwargs) -> bool:
    """True for a model whose tracing tests check its smaller twin instead, after asserting that the twin
    (built with ``kwargs``) has exactly ``model``'s module types."""
    if name not in SHALLOWER_TWIN:
        return False
    types = {type(module) for module in model.modules()}
    assert {type(module) for module in lean_model(SHALLOWER_TWIN[name], **kwargs).modules()} == types
    return True


def lean_model(name: str, **kwargs):
    """``vertebra.create_model(name, **kwargs)``; for a VGG but FULL_WIDTH_VGG, fc6 and fc7 LEAN_HIDDEN wide."""
    lean = vertebra.model_info(name).family == "vgg" and name != FULL_WIDTH_VGG
    if not lean or kwargs.get("num_classes") == 0 or kwargs.get("features_only"):  # no fc layers to narrow
        return vertebra.create_model(name, **kwargs)
    num_classes, pretrained = kwargs.pop("num_classes", None), kwargs.pop("pretrained", None)
    model = vertebra.create_model(name, num_classes=0, **kwargs)  # the convolutions, no fc layers yet
    model.head.hidden = LEAN_HIDDEN
    model.reset_classifier(1000 if num_classes is None else num_classes)  # fc6-fc8 as fine-tuning builds them
    model.model_kwargs["num_classes"] = model.num_classes
    if pretrained is not None:  # create_model's own step once the model is built
        vertebra.load_weights(model, pretrained, adapt=True)
    return model


@pytest.fixture(scope="session")
def digits_model(tmp_path_factory):
    """MobileNet V2 (0.35, 32x32 stem) trained 5 epochs on the digits (97.4% test accuracy), once per worker, for the
    tests that compare reduced precision with float32 (mark them xdist_group("digits_model")).
    Returns (model, weights file)."""
    from rich.console import Console

    from vertebra.train import TrainConfig, train
    from vertebra.train.checkpoint import load_checkpoint

    run = tmp_path_factory.mktemp("digits_model") / "run"
    with pytest.MonkeyPatch.context() as patch:
        draw_no_curves(patch)
        train(TrainConfig("mobilenet_v2_035", epochs=5, optimizer="adamw", out=run), Console(quiet=True))
    model = vertebra.create_model("mobilenet_v2_035", num_classes=10, small_input=True)
    record = load_checkpoint(run, model)
    return model.eval(), run / record["weights"]
