"""Plain-language findings generated from the comparisons: the "is reuse worth it here?" answer.

Rules of the wording:
- a speedup is "faster" or "slower" only when its 95% CI lies entirely on that side of 1×;
  otherwise it is "no clear difference" (see fmt.outcome);
- every claim names the baseline backend it is against, and losses are said as plainly as wins;
- the headline per (device, mode) is judged against the *fastest* baseline at each point, since
  that is what a team would deploy instead of reuse; where several reuse forms were measured, the
  fastest of them is named against it at each point (the strongest implementation on each side).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import pandas as pd

from harness.compare import fmt
from harness.compare.within import best_baseline, best_reuse
from harness.report.frame import (NODE, AxisPlan, axis_value, finite, having, machine_label, num, point_label,
                                  samples_of, series_name, sortable)

NOISY_CI = 0.05  # a median whose 95% CI reaches further than ±5% is flagged as noisy


def _candidate_groups(comps: pd.DataFrame, plan: AxisPlan) -> Iterable[tuple[tuple[Any, ...], pd.DataFrame]]:
    """(device, mode, variant, backend, *extra values) -> that candidate series' comparisons."""
    cols = ["device", "mode", "variant", "backend", *[c for c in plan.extra if c in comps]]
    # Each axis by its value as plots read it (a word such as a dtype or a node stays itself; an
    # absent value is one group, not NaN, which never equals itself).
    keyed = comps.assign(**{c: comps[c].map(lambda v: "" if axis_value(v) is None else axis_value(v))
                            for c in plan.extra if c in comps})
    return keyed.groupby(cols, sort=False, dropna=False)


def _name(variant: str, backend: str, row: pd.Series, plan: AxisPlan) -> str:
    tail = point_label(row, [c for c in plan.extra if c != plan.x])
    ratio = num(row.get("reuse_ratio"))
    ratio_note = "" if "reuse_ratio" in plan.extra or math.isnan(ratio) else f"ratio {ratio:g}"
    detail = ", ".join(p for p in (ratio_note, tail) if p)
    return series_name(variant, backend) + (f" ({detail})" if detail else "")


# A candidate series against one baseline, as plain records: a sweep has hundreds of series, and
# pandas' per-call overhead on a handful of rows, not the work, was most of the report's time.
Records = list[dict[str, Any]]


def _where(rows: Records, plan: AxisPlan) -> str:
    labels = [point_label(r, [plan.x]) for r in rows] if plan.x else []
    labels = [l for l in labels if l]
    return ", ".join(labels) if labels else "the measured point"


def _outcomes(rows: pd.DataFrame) -> pd.Series:
    return pd.Series(list(map(fmt.outcome, rows["speedup"], rows["speedup_ci_low"], rows["speedup_ci_high"])),
                     index=rows.index, dtype=object)


def _range(rows: Records) -> str:
    lo, hi = min(r["speedup"] for r in rows), max(r["speedup"] for r in rows)
    return fmt.times(lo) if math.isclose(lo, hi, rel_tol=0.005) else f"{fmt.times(lo)}–{fmt.times(hi)}"


def _versus(rows: Records, ref: str, plan: AxisPlan) -> str:
    """One clause: how this candidate series does against one baseline backend."""
    rows = [r for r in rows if finite(r["speedup"])]
    if plan.x:
        rows.sort(key=lambda r: sortable(r.get(plan.x)))
    if not rows:
        return f"could not be timed against the {ref} baseline"
    out = [fmt.outcome(r["speedup"], r["speedup_ci_low"], r["speedup_ci_high"]) for r in rows]
    n = len(rows)
    wins, losses, ties = ([r for r, o in zip(rows, out) if o == kind] for kind in (fmt.WIN, fmt.LOSS, fmt.TIE))
    span = _range(rows)
    best = max(rows, key=lambda r: r["speedup"])
    at_best = f" (best at {point_label(best, [plan.x])})" if plan.x and n > 1 else ""
    if len(wins) == n:
        return f"is {span} faster than the {ref} baseline{at_best}"
    if len(losses) == n:
        return (f"is slower than the {ref} baseline at every {'size' if n > 1 else 'point'}: "
                f"{span} its speed")
    parts = []
    if wins:
        parts.append(f"faster at {_where(wins, plan)}")
    if losses:
        parts.append(f"slower at {_where(losses, plan)}")
    if ties:
        parts.append(f"no clear difference at {_where(ties, plan)}")
    return f"runs at {span} the speed of the {ref} baseline ({'; '.join(parts)})"


