"""Key maps of EfficientNet B0-B7: torchvision's ``features.{stage}.{block}.block.{layer}`` names."""
from .base import PARAM as _P
from .base import KeyMap

_OUT = "stages.{stage}.{b}"
# features.1 is the expand-ratio-1 stage: no expansion convolution, so its layers count from dw.
_FIRST = r"features\.(?P<layer>1)\.(?P<b>\d+)\.block"
_BLOCK = r"features\.(?P<layer>[2-7])\.(?P<b>\d+)\.block"


def _conv_bn(source: str, target: str) -> tuple:
    """torchvision's Conv2dNormActivation numbers conv and BatchNorm 0 and 1; vertebra names them."""
    return ((rf"{source}\.0\.{_P}", f"{target}.conv.{{p}}"), (rf"{source}\.1\.{_P}", f"{target}.bn.{{p}}"))


KEYMAPS = {
    "torchvision_efficientnet": KeyMap("torchvision_efficientnet", (
        *_conv_bn(r"features\.0", "stem"),
        *_conv_bn(rf"{_FIRST}\.0", f"{_OUT}.dw"),
        (rf"{_FIRST}\.1\.(?P<fc>fc[12])\.{_P}", _OUT + ".se.{fc}.{p}"),
        *_conv_bn(rf"{_FIRST}\.2", f"{_OUT}.project"),
        *_conv_bn(rf"{_BLOCK}\.0", f"{_OUT}.expand"),
        *_conv_bn(rf"{_BLOCK}\.1", f"{_OUT}.dw"),
        (rf"{_BLOCK}\.2\.(?P<fc>fc[12])\.{_P}", _OUT + ".se.{fc}.{p}"),
        *_conv_bn(rf"{_BLOCK}\.3", f"{_OUT}.project"),
        *_conv_bn(r"features\.8", "conv_head"),
        (rf"classifier\.1\.{_P}", "head.fc.{p}"),
    )),
}
