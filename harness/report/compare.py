"""Two runs side by side: run B against run A, per (point, variant) and per metric.

Rows pair up by (point_id, variant): point ids are hashes of what was measured, so they match
across runs of the same suite and differ when the suite changed. A time change counts only if it
is statistically significant (Mann-Whitney on the raw samples, Holm-adjusted over all pairs) AND
its bootstrap CI excludes "no change" (DESIGN.md §4). Within-run speedups (reuse ÷ baseline) are
compared too: they transfer across machines where absolute times do not.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import stats
from harness.compare.within import Run, comparisons, load_run
from harness.report import context, fmt
from harness.report.frame import axis_plan, finite, having, normalize, num, ordered_variants, point_label, samples_of
from harness.report.plotkit import Plot, Styler, faceted, legend_name, log_x, match, ratio_axis, series_keys

ALPHA = 0.05
MACHINE_KEYS: tuple[tuple[str, str], ...] = (("cpu_model", "CPU"), ("cpu_cores", "cores"), ("threads", "threads"),
                                             ("torch", "torch"), ("gpu", "GPU"),
                                             ("allocator", "allocator"))


def _gpu_name(env: dict[str, Any]) -> str:
    gpu = env.get("gpu")
    return str(gpu.get("name")) if isinstance(gpu, dict) else ("none" if not gpu else str(gpu))


def machine_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for key, label in MACHINE_KEYS:
        va, vb = (_gpu_name(a), _gpu_name(b)) if key == "gpu" else (a.get(key), b.get(key))
        if va != vb:
            out.append(f"{label}: {fmt.plain(va)} → {fmt.plain(vb)}")
    return out


def _time_change(row_a: pd.Series, row_b: pd.Series) -> dict[str, float]:
    sa, sb = samples_of(row_a["time_ms_samples"]), samples_of(row_b["time_ms_samples"])
    ratio = num(row_b["time_ms_median"]) / num(row_a["time_ms_median"]) if num(row_a["time_ms_median"]) > 0 else math.nan
    out = {"ratio": ratio, "low": math.nan, "high": math.nan, "p": math.nan}
    if sa.size >= 2 and sb.size >= 2:
        out["ratio"], out["low"], out["high"] = stats.ratio_of_medians_ci(sb, sa)
        out["p"] = stats.mann_whitney_u(sa, sb)[1]
    return out


def _pairs(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """B's rows joined to A's on (point_id, variant), both ok."""
    ok_a, ok_b = a[a["status"] == "ok"], b[b["status"] == "ok"]
    return ok_b.merge(ok_a, on=["point_id", "variant"], suffixes=("", "_a"))


def _verdict(change: dict[str, float], p_adj: float) -> str:
    significant = finite(p_adj) and p_adj < ALPHA
    if significant and finite(change["low"]) and change["low"] > 1:
        return "slower"
    if significant and finite(change["high"]) and change["high"] < 1:
        return "faster"
    return "no change" if finite(change["ratio"]) else "unknown"


def metric_rows(a: pd.DataFrame, b: pd.DataFrame) -> list[dict[str, Any]]:
    pairs = _pairs(a, b)
    changes = [_time_change(pd.Series({k[:-2]: v for k, v in r.items() if k.endswith("_a")}), r)
               for _, r in pairs.iterrows()]
    p_adj = stats.holm([c["p"] for c in changes]) if changes else []
    rows = []
    for (_, r), change, p in zip(pairs.iterrows(), changes, p_adj):
        rows.append({
            "variant": r["variant"], "backend": r["backend"], "device": r["device"], "mode": r["mode"],
            "seq_len": r["seq_len"], "batch_size": r["batch_size"], "reuse_ratio": r["reuse_ratio"],
            "series": r["series"], "time_a": r["time_ms_median_a"], "time_b": r["time_ms_median"],
            "time_ratio": change["ratio"], "time_low": change["low"], "time_high": change["high"], "p_holm": p,
            "verdict": _verdict(change, p),
            "mem_a": r["peak_mem_bytes_a"], "mem_b": r["peak_mem_bytes"],
            "mem_ratio": num(r["peak_mem_bytes"]) / num(r["peak_mem_bytes_a"]) if num(r["peak_mem_bytes_a"]) > 0 else math.nan,
            "flop_ratio": num(r["flops_analytic"]) / num(r["flops_analytic_a"]) if num(r["flops_analytic_a"]) > 0 else math.nan,
            "acc_delta": num(r["accuracy_mean"]) - num(r["accuracy_mean_a"]),
            "point_id": r["point_id"],
        })
    return rows


def speedup_rows(run_a: Run, run_b: Run) -> list[dict[str, Any]]:
    """Reuse-vs-baseline speedups of both runs at the same (candidate, baseline) pair."""
    ca, cb = comparisons(run_a.results), comparisons(run_b.results)
    if ca.empty or cb.empty:
        return []
    keys = ["point_id", "reference_point_id"]
    merged = cb.merge(ca[keys + ["speedup", "speedup_ci_low", "speedup_ci_high"]], on=keys, suffixes=("", "_a"))
    out = []
    for _, r in merged.iterrows():
        overlap = not (num(r["speedup_ci_low"]) > num(r["speedup_ci_high_a"]) or
                       num(r["speedup_ci_high"]) < num(r["speedup_ci_low_a"]))
        out.append({"variant": r["variant"], "backend": r["backend"], "device": r["device"], "mode": r["mode"],
                    "reference": r["reference_backend"],
                    "point": point_label(r, ["seq_len", "batch_size", "reuse_ratio"]),
                    "a": fmt.times_ci(r["speedup_a"], r["speedup_ci_low_a"], r["speedup_ci_high_a"]),
                    "b": fmt.times_ci(r["speedup"], r["speedup_ci_low"], r["speedup_ci_high"]),
                    "change": fmt.percent(num(r["speedup"]) / num(r["speedup_a"]) - 1, signed=True),
                    "differs": not overlap})
    return out


def _table(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The sortable table (same markup contract as the single-run data table)."""
    spec = [("variant", "variant", fmt.plain, False), ("backend", "backend", fmt.plain, False),
            ("device", "device", fmt.plain, False), ("mode", "mode", fmt.plain, False),
            ("seq_len", "n", fmt.plain, True), ("batch_size", "B", fmt.plain, True),
            ("reuse_ratio", "ratio", fmt.plain, True), ("time_a", "time A", fmt.ms, True),
            ("time_b", "time B", fmt.ms, True), ("time_ratio", "B ÷ A", fmt.times, True),
            ("time_low", "CI low", fmt.times, True), ("time_high", "CI high", fmt.times, True),
            ("p_holm", "p (Holm)", lambda v: fmt.DASH if not finite(v) else f"{num(v):.2g}", True),
            ("verdict", "time verdict", fmt.plain, False), ("mem_a", "peak mem A", fmt.bytes_, True),
            ("mem_b", "peak mem B", fmt.bytes_, True), ("mem_ratio", "mem B ÷ A", fmt.times, True),
            ("flop_ratio", "FLOPs B ÷ A", fmt.times, True), ("acc_delta", "accuracy Δ", fmt.points, True),
            ("point_id", "point id", fmt.plain, False)]
    columns = [{"key": k, "label": h, "numeric": n} for k, h, _, n in spec]
    body = []
    for r in rows:
        cells = [{"text": f(r[k]), "raw": (repr(num(r[k])) if finite(r[k]) else "") if n else fmt.plain(r[k])}
                 for k, _, f, n in spec]
        body.append({"status": r["verdict"].replace(" ", "-"), "cells": cells})
    return {"columns": columns, "rows": body}


