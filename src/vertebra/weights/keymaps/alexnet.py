"""Key map of torchvision's AlexNet (the single-tower layout of "One weird trick")."""
from .base import PARAM as _P
from .base import KeyMap

KEYMAPS = {
    # features.{index} of torchvision's nn.Sequential: conv1 at 0, conv2 at 3, conv3-5 at 6, 8, 10;
    # classifier.{1, 4, 6} are fc6, fc7, fc8 (dropout and ReLU sit between them).
    "torchvision_alexnet": KeyMap("torchvision_alexnet", (
        (rf"features\.0\.{_P}", "stages.0.conv1.conv.{p}"),
        (rf"features\.3\.{_P}", "stages.1.conv2.conv.{p}"),
        (rf"features\.6\.{_P}", "stages.2.conv3.conv.{p}"),
        (rf"features\.8\.{_P}", "stages.2.conv4.conv.{p}"),
        (rf"features\.10\.{_P}", "stages.2.conv5.conv.{p}"),
        (rf"classifier\.1\.{_P}", "head.fc6.{p}"),
        (rf"classifier\.4\.{_P}", "head.fc7.{p}"),
        (rf"classifier\.6\.{_P}", "head.fc8.{p}"),
    )),
}
