"""The results table as the report sees it: every expected column present, numbers as floats.

A report must render whatever a run left behind: an interrupted run, a failed point with only an
error message, a row written by an older harness, NaN where a metric was not measured. So this
module is the one place that turns "maybe missing, maybe None, maybe a string" into a predictable
DataFrame, and decides which axes were swept and therefore how plots are laid out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from harness.compare.fmt import DASH
from harness.compare.rows import num
from harness.results.schema import RESULT_FIELDS
from harness.stats import median_ci_level

NUMERIC: tuple[str, ...] = (
    "seq_len", "batch_size", "reuse_ratio", "reuse_heads",
    "time_ms_median", "time_ms_ci_low", "time_ms_ci_high", "time_ms_ci_level", "time_ms_iqr", "time_ms_mean",
    "time_ms_std", "time_ms_min", "time_ms_n", "tokens_per_s",
    "peak_mem_bytes", "resting_mem_bytes", "peak_rss_bytes",
    "flops_counted", "flops_analytic", "params",
    "accuracy_mean", "accuracy_std", "train_steps", "final_loss",
    "energy_j_per_step", "mean_power_w", "cpu_energy_j_per_step", "train_step_ms", "train_flops_per_step",
)
OPTIONAL_TEXT: tuple[str, ...] = (
    "task", "telemetry_note", "cpu_energy_note", "pyspy_flamegraph", "pyspy_speedscope", "torch_trace",
)
OPTIONAL_OBJECT: tuple[str, ...] = ("accuracy_seeds", "learning_curve", "top_ops")

# Axes a plot can put on x, in order of preference. reuse_ratio gets its own plots.
X_CANDIDATES: tuple[str, ...] = ("seq_len", "batch_size")
AXIS_LABELS: dict[str, str] = {
    "seq_len": "sequence length n", "batch_size": "batch size B", "reuse_ratio": "reuse ratio K/H",
    "reuse_heads": "reused heads K",
}
AXIS_SHORT: dict[str, str] = {"seq_len": "n", "batch_size": "B", "reuse_ratio": "ratio", "reuse_heads": "K"}
# The machine a row was measured on: a cluster run's rows name their node; "" for none (a local run).
NODE = "node"


def axis_value(value: Any) -> float | str | None:
    """A swept value as plots and labels use it: a number, a text label (dtype, reuse_impl), or None."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):  # a flag axis (compile: true) reads as its word
        return str(value).lower()
    v = num(value)
    return None if math.isnan(v) else v


def sortable(value: Any) -> tuple[int, float, str]:
    """A sort key for an axis value: absent first, then numbers in order, then words in order, so
    mixed types never meet in a comparison."""
    v = axis_value(value)
    return (0, 0.0, "") if v is None else (2, 0.0, v) if isinstance(v, str) else (1, float(v), "")


def finite(value: Any) -> bool:
    return not math.isnan(num(value))


def having(frame: pd.DataFrame, col: str, test: Callable[[Any], bool] = finite) -> pd.DataFrame:
    """Rows whose `col` passes `test`. Safe on an empty frame, where `frame[mask]` with an empty
    object-dtype mask would be read as a column selection and drop every column."""
    if frame.empty:
        return frame
    return frame.loc[frame[col].map(test).astype(bool)]


def normalize(df: pd.DataFrame | None) -> pd.DataFrame:
    """A copy with every contract column, floats for numbers and strings for labels."""
    df = pd.DataFrame() if df is None else df.copy()
    df = df.reset_index(drop=True)
    for col in (*RESULT_FIELDS, *OPTIONAL_TEXT, *OPTIONAL_OBJECT, *NUMERIC):
        if col not in df.columns:
            df[col] = None
    for col in NUMERIC:
        df[col] = [num(v) for v in df[col]]
    # A row from before the level was recorded holds the order-statistic interval of its n samples,
    # whose coverage follows from n alone.
    df["time_ms_ci_level"] = [median_ci_level(int(n)) if math.isnan(level) and n >= 1 and not math.isnan(low)
                              else level for level, n, low in zip(df["time_ms_ci_level"], df["time_ms_n"],
                                                                   df["time_ms_ci_low"])]
    for col in ("variant", "model", "status", "device", "mode", "backend", "point_id"):
        df[col] = [_label(v) for v in df[col]]
    df["status"] = [s if s in ("ok", "failed", "skipped") else "failed" for s in df["status"]]
    df = with_machines(df)
    df["error"] = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in df["error"]]
    df["axes"] = [v if isinstance(v, dict) else {} for v in df["axes"]]
    # A swept key with no column of its own (n_layers, dtype) becomes one, so plots and labels can
    # split series by it like any built-in axis.
    for key in custom_axes(df):
        df[key] = [axis_value(a.get(key)) for a in df["axes"]]
    df["is_reuse"] = [is_reuse_row(m, r, k) for m, r, k in zip(df["model"], df["reuse_ratio"], df["reuse_heads"])]
    df["series"] = [series_name(v, b) for v, b in zip(df["variant"], df["backend"])]
    return df


