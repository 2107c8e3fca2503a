"""The conductor of a lockstep A/B round: one worker per code version, alive at once, taking turns.

The worker side and the protocol are in harness/run/turns.py. Here: make the FIFOs, start every
side's worker through its fork server, then hand the turn round: send "go" to one worker, wait
for it to give the turn back (one timed step done) or leave (finished), move to the next. One
worker runs at any moment, so no measurement is disturbed by the other version's, and timed
steps of the versions alternate one for one.

A worker that dies, or that outlives the round's deadline, leaves the rotation (the fork server
then reports or kills it as usual), so the others carry on.
"""

from __future__ import annotations

import os
import select
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

from harness.run.forkserver import ForkServerExecutor, Pending
from harness.suite.task import PointTask
from harness.run.turns import ENV

_POLL_S = 0.5  # how often a silent worker is checked for being alive


def supports_lockstep(root: Path) -> bool:
    """Whether a code tree's workers take turns (older revisions of the project do not)."""
    return any((Path(root) / "harness" / sub / "turns.py").is_file() for sub in ("run", "."))


def _alive(pid: int) -> bool:
    """Whether `pid` still runs: a zombie (exited, not yet reaped by its parent) does not."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: fall back to a signal-0 probe, which a zombie passes
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat[stat.rindex(")") + 2:].split(maxsplit=1)[0] not in ("Z", "X")


class Conductor:
    """FIFOs for `n` workers and the turn rotation over them."""

    def __init__(self, n: int) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="reuse-bench-turns-")
        self.specs: list[str] = []
        self._go: list[int] = []
        self._done: list[int] = []
        for i in range(n):
            go, done = Path(self._tmp.name) / f"{i}.go", Path(self._tmp.name) / f"{i}.done"
            os.mkfifo(go)
            os.mkfifo(done)
            # Read-write opens never block on a FIFO (Linux), so workers may open their ends later.
            self._go.append(os.open(go, os.O_RDWR))
            self._done.append(os.open(done, os.O_RDWR))
            self.specs.append(f"{go}:{done}")
        self.turns_given = 0

    def conduct(self, pids: Sequence[int], order: Sequence[int], deadline: float) -> None:
        """Rotate the turn over the workers (in `order`) until each has finished, died or timed out."""
        active = [i for i in order if pids[i] > 0]
        position = 0
        while active:
            position %= len(active)
            k = active[position]
            os.write(self._go[k], b"g")
            self.turns_given += 1
            if self._await(k, pids[k], deadline) == b"d":
                position += 1
            else:
                active.remove(k)  # finished, dead or out of time: the next one keeps `position`

    def _await(self, k: int, pid: int, deadline: float) -> bytes | None:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self._done[k]], [], [], min(_POLL_S, left))
            if ready:
                return os.read(self._done[k], 1)
            if not _alive(pid):
                return None

    def close(self) -> None:
        for fd in (*self._go, *self._done):
            os.close(fd)
        self._tmp.cleanup()


def shared_cpus(threads: int | None) -> list[int] | None:
    """The CPUs every lockstep worker is pinned to: the last `threads` this process may use.

    One worker runs at a time, so sharing costs nothing; and the two steps of a pair then run on
    the same CPU, so they share its state too (another tenant's load on that core, the kernel's
    housekeeping that a scheduler would put on one CPU), which the pair then cancels. Background
    work keeps the remaining CPUs. None (no pinning) when there is no CPU to spare.
    """
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    want = max(threads or 1, 1)
    return allowed[-want:] if len(allowed) > want else None


def lockstep_round(tasks: Sequence[list[PointTask]], executors: Sequence[ForkServerExecutor],
                   order: Sequence[int], timeout: float, cpus: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
    """Measure side i's `tasks[i]` with `executors[i]`, all sides taking turns; rows per side.

    `timeout` bounds each worker as in a sequential run: the round's deadline is the sum. `cpus`:
    pin every worker there (see shared_cpus).
    """
    conductor = Conductor(len(executors))
    try:
        pending: list[Pending] = [ex.start(t, env={ENV: spec}, cpus=cpus)
                                  for ex, t, spec in zip(executors, tasks, conductor.specs)]
        conductor.conduct([p.pid for p in pending], order, time.monotonic() + timeout * len(executors))
        return [ex.finish(p, timeout=30.0) for ex, p in zip(executors, pending)]
    finally:
        conductor.close()
