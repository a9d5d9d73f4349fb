"""NetAdapt against the uniform width multiplier, on the digits (NetAdapt's Figure 5 in small).

The family's width multipliers (``mobilenet_v2_100`` down to ``_035``, the 32x32 stem) are trained
from scratch with the same settings; ``mobilenet_v2_100`` is then adapted by NetAdapt to each budget
in turn (one run: the first network under each share is fine-tuned long-term).  The multipliers
train ``--epochs`` plus the long-term fine-tuning's epochs, so they see at least as many epochs as
the adapted network's last stretch.  Latency: batch 1, ``--threads`` threads, the median of runs,
measured here for every network, in one process, with no training running beside it.

One JSON line per network: measured latency, the per-layer table's prediction (the sum of its
layers, which leaves out additions, pooling and the framework's time per call: ``table_share``
says how much of the measured latency the layers explain, before and after adaptation), params,
validation and test accuracy; then one line comparing NetAdapt's final network with the width
multiplier nearest in latency (the paper's comparison), and the bar's verdict.

    .venv/bin/python benchmarks/netadapt.py [--budget 0.6] [--long-at 0.8] [--epochs 10] [--out DIR]
"""
from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch
from rich.console import Console

from vertebra.design.latency import LatencyTable, network_layers
from vertebra.design.nas import TrialSettings
from vertebra.design.nas.plots import plot_netadapt
from vertebra.design.netadapt import NetAdapt, NetAdaptSettings, load_network, measured_references

WIDTHS = ["mobilenet_v2_100", "mobilenet_v2_075", "mobilenet_v2_050", "mobilenet_v2_035"]


def row(name: str, weights: str, table: LatencyTable, size: int, model_name: str | None = None, **extra) -> dict:
    """One network's JSON line; ``model_name``: the registered model, when ``name`` is a label."""
    model = load_network(model_name or name, weights)[0]
    measured = table.measure(model, size)
    predicted = table.predict_layers(network_layers(model, size).values())
    return {"benchmark": "netadapt", "network": name, "measured_ms": round(measured, 3),
            "table_ms": round(predicted, 3), "table_share": round(predicted / measured, 3),
            "params": sum(p.numel() for p in model.parameters()), **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", default="0.6")
    parser.add_argument("--long-at", type=float, nargs="*", default=[0.8])
    parser.add_argument("--epochs", type=int, default=10, help="the baseline's and the multipliers' training")
    parser.add_argument("--long-epochs", type=int, default=5)
    parser.add_argument("--short-limit", type=int, default=256)
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--select", default="accuracy")
    parser.add_argument("--input-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-netadapt"))
    args = parser.parse_args()
    torch.set_flush_denormal(True)  # before any worker thread starts (design/latency.py says why)
    console = Console(stderr=True)
    table = LatencyTable(args.out / "latency_table.json", threads=args.threads, repeats=25)
    trial = TrialSettings(epochs=args.epochs, input_size=args.input_size, small_input=True)

    baseline = measured_references(WIDTHS[:1], trial, args.out / "baseline", table, workers=args.workers)[0]
    references = measured_references(WIDTHS, replace(trial, epochs=args.epochs + args.long_epochs),
                                     args.out / "multipliers", table, workers=args.workers)
    settings = NetAdaptSettings(budget=args.budget, select=args.select, step=args.step, long_epochs=args.long_epochs,
                                long_at=tuple(args.long_at), threads=args.threads,
                                short=TrialSettings(epochs=1, lr=1e-3, warmup_epochs=0.0, limit=args.short_limit))
    run = NetAdapt(WIDTHS[0], baseline["weights"], settings, args.out / "netadapt", workers=args.workers,
                   resume=(args.out / "netadapt" / "netadapt.json").exists(), table=table, console=console)
    summary = run.run()
    size = args.input_size
    lines = [row(WIDTHS[0], baseline["weights"], table, size, kind="original", epochs=args.epochs,
                 val_accuracy=summary["start"]["val_accuracy"], test_accuracy=summary["start"]["test_accuracy"])]
    for tuned in summary["fine_tuned"]:
        folder = run.out / ("final" if tuned["label"] == "final" else f"final-{tuned['iteration']:03d}")
        weights = next(folder.glob("best-*.safetensors"))
        lines.append(row(f"netadapt iteration {tuned['iteration']}", weights, table, size, WIDTHS[0], kind="netadapt",
                         label=tuned["label"], val_accuracy=tuned["val_accuracy"],
                         test_accuracy=tuned["test_accuracy"]))
    for reference in references:
        lines.append(row(reference["model"], reference["weights"], table, size, kind="width multiplier",
                         epochs=args.epochs + args.long_epochs, val_accuracy=max(reference["history"]),
                         test_accuracy=reference["test_accuracy"]))
    for line in lines:
        print(json.dumps(line))
    # the plot's networks at the latencies measured now, all in one stretch (the run's own were taken
    # between trainings, when the machine may have been busier)
    summary["start"]["measured_ms"] = lines[0]["measured_ms"]
    summary["budget_ms"] = lines[0]["measured_ms"] * float(args.budget) if not args.budget.endswith("ms") \
        else summary["budget_ms"]
    for step in summary["iterations"]:  # each iteration's network is kept: timed again with the rest
        weights = run.out / "iterations" / f"{step['iteration']:03d}" / "network.safetensors"
        step["measured_ms"] = table.measure(load_network(WIDTHS[0], weights)[0], size)
    for tuned, line in zip(summary["fine_tuned"], lines[1:]):
        tuned["measured_ms"] = line["measured_ms"]
    summary["references"] = [{"model": line["network"], "measured_ms": line["measured_ms"],
                              "val_accuracy": line["val_accuracy"]} for line in lines if line["kind"] != "original"
                             and line["kind"] != "netadapt"]
    plot_netadapt(summary, args.out / "netadapt.png", f"NetAdapt of {WIDTHS[0]} against its width multipliers "
                  f"({args.input_size}x{args.input_size} digits, {args.threads} threads)")
    original, final = lines[0], next(line for line in lines if line.get("label") == "final")
    nearest = min((line for line in lines if line["kind"] == "width multiplier"),
                  key=lambda line: abs(line["measured_ms"] - final["measured_ms"]))
    reduction = 1 - final["measured_ms"] / original["measured_ms"]
    loss = original["val_accuracy"] - final["val_accuracy"]
    print(json.dumps({"benchmark": "netadapt", "summary": True, "latency_reduction": round(reduction, 3),
                      "val_accuracy_loss_points": round(100 * loss, 2), "nearest_multiplier": nearest["network"],
                      "multiplier_ms": nearest["measured_ms"], "netadapt_ms": final["measured_ms"],
                      "multiplier_val_accuracy": nearest["val_accuracy"],
                      "netadapt_val_accuracy": final["val_accuracy"],
                      "bar_met": reduction >= 0.4 and loss <= 0.01 and final["val_accuracy"] >= nearest["val_accuracy"],
                      "iterations": len(summary["iterations"])}))


if __name__ == "__main__":
    main()