def with_machines(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with its node column as text, "" where a row has none (so a local run's rows are one
    machine, and grouping by machine never drops them as missing)."""
    values = frame[NODE] if NODE in frame else [None] * len(frame)
    return frame.assign(**{NODE: [v if isinstance(v, str) else "" for v in values]})


def machine_label(node: str) -> str:
    """A machine as the report names it, in headings and card scopes."""
    return node or "rows without a node (a local session)"


def series_name(variant: str, backend: str) -> str:
    """What one line in a plot is: a variant under one backend ('reuse · sdpa').

    Suites usually sweep the backend as an axis, so the variant label alone would merge two very
    different measurements; a label that already names its backend is left alone.
    """
    if backend in ("?", "") or backend in variant:
        return variant
    return f"{variant} · {backend}"


def _label(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "?"
    return str(value)


def is_reuse_row(model: str, ratio: float, heads: float) -> bool:
    """A row measures reuse if it reuses any head; a 'reuse' model with K = 0 is a baseline."""
    if model == "baseline":
        return False
    if finite(heads):
        return num(heads) > 0
    if finite(ratio):
        return num(ratio) > 0
    return model == "reuse"


@dataclass(frozen=True)
class AxisPlan:
    """How this run's data should be laid out in plots."""

    x: str | None                    # seq_len / batch_size, or None when neither was swept
    x_values: tuple[float, ...]
    extra: tuple[str, ...]           # other swept columns that split series (e.g. batch_size under a seq_len sweep)
    ratio_swept: bool                # reuse rows cover more than one reuse ratio
    facets: tuple[tuple[str, str], ...]  # (device, mode) pairs present among ok rows

    @property
    def x_label(self) -> str:
        return AXIS_LABELS.get(self.x or "", self.x or "")


def custom_axes(df: pd.DataFrame) -> list[str]:
    """Swept keys beyond the built-in columns whose values are plain scalars (numbers, words, flags).

    Text columns the report already reads for themselves (the accuracy task) are not axes here.
    """
    builtin = set(RESULT_FIELDS) | set(NUMERIC) | set(OPTIONAL_TEXT)
    keys = sorted({k for a in df["axes"] if isinstance(a, dict) for k in a} - builtin)
    return [k for k in keys if all(isinstance(a.get(k), (int, float, str, bool))
                                   for a in df["axes"] if isinstance(a, dict) and k in a)]


def axis_plan(df: pd.DataFrame) -> AxisPlan:
    ok = df[df["status"] == "ok"]
    if ok.empty:
        ok = df
    x = next((c for c in X_CANDIDATES if ok[c].dropna().nunique() > 1), None)
    x_values = tuple(sorted(ok[x].dropna().unique())) if x else ()
    reuse = ok[ok["is_reuse"]]
    ratio_swept = reuse["reuse_ratio"].dropna().nunique() > 1 or reuse["reuse_heads"].dropna().nunique() > 1
    # Rows from several machines split every series by machine too: times from two machines on one
    # line would zigzag between them.
    extra = tuple(c for c in ("seq_len", "batch_size", "reuse_ratio", *custom_axes(ok), NODE)
                  if c != x and _varies_within_variant(ok, c))
    facets = tuple(sorted({(d, m) for d, m in zip(ok["device"], ok["mode"])}))
    return AxisPlan(x=x, x_values=x_values, extra=extra, ratio_swept=ratio_swept, facets=facets)


def _varies_within_variant(df: pd.DataFrame, col: str) -> bool:
    return any(g[col].dropna().nunique() > 1 for _, g in df.groupby("variant"))


def fmt_axis_value(col: str, value: Any) -> str:
    if isinstance(value, (str, bool)):
        return str(axis_value(value) or DASH)
    v = num(value)
    if math.isnan(v):
        return DASH
    if col == "reuse_ratio":
        return f"{v:g}"
    return f"{int(v)}" if v == int(v) else f"{v:g}"


def point_label(row: pd.Series | dict[str, Any], cols: Iterable[str]) -> str:
    """'n=1024, B=4' for the given columns (only those that have a value)."""
    parts = [f"{AXIS_SHORT.get(c, c)}={fmt_axis_value(c, row.get(c))}" for c in cols
             if axis_value(row.get(c)) is not None]
    return ", ".join(parts)


def series_label(variant: str, row: pd.Series | dict[str, Any], extra: Iterable[str]) -> str:
    tail = point_label(row, extra)
    return f"{variant} · {tail}" if tail else variant


def ordered_variants(df: pd.DataFrame, manifest_variants: Iterable[str] = ()) -> list[str]:
    """Suite order first (the order the user wrote), then anything else the results hold."""
    seen = [v for v in manifest_variants if v in set(df["variant"])]
    rest = sorted(set(df["variant"]) - set(seen))
    return [*seen, *rest]


def samples_of(value: Any) -> np.ndarray:
    """Raw timing samples as a finite float array (empty when absent or malformed)."""
    if not isinstance(value, (list, tuple, np.ndarray)):
        return np.empty(0)
    arr = np.array([num(v) for v in value], dtype=np.float64)
    return arr[np.isfinite(arr)]
