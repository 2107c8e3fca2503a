"""The cluster's nodes as the driver sees them: alive or not, CPUs, GPUs and measuring slots, and
what one measuring slot of a node holds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import ray

from harness.run.cluster.settings import SLOT_RESOURCE, ClusterError, slot_node_command


@dataclass(frozen=True)
class ClusterNode:
    node_id: str
    hostname: str
    ip: str
    alive: bool
    resources: dict[str, float] = field(default_factory=dict)  # the node's totals, as Ray counts them

    @property
    def label(self) -> str:
        return f"{self.hostname}/{self.node_id[:8]}"

    @property
    def cpus(self) -> float:
        return float(self.resources.get("CPU", 0.0))

    @property
    def gpus(self) -> float:
        return float(self.resources.get("GPU", 0.0))

    @property
    def slots(self) -> int:
        return int(self.resources.get(SLOT_RESOURCE, 0.0))

    def slot_share(self) -> dict[str, Any]:
        """What a measurer asks for to hold one measuring slot: the slot, and its part of the
        node's CPUs and GPUs (all of them with one slot per node, the setup for CPU timings), so
        Ray places nothing else on those cores while it measures, and hands it its GPUs
        (CUDA_VISIBLE_DEVICES: a cuda point on a slot of a GPU node measures that slot's GPU)."""
        slots = max(self.slots, 1)
        return {"num_cpus": _part(self.cpus, slots), "num_gpus": _part(self.gpus, slots),
                "resources": {SLOT_RESOURCE: 1}}

    def describe(self) -> str:
        state = "" if self.alive else "  (dead)"
        return (f"  {self.label:<32} {self.ip:<15} CPUs {self.cpus:g}  GPUs {self.gpus:g}  "
                f"measuring slots {self.slots}{state}")


def _part(total: float, slots: int) -> float:
    # Whole CPUs or GPUs per slot when there are enough to go round, so no two slots share one.
    share = total / slots
    return float(math.floor(share)) if share >= 1 else share


def cluster_nodes() -> list[ClusterNode]:
    """Every node Ray knows of (dead ones too), in a stable order."""
    nodes = [ClusterNode(node_id=n["NodeID"], hostname=n.get("NodeManagerHostname") or "?",
                         ip=n.get("NodeManagerAddress") or "?", alive=bool(n.get("Alive")),
                         resources={k: float(v) for k, v in (n.get("Resources") or {}).items()})
             for n in ray.nodes()]
    return sorted(nodes, key=lambda n: (not n.alive, n.hostname, n.node_id))


def measuring_nodes(nodes: list[ClusterNode]) -> list[ClusterNode]:
    return [n for n in nodes if n.alive and n.slots > 0]


def no_slot_error(address: str | None) -> ClusterError:
    where = f"the Ray cluster at {address}" if address else "the local Ray instance"
    return ClusterError(f"no node of {where} has a measuring slot (the `{SLOT_RESOURCE}` resource), so no timing "
                        f"point can be measured: start each measuring node with `{slot_node_command()}` (one slot "
                        "per node; a GPU node may have one per GPU)")
