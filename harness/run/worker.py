"""Measure the tasks given, in this (fresh) process: `python -m harness.run.worker`.

    python -m harness.run.worker TASKS.json OUT.jsonl [--artifacts DIR] [--profile torch]

A timed point gives each worker one variant in one round (harness/run/rounds.py); an accuracy
point gives one worker all its variants.

Each task's result row is appended to OUT.jsonl and fsync'ed as soon as it is measured, so a
crash or a kill in a later variant loses nothing already done. A Python exception in one variant
becomes a `failed` row and the next variant still runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from harness.results.jsonl import append_row
from harness.results.schema import RESULT_FIELDS
from harness.suite.task import PointTask
from harness.run.turns import Turns


def base_row(task: PointTask) -> dict[str, Any]:
    """The identifying part of a row, filled in before anything can fail."""
    cfg = task.model_config
    row: dict[str, Any] = {key: None for key in RESULT_FIELDS}
    row.update(
        point_id=task.point_id, variant=task.variant, model=task.model, status="failed",
        device=task.device, mode=task.mode, backend=cfg.get("backend", "sdpa"),
        seq_len=task.seq_len, batch_size=task.batch_size,
        reuse_ratio=cfg.get("reuse_ratio"), reuse_heads=cfg.get("reuse_heads"),
        reuse_source=cfg.get("reuse_source", "previous") if task.model != "baseline" else None,
        axes=task.axes, model_config=cfg, seed=task.seed, compile=task.compile,
        # The settings this row was measured with: an A/B round or a --set override may differ
        # from the suite's own measure block.
        measure=dataclasses.asdict(task.measure),
    )
    if task.model == "baseline":
        row.update(reuse_ratio=None, reuse_heads=None)
    return row


def measure_task(task: PointTask, artifacts: Path | None = None, profile: str | None = None,
                 between_steps: Callable[[], None] | None = None) -> dict[str, Any]:
    row = base_row(task)
    from harness.measure.devices import get_device

    device = get_device(task.device)
    reason = device.availability(task.model_config.get("dtype", "float32"))
    if reason is not None:
        return {**row, "status": "skipped", "error": reason}
    if "accuracy" in task.metrics:
        from harness.measure.accuracy import measure_accuracy

        return {**row, **measure_accuracy(task)}
    from harness.measure.speed import measure_speed

    result: dict[str, Any] = {"status": "ok"}
    if set(task.metrics) - {"redundancy"}:
        result = measure_speed(task, device, artifacts=artifacts, profile=profile, between_steps=between_steps)
    if "redundancy" in task.metrics:  # (in an accuracy suite it is measured on the trained models, above)
        from harness.measure.redundancy import measure_point

        result["redundancy"] = measure_point(task)
    return {**row, **result}


class _TurnLog:
    """This worker's side of a lockstep round: gives the turn back after each timed step, and
    notes when it held the turn (the system's monotonic clock, which every process shares), so a
    row shows that its steps and its partners' took turns."""

    def __init__(self, turns: Turns, device: str) -> None:
        from harness.measure.devices import get_device

        self.turns, self.device = turns, get_device(device)
        self.began = time.monotonic()
        self.spans: list[tuple[float, float]] = []  # (got the turn, gave it back): turn k ends with timed step k

    def give_back(self) -> None:
        self.device.synchronize()  # on CUDA the turn ends when the step's work is done, not queued
        self.spans.append((self.began, time.monotonic()))
        self.turns.give_back()
        self.began = time.monotonic()

    def take(self) -> list[tuple[float, float]]:
        """The spans noted since the last call (those of one task)."""
        spans, self.spans = self.spans, []
        return spans


def run_tasks(tasks: list[PointTask], out: Path, artifacts: Path | None, profile: str | None) -> None:
    turns = Turns.from_env()  # inactive unless a lockstep round conducts this worker
    turns.wait()
    # A worker measures the tasks of one point, so of one device.
    log = _TurnLog(turns, tasks[0].device) if turns.active and tasks else None
    try:
        for task in tasks:
            started = time.time()
            try:
                row = measure_task(task, artifacts=artifacts, profile=profile,
                                   between_steps=log.give_back if log is not None else None)
            except Exception as exc:  # one variant's failure must not cost the others
                row = {**base_row(task), "status": "failed",
                       "error": f"{type(exc).__name__}: {exc}".strip(),
                       "traceback": traceback.format_exc(limit=8)}
            row["worker_pid"] = os.getpid()
            row["started_at"], row["duration_s"] = started, time.time() - started
            if log is not None:
                row["lockstep"] = True
                row["turn_spans_s"] = log.take()
            append_row(out, row)
            gc.collect()  # free the model and activations before the next variant is measured
    finally:
        turns.finish()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.run.worker")
    parser.add_argument("tasks", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--artifacts", type=Path, default=None)
    parser.add_argument("--profile", choices=["torch", "pyspy"], default=None)
    args = parser.parse_args(argv)
    tasks = [PointTask.from_json(t) for t in json.loads(args.tasks.read_text())]
    run_tasks(tasks, args.out, args.artifacts, args.profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
