"""vertebra's own weights format, foreign checkpoints through key maps, and refusing pickles."""
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import vertebra
from vertebra.testing import relative_error, synthetic_input, synthetic_state_dict

FIXTURES = Path(__file__).parent / "fixtures" / "reference"


def reference_state(name):
    info = json.loads((FIXTURES / f"{name}.json").read_text())
    return info, synthetic_state_dict(info["manifest"], info["seed"])


def reference_logits_error(model, name, info):
    recorded = load_file(FIXTURES / f"{name}.safetensors")
    size = info["sizes"][0]
    with torch.no_grad():
        out = model.eval()(synthetic_input((info["batch"], 3, size, size), info["seed"]))
    return relative_error(out, recorded[f"logits_{size}"])


def test_torchvision_pth_checkpoint_loads_through_the_key_map(tmp_path):
    info, state = reference_state("resnet18")
    torch.save(state, tmp_path / "resnet18-tv.pth")
    model = vertebra.create_model("resnet18")
    report = vertebra.load_weights(model, tmp_path / "resnet18-tv.pth")
    assert report.layout == "torchvision_resnet"
    assert reference_logits_error(model, "resnet18", info) <= 1e-4


def test_timm_safetensors_checkpoint_loads_through_create_model(tmp_path):
    info, state = reference_state("preact_resnet18")
    save_file(state, tmp_path / "resnetv2_18.safetensors")
    model = vertebra.create_model("preact_resnet18", pretrained=tmp_path / "resnetv2_18.safetensors")
    assert reference_logits_error(model, "preact_resnet18", info) <= 1e-4


def test_nested_distributed_checkpoint_loads(tmp_path):
    info, state = reference_state("resnet18")
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp.pt")
    model = vertebra.create_model("resnet18")
    vertebra.load_weights(model, tmp_path / "ddp.pt")
    assert reference_logits_error(model, "resnet18", info) <= 1e-4


class Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(EXPLOIT_MARKER),))


EXPLOIT_MARKER = "/tmp/vertebra-exploit-ran"


def test_a_pickled_object_is_refused_and_never_run(tmp_path):
    Path(EXPLOIT_MARKER).unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"conv1.weight": Exploit()}, protocol=2))
    with pytest.raises(ValueError, match="pickled Python objects"):
        vertebra.load_weights(vertebra.create_model("resnet18"), path)
    assert not Path(EXPLOIT_MARKER).exists()
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")  # a whole pickled module
    with pytest.raises(ValueError, match="never unpickles code"):
        vertebra.load_weights(vertebra.create_model("resnet18"), tmp_path / "module.pt")