def speed_findings(comps: pd.DataFrame, plan: AxisPlan, refs: list[str]) -> list[str]:
    out: list[str] = []
    if comps.empty or not comps["speedup"].map(finite).any():
        return out  # nothing was timed (an accuracy-only suite): no speed claims at all
    for key, rows in _candidate_groups(comps, plan):
        device, mode, variant, backend = key[:4]
        against: dict[str, Records] = {}
        for record in rows.to_dict("records"):
            against.setdefault(str(record["reference_backend"]), []).append(record)
        clauses = [_versus(against[ref], ref, plan) for ref in refs if ref in against]
        missing = [ref for ref in refs if ref not in against]
        if missing:
            clauses.append(f"has no {' or '.join(missing)} baseline to be judged against in this run")
        joined = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + ", and " + clauses[-1]
        out.append(f"{device} · {mode}: {_name(variant, backend, rows.iloc[0], plan)} {joined}.")
    return out


# Swept keys that tell one reuse form from another at a point (the comparisons do not carry them).
FORM_KEYS: tuple[str, ...] = ("reuse_source", "reuse_impl", "compile")


def best_form_findings(comps: pd.DataFrame, plan: AxisPlan, ok: pd.DataFrame) -> list[str]:
    """Per point with more than one reuse form: the fastest form against the fastest baseline."""
    best = best_reuse(having(comps, "speedup"))
    axes_of = dict(zip(ok["point_id"], ok["axes"]))
    words = {fmt.WIN: "reuse wins", fmt.LOSS: "reuse loses", fmt.TIE: "no clear difference",
             fmt.UNKNOWN: "no interval to judge by"}
    out = []
    for _, r in best[best["forms"] > 1].iterrows():
        where = (point_label(r, [plan.x]) if plan.x else "") or "the measured point"
        outcome = fmt.outcome(r["speedup"], r["speedup_ci_low"], r["speedup_ci_high"])
        swept = axes_of.get(r["point_id"]) or {}
        form = ", ".join(f"{k}={fmt.plain(swept[k])}" for k in FORM_KEYS if k in swept and k not in plan.extra)
        out.append(f"{r['device']} · {r['mode']} · {where}: the fastest of {r['forms']} reuse forms, "
                   f"{_name(r['variant'], r['backend'], r, plan)}{f' [{form}]' if form else ''}, runs at "
                   f"{fmt.times_ci(r['speedup'], r['speedup_ci_low'], r['speedup_ci_high'])} the speed of the "
                   f"fastest baseline ({series_name(r['reference_variant'], r['reference_backend'])}): "
                   f"{words[outcome]}.")
    return out


def is_noisy(row: pd.Series | dict[str, Any]) -> bool:
    """The median's 95% CI reaches further than NOISY_CI of it on either side."""
    med, lo, hi = num(row.get("time_ms_median")), num(row.get("time_ms_ci_low")), num(row.get("time_ms_ci_high"))
    return med > 0 and finite(lo) and finite(hi) and max(med - lo, hi - med) / med > NOISY_CI


def headlines(comps: pd.DataFrame, plan: AxisPlan, ok: pd.DataFrame) -> list[dict[str, str]]:
    """Per (device, mode), and per machine when the rows come from several: reuse against the
    fastest baseline at each point, as a verdict card."""
    cards = []
    best = best_baseline(comps)
    several = best[NODE].nunique() > 1 if NODE in best else False
    for (node, device, mode), rows in best.groupby([NODE, "device", "mode"], sort=True):
        rows = having(rows, "speedup")
        if rows.empty:
            continue
        out = _outcomes(rows)
        wins, n = rows[out == fmt.WIN], len(rows)
        # "Best" by the CI's lower end: a noisy point with a huge interval is not a best case.
        floor = rows["speedup_ci_low"].where(rows["speedup_ci_low"].map(finite), rows["speedup"])
        top = rows.loc[floor.astype(float).idxmax()]
        top_text = (f"Best case: {series_name(top['variant'], top['backend'])} at "
                    f"{point_label(top, [c for c in (plan.x, *plan.extra) if c]) or 'the measured point'}, "
                    f"{fmt.times_ci(top['speedup'], top['speedup_ci_low'], top['speedup_ci_high'])} "
                    f"the fastest baseline ({top['reference_backend']}).")
        if len(wins) == n:
            verdict, cls = "Reuse is faster everywhere measured", fmt.WIN
        elif len(wins) == 0 and (out == fmt.LOSS).all():
            verdict, cls = "Reuse is slower everywhere measured", fmt.LOSS
        elif len(wins) == 0:
            verdict, cls = "Reuse never beats the fastest baseline", fmt.LOSS if (out == fmt.LOSS).any() else fmt.TIE
        else:
            verdict, cls = f"Reuse wins at {len(wins)} of {n} (point, backend) pairs", "mixed"
        here = ok[(ok["device"] == device) & (ok["mode"] == mode) & (ok[NODE] == node)]
        noisy = sum(map(is_noisy, here.to_dict("records")))
        caution = (f"Caution: {noisy} of {len(here)} timings here are noisy (CI wider than ±{NOISY_CI:.0%}); "
                   "re-run on a quiet machine before deciding." if noisy else "")
        scope = f"{machine_label(node)} · {device} · {mode}" if several else f"{device} · {mode}"
        cards.append({"scope": scope, "verdict": verdict, "class": cls, "caution": caution,
                      "detail": f"Against the fastest baseline at each point (the one you would otherwise "
                                f"deploy). {top_text}"})
    return cards


