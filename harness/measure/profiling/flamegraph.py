"""A flame graph SVG from sampled stacks, drawn with matplotlib (no perl flamegraph.pl needed).

Each frame is a box whose width is its share of the samples, stacked by call depth from the
root ("all") upwards. Siblings are sorted by name, as flamegraph.pl does, so the same code path
lands in the same place run after run. Boxes narrower than one SVG unit (one pixel at 100%
zoom) are merged with their narrow neighbours into one "[n narrow frames]" box and their
callees are dropped: they could not be seen anyway, and a Python + torch profile has thousands
of them, which would make the file large and slow to open. Each box carries its full frame
name and sample count as an SVG <title>, shown as a tooltip in a browser.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

Stacks = Mapping[tuple[str, ...], int]  # root-first frames -> number of samples

WIDTH_IN = 16.0         # 1152 SVG units: matplotlib's SVG user unit is the point (1/72 in)
ROW_PT = 15.0           # height of one call-depth row
TITLE_PT = 30.0
FONT_PT = 7.0
CHAR_PT = 0.6 * FONT_PT  # advance width of one monospace character
MAX_ROWS = 120           # deeper stacks are cut; nothing that deep is ever a hot spot


@dataclass
class _Node:
    name: str
    value: int = 0
    children: dict[str, _Node] = field(default_factory=dict)


@dataclass(frozen=True)
class Box:
    x: float          # left edge, in samples
    width: float      # in samples
    depth: int        # 0 is the root
    name: str
    merged: bool = False


def build_tree(stacks: Stacks) -> _Node:
    root = _Node("all")
    for frames, count in stacks.items():
        root.value += count
        node = root
        for frame in frames[:MAX_ROWS - 1]:
            node = node.children.setdefault(frame, _Node(frame))
            node.value += count
    return root


def layout(root: _Node, min_width: float) -> list[Box]:
    """Boxes for every frame at least `min_width` samples wide; narrower siblings merged."""
    boxes = [Box(0.0, float(root.value), 0, root.name)]
    stack: list[tuple[_Node, float, int]] = [(root, 0.0, 0)]
    while stack:  # iterative: stacks can be deeper than Python's recursion limit allows
        node, x, depth = stack.pop()
        pending_x, pending_w, pending_n = x, 0.0, 0
        for child in sorted(node.children.values(), key=lambda c: c.name):
            if child.value < min_width:
                if pending_n == 0:
                    pending_x = x
                pending_w += child.value
                pending_n += 1
            else:
                _flush(boxes, pending_x, pending_w, pending_n, depth + 1, min_width)
                pending_n, pending_w = 0, 0.0
                boxes.append(Box(x, float(child.value), depth + 1, child.name))
                stack.append((child, x, depth + 1))
            x += child.value
        _flush(boxes, pending_x, pending_w, pending_n, depth + 1, min_width)
    return boxes


def _flush(boxes: list[Box], x: float, width: float, n: int, depth: int, min_width: float) -> None:
    # Narrow runs that together are still under one unit stay blank: a box would not show.
    if n and width >= min_width:
        boxes.append(Box(x, width, depth, f"[{n} narrow frames]", merged=True))


def _colour(name: str, merged: bool) -> tuple[float, float, float]:
    """flamegraph.pl's warm palette, seeded by the function name so a function keeps its
    colour across runs (crc32, not hash(): Python salts str hashes per process)."""
    if merged:
        return (0.8, 0.8, 0.8)
    h = zlib.crc32(name.encode())
    return (205 + h % 50) / 255, (h >> 8) % 230 / 255, (h >> 16) % 55 / 255


def _label(name: str, width_pt: float) -> str | None:
    """The frame's full name where it fits, else its function part ("fn" of "fn (file:12)"),
    truncated: the function says more than the first letters of a file path."""
    chars = int((width_pt - 4) / CHAR_PT)
    if chars < 3:
        return None
    if len(name) <= chars:
        return name
    short = name.split(" (", 1)[0]
    return short if len(short) <= chars else short[: chars - 2] + ".."


def render_flamegraph(stacks: Stacks, out_path: Path, title: str) -> Path:
    """Write the flame graph of `stacks` to `out_path` (SVG) and return the path."""
    root = build_tree(stacks)
    if root.value <= 0:
        raise ValueError("no samples to draw")
    width_pt = WIDTH_IN * 72
    pt_per_sample = width_pt / root.value
    boxes = layout(root, min_width=1.0 / pt_per_sample)
    rows = max(b.depth for b in boxes) + 1

    height_pt = rows * ROW_PT + TITLE_PT
    fig = Figure(figsize=(WIDTH_IN, height_pt / 72))
    ax = fig.add_axes((0.0, 0.0, 1.0, rows * ROW_PT / height_pt))
    ax.set_xlim(0, root.value)
    ax.set_ylim(0, rows)
    ax.axis("off")
    fig.text(0.5, 1 - (TITLE_PT / 2) / height_pt, f"{title} ({root.value} samples)",
             ha="center", va="center", fontsize=11)
    tooltips: list[str] = []
    for i, box in enumerate(boxes):
        rect = Rectangle((box.x, box.depth), box.width, 1, facecolor=_colour(box.name, box.merged),
                         edgecolor="white", linewidth=0.4, clip_on=False)
        rect.set_gid(f"fg{i}")
        ax.add_artist(rect)  # not add_patch: its per-patch autoscale update dominates run time
        share = 100.0 * box.width / root.value
        tooltips.append(f"{box.name} ({box.width:.0f} samples, {share:.1f}%)")
        text = _label(box.name, box.width * pt_per_sample)
        if text is not None:
            ax.text(box.x + 2 / pt_per_sample, box.depth + 0.5, text, fontsize=FONT_PT,
                    family="monospace", va="center", ha="left")

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Text as <text>, not glyph outlines: a fraction of the size, and searchable.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "flamegraph"}):
        fig.savefig(out_path, format="svg", metadata={"Date": None})
    _add_tooltips(out_path, tooltips)
    return out_path


def _add_tooltips(svg_path: Path, tooltips: list[str]) -> None:
    """matplotlib writes each patch with a gid as <g id="fgN">; a <title> inside it is the
    standard SVG tooltip."""
    def insert(match: re.Match[str]) -> str:
        return f'{match.group(0)}<title>{escape(tooltips[int(match.group(1))])}</title>'
    svg = svg_path.read_text()
    svg_path.write_text(re.sub(r'<g id="fg(\d+)">', insert, svg))
