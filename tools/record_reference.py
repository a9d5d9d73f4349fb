"""Record torchvision/timm/pretrainedmodels reference outputs as test fixtures (docs/design.md,
"Reference parity").

Run in a separate environment that has the reference libraries, never in vertebra's own:

    python3 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.14.1 torchvision==0.29.1 timm pretrainedmodels six
    /tmp/refenv/bin/python tools/record_reference.py              # every model with a reference
    /tmp/refenv/bin/python tools/record_reference.py 'resnet*'    # fnmatch patterns

The models come from vertebra's registry: every model whose card names a reference
("torchvision resnet50", "timm legacy_senet154", built with the card's reference_kwargs)
and a key-map layout.  For each it writes tests/fixtures/reference/<name>.json (the
reference's parameter count, MACs at the card's input size and state-dict manifest) and
<name>.safetensors (eval-mode logits for a seeded input at two sizes, after filling the
reference with vertebra.testing.synthetic_state_dict).  Each model writes only its own
files, so several recordings can run at once.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
import vertebra  # noqa: E402
from vertebra.testing import manifest_of, synthetic_input, synthetic_state_dict  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "reference"
SEED = 0
BATCH = 2
LIBRARIES = ("torchvision", "timm", "pretrainedmodels")


def build(card: vertebra.ModelCard, device: str = "cpu") -> torch.nn.Module:
    library, name = card.reference.split()[:2]
    with torch.device(device):
        if library == "torchvision":
            import torchvision

            return torchvision.models.get_model(name, weights=None, **card.reference_kwargs)
        if library == "pretrainedmodels":
            import pretrainedmodels

            model = pretrainedmodels.__dict__[name](pretrained=None, **card.reference_kwargs)
            # the port pools a fixed 7x7 window, which is the global pool only at 224: adaptive, it is
            # the same there and records at the other fixture size too
            model.global_pool = torch.nn.AdaptiveAvgPool2d(1)
            return model
        import timm

        return timm.create_model(name, pretrained=False, **card.reference_kwargs)


def macs(model: torch.nn.Module, size: int) -> int:
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, size, size, device=device))
    return counter.get_total_flops() // 2


def fixture_sizes(name: str) -> tuple[int, int]:
    """Two small sizes the model accepts; the second odd, where ceil- and floor-mode pooling differ."""
    smallest = max(64, vertebra.create_model(name).min_input_size)
    return smallest, smallest + 35


def record(name: str) -> None:
    card = vertebra.model_info(name)
    if not card.layouts:
        raise SystemExit(f"{name}: its card names no key-map layout to record against")
    model = build(card).eval()
    manifest = manifest_of(model.state_dict())
    state = OrderedDict(synthetic_state_dict(manifest, SEED))
    state._metadata = model.state_dict()._metadata  # module versions: torchvision's MNASNet checks its own
    model.load_state_dict(state)
    sizes, tensors = fixture_sizes(name), {}
    with torch.no_grad():
        for size in sizes:
            logits = model(synthetic_input((BATCH, 3, size, size), SEED))
            if not torch.isfinite(logits).all() or logits.std() < 1e-3:
                raise RuntimeError(f"{name}: degenerate logits at {size}px, fix the synthetic weights")
            tensors[f"logits_{size}"] = logits.contiguous()
    save_file(tensors, OUT / f"{name}.safetensors")
    info = {"model": name, "reference": card.reference, "reference_kwargs": card.reference_kwargs,
            "layout": card.layouts[0], "params": sum(p.numel() for p in model.parameters()),
            "macs": macs(build(card, "meta"), card.input_size), "input_size": card.input_size,
            "seed": SEED, "batch": BATCH, "sizes": list(sizes), "versions": versions(),
            "preprocessing": preprocessing(card), "manifest": manifest}
    (OUT / f"{name}.json").write_text(json.dumps(info, indent=0) + "\n")
    print(f"{name:24s} {card.reference:40s} {info['params']:>13,} params {info['macs']:>16,} MACs")


def preprocessing(card: vertebra.ModelCard) -> dict:
    """The published evaluation preprocessing of the reference's default weights: the central crop
    of the image resized to ``resize_size`` on its short side."""
    library, name = card.reference.split()[:2]
    if library == "torchvision":
        from torchvision.models import get_model_weights

        weights = get_model_weights(name).DEFAULT
        t = weights.transforms()
        return {"input_size": t.crop_size[0], "resize_size": t.resize_size[0], "mean": list(t.mean),
                "std": list(t.std), "interpolation": t.interpolation.value, "channel_order": "RGB",
                "pixel_range": 1.0, "weights": str(weights)}
    if library == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(name).to_dict()
        size = cfg["input_size"][1]
        return {"input_size": size, "resize_size": math.floor(size / cfg["crop_pct"]), "mean": list(cfg["mean"]),
                "std": list(cfg["std"]), "interpolation": cfg["interpolation"], "channel_order": "RGB",
                "pixel_range": 1.0, "weights": f"{name}.{cfg['tag']}"}
    import pretrainedmodels

    settings = pretrainedmodels.pretrained_settings[name]["imagenet"]
    size = settings["input_size"][1]
    return {"input_size": size, "resize_size": math.floor(size / 0.875), "mean": settings["mean"],  # TransformImage
            "std": settings["std"], "interpolation": "bilinear", "channel_order": settings["input_space"],
            "pixel_range": float(settings["input_range"][1]), "weights": f"{name}.imagenet"}


def record_preprocessing(name: str) -> None:
    """Add the published preprocessing to an existing fixture (its logits stay as recorded)."""
    path = OUT / f"{name}.json"
    info = json.loads(path.read_text())
    info["preprocessing"] = preprocessing(vertebra.model_info(name))
    path.write_text(json.dumps(info, indent=0) + "\n")


def versions() -> dict:
    from importlib.metadata import version

    return {"torch": torch.__version__, **{library: version(library) for library in LIBRARIES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("patterns", nargs="*", default=["*"], help="fnmatch patterns (default: all)")
    parser.add_argument("--preprocessing-only", action="store_true", help="only add the published "
                        "preprocessing to existing fixtures")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    names = sorted({n for p in args.patterns for n in vertebra.list_models(p)
                    if vertebra.model_info(n).reference.split()[0] in LIBRARIES})
    if not names:
        raise SystemExit(f"no registered model with a reference library's model matches {args.patterns}")
    for name in names:
        record_preprocessing(name) if args.preprocessing_only else record(name)


if __name__ == "__main__":
    main()
