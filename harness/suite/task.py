"""What a suite expands into: one `PointTask` per (point, variant), and the settings it carries.

A `PointTask` is what the runner hands a worker process: everything needed to measure one
(point, variant), in JSON-able values so it can cross a process (or a cluster) boundary. What comes
back, the result row, is described in harness/results/schema.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from harness.tasks import task_class

Mode = Literal["forward", "train"]
Metric = Literal["time", "memory", "flops", "accuracy", "redundancy"]
# How the variants of a point share the machine while they are timed: workers alive at once taking
# turns one timed step each ("lockstep"), or one worker after another ("sequential").
Pairing = Literal["lockstep", "sequential"]

METRICS: tuple[str, ...] = get_args(Metric)


@dataclass(frozen=True)
class MeasureConfig:
    """How hard to try when timing one (point, variant)."""

    warmup: int = 3            # untimed steps first: allocator, caches, lazy init
    min_reps: int = 5          # never stop before this many timed steps
    max_reps: int = 50
    target_ci: float = 0.02    # stop once the 95% CI of the median is within ±target_ci of it
    max_seconds: float = 10.0  # time budget for the timed steps of one (point, variant)
    timeout: float = 300.0     # a worker still running after this is killed and the point fails
    threads: int | None = None  # torch intra-op threads; None keeps torch's default (recorded either way)
    # Lockstep by default: a ratio of two timings taken seconds apart is at the mercy of whatever
    # else the machine did in between; steps taken in turn share the moment.
    pairing: Pairing = "lockstep"
    # Rounds of fresh workers per point, sharing the timing budget above (split, not multiplied):
    # the round is the unit of replication, since each process has its own memory layout, and a
    # ratio's interval is Student's t over the rounds. Three: with two, that t has one degree of
    # freedom and the interval is 12.7 standard errors wide either way (4.3 with three); each
    # round past the first costs every variant only a fork, a model build and its warm-up steps.
    rounds: int = 3


@dataclass(frozen=True)
class AccuracyConfig:
    """Training budget for the `accuracy` metric (same for every variant of a suite)."""

    task: str = "digits"
    seeds: tuple[int, ...] = (0, 1, 2)
    train_steps: int = 300
    eval_every: int = 50       # learning-curve resolution, in steps
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 20
    task_options: dict[str, Any] = field(default_factory=dict)  # task-specific (seq_len, n_pairs, ...)


@dataclass(frozen=True)
class PointTask:
    """One (point, variant) to measure."""

    point_id: str                  # stable across runs: a hash of the variant's view of the point
    variant: str                   # suite label, e.g. "reuse"
    model: str                     # registry name ("baseline", "reuse") or "package.module:callable"
    model_config: dict[str, Any]   # resolved model config: shared + variant overrides + swept model keys
    axes: dict[str, Any]           # this point's swept values as the variant sees them (unconcerned keys dropped)
    device: str                    # "cpu", "cuda", "cuda:1"
    mode: str                      # "forward" | "train"
    seq_len: int
    batch_size: int
    seed: int
    metrics: tuple[str, ...]
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    accuracy: AccuracyConfig | None = None
    compile: bool = False          # torch.compile the model first (a variant key or a sweep axis)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PointTask":
        data = dict(data)
        data["measure"] = MeasureConfig(**data["measure"])
        if data.get("accuracy") is not None:
            acc = dict(data["accuracy"])
            acc["seeds"] = tuple(acc["seeds"])
            data["accuracy"] = AccuracyConfig(**acc)
        data["metrics"] = tuple(data["metrics"])
        return cls(**data)


def accuracy_config(task: str, **explicit: Any) -> AccuracyConfig:
    """The task's default budget, with whatever the suite set explicitly on top.

    A suite that only names the task gets a budget sized for this project's CPU suite. Call this
    where the suite's `accuracy:` block is read, passing only the keys the user wrote.
    """
    fields = {"task": task, **task_class(task).default_budget.training_fields(), **explicit}
    if "seeds" in fields:
        fields["seeds"] = tuple(fields["seeds"])
    return AccuracyConfig(**fields)
