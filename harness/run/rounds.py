"""A point measured in rounds, its variants paired: the measuring half of every timing comparison.

    slots (an executor and a task each) ─► round 1 … round R (fresh workers each) ─► one row per slot

Each variant of a point (and, in `harness gate --against`, each code version of it) is a slot,
measured in its own worker process: what one variant leaves behind in a process (a cuBLAS
workspace, a grown heap, a peak RSS) can then never be charged to another. A round starts a fresh
worker per slot:

- lockstep: all of the round's workers alive at once, pinned to the same CPUs, taking turns one
  timed step each (harness/run/lockstep.py), so the k-th timed steps of all slots are taken in one
  rotation and the machine's moment is shared by each such pair;
- sequential: one worker after another, the order rotated as in lockstep.

The order rotates by round and by point, so no slot is always first. Rounds share the suite's
timing budget (split, not repeated); FLOPs and memory are deterministic and measured in the first
round only. A slot's rounds are merged into one row: samples concatenated in round order, with
`round_sizes` saying which came from which round (the round is the unit of replication), `pairing`
saying how they were taken and `pair_id` shared by every row of one lockstep measurement, whose
sample i of round r was taken in the same rotation.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Sequence

from harness.measure.speed import timing_columns
from harness.run.executor import Executor, absent_device_rows
from harness.run.lockstep import Starter, lockstep_round, shared_cpus
from harness.suite.task import Pairing, PointTask

Slot = tuple[Executor, PointTask]  # who measures, and what


def timed(task: PointTask) -> bool:
    """Whether the task has timings to pair (an accuracy task trains instead: time is not measured)."""
    return "time" in task.metrics and "accuracy" not in task.metrics


def rotation(n: int, point_index: int, round_index: int) -> list[int]:
    """The order of `n` slots in a round: rotated by point and by round, so no slot always goes
    first (a warm cache, a load spike that decays); with two slots every pair of rounds is A-B
    then B-A."""
    offset = (point_index + round_index) % n
    return [(offset + k) % n for k in range(n)]


def _share(total: int, rounds: int, index: int) -> int:
    # Round `index`'s part of `total` split as evenly as integers allow, earlier rounds taking the
    # remainder, so the parts sum to `total`; at least 1, for a round times one step at least.
    return max((total + rounds - 1 - index) // rounds, 1)


def per_round(task: PointTask, rounds: int, index: int) -> PointTask:
    """The task as round `index` of `rounds`: its share of the timing budget, and in later rounds
    only the timing (which needs no more warm-up: the instrumented step was one of the warm-up
    steps, see harness/measure/speed.py)."""
    m = task.measure
    min_reps = _share(m.min_reps, rounds, index)
    measure = dataclasses.replace(m, max_seconds=m.max_seconds / rounds, min_reps=min_reps,
                                  max_reps=max(_share(m.max_reps, rounds, index), min_reps))
    metrics = task.metrics if index == 0 else ("time",)
    return dataclasses.replace(task, measure=measure, metrics=metrics)


def measure_point(slots: Sequence[Slot], rounds: int, pairing: Pairing, point_index: int) -> list[dict[str, Any]]:
    """One row per slot, its task measured in `rounds` rounds of fresh workers, `pairing` as said.

    Tasks without timings are measured once, one worker after another: there is nothing to
    replicate or pair. A slot whose worker fails costs that slot's round only. On an absent device
    every slot gets its skipped row at once.
    """
    tasks = [task for _, task in slots]
    skipped = absent_device_rows(tasks)
    if skipped is not None:
        return skipped
    if not any(timed(t) for t in tasks):
        rounds, pairing = 1, "sequential"
    starters = [ex for ex, _ in slots if isinstance(ex, Starter)]
    if pairing == "lockstep" and len(starters) < len(slots):
        raise TypeError("lockstep needs executors that start workers and come back for them (ForkServerExecutor)")
    pair_id = uuid.uuid4().hex[:12] if pairing == "lockstep" else None
    timeout = max(t.measure.timeout for t in tasks)
    collected: list[list[dict[str, Any]]] = [[] for _ in slots]
    for r in range(rounds):
        order = rotation(len(slots), point_index, r)
        round_tasks = [[per_round(t, rounds, r)] for t in tasks]
        if pairing == "lockstep":
            rows = lockstep_round(round_tasks, starters, order, timeout, cpus=shared_cpus(tasks[0].measure.threads))
        else:
            rows = [[] for _ in slots]
            for i in order:
                rows[i] = slots[i][0].run(round_tasks[i], timeout)
        for i, worker_rows in enumerate(rows):
            collected[i] += worker_rows
    return [merge_rounds(rows, task, rounds, pairing, pair_id) for rows, task in zip(collected, tasks)]


def measure_tasks(executor: Executor, point: Sequence[PointTask], point_index: int) -> list[dict[str, Any]]:
    """One row per task of a point, every task measured by `executor` in the rounds and with the
    pairing its suite asks for: how a run measures a point, on this machine or on a cluster node."""
    measure = point[0].measure
    return measure_point([(executor, task) for task in point], measure.rounds, measure.pairing, point_index)


def merge_rounds(rows: list[dict[str, Any]], task: PointTask, rounds: int, pairing: Pairing,
                 pair_id: str | None) -> dict[str, Any]:
    """One row for one slot measured in `rows` (a round each, in order): samples pooled, summary redone.

    The row records the suite's measure settings with the rounds and pairing used; `pairing` is
    "lockstep" only if every round's worker took turns, and None for a task without timings.
    """
    ok = [r for r in rows if r.get("status") == "ok"]
    merged = dict(ok[0] if ok else rows[0])
    merged.pop("lockstep", None)  # a round's worker flag, replaced by the row's pairing
    merged["measure"] = dataclasses.asdict(dataclasses.replace(task.measure, rounds=rounds, pairing=pairing))
    taken = [r for r in ok if r.get("time_ms_samples")]
    lockstep = pairing == "lockstep" and all(r.get("lockstep") for r in ok)
    # A failed round keeps its place (0 samples): the estimator pairs rows round by round, by
    # index, and the other variants of the point still have that round.
    sizes = [len(r.get("time_ms_samples") or []) if r.get("status") == "ok" else 0 for r in rows]
    merged.update(pairing=("lockstep" if lockstep else "sequential") if timed(task) else None,
                  pair_id=pair_id if lockstep else None, rounds=len(taken),
                  round_sizes=sizes if taken else [],
                  worker_pids=[r.get("worker_pid") for r in rows])
    merged.pop("worker_pid", None)
    if not timed(task):
        merged["pairing_note"] = f"not timed ({', '.join(task.metrics)}): nothing to pair"
    if taken:
        merged.update(_pooled(taken, task))
    if len(ok) < len(rows):
        errors = {str(r.get("error")) for r in rows if r.get("status") != "ok"}
        merged["rounds_note"] = f"{len(rows) - len(ok)} of {len(rows)} rounds failed: {'; '.join(sorted(errors))[:300]}"
    return merged


def _pooled(taken: list[dict[str, Any]], task: PointTask) -> dict[str, Any]:
    """The timing columns over every round's samples."""
    reasons = {r.get("stop_reason") for r in taken}
    # max_reps only if every round used its whole share (then the row holds measure.max_reps
    # samples); else the budget if it stopped any round; else the CI target stopped them.
    stop = ("max_reps" if reasons == {"max_reps"} else "budget" if "budget" in reasons else
            None if None in reasons else "ci_target")
    pooled = {**timing_columns(task, [float(x) for r in taken for x in r["time_ms_samples"]]), "stop_reason": stop}
    if all("turn_spans_s" in r for r in taken):
        pooled["turn_spans_s"] = [span for r in taken for span in r["turn_spans_s"]]
    return pooled
