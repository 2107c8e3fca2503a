"""The Python API: run a suite file, then render its report, as `harness run` does.

    from harness.api import run_suite
    run_dir = run_suite("suites/seq_len.yaml", output_dir="reports", overrides=("sweep.seq_len=[512]",))
    run_dir = run_suite("suites/seq_len.yaml", executor="ray", ray_address="auto")   # on a Ray cluster

It sits above both the runner and the report (harness.run never imports harness.report), so the
report of a run is rendered here, after the runner has let go of the run directory.
"""

from __future__ import annotations

from pathlib import Path

from harness.report import render_report
from harness.run.runner import ExecutorKind, RunOptions, start
from harness.suite.loading import load_suite


def write_report(run_dir: Path) -> str | None:
    """Render RUN_DIR/report.html; None, or why it could not be written."""
    try:
        render_report(run_dir)
        return None
    except Exception as exc:  # the measurements are safe on disk; say what went wrong
        return f"{type(exc).__name__}: {exc}"


def run_suite(suite_path: str | Path, output_dir: str | Path | None = None, overrides: tuple[str, ...] = (),
              *, progress: bool = False, report: bool = True, profile: str | None = None,
              executor: ExecutorKind = "local", ray_address: str | None = None) -> Path:
    """Run a suite file and return its run directory (with report.html unless report=False).

    `executor="ray"` measures on a Ray cluster: the one at `ray_address` (auto, HOST:PORT,
    ray://HOST:PORT), or a local instance started for the run (see README, "Running on a Ray
    cluster")."""
    suite = load_suite(Path(suite_path), list(overrides))
    options = RunOptions(output_dir=Path(output_dir) if output_dir else None, profile=profile, progress=progress,
                         executor=executor, ray_address=ray_address)
    run_dir = start(suite, options).run_dir
    if report:
        write_report(run_dir)
    return run_dir
