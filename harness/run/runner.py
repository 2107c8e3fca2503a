"""Run a suite: expand it into points, measure each point's variants paired, store every row.

    suite ─► sweep (tasks) ─► points ─► a backend measures them ─► store (results.jsonl)

A point is everything compared with each other: the variants on every backend at one (device,
mode, seq_len, batch_size, …). Its variants are measured together, each in its own worker, in
lockstep by default (harness/run/rounds.py); points never share state. Where the points are
measured is a backend's business: this machine's fork server, one point after another
(LocalBackend, here), or a Ray cluster, several points at once (harness/run/cluster/). Either hands
back (point, rows) pairs as points finish, and this module does the bookkeeping for both: rows
appended and fsync'ed as they come, one progress bar, the counts, the manifest, an interrupted
run left resumable. `resume` skips every (point, variant) already stored, whatever its status, so
nothing is redone or duplicated.

The run directory's writer lock is held from the first byte written to the last, so a second
writer of the same run (a resume started twice) stops before it measures anything. Rendering the
report is the caller's business (harness.api, harness.cli): the runner only measures and stores.
"""

from __future__ import annotations

import sys
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol

from harness.errors import UsageError
from harness.results.lock import writer_lock
from harness.results.store import RunDir
from harness.run.cluster.settings import check_address
from harness.run.environment import environment
from harness.run.executor import CommandExecutor, Executor
from harness.run.forkserver import ForkServerExecutor
from harness.run.points import PointRows, describe, points
from harness.run.rounds import measure_point, measure_tasks
from harness.suite.loading import Suite
from harness.suite.sweep import expand
from harness.suite.task import PointTask

__all__ = ["RunOptions", "RunOutcome", "start", "resume", "points", "describe"]

ExecutorKind = Literal["local", "ray"]
EXECUTORS: tuple[str, ...] = ("local", "ray")


@dataclass(frozen=True)
class RunOptions:
    output_dir: Path | None = None       # default: the suite's output_dir (reports/)
    profile: str | None = None           # None | "torch" | "pyspy"
    progress: bool = True
    # Where points are measured: "local" (this machine) or "ray" (a Ray cluster). None: local for
    # a new run; for a resume, what the run's manifest says it was started with.
    executor: ExecutorKind | None = None
    # With executor "ray": `auto`, HOST:PORT or ray://HOST:PORT; None starts a local Ray instance
    # for the run (stopped after it), or on resume connects where the manifest says.
    ray_address: str | None = None

    def check(self) -> None:
        """Refuse contradictory options before anything is created (UsageError: exit 2)."""
        if self.executor is not None and self.executor not in EXECUTORS:
            raise UsageError(f"--executor {self.executor}: expected one of {', '.join(EXECUTORS)}")
        if self.ray_address is not None and self.executor != "ray":
            raise UsageError("--ray-address goes with --executor ray")
        if self.ray_address is not None:
            check_address(self.ray_address)
        if self.executor == "ray" and self.profile is not None:
            raise UsageError(f"--profile {self.profile} runs on this machine only: a cluster node would write the "
                             "profiles to its own disk; profile the points of interest locally")


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


Say = Callable[[str], None]                                # a status line for the progress bar


class Backend(Protocol):
    """Where a run's points are measured. Both backends run the same rounds (measure_tasks)."""

    def record(self) -> dict[str, Any]:
        """What the manifest's `executor` says of where the run is measured; may grow during a run
        (a cluster's nodes as they report), and is written again whenever it changes."""
        ...

    def measure(self, run: RunDir, groups: list[list[PointTask]], say: Say) -> Iterator[PointRows]:
        """Measure the points `groups` (group i has point index i, which rotates its rounds) and
        yield each with its rows as it finishes, in whatever order points finish."""
        ...


