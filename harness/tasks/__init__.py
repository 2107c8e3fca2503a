"""Accuracy tasks by name: `get_task("digits", batch_size=32)`."""

from __future__ import annotations

from typing import Any

from harness.tasks.associative_recall import AssociativeRecall
from harness.tasks.base import IGNORE_INDEX, Budget, Split, Task, TaskOptionError
from harness.tasks.digits import Digits
from harness.tasks.listops import ListOps

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in (Digits, AssociativeRecall, ListOps)}


class UnknownTaskError(LookupError):
    pass


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise UnknownTaskError(f"unknown accuracy task {name!r}: expected one of {sorted(TASKS)}")
    return TASKS[name]


def get_task(name: str, **options: Any) -> Task:
    """A task instance with validated options; data is built lazily on first use."""
    return task_class(name)(**options)


__all__ = ["IGNORE_INDEX", "TASKS", "Budget", "Split", "Task", "TaskOptionError", "UnknownTaskError",
           "get_task", "task_class"]
