"""The `accuracy` metric of one (point, variant): train on a task, evaluate on held-out data; with
the `redundancy` metric, also measure attention redundancy on the trained and initial models."""

from __future__ import annotations

from typing import Any

from harness.suite.task import PointTask


def measure_accuracy(task: PointTask) -> dict[str, Any]:
    from harness.measure.training import train_and_evaluate

    if task.accuracy is None:
        raise ValueError("the accuracy metric needs an `accuracy:` block in the suite")
    return train_and_evaluate(task.model, task.model_config, task.accuracy, device=task.device,
                              threads=task.measure.threads, redundancy="redundancy" in task.metrics)
