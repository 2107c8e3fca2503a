"""Performance plots: time, speedup (with the FLOP-ideal line), memory, FLOPs by component,
speedup vs reuse ratio and the raw timing samples.

Each function returns a `Plot`: an inline SVG, or no SVG and a one-line note saying why the data
cannot support that plot (a run that swept only the reuse ratio has no time-vs-n curve).
Plots are faceted by (device, mode), since times across devices or between forward and training
steps are not comparable on one axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from harness.report.frame import AxisPlan, fmt_axis_value, having, num, samples_of
from harness.report.plotkit import (COMPONENT_COLOURS, Plot, Styler, facet_title, faceted, legend_name, log_x,
                                    log_y, match, ratio_axis, series_keys)
from harness.report.svg import mpl_text

MAX_SAMPLES_SHOWN = 60       # per (point, series) in the noise plot: enough to see the shape
# ...and in all: every dot is an element of the page's SVG, so a big run shows fewer per box.
MAX_DOTS_SHOWN = 4000


# ---- time and memory vs the swept axis -------------------------------------------------------


# A band is drawn only where its interval reaches this coverage: the captions call it a 95% CI.
BAND_LEVEL = 0.95


def _by_x(df: pd.DataFrame, plan: AxisPlan, value: str, styler: Styler, keys: list[Any], ax: Axes,
          scale: float = 1.0, band: tuple[str, str, str] | None = None) -> bool:
    """`band`: the columns of an interval's (low, high, coverage)."""
    drew = False
    for variant, backend, extra in keys:
        mask = (df["variant"] == variant) & (df["backend"] == backend) & match(df, plan.extra, extra)
        s = df[mask & df[value].notna()].sort_values(plan.x)
        if s.empty:
            continue
        style = styler(variant, backend, extra)
        if s[plan.x].isna().all():
            # A series that does not see the x axis (the baseline under a reuse-ratio sweep): one
            # value for every x, drawn as a level line to compare against.
            ax.axhline(float(s[value].mean()) * scale, color=style["color"], linestyle=style["linestyle"],
                       linewidth=1.2, label=legend_name(variant, backend, extra, plan))
            drew = True
            continue
        x, y = s[plan.x].to_numpy(float), s[value].to_numpy(float) * scale
        ax.plot(x, y, label=legend_name(variant, backend, extra, plan), **style)
        if band:
            low, high = s[band[0]].to_numpy(float) * scale, s[band[1]].to_numpy(float) * scale
            # Points with fewer samples than a 95% interval needs leave a gap instead of a false band.
            real = np.isfinite(low) & np.isfinite(high) & (s[band[2]].to_numpy(float) >= BAND_LEVEL)
            if real.any():
                ax.fill_between(x, low, high, where=real, color=style["color"], alpha=0.15, linewidth=0)
        drew = True
    return drew


def metric_vs_x(ok: pd.DataFrame, plan: AxisPlan, keys: list[Any], styler: Styler, *, metric: str,
                name: str, title: str, ylabel: str, scale: float, caption: str,
                band: tuple[str, str, str] | None = None) -> Plot:
    if plan.x is None and plan.ratio_swept:
        # A reuse-ratio sweep at one size: the ratio becomes the x axis (linear: it includes 0).
        extra = tuple(c for c in plan.extra if c != "reuse_ratio")
        ratios = tuple(sorted(ok.loc[ok["is_reuse"] | (ok["model"] != "baseline"), "reuse_ratio"].dropna().unique()))
        plan = AxisPlan(x="reuse_ratio", x_values=ratios, extra=extra, ratio_swept=True, facets=plan.facets)
        order = list(dict.fromkeys(k[0] for k in keys))
        keys = series_keys(ok, extra, order)
        styler = Styler(keys, order)
    if plan.x is None:
        return Plot(name, title, caption, note="Neither sequence length, batch size nor reuse ratio varies in this "
                    "run, so there is no curve to draw; the verdict table has the single-point numbers.")
    if ok[metric].notna().sum() == 0:
        return Plot(name, title, caption, note=f"This run recorded no {ylabel.split(' (')[0].lower()}.")

    def draw(ax: Axes, facet: tuple[str, str]) -> bool:
        sub = ok[(ok["device"] == facet[0]) & (ok["mode"] == facet[1])]
        drew = _by_x(sub, plan, metric, styler, keys, ax, scale, band)
        log_y(ax)
        if plan.x == "reuse_ratio":
            ax.set_xticks(plan.x_values)
        else:
            log_x(ax, plan.x_values)
        ax.set_title(facet_title(*facet))
        ax.set_xlabel(plan.x_label)
        ax.set_ylabel(ylabel)
        return drew

    svg = faceted(name, list(plan.facets), draw, title)
    return Plot(name, title, caption, svg=svg, note=None if svg else "No series had data to draw.")


