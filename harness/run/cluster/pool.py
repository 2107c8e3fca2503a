"""The measurers of a run: one NodeMeasurer actor per measuring slot of every live node.

The pool follows the cluster as the run goes: a node that joins gets measurers, a measurer that
died on a node still alive is replaced (a few times at most), a node whose measurer reports other
code than the driver's is refused and never measures. Which measurer is idle is the driver's
question; where an actor may go (its node, its slot, its CPUs and GPUs) is Ray's placement.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from harness.run.cluster.nodes import ClusterNode, cluster_nodes, measuring_nodes
from harness.run.cluster.remote import NodeMeasurer
from harness.run.cluster.unit import NodeIdentity, NodeReport, failure_reason

# How often the cluster's membership is read again, and how often one slot's measurer is started
# before the slot is given up (a measurer that keeps dying would otherwise be restarted forever).
RECONCILE_S = 2.0
STARTS_PER_SLOT = 3
CLOSE_TIMEOUT_S = 10.0


@dataclass
class Measurer:
    node: ClusterNode
    slot: int
    handle: Any                      # the actor
    starting: Any | None             # its report() call while it starts; None once it reported
    gpus: float = 0.0
    busy: bool = False

    @property
    def identity(self) -> NodeIdentity:
        return NodeIdentity(self.node.node_id, self.node.hostname, self.node.ip)


@dataclass
class MeasurerPool:
    threads: int | None
    ledger: Any
    driver_digest: str
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)  # node label → manifest entry
    refused: dict[str, str] = field(default_factory=dict)             # node id → why it never measures
    warnings: list[str] = field(default_factory=list)                 # what reported() said, in order
    _measurers: dict[tuple[str, int], Measurer] = field(default_factory=dict)
    _starts: dict[tuple[str, int], int] = field(default_factory=dict)
    _nodes: list[ClusterNode] = field(default_factory=list)
    _read_at: float = -RECONCILE_S

    def __post_init__(self) -> None:
        self._actor_class = ray.remote(NodeMeasurer)  # once per run: each ray.remote exports the class

    # ---- following the cluster ---------------------------------------------------------------
    def reconcile(self) -> None:
        """Drop the idle measurers of dead nodes and start one on every free slot of every live
        node (at most every RECONCILE_S)."""
        if time.monotonic() - self._read_at < RECONCILE_S:
            return
        self._read_at = time.monotonic()
        self._nodes = cluster_nodes()
        alive = {n.node_id for n in self._nodes if n.alive}
        for measurer in list(self._measurers.values()):
            if measurer.node.node_id not in alive and not measurer.busy:  # a busy one fails its unit
                self._drop(measurer)
        for node in measuring_nodes(self._nodes):
            if node.node_id in self.refused:
                continue
            for slot in range(node.slots):
                key = (node.node_id, slot)
                if key not in self._measurers and self._starts.get(key, 0) < STARTS_PER_SLOT:
                    self._start(node, slot)

    def _start(self, node: ClusterNode, slot: int) -> None:
        share = node.slot_share()
        actor = self._actor_class.options(
            **share, max_restarts=0, max_task_retries=0,
            # A second thread, so abort() reaches a measurer busy measuring.
            max_concurrency=2,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False))
        handle = actor.remote(self.threads, self.ledger)
        key = (node.node_id, slot)
        self._starts[key] = self._starts.get(key, 0) + 1
        self._measurers[key] = Measurer(node, slot, handle, handle.report.remote(), gpus=share["num_gpus"])

    def starting(self) -> list[Any]:
        """The report() calls of measurers still starting: the driver waits on them with its units."""
        return [m.starting for m in self._measurers.values() if m.starting is not None]

    def reported(self, ref: Any) -> str | None:
        """A starting measurer's report came back: record its node and put it to work, or refuse
        the node (other code than the driver's, or it could not start). Returns a warning, if any."""
        measurer = next(m for m in self._measurers.values() if m.starting == ref)
        measurer.starting = None
        try:
            report: NodeReport = ray.get(ref)
        except RayError as error:
            self._drop(measurer)
            return self._warn(f"no measurer on {measurer.node.label}: {failure_reason(error, 300)}")
        self.reports[report.node.label] = report.record(self.driver_digest)
        if report.source_digest != self.driver_digest:
            self.refused[measurer.node.node_id] = "runs other code than the driver"
            self._drop(measurer)
            return self._warn(f"{report.node.label} imports other code than this checkout (source digest "
                              f"{report.source_digest}, here {self.driver_digest}): it measures nothing in this run")
        return None

    def _warn(self, message: str) -> str:
        self.warnings.append(message)
        return message

    # ---- measuring ---------------------------------------------------------------------------
    def idle(self) -> list[Measurer]:
        return [m for m in self._measurers.values() if m.starting is None and not m.busy]

    def busy(self) -> int:
        return sum(m.busy for m in self._measurers.values())

    def size(self) -> int:
        return len(self._measurers)

    def has_gpus(self) -> bool:
        """Whether any live measuring node has a GPU (else a CUDA unit goes anywhere, to be
        recorded skipped as a local run would)."""
        return any(n.gpus > 0 for n in measuring_nodes(self._nodes) if n.node_id not in self.refused)

    def usable(self) -> bool:
        """Whether any measurer exists, or a live measuring node may still get one."""
        return bool(self._measurers) or any(
            n.node_id not in self.refused and any(self._starts.get((n.node_id, s), 0) < STARTS_PER_SLOT
                                                  for s in range(n.slots))
            for n in measuring_nodes(self._nodes))

    def lost(self, measurer: Measurer) -> None:
        """A measurer's actor died (its node, or its process): gone from the pool; reconcile()
        replaces it if its node is still alive."""
        self._drop(measurer)
        self._read_at = -RECONCILE_S  # look at the cluster again at once

    def _drop(self, measurer: Measurer) -> None:
        self._measurers.pop((measurer.node.node_id, measurer.slot), None)
        try:
            ray.kill(measurer.handle, no_restart=True)
        except RayError:  # already gone with its node
            pass

    def release(self, abort: bool = False) -> None:
        """Let every measurer go, its slot, CPUs and GPUs back to Ray. `abort`: kill the workers of
        units still being measured first (an interrupted run); else close the fork servers."""
        measurers = list(self._measurers.values())
        calls = [m.handle.abort.remote() if abort else m.handle.close.remote() for m in measurers if m.starting is None]
        if calls:
            ray.wait(calls, num_returns=len(calls), timeout=CLOSE_TIMEOUT_S)
        for measurer in measurers:
            self._drop(measurer)
