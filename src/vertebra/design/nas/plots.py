"""The search's picture: reward against trial, the running best, and where the depth grew."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_rewards(records: list[dict], path: Path, title: str) -> Path:
    trials = [r["trial"] for r in records]
    rewards = [r["reward"] for r in records]
    best, running = 0.0, []
    for reward in rewards:
        best = max(best, reward)
        running.append(best)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    ax.scatter(trials, rewards, s=14, alpha=0.7, label="child reward")
    ax.plot(trials, running, color="tab:red", label="best so far")
    depths = [(r["trial"], r.get("depth")) for r in records]
    for (_, before), (trial, after) in zip(depths, depths[1:]):
        if after is not None and before is not None and after != before:
            ax.axvline(trial - 0.5, color="gray", linestyle="--", linewidth=1)
            ax.annotate(f"depth {after}", (trial - 0.5, 0.02), xycoords=("data", "axes fraction"),
                        rotation=90, fontsize=8, color="gray", ha="right")
    ax.set(xlabel="trial", ylabel="reward (validation accuracy cubed)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_pareto(records: list[dict], front: list[dict], cost: str, target: float, path: Path, title: str,
                references: list[dict] = ()) -> Path:
    """Accuracy against cost for every trial, the Pareto front joined and highlighted, the target
    marked, and the hand-designed reference models (trained likewise) as labelled points."""
    unit = "predicted latency (ms, batch 1)" if cost == "latency_ms" else "multiply-adds"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    good = [r for r in records if not r.get("error")]
    ax.scatter([r[cost] for r in good], [100 * r["val_accuracy"] for r in good], s=14, alpha=0.5,
               label="child")
    ax.plot([r[cost] for r in front], [100 * r["val_accuracy"] for r in front], "o-", color="tab:red",
            label="Pareto front")
    trained = [r for r in references if not r.get("error")]
    if trained:
        ax.scatter([r[cost] for r in trained], [100 * r["val_accuracy"] for r in trained], marker="s", s=40,
                   color="black", label="hand-designed")
        for r in trained:
            ax.annotate(r["genotype"]["model"], (r[cost], 100 * r["val_accuracy"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
    ax.axvline(target, color="gray", linestyle="--", label=f"target {target:.3g}")
    return _save_accuracy_plot(fig, ax, path, unit, title)


def plot_scaling(records: list[dict], path: Path, title: str) -> Path:
    """Accuracy against multiply-adds for each way of scaling one baseline (EfficientNet's Figures 3
    and 8): width only, depth only, resolution only and compound, each from the baseline up."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    base = next(r for r in records if r["label"] == "baseline")
    for label, marker in (("width", "s"), ("depth", "^"), ("resolution", "D"), ("compound", "o")):
        curve = [base] + [r for r in records if r["label"] == label and not r.get("error")]
        ax.plot([r["macs"] / 1e6 for r in curve], [100 * r["val_accuracy"] for r in curve], marker=marker,
                label=label, linewidth=2.5 if label == "compound" else 1.5)
    return _save_accuracy_plot(fig, ax, path, "multiply-adds (millions, at each point's resolution)", title)


