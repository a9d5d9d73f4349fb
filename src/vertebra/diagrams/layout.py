"""A layered drawing of a small directed acyclic graph, top to bottom (Sugiyama et al. 1981, in brief).

Nodes go to layers by their longest path from an input; an edge that skips layers runs through
one waypoint per layer it crosses, shared by every edge from the same node (a shortcut is one
line that branches where it lands, as the papers draw DenseNet's connections).  The order
within a layer follows the neighbours' mean position, and each layer's x positions are the
closest to their neighbours' that keep the boxes apart (isotonic regression, solved exactly by
pooling adjacent violators).  Sizes are in inches.
"""
from __future__ import annotations

from dataclasses import dataclass, field

GAP_X, GAP_Y, WAYPOINT = 0.25, 0.3, 0.12


@dataclass
class Box:
    width: float
    height: float
    inputs: list[int] = field(default_factory=list)


@dataclass
class Placed:
    x: list[float]  # centre of each box
    y: list[float]  # top of each box
    edges: list[tuple[int, int, list[tuple[float, float]]]]  # (source, target, polyline)
    width: float
    height: float


def _layers(boxes: list[Box]) -> list[int]:
    layer = []
    for index, box in enumerate(boxes):  # boxes come in execution order: every input before its reader
        if any(not 0 <= i < index for i in box.inputs):
            raise ValueError(f"box {index} reads boxes {box.inputs}: boxes must come in execution order")
        layer.append(max((layer[i] + 1 for i in box.inputs), default=0))
    return layer


def _isotonic(desired: list[float], offsets: list[float], weights: list[float]) -> list[float]:
    """Positions as close as possible (weighted least squares) to ``desired`` with x[i] - x[i-1] >=
    ``offsets[i] - offsets[i-1]``: pool adjacent violators on desired - offset."""
    blocks: list[list[float]] = []  # [mean, weight, count]
    for value, weight in zip((d - o for d, o in zip(desired, offsets)), weights):
        blocks.append([value, weight, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            mean, total, count = blocks.pop()
            last = blocks[-1]
            blocks[-1] = [(last[0] * last[1] + mean * total) / (last[1] + total), last[1] + total, last[2] + count]
    values = [mean for mean, _, count in blocks for _ in range(count)]
    return [v + o for v, o in zip(values, offsets)]


def _offsets(row: list[int], width: list[float]) -> list[float]:
    offsets, edge = [], 0.0
    for i, n in enumerate(row):
        edge += (width[row[i - 1]] / 2 + GAP_X + width[n] / 2) if i else 0.0
        offsets.append(edge)
    return offsets


def _straighten(chains: dict[tuple[int, int], int], rows: list[list[int]], x: list[float],
                width: list[float]) -> None:
    """Each shortcut as one vertical line where that leaves the boxes beside it clear."""
    row_of = {n: row for row in rows for n in row}
    by_source: dict[int, list[int]] = {}
    for (source, _), waypoint in chains.items():
        by_source.setdefault(source, []).append(waypoint)
    for waypoints in by_source.values():
        line = max(x[w] for w in waypoints)
        clear = True
        for w in waypoints:
            row = row_of[w]
            after = row[row.index(w) + 1:]
            if after and x[after[0]] - width[after[0]] / 2 < line + WAYPOINT / 2 + GAP_X / 2:
                clear = False
        if clear:
            for w in waypoints:
                x[w] = line


def layout(boxes: list[Box], sweeps: int = 8) -> Placed:
    layer = _layers(boxes)
    width = [b.width for b in boxes]
    height = [b.height for b in boxes]
    preds: list[list[int]] = [[] for _ in boxes]
    chains: dict[tuple[int, int], int] = {}  # (source, layer) -> waypoint
    layer_of = list(layer)
    paths = []
    for target, box in enumerate(boxes):
        for source in box.inputs:
            path, previous = [source], source
            for level in range(layer[source] + 1, layer[target]):
                if (source, level) not in chains:
                    chains[source, level] = len(width)
                    width.append(WAYPOINT)
                    height.append(0.0)
                    layer_of.append(level)
                    preds.append([previous])
                previous = chains[source, level]
                path.append(previous)
            path.append(target)
            if previous not in preds[target]:
                preds[target].append(previous)
            paths.append((source, target, path))
    succs: list[list[int]] = [[] for _ in width]
    for node, sources in enumerate(preds):
        for source in sources:
            succs[source].append(node)
    rows = [[n for n in range(len(width)) if layer_of[n] == level] for level in range(max(layer_of) + 1)]
    rank = {n: i for row in rows for i, n in enumerate(row)}
    for sweep in range(sweeps):  # order: the neighbours' mean rank, alternately from above and below
        down = sweep % 2 == 0
        for row in rows[1:] if down else reversed(rows[:-1]):
            near = preds if down else succs
            row.sort(key=lambda n: sum(rank[m] for m in near[n]) / len(near[n]) if near[n] else rank[n])
            rank.update({n: i for i, n in enumerate(row)})
    real = len(boxes)
    origin = list(range(len(width)))
    for (source, _), waypoint in chains.items():
        origin[waypoint] = source
    x = [0.0] * len(width)
    for row in rows:
        for n, value in zip(row, _isotonic([0.0] * len(row), _offsets(row, width), [1.0] * len(row))):
            x[n] = value
    for sweep in range(sweeps + 1):  # positions: the neighbours' mean x, kept apart; the last sweep goes down
        down = sweep % 2 == 0
        near = preds if down else succs
        for row in rows[1:] if down else reversed(rows[:-1]):
            desired = []
            for n in row:
                if down:  # a box under a shortcut's start, a waypoint under the one above it
                    pulls = [origin[m] for m in near[n]] if n < real else near[n]
                else:
                    pulls = [m for m in near[n] if m < real] or near[n]
                desired.append(sum(x[m] for m in pulls) / len(pulls) if pulls else x[n])
            weights = [1.0 if n < real else 0.2 for n in row]
            for n, value in zip(row, _isotonic(desired, _offsets(row, width), weights)):
                x[n] = value
    _straighten(chains, rows, x, width)
    left = min(x[n] - width[n] / 2 for n in range(len(width)))
    x = [value - left for value in x]
    tops, top = [], 0.0
    for row in rows:
        tops.append(top)
        top += max(height[n] for n in row) + GAP_Y
    row_height = [max(height[n] for n in row) for row in rows]
    y = [tops[layer_of[n]] + (row_height[layer_of[n]] - height[n]) / 2 for n in range(len(width))]
    edges = []
    for source, target, path in paths:
        points = [(x[source], y[source] + height[source])]
        for waypoint in path[1:-1]:
            level = layer_of[waypoint]
            points += [(x[waypoint], tops[level]), (x[waypoint], tops[level] + row_height[level])]
        points.append((x[target], y[target]))
        edges.append((source, target, points))
    return Placed(x=x[:real], y=y[:real], edges=edges,
                  width=max(x[n] + width[n] / 2 for n in range(len(width))), height=top - GAP_Y)
