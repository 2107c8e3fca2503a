"""Two runs side by side in HTML: the comparison engine's checks of run B against run A.

Every change, CI, adjusted p-value and verdict on this page is a harness.compare.runs.Check made
under the default policy, the checks `harness compare A B` prints, so the page and the terminal
cannot disagree about a pair of runs. This module only arranges them: findings, the time plot,
the reuse speedup table and a sortable table of every check, plus the machine differences that
explain why absolute times may not be gated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.compare import fmt
from harness.compare.policy import load_policy
from harness.compare.render import COLUMNS, cells, gated, sorted_checks, tally
from harness.compare.rows import num
from harness.compare.runs import Check, Comparison, NothingToCompare, compare_runs, infer_context
from harness.compare.verdict import Verdict
from harness.results.load import load_run
from harness.report import context
from harness.report.frame import axis_plan, having, normalize, ordered_variants
from harness.report.packed import Cell, Row, body
from harness.report.plotkit import Plot, Styler, faceted, legend_name, log_x, match, ratio_axis, series_keys

MACHINE_KEYS: tuple[tuple[str, str], ...] = (("cpu_model", "CPU"), ("cpu_cores", "cores"), ("threads", "threads"),
                                             ("torch", "torch"), ("gpu", "GPU"),
                                             ("allocator", "allocator"))
# The table's columns: a check's cells as the terminal prints them, then what it keeps in notes.
TABLE_KEYS: tuple[str, ...] = ("verdict", "metric", "point", "variant", "baseline", "candidate", "change",
                               "ci", "p_adjusted", "gated", "note", "point_id")
TABLE_LABELS: tuple[str, ...] = (*COLUMNS, "note", "point id")
CORRECTION_NAMES = {"holm": "Holm-adjusted", "bh": "Benjamini-Hochberg-adjusted", "none": "unadjusted"}


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


def _slug(verdict: Verdict) -> str:
    return str(verdict).replace(" ", "-")


def _of(checks: list[Check], metric: str) -> list[Check]:
    return [c for c in checks if c.metric == metric]


def _raw(check: Check, key: str, text: str) -> str:
    """What a cell sorts by and the CSV holds: full-precision numbers, '' where there is none."""
    numbers = {"baseline": check.base, "candidate": check.cand, "change": num(check.ratio) - 1.0,
               "p_adjusted": check.p_adjusted}
    if key not in numbers:
        return "" if text == fmt.DASH else text
    value = num(numbers[key])
    return "" if np.isnan(value) else repr(value)


def _table(checks: list[Check]) -> dict[str, Any]:
    """Every check, as the single-run data table lays out its rows (packed when long)."""
    numeric = {"baseline", "candidate", "change", "p_adjusted"}
    rows = []
    for check in sorted_checks(checks):
        texts = [*cells(check), check.note or fmt.DASH, check.point_id]
        rows.append(Row([Cell(t, {"data-v": _raw(check, k, t), **({"class": "num"} if k in numeric else {})})
                         for k, t in zip(TABLE_KEYS, texts)], f"status-{_slug(check.verdict)}"))
    columns = [{"key": k, "label": label, "numeric": k in numeric} for k, label in zip(TABLE_KEYS, TABLE_LABELS)]
    return {"columns": columns, "body": body(rows)}


def _speedups(checks: list[Check]) -> list[dict[str, Any]]:
    """The reuse-vs-baseline speedup of both runs and the engine's verdict on its change."""
    colour = {Verdict.REGRESSED: fmt.LOSS, Verdict.IMPROVED: fmt.WIN}
    return [{"variant": c.variant, "point": c.label, "a": fmt.times(c.base), "b": fmt.times(c.cand),
             "change": fmt.change(c.ratio), "ci": fmt.change_ci(c.ci_low, c.ci_high), "verdict": str(c.verdict),
             "colour": colour.get(c.verdict, ""), "gated": gated(c)}
            for c in sorted_checks(_of(checks, "speedup"))]


def _moved(checks: list[Check], what: str) -> str:
    """'regressed at 2 and improved at 0 of 16 <what> (14 unchanged)'."""
    regressed = sum(c.verdict == Verdict.REGRESSED for c in checks)
    improved = sum(c.verdict == Verdict.IMPROVED for c in checks)
    return f"regressed at {regressed} and improved at {improved} of {len(checks)} {what} ({tally(checks)})"


