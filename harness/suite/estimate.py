"""The dry run: what a suite will measure, and roughly how long that takes.

Step times come from the analytic FLOP count (models/cost.py) at an assumed throughput, so expect
a factor of ~2 either way; the estimate is there to tell minutes from hours before a run starts.
"""

from __future__ import annotations

from typing import Iterable

from harness.stats import MIN_SAMPLES_FOR_CI
from harness.suite.loading import Suite
from harness.suite.sweep import expand, group_key
from harness.suite.task import MeasureConfig, PointTask
from models.config import TransformerConfig
from models.cost import analytic_cost

# Assumed sustained float32 throughput. The CPU figure is what this project's 2-core dev box
# reaches on the matmuls that dominate a Transformer step; the GPU figure is a deliberately modest
# one for an unknown data-center GPU running eager float32.
CPU_FLOPS_PER_S = 50e9
GPU_FLOPS_PER_S = 10e12
# Workers fork from a server that imported torch once (harness/run/executor.py): the server start is
# paid once per run (`import torch`, ~2.5 s on the dev box), a fork plus model build once per point.
RUN_START_S = 2.5
WORKER_START_S = 0.3
# Eager attention is bound by memory traffic over the materialized probabilities, not by FLOPs:
# on the dev box (B=4, H=8, d_head=32, n=1024, forward, float32) eager attention took 244 ms and
# SDPA 44 ms, i.e. this many extra seconds per probability a layer computes itself on CPU.
EAGER_S_PER_PROB = (0.244 - 0.044) / (4 * 8 * 1024 * 1024)


def dry_run(suite: Suite) -> list[str]:
    """The lines `harness run --dry-run` prints: one per (point, variant), then the estimate."""
    tasks = expand(suite)
    lines = [f"{suite.name}: {len(tasks)} (point, variant) measurements"]
    for t in tasks:
        lines.append(f"  {t.point_id:<44} {t.variant:<12} {t.device:<5} {t.mode:<8} "
                     f"{t.model_config.get('backend', ''):<6} n={t.seq_len:<6} b={t.batch_size}")
    typical = estimate_seconds(tasks, suite.measure) / 60
    worst = estimate_seconds(tasks, suite.measure, worst_case=True) / 60
    lines.append(f"estimated time: {typical:.1f} min, up to {worst:.1f} min if timings never settle "
                 "(rough: analytic FLOPs at an assumed throughput, capped by each point's budget)")
    return lines


def estimate_seconds(tasks: Iterable[PointTask], measure: MeasureConfig | None = None, *,
                     worst_case: bool = False) -> float:
    """Rough wall time of running `tasks` one after another.

    A worker server start per run and a worker per point, then per task: the warmup steps (the
    memory and flops passes ride on the last of them, see harness/measure/speed.py), the timed
    steps and the accuracy training runs. Timed steps are min_reps, or 6 when the budget allows
    (the fewest from which the CI rule may stop the loop, once timings agree), or with
    `worst_case` as many as max_reps or max_seconds allow (timings that never settle).
    `measure` overrides each task's own measure config.
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
    flops = analytic_cost(config, task.batch_size, seq_len, mode, device_type=task.device.split(":")[0]).total
    seconds = flops / rate
    if config.backend == "eager" and task.device == "cpu":
        probs = sum(config.new_heads(layer) for layer in range(config.n_layers)) * seq_len ** 2
        seconds += EAGER_S_PER_PROB * task.batch_size * probs * (3 if mode == "train" else 1)
    return seconds
