"""Interleaved A/B measurement: baseline code and candidate code, alternately, on one machine.

    harness gate --against REV [--suite ci/gate.yaml] [--rounds N]

A stored baseline was measured at another time, often on another machine, so its absolute
times say little about the candidate's. Here REV is checked out into a temporary git worktree
and each point of the suite is measured by a worker running REV's code, then by one running the
working tree's code (or the other way round), `rounds` times, before the next point. Load changes
on a shared machine then hit both sides alike, which is what lets the gate hold absolute times to
a tight threshold. The rounds share the suite's timing budget (more rounds alternate more often,
they do not measure longer). Each side becomes an ordinary run directory (reportable,
exportable); the rounds of a (point, variant) are pooled into one row that remembers which
samples came from which round, because the gate treats the round as its unit of replication.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness import stats
from harness.results.lock import writer_lock
from harness.results.store import RunDir
from harness.run.environment import environment
from harness.run.executor import absent_device_rows
from harness.run.forkserver import ForkServerExecutor
from harness.run.git import git, repo_root, resolve_rev, worktree
from harness.run.lockstep import lockstep_round, shared_cpus, supports_lockstep
from harness.run.runner import points
from harness.suite.loading import Suite
from harness.suite.sweep import expand
from harness.suite.task import PointTask


@dataclass(frozen=True)
class Side:
    """One code version in an interleaved measurement."""

    label: str                                          # "baseline" / "candidate": names its run dir
    root: Path                                          # tree its workers import harness and models from
    env: dict[str, str] = field(default_factory=dict)   # extra worker environment
    commit: str | None = None
    dirty: bool = False


# ---- pooling rounds ------------------------------------------------------------------------------
def merge_rounds(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for one (point, variant) measured in several rounds: samples pooled, summary redone."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if not ok:
        return {**rows[-1], "ab_rounds": 0}
    merged = dict(ok[0])
    samples = [float(x) for r in ok for x in (r.get("time_ms_samples") or []) if x is not None]
    if samples:
        s = stats.summarize(samples)
        tokens = (merged.get("batch_size") or 0) * (merged.get("seq_len") or 0)
        merged.update(time_ms_median=s.median, time_ms_ci_low=s.ci_low, time_ms_ci_high=s.ci_high,
                      time_ms_iqr=s.iqr, time_ms_mean=s.mean, time_ms_std=s.std, time_ms_min=s.min,
                      time_ms_n=s.n, time_ms_samples=samples,
                      tokens_per_s=tokens / (s.median / 1e3) if s.median > 0 else None)
    peaks = [r["peak_mem_bytes"] for r in ok if r.get("peak_mem_bytes") is not None]
    if peaks:
        merged["peak_mem_bytes"] = max(peaks)  # the worst round: a peak is a bound, not an average
    merged["ab_rounds"] = len(ok)
    # Every round in lockstep: sample i of this row and of the other side's were taken back to back.
    merged["ab_lockstep"] = all(r.get("lockstep") for r in ok)
    merged["ab_round_medians"] = [r.get("time_ms_median") for r in ok]
    # Which pooled samples came from which round (in order): lets the gate resample whole rounds.
    merged["ab_round_sizes"] = [sum(x is not None for x in r.get("time_ms_samples") or []) for r in ok]
    if len(ok) < len(rows):
        errors = {str(r.get("error")) for r in rows if r.get("status") != "ok"}
        merged["ab_note"] = f"{len(rows) - len(ok)} of {len(rows)} rounds failed: {'; '.join(sorted(errors))[:300]}"
    return merged


def _per_round(task: PointTask, rounds: int, first_round: bool) -> PointTask:
    """The task as one of `rounds` rounds: the suite's timing budget split across them, so more
    rounds alternate the sides more often without measuring longer."""
    m = task.measure
    measure = dataclasses.replace(m, max_seconds=max(m.max_seconds / rounds, 0.25),
                                  min_reps=max(3, math.ceil(m.min_reps / rounds)),
                                  max_reps=max(3, math.ceil(m.max_reps / rounds)))
    if first_round or "time" not in task.metrics:
        return dataclasses.replace(task, measure=measure)
    # FLOPs and memory are deterministic: measured once, in the first round; later rounds only
    # add timing samples, so a round costs a fork, a model build, warm-up and timing. The
    # FLOP-counting step warms up too, so it is replaced by one more warm-up step.
    return dataclasses.replace(task, metrics=("time",), measure=dataclasses.replace(
        measure, warmup=measure.warmup + ("flops" in task.metrics)))


def _measure_round(point: list[PointTask], executors: Sequence[ForkServerExecutor], order: list[int], rounds: int,
                   first_round: bool, lockstep: bool) -> list[list[dict[str, Any]]]:
    """One round of one point: rows per side, the sides measured in `order` or taking turns."""
    skipped = absent_device_rows(point)
    if skipped is not None:
        return [[dict(row) for row in skipped] for _ in executors]  # rows of its own for each side's run
    tasks = [_per_round(t, rounds, first_round) for t in point]
    timeout = point[0].measure.timeout
    if lockstep:
        return lockstep_round([tasks] * len(executors), executors, order, timeout,
                              cpus=shared_cpus(point[0].measure.threads))
    rows: list[list[dict[str, Any]]] = [[] for _ in executors]
    for s in order:
        rows[s] = executors[s].run(tasks, timeout)
    return rows


def _order(n_sides: int, point_index: int, round_index: int) -> list[int]:
    # Rotate who goes first, by point and by round, so no side is always measured first (a warm
    # cache, a load spike that decays) and with two sides every pair of rounds is A-B then B-A.
    offset = (point_index + round_index) % n_sides
    return [(offset + k) % n_sides for k in range(n_sides)]


# ---- the measurement ---------------------------------------------------------------------------
def interleave(suite: Suite, sides: Sequence[Side], rounds: int, output_dir: Path, progress: bool = False,
               extra_manifest: dict[str, Any] | None = None, only: set[str] | None = None,
               executors: Sequence[ForkServerExecutor] | None = None) -> list[Path]:
    """Measure `suite` with every side, point by point and round by round; one run dir per side.

    `only`: measure just the points holding these point_ids (a confirmation re-measure).
    `executors`: one per side, kept open by the caller across calls (else started and closed here).
    """
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    pair_id = uuid.uuid4().hex[:12]
    env = environment(suite.measure.threads)
    tasks = expand(suite)
    if only is not None:
        tasks = [t for point in points(tasks) if any(t.point_id in only for t in point) for t in point]
    # Lockstep (the sides' workers alive at once, timed steps alternating one for one) needs every
    # tree to take turns; an older revision's workers do not, and then the rounds alternate instead.
    lockstep = len(sides) > 1 and all(supports_lockstep(side.root) for side in sides)
    runs = [RunDir.create(Path(output_dir), f"{suite.name}-ab-{side.label}") for side in sides]
    groups = points(tasks)
    counts: list[dict[str, int]] = [{} for _ in sides]
    status = "complete"
    with ExitStack() as stack:
        for side, run in zip(sides, runs):
            stack.enter_context(writer_lock(run.path))
            run.new_manifest(suite, {**env, "git_commit": side.commit, "git_dirty": side.dirty}, len(tasks),
                             ab={"pair_id": pair_id, "side": side.label, "sides": [s.label for s in sides],
                                 "rounds": rounds, "lockstep": lockstep, "code_root": str(side.root),
                                 **(extra_manifest or {})})
        if executors is None:
            executors = [stack.enter_context(ForkServerExecutor(side.root, side.env)) for side in sides]
        try:
            _interleave_points(groups, sides, executors, runs, rounds, counts, progress, lockstep)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            for run, count in zip(runs, counts):
                run.finish(status, count)
    return [run.path for run in runs]


def _interleave_points(groups: list[list[PointTask]], sides: Sequence[Side], executors: Sequence[ForkServerExecutor],
                       runs: list[RunDir], rounds: int, counts: list[dict[str, int]], progress: bool,
                       lockstep: bool) -> None:
    for index, point in enumerate(groups):
        collected: list[list[dict[str, Any]]] = [[] for _ in sides]
        for r in range(rounds):
            order = _order(len(sides), index, r)
            if progress:
                who = " and ".join(sides[s].label for s in order) + (" in lockstep" if lockstep else "")
                print(f"[{index + 1}/{len(groups)}] {_describe(point[0])}  round {r + 1}/{rounds}  {who}",
                      file=sys.stderr, flush=True)
            for s, rows in enumerate(_measure_round(point, executors, order, rounds, r == 0, lockstep)):
                collected[s] += rows
        for s, run in enumerate(runs):
            for variant in dict.fromkeys(row["variant"] for row in collected[s]):
                row = merge_rounds([x for x in collected[s] if x["variant"] == variant])
                run.append(row)
                counts[s][row["status"]] = counts[s].get(row["status"], 0) + 1


def _describe(task: PointTask) -> str:
    return f"{task.device} {task.mode} {task.model_config.get('backend', '')} n={task.seq_len} b={task.batch_size}"


class Session:
    """REV checked out next to the working tree, ready to measure both, as often as asked."""

    def __init__(self, suite: Suite, sides: list[Side], rounds: int, output_dir: Path, progress: bool,
                 extra_manifest: dict[str, Any]) -> None:
        self.suite, self.sides, self.rounds = suite, sides, rounds
        self.output_dir, self.progress, self.extra_manifest = output_dir, progress, extra_manifest

    def measure(self, only: set[str] | None = None) -> tuple[Path, Path]:
        """(baseline run, candidate run) of the whole suite, or of the points holding `only`."""
        base, cand = interleave(self.suite, self.sides, self.rounds, self.output_dir, self.progress,
                                extra_manifest=self.extra_manifest, only=only)
        return base, cand


@contextmanager
def against(rev: str, suite: Suite, rounds: int, output_dir: Path, progress: bool = False) -> Iterator[Session]:
    """A Session measuring REV (a temporary worktree, removed on exit) against the working tree."""
    repo = repo_root()
    commit = resolve_rev(repo, rev)
    head = git(repo, "rev-parse", "HEAD")
    dirty = bool(git(repo, "status", "--porcelain", "--untracked-files=no"))
    with worktree(repo, commit) as tree:
        sides = [Side("baseline", tree, commit=commit), Side("candidate", repo, commit=head, dirty=dirty)]
        yield Session(suite, sides, rounds, output_dir, progress, {"against": rev, "against_commit": commit})
