"""What the single-run report says, as plain dicts for the template: header, machines, failures,
settings. Plots live in plots*.py, sentences in takeaways.py, the verdict tables in verdicts.py,
the data table in table.py.

Everything here reads the stored run only (manifest + results), never the live machine: a
report rebuilt next year from the same directory says the same thing.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from harness.compare import fmt
from harness.compare.within import PREFERRED_BACKENDS
from harness.report.frame import machine_label, point_label
from harness.results.machines import node_environments


def reference_backends(df: pd.DataFrame) -> list[str]:
    """eager and sdpa always (a missing one is shown as missing), then any other baseline backend."""
    present = set(df.loc[(df["model"] == "baseline") & (df["status"] == "ok"), "backend"])
    return [*PREFERRED_BACKENDS, *sorted(present - set(PREFERRED_BACKENDS))]


# ---- header ----------------------------------------------------------------------------------


def _when(stamp: Any) -> str:
    if not stamp:
        return fmt.DASH
    try:
        t = datetime.fromisoformat(str(stamp))
    except ValueError:
        return str(stamp)
    zone = t.strftime("%Z") or ""
    return t.strftime("%Y-%m-%d %H:%M") + (f" {zone}" if zone else "")


def _duration(start: Any, end: Any) -> str:
    try:
        seconds = (datetime.fromisoformat(str(end)) - datetime.fromisoformat(str(start))).total_seconds()
    except (TypeError, ValueError):
        return fmt.DASH
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec} s" if minutes else f"{sec} s"


def _gpu(env: dict[str, Any]) -> str:
    gpu = env.get("gpu")
    if not gpu:
        return "none"
    if not isinstance(gpu, dict):
        return str(gpu)
    extras = [f"driver {gpu['driver']}" if gpu.get("driver") else "", f"CUDA {gpu['cuda']}" if gpu.get("cuda") else ""]
    extras = [e for e in extras if e]
    count = f"{gpu['count']}× " if isinstance(gpu.get("count"), int) and gpu["count"] > 1 else ""
    return f"{count}{gpu.get('name', '?')}" + (f" ({', '.join(extras)})" if extras else "")


def header(manifest: dict[str, Any], df: pd.DataFrame, damaged: Sequence[str] = ()) -> dict[str, Any]:
    """`damaged`: the `file:line: why` of each results line that was not a row (Run.damaged)."""
    suite = manifest.get("suite") or {}
    env = manifest.get("environment") or {}
    status = str(manifest.get("status") or "unknown")
    counts = {s: int((df["status"] == s).sum()) for s in ("ok", "failed", "skipped")}
    expected = manifest.get("n_tasks")
    alerts: list[dict[str, str]] = []
    if status != "complete" or not manifest.get("finished_at"):
        recorded = f"{len(df)} of {expected}" if isinstance(expected, int) else str(len(df))
        why = {"interrupted": "was interrupted", "running": "had not finished when this report was made "
               "(still running, or killed without a chance to record it)"}.get(status, f"ended with status '{status}'")
        alerts.append({"level": "bad", "kind": "cut", "text": f"This run was cut short: it {why}. {recorded} (point, variant) "
                       "results were recorded; conclusions below cover only those."})
    if counts["failed"]:
        alerts.append({"level": "bad", "kind": "failed", "text": f"{counts['failed']} (point, variant) measurement(s) failed; "
                       "see Failures and skips for the reasons."})
    if counts["skipped"]:
        alerts.append({"level": "info", "kind": "skipped", "text": f"{counts['skipped']} (point, variant) measurement(s) were skipped "
                       "(for example a device this machine does not have); see Failures and skips."})
    if damaged:  # rows may be missing where those lines were: say so above every conclusion
        alerts.append({"level": "bad", "kind": "damaged", "text": f"{len(damaged)} line(s) of the results file are "
                       f"not result rows and were skipped: {'; '.join(damaged)}. `harness repair RUN` moves them "
                       "aside, keeping them."})
    warned = sorted({str(w) for w in df.get("flops_warning", pd.Series(dtype=object)) if isinstance(w, str) and w})
    if warned:  # a product the counter has no formula for counted 0: counted FLOPs are too low there
        alerts.append({"level": "warn", "kind": "flops", "text": "Counted FLOPs are incomplete at some points: "
                       + "; ".join(warned) + ". Efficiency there uses the analytic count."})
    if counts["ok"] == 0:
        alerts.append({"level": "bad", "kind": "empty", "text": "No measurement succeeded: there is nothing to compare."})
    if env.get("git_dirty"):
        alerts.append({"level": "warn", "kind": "dirty", "text": "Measured from a working tree with uncommitted changes: the commit "
                       "below does not fully describe the code that ran."})
    commit = str(env.get("git_commit") or "not recorded")
    machine = [
        ("CPU", f"{env.get('cpu_model') or '?'} ({env.get('cpu_cores') or '?'} cores)"),
        ("GPU", _gpu(env)),
        ("Threads", fmt.plain(env.get("threads") if env.get("threads") is not None
                              else (suite.get("measure") or {}).get("threads"))),
        ("torch", fmt.plain(env.get("torch"))),
        ("Memory allocator", str(env.get("allocator") or "not recorded")),  # it moves CPU timings 15-25%
        ("Python / NumPy", f"{env.get('python') or '?'} / {env.get('numpy') or '?'}"),
        ("OS", fmt.plain(env.get("os"))),
        ("Host", fmt.plain(env.get("hostname"))),
    ]
    run = [
        ("Run", fmt.plain(manifest.get("run_id"))),
        ("Started", _when(manifest.get("started_at"))),
        ("Finished", _when(manifest.get("finished_at")) if manifest.get("finished_at") else "not finished"),
        ("Duration", _duration(manifest.get("started_at"), manifest.get("finished_at"))),
        ("Commit", commit[:12] + (" (uncommitted changes)" if env.get("git_dirty") else "")),
        ("Harness", fmt.plain(env.get("harness_version"))),
    ]
    return {
        "title": str(suite.get("name") or manifest.get("run_id") or "reuse-bench run"),
        "description": str(suite.get("description") or ""),
        "status": status, "complete": status == "complete" and bool(manifest.get("finished_at")),
        "counts": counts, "expected": expected if isinstance(expected, int) else None,
        "alerts": alerts, "machine": machine, "run": run, "date": _when(manifest.get("started_at")),
    }


# ---- machines ---------------------------------------------------------------------------------


def machines(manifest: dict[str, Any], df: pd.DataFrame) -> list[dict[str, Any]]:
    """Every machine a cluster run's rows were measured on, with its environment fingerprint.

    Nodes come from the manifest (each node's environment, harness.results.machines) and from the
    rows' `node`; a node the rows name but the manifest does not is listed as not recorded. Rows
    without a node, beside rows with one, were measured where the manifest's environment was
    taken. A run whose rows carry no node (a local run) has one machine, the header's: [].
    """
    recorded = node_environments(manifest)
    counts = df["node"].value_counts()
    names = list(dict.fromkeys([*map(str, recorded), *(n for n in df["node"] if n)]))
    if not names:
        return []
    entries = [(name, recorded.get(name)) for name in names]
    if counts.get("", 0):
        entries.append(("", manifest.get("environment")))
    out = []
    for name, env in entries:
        env = env if isinstance(env, dict) else {}
        out.append({"node": machine_label(name), "rows": int(counts.get(name, 0)),
                    "fingerprint": str(env.get("machine_fingerprint") or "not recorded"),
                    "host": fmt.plain(env.get("hostname")),
                    "cpu": f"{env.get('cpu_model') or '?'} ({env.get('cpu_cores') or '?'} cores)" if env else fmt.DASH,
                    "gpu": _gpu(env) if env else fmt.DASH, "threads": fmt.plain(env.get("threads")),
                    "torch": fmt.plain(env.get("torch")), "allocator": fmt.plain(env.get("allocator")),
                    "code": _code(env)})
    return out


def _code(env: dict[str, Any]) -> str:
    """The code a machine ran: its commit, or (a cluster node sent the driver's checkout, which
    has no .git) the digest of its sources and whether it is the driver's."""
    if env.get("git_commit"):
        return str(env["git_commit"])[:12] + (" (uncommitted changes)" if env.get("git_dirty") else "")
    if env.get("source_digest"):
        same = env.get("runs_driver_code")
        return f"sources {env['source_digest']}" + ("" if same is None else " (the driver's)" if same
                                                     else " (NOT the driver's)")
    return fmt.DASH


# ---- failures and skips ----------------------------------------------------------------------


def _where(row: pd.Series) -> str:
    parts = [row["device"], row["mode"], row["backend"], point_label(row, ("seq_len", "batch_size", "reuse_ratio"))]
    return " · ".join(p for p in parts if p and p != "?")


def failures(df: pd.DataFrame) -> dict[str, Any]:
    """Failed rows one by one (each error matters); skips grouped by reason (usually one cause)."""
    failed = [{"variant": r["variant"], "where": _where(r), "error": r["error"] or "no error message recorded"}
              for _, r in df[df["status"] == "failed"].iterrows()]
    skipped: dict[str, list[str]] = {}
    for _, r in df[df["status"] == "skipped"].iterrows():
        skipped.setdefault(r["error"] or "no reason recorded", []).append(f"{r['variant']} @ {_where(r)}")
    return {"failed": failed,
            "skipped": [{"reason": k, "count": len(v), "where": v} for k, v in skipped.items()]}


# ---- settings --------------------------------------------------------------------------------


def cost_constant(name: str) -> Any:
    """A literal constant of models.cost (FLOP_CONVENTION, COMPONENTS), or None.

    models.cost imports torch, which takes seconds; a report needs two literals from it. So unless
    torch is already loaded, read the literal from the module source; anything that is not a
    plain literal there falls back to a real import.
    """
    if "torch" not in sys.modules:
        try:
            spec = importlib.util.find_spec("models.cost")
            source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
            for node in ast.parse(source).body:
                # `NAME = ...` or, annotated, `NAME: tuple[str, ...] = ...` (COMPONENTS is written so)
                targets = node.targets if isinstance(node, ast.Assign) else \
                    [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    return ast.literal_eval(node.value)
        except (ImportError, OSError, SyntaxError, ValueError):
            pass
    try:
        return getattr(importlib.import_module("models.cost"), name, None)
    except Exception:  # an older or trimmed install: the caller says "not recorded"
        return None


def flop_convention(manifest: dict[str, Any]) -> tuple[str, str]:
    """(sentence, where it came from): the run's own record first, this harness's code second."""
    for holder in (manifest, manifest.get("environment") or {}, manifest.get("suite") or {}):
        if isinstance(holder.get("flop_convention"), str):
            return holder["flop_convention"], "recorded with the run"
    convention = cost_constant("FLOP_CONVENTION")
    if not isinstance(convention, str):
        return "not recorded", "neither the run nor this harness states it"
    return convention, "from this harness version (the run did not record it)"


def settings(manifest: dict[str, Any]) -> dict[str, Any]:
    suite = manifest.get("suite") or {}
    measure = suite.get("measure") or {}
    sweep = {k: v for k, v in (suite.get("sweep") or {}).items() if k not in ("zip", "exclude")}
    variants = []
    for label, spec in (suite.get("variants") or {}).items():
        spec = spec if isinstance(spec, dict) else {}
        overrides = spec.get("overrides") if isinstance(spec.get("overrides"), dict) else \
            {k: v for k, v in spec.items() if k != "model"}
        variants.append({"label": str(label), "model": fmt.plain(spec.get("model")),
                         "overrides": ", ".join(f"{k}={fmt.plain(v)}" for k, v in overrides.items()) or "none"})
    convention, source = flop_convention(manifest)
    return {
        "measure": [(str(k), fmt.plain(v)) for k, v in measure.items()],
        "other": [("metrics", ", ".join(map(str, suite.get("metrics") or [])) or fmt.DASH),
                  ("seed", fmt.plain(suite.get("seed"))), ("profile", fmt.plain(manifest.get("profile")))],
        "model": [(str(k), fmt.plain(v)) for k, v in (suite.get("model") or {}).items()],
        "sweep": [(str(k), ", ".join(fmt.plain(x) for x in v) if isinstance(v, list) else fmt.plain(v))
                  for k, v in sweep.items()],
        "variants": variants,
        "accuracy": [(str(k), fmt.plain(v) if not isinstance(v, (list, dict)) else str(v))
                     for k, v in (suite.get("accuracy") or {}).items()],
        "flop_convention": convention, "flop_source": source,
    }
