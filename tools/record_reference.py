"""Record torchvision/timm reference outputs as test fixtures (DESIGN.md, "Reference parity").

Run in a separate environment that has the reference libraries, never in vertebra's own:

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm
    /tmp/refenv/bin/python tools/record_reference.py            # all fixtures
    /tmp/refenv/bin/python tools/record_reference.py resnet50   # some

For each model in PARITY it writes tests/fixtures/reference/<name>.json (the reference's
state-dict manifest, parameter count and MACs) and <name>.safetensors (eval-mode logits
for a seeded input at each size in SIZES, after filling the model with
vertebra.testing.synthetic_state_dict).  FIGURES models get only the figures, written to
figures.json: the parameter counts and MACs the model cards must equal.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from vertebra.testing import manifest_of, synthetic_input, synthetic_state_dict  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "reference"
SEED = 0
BATCH = 2
SIZES = (64, 99)  # 99 is odd: ceil-mode and floor-mode pooling disagree there

# vertebra name -> (library, reference name, key-map layout)
PARITY = {
    "resnet18": ("torchvision", "resnet18", "torchvision_resnet"),
    "resnet50": ("torchvision", "resnet50", "torchvision_resnet"),
    "resnet152": ("torchvision", "resnet152", "torchvision_resnet"),
    "resnext50_32x4d": ("torchvision", "resnext50_32x4d", "torchvision_resnet"),
    "resnext101_32x8d": ("torchvision", "resnext101_32x8d", "torchvision_resnet"),
    "se_resnet50": ("timm", "legacy_seresnet50", "timm_legacy_senet"),
    "se_resnext50_32x4d": ("timm", "legacy_seresnext50_32x4d", "timm_legacy_senet"),
    "senet154": ("timm", "legacy_senet154", "timm_legacy_senet"),
    "preact_resnet18": ("timm", "resnetv2_18", "timm_resnetv2"),
    "preact_resnet50": ("timm", "resnetv2_50", "timm_resnetv2"),
}
FIGURES = {
    **{name: ref[:2] for name, ref in PARITY.items()},
    "resnet34": ("torchvision", "resnet34"),
    "resnet101": ("torchvision", "resnet101"),
    "resnext101_32x4d": ("timm", "resnext101_32x4d"),
    "resnext101_64x4d": ("torchvision", "resnext101_64x4d"),
    "se_resnet101": ("timm", "legacy_seresnet101"),
    "se_resnet152": ("timm", "legacy_seresnet152"),
    "se_resnext101_32x4d": ("timm", "legacy_seresnext101_32x4d"),
    "preact_resnet34": ("timm", "resnetv2_34"),
    "preact_resnet101": ("timm", "resnetv2_101"),
    "preact_resnet152": ("timm", "resnetv2_152"),
}


def build(library: str, name: str) -> torch.nn.Module:
    if library == "torchvision":
        import torchvision

        return torchvision.models.get_model(name, weights=None)
    import timm

    return timm.create_model(name, pretrained=False)


def figures(model: torch.nn.Module, size: int = 224) -> dict:
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, size, size, device=device))
    return {"params": sum(p.numel() for p in model.parameters()),
            "macs": counter.get_total_flops() // 2, "input_size": size}


def record(name: str) -> None:
    library, ref_name, layout = PARITY[name]
    model = build(library, ref_name).eval()
    manifest = manifest_of(model.state_dict())
    model.load_state_dict(synthetic_state_dict(manifest, SEED))
    tensors = {}
    with torch.no_grad():
        for size in SIZES:
            logits = model(synthetic_input((BATCH, 3, size, size), SEED))
            if not torch.isfinite(logits).all() or logits.std() < 1e-3:
                raise RuntimeError(f"{name}: degenerate logits at {size}px, fix the synthetic weights")
            tensors[f"logits_{size}"] = logits.contiguous()
    save_file(tensors, OUT / f"{name}.safetensors")
    info = {"model": name, "reference": f"{library} {ref_name}", "layout": layout, "seed": SEED,
            "batch": BATCH, "sizes": list(SIZES), "versions": versions(), **figures(model),
            "manifest": manifest}
    (OUT / f"{name}.json").write_text(json.dumps(info, indent=0) + "\n")
    print(f"recorded {name} ({library} {ref_name}): {info['params']:,} params")


def versions() -> dict:
    import timm
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help="models to record (default: all)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.models or PARITY:
        if name in PARITY:
            record(name)
    path = OUT / "figures.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    for name in args.models or FIGURES:
        library, ref_name = FIGURES[name]
        with torch.device("meta"):
            model = build(library, ref_name)
        table[name] = {"reference": f"{library} {ref_name}", **figures(model)}
        print(f"{name:24s} {table[name]['params']:>12,} params {table[name]['macs']:>16,} MACs")
    path.write_text(json.dumps(dict(sorted(table.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
