"""The conductor of a lockstep round: one worker per variant (and code version), alive at once,
taking turns.

The worker side and the protocol are in harness/run/turns.py. Here: make the FIFOs, start every
worker through its fork server, then hand the turn round: send "go" to one worker, wait for it to
give the turn back (one timed step done) or leave (finished), move to the next. One worker runs
at any moment, so no measurement is disturbed by another's, and the k-th timed steps of all
workers are taken in one rotation, before any worker's (k+1)-th.

A worker that dies leaves the rotation (its fork server reports it as usual) and the others carry
on; so does a worker whose turns outlast its timeout, killed before the next turn is given.
"""

from __future__ import annotations

import os
import select
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

from harness.run.forkserver import Pending
from harness.suite.task import PointTask
from harness.run.turns import ENV

_POLL_S = 0.5  # how often a silent worker is checked for being alive


@runtime_checkable
class Starter(Protocol):
    """An executor that can start a worker and come back for its rows (ForkServerExecutor)."""

    def start(self, tasks: list[PointTask], env: dict[str, str] | None = None,
              cpus: Sequence[int] | None = None) -> Pending: ...

    def finish(self, pending: Pending, timeout: float) -> list[dict[str, Any]]: ...


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

    def conduct(self, pids: Sequence[int], order: Sequence[int], limit: float,
                out_of_time: Callable[[int], None]) -> None:
        """Rotate the turn over the workers (in `order`) until each has finished or died.

        A worker's turns together may last `limit` seconds (its measure.timeout, as if it ran
        alone); one that runs past it is handed to `out_of_time` (to be killed) before anyone else
        gets the turn, so a hung worker costs its own row and no one else's.
        """
        active = [i for i in order if pids[i] > 0]
        held = dict.fromkeys(active, 0.0)
        position = 0
        while active:
            position %= len(active)
            k = active[position]
            os.write(self._go[k], b"g")
            self.turns_given += 1
            began = time.monotonic()
            reply = self._await(k, pids[k], began + limit - held[k])
            held[k] += time.monotonic() - began
            if reply == b"d":
                position += 1
                continue
            active.remove(k)  # finished, dead or out of time: the next one keeps `position`
            if reply is None and held[k] >= limit:
                out_of_time(k)

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


def lockstep_round(tasks: Sequence[list[PointTask]], executors: Sequence[Starter], order: Sequence[int],
                   timeout: float, cpus: Sequence[int] | None = None) -> list[list[dict[str, Any]]]:
    """Measure `tasks[i]` with `executors[i]`, every worker alive at once and taking turns in
    `order`; the rows of each.

    `timeout` bounds each worker's own time (its turns), as in a sequential run. `cpus`: pin every
    worker there (see shared_cpus).
    """
    conductor = Conductor(len(executors))
    killed: dict[int, list[dict[str, Any]]] = {}
    try:
        pending: list[Pending] = [ex.start(t, env={ENV: spec}, cpus=cpus)
                                  for ex, t, spec in zip(executors, tasks, conductor.specs)]

        def out_of_time(k: int) -> None:
            killed[k] = executors[k].finish(pending[k], timeout=0.0)

        conductor.conduct([p.pid for p in pending], order, timeout, out_of_time)
        # Everyone else finished or died: at most exiting now.
        return [killed[k] if k in killed else ex.finish(p, timeout=30.0)
                for k, (ex, p) in enumerate(zip(executors, pending))]
    finally:
        conductor.close()
