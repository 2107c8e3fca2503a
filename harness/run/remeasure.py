"""Measure some points of a stored run again, for the gate's confirmation (harness.gate.confirm).

The stored-baseline gate re-measures the candidate's suite with this checkout's code, each time
into a fresh sibling run directory (`SUITE-confirm-…`, manifest `confirms: CAND_RUN_ID`), which is
an ordinary run: reportable, exportable, written under its writer lock.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Callable

from harness.results.load import Run, load_run
from harness.results.lock import writer_lock
from harness.results.store import RunDir
from harness.run.environment import environment
from harness.run.forkserver import ForkServerExecutor
from harness.run.rounds import measure_point
from harness.run.runner import points
from harness.suite.loading import Suite
from harness.suite.sweep import expand

# Measures the points holding these point_ids again; returns (baseline run, candidate run).
Remeasure = Callable[[set[str]], tuple[Run, Run]]


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
    suite = Suite.from_json(cand.manifest["suite"])
    groups = [point for point in points(expand(suite)) if any(t.point_id in ids for t in point)]
    run = RunDir.create(cand.path.parent, f"{suite.slug}-confirm")
    with writer_lock(run.path), ForkServerExecutor() as executor:
        run.new_manifest(suite, environment(suite.measure.threads), sum(len(p) for p in groups),
                         confirms=cand.run_id)
        for index, point in enumerate(groups):
            m = point[0].measure
            for row in measure_point([(executor, t) for t in point], m.rounds, m.pairing, index):
                run.append(row)
        run.finish("complete")
    return run.path
