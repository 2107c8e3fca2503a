"""Profiling section: links to the stored profiles and the hottest operators, baseline and reuse
side by side at the same point.

Artifacts live in the run directory; links are made relative to wherever the report is written
(`-o elsewhere.html` included), and percent-encoded so a stored value can only ever be a path.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from harness.compare import fmt
from harness.report.frame import AxisPlan, finite, num, point_label

# Row keys that name profile files. The runner stores py-spy's outputs under the names its
# postprocess step returns (*_path); older rows and the brief use pyspy_*.
ARTIFACT_KEYS: tuple[tuple[str, str], ...] = (
    ("pyspy_flamegraph", "flame graph (py-spy)"), ("flamegraph_path", "flame graph (py-spy)"),
    ("pyspy_speedscope", "speedscope profile"), ("speedscope_path", "speedscope profile"),
    ("collapsed_path", "collapsed stacks"), ("torch_trace", "torch trace (Perfetto / chrome://tracing)"),
)
TOP_FUNCTION_KEYS: tuple[str, ...] = ("pyspy_top_functions",)


def artifact_href(value: Any, run_dir: Path, out_dir: Path) -> str | None:
    """A relative link from the report to an artifact stored with the run.

    Percent-encoding the path keeps a hostile value ('javascript:...') a harmless relative path.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    target = Path(value) if os.path.isabs(value) else run_dir / value
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return quote(Path(rel).as_posix(), safe="/._-~")


def _by_name(value: Any, name_key: str) -> dict[str, dict[str, Any]]:
    if not isinstance(value, list):
        return {}
    return {str(op.get(name_key)): op for op in value if isinstance(op, dict) and op.get(name_key) is not None}


def _number(op: dict[str, Any] | None, key: str) -> float:
    v = num((op or {}).get(key))
    return 0.0 if math.isnan(v) else v


def _side_by_side(tables: list[dict[str, dict[str, Any]]], sort_key: str, top: int) -> list[str]:
    """The `top` names with the largest value in any column (what dominates either side)."""
    names = {n for t in tables for n in t}
    return sorted(names, key=lambda n: (-max(_number(t.get(n), sort_key) for t in tables), n))[:top]


def _has_profile(row: pd.Series) -> bool:
    if any(isinstance(row.get(k), list) and row.get(k) for k in ("top_ops", *TOP_FUNCTION_KEYS)):
        return True
    return any(isinstance(row.get(k), str) and row.get(k) for k, _ in ARTIFACT_KEYS) or bool(row.get("profile_note"))


def profiling(df: pd.DataFrame, run_dir: Path, out_dir: Path, plan: AxisPlan, top: int = 10) -> list[dict[str, Any]]:
    """Per (device, mode, backend, point): links for each series, then top ops side by side."""
    rows = df[[_has_profile(r) for _, r in df.iterrows()]] if len(df) else df
    if rows.empty:
        return []
    label_cols = list(dict.fromkeys(c for c in (plan.x, *plan.extra, "seq_len", "batch_size") if c))
    groups = []
    for (device, mode, backend), g in rows.groupby(["device", "mode", "backend"], sort=True):
        for _, pg in g.groupby([g[c].map(num).fillna(-1) for c in label_cols], sort=True):
            series = [str(s) for s in pg["series"]]
            links = []
            for s, (_, r) in zip(series, pg.iterrows()):
                seen: set[str] = set()
                items = []
                for key, label in ARTIFACT_KEYS:
                    href = artifact_href(r.get(key), run_dir, out_dir)
                    if href and href not in seen:
                        seen.add(href)
                        items.append({"label": label, "href": href})
                note = r.get("profile_note")
                links.append({"series": s, "links": items, "note": str(note) if isinstance(note, str) else ""})
            ops = [_by_name(v, "name") for v in pg["top_ops"]]
            names = _side_by_side(ops, "self_cpu_ms", top)
            funcs = [_by_name(next((r.get(k) for k in TOP_FUNCTION_KEYS if isinstance(r.get(k), list)), None),
                              "function") for _, r in pg.iterrows()]
            fnames = _side_by_side(funcs, "self_pct", top)
            groups.append({
                "title": f"{device} · {mode} · {backend} · {point_label(pg.iloc[0], label_cols)}",
                "series": series, "links": links,
                "device_col": any(finite((o.get(n) or {}).get("self_device_ms")) for o in ops for n in names),
                "ops": [{"name": n, "cpu": [fmt.ms((o.get(n) or {}).get("self_cpu_ms")) for o in ops],
                         "device": [fmt.ms((o.get(n) or {}).get("self_device_ms")) for o in ops]} for n in names],
                "functions": [{"name": n, "pct": [_pct((f.get(n) or {}).get("self_pct")) for f in funcs]}
                              for n in fnames],
            })
    return groups


def _pct(value: float | None) -> str:
    """py-spy shares arrive in percent already (16.4 means 16.4%)."""
    return fmt.percent(None if value is None else value / 100, digits=1)