def efficiency_findings(comps: pd.DataFrame, plan: AxisPlan) -> list[str]:
    """How much of the FLOP saving turns into time, against the same-backend baseline."""
    out = []
    same = having(having(comps, "same_backend", bool), "efficiency")
    for key, rows in _candidate_groups(same, plan):
        device, mode, variant, backend = key[:4]
        eff = rows["efficiency"].median()
        ideal = rows["flop_ideal_speedup"].median()
        if eff < 0.5:
            why = ("materializing the probabilities later layers reuse costs more than the skipped FLOPs save"
                   if backend != "eager" else "time is not following FLOPs (memory traffic or overheads dominate)")
            out.append(f"{device} · {mode}: {_name(variant, backend, rows.iloc[0], plan)} turns only "
                       f"{fmt.percent(eff)} of its FLOP-ideal speedup ({fmt.times(ideal)}) into time against the "
                       f"{backend} baseline: {why}.")
        else:
            out.append(f"{device} · {mode}: {_name(variant, backend, rows.iloc[0], plan)} realizes "
                       f"{fmt.percent(eff)} of its FLOP-ideal speedup ({fmt.times(ideal)}) against the "
                       f"{backend} baseline (median over points).")
    return out


def _span(lo: float, hi: float, render: Any) -> str:
    a, b = render(lo), render(hi)
    return a if a == b else f"{a}–{b}"


def _memory_clause(lo: float, hi: float, ref: str) -> str:
    """lo/hi: reuse peak ÷ baseline peak across points."""
    if hi < 0.98:
        return f"{_span(1 - hi, 1 - lo, fmt.percent)} less than the {ref} baseline's"
    if lo > 1.02:
        return f"{_span(lo - 1, hi - 1, fmt.percent)} more than the {ref} baseline's"
    if hi <= 1.02:
        return f"about the same as the {ref} baseline's (within 2%)"
    return f"between {fmt.times(lo)} and {fmt.times(hi)} the {ref} baseline's"


def memory_findings(comps: pd.DataFrame, plan: AxisPlan, refs: list[str]) -> list[str]:
    out = []
    rows_with_mem = having(comps, "mem_ratio")
    for key, rows in _candidate_groups(rows_with_mem, plan):
        device, mode, variant, backend = key[:4]
        parts = []
        for ref in refs:
            r = rows[rows["reference_backend"] == ref]
            if r.empty:
                continue
            parts.append(_memory_clause(r["mem_ratio"].min(), r["mem_ratio"].max(), ref))
        if parts:
            out.append(f"{device} · {mode}: peak step memory of {_name(variant, backend, rows.iloc[0], plan)} "
                       f"is {' and '.join(parts)}.")
    return out


def _seed_se(row: pd.Series | None) -> float:
    """Standard error of a mean accuracy over seeds; NaN with one seed or no spread recorded."""
    if row is None:
        return math.nan
    seeds = row.get("accuracy_seeds")
    n = len(seeds) if isinstance(seeds, list) and seeds else math.nan
    return num(row.get("accuracy_std")) / math.sqrt(n) if n and n > 1 else math.nan


def accuracy_changes(comps: pd.DataFrame, ok: pd.DataFrame, plan: AxisPlan) -> list[dict[str, Any]]:
    """Each candidate's accuracy minus its baseline's, judged against seed noise (±2 standard
    errors of the difference: a change smaller than that could be which seeds were drawn)."""
    acc = having(comps, "accuracy_delta")
    if acc.empty:
        return []
    # One judgement per candidate row: the same-backend baseline when there is one.
    acc = acc.sort_values("same_backend", ascending=False, kind="mergesort").drop_duplicates(subset=["point_id"])
    by_id = {r["point_id"]: r for _, r in ok.iterrows()}
    out = []
    for _, r in acc.iterrows():
        delta = num(r["accuracy_delta"])
        noise = 2 * math.hypot(_seed_se(by_id.get(r["point_id"])), _seed_se(by_id.get(r["reference_point_id"])))
        outcome = fmt.UNKNOWN if math.isnan(noise) else (
            fmt.TIE if abs(delta) <= noise else fmt.WIN if delta > 0 else fmt.LOSS)
        where = point_label(r, list(dict.fromkeys(c for c in ("reuse_ratio", plan.x, *plan.extra) if c)))
        out.append({"device": r["device"], "mode": r["mode"], "name": series_name(r["variant"], r["backend"]),
                    "where": where or "its point", "delta": delta, "noise": noise, "outcome": outcome})
    return out


