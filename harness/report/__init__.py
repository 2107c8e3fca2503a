"""HTML reports: one self-contained page per run (or per pair of runs) that answers
"is reuse worth it here?" at a glance.

    render_report(run_dir, out=None) -> Path          # default: RUN_DIR/report.html
    render_comparison(run_a, run_b, out=None) -> Path  # B against A, point by point

The page reads only the stored run directory, embeds its CSS, script and matplotlib SVG plots,
and makes no network request of any kind: it opens from disk, from a CI artifact or an e-mail.
Templates autoescape; user text (suite names, descriptions, error messages) is only ever
inserted as text. The only markup inserted unescaped is our own static files and matplotlib's
SVG, which escapes every string it draws (see svg.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from harness.compare.within import comparisons
from harness.results.load import load_run
from harness.report import (context, plotkit, plots, plots_extra, profiling, redundancy, slices, table, takeaways,
                            verdicts)
from harness.report.frame import AxisPlan, axis_plan, normalize, ordered_variants, with_machines
from harness.report.page import render_page

__all__ = ["render_comparison", "render_report", "build_context"]

REPORT_NAME = "report.html"


def _performance(every_ok: pd.DataFrame, every_comp: pd.DataFrame, plan: AxisPlan, refs: list[str],
                 variants: list[str]) -> list[plotkit.Plot]:
    # A big sweep draws a slice of its settings (slices.py); the caption of each plot says which.
    # Under a reuse-ratio sweep at one size the ratio is the x axis, never cut.
    cut = slices.choose(every_ok, [c for c in plan.extra if plan.x or c != "reuse_ratio"])
    ok, comps = cut.rows(every_ok), cut.rows(every_comp)
    keys = plotkit.series_keys(ok, plan.extra, variants)
    styler = plotkit.Styler(keys, variants)
    cand_keys = [k for k in keys if k in set(plotkit.series_keys(comps, plan.extra, variants))] if not comps.empty else []
    by_ratio = slices.choose(every_comp, [c for c in (plan.x, *plan.extra) if c and c != "reuse_ratio"])
    return [
        cut.caption(plots.metric_vs_x(ok, plan, keys, styler, metric="time_ms_median", name="time",
                    title="Time per step", ylabel="time per step (ms)", scale=1.0,
                    band=("time_ms_ci_low", "time_ms_ci_high", "time_ms_ci_level"),
                    caption="Median time per step (log scale), with the 95% CI of the median as a band "
                            "where the samples allow one (6 or more; fewer leave a gap). "
                            "Colour: variant; dashed: eager attention; solid: fused SDPA.")),
        cut.caption(plots.speedup_vs_x(comps, plan, refs, cand_keys, styler)),
        by_ratio.caption(plots.speedup_vs_ratio(by_ratio.rows(every_comp), plan, refs, variants)),
        cut.caption(plots.metric_vs_x(ok, plan, keys, styler, metric="peak_mem_bytes", name="memory",
                    title="Peak memory per step", ylabel="peak memory (MiB)", scale=1 / 2**20,
                    caption="Peak bytes held by the allocator during one step (log scale). Eager attention "
                            "materializes B·H·n² probabilities; SDPA does not, except for the heads reuse "
                            "hands on.")),
        cut.caption(plots.flops_by_component(ok, plan, keys)),
        cut.caption(plots.timing_noise(ok, plan, keys, styler)),
    ]


def _plots(ok: pd.DataFrame, comps: pd.DataFrame, plan: AxisPlan, refs: list[str],
           variants: list[str], metrics: str) -> dict[str, list[plotkit.Plot]]:
    perf = _performance(ok, comps, plan, refs, variants)
    accuracy = [plots_extra.accuracy_vs_ratio(ok, plan, variants), plots_extra.learning_curves(ok, plan, variants),
                plots_extra.accuracy_vs_cost(ok, plan, variants)]
    has_accuracy = bool(ok["accuracy_mean"].notna().any() or
                        ok["learning_curve"].map(lambda v: isinstance(v, list) and bool(v)).any())
    if not any(p.svg for p in perf):  # e.g. an accuracy-only suite: one line instead of six notes
        perf = [plotkit.Plot("performance", "Nothing timed", "", note="This run measured no time, memory, FLOPs "
                             "or timing samples (suite metrics: " + metrics + ").")]
    return {"performance": perf, "accuracy": accuracy if has_accuracy else [],
            "energy": [plots_extra.energy(ok, plan, variants)]}


def build_context(run_dir: str | Path, out_dir: Path) -> dict[str, Any]:
    """Everything the single-run template shows (exposed for tests and other front ends)."""
    run = load_run(run_dir)
    df = normalize(run.results)
    ok = df[df["status"] == "ok"]
    comps = with_machines(comparisons(run.results).reset_index(drop=True))
    plan = axis_plan(df)
    refs = context.reference_backends(df)
    variants = ordered_variants(df, (run.manifest.get("suite") or {}).get("variants") or {})
    return {
        "kind": "run",
        "header": context.header(run.manifest, df, run.damaged),
        "machines": context.machines(run.manifest, df),
        "plan": {"x": plan.x_label or ("reuse ratio K/H" if plan.ratio_swept else "none"),
                 "extra": ", ".join(c for c in plan.extra if plan.x or c != "reuse_ratio")},
        "refs": refs,
        "cards": takeaways.headlines(comps, plan, ok)
        + takeaways.accuracy_cards(takeaways.accuracy_changes(comps, ok, plan)),
        "verdict": verdicts.verdict_tables(comps, plan, refs, variants),
        "findings": takeaways.all_findings(df, comps, plan, refs),
        "plots": _plots(ok, comps, plan, refs, variants,
                        ", ".join(map(str, (run.manifest.get("suite") or {}).get("metrics") or [])) or "not recorded"),
        "redundancy": redundancy.section(ok),
        "profiling": profiling.profiling(df, Path(run_dir), out_dir, plan),
        "failures": context.failures(df),
        "table": table.data_table(df),
        "settings": context.settings(run.manifest),
        "csv_name": f"{Path(run_dir).name}.csv",
    }


def render_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of one run; returns its path (RUN_DIR/report.html by default)."""
    run_dir = Path(run_dir)
    out_path = Path(out) if out is not None else run_dir / REPORT_NAME
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ctx = build_context(run_dir, out_path.parent)
    out_path.write_text(render_page("report.html.j2", ctx), encoding="utf-8")
    return out_path


def render_comparison(run_a: str | Path, run_b: str | Path, out: str | Path | None = None,
                       policy_file: str | Path | None = None) -> Path:
    """Write the B-vs-A comparison page; by default next to run B as compare-<A>.html.

    `policy_file`: the thresholds to judge by, as `harness compare --policy` (default: built in).
    """
    from harness.report.compare import comparison_context

    run_a, run_b = Path(run_a), Path(run_b)
    out_path = Path(out) if out is not None else run_b / f"compare-{run_a.name}.html"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(render_page("compare.html.j2", comparison_context(run_a, run_b, policy_file)), encoding="utf-8")
    return out_path