def _findings(rows: list[dict[str, Any]], speedups: list[dict[str, Any]], a: pd.DataFrame, b: pd.DataFrame,
              machines: list[str]) -> list[str]:
    out = []
    n = len(rows)
    if n:
        slower = [r for r in rows if r["verdict"] == "slower"]
        faster = [r for r in rows if r["verdict"] == "faster"]
        median = float(np.nanmedian([num(r["time_ratio"]) for r in rows])) if n else math.nan
        out.append(f"Time: B is significantly slower at {len(slower)} and faster at {len(faster)} of {n} matched "
                   f"measurements (median B ÷ A {fmt.times(median)}; Holm-adjusted p < {ALPHA} and CI excluding 1×).")
        if slower:
            worst = max(slower, key=lambda r: num(r["time_ratio"]))
            out.append(f"Largest slowdown: {worst['series']} at {worst['device']} · {worst['mode']} · "
                       f"{point_label(worst, ['seq_len', 'batch_size', 'reuse_ratio'])}, {fmt.times(worst['time_ratio'])}.")
        changed_flops = [r for r in rows if finite(r["flop_ratio"]) and abs(num(r["flop_ratio"]) - 1) > 1e-9]
        if changed_flops:
            out.append(f"FLOPs differ at {len(changed_flops)} measurement(s): the model or the counting changed "
                       "between the runs, so time changes there are not like for like.")
    if machines:
        out.append("The runs come from different machines or setups (" + "; ".join(machines) + "): compare the "
                   "reuse speedups, which travel across machines, rather than absolute times.")
    moved = [s for s in speedups if s["differs"]]
    if speedups:
        out.append(f"Reuse speedups: {len(moved)} of {len(speedups)} (candidate, baseline) pairs moved beyond "
                   "their confidence intervals between A and B.")
    only_a = set(zip(a["point_id"], a["variant"])) - set(zip(b["point_id"], b["variant"]))
    only_b = set(zip(b["point_id"], b["variant"])) - set(zip(a["point_id"], a["variant"]))
    if only_a or only_b:
        out.append(f"{len(only_a)} measurement(s) exist only in A and {len(only_b)} only in B (different suites "
                   "or an interrupted run); they are left out of the comparison.")
    for name, df in (("A", a), ("B", b)):
        failed = int((df["status"] == "failed").sum())
        if failed:
            out.append(f"Run {name} has {failed} failed measurement(s); see its own report for the errors.")
    return out


