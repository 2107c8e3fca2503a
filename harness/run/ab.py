"""Interleaved A/B measurement: baseline code and candidate code, alternately, on one machine.

    harness gate --against REV [--suite ci/gate.yaml] [--rounds N]

A stored baseline was measured at another time, often on another machine, so its absolute
times say little about the candidate's. Here REV is checked out into a temporary git worktree
and each point of the suite is measured `rounds` times, before the next point, by workers of
both trees: one per (variant, code version), all alive at once and taking turns one timed step
each (harness/run/rounds.py), so both the within-run pairs (reuse and its baselines) and the A/B
pairs (a variant under REV and under the working tree) share the machine's moment. Load changes
on a shared machine then hit both sides alike, which is what lets the gate hold absolute times to
a tight threshold. A revision whose workers cannot take turns is measured one worker after
another instead. The rounds share the suite's timing budget (more rounds alternate more often,
they do not measure longer). Each side becomes an ordinary run directory (reportable,
exportable), one row per (point, variant) that remembers which samples came from which round.
"""

from __future__ import annotations

import sys
import uuid
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from harness.results.lock import writer_lock
from harness.results.store import RunDir
from harness.run.environment import environment
from harness.run.forkserver import ForkServerExecutor
from harness.run.git import git, repo_root, resolve_rev, worktree
from harness.run.lockstep import supports_lockstep
from harness.run.rounds import measure_point
from harness.run.points import describe, points
from harness.suite.loading import Suite
from harness.suite.sweep import expand
from harness.suite.task import Pairing, PointTask


@dataclass(frozen=True)
class Side:
    """One code version in an interleaved measurement."""

    label: str                                          # "baseline" / "candidate": names its run dir
    root: Path                                          # tree its workers import harness and models from
    env: dict[str, str] = field(default_factory=dict)   # extra worker environment
    commit: str | None = None
    dirty: bool = False


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
    # Lockstep needs every tree's workers to take turns; an older revision's do not, and then the
    # workers of a round run one after another instead.
    lockstep = suite.measure.pairing == "lockstep" and all(supports_lockstep(side.root) for side in sides)
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
            _interleave_points(groups, sides, executors, runs, rounds, counts, progress,
                               "lockstep" if lockstep else "sequential")
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            for run, count in zip(runs, counts):
                run.finish(status, count)
    return [run.path for run in runs]


def _interleave_points(groups: list[list[PointTask]], sides: Sequence[Side], executors: Sequence[ForkServerExecutor],
                       runs: list[RunDir], rounds: int, counts: list[dict[str, int]], progress: bool,
                       pairing: Pairing) -> None:
    for index, point in enumerate(groups):
        if progress:
            print(f"[{index + 1}/{len(groups)}] {describe(point)}  {rounds} rounds, "
                  f"{len(point)} variants x {' and '.join(side.label for side in sides)} {pairing}",
                  file=sys.stderr, flush=True)
        # Variant by variant, side by side: the two versions of a variant take adjacent turns.
        slots = [(executors[s], task) for task in point for s in range(len(sides))]
        rows = measure_point(slots, rounds, pairing, index)
        for s, run in enumerate(runs):
            for row in rows[s::len(sides)]:
                run.append(row)
                counts[s][row["status"]] = counts[s].get(row["status"], 0) + 1


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