def _findings(comparison: Comparison, runs: dict[str, pd.DataFrame], machines: list[str]) -> list[str]:
    checks, policy = comparison.checks, comparison.policy
    out = []
    if checks:
        out.append(f"{len(checks)} checks of B against A: {tally(checks)}. Regressed or improved means a "
                   f"{CORRECTION_NAMES[policy.correction]} p < {policy.alpha:g} and a change beyond the check's "
                   "threshold; too noisy, a CI wider than the threshold; too few samples, no honest 95% interval "
                   "(one round of pairs, or too few samples), so untested. Each check's note names the method "
                   "that made its interval. These are the verdicts "
                   f"`harness compare A B` prints, under the {policy.source}.")
    times = _of(checks, "time_ms")
    if times:
        median = float(np.nanmedian([num(c.ratio) for c in times]))
        shown = "" if comparison.same_machine else "; shown, not gated: the runs share no machine fingerprint"
        out.append(f"Time: {_moved(times, 'matched measurements')}; median B ÷ A {fmt.times(median)}{shown}.")
        regressed = [c for c in times if c.verdict == Verdict.REGRESSED]
        if regressed:
            worst = max(regressed, key=lambda c: num(c.ratio))
            out.append(f"Largest time regression: {worst.variant} at {worst.label}, {fmt.times(worst.ratio)}.")
    flops = [c for c in checks if c.metric.startswith("flops_") and c.verdict == Verdict.CHANGED]
    if flops:
        out.append(f"FLOPs differ at {len({c.point_id for c in flops})} measurement(s): the model or the counting "
                   "changed between the runs, so time changes there are not like for like.")
    if machines:
        out.append("The runs come from different machines or setups (" + "; ".join(machines) + "): compare the "
                   "reuse speedups, which travel across machines, rather than absolute times.")
    speedups = _of(checks, "speedup")
    if speedups:
        out.append(f"Reuse speedups: {_moved(speedups, '(candidate, baseline) pairs')}.")
    missing, failed = (sum(c.verdict == v for c in _of(checks, "row")) for v in (Verdict.MISSING, Verdict.FAILED))
    if missing or failed or comparison.new_rows:
        out.append(f"{missing} measurement(s) of A are missing from B, {failed} failed in B and "
                   f"{comparison.new_rows} exist only in B (different suites or an interrupted run).")
    for name, df in runs.items():
        n_failed = int((df["status"] == "failed").sum())
        if n_failed:
            out.append(f"Run {name} has {n_failed} failed measurement(s); see its own report for the errors.")
    return out


def _plot(times: list[Check], b: pd.DataFrame) -> Plot:
    title = "Time B ÷ A"
    caption = "Median time of run B over run A per measurement, with its 95% CI; above 1×: B is slower."
    plan = axis_plan(b)
    ratios = pd.DataFrame([{"point_id": c.point_id, "variant": c.variant, "ratio": c.ratio, "low": c.ci_low,
                            "high": c.ci_high} for c in times])
    if ratios.empty or plan.x is None:
        return Plot("b-over-a", title, caption, note="Nothing to draw: no matched measurements vary in n or B "
                    "(the table below has every check).")
    frame = ratios.merge(b, on=["point_id", "variant"])  # the checks say how much; B's rows say where
    order = ordered_variants(b)
    keys = series_keys(frame, plan.extra, order)
    styler = Styler(keys, order)

    def draw(ax: Any, facet: tuple[str, str]) -> bool:
        sub = frame[(frame["device"] == facet[0]) & (frame["mode"] == facet[1])]
        drew = False
        for variant, backend, extra in keys:
            s = sub[(sub["variant"] == variant) & (sub["backend"] == backend) & match(sub, plan.extra, extra)]
            s = having(s, "ratio").sort_values(plan.x)
            if s.empty:
                continue
            style = styler(variant, backend, extra)
            x = s[plan.x].to_numpy(float)
            ax.plot(x, s["ratio"].to_numpy(float), label=legend_name(variant, backend, extra, plan), **style)
            lo, hi = s["low"].to_numpy(float), s["high"].to_numpy(float)
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


def comparison_context(path_a: Path, path_b: Path, policy_file: str | Path | None = None) -> dict[str, Any]:
    run_a, run_b = load_run(path_a), load_run(path_b)
    policy = load_policy(policy_file)  # the same policy `harness compare A B --policy FILE` would use
    try:
        comparison, nothing = compare_runs(run_a, run_b, policy), None
    except NothingToCompare as error:  # still a page: both headers, and why there is nothing to judge
        comparison, nothing = Comparison(run_a, run_b, policy, infer_context(run_a, run_b), False), str(error)
    checks = comparison.checks
    a, b = normalize(run_a.results), normalize(run_b.results)
    machines = machine_differences(run_a.manifest.get("environment") or {}, run_b.manifest.get("environment") or {})
    head_a, head_b = (context.header(run.manifest, df, run.damaged) for run, df in ((run_a, a), (run_b, b)))
    alerts = [{"level": "warn", "text": f"Run {name}: {al['text']}"} for name, h in (("A", head_a), ("B", head_b))
              for al in h["alerts"] if al["kind"] in ("cut", "damaged", "empty", "dirty")]
    if machines:
        alerts.insert(0, {"level": "warn", "text": "Different machines or setups: absolute times are not comparable ("
                          + "; ".join(machines) + ")."})
    if nothing:
        alerts.insert(0, {"level": "bad", "text": f"Nothing to compare: {nothing}"})
    return {
        "kind": "compare", "a": head_a, "b": head_b, "alerts": alerts,
        "findings": _findings(comparison, {"A": a, "B": b}, machines),
        "plot": _plot(_of(checks, "time_ms"), b), "speedups": _speedups(checks), "table": _table(checks),
        "csv_name": f"compare-{Path(path_a).name}-vs-{Path(path_b).name}.csv",
    }
