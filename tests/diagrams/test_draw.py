"""vertebra.draw: every model at both levels of detail, what the pictures say, and bad input."""
import html
import itertools
import re

import pytest
import torch
from torch import nn

import vertebra
from tests.conftest import ALL_MODELS, test_size
from vertebra.cli import main
from vertebra.diagrams import draw
from vertebra.diagrams.layout import Box, layout
from vertebra.diagrams.trace import trace

KNOWN_LAYERS = {"ConvNormAct", "NormAct", "SeparableConv", "SqueezeExcite", "ChannelShuffle"}


def svg_lines(path) -> list[str]:
    """The page's text, one entry per <text> element, in drawing order."""
    return [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", path.read_text())]


def is_custom_block(module: nn.Module) -> bool:
    """A class of the model's own (not torch.nn's, not a known layer) with parts."""
    cls = type(module)
    return (not cls.__module__.startswith("torch.") and cls.__name__ not in KNOWN_LAYERS
            and any(True for _ in module.children()))


def stage_runs(stage: nn.Module) -> list[str]:
    """"Bottleneck ×3" for every run of equal blocks directly in a stage."""
    if type(stage) is not nn.Sequential:
        return []
    names = [type(child).__name__ if is_custom_block(child) else None for child in stage.children()]
    return [f"{name} ×{n}" if (n := len(list(group))) > 1 else name
            for name, group in itertools.groupby(names) if name is not None]


def blocks_in(module: nn.Module, unit: bool = True) -> list[nn.Module]:
    """The custom blocks inside ``module``, through plain containers, at any depth; a separable
    convolution that is a stage's unit (MobileNet V1's) is a block too."""
    found = []
    for child in module.children():
        if type(child) in (nn.Sequential, nn.ModuleList, nn.ModuleDict):
            found += blocks_in(child, unit)
        elif is_custom_block(child) or unit and type(child).__name__ == "SeparableConv":
            found += [child, *blocks_in(child, unit=False)]
    return found


@pytest.fixture(scope="module")
def meta_models():
    cache = {}

    def build(name):
        if name not in cache:
            with torch.device("meta"):
                cache[name] = vertebra.create_model(name).eval()
        return cache[name]
    return build


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_draws_its_network(name, meta_models, tmp_path):
    model = meta_models(name)
    path = draw(model, "network", test_size(model), tmp_path / f"{name}.svg").model and tmp_path / f"{name}.svg"
    lines = svg_lines(path)
    text = "\n".join(lines)
    assert lines[0] == f"{name}: the network"
    for index, stage in enumerate(model.stages):
        line = next(l for l in lines if l.startswith(f"stage {index + 1}: "))
        stage_lines = lines[lines.index(line):]
        for run in stage_runs(stage):  # the blocks and their repeat counts, in the stage's box
            assert any(re.fullmatch(rf"{run}(: \w+ ×\d+)?", l.removeprefix(f"stage {index + 1}: "))
                       for l in stage_lines[:8]), (index, run)
    if name.split("_")[0] not in ("rnn", "lstm", "bilstm"):
        for info in model.feature_info:
            assert f"{info.channels} × " in text, info
    shares = [float(s) for s in re.findall(r"MACs ([\d.]+)%", text)]
    assert abs(sum(shares) - 100) <= 0.5 * len(shares) + 0.1, shares  # every MAC is in one box


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_draws_its_blocks(name, meta_models, tmp_path):
    model = meta_models(name)
    path = tmp_path / f"{name}.svg"
    draw(model, "blocks", test_size(model), path)
    lines = svg_lines(path)
    instances = [block for unit in (model.stem, *model.stages) for block in blocks_in(unit)
                 if type(block) is not nn.Sequential]
    instances += [stage for stage in model.stages if is_custom_block(stage) and type(stage) is not nn.Sequential]
    drawn: dict[str, int] = {}
    for index, line in enumerate(lines[:-2]):  # a panel's title: its class, where, how many like it
        count = re.fullmatch(r"(\d+) (?:like it )?in the model", lines[index + 2])
        if count:
            drawn[line] = drawn.get(line, 0) + int(count.group(1))
    for cls in {type(b).__name__ for b in instances}:
        assert drawn.get(cls) == sum(type(b).__name__ == cls for b in instances), (cls, drawn)
    if not instances:
        recurrent = [type(s).__name__ for s in model.stages if hasattr(s, "hidden_size")]
        expected = [f"{recurrent[0]} cell, one time step"] if recurrent else ["stage 1"]
        assert any(line in lines for line in expected), lines[:5]


# -- what the pictures say: the data flow of the papers' figures ---------------------------------
def block_graphs(model, size=64):
    from vertebra.diagrams import _block_scopes

    with torch.no_grad():
        return {g.path: g for g in trace(model, torch.zeros(1, model.in_chans, size, size, device="meta"),
                                         _block_scopes(model))}


def node(graph, label):
    return next(n for n in graph.nodes if n.label == label)


def test_residual_blocks_add_an_identity_or_a_projection(meta_models):
    graphs = block_graphs(meta_models("resnet50"))
    projection, identity = graphs["stages.0.0"], graphs["stages.0.1"]
    assert [graphs_input.index for graphs_input in identity.nodes if graphs_input.kind == "input"] == [0]
    assert sorted(node(identity, "+").inputs) == [0, node(identity, "conv3").index]  # x + F(x)
    assert sorted(node(projection, "+").inputs) == sorted([node(projection, "conv3").index,
                                                          node(projection, "downsample").index])
    assert node(projection, "downsample").inputs == [0]


def test_shufflenet_v2_unit_splits_concatenates_and_shuffles(meta_models):
    unit = block_graphs(meta_models("shufflenet_v2_x1_0"))["stages.0.1"]
    split, concat = node(unit, "split"), node(unit, "concat")
    shuffle = node(unit, "channel shuffle")
    assert split.inputs == [0] and split.index in concat.inputs  # the kept half goes straight to concat
    assert shuffle.inputs == [concat.index]


def test_inception_module_concatenates_four_branches(meta_models):
    module = block_graphs(meta_models("googlenet"))["stages.1.inception3a"]
    concat = node(module, "concat")
    assert len(concat.inputs) == 4
    first_layers = [n for n in module.nodes if n.inputs == [0]]
    assert len(first_layers) == 4  # each branch reads the module's input


def test_a_dense_block_says_how_many_layers_it_repeats(meta_models):
    text = draw(meta_models("densenet121"), "network", 64).text()
    for index, layers in enumerate((6, 12, 24, 16)):
        assert f"DenseBlock: DenseLayer ×{layers}" in text


def test_dense_layers_read_every_earlier_map(meta_models):
    block = block_graphs(meta_models("densenet121"))["stages.0.denseblock"]
    layers = [n for n in block.nodes if type(n.module).__name__ == "DenseLayer"]
    assert len(layers) == 6
    for k, layer in enumerate(layers):
        assert layer.inputs == [0] + [earlier.index for earlier in layers[:k]]


def test_nas_child_wiring_follows_its_genotype(meta_models):
    from vertebra.diagrams import _network

    model = meta_models("nas_child")
    graph = _network(model, torch.zeros(1, 3, 32, 32, device="meta"))
    layers = {n.label: n for n in graph.nodes if n.label.startswith("stages.")}
    index_of = {n.index: int(label.split(".")[1]) for label, n in layers.items()}
    for i, stage in enumerate(model.stages):
        read = [index_of[j] for j in layers[f"stages.{i}"].inputs if j in index_of]
        assert read == list(stage.inputs), (i, read, stage.inputs)


def test_lstm_cell_shows_its_gates_and_the_cell_state_path(tmp_path):
    path = tmp_path / "lstm.svg"
    draw("lstm_classifier", "blocks", out=path)
    lines = svg_lines(path)
    for gate in ("input gate", "forget gate", "candidate", "output gate", "c_t-1", "c_t", "h_t"):
        assert gate in lines, gate
    from vertebra.diagrams import _cell_panel

    panel = _cell_panel(vertebra.create_model("lstm_classifier").stages[0])
    text = [t[0] for t in panel.texts]
    c_new = panel.inputs[text.index("c_t")][0]  # c_t = f * c_t-1 + i * g
    assert text[c_new] == "+"
    products = [text[i] for i in panel.inputs[c_new]]
    assert products == ["×", "×"]
    assert any(text.index("c_t-1") in panel.inputs[i] for i in panel.inputs[c_new])


def test_an_unknown_module_is_a_labelled_box(tmp_path):
    class Mystery(nn.Module):
        def forward(self, x):
            return x.flip(1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.odd = Mystery()
            self.fc = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

        def forward(self, x):
            return self.fc(self.odd(self.conv(x)) + self.conv(x))

    net = Net().train()
    diagram = draw(net, "network", input_size=16, out=tmp_path / "net.png")
    assert net.training  # drawing does not change the model's mode
    assert "Mystery" in diagram.text() and "3×3 conv, 8" in diagram.text()
    assert (tmp_path / "net.png").read_bytes()[:4] == b"\x89PNG"
    assert "Net" in draw(Net(), "blocks", input_size=16).text()


def test_layout_keeps_boxes_apart_and_arrows_on_their_targets():
    # a chain 0 -> 1 -> 2 -> 4, a branch 0 -> 3 -> 4 and a shortcut 0 -> 4
    boxes = [Box(1.0, 0.4), Box(1.2, 0.4, [0]), Box(0.8, 0.4, [1]), Box(1.5, 0.4, [0]), Box(1.0, 0.4, [2, 0, 3])]
    placed = layout(boxes)
    for a, b in itertools.combinations(range(len(boxes)), 2):
        if placed.y[a] == placed.y[b]:
            assert abs(placed.x[a] - placed.x[b]) >= (boxes[a].width + boxes[b].width) / 2, (a, b)
    for source, target, points in placed.edges:
        assert points[0] == (placed.x[source], placed.y[source] + boxes[source].height)
        assert points[-1] == (placed.x[target], placed.y[target])
        assert all(y1 <= y2 for (_, y1), (_, y2) in zip(points, points[1:]))  # always downwards
    with pytest.raises(ValueError, match="execution order"):
        layout([Box(1, 1, [1]), Box(1, 1)])


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_gets_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown model"):
        draw("resnet51")
    with pytest.raises(ValueError, match="detail must be one of"):
        draw("resnet18", "layers")
    with pytest.raises(ValueError, match=".svg or .png"):
        draw("resnet18", out=tmp_path / "r.pdf")
    with pytest.raises(ValueError, match="at least"):
        draw("resnet18", input_size=8)
    with pytest.raises(TypeError, match="nn.Module or a model name"):
        draw(3)
    existing = tmp_path / "r.svg"
    existing.write_text("mine")
    with pytest.raises(ValueError, match="exists: pass force"):
        draw("resnet18", out=existing)
    assert existing.read_text() == "mine"  # nothing a user saved is lost
    draw("resnet18", out=existing, force=True)
    assert "resnet18: the network" in svg_lines(existing)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.svg"]  # no temporary file left


def test_cli_draws_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "r.svg"
    assert main(["draw", "resnet18", "--out", str(out), "--detail", "blocks", "--input-size", "64"]) == 0
    assert "BasicBlock" in svg_lines(out)
    assert main(["draw", "resnet18", "--out", str(out)]) == 2
    assert "exists: pass --force" in capsys.readouterr().err
    assert main(["draw", "resnet18", "--out", str(tmp_path / "r.jpg")]) == 2
    assert main(["draw", "resnt18", "--out", str(tmp_path / "x.svg")]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["draw", "resnet18", "--out", str(tmp_path / "missing" / "x.svg")]) == 2
