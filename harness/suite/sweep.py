"""Sweep expansion: a validated Suite -> the (point, variant) tasks the runner measures.

A *point* is one combination of swept values: the cartesian product of the plain axes, times the
zip groups (axes varied together), minus excluded combinations. Each point is measured once per
variant, except that a variant unconcerned by a swept key (the baseline by `reuse_ratio`) sees the
same model at every value of it, so it is measured once and not once per value: its tasks get the
same point_id and are deduplicated.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

from harness.suite.task import AccuracyConfig, MeasureConfig, PointTask, accuracy_config
from harness.stats import MIN_SAMPLES_FOR_CI
from models.config import REUSE_KEYS, TransformerConfig

if TYPE_CHECKING:
    from harness.suite.loading import Suite

Point = dict[str, Any]  # axis -> value, for one combination of swept values

# Assumed sustained float32 throughput for the dry-run estimate. The CPU figure is what this
# project's 2-core dev box reaches on the matmuls that dominate a Transformer step; the GPU figure
# is a deliberately modest one for an unknown data-center GPU running eager float32.
CPU_FLOPS_PER_S = 50e9
GPU_FLOPS_PER_S = 10e12
# Workers fork from a server that imported torch once (harness/run/executor.py): the server start is
# paid once per run (`import torch`, ~2.5 s on the dev box), a fork plus model build once per point.
RUN_START_S = 2.5
WORKER_START_S = 0.3
# Eager attention is bound by memory traffic over the materialized probabilities, not by FLOPs:
# DESIGN.md §2 measured eager 244 ms vs SDPA 44 ms (B=4, H=8, n=1024, forward) on the dev box,
# i.e. this many extra seconds per probability a layer computes itself on CPU.
EAGER_S_PER_PROB = (0.244 - 0.044) / (4 * 8 * 1024 * 1024)


# ---- points ----------------------------------------------------------------------------------
def combinations(sweep: Mapping[str, Sequence[Any]],
                 zip_groups: Sequence[Mapping[str, Sequence[Any]]] = (),
                 exclude: Sequence[Mapping[str, Sequence[Any]]] = ()) -> list[Point]:
    """Every point of the sweep, in a deterministic order (plain axes first, as written).

    An exclude rule maps axes to the values it matches; a point matching every axis of a rule is
    dropped.
    """
    factors: list[list[Point]] = [[{axis: value} for value in values] for axis, values in sweep.items()]
    for group in zip_groups:
        length = len(next(iter(group.values())))
        factors.append([{axis: values[i] for axis, values in group.items()} for i in range(length)])
    points = []
    for parts in itertools.product(*factors):
        point: Point = {}
        for part in parts:
            point.update(part)
        if not any(all(axis in point and point[axis] in values for axis, values in rule.items())
                   for rule in exclude):
            points.append(point)
    return points


def ignored_keys(model: str) -> frozenset[str]:
    """Model config keys that `model` does not read, so sweeping them does not change it."""
    try:
        from models.registry import ignored_keys as registry_ignored_keys
    except ImportError as error:
        if error.name != "models.registry":  # a real bug inside the registry must not be masked
            raise
        return _ignored_keys_without_registry(model)
    return registry_ignored_keys(model)


def _ignored_keys_without_registry(model: str) -> frozenset[str]:
    # Used only until models/registry.py lands: the baseline is the reuse family with reuse off.
    return REUSE_KEYS if model == "baseline" else frozenset()


def variant_view(shared: Mapping[str, Any], model: str, overrides: Mapping[str, Any],
                 point: Point) -> tuple[dict[str, Any], dict[str, Any]]:
    """(model config, axes) of one variant at one point, with keys the model ignores dropped.

    Ignored keys are dropped from the shared config too: a baseline must not carry (and report)
    a reuse_ratio it does not apply.
    """
    ignored = ignored_keys(model)
    fields = set(TransformerConfig.fields())
    axes = {axis: value for axis, value in point.items() if axis not in ignored}
    config = {k: v for k, v in {**shared, **overrides}.items() if k not in ignored}
    config.update({axis: value for axis, value in axes.items() if axis in fields})
    return config, axes


# ---- identity --------------------------------------------------------------------------------
def point_id(variant: str, model: str, config: Mapping[str, Any], device: str, mode: str,
             seq_len: int, batch_size: int, task: str | None = None) -> str:
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
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha1(canonical.encode("utf-8")).hexdigest()[:10]
    prefix = f"{task}-" if task is not None else ""
    prefix += f"{device}-{mode}-{resolved.backend}-n{seq_len}-b{batch_size}"
    return f"{re.sub(r'[^A-Za-z0-9-]+', '', prefix)}-{digest}"


def group_key(task: PointTask) -> tuple[Any, ...]:
    """Identifies a point across variants, for comparing them (reuse ÷ baseline).

    (device, mode, seq_len, batch_size, then the other swept model keys as sorted (key, value)
    pairs) with reuse keys left out (the baseline has none) and backend left out, so that reuse
    on eager can be set against the baseline on both eager and SDPA (DESIGN.md §2). Tasks with
    equal group keys differ only in variant, reuse settings and backend.
    """
    point_axes = ("device", "mode", "seq_len", "batch_size")
    others = tuple(sorted((k, v) for k, v in task.axes.items()
                          if k not in REUSE_KEYS and k != "backend" and k not in point_axes))
    return (task.device, task.mode, task.seq_len, task.batch_size, others)


# ---- expansion -------------------------------------------------------------------------------
def expand(suite: "Suite") -> list[PointTask]:
    """All (point, variant) tasks of a suite, each point_id once, in sweep order then variant order."""
    tasks: list[PointTask] = []
    seen: set[str] = set()
    points = combinations(suite.sweep, suite.zip_groups, suite.exclude)
    for point in points:
        for label, variant in suite.variants.items():
            config, axes = variant_view(suite.model, variant.model, variant.overrides, point)
            device, mode = point["device"], point["mode"]
            seq_len, batch_size = point["seq_len"], point["batch_size"]
            pid = point_id(label, variant.model, config, device, mode, seq_len, batch_size, point.get("task"))
            if pid in seen:
                continue
            seen.add(pid)
            tasks.append(PointTask(
                point_id=pid, variant=label, model=variant.model,
                model_config=TransformerConfig.from_dict(config).to_dict(),
                axes=axes, device=device, mode=mode, seq_len=seq_len, batch_size=batch_size,
                seed=suite.seed, metrics=suite.metrics, measure=suite.measure,
                accuracy=_accuracy_at(suite, point),
            ))
    return tasks


def _accuracy_at(suite: "Suite", point: Point) -> AccuracyConfig | None:
    """The training budget at a point: the keys the suite wrote over the task's own budget."""
    if suite.accuracy is None:
        return None

    written = {k: getattr(suite.accuracy, k) for k in suite.accuracy_written if k != "task"}
    return accuracy_config(point.get("task", suite.accuracy.task), **written)


