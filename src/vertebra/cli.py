"""The ``vertebra`` command: ``list``, ``info``, ``bench`` and ``smoke``."""
from __future__ import annotations

import argparse
import json
import sys
import time

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from . import count_params, create_model, list_models, model_info
from .analysis import measure_latency, profile
from .analysis.guidelines import guidelines

console = Console()


def _millions(value: int | None, unit: str = "M") -> str:
    return "—" if value is None else f"{value / 1e6:,.2f}{unit}" if unit == "M" else f"{value / 1e9:,.2f}G"


def cmd_list(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try 'vertebra list' for all")
    cards = [model_info(n) for n in names]
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=1))
        return 0
    table = Table(title=f"vertebra models ({len(names)})")
    for column, justify in (("name", "left"), ("family", "left"), ("year", "right"),
                            ("params", "right"), ("MACs", "right"), ("input", "right")):
        table.add_column(column, justify=justify)
    for card in cards:
        table.add_row(card.name, card.family, str(card.year), _millions(card.params),
                      _millions(card.macs, "G"), str(card.input_size))
    console.print(table)
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_info(args: argparse.Namespace) -> int:
    card = model_info(args.model)
    result = {"card": card.to_dict()}
    model = create_model(args.model) if args.layers or args.guidelines else None
    size = args.input_size or card.input_size
    with Progress(console=console, transient=True, disable=args.json) as progress:
        if args.layers:
            progress.add_task(f"profiling {args.model} at {size}x{size}", total=None)
            result["profile"] = profile(model, size)
        if args.guidelines:
            progress.add_task(f"checking {args.model} against G1-G4", total=None)
            result["guidelines"] = guidelines(model, size)
    if args.json:
        print(json.dumps({"card": result["card"],
                          **{k: json.loads(v.to_json()) for k, v in result.items() if k != "card"}}, indent=1))
        return 0
    table = Table(title=card.name, show_header=False)
    for key, value in card.to_dict().items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) and key != "year" else str(value))
    console.print(table)
    for key in ("profile", "guidelines"):
        if key in result:
            console.print(result[key].table())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Latency and throughput of each model, eval mode, warm-up then the median of repeats."""
    for name in args.models:
        model_info(name)  # fail on a wrong name before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with Progress(console=console, transient=True, disable=args.json) as progress:
        task = progress.add_task("benchmarking", total=len(args.models))
        for name in args.models:
            progress.update(task, description=name)
            model = create_model(name).eval()
            size = args.input_size or model.default_input_size
            if size < model.min_input_size:
                raise ValueError(f"{name} needs inputs of at least {model.min_input_size}, got {size}")
            x = torch.randn(args.batch_size, model.in_chans, size, size)
            times = measure_latency(model, x, warmup=args.warmup, repeats=args.repeats)
            median = sorted(times)[len(times) // 2]
            rows.append({"model": name, "input_size": size, "batch_size": args.batch_size,
                         "threads": torch.get_num_threads(), "latency_ms": round(median, 3),
                         "images_per_s": round(args.batch_size * 1e3 / median, 2), "repeats": args.repeats})
            progress.advance(task)
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    table = Table(title=f"batch {args.batch_size}, {torch.get_num_threads()} threads, median of {args.repeats}")
    for column in ("model", "input", "latency ms", "images/s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for row in rows:
        table.add_row(row["model"], str(row["input_size"]), f"{row['latency_ms']:.2f}", f"{row['images_per_s']:.1f}")
    console.print(table)
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    """Build each model and run one forward pass at a small input: a quick check that all work."""
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try 'vertebra list' for all")
    table = Table(title=f"one forward pass each, batch 1, {torch.get_num_threads()} threads")
    for column in ("model", "input", "output", "params", "ms"):
        table.add_column(column, justify="left" if column == "model" else "right")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("running models", total=len(names))
        for name in names:
            progress.update(task, description=name)
            model = create_model(name).eval()
            size = max(model.min_input_size, args.size)
            x = torch.randn(1, model.in_chans, size, size)
            start = time.perf_counter()
            with torch.inference_mode():
                out = model(x)
            elapsed = (time.perf_counter() - start) * 1e3
            table.add_row(name, f"{size}x{size}", str(tuple(out.shape)), _millions(count_params(model)),
                          f"{elapsed:.0f}")
            progress.advance(task)
    console.print(table)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vertebra", description="Classic computer-vision backbones, "
                                     "faithful to their papers.")
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="the model table: name, family, year, params, MACs")
    listing.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'resnet*'")
    listing.add_argument("--json", action="store_true", help="print the model cards as JSON")
    listing.set_defaults(run=cmd_list)
    info = commands.add_parser("info", help="a model's card: paper, idea, reference figures, notes")
    info.add_argument("model")
    info.add_argument("--layers", action="store_true", help="per-layer params, MACs, memory access, "
                      "activations and measured latency")
    info.add_argument("--guidelines", action="store_true", help="departures from ShuffleNet V2's G1-G4")
    info.add_argument("--input-size", type=_positive, help="input height and width (default: the card's)")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(run=cmd_info)
    bench = commands.add_parser("bench", help="latency and throughput of one or more models")
    bench.add_argument("models", nargs="+")
    bench.add_argument("--batch-size", type=_positive, default=1)
    bench.add_argument("--threads", type=_positive, help="torch threads (default: torch's)")
    bench.add_argument("--input-size", type=_positive, help="default: each model's default input size")
    bench.add_argument("--warmup", type=_positive, default=3)
    bench.add_argument("--repeats", type=_positive, default=10)
    bench.add_argument("--json", action="store_true", help="one JSON line per model")
    bench.set_defaults(run=cmd_bench)
    smoke = commands.add_parser("smoke", help="build each model and run it once on a small input")
    smoke.add_argument("pattern", nargs="?", default="*", help="fnmatch pattern, e.g. 'se_*'")
    smoke.add_argument("--size", type=int, default=64, help="input height and width (default 64; "
                       "raised to a model's minimum)")
    smoke.set_defaults(run=cmd_smoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"vertebra {args.command}: error: {error}", file=sys.stderr)
        return 2