class LocalBackend:
    """This machine: one point after another, its workers forked from this checkout's fork server
    (or launched under py-spy)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options

    def record(self) -> dict[str, Any]:
        return {"kind": "local"}

    def measure(self, run: RunDir, groups: list[list[PointTask]], say: Say) -> Iterator[PointRows]:
        with _executor(run, self.options) as executor:
            for index, point in enumerate(groups):
                say(describe(point))
                yield point, _measure_point(point, index, executor, run, self.options)


@contextmanager
def _backend(options: RunOptions, tasks: list[PointTask], previous: dict[str, Any] | None = None) -> Iterator[Backend]:
    """The backend `options` ask for, ready to measure `tasks`: for Ray, connected (or a local
    instance started) and a measuring slot found, before any run directory is created or written."""
    if options.executor != "ray":
        yield LocalBackend(options)
        return
    from harness.run.cluster.settings import require_ray

    require_ray()  # exit 2 naming the extra, before anything imports Ray
    from harness.run.cluster.driver import cluster_backend

    with cluster_backend(options.ray_address, tasks, tasks[0].measure.threads if tasks else None, previous) as backend:
        yield backend


def start(suite: Suite, options: RunOptions = RunOptions()) -> RunOutcome:
    options.check()
    tasks = expand(suite)
    with _backend(options, tasks) as backend:
        run = RunDir.create(Path(options.output_dir or suite.output_dir), suite.name)
        with writer_lock(run.path):
            run.new_manifest(suite, environment(suite.measure.threads), len(tasks), profile=options.profile,
                             executor=backend.record())
            return _execute(run, tasks, options, backend)


def resume(run_dir: Path, options: RunOptions = RunOptions()) -> RunOutcome:
    """Measure what a run has not stored yet, where the run was measured unless `options` say
    otherwise. RunLocked if another process is writing it, RunDamaged if its results.jsonl has
    damaged lines (`harness repair` first)."""
    run = RunDir.open(run_dir)
    with writer_lock(run.path):
        run.ready_to_append()
        manifest = run.read_manifest()
        options = resumed_options(options, manifest)
        options.check()
        tasks = expand(Suite.from_json(manifest["suite"]))
        with _backend(options, tasks, previous=manifest.get("executor")) as backend:
            run.resume_session()
            run.update_manifest(executor=backend.record())
            return _execute(run, tasks, options, backend)


def resumed_options(options: RunOptions, manifest: dict[str, Any]) -> RunOptions:
    """A resume's options: the profile and the executor (with its address) the run was started
    with, unless given again. A run from before executors were recorded ran locally."""
    recorded = manifest.get("executor") or {"kind": "local"}
    executor = options.executor or recorded.get("kind", "local")
    address = options.ray_address
    if address is None and options.executor is None and executor == "ray":
        address = recorded.get("address")
    return replace(options, profile=options.profile or manifest.get("profile"), executor=executor,
                   ray_address=address)


def _execute(run: RunDir, tasks: list[PointTask], options: RunOptions, backend: Backend) -> RunOutcome:
    outcome = RunOutcome(run.path)
    for row in run.rows():
        outcome.counts[row.get("status", "failed")] = outcome.counts.get(row.get("status", "failed"), 0) + 1
    done = run.done_keys()
    todo = [t for t in tasks if (t.point_id, t.variant) not in done]
    wall_started = time.perf_counter()
    bar = _progress(len(todo), options.progress)
    recorded = backend.record()
    status = "interrupted"  # unless every point comes back: an error mid-run leaves it resumable

    def say(text: str) -> None:
        bar.set_postfix_str(text, refresh=False)

    try:
        # closing(): an interrupt between two points still runs the backend's clean-up (a cluster
        # cancels what it has pending) before the run is finished below.
        with closing(backend.measure(run, points(todo), say)) as finished:
            for point, rows in finished:
                for row in rows:
                    run.append(row)
                    outcome.counts[row["status"]] = outcome.counts.get(row["status"], 0) + 1
                bar.update(len(point))
                if (now := backend.record()) != recorded:
                    run.update_manifest(executor=now)
                    recorded = now
        status = "complete"
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        bar.close()
        run.finish(status, outcome.counts, wall_s=time.perf_counter() - wall_started)
    return outcome


def _measure_point(point: list[PointTask], index: int, executor: Executor, run: RunDir,
                   options: RunOptions) -> list[dict[str, Any]]:
    if options.profile != "pyspy":
        return measure_tasks(executor, point, index)
    # py-spy samples a whole process, so each variant has its own worker (as always), launched
    # under py-spy as a command: the lockstep conductor starts none such, so they run one by one.
    # Each round's profile replaces the last: the flame graph is of the last round's worker.
    from harness.measure.profiling.pyspy import postprocess

    rows = measure_point([(executor, task) for task in point], point[0].measure.rounds, "sequential", index)
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


class _NoBar:
    def set_postfix_str(self, *_: Any, **__: Any) -> None: ...
    def update(self, *_: Any) -> None: ...
    def close(self) -> None: ...


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="variant", desc="measuring", file=sys.stderr, dynamic_ncols=True)
