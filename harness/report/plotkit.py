"""Shared plotting vocabulary: the `Plot` result, series keys and styles, faceted figures and the
axis conventions (log2 sizes, log speedups with named ticks) every report plot uses.

A series is (variant, backend, values of other swept axes). Colour follows the variant, line
style and marker follow the backend, so "reuse vs baseline" and "eager vs fused" read off
independently in every plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from harness.report.frame import AxisPlan, axis_value, series_label, sortable
from harness.report.svg import PALETTE, figure, mpl_text, place_axes, to_svg

# Components get their own muted palette so they are not mistaken for the variant colours.
COMPONENT_COLOURS: tuple[str, ...] = ("#bab0ac", "#4e79a7", "#76b7b2", "#59a14f", "#edc948", "#f28e2b",
                                      "#e15759", "#b07aa1", "#9c755f", "#ff9da7")
BACKEND_STYLE: dict[str, tuple[str, str]] = {"eager": ("--", "s"), "sdpa": ("-", "o")}


@dataclass(frozen=True)
class Plot:
    id: str
    title: str
    caption: str
    svg: Markup | None = None
    note: str | None = None


class Styler:
    """Colour by variant (plus extra swept values), line style and marker by backend: the two
    things a reader compares, reuse vs baseline and eager vs fused, read off independently."""

    def __init__(self, keys: Iterable[tuple[str, str, tuple[Any, ...]]], variant_order: list[str]) -> None:
        colour_keys = list(dict.fromkeys((v, extra) for v, _, extra in keys))
        if len({extra for _, extra in colour_keys}) <= 1:
            # One colour per variant, by its place in the suite: "reuse" keeps its colour from plot
            # to plot even where the baseline is absent (speedup plots draw candidates only).
            order = list(dict.fromkeys([*variant_order, *(v for v, _ in colour_keys)]))
            self._colour = {k: PALETTE[order.index(k[0]) % len(PALETTE)] for k in colour_keys}
        else:
            self._colour = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(colour_keys)}

    def __call__(self, variant: str, backend: str, extra: tuple[Any, ...]) -> dict[str, Any]:
        line, marker = BACKEND_STYLE.get(backend, (":", "^"))
        return {"color": self._colour.get((variant, extra), "#555555"), "linestyle": line, "marker": marker}


def key_values(row: pd.Series, cols: Iterable[str]) -> tuple[float | str | None, ...]:
    """Hashable axis values for a series key; None (not NaN, which never equals itself) when absent."""
    return tuple(axis_value(row.get(c)) for c in cols)


def series_keys(df: pd.DataFrame, cols: tuple[str, ...], variant_order: list[str]) -> list[tuple[str, str, tuple[Any, ...]]]:
    """(variant, backend, extra axis values) of every series, in suite order, eager before sdpa."""
    rank = {v: i for i, v in enumerate(variant_order)}
    keys = {(r["variant"], r["backend"], key_values(r, cols)) for _, r in df.iterrows()}
    return sorted(keys, key=lambda k: (rank.get(k[0], 99), k[0], k[1], tuple(map(sortable, k[2]))))


def legend_name(variant: str, backend: str, extra: tuple[Any, ...], plan: AxisPlan) -> str:
    name = variant if backend in ("?", "") or backend in variant else f"{variant} · {backend}"
    return mpl_text(series_label(name, dict(zip(plan.extra, extra)), plan.extra))


def match(frame: pd.DataFrame, cols: Iterable[str], values: Iterable[float | str | None]) -> pd.Series:
    """Rows whose `cols` equal `values` (None matches an absent value: an axis a variant did not see)."""
    mask = pd.Series(True, index=frame.index)
    for col, v in zip(cols, values):
        column = frame[col].map(axis_value) if col in frame else pd.Series(None, index=frame.index, dtype=object)
        mask &= column.isna() if v is None else column.map(lambda x, v=v: x == v)
    return mask


def _grid(n: int, max_cols: int = 2) -> tuple[int, int]:
    cols = min(max(n, 1), max_cols)
    return math.ceil(max(n, 1) / cols), cols


def log_x(ax: Axes, values: Iterable[float]) -> None:
    """Log2 x axis ticked at the measured values: sizes are swept in powers of two, and equal
    spacing per doubling is what makes O(n) vs O(n²) slopes readable."""
    vals = sorted({v for v in values if v > 0})
    if len(vals) >= 2:
        ax.set_xscale("log", base=2)
        ax.set_xticks(vals)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_minor_locator(NullLocator())


# Ratio ticks a reader can name; a log axis keeps 0.5× and 2× equally far from 1×.
NICE_RATIOS: tuple[float, ...] = (0.05, 0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0,
                                  5.0, 8.0, 10.0, 20.0)


def ratio_axis(ax: Axes) -> None:
    """Log-scale speedup axis that always shows 1× and 3-7 named ticks."""
    ax.set_yscale("log")
    low, high = ax.get_ylim()
    low, high = min(low, 0.95), max(high, 1.05)
    ax.set_ylim(low, high)
    ticks = [t for t in NICE_RATIOS if low <= t <= high]
    while len(ticks) > 7:  # thin evenly but keep 1×
        ticks = [t for i, t in enumerate(ticks) if i % 2 == ticks.index(1.0) % 2]
    ax.set_yticks(ticks)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}×"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_locator(NullLocator())
    ax.axhline(1.0, color="#333333", linewidth=0.8, zorder=1)


def log_y(ax: Axes) -> None:
    """Log y axis labelled 10, 20, 50, 100 rather than 10¹, 2×10¹."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def facet_title(device: str, mode: str, extra: str = "") -> str:
    return mpl_text(" · ".join(p for p in (device, mode, extra) if p))


LEGEND_COLUMNS = 4


def _legend(fig: Any, axes: list[Axes]) -> int:
    """One legend for the whole figure, below the axes; returns its number of rows."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if not handles:
        return 0
    fig.legend(list(handles.values()), list(handles), loc="lower center", bbox_to_anchor=(0.5, 0.0),
               ncols=min(LEGEND_COLUMNS, len(handles)), markerscale=1.6)
    return math.ceil(len(handles) / LEGEND_COLUMNS)


def faceted(name: str, facets: list[Any], draw: Callable[[Axes, Any], bool], label: str,
            row_height: float = 2.7, max_cols: int = 2, bottom_extra: float = 0.0) -> Markup | None:
    rows, cols = _grid(len(facets), max_cols)
    with figure(name, 9.0 if cols > 1 else 5.5, row_height * rows) as fig:
        axes = list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())
        drew = [draw(ax, facet) for ax, facet in zip(axes, facets)]
        for ax in axes[len(facets):]:
            ax.set_visible(False)
        if not any(drew):
            return None
        legend_rows = _legend(fig, axes[: len(facets)])
        place_axes(fig, rows, cols, row_height=row_height, legend_rows=legend_rows, bottom_extra=bottom_extra)
        return to_svg(fig, name, label)