# ---- speedups --------------------------------------------------------------------------------


def _speedup_lines(ax: Axes, comps: pd.DataFrame, xcol: str, keys: list[Any], styler: Styler,
                   plan: AxisPlan, extra_cols: tuple[str, ...]) -> bool:
    drew = False
    ideal_done: set[tuple[Any, ...]] = set()
    for variant, backend, extra in keys:
        mask = (comps["variant"] == variant) & (comps["backend"] == backend) & match(comps, extra_cols, extra)
        s = comps[mask & comps["speedup"].notna()].sort_values(xcol)
        if s.empty:
            continue
        style = styler(variant, backend, extra)
        x = s[xcol].to_numpy(float)
        ax.plot(x, s["speedup"].to_numpy(float), label=legend_name(variant, backend, extra, plan), **style)
        lo, hi = s["speedup_ci_low"].to_numpy(float), s["speedup_ci_high"].to_numpy(float)
        if np.isfinite(lo).all() and np.isfinite(hi).all():
            ax.fill_between(x, lo, hi, color=style["color"], alpha=0.15, linewidth=0)
        ideal = s["flop_ideal_speedup"].to_numpy(float)
        if np.isfinite(ideal).any() and (variant, extra) not in ideal_done:
            ideal_done.add((variant, extra))  # the FLOP ratio is the same whichever backend ran
            ax.plot(x, ideal, color=style["color"], linestyle=":", linewidth=1.2, marker=None,
                    label=mpl_text(f"FLOP-ideal ({variant})"))
        drew = True
    return drew


def speedup_vs_x(comps: pd.DataFrame, plan: AxisPlan, refs: list[str], keys: list[Any], styler: Styler) -> Plot:
    title = "Speedup of reuse over each baseline"
    caption = ("Baseline time ÷ reuse time (above 1×: reuse is faster), with its 95% CI as a band where there is one "
               "(the note under each verdict table says how they were made). "
               "The dotted line is the FLOP-ideal speedup (baseline FLOPs ÷ reuse FLOPs): what reuse would "
               "give if time followed FLOPs. Left: against the eager baseline; right: against the fused "
               "(SDPA) baseline, the one a real deployment would use.")
    if plan.x is None:
        return Plot("speedup", title, caption, note="Only one sequence length and batch size were measured; "
                    "the verdict table above gives the speedups.")
    if comps.empty:
        return Plot("speedup", title, caption, note="No reuse result has a baseline at the same point.")
    facets = [(d, m, ref) for d, m in plan.facets for ref in refs]

    def draw(ax: Axes, facet: tuple[str, str, str]) -> bool:
        device, mode, ref = facet
        sub = comps[(comps["device"] == device) & (comps["mode"] == mode) & (comps["reference_backend"] == ref)]
        ax.set_title(facet_title(device, mode, f"vs {ref} baseline"))
        ax.set_xlabel(plan.x_label)
        ax.set_ylabel("speedup")
        if sub.empty:
            ax.text(0.5, 0.5, mpl_text(f"no {ref} baseline measured"), transform=ax.transAxes, ha="center")
            return False
        drew = _speedup_lines(ax, sub, plan.x, keys, styler, plan, plan.extra)
        ratio_axis(ax)
        log_x(ax, plan.x_values)
        return drew

    svg = faceted("speedup", facets, draw, title)
    return Plot("speedup", title, caption, svg=svg, note=None if svg else "No speedup could be computed.")