def _plot(rows: list[dict[str, Any]], b: pd.DataFrame) -> Plot:
    title = "Time B ÷ A"
    caption = "Median time of run B over run A per measurement, with the bootstrap 95% CI; above 1×: B is slower."
    frame = pd.DataFrame(rows)
    plan = axis_plan(b)
    if frame.empty or plan.x is None:
        return Plot("b-over-a", title, caption, note="Nothing to draw: no matched measurements vary in n or B "
                    "(the table below has every pair).")
    frame = frame.rename(columns={"time_ratio": "speedup", "time_low": "speedup_ci_low", "time_high": "speedup_ci_high"})
    order = ordered_variants(b)
    keys = series_keys(frame, plan.extra, order)
    styler = Styler(keys, order)

    def draw(ax: Any, facet: tuple[str, str]) -> bool:
        sub = frame[(frame["device"] == facet[0]) & (frame["mode"] == facet[1])]
        drew = False
        for variant, backend, extra in keys:
            s = sub[(sub["variant"] == variant) & (sub["backend"] == backend) & match(sub, plan.extra, extra)]
            s = having(s, "speedup").sort_values(plan.x)
            if s.empty:
                continue
            style = styler(variant, backend, extra)
            x = s[plan.x].to_numpy(float)
            ax.plot(x, s["speedup"].to_numpy(float), label=legend_name(variant, backend, extra, plan), **style)
            lo, hi = s["speedup_ci_low"].to_numpy(float), s["speedup_ci_high"].to_numpy(float)
            if np.isfinite(lo).all() and np.isfinite(hi).all():
                ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
            drew = True
        ratio_axis(ax)
        log_x(ax, plan.x_values)
        ax.set_title(f"{facet[0]} · {facet[1]}")
        ax.set_xlabel(plan.x_label)
        ax.set_ylabel("time B ÷ A")
        return drew

    svg = faceted("b-over-a", list(plan.facets), draw, title)
    return Plot("b-over-a", title, caption, svg=svg, note=None if svg else "No matched timings to draw.")


def comparison_context(path_a: Path, path_b: Path) -> dict[str, Any]:
    run_a, run_b = load_run(path_a), load_run(path_b)
    a, b = normalize(run_a.results), normalize(run_b.results)
    rows = metric_rows(a, b)
    speedups = speedup_rows(run_a, run_b)
    machines = machine_differences(run_a.manifest.get("environment") or {}, run_b.manifest.get("environment") or {})
    head_a, head_b = context.header(run_a.manifest, a), context.header(run_b.manifest, b)
    alerts = [{"level": "warn", "text": f"Run {name}: {al['text']}"} for name, h in (("A", head_a), ("B", head_b))
              for al in h["alerts"] if al["kind"] in ("cut", "empty", "dirty")]
    if machines:
        alerts.insert(0, {"level": "warn", "text": "Different machines or setups: absolute times are not comparable ("
                          + "; ".join(machines) + ")."})
    return {
        "kind": "compare", "a": head_a, "b": head_b, "alerts": alerts,
        "findings": _findings(rows, speedups, a, b, machines),
        "plot": _plot(rows, b), "speedups": speedups, "table": _table(rows),
        "csv_name": f"compare-{Path(path_a).name}-vs-{Path(path_b).name}.csv",
    }
