"""A unit of cluster work (one point with all its variants) and what it comes back as.

Ray-free on purpose: the driver builds units and turns a failed one into rows, a node runs them,
and both sides share these definitions (the node imports them from the shipped checkout).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from harness.run.executor import Executor
from harness.run.rounds import measure_tasks
from harness.run.worker import base_row
from harness.suite.task import PointTask


@dataclass(frozen=True)
class Unit:
    """One point and all its variants, measured together on one node: the pairs a ratio is made
    of are never split across machines. `index` is the point's place in the run (it rotates the
    order of the point's rounds, as in a local run)."""

    index: int
    tasks: tuple[PointTask, ...]

    @property
    def point(self) -> list[PointTask]:
        return list(self.tasks)

    @property
    def key(self) -> str:
        """Names the unit across attempts (the attempt ledger counts starts per key)."""
        ids = "|".join(f"{t.point_id}/{t.variant}" for t in self.tasks)
        return hashlib.sha1(ids.encode()).hexdigest()[:16]

    @property
    def shares_node(self) -> bool:
        """Whether the unit may run beside others: only when every variant trains for accuracy,
        which measures no time; anything timed needs the node to itself."""
        return all("accuracy" in t.metrics for t in self.tasks)

    @property
    def gpus(self) -> int:
        """How many GPUs the unit's device needs on its node (cuda:1 needs two), 0 on CPU."""
        device = self.tasks[0].device
        if not device.startswith("cuda"):
            return 0
        _, _, index = device.partition(":")
        return int(index or 0) + 1


@dataclass(frozen=True)
class NodeIdentity:
    """Which node measured a row: `label` (hostname and the short Ray node id) and its address."""

    node_id: str
    hostname: str
    ip: str

    @property
    def label(self) -> str:
        return f"{self.hostname}/{self.node_id[:8]}"

    def row_fields(self) -> dict[str, Any]:
        return {"node": self.label, "node_ip": self.ip}


@dataclass
class NodeReport:
    """What a node says of itself before it measures: the environment fingerprint a local run
    records (taken there), and the digest of the sources it imports (code.source_digest)."""

    node: NodeIdentity
    environment: dict[str, Any]
    source_digest: str

    def record(self, driver_digest: str) -> dict[str, Any]:
        """The manifest's entry for this node."""
        return {"node_id": self.node.node_id, "hostname": self.node.hostname, "ip": self.node.ip,
                "source_digest": self.source_digest, "runs_driver_code": self.source_digest == driver_digest,
                "environment": self.environment}


@dataclass
class UnitResult:
    """A unit's rows as its node measured them, and how long the node spent on it."""

    index: int
    rows: list[dict[str, Any]]
    node: NodeIdentity
    attempt: int | None          # 0: first start; None: the attempt ledger could not be asked
    on_node_s: float             # from the unit's start on the node to its rows being ready
    report: NodeReport | None = field(default=None)  # set by units that ran outside a measurer


def stamp(rows: list[dict[str, Any]], node: NodeIdentity | None, attempt: int | None) -> list[dict[str, Any]]:
    """Every row says where it was measured and whether its unit had been started before."""
    fields = node.row_fields() if node is not None else {"node": None, "node_ip": None}
    for row in rows:
        row.update(fields, retried=None if attempt is None else attempt > 0)
    return rows


def run_unit(executor: Executor, unit: Unit, node: NodeIdentity, attempt: int | None) -> UnitResult:
    """Measure a unit on this node with `executor`, exactly as a local run measures a point."""
    began = time.monotonic()
    rows = stamp(measure_tasks(executor, unit.point, unit.index), node, attempt)
    return UnitResult(unit.index, rows, node, attempt, time.monotonic() - began)


def failed_rows(unit: Unit, reason: str, node: NodeIdentity | None) -> list[dict[str, Any]]:
    """A unit that did not come back (its node died, its process crashed, it raised): every
    variant failed with the reason."""
    return stamp([{**base_row(task), "status": "failed", "error": reason} for task in unit.tasks], node, None)


def failure_reason(error: BaseException, limit: int = 600) -> str:
    """One line for a row's `error`: the exception's type and its message, whitespace folded.

    Ray's actor errors list details on tab-indented lines (class, actor id, pid, namespace, ip)
    between the headline and the cause; the cause comes first here, with the ip and pid after it."""
    cause = getattr(error, "cause", None)  # a RayTaskError carries the unit's own exception
    shown = cause if isinstance(cause, BaseException) else error
    lines = str(shown).splitlines()
    details = dict(line.strip().split(": ", 1) for line in lines if line.startswith("\t") and ": " in line)
    where = ", ".join(f"{key} {details[key]}" for key in ("ip", "pid") if key in details)
    text = " ".join(" ".join(line for line in lines if not line.startswith("\t")).split())
    text = f"{type(shown).__name__}: {text}" + (f" ({where})" if where else "")
    return text if len(text) <= limit else text[: limit - 1] + "…"
