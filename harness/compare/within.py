"""Set every reuse result of a run against the baselines measured at the same point.

Runs are read by harness.results.load_run (one row per (point, variant), see
harness.results.schema.RESULT_FIELDS). Everything downstream (the report, the CI gate, notebooks)
compares variants through `comparisons`, so the rules live in one place:

- A candidate (any ok row whose model is not "baseline") is compared with EVERY ok baseline row at
  its point, one output row per baseline, which means one per baseline backend: reuse must be
  shown against the fused (SDPA) baseline as well as the eager one: fused attention never
  materializes the probabilities reuse hands on, so a speedup over the eager baseline alone
  overstates reuse.
- Speedups are baseline time ÷ candidate time (> 1: the candidate is faster), estimated from the
  raw samples, never from the summary columns alone: from per-pair ratios when the two rows were
  measured in lockstep, with Student's t over rounds (harness.compare.paired, timing.py), else by
  the unpaired fallback the rows allow. `speedup_ci_method` says which made the interval.
- A ratio is taken only between two rows measured on the same machine (`node`; rows without one,
  a local run's, are one machine): a cluster run's rows come from several, and a baseline timed on
  a faster node would make reuse look slower, or faster, by the difference between the machines.
  The node is part of where a candidate meets its baselines, here and nowhere else.
- A missing metric gives NaN in its column, never an exception: a run killed halfway or a suite
  measuring only memory must still load and compare.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np
import pandas as pd

from harness.compare import fmt
from harness.compare.paired import Contrast, no_interval
from harness.compare.rows import NODE_COLUMN, POINT_COLUMNS, axes, node, num, scalar
from harness.compare.timing import speedup as estimate_speedup, timing
from models.config import REUSE_KEYS

BASELINE_MODEL = "baseline"
# Where a candidate meets its baselines: the point without its backend, since each baseline
# backend is a reference of its own (and, beside the point, the same node: see `_meeting`).
_WHERE: tuple[str, ...] = tuple(c for c in POINT_COLUMNS if c != "backend")
# Swept keys that may differ between a candidate and the baselines it is compared with: reuse
# settings (the baseline has none), the backend and compilation (how each side is run: the
# strongest implementation on each side is what counts).
_NOT_GROUPING: frozenset[str] = REUSE_KEYS | set(POINT_COLUMNS) | {"compile"}
# Baseline backends listed first in tables; any other backend follows in sorted order.
PREFERRED_BACKENDS: tuple[str, ...] = ("eager", "sdpa")


# ---- comparisons -----------------------------------------------------------------------------


def _meeting(row: dict[str, Any]) -> tuple[Any, ...]:
    """The key a candidate and its baselines share: the machine, then the point's columns."""
    return (node(row), *(scalar(row.get(c)) for c in _WHERE))


def _ratio(numerator: float, denominator: float) -> float:
    if not (math.isfinite(numerator) and math.isfinite(denominator)) or denominator <= 0.0:
        return math.nan
    return numerator / denominator


def _median_time(row: dict[str, Any]) -> float:
    median = num(row.get("time_ms_median"))
    if math.isnan(median):
        samples = timing(row).samples()
        median = float(np.median(samples)) if samples.size else math.nan
    return median


_MISSING = object()


def _matches(candidate: dict[str, Any], baseline_axes: dict[str, Any]) -> bool:
    # Keys only the candidate sweeps (the baseline ignores them) do not split the group: one
    # baseline row serves every value of them, as it serves every reuse_ratio.
    return all(axes(candidate).get(k, _MISSING) == v for k, v in baseline_axes.items())


def _speedup(reference: dict[str, Any], candidate: dict[str, Any], ref_time: float, cand_time: float) -> Contrast:
    """The speedup's estimate and CI from the raw samples; without samples, the ratio of the stored medians."""
    estimate = estimate_speedup(timing(reference), timing(candidate))
    if math.isnan(estimate.estimate):
        return no_interval(_ratio(ref_time, cand_time), "no samples")
    return estimate


