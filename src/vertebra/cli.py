"""The ``vertebra`` command: ``list``, ``info``, ``bench``, ``smoke``, ``train``, ``evaluate``, ``predict``,
``gates``, ``search``, ``scale``, ``netadapt``, ``export``, ``quantize``, ``draw``."""
from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from . import count_params, create_model, list_models, model_info
from .registry import aliases_of, resolve
from .analysis import measure_latency, profile
from .analysis.guidelines import guidelines

console = Console()


def _millions(value: int | None, unit: str = "M") -> str:
    return "—" if value is None else f"{value / 1e6:,.2f}{unit}" if unit == "M" else f"{value / 1e9:,.2f}G"


def cmd_list(args: argparse.Namespace) -> int:
    names = sorted({resolve(n) for n in list_models(args.pattern, include_aliases=True)})
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try 'vertebra list' for all")
    cards = [model_info(n) for n in names]
    if args.json:
        print(json.dumps([{**c.to_dict(), "aliases": aliases_of(c.name)} for c in cards], indent=1))
        return 0
    table = Table(title=f"vertebra models ({len(names)})",
                  caption="MACs marked * are counted here: the paper gives none")
    for column, justify in (("name", "left"), ("family", "left"), ("year", "right"), ("params", "right"),
                            ("MACs", "right"), ("input", "right"), ("also known as", "left")):
        table.add_column(column, justify=justify, no_wrap=column == "name", overflow="fold",
                         min_width=max(len(c.name) for c in cards) if column == "name" else None)
    for card in cards:
        macs = _millions(card.macs, "G") if card.macs is not None else _millions(_counted_macs(card), "G") + "*"
        table.add_row(card.name, card.family, str(card.year), _millions(card.params), macs, str(card.input_size),
                      ", ".join(aliases_of(card.name)))
    console.print(table)
    return 0


def _counted_macs(card) -> int:
    """MACs at the card's input size, counted on a model without memory (shapes only)."""
    import torch

    from .analysis import count_macs

    with torch.device("meta"):
        return count_macs(create_model(card.name), card.input_size)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def cmd_info(args: argparse.Namespace) -> int:
    from .data_config import data_config

    card = model_info(args.model)
    result = {"card": {**card.to_dict(), "preprocessing": data_config(card.name).to_dict()}}
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
    title = card.name if args.model == card.name else f"{card.name} (the model {args.model!r} names)"
    table = Table(title=title, show_header=False)
    for key, value in result["card"].items():
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


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    config = TrainConfig(model=args.model, data=args.data, val=args.val, val_split=args.val_split,
                         input_size=args.input_size, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         optimizer=args.optimizer, weight_decay=args.weight_decay, bn_momentum=args.bn_momentum,
                         seed=args.seed, out=Path(args.out) if args.out else None, resume=args.resume, bf16=args.bf16,
                         channels_last=args.channels_last, small_input=args.small_input,
                         limit=args.limit, workers=args.workers, cache=args.cache, compile=args.compile)
    train(config, console)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .train.loop import evaluate
    from .train.plots import plot_confusion
    from .train.predict import evaluation_set, load_trained, per_class_accuracy

    model, metadata = load_trained(args.model, args.weights)
    result = evaluate(model, evaluation_set(args.data, metadata), batch_size=args.batch_size)
    classes = metadata.get("classes") or [str(i) for i in range(len(result["confusion"]))]
    figure = Path(args.confusion or Path(args.weights).with_name(f"{Path(args.weights).stem}-confusion.png"))
    plot_confusion(result["confusion"], classes, figure, f"{args.model} on {args.data}: "
                   f"{result['accuracy']:.2%} of {result['count']}")
    per_class = per_class_accuracy(result["confusion"])
    unreadable = result["unreadable"]
    for bad in unreadable:  # counted out of the accuracy, and named
        print(f"vertebra evaluate: skipped {bad.path}: {bad.reason}", file=sys.stderr)
    status = 1 if unreadable else 0
    if args.json:
        print(json.dumps({"accuracy": result["accuracy"], "count": result["count"], "confusion_png": str(figure),
                          "per_class": dict(zip(classes, per_class)),
                          "unreadable": [str(bad.path) for bad in unreadable]}))
        return status
    table = Table(title=f"{args.model} on {args.data}: accuracy {result['accuracy']:.2%} ({result['count']} images)")
    table.add_column("class")
    table.add_column("accuracy", justify="right")
    for name, accuracy in zip(classes, per_class):
        table.add_row(name, f"{accuracy:.2%}")
    console.print(table)
    console.print(f"confusion matrix: {figure}")
    if unreadable:
        console.print(f"[yellow]{len(unreadable)} unreadable images left out (listed above)[/]")
    return status


def cmd_predict(args: argparse.Namespace) -> int:
    from .train.predict import load_image, load_trained, predict

    model, metadata = load_trained(args.model, args.weights)
    images, unreadable = {}, []
    for path in args.images:
        try:
            images[path] = load_image(path, metadata)
        except ValueError as error:
            unreadable.append(path)
            print(f"vertebra predict: skipped: {error}", file=sys.stderr)
    if not images:
        raise ValueError(f"none of the {len(args.images)} images could be read")
    results = predict(model, list(images.values()), metadata.get("classes") or [], args.top_k)
    for path, top in zip(images, results):
        if args.json:
            print(json.dumps({"image": path, "top": [{"class": c, "probability": p} for c, p in top]}))
        else:
            console.print(f"{path}: " + ", ".join(f"{c} {p:.1%}" for c, p in top))
    if unreadable:
        print(f"vertebra predict: {len(unreadable)} of {len(args.images)} images unreadable", file=sys.stderr)
    return 1 if unreadable else 0


