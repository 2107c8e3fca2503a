"""The verdict section's tables: reuse against every baseline backend, one table per (machine,
device, mode, candidate backend), with a column group per baseline backend so reuse is always read
against eager AND sdpa.

A short table lists every candidate point. A long one (a cluster sweep puts hundreds of points in
each) opens with its summary instead: one line per facet, that is per variant and per setting that
is not a size (reuse ratio, dtype, compile, ...), spanning every size measured: how many points are
faster, slower or unclear against each baseline, the speedup's median and range, the median
efficiency and the range of the memory change. The full rows follow in a <details>, packed when
long (packed.py). Outcomes are fmt.outcome's, the rule the cards and takeaways follow, and every
number is a comparison of compare.within's: this module only arranges them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.compare import fmt
from harness.compare.within import PREFERRED_BACKENDS
from harness.report.frame import AXIS_LABELS, AxisPlan, axis_value, finite, machine_label, num, point_label, sortable
from harness.report.packed import Cell, Row, body

# Beyond this many rows (about a screenful) a table is read through its summary.
SUMMARY_OVER = 24
# What a summary line spans: the sizes a sweep multiplies, and the machine (one table per machine).
SPANNED: frozenset[str] = frozenset({"seq_len", "batch_size", "node"})


def _has(comps: pd.DataFrame) -> dict[str, bool]:
    """Only the columns this run measured: an accuracy-only suite has no speedups to show."""
    return {"speed": bool(comps["speedup"].map(finite).any()), "mem": bool(comps["mem_ratio"].map(finite).any()),
            "acc": bool(comps["accuracy_delta"].map(finite).any())}


def _first(has: dict[str, bool], group: str) -> str:
    """' first-of-group' on the first column of a baseline's group (a rule down its left side)."""
    order = [g for g in ("speed", "mem", "acc") if has[g]]
    return " first-of-group" if order and order[0] == group else ""


# ---- one candidate at one point ------------------------------------------------------------


def _point_cells(row: dict[str, Any] | None, ref: str, has: dict[str, bool]) -> list[Cell]:
    cells: list[Cell] = []
    if has["speed"]:
        if row is None:
            cells.append(Cell(fmt.DASH, {"class": f"num first-of-group {fmt.UNKNOWN}", "data-ref": ref}))
        else:
            outcome = fmt.outcome(row.get("speedup"), row.get("speedup_ci_low"), row.get("speedup_ci_high"))
            raw = f"{num(row.get('speedup')):.4g}" if finite(row.get("speedup")) else ""
            cells.append(Cell(fmt.times_ci(row.get("speedup"), row.get("speedup_ci_low"), row.get("speedup_ci_high")),
                              {"class": f"num first-of-group {outcome}", "data-ref": ref, "data-speedup": raw,
                               "title": str(row.get("speedup_ci_method") or "")}))
        cells += [Cell(fmt.DASH if row is None else fmt.times(row.get("flop_ideal_speedup")), {"class": "num"}),
                  Cell(fmt.DASH if row is None else fmt.percent(row.get("efficiency")), {"class": "num"})]
    if has["mem"]:
        # Shown as a change (reuse ÷ baseline − 1): "−30%" reads as "30% less memory" at a glance.
        change = math.nan if row is None else num(row.get("mem_ratio")) - 1.0
        mem = "" if math.isnan(change) else " mem-win" if change < -0.02 else " mem-loss" if change > 0.02 else ""
        cells.append(Cell(fmt.percent(change, signed=True), {"class": "num" + mem + _first(has, "mem")}))
    if has["acc"]:
        cells.append(Cell(fmt.DASH if row is None else fmt.points(row.get("accuracy_delta")),
                          {"class": "num" + _first(has, "acc")}))
    return cells


def _point_rows(group: pd.DataFrame, plan: AxisPlan, refs: list[str], rank: dict[str, int],
                has: dict[str, bool]) -> list[Row]:
    label_cols = [c for c in (plan.x, *plan.extra) if c and c != "node"]
    by_point: dict[Any, list[dict[str, Any]]] = {}  # plain records: a sweep's tables hold thousands
    for record in group.to_dict("records"):
        by_point.setdefault(record["point_id"], []).append(record)
    ordered = sorted(by_point.values(), key=lambda rs: (rank.get(rs[0]["variant"], 99),
                                                        *(sortable(rs[0].get(c)) for c in label_cols)))
    rows = []
    for candidate in ordered:
        first = candidate[0]
        by_ref = {str(r["reference_backend"]): r for r in candidate}
        cells = [Cell(str(first["variant"])), Cell(point_label(first, label_cols) or "(single point)")]
        for ref in refs:
            cells += _point_cells(by_ref.get(ref), ref, has)
        rows.append(Row(cells))
    return rows


# ---- one facet across its sizes -------------------------------------------------------------


def _range(values: pd.Series, render: Any) -> str:
    lo, hi = render(values.min()), render(values.max())
    return lo if lo == hi else f"{lo} – {hi}"


