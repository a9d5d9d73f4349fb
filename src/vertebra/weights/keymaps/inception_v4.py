"""Key maps of Inception-v4 and Inception-ResNet-v2: timm's ports of the TensorFlow-Slim models.

Inside a module timm and vertebra share the names (``branch0``, ``branch1.2``, ``conv``, ``bn``);
what differs is where each module sits: timm numbers Inception-v4's layers ``features.0-21``
and gives Inception-ResNet-v2's blocks flat names, while vertebra has a stem and one stage per grid.
"""
from .base import PARAM as _P
from .base import KeyMap

_REST = r"(?P<rest>.+)"


def _moved(source: str, target: str) -> tuple:
    """Every key under ``source`` (a regex prefix) moves under ``target``, the rest of its name kept."""
    return ((rf"{source}\.{_REST}", f"{target}.{{rest}}"),)


def _residual(source: str, target: str) -> tuple:
    """An Inception-ResNet block: its linear 1x1 is timm's ``conv2d``, vertebra's ``proj``."""
    return ((rf"{source}\.conv2d\.{_P}", f"{target}.proj.{{p}}"), *_moved(source, target))


def _numbered(source: str, target: str, count: int, offset: int) -> tuple:
    """Residual blocks ``source.j`` become ``target.(j + offset)``: offset 1 skips a reduction module."""
    return sum((_residual(rf"{source}\.{j}", f"{target}.{j + offset}") for j in range(count)), ())


def _inception_c(index: int, target: str) -> tuple:
    """timm's Inception-C names its split branches ``branch1_1a``/``_1b``: vertebra nests them."""
    source = rf"features\.{index}\.branch(?P<b>\d)_(?P<j>\d)"
    return ((rf"{source}a\.{_REST}", target + ".branch{b}.{j}.branch0.{rest}"),
            (rf"{source}b\.{_REST}", target + ".branch{b}.{j}.branch1.{rest}"),
            (rf"{source}\.{_REST}", target + ".branch{b}.{j}.{rest}"))


# timm's features.i, in order: the stem (Fig. 3), 4 x Inception-A, Reduction-A + 7 x Inception-B,
# Reduction-B + 3 x Inception-C.
_V4_LAYERS = (["stem.conv2d_1a", "stem.conv2d_2a", "stem.conv2d_2b", "stem.mixed_3a", "stem.mixed_4a",
               "stem.mixed_5a"] + [f"stages.0.{j}" for j in range(4)] + [f"stages.1.{j}" for j in range(8)]
              + [f"stages.2.{j}" for j in range(4)])

KEYMAPS = {
    "timm_inception_v4": KeyMap("timm_inception_v4", (
        # Mixed_3a and Mixed_5a call their convolution branch "conv"
        *_moved(r"features\.3\.conv", "stem.mixed_3a.branch1"),
        *_moved(r"features\.5\.conv", "stem.mixed_5a.branch0"),
        *sum((_inception_c(i, _V4_LAYERS[i]) for i in (19, 20, 21)), ()),
        *sum((_moved(rf"features\.{i}", target) for i, target in enumerate(_V4_LAYERS)), ()),
        (rf"last_linear\.{_P}", "head.fc.{p}"),
    )),
    "timm_inception_resnet_v2": KeyMap("timm_inception_resnet_v2", (
        *_moved(r"(?P<n>conv2d_[1-4][ab]|mixed_5b)", "stem.{n}"),
        *_numbered(r"repeat", "stages.0", 10, 0),
        *_moved(r"mixed_6a", "stages.1.0"),
        *_numbered(r"repeat_1", "stages.1", 20, 1),
        *_moved(r"mixed_7a", "stages.2.0"),
        *_numbered(r"repeat_2", "stages.2", 9, 1),
        *_residual(r"block8", "stages.2.10"),
        *_moved(r"conv2d_7b", "stages.2.11"),
        (rf"classif\.{_P}", "head.fc.{p}"),
    )),
}
