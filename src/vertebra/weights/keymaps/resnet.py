"""Key maps of the ResNet line: torchvision/timm ResNet and ResNeXt, timm's legacy SENet and resnetv2."""
from .base import PARAM as _P
from .base import KeyMap, flatten_1x1

_BLOCK = r"layer(?P<layer>[1-9])\.(?P<b>\d+)"

KEYMAPS = {
    # torchvision's ResNet and ResNeXt; timm's resnet* and resnext* use the same names.
    "torchvision_resnet": KeyMap("torchvision_resnet", (
        (rf"conv1\.{_P}", "stem.conv1.conv.{p}"),
        (rf"bn1\.{_P}", "stem.conv1.bn.{p}"),
        (rf"{_BLOCK}\.conv(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.conv.{p}"),
        (rf"{_BLOCK}\.bn(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.bn.{p}"),
        (rf"{_BLOCK}\.downsample\.0\.{_P}", "stages.{stage}.{b}.downsample.conv.{p}"),
        (rf"{_BLOCK}\.downsample\.1\.{_P}", "stages.{stage}.{b}.downsample.bn.{p}"),
        (rf"fc\.{_P}", "head.fc.{p}"),
    )),
    # timm's legacy_seresnet*, legacy_seresnext*, legacy_senet154 (Cadene's port of the Caffe models).
    "timm_legacy_senet": KeyMap("timm_legacy_senet", (
        (rf"layer0\.conv(?P<i>\d)\.{_P}", "stem.conv{i}.conv.{p}"),
        (rf"layer0\.bn(?P<i>\d)\.{_P}", "stem.conv{i}.bn.{p}"),
        (rf"{_BLOCK}\.conv(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.conv.{p}"),
        (rf"{_BLOCK}\.bn(?P<i>\d)\.{_P}", "stages.{stage}.{b}.conv{i}.bn.{p}"),
        (rf"{_BLOCK}\.se_module\.fc(?P<i>\d)\.{_P}", "stages.{stage}.{b}.se.fc{i}.{p}"),
        (rf"{_BLOCK}\.downsample\.0\.{_P}", "stages.{stage}.{b}.downsample.conv.{p}"),
        (rf"{_BLOCK}\.downsample\.1\.{_P}", "stages.{stage}.{b}.downsample.bn.{p}"),
        (rf"last_linear\.{_P}", "head.fc.{p}"),
    )),
    # timm's resnetv2_* with BatchNorm (the pre-activation ResNet of He et al. 2016).
    "timm_resnetv2": KeyMap("timm_resnetv2", (
        (rf"stem\.conv\.{_P}", "stem.conv1.{p}"),
        (rf"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.norm(?P<i>\d)\.{_P}", "stages.{s}.{b}.norm{i}.bn.{p}"),
        (rf"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.conv(?P<i>\d)\.{_P}", "stages.{s}.{b}.conv{i}.{p}"),
        (rf"stages\.(?P<s>\d+)\.blocks\.(?P<b>\d+)\.downsample\.conv\.{_P}", "stages.{s}.{b}.downsample.{p}"),
        (rf"norm\.{_P}", "norm.bn.{p}"),
        (r"head\.fc\.weight", "head.fc.weight", flatten_1x1),
        (r"head\.fc\.bias", "head.fc.bias"),
    )),
}
