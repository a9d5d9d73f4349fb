"""torchvision's and timm's names for vertebra's models, so the name a user already types works.

A model whose card names a reference model built without extra arguments takes that model's name
(``timm legacy_xception`` -> ``xception``); the rest are listed here.  An alias goes to the
model whose layout the other library's weights fit, and never shadows a registered name: where
vertebra's own ``googlenet`` or ``alexnet`` is the paper's network, torchvision's is ``googlenet_tv``
or ``alexnet_tv`` under vertebra's name.
"""
from ..registry import _MODELS, register_alias

# names that need a width, or come from the library that is not the card's reference
LISTED = {
    "mobilenet_v2": "mobilenet_v2_100",  # torchvision's default width
    "mobilenetv2_035": "mobilenet_v2_035", "mobilenetv2_050": "mobilenet_v2_050",  # timm
    "mobilenetv2_075": "mobilenet_v2_075", "mobilenetv2_100": "mobilenet_v2_100",
    "mobilenetv2_140": "mobilenet_v2_140",
    "mobilenetv3_large_100": "mobilenet_v3_large", "mobilenetv3_small_100": "mobilenet_v3_small",
    "mnasnet_050": "mnasnet0_5", "mnasnet_075": "mnasnet0_75", "mnasnet_100": "mnasnet1_0",
}


def from_cards() -> dict[str, str]:
    """Each card's reference name, where that name alone builds the reference."""
    found = {}
    for name, entry in _MODELS.items():
        library, *rest = entry.card.reference.split()
        if library in ("torchvision", "timm", "pretrainedmodels") and rest and not entry.card.reference_kwargs:
            if rest[0] != name and rest[0] not in _MODELS:
                found[rest[0]] = name
    return found


for _alias, _name in {**from_cards(), **LISTED}.items():
    register_alias(_alias, _name)