def accuracy_cards(changes: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Per (device, mode): does reuse keep the baseline's accuracy?"""
    cards = []
    for device, mode in sorted({(c["device"], c["mode"]) for c in changes}):
        here = [c for c in changes if (c["device"], c["mode"]) == (device, mode)]
        losses = [c for c in here if c["outcome"] == fmt.LOSS]
        if losses:
            verdict, cls = f"Reuse loses accuracy at {len(losses)} of {len(here)} settings", fmt.LOSS
        elif all(c["outcome"] in (fmt.TIE, fmt.WIN) for c in here):
            verdict, cls = "Reuse keeps the baseline's accuracy (within seed noise)", fmt.WIN
        else:
            verdict, cls = "Accuracy change unclear: too few seeds to judge", fmt.TIE
        detail = "; ".join(f"{c['where']}: {fmt.points(c['delta'])}" for c in here)
        cards.append({"scope": f"{device} · {mode} · accuracy", "verdict": verdict, "class": cls, "caution": "",
                      "detail": f"Accuracy minus the baseline's, in percentage points: {detail}."})
    return cards


def accuracy_findings(changes: list[dict[str, Any]]) -> list[str]:
    words = {fmt.WIN: "higher than", fmt.LOSS: "lower than", fmt.TIE: "no clear change from",
             fmt.UNKNOWN: "a single-seed difference from"}
    return [f"{c['name']} at {c['where']}: accuracy {fmt.points(c['delta'])}, {words[c['outcome']]} the baseline"
            + (f" (seed noise ±{fmt.points(c['noise']).lstrip('+')})." if finite(c["noise"]) else ".")
            for c in changes]


def noise_findings(ok: pd.DataFrame, plan: AxisPlan) -> list[str]:
    noisy = []
    for r in ok.to_dict("records"):
        if is_noisy(r):
            noisy.append(f"{r['series']} @ {r['device']} · {r['mode']} · "
                         f"{point_label(r, [c for c in (plan.x, *plan.extra) if c]) or 'point'}")
    few = int(sum(0 < samples_of(v).size < 6 for v in ok["time_ms_samples"]))
    out = []
    if noisy:
        shown = ", ".join(noisy[:6]) + (f" and {len(noisy) - 6} more" if len(noisy) > 6 else "")
        out.append(f"Noisy timings: {len(noisy)} measurement(s) have a 95% CI wider than ±{NOISY_CI:.0%} of "
                   f"their median ({shown}); speedups there are less certain.")
    if few:
        out.append(f"{few} measurement(s) have fewer than 6 timed steps, too few for a true 95% CI of the "
                   "median; their intervals are the min–max range.")
    return out


def failure_findings(df: pd.DataFrame) -> list[str]:
    out = []
    failed = df[df["status"] == "failed"]
    if len(failed):
        common = failed["error"].fillna("no error recorded").map(lambda e: e.strip().splitlines()[-1][:160]
                                                                  if e.strip() else "no error recorded")
        top, n = common.value_counts().index[0], int(common.value_counts().iloc[0])
        out.append(f"{len(failed)} measurement(s) failed, so their points are missing from the comparisons; "
                   f"most common error ({n}×): {top}")
    skipped = df[df["status"] == "skipped"]
    if len(skipped):
        reasons = skipped["error"].fillna("no reason recorded").value_counts()
        out.append(f"{len(skipped)} measurement(s) skipped: " +
                   "; ".join(f"{reason} ({count}×)" for reason, count in reasons.items()) + ".")
    return out


def all_findings(df: pd.DataFrame, comps: pd.DataFrame, plan: AxisPlan, refs: list[str]) -> dict[str, list[str]]:
    ok = df[df["status"] == "ok"]
    return {
        "Speed": speed_findings(comps, plan, refs),
        "Best reuse form": best_form_findings(comps, plan, ok),
        "Efficiency": efficiency_findings(comps, plan),
        "Memory": memory_findings(comps, plan, refs),
        "Accuracy": accuracy_findings(accuracy_changes(comps, ok, plan)),
        "Measurement quality": noise_findings(ok, plan) + failure_findings(df),
    }