def cmd_gates(args: argparse.Namespace) -> int:
    """Heat maps of an LSTM classifier's gates over the rows of one embedded test digit."""
    from .analysis import gate_activations, plot_gates
    from .train import digits
    from .train.predict import load_trained

    if args.weights:
        model, _ = load_trained(args.model, args.weights)
    else:
        model = create_model(args.model, num_classes=10, small_input=True).eval()
    if not hasattr(model, "forward_gates") or "lstm" not in args.model:
        raise ValueError(f"{args.model} has no gates to show: choose lstm_classifier or bilstm_classifier")
    test = digits().test
    if not 0 <= args.index < len(test):
        raise ValueError(f"--index must be in 0..{len(test) - 1}, got {args.index}")
    image, label = test[args.index]
    layers = gate_activations(model, image[None])
    if not 0 <= args.layer < len(layers):
        raise ValueError(f"--layer must be in 0..{len(layers) - 1}, got {args.layer}")
    path = plot_gates(layers[args.layer], args.out, image=image,
                      title=f"{args.model}, layer {args.layer}, on a digit {label}")
    console.print(f"gate heat map: {path}")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    """Neural architecture search over a space: an RL controller (Zoph & Le), random search,
    regularized evolution (Real et al.), or successive halving over a set of candidates."""
    from .design.nas import (DepthSchedule, EvolutionSettings, MorphSettings, SearchConfig, SetSettings, TrialSettings,
                             final_stage, get_space, search)

    if args.strategy == "darts":
        return _darts(args)
    space, space_settings = _space(args)
    trial = TrialSettings(epochs=args.epochs or 2, data=args.data, limit=args.limit, input_pool=args.input_pool)
    schedule = None
    if args.start_depth or args.depth_step or args.depth_interval or args.depth_final:
        default = DepthSchedule.for_budget(args.trials or 64)
        schedule = DepthSchedule(args.start_depth or default.start, args.depth_step or default.step,
                                 args.depth_interval or default.interval, args.depth_final or default.final)
    config = SearchConfig(args.strategy, space=space, space_settings=space_settings, trials=args.trials,
                          workers=args.workers,
                          children_per_update=args.children_per_update or max(args.workers, 4),
                          executor=args.executor, ray_address=args.ray_address, out=Path(args.out),
                          resume=args.resume, seed=args.seed, schedule=schedule, trial=trial,
                          evolution=EvolutionSettings(args.population, args.sample, args.crossover),
                          set=SetSettings(args.set_size), objective=_objective(args, trial),
                          morph=MorphSettings(args.children, args.edits, args.steps),
                          latency_table=args.latency_table, remeasure=args.remeasure,
                          references=tuple(args.references) if args.references is not None else None)
    result = search(config, console)
    best = result.best
    rewards = [r["reward"] for r in result.records]
    quarter = max(1, len(rewards) // 4)
    console.print(f"[bold]{len(rewards)} trials ({result.wall_s:.0f} s in this run); best reward "
                  f"{best['reward']:.4f} (validation accuracy {best['val_accuracy']:.2%}, trial {best['trial']}); "
                  f"mean reward of the first quarter {sum(rewards[:quarter]) / quarter:.4f}, last quarter "
                  f"{sum(rewards[-quarter:]) / quarter:.4f}[/bold]")
    if args.strategy == "morph":  # morphisms leave the space's discrete options (any width, any depth)
        from .models.nas_child import describe_genotype

        console.print(describe_genotype(best["genotype"]))
    else:
        console.print(get_space(space, **space_settings).describe(best["genotype"]))
    console.print(f"journal {result.out / 'journal.jsonl'}, plot {result.out / 'rewards.png'}, "
                  f"best genotype {result.out / 'best_genotype.json'}")
    if args.final:
        from .design.nas import Grid

        grid = Grid.papers() if args.grid == "paper" else Grid()
        final = final_stage(result.out, grid=grid, final_epochs=args.final_epochs, executor=args.executor,
                            workers=args.workers, ray_address=args.ray_address, seed=args.seed, console=console)
        console.print(f"[bold]final: {final.best_point}, validation {final.val_accuracy:.2%}, test "
                      f"{final.test_accuracy:.2%}; weights {final.weights}, genotype {final.genotype}[/bold]")
    return 0


def _darts(args: argparse.Namespace) -> int:
    """DARTS: one over-parameterised network, the architecture learned by gradient descent, then
    the derived genotype trained from scratch (--final)."""
    from .design.nas.darts import DartsSearch, DartsSettings
    from .models.nas_child import describe_genotype

    settings = DartsSettings(order=args.order, nodes=args.nodes, layers=args.layers, init_channels=args.init_channels,
                             epochs=args.epochs or 10, batch_size=args.batch_size, data=args.data,
                             input_size=args.input_size, limit=args.limit, seed=args.seed, arch_lr=args.arch_lr,
                             latency_weight=args.latency_weight)
    out = Path(args.out)
    result = DartsSearch(settings, out, resume=args.resume).run(console)
    seconds = sum(record["seconds"] for record in result.history)
    console.print(f"[bold]DARTS ({'first' if args.order == 1 else 'second'} order): {len(result.history)} epochs, "
                  f"{seconds:.0f} s of search ({seconds / len(result.history):.1f} s an epoch)[/bold]")
    console.print(describe_genotype(result.genotype))
    console.print(f"journal {out / 'journal.jsonl'}, plot {out / 'alphas.png'}, cells {out / 'cells.svg'}, genotype "
                  f"{out / 'genotype.json'}")
    if args.final:
        from .train.loop import TrainConfig, train

        config = TrainConfig(model="nas_child", data=args.data, epochs=args.final_epochs, optimizer="adamw", lr=1e-3,
                             batch_size=64, warmup_epochs=1.0,  # the recipe the README's DARTS figures used
                             seed=args.seed, out=out / "final", resume=args.resume and (out / "final").exists(),
                             model_kwargs={"genotype": result.genotype})
        final = train(config, console)
        test = f", test {final.test_accuracy:.2%}" if final.test_accuracy is not None else ""
        console.print(f"[bold]from scratch: validation {final.best_val_accuracy:.2%}{test} after {final.epochs} "
                      f"epochs ({final.wall_s:.0f} s); weights in {out / 'final'}[/bold]")
    return 0


def _space(args: argparse.Namespace) -> tuple[str, dict]:
    """--candidates picks models by name: the models space (the default space when they are given)."""
    if args.candidates is None:
        return args.space or "nas_cnn", {}
    if args.space not in (None, "models"):
        raise ValueError(f"--candidates names models, so they search the models space, not --space {args.space}")
    return "models", {"candidates": tuple(args.candidates)}


def cmd_scale(args: argparse.Namespace) -> int:
    """Compound scaling: search alpha, beta, gamma at phi = 1 and train the scaling curves
    (``search``), or build the baseline scaled by given coefficients (``build``)."""
    from .analysis import count_macs
    from .design.scaling import CompoundScaling, scaled_genotype

    if args.action == "build":
        scaling = CompoundScaling(args.alpha, args.beta, args.gamma, base_resolution=args.base_resolution)
        coefficients = scaling.coefficients(args.phi)
        kwargs = scaled_genotype(args.baseline, coefficients)["kwargs"]  # a family lacking one: the clear error
        # the baseline's stem at every phi, as the search trains it (train_points)
        model = create_model(args.baseline, **kwargs, small_input=args.base_resolution <= 64)
        console.print(f"{args.baseline} at phi {args.phi:g}: width_mult {kwargs['width_mult']:g}, depth_mult "
                      f"{kwargs['depth_mult']:g}, resolution {coefficients.resolution}; "
                      f"{count_params(model) / 1e6:.2f}M parameters, "
                      f"{count_macs(model, coefficients.resolution) / 1e6:.1f}M multiply-adds")
        return 0
    return _scale_search(args)


def _scale_search(args: argparse.Namespace) -> int:
    from .design.nas import TrialSettings
    from .design.nas.plots import plot_scaling
    from .design.scaling import ScalingCoefficients, scaled_genotype, scaling_curves, search_coefficients
    from .durable import FolderLock, check_output_folder

    scaled_genotype(args.baseline, ScalingCoefficients(1.0, 1.0, args.base_resolution))  # before any work
    out = check_output_folder(Path(args.out))
    settings = TrialSettings(epochs=args.epochs, data=args.data, limit=args.limit)
    run = dict(executor=args.executor, workers=args.workers, seed=args.seed)
    with FolderLock(out):
        with console.status(f"step 1: {args.baseline} at phi = 1 over the alpha-beta-gamma grid"):
            scaling, grid = search_coefficients(args.baseline, settings, out / "grid", step=args.grid_step,
                                                limit=args.grid_limit, base_resolution=args.base_resolution, **run)
        table = Table(title=f"step 1: {args.baseline} scaled at phi = 1 (alpha * beta^2 * gamma^2 ~ 2)")
        for column in ("point", "resolution", "MACs", "validation accuracy"):
            table.add_column(column, justify="left" if column == "point" else "right")
        for record in grid:
            table.add_row(record["label"], str(record["resolution"]), f"{record.get('macs', 0) / 1e6:.1f}M",
                          f"{record['val_accuracy']:.2%}")
        console.print(table)
        console.print(f"[bold]found alpha {scaling.alpha:g}, beta {scaling.beta:g}, gamma {scaling.gamma:g}[/bold]")
        with console.status(f"step 2: phi = {', '.join(map(str, args.phis))}, one dimension against all three"):
            curves = scaling_curves(args.baseline, scaling, settings, out / "curves", phis=args.phis, **run)
        figure = plot_scaling(curves, out / "scaling.png", f"scaling {args.baseline} on {args.data}")
    console.print(f"scaling curves: {figure}; journals in {out / 'grid'} and {out / 'curves'}")
    return 0


def cmd_netadapt(args: argparse.Namespace) -> int:
    """NetAdapt: trim a trained network layer by layer until its measured latency meets the budget."""
    # Subnormal floats flushed before torch starts its worker threads, which inherit the setting: the
    # timings then measure the widths, not a briefly trained network's tiny activations (design/latency.py).
    torch.set_flush_denormal(True)
    try:
        return _netadapt(args)
    finally:  # the process's default back for a caller in the same process: a test, a notebook
        torch.set_flush_denormal(False)


def _netadapt(args: argparse.Namespace) -> int:
    from .design.nas import TrialSettings
    from .design.netadapt import NetAdapt, NetAdaptSettings

    short = TrialSettings(epochs=args.short_epochs, lr=args.lr, warmup_epochs=0.0, limit=args.short_limit,
                          batch_size=args.batch_size)
    settings = NetAdaptSettings(budget=args.budget, select=args.select, step=args.step, decay=args.decay,
                                granularity=args.granularity, holdout=args.holdout, short=short,
                                long_epochs=args.long_epochs, long_at=tuple(args.long_at), threads=args.threads,
                                compare=tuple(args.compare), compare_epochs=args.compare_epochs)
    run = NetAdapt(args.model, args.weights, settings, args.out, data=args.data, executor=args.executor,
                   workers=args.workers,
                   resume=args.resume, seed=args.seed, latency_table=args.latency_table, remeasure=args.remeasure,
                   console=console)
    summary = run.run()
    start = summary["start"]
    table = Table(title=f"NetAdapt of {args.model}: budget {summary['budget_ms']:.2f} ms "
                        f"({settings.threads} threads, batch 1)")
    for column in ("network", "measured ms", "params", "validation", "test"):
        table.add_column(column, justify="left" if column == "network" else "right")
    rows = [("original", start)] + [(f"NetAdapt, iteration {f['iteration']} ({f['label']})", f)
                                    for f in summary["fine_tuned"]] + [(r["model"], r) for r in summary["references"]]
    for label, row in rows:
        test = f"{row['test_accuracy']:.2%}" if row.get("test_accuracy") is not None else "-"
        table.add_row(label, f"{row['measured_ms']:.2f}", f"{row['params'] / 1e6:.2f}M",
                      f"{row['val_accuracy']:.2%}", test)
    console.print(table)
    console.print(f"adapted network: {summary['adapted']}; plot {Path(args.out) / 'netadapt.png'}; "
                  f"{len(summary['iterations'])} iterations in {Path(args.out) / 'iterations'}")
    return 0


def _objective(args: argparse.Namespace, trial):
    """--objective mnas: MnasNet's reward with the target in milliseconds, or a model's measured latency
    (its MACs with --cost macs); a resumed search keeps the target it was started with."""
    from .design.nas import AccuracyObjective, MnasObjective

    if args.objective == "accuracy":
        if args.target_ms is not None or args.target_like:
            raise ValueError("--target-ms and --target-like apply to --objective mnas")
        return AccuracyObjective()
    if (args.target_ms is None) == (args.target_like is None):
        raise ValueError("--objective mnas needs one target: --target-ms T or --target-like MODEL")
    cost = "macs" if args.cost == "macs" else "latency_ms"
    state = Path(args.out) / "state.json"
    if args.resume and args.target_like and state.exists():
        target = json.loads(state.read_text())["identity"]["objective"]["target"]
    elif args.target_like:
        target = _measured_target(args.target_like, cost, trial, args)
    else:
        target = args.target_ms
    return MnasObjective.hard(target, cost) if args.constraint == "hard" else MnasObjective(target, cost=cost)


def _measured_target(name: str, cost: str, trial, args: argparse.Namespace) -> float:
    from .design.latency import LatencyTable
    from .design.nas.costs import child_macs, reference_latency

    model_info(name)  # an unknown name fails here
    if cost == "macs":
        return child_macs({"space": "models", "model": name}, trial)
    table = LatencyTable(args.latency_table or Path(args.out) / "latency_table.json", threads=trial.threads,
                         remeasure=args.remeasure)
    target = reference_latency(name, table, trial)
    console.print(f"target: {name} runs in {target:.3f} ms here (batch 1, {trial.threads} thread)")
    return target


def _model_to_export(args: argparse.Namespace):
    """The model to export: rebuilt from a vertebra weights file's card, or built from the
    options and filled strictly from a foreign (torchvision/timm) checkpoint."""
    from .weights import classes_in, load_weights, read_weights

    if not args.weights:
        console.print(f"no --weights: exporting {args.model} with random initial weights", soft_wrap=True)
        return create_model(args.model, num_classes=args.num_classes)
    state, card = read_weights(args.weights)
    if not card:
        num_classes = (args.num_classes if args.num_classes is not None else
                       classes_in(create_model(args.model), state))
        model = create_model(args.model, num_classes=num_classes)
    else:
        if card["model"] != args.model:
            raise ValueError(f"{args.weights} holds weights of {card['model']}, not {args.model}")
        kwargs = card["kwargs"]
        if args.num_classes is not None and args.num_classes != kwargs.get("num_classes"):
            raise ValueError(f"{args.weights} was saved with {kwargs.get('num_classes')} classes, "
                             f"not --num-classes {args.num_classes}; leave the option out")
        out_indices = card.get("out_indices")
        model = create_model(args.model, features_only=out_indices is not None, out_indices=out_indices, **kwargs)
    load_weights(model, args.weights)
    return model


def _output_file(args: argparse.Namespace) -> Path:
    """--out, checked before any work: not there unless --force, in a folder that exists and is writable."""
    from .durable import check_output_folder

    out = Path(args.out)
    if out.exists() and not args.force:
        raise ValueError(f"{out} exists: pass --force to replace it")
    if not out.parent.is_dir():
        raise ValueError(f"folder {str(out.parent)!r} does not exist")
    check_output_folder(out.parent, "the folder of --out")
    return out


def cmd_export(args: argparse.Namespace) -> int:
    """Write a model as ONNX or TorchScript, then run the file against the eager model."""
    from .export import (DEFAULT_OPSET, check_onnx, check_torchscript, example_input, export_onnx,
                         export_torchscript, require)

    from .data_config import data_config
    from .durable import write_json

    model_info(args.model)  # fail on a wrong name before any work
    if Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder: name the file to write, "
                         f"e.g. {Path(args.out) / (args.model + '.onnx')}")
    out = _output_file(args)
    onnx = args.format == "onnx"
    if not onnx and (args.dynamic_batch or args.opset is not None):
        raise ValueError("--dynamic-batch and --opset apply to --format onnx only "
                         "(a TorchScript trace already runs at any batch size)")
    if onnx:  # before any work, not after it
        require("onnx")
        require("onnxruntime")
    model = _model_to_export(args).eval()
    preprocessing = data_config(model)  # what the loaded weights expect: their input size by default
    size = args.input_size or preprocessing.input_size
    if onnx:
        export_onnx(model, out, input_size=size, dynamic_batch=args.dynamic_batch,
                    opset=DEFAULT_OPSET if args.opset is None else args.opset)
    else:
        export_torchscript(model, out, input_size=size)
    # another input than the traced one; a batch of 2 checks the free batch dimension where there is one
    x = example_input(model, size, batch_size=2 if args.dynamic_batch or not onnx else 1, seed=1)
    error = (check_onnx if onnx else check_torchscript)(out, model, x)
    tolerance = 1e-4 if onnx else 1e-6
    runtime = "onnxruntime" if onnx else "torch.jit.load"
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:,.1f} MB); {runtime} against PyTorch on a random "
                  f"{'x'.join(map(str, x.shape))} input: relative error {error:.1e}", soft_wrap=True)
    if error > tolerance:
        console.print(f"[red]the relative error exceeds {tolerance:.0e}: the file does not reproduce the model[/]",
                      soft_wrap=True)
        return 1
    written = write_json(out.with_name(f"{out.stem}.preprocessing.json"), preprocessing.to_dict())
    console.print(f"wrote {written}: the preprocessing its inputs need", soft_wrap=True)
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """int8 post-training quantization of trained weights: calibrate, compare with float32, write."""
    from .inference import quantize, save_quantized
    from .train.predict import load_trained, quantization_sets

    model_info(args.model)  # fail on a wrong name before any work
    if Path(args.out).suffix != ".pt2":
        raise ValueError(f"--out must end in .pt2 (a torch.export program), got {args.out!r}")
    out = _output_file(args)
    model, metadata = load_trained(args.model, args.weights)
    calibration, (images, labels), unreadable = quantization_sets(args.data, metadata, args.calibration)
    for bad in unreadable:
        print(f"vertebra quantize: skipped {bad.path}: {bad.reason}", file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:  # said once, below, not as a Python warning
        warnings.simplefilter("always", RuntimeWarning)
        quantized = quantize(model, calibration)
    with torch.no_grad():
        fp32 = torch.cat([model(part) for part in images.split(256)]).argmax(1)
    int8 = quantized(images).argmax(1)
    result = {"fp32_accuracy": float((fp32 == labels).float().mean()),
              "int8_accuracy": float((int8 == labels).float().mean()),
              "top1_agreement": float((fp32 == int8).float().mean()), "count": len(labels),
              "calibration_images": len(calibration), "float_layers": quantized.float_layers}
    save_quantized(quantized, out, {"model": args.model, "weights": str(args.weights), "data": args.data,
                                    "metadata": metadata, **result})
    if args.json:
        print(json.dumps({**result, "out": str(out)}))
        return 0
    for warning in caught:
        console.print(f"[yellow]{warning.message}[/]", soft_wrap=True)
    console.print(f"{args.model} on {args.data} ({result['count']} held-out images, calibrated on "
                  f"{result['calibration_images']}): float32 {result['fp32_accuracy']:.2%}, int8 "
                  f"{result['int8_accuracy']:.2%}; the same top-1 answer on {result['top1_agreement']:.2%}",
                  soft_wrap=True)
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:,.1f} MB): vertebra.inference.load_quantized reads it",
                  soft_wrap=True)
    return 0


