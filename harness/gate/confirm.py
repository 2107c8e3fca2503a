"""Re-measure before failing: a timing regression must reproduce in a fresh measurement.

On a shared machine the load can change between the baseline and the reuse variant of one worker
(seconds apart), or during a whole worker, and shift every sample of it at once: the samples then
agree with each other, the change looks significant, and no statistic computed from that one
measurement can tell it from a real regression. A second, independent measurement can: a load
burst does not come back at the same point in the same direction, a slower code path does. So
before the gate fails on a timing check, the points behind the failing checks are measured again
(the stored-baseline gate: the candidate's suite with this checkout's code; the A/B gate: both
sides, interleaved again) and a check fails only if it regresses every time. Exact checks (FLOPs,
parameters), memory and missing points are deterministic and need no confirmation.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from harness.results.load import Run, load_run
from harness.compare.runs import Check, Comparison, compare_runs
from harness.compare.policy import METRIC_KINDS
from harness.gate.table import percent
from harness.compare.verdict import Verdict

# Measures the points holding these point_ids again; returns (baseline run, candidate run).
Remeasure = Callable[[set[str]], tuple[Run, Run]]


def suspects(comparison: Comparison) -> list[Check]:
    return [c for c in comparison.failing() if METRIC_KINDS.get(c.metric) == "statistical"]


def point_ids(checks: list[Check]) -> set[str]:
    """Every row a check was computed from: the row itself and, for ratios, its reference."""
    ids = {c.point_id for c in checks}
    ids |= {c.fields["reference_point_id"] for c in checks if c.fields.get("reference_point_id")}
    return ids


def confirm(comparison: Comparison, remeasure: Remeasure, attempts: int) -> Comparison:
    """Downgrade timing regressions that do not reproduce to "too noisy"; returns `comparison`."""
    for attempt in range(1, attempts + 1):
        pending = [c for c in suspects(comparison) if "not reproduced" not in c.note]
        if not pending:
            break
        base, cand = remeasure(point_ids(pending))
        again = compare_runs(base, cand, comparison.policy, comparison.context)
        comparison.confirmations.append(cand.path)
        found = {(c.metric, c.point_id, c.variant): c for c in again.checks}
        for check in pending:
            other = found.get((check.metric, check.point_id, check.variant))
            seen = f"{other.verdict}, {percent(other.change)}" if other else "not measured"
            if other is not None and other.verdict == Verdict.REGRESSED:
                check.note = _join(check.note, f"reproduced on re-measurement {attempt} ({seen})")
            else:
                check.note = _join(check.note, f"{percent(check.change)} here, not reproduced on "
                                               f"re-measurement {attempt} ({seen})")
                check.verdict = Verdict.NOISY
    return comparison


def _join(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more


# ---- re-measuring for the stored-baseline gate -------------------------------------------------
def stored_remeasure(base: Run, cand: Run) -> tuple[Remeasure | None, str]:
    """A Remeasure running the candidate's suite with this checkout, if this checkout made it.

    Re-measuring with other code than the candidate's would confirm nothing, so the candidate's
    manifest must name this checkout's commit. Returns (None, why) otherwise.
    """
    commit = (cand.manifest.get("environment") or {}).get("git_commit")
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    if not commit or commit != head:
        return None, (f"candidate run is of commit {str(commit)[:10]}, this checkout is {head[:10] or 'not git'}: "
                      "timing regressions not re-measured")

    def remeasure(ids: set[str]) -> tuple[Run, Run]:
        return base, load_run(measure_points(cand, ids))

    return remeasure, ""


def measure_points(cand: Run, ids: set[str]) -> Path:
    """Run the points of the candidate's suite that hold `ids` again, into a sibling run directory."""
    from harness.measure.devices import get_device
    from harness.run.environment import environment
    from harness.run.executor import LocalProcessExecutor
    from harness.run.runner import points
    from harness.results.store import FORMAT_VERSION, RunDir, now_iso
    from harness.suite.loading import Suite
    from harness.suite.sweep import expand
    from harness.run.worker import base_row

    suite = Suite.from_json(cand.manifest["suite"])
    groups = [point for point in points(expand(suite)) if any(t.point_id in ids for t in point)]
    run = RunDir.create(cand.path.parent, f"{suite.slug}-confirm")
    run.write_manifest({
        "format_version": FORMAT_VERSION, "run_id": run.path.name, "suite": suite.to_json(),
        "suite_path": suite.path, "environment": environment(suite.measure.threads), "profile": None,
        "n_tasks": sum(len(p) for p in groups), "started_at": now_iso(), "finished_at": None,
        "status": "running", "confirms": cand.run_id,
    })
    executor = LocalProcessExecutor()
    for point in groups:
        reason = get_device(point[0].device).availability()
        rows = ([{**base_row(t), "status": "skipped", "error": reason} for t in point] if reason
                else executor.run(point, point[0].measure.timeout))
        for row in rows:
            run.append(row)
    run.update_manifest(status="complete", finished_at=now_iso())
    return run.path