def speedup_vs_ratio(comps: pd.DataFrame, plan: AxisPlan, refs: list[str], variant_order: list[str]) -> Plot:
    title = "Speedup vs reuse ratio"
    caption = ("How the speedup grows with the fraction of heads reused, against each baseline; dotted: "
               "the FLOP-ideal speedup. Ratio 0 reuses nothing and should sit at 1× against the same backend.")
    if not plan.ratio_swept:
        return Plot("speedup-ratio", title, caption, note="The reuse ratio does not vary in this run.")
    extra = tuple(c for c in (plan.x, *plan.extra) if c and c != "reuse_ratio")
    keys = series_keys(comps, extra, variant_order)
    styler = Styler(keys, variant_order)
    ratio_plan = AxisPlan(x="reuse_ratio", x_values=(), extra=extra, ratio_swept=True, facets=plan.facets)
    facets = [(d, m, ref) for d, m in plan.facets for ref in refs]

    def draw(ax: Axes, facet: tuple[str, str, str]) -> bool:
        device, mode, ref = facet
        sub = comps[(comps["device"] == device) & (comps["mode"] == mode) & (comps["reference_backend"] == ref)]
        ax.set_title(facet_title(device, mode, f"vs {ref} baseline"))
        ax.set_xlabel("reuse ratio K/H")
        ax.set_ylabel("speedup")
        if sub.empty:
            ax.text(0.5, 0.5, mpl_text(f"no {ref} baseline measured"), transform=ax.transAxes, ha="center")
            return False
        drew = _speedup_lines(ax, sub, "reuse_ratio", keys, styler, ratio_plan, extra)
        ratio_axis(ax)
        return drew

    svg = faceted("speedup-ratio", facets, draw, title)
    return Plot("speedup-ratio", title, caption, svg=svg, note=None if svg else "No speedup could be computed.")


# ---- FLOPs by component ----------------------------------------------------------------------


def _components(rows: pd.DataFrame) -> list[str]:
    from harness.report.context import cost_constant

    components = cost_constant("COMPONENTS")
    order = [str(c) for c in components] if isinstance(components, (list, tuple)) else []
    seen = {k for d in rows["flops_by_component"] if isinstance(d, dict) for k in d}
    return [c for c in order if c in seen] + sorted(seen - set(order))


def flops_by_component(ok: pd.DataFrame, plan: AxisPlan, keys: list[Any]) -> Plot:
    title = "FLOPs by component"
    caption = ("Analytic FLOPs of one step, stacked by where they are spent, at the smallest and largest "
               "swept size: reuse removes Q/K projections and QKᵀ for reused heads but still pays P·V.")
    rows = having(ok, "flops_by_component", lambda d: isinstance(d, dict) and bool(d))
    if rows.empty:
        return Plot("flops", title, caption, note="This run recorded no per-component FLOP counts.")
    comps = _components(rows)
    colours = {c: COMPONENT_COLOURS[i % len(COMPONENT_COLOURS)] for i, c in enumerate(comps)}
    sizes = [min(plan.x_values), max(plan.x_values)] if plan.x else [None]
    facets = [(mode, size) for mode in sorted(set(rows["mode"])) for size in sizes]

    def draw(ax: Axes, facet: tuple[str, Any]) -> bool:
        mode, size = facet
        sub = rows[rows["mode"] == mode]
        if size is not None:
            sub = sub[sub[plan.x].map(num) == size]
        bars = [(k, sub[(sub["variant"] == k[0]) & (sub["backend"] == k[1])]) for k in keys]
        bars = [(k, b.iloc[0]["flops_by_component"]) for k, b in bars if not b.empty]
        if not bars:
            return False
        labels = [legend_name(*k, plan) for k, _ in bars]
        ax.set_axisbelow(True)
        bottom = np.zeros(len(bars))
        for comp in comps:
            vals = np.array([num(d.get(comp)) / 1e9 for _, d in bars])
            vals = np.nan_to_num(vals)
            ax.bar(range(len(bars)), vals, bottom=bottom, color=colours[comp], label=mpl_text(comp), width=0.65)
            bottom += vals
        ax.set_xticks(range(len(bars)), labels, rotation=20, ha="right")
        ax.set_ylabel("GFLOP per step")
        where = f"{plan.x_label.split(' ')[-1]}={fmt_axis_value(plan.x, size)}" if size is not None else ""
        ax.set_title(mpl_text(" · ".join(p for p in (mode, where) if p)))
        return True

    svg = faceted("flops", facets, draw, title, row_height=3.0, bottom_extra=0.45)
    return Plot("flops", title, caption, svg=svg, note=None if svg else "No FLOP breakdown to draw.")