def cmd_draw(args: argparse.Namespace) -> int:
    """Draw a model's network or its blocks as an SVG or PNG page."""
    from .diagrams import FORMATS, draw

    out = Path(args.out)
    if out.suffix.lower() not in FORMATS:
        raise ValueError(f"--out must end in .svg or .png, got {str(out)!r}")
    model_info(args.model)  # fail on a wrong name before any work
    if out.exists() and not args.force and not out.is_dir():
        raise ValueError(f"{out} exists: pass --force to replace it")
    diagram = draw(args.model, args.detail, args.input_size)
    diagram.save(out, force=args.force)
    console.print(f"wrote {out}: {args.model}, {args.detail}, {len(diagram.panels)} panel(s)", soft_wrap=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .design.nas import EXECUTORS, SPACES, STRATEGIES

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
    fit = commands.add_parser("train", help="train a model on the embedded digits or an image folder")
    fit.add_argument("model")
    fit.add_argument("--data", default="digits", help="'digits' (embedded) or a folder with one sub-folder per class")
    fit.add_argument("--val", help="a validation folder (default: --val-split of the training folder)")
    fit.add_argument("--val-split", type=float, default=0.1)
    fit.add_argument("--input-size", type=_positive, help="image-folder input size (default: the model's)")
    fit.add_argument("--epochs", type=_positive, default=5)
    fit.add_argument("--batch-size", type=_positive, default=32, help="global batch, split over processes")
    fit.add_argument("--lr", type=float, help="peak learning rate (default: AdamW 8e-3, SGD 0.1 x batch/256)")
    fit.add_argument("--optimizer", choices=("sgd", "adamw"), default="adamw")
    fit.add_argument("--weight-decay", type=float)
    fit.add_argument("--bn-momentum", type=float, default=0.4, help="every BatchNorm's running-statistics "
                     "momentum (default 0.4: a short run's validation accuracy follows what its weights have "
                     "learnt from the first epoch; the models' own is 0.1, the usual choice for long runs)")
    fit.add_argument("--out", help="output folder (default: runs/MODEL); an existing run needs --resume")
    fit.add_argument("--resume", action="store_true", help="continue the run in --out after its last committed "
                     "epoch; the run must be the same (model, data, seed, every setting that changes the "
                     "result), except --epochs, which may be raised to extend it (the learning-rate schedule "
                     "is then recomputed for the new total)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                     help="bfloat16 autocast, on CPUs with AVX512-BF16 or AMX (default: where a few timed steps "
                     "run at least 1.2x faster in bf16 than in fp32; the decision is cached per machine)")
    fit.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                     help="the channels_last memory layout (default: unless a few timed steps run at least 1.1x "
                     "faster in NCHW; measured with --bf16's choice, cached per machine)")
    fit.add_argument("--limit", type=_positive, help="train on only the first N training images (a quick check)")
    fit.add_argument("--workers", type=int, help="data-loading processes (default: 0 for the digits, else the cores "
                     "torch leaves, at most 4); augmentation is the same whatever the count")
    fit.add_argument("--cache", action="store_true", help="decode an image folder once, into memory (where it fits "
                     "in half the available memory)")
    fit.add_argument("--compile", action="store_true", help="torch.compile the training step (Inductor; needs a C++ "
                     "compiler, else trains eagerly and says so); the first step's compile time is reported apart")
    fit.add_argument("--small-input", action=argparse.BooleanOptionalAction, default=None,
                     help="the 32x32 stem (default: on for inputs of 64 pixels or less)")
    fit.set_defaults(run=cmd_train)
    check = commands.add_parser("evaluate", help="accuracy, per-class accuracy and a confusion-matrix PNG")
    check.add_argument("model")
    check.add_argument("--weights", required=True, help="a .safetensors file saved by vertebra train")
    check.add_argument("--data", default="digits", help="'digits' (its test split) or an image folder")
    check.add_argument("--batch-size", type=_positive, default=256)
    check.add_argument("--confusion", help="where to write the PNG (default: beside the weights)")
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=cmd_evaluate)
    guess = commands.add_parser("predict", help="top-k classes of image files")
    guess.add_argument("model")
    guess.add_argument("--weights", required=True)
    guess.add_argument("images", nargs="+")
    guess.add_argument("--top-k", type=_positive, default=5)
    guess.add_argument("--json", action="store_true")
    guess.set_defaults(run=cmd_predict)
    gates = commands.add_parser("gates", help="PNG heat map of an LSTM's gates over one digit's rows")
    gates.add_argument("model", help="lstm_classifier or bilstm_classifier")
    gates.add_argument("--weights", help="a .safetensors file saved by vertebra train (default: untrained)")
    gates.add_argument("--index", type=int, default=0, help="which embedded test digit")
    gates.add_argument("--layer", type=int, default=0)
    gates.add_argument("--out", default="gates.png")
    gates.set_defaults(run=cmd_gates)
    nas = commands.add_parser("search", help="neural architecture search: " + ", ".join(STRATEGIES) + ", darts")
    nas.add_argument("strategy", choices=(*STRATEGIES, "darts"), help="darts: differentiable search of the "
                     "darts_cells space (one supernet; --order, --nodes, --layers, --init-channels)")
    nas.add_argument("--space", choices=tuple(SPACES), help="what is searched (default nas_cnn; models with "
                     "--candidates)")
    nas.add_argument("--trials", type=_positive, help="children to train (default 64; a set search trains what "
                     "its rounds need)")
    nas.add_argument("--candidates", nargs="+", metavar="PATTERN", help="the models space's members: registered "
                     "model names or patterns, e.g. 'mobilenet_v2_*' 'mnasnet*' (default with --space models: the "
                     "mobilenet_v2, mnasnet, shufflenet_v2 and mobilenet_v3 families)")
    nas.add_argument("--set-size", type=_positive, help="set: N candidates, sampled from the space (default: every "
                     "model of the models space, else 16); each round keeps the better half at twice the epochs")
    nas.add_argument("--workers", type=_positive, default=2, help="children trained at once, one core each")
    nas.add_argument("--children-per-update", type=_positive,
                     help="the paper's m: children per controller update (default: max(workers, 4))")
    nas.add_argument("--executor", choices=tuple(EXECUTORS), default="local",
                     help="local: a process pool (default); ray: Ray tasks; inline: in this process, one at a time")
    nas.add_argument("--ray-address", help="join this Ray cluster (default: start a local Ray instance)")
    nas.add_argument("--out", default="runs/search", help="output folder; an existing search needs --resume")
    nas.add_argument("--resume", action="store_true", help="continue the search in --out (every setting the "
                     "same; finished children are never trained again)")
    nas.add_argument("--seed", type=int, default=0)
    nas.add_argument("--epochs", type=_positive, help="training epochs per child (default 2; a set search's "
                     "first round, each later round doubling them); darts: epochs of the search (default 10)")
    nas.add_argument("--data", default="digits", help="'digits' (embedded) or an image folder")
    nas.add_argument("--limit", type=_positive, help="train each child on only N images (a quick check)")
    nas.add_argument("--input-pool", type=_positive, help="average-pool the input by this factor first "
                     "(default: 4 for nas_cnn on the digits, which are 8x8 images upsampled to 32x32; else 1)")
    for flag, meaning in (("start-depth", "layers at first"), ("depth-step", "layers added each time"),
                          ("depth-interval", "trials between increases"), ("depth-final", "trials after which "
                                                                         "the depth stays")):
        nas.add_argument(f"--{flag}", type=_positive, help=f"nas_cnn depth schedule: {meaning} "
                         "(default: the paper's 6, +2, three increases in four equal parts of the trials)")
    nas.add_argument("--population", type=_positive, default=20, help="evolution: P, members kept (the oldest "
                     "leaves as each child joins; default 20)")
    nas.add_argument("--sample", type=_positive, default=5, help="evolution: S, tournament size (default 5)")
    nas.add_argument("--crossover", type=float, default=0.5, help="evolution: share of children bred from two "
                     "parents (default 0.5); every child has one decision mutated")
    nas.add_argument("--objective", choices=("accuracy", "mnas"), default="accuracy", help="accuracy: the NAS "
                     "paper's reward (validation accuracy cubed); mnas: MnasNet's ACC x (LAT/T)^w")
    nas.add_argument("--target-ms", type=float, help="mnas: the target T in milliseconds at batch 1 "
                     "(in multiply-adds with --cost macs)")
    nas.add_argument("--target-like", metavar="MODEL", help="mnas: T = this model's measured latency "
                     "(or MACs with --cost macs), e.g. mobilenet_v2_050")
    nas.add_argument("--constraint", choices=("soft", "hard"), default="soft", help="mnas: soft (w = -0.07 "
                     "either side of T) or hard (w = 0 under T, -1 over it)")
    nas.add_argument("--cost", choices=("latency", "macs"), default="latency", help="mnas: measured latency "
                     "(a lookup table of timed blocks) or multiply-adds (EfficientNet's variant)")
    nas.add_argument("--latency-table", type=Path, help="the JSON table of timed blocks to reuse and extend "
                     "(default: OUT/latency_table.json)")
    nas.add_argument("--remeasure", action="store_true", help="time every block again when the table was "
                     "measured on another machine")
    nas.add_argument("--references", nargs="*", metavar="MODEL", help="mnas: hand-designed models trained like "
                     "the children and drawn beside the Pareto front (default: up to 4 mobile models within a "
                     "factor of two of the target; none for the models space; give none to skip)")
    nas.add_argument("--children", type=_positive, default=8, help="morph: children per hill-climbing step")
    nas.add_argument("--edits", type=_positive, default=3, help="morph: each child is 1 to this many random "
                     "function-preserving edits (widen, deepen, skip) of the best network")
    nas.add_argument("--steps", type=_positive, default=10, help="morph: hill-climbing steps (the search trains "
                     "1 + steps x children networks)")
    nas.add_argument("--order", type=int, choices=(1, 2), default=1, help="darts: 1 first order (xi = 0), 2 the "
                     "unrolled second-order step")
    nas.add_argument("--nodes", type=_positive, default=4, help="darts: intermediate nodes per cell (default 4)")
    nas.add_argument("--layers", type=_positive, default=8, help="darts: cells, reductions at 1/3 and 2/3 "
                     "(default 8)")
    nas.add_argument("--init-channels", type=_positive, default=16, help="darts: the first cells' width (default 16)")
    nas.add_argument("--batch-size", type=_positive, default=64, help="darts: batch size of both halves")
    nas.add_argument("--latency-weight", type=float, default=0.0, help="darts: add this weight x the expected "
                     "latency in ms (each edge's softmax-weighted primitive times, timed once into "
                     "OUT/latency_table.json) to alpha's loss (default 0: accuracy only)")
    nas.add_argument("--arch-lr", type=float, default=3e-4, help="darts: Adam's learning rate for alpha (default: "
                     "the paper's 3e-4, for its 19,500 steps; a small dataset takes far fewer)")
    nas.add_argument("--input-size", type=_positive, default=16, help="darts: image size (default 16: the 8x8 "
                     "digits upsampled)")
    nas.add_argument("--final", action="store_true", help="then grid-search the best child's training "
                     "settings (--grid) and train it fully (weights + genotype in OUT/final); darts: train the "
                     "derived genotype from scratch for --final-epochs")
    nas.add_argument("--final-epochs", type=_positive, default=30)
    nas.add_argument("--grid", choices=("default", "paper"), default="default", help="--final's grid: lr x "
                     "weight decay x batch size (default), or the paper's lr x weight decay x batch-norm epsilon "
                     "x decay point")
    nas.set_defaults(run=cmd_search)
    scale = commands.add_parser("scale", help="compound scaling (EfficientNet): search alpha, beta, gamma; build")
    scale.add_argument("action", choices=("search", "build"))
    scale.add_argument("baseline", help="a registered model whose family takes width_mult and depth_mult")
    scale.add_argument("--base-resolution", type=_positive, default=32, help="the baseline's input size "
                       "(default 32: the digits)")
    scale.add_argument("--alpha", type=float, default=1.2, help="build: depth coefficient (default: B0's 1.2)")
    scale.add_argument("--beta", type=float, default=1.1, help="build: width coefficient (default 1.1)")
    scale.add_argument("--gamma", type=float, default=1.15, help="build: resolution coefficient (default 1.15)")
    scale.add_argument("--phi", type=float, default=1.0, help="build: the compound coefficient")
    scale.add_argument("--grid-step", type=float, default=0.1, help="search: the alpha, beta, gamma grid's step")
    scale.add_argument("--grid-limit", type=float, default=2.0, help="search: the grid's largest coefficient")
    scale.add_argument("--phis", type=_positive, nargs="+", default=[1, 2, 3], help="search: the curves' phi")
    scale.add_argument("--data", default="digits", help="'digits' (embedded) or an image folder")
    scale.add_argument("--epochs", type=_positive, default=5, help="search: training epochs per point (default "
                       "5; at 2 the digits' ranking is mostly the seed's)")
    scale.add_argument("--limit", type=_positive, help="search: train on only N images (a quick check)")
    scale.add_argument("--workers", type=_positive, default=2)
    scale.add_argument("--executor", choices=tuple(EXECUTORS), default="local")
    scale.add_argument("--seed", type=int, default=0)
    scale.add_argument("--out", default="runs/scale", help="search: output folder; a rerun resumes it, "
                       "training only the points it lacks")
    scale.set_defaults(run=cmd_scale)
    adapt = commands.add_parser("netadapt", help="NetAdapt: trim a trained network to a latency budget")
    adapt.add_argument("model")
    adapt.add_argument("--weights", required=True, help="the trained network: a .safetensors file of vertebra train")
    adapt.add_argument("--budget", required=True, help="a share of the network's measured latency (0.5) or "
                       "milliseconds (12ms)")
    adapt.add_argument("--select", choices=("accuracy", "ratio"), default="accuracy", help="keep the most "
                       "accurate proposal (the paper) or the least accuracy lost per ms saved (MobileNet V3)")
    adapt.add_argument("--data", help="the image folder the weights were trained on (default: the digits, for "
                       "weights trained on them)")
    adapt.add_argument("--step", type=float, default=0.05, help="the first iteration's latency reduction, as a "
                       "share of the original latency (default 0.05)")
    adapt.add_argument("--decay", type=float, default=0.96, help="each iteration asks for this much of the "
                       "previous one's reduction (default 0.96)")
    adapt.add_argument("--granularity", type=_positive, default=8, help="widths change by multiples of this")
    adapt.add_argument("--holdout", type=float, default=0.2, help="share of the training images that scores "
                       "the proposals (default 0.2)")
    adapt.add_argument("--short-epochs", type=_positive, default=1, help="short-term fine-tuning per proposal")
    adapt.add_argument("--short-limit", type=_positive, help="short-term fine-tuning on only N images")
    adapt.add_argument("--long-epochs", type=_positive, default=10, help="long-term fine-tuning at the end")
    adapt.add_argument("--long-at", type=float, nargs="*", default=[], help="also fine-tune long-term the first "
                       "network under each of these shares of the original latency (more points on the plot)")
    adapt.add_argument("--compare", nargs="*", default=[], help="models to train from scratch for the plot, "
                       "e.g. the family's width multipliers")
    adapt.add_argument("--compare-epochs", type=_positive, default=10)
    adapt.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (AdamW)")
    adapt.add_argument("--batch-size", type=_positive, default=32)
    adapt.add_argument("--threads", type=_positive, default=2, help="torch threads when timing (default 2)")
    adapt.add_argument("--latency-table", type=Path, help="the per-layer table to reuse (default: "
                       "OUT/latency_table.json)")
    adapt.add_argument("--remeasure", action="store_true", help="time every layer again when the table was "
                       "measured on another machine")
    adapt.add_argument("--workers", type=_positive, default=2)
    adapt.add_argument("--executor", choices=tuple(EXECUTORS), default="local")
    adapt.add_argument("--seed", type=int, default=0)
    adapt.add_argument("--out", default="runs/netadapt", help="output folder")
    adapt.add_argument("--resume", action="store_true", help="continue the run in --out: finished proposals "
                       "and iterations are not redone")
    adapt.set_defaults(run=cmd_netadapt)
    export = commands.add_parser("export", help="write a model as ONNX or TorchScript and check the file")
    export.add_argument("model")
    export.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    export.add_argument("--out", required=True, help="the file to write (an existing one needs --force)")
    export.add_argument("--weights", help="a vertebra .safetensors file (its card rebuilds the model), or a "
                        "torchvision/timm checkpoint (default: random initial weights)")
    export.add_argument("--num-classes", type=int, help="classifier size (default: the model's, or the weights')")
    export.add_argument("--input-size", type=_positive, help="input height and width (default: the card's)")
    export.add_argument("--dynamic-batch", action="store_true", help="ONNX: leave the batch dimension free")
    export.add_argument("--opset", type=int, choices=range(13, 21), metavar="{13..20}", help="ONNX opset (default 17)")
    export.add_argument("--force", action="store_true", help="replace an existing --out")
    export.set_defaults(run=cmd_export)
    quant = commands.add_parser("quantize", help="int8 post-training quantization of trained weights (needs "
                                "torchao: vertebra[quantize])")
    quant.add_argument("model")
    quant.add_argument("--weights", required=True, help="a .safetensors file saved by vertebra train")
    quant.add_argument("--data", default="digits", help="'digits' (calibrates on its training split, measures on "
                       "its test split) or an image folder (calibrates on --calibration of its images, measures on "
                       "the rest)")
    quant.add_argument("--calibration", type=_positive, default=256, help="images that set the int8 ranges")
    quant.add_argument("--out", required=True, help="the .pt2 file to write (an existing one needs --force)")
    quant.add_argument("--force", action="store_true", help="replace an existing --out")
    quant.add_argument("--json", action="store_true")
    quant.set_defaults(run=cmd_quantize)
    drawing = commands.add_parser("draw", help="a model's picture: its stages, or each of its blocks in detail")
    drawing.add_argument("model")
    drawing.add_argument("--out", required=True, help="the file to write: .svg or .png (an existing one needs "
                         "--force)")
    drawing.add_argument("--detail", choices=("network", "blocks"), default="network",
                         help="network: stem, stages and head with their share of the cost; blocks: each distinct "
                         "block's layers, branches and shortcuts")
    drawing.add_argument("--input-size", type=_positive, help="input height and width for the shapes and costs "
                         "(default: the card's)")
    drawing.add_argument("--force", action="store_true", help="replace an existing --out")
    drawing.set_defaults(run=cmd_draw)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, TypeError, FileNotFoundError, ModuleNotFoundError) as error:
        print(f"vertebra {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the file system said no: one line naming the path and the cause
        where = f"{error.filename}: " if error.filename else ""
        print(f"vertebra {args.command}: error: {where}{error.strerror or error}", file=sys.stderr)
        return 2
