"""A result row as the judge reads it: where it was measured, in columns and in words, and its values.

Within one run (`within.comparisons`) and between two (`runs.compare_runs`) rows are located by
the same columns and named by the same label, which every printer shows; so they are written here
once. Values come as whatever a row holds (None, NaN, a numpy scalar, a string from an old row).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

# The flat columns that locate a point; every other swept key lives in the row's `axes` dict.
POINT_COLUMNS: tuple[str, ...] = ("device", "mode", "backend", "seq_len", "batch_size")
# The machine a row was measured on (a cluster run's rows carry it; a local run's do not, which
# is one machine). Not part of the point: the same point measured on two machines is one point,
# but a ratio between two rows means something only when one machine measured both.
NODE_COLUMN = "node"


def num(value: Any) -> float:
    """A finite float or NaN, whatever came in (None, '', 'n/a', a bool, a list)."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        f = float(value)
    except (TypeError, ValueError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def scalar(value: Any) -> Any:
    """A hashable, comparable plain Python value: NaN -> None, 1024.0 -> 1024, numpy -> Python."""
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return None
        return int(value) if float(value).is_integer() else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def node(row: dict[str, Any]) -> str | None:
    """The node that measured the row, or None for a row without one (a local run's: one machine)."""
    value = row.get(NODE_COLUMN)
    return value if isinstance(value, str) and value else None


def axes(row: dict[str, Any]) -> dict[str, Any]:
    value = row.get("axes")
    return value if isinstance(value, dict) else {}


def point_label(row: dict[str, Any]) -> str:
    """'forward eager n256 b2': the point's columns (the device unless cpu), then its other swept axes.

    A reuse setting shows only when it was swept: then one variant has a row per value.
    """
    parts = [str(row.get("mode") or ""), str(row.get("backend") or ""), f"n{scalar(row.get('seq_len'))}",
             f"b{scalar(row.get('batch_size'))}"]
    if (row.get("device") or "cpu") != "cpu":
        parts.insert(0, str(row["device"]))
    parts += [f"{k}={v}" for k, v in sorted(axes(row).items()) if k not in POINT_COLUMNS]
    return " ".join(p for p in parts if p)
