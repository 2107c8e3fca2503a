"""The report's attention-redundancy section: how alike the attention of a model's layers is,
trained beside initialisation, and beside the accuracy reuse loses at each ratio.

Fed only from the rows' `redundancy` values (written by harness/measure/redundancy.py: per state a
`summary` with the layer matrix, similarity by layer distance and the similarity of the K best
one-to-one head matches). Models that reuse nothing are analysed; a reusing model's reused heads
equal its donor's by construction, so its own matrix would mostly restate its config.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from harness.compare import fmt
from harness.report.frame import having, num, point_label
from harness.report.plotkit import Plot, faceted
from harness.report.svg import PALETTE, mpl_text

# The states a model is measured in, in display order, and how a sentence names each.
STATES: dict[str, str] = {"trained": "after training", "init": "at initialisation", "as_built": "as built"}
STATE_STYLE: dict[str, dict[str, Any]] = {"trained": {"color": PALETTE[0], "linestyle": "-", "marker": "o"},
                                          "init": {"color": "#888888", "linestyle": "--", "marker": "s"},
                                          "as_built": {"color": PALETTE[1], "linestyle": "-", "marker": "^"}}
ANNOTATE_UP_TO = 8   # layers; past this the numbers in the heatmap cells would not fit
DEFINITION = ("Similarity of two heads: 1 − the mean over queries of the total variation distance between their "
              "attention rows (1: identical distributions, 0: disjoint). Padding queries, and under a causal mask the "
              "first query (one key, so the same row in every head), are not counted. Layer × layer entry [l, s]: the "
              "mean over layer l's heads of the similarity of its best-matching head in layer s.")


@dataclass(frozen=True)
class Subject:
    """One analysed model: a row that reuses nothing, with its per-state summaries."""

    label: str
    task: str | None
    summary: dict[str, dict[str, Any]]   # state -> harness.measure.similarity.summarize(...)
    accuracy: float
    n_heads: int
    inputs: str


def subjects(ok: pd.DataFrame) -> list[Subject]:
    if "redundancy" not in ok:
        return []
    rows = having(ok, "redundancy", lambda v: isinstance(v, dict) and bool(v.get("summary")))
    rows = rows[~rows["is_reuse"].astype(bool)]
    several = rows["variant"].nunique() > 1
    out = []
    for _, r in rows.iterrows():
        task = r["task"] if isinstance(r["task"], str) else None
        where = task or point_label(r, ("seq_len", "batch_size"))
        label = f"{where} · {r['variant']}" if several or task is None else where
        out.append(Subject(label, task, r["redundancy"]["summary"], num(r["accuracy_mean"]),
                           int(r["model_config"].get("n_heads", 0)) if isinstance(r["model_config"], dict) else 0,
                           str(r["redundancy"].get("inputs", {}).get("source", ""))))
    return out


def _distances(summary: dict[str, Any]) -> dict[int, float]:
    return {int(d): float(v) for d, v in summary["by_distance"].items()}


def _main_state(s: Subject) -> str:
    return "trained" if "trained" in s.summary else next(iter(s.summary))


# ---- plots -------------------------------------------------------------------------------------
def layer_heatmaps(subs: list[Subject]) -> Plot:
    title = "Layer × layer attention similarity"
    caption = ("Row l, column s: the mean over layer l's heads of the similarity of its best-matching head in layer "
               "s. Each model after training beside the same architecture at its random initialisation (the control), "
               "whose attention rows are close to uniform: its heads agree without having learned anything.")
    facets = [(s, state) for s in subs for state in STATES if state in s.summary]

    def draw(ax: Axes, facet: tuple[Subject, str]) -> bool:
        s, state = facet
        m = np.array(s.summary[state]["layers"], dtype=float)
        ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.grid(False)
        n = len(m)
        if n <= ANNOTATE_UP_TO:
            for (l, c), v in np.ndenumerate(m):
                ax.text(c, l, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 else "black")
        ax.set_xticks(range(n))
        ax.set_yticks(range(n))
        ax.set_xlabel("layer s (best match sought in)")
        ax.set_ylabel("layer l (its heads)")
        ax.set_title(mpl_text(f"{s.label} · {STATES[state]}"))
        return True

    svg = faceted("redundancy-layers", facets, draw, title, row_height=3.4)
    return Plot("redundancy-layers", title, caption, svg=svg)


def similarity_vs_distance(subs: list[Subject]) -> Plot:
    title = "Attention similarity vs layer distance"
    caption = ("Mean of the layer × layer entries [l, s] with |l − s| = distance: do nearby layers attend alike? "
               "Solid: after training; dashed grey: at initialisation.")

    def draw(ax: Axes, s: Subject) -> bool:
        for state in (st for st in STATES if st in s.summary):
            dist = _distances(s.summary[state])
            if dist:
                ax.plot(list(dist), list(dist.values()), label=STATES[state], **STATE_STYLE[state])
        ax.set_xticks(sorted({d for st in s.summary.values() for d in _distances(st)}))
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("layer distance |l − s|")
        ax.set_ylabel("similarity")
        ax.set_title(mpl_text(s.label))
        return any(_distances(st) for st in s.summary.values())

    svg = faceted("redundancy-distance", subs, draw, title)
    return Plot("redundancy-distance", title, caption, svg=svg,
                note=None if svg else "Every analysed model has a single layer: there is no distance to plot.")


# ---- sentences ---------------------------------------------------------------------------------
def _at(dist: dict[int, float]) -> str:
    return "; ".join(f"{v:.2f} at distance {d}" for d, v in sorted(dist.items()))


def adjacency_finding(s: Subject) -> str:
    """Whether adjacent layers are the most similar, as found, with the control beside it."""
    state = _main_state(s)
    dist = _distances(s.summary[state])
    if len(dist) < 2:
        return f"{s.label}: fewer than three layers, so adjacent layers have no farther layers to be compared with."
    farther = max(v for d, v in dist.items() if d > 1)
    verdict = "are" if dist[1] > farther else "are not"
    text = f"{s.label}: adjacent layers {verdict} the most similar {STATES[state]} (mean similarity {_at(dist)})."
    if state == "trained" and "init" in s.summary:
        init = _distances(s.summary["init"])
        moved = "lowered" if _overall(s.summary["trained"]) < _overall(s.summary["init"]) else "raised"
        text += (f" At initialisation: {_at(init)}; training {moved} the mean similarity between layers from "
                 f"{_overall(s.summary['init']):.2f} to {_overall(s.summary['trained']):.2f}.")
    return text


def _overall(summary: dict[str, Any]) -> float:
    m = summary["layers"]
    return statistics.fmean(m[l][c] for l in range(len(m)) for c in range(len(m)) if l != c)


# ---- beside the accuracy reuse loses ------------------------------------------------------------
def beside_accuracy(subs: list[Subject], ok: pd.DataFrame) -> list[dict[str, Any]]:
    """Per task and reuse ratio: how alike the K heads reuse would take are to the baseline's own
    (its K best one-to-one matches with the donor layer), beside reuse's accuracy change."""
    out = []
    reuse = ok[ok["is_reuse"].astype(bool) & ok["accuracy_mean"].map(math.isfinite)
               & ok["reuse_ratio"].map(math.isfinite)]
    for s in subs:
        if s.task is None or "trained" not in s.summary or not s.n_heads:
            continue
        for _, r in reuse[reuse["task"] == s.task].sort_values("reuse_ratio").iterrows():
            k = int(round(num(r["reuse_ratio"]) * s.n_heads))
            donor = r["reuse_source"] if r["reuse_source"] in s.summary["trained"]["picked"] else "previous"
            per_layer = s.summary["trained"]["picked_by_layer"][donor]
            out.append({
                "task": s.task, "ratio": fmt.plain(num(r["reuse_ratio"])), "k": k, "donor": donor,
                "trained": _kth(s.summary["trained"]["picked"][donor], k),
                "init": _kth(s.summary["init"]["picked"][donor], k) if "init" in s.summary else math.nan,
                "by_layer": " · ".join(f"layer {l}: {_kth(v, k):.2f}" for l, v in per_layer.items()),
                "delta": num(r["accuracy_mean"]) - s.accuracy,
            })
    return out


