"""Which series a plot draws when a sweep has more than a figure can show.

A series is (variant, backend, the values of the other swept axes), so a cluster sweep multiplies
them: 20 batch sizes x 4 reuse ratios is 80 lines per panel for one variant on one backend, whose
legend, not the data, fills the figure (at 2,400 rows such plots were most of a 13 MB report and
most of its 71 s). So when a plot's series would pass MAX_SERIES, the axis with the most values is
cut to its two ends (smallest and largest, where trends show), then the next, until they fit; the
caption says what was drawn. Every point stays in the verdict summaries and the data table.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable

import pandas as pd

from harness.report.frame import AXIS_LABELS, axis_value, fmt_axis_value, sortable
from harness.report.plotkit import Plot

# Lines a panel can carry with a legend that still reads (two variants x two backends x 4 settings).
MAX_SERIES = 16
# Never cut: a machine's lines are not a sample of the others'.
UNCUT: frozenset[str] = frozenset({"node"})


@dataclass(frozen=True)
class Slice:
    """The values drawn of each axis that was cut (axes not named here are drawn in full)."""

    kept: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)  # how many values each cut axis had

    def rows(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of `frame` on the drawn values (a row without the axis, such as the baseline
        under a reuse-ratio sweep, is drawn as before: it serves every value)."""
        mask = pd.Series(True, index=frame.index)
        for col, values in self.kept.items():
            if col in frame:
                mask &= frame[col].map(lambda v, keep=values: axis_value(v) is None or axis_value(v) in keep)
        return frame[mask]

    def note(self) -> str:
        if not self.kept:
            return ""
        parts = [f"{AXIS_LABELS.get(col, col)} {' and '.join(fmt_axis_value(col, v) for v in values)} "
                 f"(of {self.total[col]} values)" for col, values in self.kept.items()]
        return ("Drawn at " + "; ".join(parts) + " to keep the plot readable; the verdict summaries and the "
                "data table hold every point.")

    def caption(self, plot: Plot) -> Plot:
        return replace(plot, caption=f"{plot.caption} {self.note()}") if self.kept and plot.svg else plot


def _series(frame: pd.DataFrame, axes: list[str]) -> int:
    keys = {tuple(axis_value(v) for v in values) for values in zip(*(frame[c] for c in ("variant", "backend", *axes)))}
    return len(keys)


def choose(frame: pd.DataFrame, axes: Iterable[str], max_series: int = MAX_SERIES) -> Slice:
    """The cut that brings `frame`'s series (split by `axes`) to at most `max_series`."""
    axes = [c for c in axes if c in frame]
    kept: dict[str, tuple[Any, ...]] = {}
    total: dict[str, int] = {}
    current = frame
    while _series(current, axes) > max_series:
        # axis_value per cell, not Series.map: a float column would turn its None back into NaNs,
        # which never equal one another
        values = {c: sorted({axis_value(v) for v in current[c]} - {None}, key=sortable)
                  for c in axes if c not in kept and c not in UNCUT}
        cuttable = {c: v for c, v in values.items() if len(v) > 2}
        if not cuttable:
            break
        col = max(cuttable, key=lambda c: len(cuttable[c]))
        kept[col], total[col] = (cuttable[col][0], cuttable[col][-1]), len(cuttable[col])
        current = Slice(kept, total).rows(frame)
    return Slice(kept, total)