def _flop_ratio(candidate: dict[str, Any], reference: dict[str, Any]) -> float:
    # Use one FLOP source for both sides: an analytic count over a counted one is meaningless.
    for column in ("flops_analytic", "flops_counted"):
        ratio = _ratio(num(candidate.get(column)), num(reference.get(column)))
        if not math.isnan(ratio):
            return ratio
    return math.nan


def _compare(candidate: dict[str, Any], reference: dict[str, Any], group_axes: dict[str, Any]) -> dict[str, Any]:
    cand_time, ref_time = _median_time(candidate), _median_time(reference)
    speedup = _speedup(reference, candidate, ref_time, cand_time)
    mem_ratio = _ratio(num(candidate.get("peak_mem_bytes")), num(reference.get("peak_mem_bytes")))
    flop_ratio = _flop_ratio(candidate, reference)
    flop_ideal = _ratio(1.0, flop_ratio)
    backend, reference_backend = candidate.get("backend"), reference.get("backend")
    # A swept `compile` splits candidate series (as backend does) without splitting the point.
    compiled = {"compile": axes(candidate)["compile"]} if "compile" in axes(candidate) else {}
    return {
        **{column: scalar(candidate.get(column)) for column in _WHERE},
        **group_axes,
        **compiled,
        NODE_COLUMN: node(candidate),
        "variant": candidate.get("variant"),
        "model": candidate.get("model"),
        "backend": backend,
        "reference_variant": reference.get("variant"),
        "reference_backend": reference_backend,
        "same_backend": backend == reference_backend,
        "reuse_ratio": num(candidate.get("reuse_ratio")),
        "reuse_heads": num(candidate.get("reuse_heads")),
        "reuse_source": candidate.get("reuse_source"),
        "time_ms": cand_time,
        "reference_time_ms": ref_time,
        "speedup": speedup.estimate,
        "speedup_ci_low": speedup.low,
        "speedup_ci_high": speedup.high,
        "speedup_ci_method": speedup.method,
        "mem_ratio": mem_ratio,
        "mem_saving": 1.0 - mem_ratio,
        "flop_ratio": flop_ratio,
        "flop_ideal_speedup": flop_ideal,
        "efficiency": _ratio(speedup.estimate, flop_ideal),
        "accuracy_delta": num(candidate.get("accuracy_mean")) - num(reference.get("accuracy_mean")),
        "point_id": candidate.get("point_id"),
        "reference_point_id": reference.get("point_id"),
    }


# The columns of `comparisons`, in order; the extra swept keys of a suite go after the first four.
COMPARISON_COLUMNS: tuple[str, ...] = (
    *_WHERE, NODE_COLUMN, "variant", "model", "backend", "reference_variant", "reference_backend",
    "same_backend", "reuse_ratio", "reuse_heads", "reuse_source", "time_ms", "reference_time_ms",
    "speedup", "speedup_ci_low", "speedup_ci_high", "speedup_ci_method", "mem_ratio", "mem_saving", "flop_ratio",
    "flop_ideal_speedup", "efficiency", "accuracy_delta", "point_id", "reference_point_id",
)


def _ok_rows(results: pd.DataFrame) -> list[dict[str, Any]]:
    if results.empty or "status" not in results.columns:
        return []
    return [row for row in results.to_dict("records") if row.get("status") == "ok"]