def test_mismatch_names_missing_unexpected_and_conflicting_keys(tmp_path):
    path = vertebra.save_weights(vertebra.create_model("resnet18"), tmp_path / "r18.safetensors")
    with pytest.raises(ValueError) as error:
        vertebra.load_weights(vertebra.create_model("resnet34"), path)
    message = str(error.value)
    assert "missing (" in message and "stages.0.2.conv1.conv.weight" in message
    assert "saved from 'resnet18'" in message
    state = vertebra.create_model("resnet18").state_dict()
    state["extra.weight"] = torch.zeros(1)
    state["stages.0.0.conv1.conv.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(ValueError) as error:
        vertebra.load_weights(vertebra.create_model("resnet18"), tmp_path / "odd.pth")
    assert "unexpected (1): extra.weight" in str(error.value)
    assert "shape conflicts (1): stages.0.0.conv1.conv.weight (64, 64, 1, 1) vs model (64, 64, 3, 3)" in str(error.value)


def test_a_failed_load_changes_nothing(tmp_path):
    model = vertebra.create_model("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"fc.weight": torch.zeros(1000, 512)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing"):
        vertebra.load_weights(model, tmp_path / "partial.pth")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_pretrained_adapts_classifier_and_input_channels(tmp_path):
    info, state = reference_state("resnet18")
    torch.save(state, tmp_path / "tv.pth")
    model = vertebra.create_model("resnet18", num_classes=10, in_chans=1, pretrained=tmp_path / "tv.pth")
    assert model.head.fc.weight.shape == (10, 512)
    torch.testing.assert_close(model.stem.conv1.conv.weight, state["conv1.weight"].sum(1, keepdim=True))
    torch.testing.assert_close(model.stages[3][1].conv2.bn.running_var, state["layer4.1.bn2.running_var"])
    six = vertebra.create_model("resnet18", in_chans=6, pretrained=tmp_path / "tv.pth")
    # RGB tiled twice and halved: a grey image gives the same response as through RGB
    conv6, conv3 = six.stem.conv1.conv.weight, state["conv1.weight"]
    torch.testing.assert_close(conv6[:, 3:], conv3 / 2)
    torch.testing.assert_close(conv6.sum((1, 2, 3)), conv3.sum((1, 2, 3)))
    five = vertebra.create_model("resnet18", in_chans=5, pretrained=tmp_path / "tv.pth")
    torch.testing.assert_close(five.stem.conv1.conv.weight[:, 3:], conv3[:, :2] * 3 / 5)


def test_features_only_loads_full_weights(tmp_path):
    info, state = reference_state("resnet50")
    torch.save(state, tmp_path / "r50.pth")
    features = vertebra.create_model("resnet50", features_only=True, out_indices=(1, 2), pretrained=tmp_path / "r50.pth")
    torch.testing.assert_close(features.stages[2][0].conv1.conv.weight, state["layer3.0.conv1.weight"])
    later = vertebra.create_model("resnet50", features_only=True, out_indices=(0,))
    report = vertebra.load_weights(later, tmp_path / "r50.pth")
    assert "head.fc.weight" in report.skipped


def test_own_format_carries_its_card(tmp_path):
    model = vertebra.create_model("resnet18", num_classes=3, drop_rate=0.1)
    path = vertebra.save_weights(model, tmp_path / "mine.safetensors", metadata={"epochs": 2})
    _, card = vertebra.weights.read_weights(path)
    assert card["model"] == "resnet18" and card["metadata"] == {"epochs": 2}
    assert card["kwargs"]["num_classes"] == 3 and card["kwargs"]["drop_rate"] == 0.1


def test_save_is_atomic_and_keeps_the_old_file_on_failure(tmp_path, monkeypatch):
    path = vertebra.save_weights(vertebra.create_model("resnet18"), tmp_path / "keep.safetensors")
    original = path.read_bytes()

    def failing_save(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(vertebra.weights.io, "save_file", failing_save)
    with pytest.raises(ValueError, match=r"cannot write .*keep.safetensors: disk full"):  # one line, the path named
        vertebra.save_weights(vertebra.create_model("resnet18"), path)
    assert path.read_bytes() == original
    assert [p.name for p in tmp_path.iterdir()] == ["keep.safetensors"]


def test_bad_paths_and_files(tmp_path):
    model = vertebra.create_model("resnet18")
    with pytest.raises(ValueError, match=".safetensors"):
        vertebra.save_weights(model, tmp_path / "weights.pth")
    with pytest.raises(ValueError, match="does not exist"):
        vertebra.save_weights(model, tmp_path / "no" / "w.safetensors")
    with pytest.raises(FileNotFoundError, match="not found"):
        vertebra.load_weights(model, tmp_path / "absent.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="safetensors"):
        vertebra.load_weights(model, tmp_path / "junk.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="checkpoint"):
        vertebra.load_weights(model, tmp_path / "junk.pth")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="neither vertebra's names"):
        vertebra.load_weights(model, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="layout 'timm_resnetv2' is not one resnet18 loads"):
        vertebra.load_weights(model, tmp_path / "other.pth", layout="timm_resnetv2")


def test_auxiliary_classifiers_adapt_and_switch_off(tmp_path):
    """torchvision-layout GoogLeNet weights into another num_classes, and into aux_logits=False."""
    info, state = reference_state("googlenet_tv")
    torch.save(state, tmp_path / "googlenet.pth")
    model = vertebra.create_model("googlenet_tv", num_classes=7, pretrained=tmp_path / "googlenet.pth")
    assert model.aux1.fc2.weight.shape == (7, 1024) and model.head.fc.weight.shape == (7, 1024)
    torch.testing.assert_close(model.aux1.fc1.weight, state["aux1.fc1.weight"])
    plain = vertebra.create_model("googlenet_tv", aux_logits=False, pretrained=tmp_path / "googlenet.pth")
    assert plain.aux1 is None
    assert reference_logits_error(plain, "googlenet_tv", info) <= 1e-4
