"""`harness run SUITE --dry-run --executor ray`: the units a run would send, and the cluster's nodes."""

from __future__ import annotations

from harness.run.cluster.nodes import cluster_nodes, measuring_nodes, no_slot_error
from harness.run.cluster.session import connect
from harness.run.cluster.settings import count
from harness.run.cluster.unit import Unit
from harness.run.points import describe, points
from harness.suite.estimate import estimate_seconds
from harness.suite.loading import Suite
from harness.suite.sweep import expand


def cluster_dry_run(suite: Suite, address: str | None) -> list[str]:
    """One line per unit (a point with its variants, and what it holds while it runs), the nodes of
    the cluster at `address` (a local instance when None, started and stopped for this), and a
    rough time: the local estimate spread over the measuring slots."""
    tasks = expand(suite)
    units = [Unit(i, tuple(point)) for i, point in enumerate(points(tasks))]
    lines = [f"{suite.name}: {len(units)} units of work, {len(tasks)} (point, variant) measurements"]
    for unit in units:
        holds = "shares a node (accuracy: CPUs only)" if unit.shares_node else "a measuring slot (a whole node)"
        variants = ", ".join(t.variant for t in unit.tasks)
        lines.append(f"  unit {unit.index:<4} {describe(unit.point):<36} {holds:<36} {variants}")
    with connect(address) as session:
        nodes = cluster_nodes()
    where = f"Ray cluster at {address}" if address else "a local Ray instance (started for the run)"
    slots = sum(n.slots for n in measuring_nodes(nodes))
    alive = [n for n in nodes if n.alive]
    lines.append(f"{where}: Ray {session.ray_version}, {count(len(alive), 'node')} alive, "
                 f"{count(slots, 'measuring slot')}")
    lines += [node.describe() for node in nodes]
    timing = [u for u in units if not u.shares_node]
    if timing and not slots:
        lines.append(f"cannot run: {no_slot_error(address)}")
    else:
        minutes = estimate_seconds(tasks, suite.measure) / 60 / max(slots, 1)
        lines.append(f"estimated time: {minutes:.1f} min with {count(max(slots, 1), 'slot')} busy at once (the "
                     "local estimate spread over the slots; rough)")
    return lines

