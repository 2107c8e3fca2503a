"""A run's tasks grouped into points, and how a progress line names a point.

A point is everything compared with each other: the variants on every backend at one (device,
mode, seq_len, batch_size, …). Every executor measures a point as a whole (the local runner, the
A/B gate, a Ray cluster's unit of work), so the grouping lives here, below all of them.
"""

from __future__ import annotations

from typing import Any

from harness.suite.sweep import group_key
from harness.suite.task import PointTask

PointRows = tuple[list[PointTask], list[dict[str, Any]]]  # a point, and the rows it came back with


def points(tasks: list[PointTask]) -> list[list[PointTask]]:
    """Group tasks into points (measured together), keeping the sweep's order."""
    groups: dict[tuple[Any, ...], list[PointTask]] = {}
    for task in tasks:
        groups.setdefault(group_key(task), []).append(task)
    return list(groups.values())


def describe(point: list[PointTask]) -> str:
    """The point as a progress line names it."""
    task = point[0]
    backends = "/".join(dict.fromkeys(str(t.model_config.get("backend", "")) for t in point))
    return f"{task.device} {task.mode} {backends} n={task.seq_len} b={task.batch_size}"