def comparisons(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (candidate row, baseline row at the same point): see the module docstring.

    The point is (device, mode, seq_len, batch_size) plus every other swept key the baseline
    sees, except backend and reuse keys, on the candidate's node. Extra swept keys appear as
    columns after the point columns. Candidates with no baseline at their point on their node
    produce no row (see `unmatched`).
    """
    rows = _ok_rows(results)
    baselines_at: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("model") == BASELINE_MODEL:
            baselines_at.setdefault(_meeting(row), []).append(row)
    out: list[dict[str, Any]] = []
    for candidate in rows:
        if candidate.get("model") == BASELINE_MODEL:
            continue
        for reference in baselines_at.get(_meeting(candidate), []):
            group_axes = {k: v for k, v in axes(reference).items() if k not in _NOT_GROUPING}
            if _matches(candidate, group_axes):
                out.append(_compare(candidate, reference, group_axes))
    if not out:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    frame = pd.DataFrame(out)
    axis_columns = [c for c in frame.columns if c not in COMPARISON_COLUMNS]
    n_point = len(_WHERE)
    order = list(COMPARISON_COLUMNS[:n_point]) + axis_columns + list(COMPARISON_COLUMNS[n_point:])
    return frame[order]


def unmatched(results: pd.DataFrame, comps: pd.DataFrame | None = None) -> pd.DataFrame:
    """Ok candidate rows that no baseline row could be compared with (e.g. its baseline failed, or
    ran on another node)."""
    comps = comparisons(results) if comps is None else comps
    nodes = comps[NODE_COLUMN].map(_node_key) if NODE_COLUMN in comps else [None] * len(comps)
    compared = set(zip(nodes, comps["point_id"]))
    lonely = [i for i, row in zip(results.index, results.to_dict("records"))
              if row.get("status") == "ok" and row.get("model") != BASELINE_MODEL
              and (node(row), row.get("point_id")) not in compared]
    return results.loc[lonely]


def _node_key(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def best_baseline(comps: pd.DataFrame) -> pd.DataFrame:
    """Per candidate row, the comparison against the fastest baseline at its point (on its node).

    "Faster" is the lower reference median time; a candidate whose baselines have no time
    (an accuracy-only suite) keeps its first comparison. Row order follows `comps`.
    """
    if comps.empty:
        return comps.copy()
    ranked = comps.assign(_order=np.arange(len(comps)))
    ranked = ranked.sort_values("reference_time_ms", kind="mergesort", na_position="last")
    best = ranked.drop_duplicates(subset=[NODE_COLUMN, "point_id"], keep="first")
    return best.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def best_reuse(comps: pd.DataFrame) -> pd.DataFrame:
    """Per point and reuse amount, the fastest candidate against the fastest baseline there.

    The strongest implementation on each side: among every reuse form measured at a point (source,
    implementation, backend, compiled or not) the one with the lowest median time, set against the
    fastest baseline (`best_baseline`). The point is where candidates meet baselines, plus the
    reuse ratio or K, which changes the model and not only how it runs. Untimed candidates are
    left out; `forms` counts the candidates each best one was chosen from. Sorted by point.
    """
    best = best_baseline(comps)
    best = best[best["time_ms"].map(lambda v: not math.isnan(num(v)))]
    if best.empty:
        return best.assign(forms=pd.Series(dtype=int))
    axis_columns = [c for c in best.columns if c not in COMPARISON_COLUMNS and c != "compile"]
    point = [NODE_COLUMN, *_WHERE, *axis_columns, "reuse_ratio", "reuse_heads"]
    # How many forms there were to choose from: a "best" of one says nothing beyond its comparison.
    forms = best.groupby(point, dropna=False, sort=False)["point_id"].transform("size")
    ranked = best.assign(forms=forms).sort_values("time_ms", kind="mergesort")
    return ranked.drop_duplicates(subset=point, keep="first").sort_values(point).reset_index(drop=True)


# ---- plain-text summary ----------------------------------------------------------------------


def _reuse_cell(row: pd.Series) -> str:
    if not math.isnan(num(row["reuse_ratio"])):
        return fmt.plain(num(row["reuse_ratio"]))
    heads = num(row["reuse_heads"])
    return fmt.DASH if math.isnan(heads) else f"K={heads:.0f}"


def _label(value: Any) -> str:
    return fmt.plain(scalar(value))


def _first_finite(values: pd.Series) -> float:
    finite = pd.to_numeric(values, errors="coerce").dropna()
    return float(finite.iloc[0]) if len(finite) else math.nan


def _reference_order(backends: Iterable[Any]) -> list[str]:
    found = {b for b in backends if isinstance(b, str)}
    return [b for b in PREFERRED_BACKENDS if b in found] + sorted(found - set(PREFERRED_BACKENDS))


def _render(header: list[str], rows: list[list[str]], left: int, gaps: list[str]) -> list[str]:
    """Columns padded to their widest cell; the first `left` columns are left-aligned (labels)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "".join(gap + part for gap, part in zip(gaps, parts)).rstrip()

    return [line(header)] + [line(r) for r in rows]


def machine_heading(value: Any) -> str:
    """How a printer names the machine of a group of rows, when a run has several."""
    name = _node_key(value)
    return f"machine {name}" if name else "machine not recorded (rows without a node: a local session)"


def summary_table(results: pd.DataFrame, comps: pd.DataFrame | None = None) -> str:
    """A compact table for the end of `harness run`: one line per candidate row.

    Each line shows the speedup [95% CI] and memory ratio against every baseline backend at its
    point (eager and sdpa), and the FLOP-ideal speedup; the footer says which method made the CIs.
    When the rows come from several machines, each machine's lines follow a heading naming it.
    `comps` defaults to comparisons(results).
    """
    comps = comparisons(results) if comps is None else comps
    lines: list[str] = []
    if comps.empty:
        lines.append("no reuse-vs-baseline comparison: no ok candidate and baseline rows share a point")
    else:
        references = _reference_order(comps["reference_backend"])
        axis_columns = [c for c in comps.columns if c not in COMPARISON_COLUMNS]
        show_accuracy = comps["accuracy_delta"].notna().any()
        columns = [*_WHERE, *axis_columns, "variant", "backend"]
        labels = ["dev", "mode", "seq", "batch", *axis_columns, "variant", "backend", "reuse"]
        header = labels + [cell for b in references for cell in (f"vs {b}", "mem")] + ["ideal"]
        header += ["acc+"] if show_accuracy else []
        rows, row_nodes = [], []
        keyed = comps.assign(**{NODE_COLUMN: comps[NODE_COLUMN].map(_node_key)})
        for (machine, _), group in keyed.groupby([NODE_COLUMN, "point_id"], sort=False, dropna=False):
            first = group.iloc[0]
            row_nodes.append(_node_key(machine))  # a missing node groups as NaN: back to None
            cells = [_label(first[c]) for c in columns] + [_reuse_cell(first)]
            for backend in references:
                against = group[group["reference_backend"] == backend]
                if against.empty:
                    cells += [fmt.DASH, fmt.DASH]
                    continue
                # Two baseline variants on one backend: show the faster, as best_baseline does.
                fastest = against.sort_values("reference_time_ms", na_position="last").iloc[0]
                cells += [fmt.times_ci(fastest["speedup"], fastest["speedup_ci_low"], fastest["speedup_ci_high"]),
                          fmt.times(fastest["mem_ratio"])]
            cells.append(fmt.times(_first_finite(group["flop_ideal_speedup"])))
            if show_accuracy:
                cells.append(fmt.points(_first_finite(group["accuracy_delta"])))
            rows.append(cells)
        # Two spaces before each speedup and after the labels, one elsewhere: ~100 columns.
        gaps = [""] + [" "] * (len(labels) - 1) + ["  " if h.startswith("vs ") else " " for h in header[len(labels):]]
        rendered = _render(header, rows, left=len(labels) - 1, gaps=gaps)
        lines.append(rendered[0])
        machines = list(dict.fromkeys(row_nodes))
        for machine in machines:  # one machine (any local run): no heading, rows in comparison order
            if len(machines) > 1:
                lines.append(f"-- {machine_heading(machine)}")
            lines += [text for text, at in zip(rendered[1:], row_nodes) if at == machine]
        lines.append("vs X: speedup = baseline-on-X ms / candidate ms (>1: candidate faster), [95% CI]")
        # Which estimator made the intervals (lockstep pairs, round medians, one round of samples)
        # or why a speedup has none: a reader weighs a CI by what it covers.
        methods = comps["speedup_ci_method"].value_counts(sort=False)
        lines += [f"CI: {method} ({n} of {len(comps)})" for method, n in methods.items()]
        lines.append("mem: candidate / baseline peak memory; ideal: speedup if time followed FLOPs"
                     + ("; acc+: accuracy gain in points" if show_accuracy else ""))
    if not results.empty and "status" in results.columns:
        counts = results["status"].value_counts()
        lines.append("rows: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "skipped")))
        lonely = len(unmatched(results, comps))
        if lonely:
            lines.append(f"{lonely} candidate row(s) had no ok baseline at their point on their machine")
    return "\n".join(lines)
