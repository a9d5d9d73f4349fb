"""Panels of boxes and arrows, drawn with matplotlib into one SVG or PNG page.

The SVG keeps its text as text (``svg.fonttype = "none"``): the page can be searched, and a test
can read which stages and blocks it names.  The file is written atomically.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .layout import Box, Placed, layout

FONT = 8.0  # points
CHAR = 0.066  # inches: a DejaVu Sans character at FONT, on average
LINE = 0.155
PAD_X, PAD_Y = 0.14, 0.09
TITLE_LINE, PANEL_GAP, MARGIN = 0.21, 0.45, 0.2
COLOURS = {"conv": "#d6e6f5", "pool": "#fbe3c4", "norm": "#ececec", "fc": "#e4dbf2", "se": "#f7d5df",
           "flow": "#d7efd1", "block": "#fff1bd", "stage": "#fff1bd", "io": "white", "op": "white",
           "other": "#f0f0f0"}
SYMBOLS = {"+", "×", "−", "σ", "tanh"}


@dataclass
class Panel:
    title: list[str]
    texts: list[list[str]]
    styles: list[str]
    inputs: list[list[int]]
    placed: Placed | None = field(default=None, init=False)
    boxes: list[Box] = field(default_factory=list, init=False)

    def __post_init__(self):
        self.boxes = [Box(*_size(text, style), inputs) for text, style, inputs
                      in zip(self.texts, self.styles, self.inputs)]
        self.placed = layout(self.boxes)
        title_width = max((len(line) * CHAR * 1.1 for line in self.title), default=0.0)
        self.width = max(self.placed.width, title_width)
        self.height = self.placed.height + len(self.title) * TITLE_LINE + 0.15


def _size(text: list[str], style: str) -> tuple[float, float]:
    if style == "op" and len(text) == 1 and text[0] in SYMBOLS:
        return 0.32, 0.32
    width = max(len(line) for line in text) * CHAR + 2 * PAD_X
    return max(width, 0.5), len(text) * LINE + 2 * PAD_Y


def _arrange(panels: list[Panel], max_width: float) -> tuple[list[tuple[float, float]], float, float]:
    """Panels left to right, wrapping to a new row past ``max_width``; returns offsets and page size."""
    offsets, x, y, row_height, page_width = [], 0.0, 0.0, 0.0, 0.0
    for panel in panels:
        if x > 0 and x + panel.width > max_width:
            x, y, row_height = 0.0, y + row_height + PANEL_GAP, 0.0
        offsets.append((x, y))
        x += panel.width + PANEL_GAP
        row_height = max(row_height, panel.height)
        page_width = max(page_width, x - PANEL_GAP)
    return offsets, page_width, y + row_height


def render(panels: list[Panel], path: str | Path, max_width: float = 16.0) -> Path:
    """Draw ``panels`` on one page and write it to ``path`` (.svg or .png) atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Path as MplPath

    from ..durable import write_file

    path = Path(path)
    offsets, page_width, page_height = _arrange(panels, max(max_width, max(p.width for p in panels)))
    width, height = page_width + 2 * MARGIN, page_height + 2 * MARGIN
    with plt.rc_context({"svg.fonttype": "none", "svg.hashsalt": "vertebra", "font.size": FONT}):
        figure = plt.figure(figsize=(width, height))
        axes = figure.add_axes((0, 0, 1, 1))
        axes.set_xlim(-MARGIN, page_width + MARGIN)
        axes.set_ylim(page_height + MARGIN, -MARGIN)
        axes.axis("off")
        for panel, (ox, oy) in zip(panels, offsets):
            for index, line in enumerate(panel.title):
                axes.text(ox, oy + index * TITLE_LINE, line, ha="left", va="top",
                          fontsize=FONT + (2 if index == 0 else 0), weight="bold" if index == 0 else "normal")
            oy += len(panel.title) * TITLE_LINE + 0.15
            placed = panel.placed
            for source, target, points in placed.edges:
                points = [(ox + px, oy + py) for px, py in points]
                codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
                axes.add_patch(FancyArrowPatch(path=MplPath(points, codes), arrowstyle="-|>", mutation_scale=8,
                                               color="#555555", linewidth=0.8, shrinkA=0, shrinkB=0))
            for box, text, style, x, y in zip(panel.boxes, panel.texts, panel.styles, placed.x, placed.y):
                left, top = ox + x - box.width / 2, oy + y
                round_box = "circle,pad=0" if box.width == box.height else "round,pad=0,rounding_size=0.06"
                axes.add_patch(FancyBboxPatch((left, top), box.width, box.height, boxstyle=round_box,
                                              facecolor=COLOURS.get(style, COLOURS["other"]),
                                              edgecolor="#444444" if style != "io" else "#999999",
                                              linewidth=0.8, linestyle="--" if style == "io" else "-"))
                axes.text(ox + x, top + box.height / 2, "\n".join(text), ha="center", va="center",
                          linespacing=1.25, fontsize=FONT + (2 if round_box.startswith("circle") else 0))
        suffix = path.suffix.lower().lstrip(".")
        try:
            write_file(path, lambda temporary: figure.savefig(temporary, format=suffix, dpi=110,
                                                              metadata={"Date": None} if suffix == "svg" else None))
        finally:
            plt.close(figure)
    return path
