"""The ``vertebra`` command: ``list``, ``info`` and ``smoke`` (run models once)."""
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


def cmd_info(args: argparse.Namespace) -> int:
    card = model_info(args.model)
    if args.json:
        print(json.dumps(card.to_dict(), indent=1))
        return 0
    table = Table(title=card.name, show_header=False)
    for key, value in card.to_dict().items():
        table.add_row(key, f"{value:,}" if isinstance(value, int) and key != "year" else str(value))
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
    info.add_argument("--json", action="store_true", help="print the card as JSON")
    info.set_defaults(run=cmd_info)
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