# ---- dry-run estimate ------------------------------------------------------------------------
def step_flops(config: TransformerConfig, batch_size: int, seq_len: int, mode: str,
               device: str = "cpu") -> float:
    """FLOPs of one step: models/cost.py's analytic model when present, else a matmul count."""
    try:
        from models.cost import analytic_cost
    except ImportError as error:
        if error.name != "models.cost":
            raise
        return _matmul_flops(config, batch_size, seq_len, mode)
    device_type = device.split(":")[0]
    return float(analytic_cost(config, batch_size, seq_len, mode, device_type=device_type).total)


def _matmul_flops(c: TransformerConfig, batch_size: int, seq_len: int, mode: str) -> float:
    # Matmuls only (a multiply-add is 2 FLOPs); causal masking is not discounted because the
    # kernels still compute the full score matrix. Backward costs about twice the forward.
    n, d, dh = seq_len, c.d_model, c.d_head
    total = 0.0
    for layer in range(c.n_layers):
        new = c.new_heads(layer)
        total += 2 * n * d * (2 * new * dh)        # Q and K projections, new heads only
        total += 2 * n * d * d * 2                 # V for all heads, output projection
        total += 2 * new * n * n * dh              # Q K^T, new heads only
        total += 2 * c.n_heads * n * n * dh        # P V, every head
        total += 2 * n * d * c.d_ff * 2           # MLP up and down
    if c.task_head == "lm":
        total += 2 * n * d * c.vocab_size
    total *= batch_size
    return 3 * total if mode == "train" else total


def estimate_seconds(tasks: Iterable[PointTask], measure: MeasureConfig | None = None, *,
                     worst_case: bool = False) -> float:
    """Rough wall time of running `tasks` one after another, for a dry run.

    A worker server start per run and a worker per point, then per task: the warmup steps (the
    memory and flops passes ride on the last of them, see harness/measure/speed.py), the timed
    steps and the accuracy training runs. Timed steps are min_reps, or 6 when the budget allows
    (the fewest from which the CI rule may stop the loop, once timings agree), or with `worst_case` as many as max_reps or max_seconds allow (timings that
    never settle). `measure` overrides each task's own measure config.
    Step times come from FLOPs at an assumed throughput, so expect a factor of ~2 either way.
    """
    tasks = list(tasks)
    # The runner starts one worker per point and measures all its variants there (runner.points).
    n_points = len({(group_key(t), t.model_config.get("backend")) for t in tasks})
    total = (RUN_START_S if tasks else 0.0) + WORKER_START_S * n_points
    for task in tasks:
        m = measure or task.measure
        # seq_len 0: an accuracy-only suite whose task picks its own length; no speed steps run.
        step = _step_seconds(task, task.mode, task.seq_len) if task.seq_len > 0 else 0.0
        # measure_speed runs at least one warmup step (the memory and flops passes ride on it).
        seconds = max(m.warmup, 1) * step
        if "time" in task.metrics:
            # The CI rule can stop the loop only from MIN_SAMPLES_FOR_CI samples; the budget earlier.
            timed = max(m.min_reps * step, min(MIN_SAMPLES_FOR_CI * step, m.max_seconds, m.max_reps * step))
            seconds += max(timed, min(m.max_reps * step, m.max_seconds)) if worst_case else timed
        if "accuracy" in task.metrics and task.accuracy is not None:
            # The accuracy task may pick its own length (seq_len 0); assume 128 tokens then.
            seq_len = task.seq_len or int(task.accuracy.task_options.get("seq_len", 128))
            train_step = _step_seconds(task, "train", seq_len)
            seconds += len(task.accuracy.seeds) * task.accuracy.train_steps * train_step
        total += min(seconds, m.timeout)
    return total


def _step_seconds(task: PointTask, mode: str, seq_len: int) -> float:
    config = TransformerConfig.from_dict(task.model_config)
    rate = CPU_FLOPS_PER_S if task.device == "cpu" else GPU_FLOPS_PER_S
    seconds = step_flops(config, task.batch_size, seq_len, mode, task.device) / rate
    if config.backend == "eager" and task.device == "cpu":
        probs = sum(config.new_heads(layer) for layer in range(config.n_layers)) * seq_len ** 2
        seconds += EAGER_S_PER_PROB * task.batch_size * probs * (3 if mode == "train" else 1)
    return seconds
