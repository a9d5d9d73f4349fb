"""Key map of Xception: timm's legacy_xception (Cadene's port of the Keras model)."""
from .base import PARAM as _P
from .base import KeyMap


def _module(source: str, target: str) -> tuple:
    """timm's ``blockN.rep`` (ReLU, SeparableConv2d, BN ...) and ``skip``/``skipbn`` in one stage."""
    block = rf"block(?P<n>{source})"
    return ((rf"{block}\.rep\.(?P<i>\d+)\.conv1\.weight", target + ".block{n}.residual.{i}.dw.conv.weight"),
            (rf"{block}\.rep\.(?P<i>\d+)\.pointwise\.weight", target + ".block{n}.residual.{i}.pw.conv.weight"),
            (rf"{block}\.rep\.(?P<i>\d+)\.{_P}", target + ".block{n}.residual.{i}.{p}"),
            (rf"{block}\.skip\.weight", target + ".block{n}.shortcut.conv.weight"),
            (rf"{block}\.skipbn\.{_P}", target + ".block{n}.shortcut.bn.{p}"))


KEYMAPS = {
    "timm_legacy_xception": KeyMap("timm_legacy_xception", (
        (r"conv(?P<i>[12])\.weight", "stem.conv{i}.conv.weight"),
        (rf"bn(?P<i>[12])\.{_P}", "stem.conv{i}.bn.{p}"),
        # entry flow (stages 0-2), middle flow (stage 2), exit flow (stage 3)
        *_module("1", "stages.0"), *_module("2", "stages.1"), *_module("[3-9]|1[01]", "stages.2"),
        *_module("12", "stages.3"),
        (r"conv(?P<i>[34])\.conv1\.weight", "stages.3.conv{i}.dw.conv.weight"),
        (r"conv(?P<i>[34])\.pointwise\.weight", "stages.3.conv{i}.pw.conv.weight"),
        (rf"bn(?P<i>[34])\.{_P}", "stages.3.bn{i}.{p}"),
        (rf"fc\.{_P}", "head.fc.{p}"),
    )),
}
