"""Measure some points of a stored run again, for the gate's confirmation (harness.gate.confirm).

The stored-baseline gate re-measures the candidate's suite with this checkout's code (and the
baseline's, when that run is of this checkout's commit too), each time into a fresh sibling run
directory (`SUITE-confirm-…`, manifest `confirms: CAND_RUN_ID`), which is
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
from harness.run.points import points
from harness.run.rounds import measure_tasks
from harness.suite.loading import Suite
from harness.suite.sweep import expand

# Measures the points holding these point_ids again; returns (baseline run, candidate run).
Remeasure = Callable[[set[str]], tuple[Run, Run]]


def stored_remeasure(base: Run, cand: Run) -> tuple[Remeasure | None, str]:
    """A Remeasure of the points of both runs this checkout can measure again, and what it covers.

    Re-measuring with other code than a run's would confirm nothing, so a run is measured again
    only if its manifest names this checkout's commit. The candidate must: otherwise (None, why).
    The baseline is re-measured too when it is of this commit (two runs of one tree); usually it
    is another commit's stored run (ci/baseline), which this checkout cannot reproduce, so the
    re-measured candidate is held against it as stored, and the note says so.
    """
    root = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    commits = [(run.manifest.get("environment") or {}).get("git_commit") for run in (base, cand)]
    if not commits[1] or commits[1] != head:
        return None, (f"candidate run is of commit {str(commits[1])[:10]}, this checkout is {head[:10] or 'not git'}: "
                      "timing regressions not re-measured")
    if commits[0] == head:
        def both(ids: set[str]) -> tuple[Run, Run]:
            return load_run(measure_points(base, ids)), load_run(measure_points(cand, ids))

        return both, f"both runs are of this checkout's commit {head[:10]}: both re-measured"

    def candidate(ids: set[str]) -> tuple[Run, Run]:
        return base, load_run(measure_points(cand, ids))

    return candidate, (f"candidate re-measured, baseline kept as stored: it is commit {str(commits[0])[:10]}'s run, "
                       "which this checkout cannot measure again")


def measure_points(cand: Run, ids: set[str]) -> Path:
    """Run the points of a run's suite that hold `ids` again, into a sibling run directory."""
    suite = Suite.from_json(cand.manifest["suite"])
    groups = [point for point in points(expand(suite)) if any(t.point_id in ids for t in point)]
    run = RunDir.create(cand.path.parent, f"{suite.slug}-confirm")
    with writer_lock(run.path), ForkServerExecutor() as executor:
        run.new_manifest(suite, environment(suite.measure.threads), sum(len(p) for p in groups),
                         confirms=cand.run_id)
        for index, point in enumerate(groups):
            for row in measure_tasks(executor, point, index):
                run.append(row)
        run.finish("complete")
    return run.path