# ---- raw timing samples ----------------------------------------------------------------------


def timing_noise(ok: pd.DataFrame, plan: AxisPlan, keys: list[Any], styler: Styler) -> Plot:
    title = "Timing noise: every timed step"
    caption = ("Each dot is one timed step, as its deviation from that point's median; boxes span the "
               "quartiles. Wide spreads mean the speedups at those points are less certain.")
    has = ok["time_ms_samples"].map(lambda v: samples_of(v).size > 0)
    rows = ok[has]
    if rows.empty:
        return Plot("noise", title, caption, note="This run stored no raw timing samples.")
    xs = list(plan.x_values) if plan.x else [None]
    rng = np.random.default_rng(0)  # fixed jitter: the same report bytes for the same data
    per_box = max(12, min(MAX_SAMPLES_SHOWN, MAX_DOTS_SHOWN // len(rows)))
    xv_known = xs != [None]

    def draw(ax: Axes, facet: tuple[str, str]) -> bool:
        sub = rows[(rows["device"] == facet[0]) & (rows["mode"] == facet[1])]
        width = 0.8 / max(len(keys), 1)
        drew = False
        for j, (variant, backend, extra) in enumerate(keys):
            style = styler(variant, backend, extra)
            series = sub[(sub["variant"] == variant) & (sub["backend"] == backend) & match(sub, plan.extra, extra)]
            at = series[plan.x].map(num) if xv_known else None
            boxes, positions = [], []
            for i, xv in enumerate(xs):
                for value in (series if at is None else series[at == xv])["time_ms_samples"]:
                    s = samples_of(value)
                    if s.size == 0 or np.median(s) <= 0:
                        continue
                    if s.size > per_box:  # evenly thinned, deterministic
                        s = s[np.linspace(0, s.size - 1, per_box).round().astype(int)]
                    boxes.append((s / np.median(s) - 1.0) * 100.0)
                    positions.append(i - 0.4 + width * (j + 0.5))
            if not boxes:
                continue
            # One box plot and one scatter per series (not per box: a sweep has hundreds). Box
            # outline in the series colour and line style, dots in its marker: the eager and sdpa
            # boxes of one variant share a colour but not a look.
            line = {"color": style["color"], "linewidth": 0.8, "linestyle": style["linestyle"]}
            ax.boxplot(boxes, positions=positions, widths=width * 0.8, showfliers=False, manage_ticks=False,
                       medianprops={"color": style["color"], "linewidth": 1.4}, whiskerprops=line,
                       capprops=line, boxprops=line)
            dots_x = np.concatenate([p + rng.uniform(-width * 0.3, width * 0.3, d.size)
                                     for p, d in zip(positions, boxes)])
            ax.scatter(dots_x, np.concatenate(boxes), s=6, color=style["color"], marker=style["marker"], alpha=0.55,
                       linewidths=0, label=legend_name(variant, backend, extra, plan))
            drew = True
        ax.set_xticks(range(len(xs)), [fmt_axis_value(plan.x, v) if v is not None else "" for v in xs])
        ax.set_xlim(-0.5, len(xs) - 0.5)
        ax.set_xlabel(plan.x_label if plan.x else "")
        ax.set_ylabel("deviation from median (%)")
        ax.set_title(facet_title(*facet))
        return drew

    svg = faceted("noise", list(plan.facets), draw, title)
    return Plot("noise", title, caption, svg=svg, note=None if svg else "No samples to draw.")