def _summary_cells(rows: pd.DataFrame, ref: str, has: dict[str, bool]) -> list[Cell]:
    rows = rows[rows["reference_backend"] == ref]
    cells: list[Cell] = []
    if has["speed"]:
        timed = rows[rows["speedup"].map(finite)]
        outcomes = list(map(fmt.outcome, timed["speedup"], timed["speedup_ci_low"], timed["speedup_ci_high"]))
        wins, losses = outcomes.count(fmt.WIN), outcomes.count(fmt.LOSS)
        n = len(outcomes)
        cls = fmt.WIN if n and wins == n else fmt.LOSS if n and losses == n else fmt.TIE
        cells.append(Cell(f"{wins} / {losses} / {n - wins - losses}" if n else fmt.DASH,
                          {"class": f"num first-of-group {cls}", "data-ref": ref,
                           "title": f"of {n} points: faster / slower / no clear difference"}))
        cells.append(Cell(f"{fmt.times(timed['speedup'].median())} ({_range(timed['speedup'], fmt.times)})"
                          if n else fmt.DASH, {"class": "num"}))
        cells.append(Cell(fmt.percent(rows["efficiency"].median()), {"class": "num"}))
    if has["mem"]:
        change = rows["mem_ratio"].dropna() - 1.0
        cells.append(Cell(_range(change, lambda v: fmt.percent(v, signed=True)) if len(change) else fmt.DASH,
                          {"class": "num" + _first(has, "mem")}))
    if has["acc"]:
        cells.append(Cell(_range(rows["accuracy_delta"].dropna(), fmt.points)
                          if rows["accuracy_delta"].notna().any() else fmt.DASH, {"class": "num" + _first(has, "acc")}))
    return cells


def facet_columns(plan: AxisPlan, comps: pd.DataFrame) -> list[str]:
    """The swept settings a summary line keeps apart (everything swept but sizes and the machine)."""
    return [c for c in plan.extra if c not in SPANNED and c != plan.x and c in comps]


def _summary_rows(group: pd.DataFrame, plan: AxisPlan, refs: list[str], rank: dict[str, int],
                  has: dict[str, bool]) -> list[Row]:
    facets = facet_columns(plan, group)
    # Grouped by each setting's value as a plot axis reads it (axis_value: None when absent, so a
    # row without the setting is a group of its own rather than NaN, which never equals itself).
    keyed = group.assign(**{c: group[c].map(axis_value) for c in facets})
    groups = keyed.groupby(["variant", *facets], sort=False, dropna=False)
    rows = []
    for _, rows_here in sorted(groups, key=lambda kv: (rank.get(kv[0][0], 99), str(kv[0][0]),
                                                       *(sortable(v) for v in kv[0][1:]))):
        first = group.loc[rows_here.index[0]]
        cells = [Cell(str(first["variant"])), Cell(point_label(first, facets) or "every setting"),
                 Cell(str(rows_here["point_id"].nunique()), {"class": "num"})]
        for ref in refs:
            cells += _summary_cells(rows_here, ref, has)
        rows.append(Row(cells))
    return rows


# ---- the section -----------------------------------------------------------------------------


def verdict_tables(comps: pd.DataFrame, plan: AxisPlan, refs: list[str],
                   variant_order: list[str]) -> list[dict[str, Any]]:
    """One table per (machine, device, mode, candidate backend), in that order; `machine` is set
    only when the run's rows come from several machines (the template heads each machine's tables)."""
    if comps.empty:
        return []
    has = _has(comps)
    rank = {v: i for i, v in enumerate(variant_order)}
    several = comps["node"].nunique() > 1
    span = max(1, 3 * has["speed"] + has["mem"] + has["acc"])
    tables = []
    for (node, device, mode, backend), group in comps.groupby(["node", "device", "mode", "backend"], sort=False,
                                                               dropna=False):
        points = _point_rows(group, plan, refs, rank, has)
        summary = _summary_rows(group, plan, refs, rank, has) if len(points) > SUMMARY_OVER else []
        missing = [ref for ref in refs if not (group["reference_backend"] == ref).any()]
        # How the speedup CIs were made (lockstep pairs over rounds, or a fallback), or why one has none.
        methods = "; ".join(f"{m} ({n} of {len(group)})" for m, n in
                            group["speedup_ci_method"].value_counts(sort=False).items())
        tables.append({"title": f"{device} · {mode} · candidate runs {backend}", "device": device, "mode": mode,
                       "backend": backend, "node": node, "machine": machine_label(node) if several else "",
                       "body": body(points), "summary": body(summary) if summary else None,
                       "facets": ", ".join(AXIS_LABELS.get(c, c) for c in facet_columns(plan, group)) or "variant",
                       "missing_refs": missing, "has": has, "ci_methods": methods, "span": span})
    nodes = list(dict.fromkeys(comps["node"]))
    order = {b: i for i, b in enumerate(PREFERRED_BACKENDS)}
    tables.sort(key=lambda t: (nodes.index(t["node"]), t["device"], t["mode"], order.get(t["backend"], 9),
                               t["backend"]))
    return tables
