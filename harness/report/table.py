"""The full results table: every row of results.jsonl, readable cells plus raw values.

Each cell carries its display text and the raw value (`data-v`), so the page's script sorts
numbers as numbers and the CSV download holds full-precision values rather than "1.2 ms".
Columns nobody measured (all empty) are dropped; unknown scalar columns a newer harness adds
are kept at the end, so the table really is the full data. A long table travels packed
(packed.py) and is drawn when opened.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import pandas as pd

from harness.compare import fmt
from harness.report.frame import finite, num
from harness.report.packed import Cell, Row, body

Formatter = Callable[[Any], str]

# (column, header, formatter). Order: identity, point, timing, memory, FLOPs, accuracy, energy.
COLUMNS: tuple[tuple[str, str, Formatter], ...] = (
    ("variant", "variant", fmt.plain), ("model", "model", fmt.plain), ("backend", "backend", fmt.plain),
    ("device", "device", fmt.plain), ("mode", "mode", fmt.plain), ("status", "status", fmt.plain),
    ("seq_len", "n", fmt.plain), ("batch_size", "B", fmt.plain), ("reuse_ratio", "ratio", fmt.plain),
    ("reuse_heads", "K", fmt.plain), ("reuse_source", "source", fmt.plain),
    ("time_ms_median", "time median", fmt.ms), ("time_ms_ci_low", "CI low", fmt.ms),
    ("time_ms_ci_high", "CI high", fmt.ms), ("time_ms_ci_level", "CI level", fmt.percent),
    ("time_ms_iqr", "IQR", fmt.ms), ("time_ms_n", "reps", fmt.plain),
    ("tokens_per_s", "tokens/s", fmt.count),
    ("peak_mem_bytes", "peak mem", fmt.bytes_), ("resting_mem_bytes", "resting mem", fmt.bytes_),
    ("peak_rss_bytes", "peak RSS", fmt.bytes_),
    ("flops_analytic", "FLOPs (analytic)", fmt.flops), ("flops_counted", "FLOPs (counted)", fmt.flops),
    ("params", "params", fmt.count),
    ("task", "task", fmt.plain), ("accuracy_mean", "accuracy", fmt.percent),
    ("accuracy_std", "acc. std", fmt.percent), ("final_loss", "final loss", fmt.plain),
    ("energy_j_per_step", "GPU J/step", fmt.plain), ("mean_power_w", "GPU W", fmt.plain),
    ("cpu_energy_j_per_step", "CPU J/step", fmt.plain),
    ("node", "machine", fmt.plain), ("error", "error / reason", fmt.plain), ("point_id", "point id", fmt.plain),
)
ALWAYS: frozenset[str] = frozenset({"variant", "model", "backend", "device", "mode", "status", "point_id"})
# Internal or structured columns: shown elsewhere (plots, profiling) or too large for a cell.
HIDDEN: frozenset[str] = frozenset({"series", "is_reuse", "axes", "time_ms_samples", "flops_by_component",
                                    "learning_curve", "top_ops", "accuracy_seeds", "model_config",
                                    "flops_counted_by_op", "time_ms_mean", "time_ms_std", "time_ms_min"})


def _raw(value: Any) -> str:
    """The value as the CSV should hold it (full precision, '' for missing)."""
    if value is None or isinstance(value, (list, dict, tuple)):
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _is_scalar_column(series: pd.Series) -> bool:
    return not series.map(lambda v: isinstance(v, (list, dict, tuple))).any()


def _present(series: pd.Series) -> bool:
    return bool(series.map(lambda v: finite(v) if isinstance(v, (int, float)) and not isinstance(v, bool)
                           else v is not None and str(v) != "").any())


def data_table(df: pd.DataFrame) -> dict[str, Any]:
    known = {c for c, _, _ in COLUMNS}
    columns = [(c, h, f) for c, h, f in COLUMNS if c in df and (c in ALWAYS or _present(df[c]))]
    extra = [c for c in df.columns if c not in known and c not in HIDDEN and _is_scalar_column(df[c])
             and _present(df[c])]
    columns += [(c, c, fmt.plain) for c in extra]
    numeric = {c for c, _, _ in columns if df[c].map(lambda v: v is None or isinstance(v, (int, float))).all()}
    rows = []
    for record in df[list(dict.fromkeys([*(c for c, _, _ in columns), "status"]))].to_dict("records"):
        cells = []
        for c, _, f in columns:
            value = record[c]
            text = f(value) if c not in numeric or finite(value) or value is None else fmt.DASH
            attrs = {"data-v": _raw(num(value) if c in numeric and value is not None else value)}
            if c in numeric:
                attrs["class"] = "num"
            if len(text) > 40:  # the full text on hover where the column is cut short
                attrs["title"] = text
            cells.append(Cell(text, attrs))
        rows.append(Row(cells, f"status-{record['status']}"))
    return {"columns": [{"key": c, "label": h, "numeric": c in numeric} for c, h, _ in columns],
            "body": body(rows)}
