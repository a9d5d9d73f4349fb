"""Key map of ShuffleNet V2: torchvision's shufflenet_v2_x0_5 ... x2_0.

torchvision numbers the layers inside each branch and names the stages 2 to 4 as the paper
does; vertebra names the layers (``pw1``, ``dw``, ``pw2``) and counts stages from 0.
ShuffleNet V1 has no torchvision or timm model, so no key map.
"""
from .base import PARAM as _P
from .base import KeyMap

# torchvision's index inside a branch's nn.Sequential -> vertebra's module (ReLUs hold no tensors)
_BRANCH1 = {"0": "branch_proj.dw.conv", "1": "branch_proj.dw.bn", "2": "branch_proj.pw.conv",
            "3": "branch_proj.pw.bn"}
_BRANCH2 = {"0": "branch_main.pw1.conv", "1": "branch_main.pw1.bn", "3": "branch_main.dw.conv",
            "4": "branch_main.dw.bn", "5": "branch_main.pw2.conv", "6": "branch_main.pw2.bn"}


def _unit_rules():
    for stage in range(3):  # torchvision's stage2, stage3, stage4
        for branch, modules in (("branch1", _BRANCH1), ("branch2", _BRANCH2)):
            for index, module in modules.items():
                yield (rf"stage{stage + 2}\.(?P<u>\d+)\.{branch}\.{index}\.{_P}",
                       f"stages.{stage}.{{u}}.{module}.{{p}}")


KEYMAPS = {
    "torchvision_shufflenet_v2": KeyMap("torchvision_shufflenet_v2", (
        (rf"conv1\.0\.{_P}", "stem.conv1.conv.{p}"),
        (rf"conv1\.1\.{_P}", "stem.conv1.bn.{p}"),
        *_unit_rules(),
        (rf"conv5\.0\.{_P}", "conv5.conv.{p}"),
        (rf"conv5\.1\.{_P}", "conv5.bn.{p}"),
        (rf"fc\.{_P}", "head.fc.{p}"),
    )),
}
