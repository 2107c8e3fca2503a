"""Run a suite: expand it into points, measure each point in a fresh worker, store every row.

    suite ─► sweep (tasks) ─► executor (worker process per point) ─► store (results.jsonl)

A point is the set of variants measured at one (device, mode, backend, seq_len, batch_size, …):
they share a worker so the comparison inside a point is made in one process on one warm machine,
while points never share state. Rows are appended as each point finishes; `resume` skips every
(point, variant) already stored, whatever its status, so nothing is redone or duplicated.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.measure.devices import get_device
from harness.run.environment import environment
from harness.run.executor import CommandExecutor, Executor, LocalProcessExecutor
from harness.suite.task import PointTask
from harness.results.store import FORMAT_VERSION, RunDir, now_iso
from harness.suite.loading import Suite, load_suite
from harness.suite.sweep import expand, group_key
from harness.run.worker import base_row


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path | None = None       # default: the suite's output_dir (reports/)
    profile: str | None = None           # None | "torch" | "pyspy"
    progress: bool = True
    report: bool = True                  # write RUN_DIR/report.html at the end


@dataclass
class RunOutcome:
    run_dir: Path
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "skipped": 0})
    interrupted: bool = False
    report_error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.counts.get("failed", 0) else 0


def points(tasks: list[PointTask]) -> list[list[PointTask]]:
    """Group tasks into points (one worker each), keeping the sweep's order."""
    groups: dict[tuple[Any, ...], list[PointTask]] = {}
    for task in tasks:
        groups.setdefault((group_key(task), task.model_config.get("backend")), []).append(task)
    return list(groups.values())


def start(suite: Suite, options: RunOptions = RunOptions()) -> RunOutcome:
    output_dir = options.output_dir or Path(suite.output_dir)
    run = RunDir.create(Path(output_dir), suite.name)
    tasks = expand(suite)
    run.write_manifest({
        "format_version": FORMAT_VERSION,
        "run_id": run.path.name,
        "suite": suite.to_json(),
        "suite_path": str(suite.path) if suite.path else None,
        "environment": environment(suite.measure.threads),
        "profile": options.profile,
        "n_tasks": len(tasks),
        "started_at": now_iso(),
        "finished_at": None,
        "status": "running",
        "sessions": [{"started_at": now_iso(), "argv": sys.argv[1:]}],
    })
    return _execute(run, tasks, options)


def resume(run_dir: Path, options: RunOptions = RunOptions()) -> RunOutcome:
    run = RunDir.open(run_dir)
    manifest = run.read_manifest()
    suite = Suite.from_json(manifest["suite"])
    run.repair_tail()
    sessions = manifest.get("sessions", []) + [{"started_at": now_iso(), "argv": sys.argv[1:], "resumed": True}]
    run.update_manifest(status="running", finished_at=None, sessions=sessions)
    options = RunOptions(output_dir=options.output_dir, profile=options.profile or manifest.get("profile"),
                         progress=options.progress, report=options.report)
    return _execute(run, expand(suite), options)


def _execute(run: RunDir, tasks: list[PointTask], options: RunOptions) -> RunOutcome:
    outcome = RunOutcome(run.path)
    for row in run.rows():
        outcome.counts[row.get("status", "failed")] = outcome.counts.get(row.get("status", "failed"), 0) + 1
    done = run.done_keys()
    todo = [t for t in tasks if (t.point_id, t.variant) not in done]
    executor = _executor(run, options)
    wall_started = time.perf_counter()
    bar = _progress(len(todo), options.progress)
    try:
        for point in points(todo):
            bar.set_postfix_str(_describe(point[0]), refresh=False)
            for row in _measure_point(point, executor, run, options):
                run.append(row)
                outcome.counts[row["status"]] = outcome.counts.get(row["status"], 0) + 1
            bar.update(len(point))
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        bar.close()
        wall = time.perf_counter() - wall_started
        manifest = run.read_manifest()
        manifest["sessions"][-1].update(finished_at=now_iso(), wall_s=round(wall, 3))
        run.update_manifest(status="interrupted" if outcome.interrupted else "complete",
                            finished_at=now_iso(), sessions=manifest["sessions"], counts=outcome.counts)
    if options.report:
        outcome.report_error = _write_report(run)
    return outcome


def _measure_point(point: list[PointTask], executor: Executor, run: RunDir,
                   options: RunOptions) -> list[dict[str, Any]]:
    reason = get_device(point[0].device).availability()
    if reason is not None:  # no process needed to learn that a device is absent
        return [{**base_row(t), "status": "skipped", "error": reason} for t in point]
    timeout = point[0].measure.timeout
    if options.profile != "pyspy":
        return executor.run(point, timeout)
    # py-spy samples a whole process, so each variant gets its own to keep flame graphs apart.
    from harness.measure.profiling.pyspy import postprocess

    rows = []
    for task in point:
        for row in executor.run([task], timeout):
            result = postprocess(run.artifacts, task.point_id, focus=PROFILED_FUNCTION)
            if result.get("error"):  # a missing profile must not lose the measurement
                row["profile_note"] = f"py-spy profile unavailable: {result['error']}"
            else:
                row.update(pyspy_flamegraph=_relative(run, result["flamegraph_path"]),
                           pyspy_speedscope=_relative(run, result["speedscope_path"]),
                           pyspy_top_functions=result["top_self"][:15])
            rows.append(row)
    return rows


# Flame graphs show the timed steps only: start-up, imports and warm-up would otherwise dominate.
PROFILED_FUNCTION = "timed_steps"


def _relative(run: RunDir, value: Any) -> Any:
    try:
        return str(Path(value).relative_to(run.path))
    except (TypeError, ValueError):
        return value


def _executor(run: RunDir, options: RunOptions) -> Executor:
    if options.profile == "pyspy":
        from harness.measure.profiling.pyspy import wrap_command

        run.artifacts.mkdir(exist_ok=True)
        return CommandExecutor(wrap=lambda cmd, stem: wrap_command(cmd, run.artifacts, stem))
    if options.profile == "torch":
        return LocalProcessExecutor(artifacts=run.artifacts, profile="torch")
    return LocalProcessExecutor()


def _write_report(run: RunDir) -> str | None:
    try:
        from harness.report import render_report

        render_report(run.path)
        return None
    except Exception as exc:  # the measurements are safe on disk; say what went wrong
        return f"{type(exc).__name__}: {exc}"


def _describe(task: PointTask) -> str:
    return f"{task.device} {task.mode} {task.model_config.get('backend', '')} n={task.seq_len} b={task.batch_size}"


class _NoBar:
    def set_postfix_str(self, *_: Any, **__: Any) -> None: ...
    def update(self, *_: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="variant", desc="measuring", file=sys.stderr, dynamic_ncols=True)


def run_suite(suite_path: str | Path, output_dir: str | Path | None = None, overrides: tuple[str, ...] = (),
              *, progress: bool = False, report: bool = True, profile: str | None = None) -> Path:
    """Python API: run a suite file and return its run directory."""
    suite = load_suite(Path(suite_path), list(overrides))
    options = RunOptions(output_dir=Path(output_dir) if output_dir else None, profile=profile,
                         progress=progress, report=report)
    return start(suite, options).run_dir

