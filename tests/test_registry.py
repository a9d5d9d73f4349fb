import json
import subprocess
import sys
from pathlib import Path

import pytest

import vertebra
from vertebra.registry import register


def test_list_models_with_wildcards():
    assert "resnet50" in vertebra.list_models()
    resnets = vertebra.list_models("resnet*")
    assert "resnet50" in resnets and "se_resnet50" not in resnets and resnets == sorted(resnets)
    assert vertebra.list_models("se_res*50*") == ["se_resnet50", "se_resnext50_32x4d"]
    assert vertebra.list_models("nothing*") == []


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match="unknown model 'resnet5'; did you mean resnet50"):
        vertebra.create_model("resnet5")
    with pytest.raises(ValueError, match="list_models"):
        vertebra.model_info("qqqqqqq")
    with pytest.raises(TypeError, match="must be a str"):
        vertebra.create_model(50)


def test_unknown_keyword_is_named():
    with pytest.raises(TypeError, match="unexpected keyword argument\\(s\\) 'widht_mult'"):
        vertebra.create_model("resnet18", widht_mult=2)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(num_classes=-1), ValueError, "num_classes must be >= 0, got -1"),
    (dict(num_classes=2.5), TypeError, "num_classes must be an int"),
    (dict(in_chans=0), ValueError, "in_chans must be >= 1"),
    (dict(drop_rate=1.5), ValueError, "drop_rate must be in"),
    (dict(small_input="yes"), TypeError, "small_input must be a bool"),
    (dict(out_indices=(1,)), ValueError, "only with features_only"),
    (dict(features_only=True, out_indices=("a",)), TypeError, "out_indices must hold ints"),
    (dict(features_only=True, out_indices=(1, -3)), ValueError, "names a feature level twice"),
])
def test_bad_arguments_get_clear_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        vertebra.create_model("resnet18", **kwargs)


def test_model_card_and_what_create_model_records():
    card = vertebra.model_info("resnet50")
    assert (card.family, card.year, card.arxiv, card.input_size) == ("resnet", 2015, "1512.03385", 224)
    assert card.params == 25_557_032 and "torchvision" in card.reference and "stride" in card.notes
    model = vertebra.create_model("resnet50", num_classes=10)
    assert model.model_name == "resnet50" and model.model_kwargs["num_classes"] == 10


def test_cifar_networks_default_to_their_dataset():
    model = vertebra.create_model("preact_resnet110")
    assert model.num_classes == 10 and model.small_input and model.default_input_size == 32


def test_registration_rules():
    with pytest.raises(ValueError, match="registered twice"):
        register("resnet50", family="x")(lambda num_classes=1: None)
    with pytest.raises(TypeError, match="\\*\\*kwargs"):
        register("loose_model", family="x")(lambda **kwargs: None)


def test_library_never_imports_the_reference_libraries():
    code = "import sys, vertebra; print(sorted({'torchvision', 'timm'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    src = Path(vertebra.__file__).parent
    offenders = [p for p in src.rglob("*.py") if any(line.lstrip().startswith(("import torchvision", "import timm", "from torchvision", "from timm"))
                                                     for line in p.read_text().splitlines())]
    assert not offenders


def test_aliases_resolve_list_and_never_shadow_a_model():
    from vertebra.registry import aliases_of, register_alias, resolve

    assert resolve("mobilenetv3_large_100") == "mobilenet_v3_large" and resolve("resnetv2_50") == "preact_resnet50"
    assert resolve("mnasnet_100") == "mnasnet1_0" and resolve("bninception") == "bn_inception_caffe"
    assert "mobilenet_v2" in vertebra.list_models("mobilenet*", include_aliases=True)
    assert "mobilenet_v2" not in vertebra.list_models("mobilenet*")
    assert aliases_of("mobilenet_v2_100") == ["mobilenet_v2", "mobilenetv2_100"]
    assert resolve("googlenet") == "googlenet"  # vertebra's paper network keeps its name
    with pytest.raises(ValueError, match="'googlenet' is a registered model; an alias may not shadow it"):
        register_alias("googlenet", "googlenet_tv")
    with pytest.raises(ValueError, match="already resolves to 'mobilenet_v2_100'"):
        register_alias("mobilenet_v2", "mobilenet_v2_050")
    with pytest.raises(ValueError, match="did you mean .*mobilenet_v2"):
        vertebra.create_model("mobilenet_v22")


def test_list_and_info_name_aliases_and_count_missing_macs(capsys):
    from vertebra.cli import main

    assert main(["list", "alexnet*", "--json"]) == 0
    assert {c["name"]: c["aliases"] for c in json.loads(capsys.readouterr().out)} == {"alexnet": [], "alexnet_tv": []}
    assert main(["list", "legacy_xception"]) == 0  # an alias finds its model
    out = capsys.readouterr().out
    assert "xception" in out and "legacy_xception" in out
    assert main(["list", "preact_resnet110"]) == 0
    assert "0.25G*" in capsys.readouterr().out  # the paper gives no MACs: counted, and marked so
    assert main(["info", "mobilenetv2_100"]) == 0
    assert "mobilenet_v2_100 (the model 'mobilenetv2_100' names)" in capsys.readouterr().out


def test_weights_never_import_the_registry():
    """One direction: create_model loads weights; the weights package never looks a model up."""
    import ast

    root = Path(vertebra.weights.__file__).parent
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "registry" not in (node.module or ""), path
