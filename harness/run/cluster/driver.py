"""The Ray backend of the runner: a run's points as units on a cluster, rows back as units finish.

    timing units ──► an idle measurer (one per measuring slot) ──┐
                                                                 ├─► ray.wait: first done, first back
    accuracy units ─► Ray tasks, CPUs only, after the timing ────┘      ─► (point, rows) to the runner

The runner appends each unit's rows and fsyncs them as it gets them, whatever order units finish
in, so a driver killed at any moment loses at most the units in flight, and --resume measures
exactly what is missing. A unit whose node dies, whose process crashes or which raises comes back
as failed rows with the reason; every other unit goes on. On Ctrl-C what is pending is cancelled
and the measurers' workers are killed: no half-measured unit is stored, so resume redoes it.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from statistics import fmean
from typing import Any, Callable, Iterator

import ray
from ray.exceptions import RayActorError, RayError

from harness.results.store import RunDir
from harness.run.cluster.code import source_digest
from harness.run.cluster.ledger import start_ledger
from harness.run.cluster.nodes import cluster_nodes, measuring_nodes, no_slot_error
from harness.run.cluster.pool import Measurer, MeasurerPool
from harness.run.cluster.remote import measure_shared
from harness.run.cluster.session import Session, connect
from harness.run.cluster.settings import ClusterError, count, require_ray
from harness.run.cluster.unit import Unit, UnitResult, failed_rows, failure_reason
from harness.run.environment import git_state
from harness.run.executor import CODE_ROOT
from harness.run.points import PointRows, describe, points
from harness.suite.task import PointTask

# How long ray.wait blocks before the driver looks at the cluster again, and how long timing units
# may wait with no node able to measure them before the run stops (resumable) instead of hanging.
WAIT_S = 1.0
NO_SLOT_PATIENCE_S = 120.0


class ClusterWarning(UserWarning):
    """Something about the cluster the user should know; the run goes on."""


@dataclass
class Flight:
    """A unit on its way: where it went and when."""

    unit: Unit
    measurer: Measurer | None   # None: an accuracy unit, a task of its own
    sent: float


@contextmanager
def cluster_backend(address: str | None, tasks: list[PointTask], threads: int | None,
                    previous: dict[str, Any] | None = None) -> Iterator["ClusterBackend"]:
    """Connected to the cluster (or a local instance started) and checked for a measuring slot if
    the run has timing units; the backend measures in that session and disconnects after."""
    require_ray()
    with connect(address) as session:
        units = [Unit(i, tuple(point)) for i, point in enumerate(points(tasks))]
        if any(not u.shares_node for u in units) and not measuring_nodes(cluster_nodes()):
            raise no_slot_error(address)
        yield ClusterBackend(session, threads, previous)


class ClusterBackend:
    """Measures a run's points on the connected cluster (runner.Backend)."""

    def __init__(self, session: Session, threads: int | None, previous: dict[str, Any] | None = None) -> None:
        self.session = session
        self.threads = threads
        commit, dirty = git_state()
        self.code = {"driver_commit": commit, "driver_dirty": dirty, "source_digest": source_digest(CODE_ROOT)}
        earlier = previous if previous and previous.get("kind") == "ray" else {}
        self.nodes: dict[str, dict[str, Any]] = dict(earlier.get("nodes") or {})  # every session's nodes
        self.overheads: list[float] = []
        self.first_measurer_s: float | None = None  # this session's wait for its first measurer

    def record(self) -> dict[str, Any]:
        overhead = ({"units": len(self.overheads), "mean": round(fmean(self.overheads), 4),
                     "max": round(max(self.overheads), 4)} if self.overheads else None)
        # Copies: the runner compares this record with the last one it wrote, so it must not
        # share the dicts that later units change.
        return {"kind": "ray", **self.session.record(), "code": dict(self.code), "nodes": copy.deepcopy(self.nodes),
                # Of the latest session: per timing unit, its round trip on the driver less its time
                # on the node (what the executor adds per unit, bench_ray.py), and once per session
                # the wait for the first measurer (a Ray worker, its fork server, the fingerprint).
                "unit_overhead_s": overhead, "first_measurer_s": self.first_measurer_s}

    def measure(self, run: RunDir, groups: list[list[PointTask]], say: Callable[[str], None]) -> Iterator[PointRows]:
        units = [Unit(i, tuple(point)) for i, point in enumerate(groups)]
        timing = deque(u for u in units if not u.shares_node)
        shared = [u for u in units if u.shares_node]
        ledger = start_ledger()
        pool = MeasurerPool(self.threads, ledger, self.code["source_digest"])
        flights: dict[Any, Flight] = {}
        waiting_since: float | None = None
        began, finished, last = time.monotonic(), False, ""
        try:
            while timing or flights or shared:
                if timing or any(f.measurer for f in flights.values()):
                    pool.reconcile()
                    self._dispatch(timing, pool, flights)
                    say(f"{pool.busy()} of {count(pool.size(), 'measuring slot')} busy, "
                        f"{count(len(timing), 'unit')} queued{last}")
                    waiting_since = self._patience(timing, pool, waiting_since, say)
                elif shared:
                    # Timing done: measurers go, their cores back to Ray, and the accuracy units,
                    # which may share nodes, are submitted (earlier they could starve a measurer
                    # waiting for a node's CPUs).
                    pool.release()
                    self._submit_shared(shared, ledger, flights)
                    shared = []
                pending = [*flights, *pool.starting()]
                if not pending:  # nothing to wait for until the cluster changes
                    time.sleep(WAIT_S)
                    continue
                ready, _ = ray.wait(pending, num_returns=1, timeout=WAIT_S)
                for ref in ready:
                    if ref in flights:
                        point, rows, node = self._land(flights.pop(ref), ref, pool)
                        last = f"; last: {describe(point)} on {node}"
                        if not timing and not any(f.measurer for f in flights.values()):
                            say(f"{count(len(flights), 'accuracy unit')} running{last}" if flights else f"done{last}")
                        yield point, rows
                    else:
                        if (warning := pool.reported(ref)) is not None:
                            warnings.warn(warning, ClusterWarning, stacklevel=1)
                        self.nodes.update(pool.reports)
                        if self.first_measurer_s is None and pool.idle():
                            self.first_measurer_s = round(time.monotonic() - began, 3)
            finished = True
        finally:
            # Interrupted (Ctrl-C, an error, the runner closing us): cancel what is pending and kill
            # what is measuring; nothing of it was stored, so a resume measures it again. A failing
            # clean-up step (the cluster gone too) must not hide why the run stopped.
            for ref, flight in flights.items():
                if flight.measurer is None:
                    _quietly(ray.cancel, ref, force=True)
            _quietly(pool.release, abort=not finished)
            _quietly(ray.kill, ledger)

    def _patience(self, timing: deque[Unit], pool: MeasurerPool, since: float | None,
                  say: Callable[[str], None]) -> float | None:
        """Timing units and no node able to measure them: stop at once if every measuring node was
        refused (it runs other code), else wait (an autoscaler may add a node, a dead one may come
        back), saying so, and stop after NO_SLOT_PATIENCE_S. Either way the run is left resumable."""
        if not timing or pool.usable():
            return None
        unmeasured = f"{len(timing)} timing units were left unmeasured (resume the run once that is fixed)"
        if pool.refused:
            raise ClusterError(f"no measuring node runs this checkout's code ({'; '.join(pool.warnings)}); "
                               f"{unmeasured}")
        now = time.monotonic()
        since = now if since is None else since
        say(f"{len(timing)} timing units waiting for a node with a measuring slot")
        if now - since > NO_SLOT_PATIENCE_S:
            raise ClusterError(f"{no_slot_error(self.session.address)}; {unmeasured}")
        return since

    def _dispatch(self, timing: deque[Unit], pool: MeasurerPool, flights: dict[Any, Flight]) -> None:
        """Each idle measurer gets the first queued unit it can measure (a CUDA unit needs a slot
        with GPUs, while the cluster has any; a CPU unit goes anywhere)."""
        gpus_here = pool.has_gpus()
        for measurer in pool.idle():
            unit = next((u for u in timing if not u.gpus or not gpus_here or measurer.gpus >= u.gpus), None)
            if unit is None:
                continue
            timing.remove(unit)
            measurer.busy = True
            flights[measurer.handle.measure.remote(unit)] = Flight(unit, measurer, time.monotonic())

    def _submit_shared(self, shared: list[Unit], ledger: Any, flights: dict[Any, Flight]) -> None:
        remote = ray.remote(max_calls=1)(measure_shared)  # a fresh process per unit (not an .options() key)
        for unit in shared:
            task = remote.options(num_cpus=max(self.threads or 1, 1), num_gpus=unit.gpus, max_retries=0,
                                  retry_exceptions=False)
            flights[task.remote(unit, ledger, self.threads)] = Flight(unit, None, time.monotonic())

    def _land(self, flight: Flight, ref: Any, pool: MeasurerPool) -> tuple[list[PointTask], list[dict[str, Any]], str]:
        """A unit came back: its rows, or failed rows saying why it did not; and its node's label."""
        measurer = flight.measurer
        try:
            result: UnitResult = ray.get(ref)
        except RayError as error:
            node = measurer.identity if measurer is not None else None
            if measurer is not None and isinstance(error, RayActorError):
                pool.lost(measurer)  # its node or its process died: the pool replaces it if it can
            elif measurer is not None:
                measurer.busy = False  # the unit raised; the measurer itself is fine
            rows = failed_rows(flight.unit, failure_reason(error), node)
            return flight.unit.point, rows, node.label if node is not None else "a node that did not say"
        if measurer is not None:
            measurer.busy = False
            self.overheads.append(time.monotonic() - flight.sent - result.on_node_s)
        if result.report is not None:
            self.nodes[result.report.node.label] = result.report.record(self.code["source_digest"])
        return flight.unit.point, result.rows, result.node.label


def _quietly(step: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    try:
        step(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - reported, and the clean-up goes on
        warnings.warn(f"cluster clean-up: {failure_reason(error, 200)}", ClusterWarning, stacklevel=2)
