"""Run a suite: expand it into points, measure each point's variants paired, store every row.

    suite ─► sweep (tasks) ─► rounds (a fresh worker per variant and round) ─► store (results.jsonl)

A point is everything compared with each other: the variants on every backend at one (device,
mode, seq_len, batch_size, …). Its variants are measured together, each in its own worker, in
lockstep by default (harness/run/rounds.py); points never share state. Rows are appended as each
point finishes; `resume` skips every (point, variant) already stored, whatever its status, so
nothing is redone or duplicated.

The run directory's writer lock is held from the first byte written to the last, so a second
writer of the same run (a resume started twice) stops before it measures anything. Rendering the
report is the caller's business (harness.api, harness.cli): the runner only measures and stores.
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from harness.results.lock import writer_lock
from harness.results.store import RunDir
from harness.run.environment import environment
from harness.run.executor import CommandExecutor, Executor
from harness.run.forkserver import ForkServerExecutor
from harness.run.rounds import measure_point
from harness.suite.loading import Suite
from harness.suite.sweep import expand, group_key
from harness.suite.task import PointTask


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path | None = None       # default: the suite's output_dir (reports/)
    profile: str | None = None           # None | "torch" | "pyspy"
    progress: bool = True


@dataclass
class RunOutcome:
    run_dir: Path
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "failed": 0, "skipped": 0})
    interrupted: bool = False
    report_error: str | None = None      # set by whoever renders the report, when that fails

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.counts.get("failed", 0) else 0


def points(tasks: list[PointTask]) -> list[list[PointTask]]:
    """Group tasks into points (measured together), keeping the sweep's order."""
    groups: dict[tuple[Any, ...], list[PointTask]] = {}
    for task in tasks:
        groups.setdefault(group_key(task), []).append(task)
    return list(groups.values())


def start(suite: Suite, options: RunOptions = RunOptions()) -> RunOutcome:
    output_dir = options.output_dir or Path(suite.output_dir)
    run = RunDir.create(Path(output_dir), suite.name)
    tasks = expand(suite)
    with writer_lock(run.path):
        run.new_manifest(suite, environment(suite.measure.threads), len(tasks), profile=options.profile)
        return _execute(run, tasks, options)


def resume(run_dir: Path, options: RunOptions = RunOptions()) -> RunOutcome:
    """Measure what a run has not stored yet. RunLocked if another process is writing it,
    RunDamaged if its results.jsonl has damaged lines (`harness repair` first)."""
    run = RunDir.open(run_dir)
    with writer_lock(run.path):
        run.ready_to_append()
        manifest = run.resume_session()
        options = RunOptions(output_dir=options.output_dir, profile=options.profile or manifest.get("profile"),
                             progress=options.progress)
        return _execute(run, expand(Suite.from_json(manifest["suite"])), options)


def _execute(run: RunDir, tasks: list[PointTask], options: RunOptions) -> RunOutcome:
    outcome = RunOutcome(run.path)
    for row in run.rows():
        outcome.counts[row.get("status", "failed")] = outcome.counts.get(row.get("status", "failed"), 0) + 1
    done = run.done_keys()
    todo = [t for t in tasks if (t.point_id, t.variant) not in done]
    wall_started = time.perf_counter()
    bar = _progress(len(todo), options.progress)
    try:
        with _executor(run, options) as executor:
            for index, point in enumerate(points(todo)):
                bar.set_postfix_str(describe(point), refresh=False)
                for row in _measure_point(point, index, executor, run, options):
                    run.append(row)
                    outcome.counts[row["status"]] = outcome.counts.get(row["status"], 0) + 1
                bar.update(len(point))
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        bar.close()
        run.finish("interrupted" if outcome.interrupted else "complete", outcome.counts,
                   wall_s=time.perf_counter() - wall_started)
    return outcome


def _measure_point(point: list[PointTask], index: int, executor: Executor, run: RunDir,
                   options: RunOptions) -> list[dict[str, Any]]:
    measure = point[0].measure
    slots = [(executor, task) for task in point]
    if options.profile != "pyspy":
        return measure_point(slots, measure.rounds, measure.pairing, index)
    # py-spy samples a whole process, so each variant has its own worker (as always), launched
    # under py-spy as a command: the lockstep conductor starts none such, so they run one by one.
    # Each round's profile replaces the last: the flame graph is of the last round's worker.
    from harness.measure.profiling.pyspy import postprocess

    rows = measure_point(slots, measure.rounds, "sequential", index)
    for task, row in zip(point, rows):
        if row.get("pairing") is not None:
            row["pairing_note"] = "sequential, not lockstep: --profile pyspy runs each worker under py-spy, one by one"
        result = postprocess(run.artifacts, task.point_id, focus=PROFILED_FUNCTION)
        if result.get("error"):  # a missing profile must not lose the measurement
            row["profile_note"] = f"py-spy profile unavailable: {result['error']}"
        else:
            row.update(pyspy_flamegraph=_relative(run, result["flamegraph_path"]),
                       pyspy_speedscope=_relative(run, result["speedscope_path"]),
                       pyspy_top_functions=result["top_self"][:15])
    return rows


# Flame graphs show the timed steps only: start-up, imports and warm-up would otherwise dominate.
PROFILED_FUNCTION = "timed_steps"


def _relative(run: RunDir, value: Any) -> Any:
    try:
        return str(Path(value).relative_to(run.path))
    except (TypeError, ValueError):
        return value


@contextmanager
def _executor(run: RunDir, options: RunOptions) -> Iterator[Executor]:
    """Where this run's workers come from: this checkout's fork server, or py-spy commands."""
    if options.profile == "pyspy":
        from harness.measure.profiling.pyspy import wrap_command

        run.artifacts.mkdir(exist_ok=True)
        yield CommandExecutor(wrap=lambda cmd, stem: wrap_command(cmd, run.artifacts, stem))
        return
    torch_profile = ["--artifacts", str(run.artifacts), "--profile", "torch"] if options.profile == "torch" else []
    with ForkServerExecutor(worker_args=torch_profile) as executor:
        yield executor


def describe(point: list[PointTask]) -> str:
    """The point as a progress line names it."""
    task = point[0]
    backends = "/".join(dict.fromkeys(str(t.model_config.get("backend", "")) for t in point))
    return f"{task.device} {task.mode} {backends} n={task.seq_len} b={task.batch_size}"


class _NoBar:
    def set_postfix_str(self, *_: Any, **__: Any) -> None: ...
    def update(self, *_: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="variant", desc="measuring", file=sys.stderr, dynamic_ncols=True)
