"""Sweep expansion: a validated Suite -> the (point, variant) tasks the runner measures.

Each point of the sweep (points.py) is measured once per variant, except that a variant
unconcerned by a swept key (the baseline by `reuse_ratio`) sees the same model at every value of
it, so it is measured once and not once per value: its tasks get the same point_id and are
deduplicated.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Mapping

from harness.suite.loading import Suite
from harness.suite.points import Point, combinations, variant_view
from harness.suite.sections import POINT_AXES
from harness.suite.task import AccuracyConfig, PointTask, accuracy_config
from models.config import REUSE_KEYS, TransformerConfig


# ---- identity --------------------------------------------------------------------------------
def point_id(variant: str, model: str, config: Mapping[str, Any], device: str, mode: str,
             seq_len: int, batch_size: int, task: str | None = None, compile: bool = False) -> str:
    """Readable prefix + hash of what is measured, e.g. `cpu-train-sdpa-n1024-b4-3f2a9c01de`.

    The hash covers the variant label, the model, the config keys that differ from
    TransformerConfig's defaults, device, mode, seq_len and batch_size, as JSON with sorted keys:
    independent of dict order and of whether a default was spelled out, and unchanged when the
    config gains a new field (so ids in stored baselines keep matching).
    """
    resolved = TransformerConfig.from_dict(dict(config))
    defaults = TransformerConfig().to_dict()
    changed = {k: v for k, v in resolved.to_dict().items() if v != defaults[k]}
    identity = {"variant": variant, "model": model, "config": changed, "device": device,
                "mode": mode, "seq_len": seq_len, "batch_size": batch_size}
    if task is not None:  # only when a task is swept, so ids of other suites stay as they were
        identity["task"] = task
    if compile:  # likewise only when compiled
        identity["compile"] = True
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:10]
    prefix = f"{task}-" if task is not None else ""
    prefix += f"{device}-{mode}-{resolved.backend}{'-compiled' if compile else ''}-n{seq_len}-b{batch_size}"
    return f"{re.sub(r'[^A-Za-z0-9-]+', '', prefix)}-{digest}"


def group_key(task: PointTask) -> tuple[Any, ...]:
    """Identifies a point across variants, for comparing them (reuse ÷ baseline).

    (device, mode, seq_len, batch_size, then the other swept model keys as sorted (key, value)
    pairs) with reuse keys left out (the baseline has none) and backend and compile left out, so
    that reuse on eager can be set against the baseline on both eager and SDPA, compiled or not: a
    fused baseline never materializes attention probabilities, and a comparison with the eager one
    alone would overstate what reuse saves. Tasks with equal group keys differ only in variant,
    reuse settings, backend and compilation.
    """
    others = tuple(sorted((k, v) for k, v in task.axes.items()
                          if k not in REUSE_KEYS and k != "backend" and k not in POINT_AXES))
    return (task.device, task.mode, task.seq_len, task.batch_size, others)


# ---- expansion -------------------------------------------------------------------------------
def expand(suite: Suite) -> list[PointTask]:
    """All (point, variant) tasks of a suite, each point_id once, in sweep order then variant order."""
    tasks: list[PointTask] = []
    seen: set[str] = set()
    points = combinations(suite.sweep, suite.zip_groups, suite.exclude)
    for point in points:
        for label, variant in suite.variants.items():
            config, axes = variant_view(suite.model, variant.model, variant.overrides, point)
            device, mode = point["device"], point["mode"]
            seq_len, batch_size = point["seq_len"], point["batch_size"]
            compiled = point.get("compile", variant.compile)
            pid = point_id(label, variant.model, config, device, mode, seq_len, batch_size, point.get("task"),
                           compiled)
            if pid in seen:
                continue
            seen.add(pid)
            tasks.append(PointTask(
                point_id=pid, variant=label, model=variant.model,
                model_config=TransformerConfig.from_dict(config).to_dict(),
                axes=axes, device=device, mode=mode, seq_len=seq_len, batch_size=batch_size,
                seed=suite.seed, metrics=suite.metrics, measure=suite.measure,
                accuracy=_accuracy_at(suite, point), compile=compiled,
            ))
    return tasks


def _accuracy_at(suite: Suite, point: Point) -> AccuracyConfig | None:
    """The training budget at a point: the keys the suite wrote over the task's own budget."""
    if suite.accuracy is None:
        return None

    written = {k: getattr(suite.accuracy, k) for k in suite.accuracy_written if k != "task"}
    return accuracy_config(point.get("task", suite.accuracy.task), **written)