def plot_netadapt(summary: dict, path: Path, title: str) -> Path:
    """Accuracy against measured latency (NetAdapt's Figure 5 in small): the network as each iteration
    left it (held-out accuracy after short-term fine-tuning), the long-term fine-tuned networks and
    the original (validation accuracy), and the references trained from scratch (validation)."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    start, steps = summary["start"], summary["iterations"]
    ax.plot([start["measured_ms"]] + [s["measured_ms"] for s in steps],
            [100 * start["holdout_accuracy"]] + [100 * s["holdout_accuracy"] for s in steps], marker=".",
            color="0.6", label="adaptation, each iteration (held-out, short-term fine-tuned)")
    ax.axvline(summary["budget_ms"], color="0.4", linestyle="--", linewidth=1, label="budget")
    tuned = sorted(summary["fine_tuned"], key=lambda f: f["measured_ms"])
    ax.plot([start["measured_ms"]] + [f["measured_ms"] for f in tuned],
            [100 * start["val_accuracy"]] + [100 * f["val_accuracy"] for f in tuned], marker="o", linewidth=2.5,
            label="NetAdapt, long-term fine-tuned (validation)")
    ax.annotate("original", (start["measured_ms"], 100 * start["val_accuracy"]), textcoords="offset points",
                xytext=(4, 4), fontsize=8)
    references = sorted(summary.get("references", []), key=lambda r: r["measured_ms"])
    if references:
        ax.plot([r["measured_ms"] for r in references], [100 * r["val_accuracy"] for r in references], marker="s",
                label="width multipliers, from scratch (validation)")
        for reference in references:
            ax.annotate(reference["model"], (reference["measured_ms"], 100 * reference["val_accuracy"]),
                        textcoords="offset points", xytext=(4, -10), fontsize=8)
    return _save_accuracy_plot(fig, ax, path, "measured latency (ms, batch 1)", title, ylabel="accuracy (%)")


def _save_accuracy_plot(fig, ax, path: Path, xlabel: str, title: str, ylabel: str = "validation accuracy (%)") -> Path:
    """Accuracy on the y axis, a grid and a legend; written atomically (vertebra.durable)."""
    from ...durable import write_file

    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    try:
        return write_file(path, lambda temporary: fig.savefig(temporary, format="png"))
    finally:
        plt.close(fig)


def _save(fig, path: Path) -> Path:
    """Lay the figure out and write it atomically as PNG."""
    from ...durable import write_file

    fig.tight_layout()
    try:
        write_file(path, lambda temporary: fig.savefig(temporary, format="png"))
    finally:
        plt.close(fig)
    return path


def plot_alphas(history: list[dict], path: Path, title: str) -> Path:
    """DARTS: for each cell type, each edge's weight of the operation it ends with, over the epochs
    (rows: edges "node <- input: operation"; columns: epochs; colour: softmax(alpha))."""
    from ...models.darts_cells import PRIMITIVES

    kinds = ("normal", "reduce")
    last = history[-1]["alphas"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.32 * len(last["normal"]) + 1.6), dpi=100)
    for ax, kind in zip(axes, kinds):
        final = last[kind]
        chosen = [max(range(1, len(PRIMITIVES)), key=lambda k: row[k]) for row in final]  # the best non-zero op
        grid = [[record["alphas"][kind][edge][op] for record in history] for edge, op in enumerate(chosen)]
        labels, edge = [], 0
        for node in range(2, 100):
            for source in range(node):
                if edge < len(final):
                    labels.append(f"{node} ← {source}: {PRIMITIVES[chosen[edge]]}")
                    edge += 1
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_xlabel("epoch")
        ax.set_xticks(range(len(history)), [str(r["epoch"] + 1) for r in history], fontsize=7)
        ax.set_title(f"{kind} cell: each edge's weight of its final operation (uniform: 1/{len(PRIMITIVES)})",
                     fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.05)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _edit_text(edit: dict) -> str:
    if edit["kind"] == "widen":
        return f"widen {edit['layer']} to {edit['filters']}"
    if edit["kind"] == "deepen":
        return f"deepen after {edit['after']} ({edit['kernel'][0]}x{edit['kernel'][1]})"
    return f"skip {edit['input']}→{edit['layer']}"


def plot_morphisms(records: list[dict], edits: dict[int, list[dict]], path: Path, title: str) -> Path:
    """Morphism search: each network's validation accuracy by hill-climbing step, joined to its parent;
    the path to the best network drawn bold, with the edits along it."""

    by_trial = {r["trial"]: r for r in records}
    accuracy = {t: (r.get("val_accuracy") or 0.0) for t, r in by_trial.items()}
    step = {}
    for trial in sorted(by_trial):  # a child is one step after its parent
        parent = by_trial[trial].get("parent")
        step[trial] = 0 if parent is None else step.get(parent, 0) + 1
    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for trial, record in by_trial.items():
        parent = record.get("parent")
        if parent in by_trial:
            ax.plot([step[parent], step[trial]], [accuracy[parent], accuracy[trial]], color="lightgray", zorder=1)
    ax.scatter([step[t] for t in by_trial], [accuracy[t] for t in by_trial], s=18, color="tab:blue", zorder=2,
               label="network (trained from its parent's weights)")
    best = max(by_trial, key=lambda t: (by_trial[t].get("reward", accuracy[t]), -t))
    chain = [best]
    while by_trial[chain[-1]].get("parent") in by_trial:
        chain.append(by_trial[chain[-1]]["parent"])
    chain.reverse()
    ax.plot([step[t] for t in chain], [accuracy[t] for t in chain], color="tab:red", linewidth=2, zorder=3,
            label="the path to the best network")
    for trial in chain[1:]:
        text = ", ".join(_edit_text(e) for e in edits.get(trial, []))
        ax.annotate(text, (step[trial], accuracy[trial]), textcoords="offset points", xytext=(4, -10), fontsize=7,
                    color="tab:red")
    ax.set(xlabel="hill-climbing step (edits from the first network)", ylabel="validation accuracy", title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