def _kth(picked: list[float], k: int) -> float:
    return float(picked[k - 1]) if 1 <= k <= len(picked) else math.nan


def full_reuse_findings(pairs: list[dict[str, Any]]) -> list[str]:
    """At the largest ratio of each task: the similarity of what reuse replaces, beside the loss;
    then which task has the lowest similarity and which loses most, as found."""
    last = {p["task"]: p for p in pairs}   # pairs are sorted by ratio within a task
    out = [f"{t}, ratio {p['ratio']} (K = {p['k']}): the {p['k']} heads reuse takes from the {p['donor']} layer "
           f"match the trained baseline's own at {p['trained']:.2f} ({p['by_layer']}; {p['init']:.2f} at "
           f"initialisation); reuse changes accuracy by {fmt.points(p['delta'])}."
           for t, p in last.items()]
    if len(last) > 1:
        lowest = min(last.values(), key=lambda p: p["trained"])
        worst = min(last.values(), key=lambda p: p["delta"])
        same = "the same task" if lowest is worst else "a different task"
        out.append(f"At the largest ratio, the lowest similarity is on {lowest['task']} ({lowest['trained']:.2f}) "
                   f"and the largest accuracy loss on {worst['task']} ({fmt.points(worst['delta'])}): {same}.")
    return out


def section(ok: pd.DataFrame) -> dict[str, Any] | None:
    """The template's `redundancy` block, or None when no row measured redundancy."""
    subs = subjects(ok)
    if not subs:
        return None
    pairs = beside_accuracy(subs, ok)
    table = [{**p, "trained": f"{p['trained']:.2f}", "init": fmt.plain(round(p["init"], 2)),
              "delta": fmt.points(p["delta"])} for p in pairs]
    return {
        "definition": DEFINITION,
        "inputs": sorted({s.inputs for s in subs if s.inputs}),
        "findings": [adjacency_finding(s) for s in subs] + full_reuse_findings(pairs),
        "plots": [layer_heatmaps(subs), similarity_vs_distance(subs)],
        "table": table,
    }
