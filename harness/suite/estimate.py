"""The dry run: what a suite will measure, and roughly how long that takes.

Step times come from the analytic FLOP count (models/cost.py) at an assumed throughput, plus a
measured fixed cost per training step for accuracy points, so expect a factor of ~2 either way; the
estimate is there to tell minutes from hours before a run starts.
"""

from __future__ import annotations

from typing import Iterable

from harness.stats import MIN_SAMPLES_FOR_CI
from harness.suite.loading import Suite
from harness.suite.sweep import expand
from harness.suite.task import AccuracyConfig, MeasureConfig, PointTask
from harness.tasks import get_task
from models.config import TransformerConfig
from models.cost import analytic_cost

# Assumed sustained float32 throughput. The CPU figure is what this project's 2-core dev box
# reaches on the matmuls that dominate a Transformer step; the GPU figure is a deliberately modest
# one for an unknown data-center GPU running eager float32.
CPU_FLOPS_PER_S = 50e9
GPU_FLOPS_PER_S = 10e12
# Workers fork from a server that imported torch once (harness/run/forkserver.py): the server start
# is paid once per run (`import torch`, ~2.5 s on the dev box), a fork plus model build once per
# variant and round.
RUN_START_S = 2.5
WORKER_START_S = 0.3
# Eager attention is bound by memory traffic over the materialized probabilities, not by FLOPs:
# on the dev box (B=4, H=8, d_head=32, n=1024, forward, float32) eager attention took 244 ms and
# SDPA 44 ms, i.e. this many extra seconds per probability a layer computes itself on CPU.
EAGER_S_PER_PROB = (0.244 - 0.044) / (4 * 8 * 1024 * 1024)
# Accuracy training: a step of the accuracy tasks' small models (d_model 64, 0.6-1.4 GFLOP) costs
# its FLOPs at CPU_FLOPS_PER_S plus a fixed overhead per step (Python, autograd and AdamW dispatch,
# and the evaluation passes, which run every eval_every steps). Calibrated on the dev box from
# suites/accuracy.yaml (1 thread, 2026-11-29, load average 1.1-2.5 from other work): (training +
# evaluation time) / steps minus FLOPs / CPU_FLOPS_PER_S was 4-16 ms over the 12 points, median 6.4.
TRAIN_STEP_OVERHEAD_S = 0.0065
# Per accuracy point outside its steps: building the task's data, the models, the redundancy
# probe; 0.2-1.5 s in that run (ListOps draws 21k expressions), mean 0.73.
TASK_DATA_S = 0.75


def dry_run(suite: Suite) -> list[str]:
    """The lines `harness run --dry-run` prints: one per (point, variant), then the estimate."""
    tasks = expand(suite)
    lines = [f"{suite.name}: {len(tasks)} (point, variant) measurements"]
    for t in tasks:
        # An accuracy point trains on its task's own batches, whatever the point's mode and sizes.
        what = (f"{'train':<8} {t.model_config.get('backend', ''):<6} {_training_line(t.accuracy)}"
                if _trains(t) else
                f"{t.mode:<8} {t.model_config.get('backend', ''):<6} n={t.seq_len:<6} b={t.batch_size}")
        lines.append(f"  {t.point_id:<44} {t.variant:<12} {t.device:<5} {what}")
    typical = estimate_seconds(tasks, suite.measure) / 60
    worst = estimate_seconds(tasks, suite.measure, worst_case=True) / 60
    lines.append(f"estimated time: {typical:.1f} min, up to {worst:.1f} min if timings never settle "
                 "(rough: analytic FLOPs at an assumed throughput plus a measured cost per training "
                 "step, capped by each point's budget)")
    return lines


def _trains(task: PointTask) -> bool:
    # The worker measures only accuracy (and redundancy on the trained models) at such a point.
    return "accuracy" in task.metrics and task.accuracy is not None


def _training_line(acc: AccuracyConfig) -> str:
    task = get_task(acc.task, **acc.task_options)
    return (f"task={acc.task} steps={acc.train_steps} batch={task.batch_size} n={task.training_length()} "
            f"seeds={','.join(map(str, acc.seeds))}")


def estimate_seconds(tasks: Iterable[PointTask], measure: MeasureConfig | None = None, *,
                     worst_case: bool = False) -> float:
    """Rough wall time of running `tasks` one after another.

    A worker server start per run, then per task: a worker per round (measure.rounds of them for a
    timed task, see harness/run/rounds.py), each with its warmup steps (the memory and flops
    passes ride on the last of them, see harness/measure/speed.py), and the timed steps, or at an
    accuracy point only its training runs. Timed steps are min_reps (at least one per round), or
    6 per round when the budget allows (the fewest from which the CI rule may stop a round's loop,
    once timings agree), or with `worst_case` as many as max_reps or max_seconds allow (timings
    that never settle). `measure` overrides each task's own measure config.
    """
    tasks = list(tasks)
    total = RUN_START_S if tasks else 0.0
    for task in tasks:
        m = measure or task.measure
        rounds = m.rounds if "time" in task.metrics and not _trains(task) else 1
        seconds = _training_seconds(task) if _trains(task) else _speed_seconds(task, m, rounds, worst_case)
        total += WORKER_START_S * rounds + min(seconds, m.timeout * rounds)
    return total


def _speed_seconds(task: PointTask, m: MeasureConfig, rounds: int, worst_case: bool) -> float:
    config = TransformerConfig.from_dict(task.model_config)
    step = _step_seconds(task, config, task.mode, task.batch_size, task.seq_len)
    # measure_speed runs at least one warmup step (the memory and flops passes ride on it).
    seconds = max(m.warmup, 1) * step * rounds if set(task.metrics) - {"redundancy"} else 0.0
    if "time" in task.metrics:
        # The CI rule can stop a round only from MIN_SAMPLES_FOR_CI samples; the budget earlier.
        timed = max(max(m.min_reps, rounds) * step,
                    min(MIN_SAMPLES_FOR_CI * rounds * step, m.max_seconds, m.max_reps * step))
        seconds += max(timed, min(m.max_reps * step, m.max_seconds)) if worst_case else timed
    if "redundancy" in task.metrics:   # a forward per layer at most, when layers do not fit at once
        seconds += config.n_layers * _step_seconds(task, config, "forward", task.batch_size, task.seq_len)
    return seconds


def _training_seconds(task: PointTask) -> float:
    """Every seed's training on the task's own batches, its evaluations included (see
    TRAIN_STEP_OVERHEAD_S), plus building the task's data once."""
    assert task.accuracy is not None
    data = get_task(task.accuracy.task, **task.accuracy.task_options)
    config = TransformerConfig.from_dict(data.resolve_model_config(task.model_config))
    step = _step_seconds(task, config, "train", data.batch_size, data.training_length())
    steps = len(task.accuracy.seeds) * task.accuracy.train_steps
    return TASK_DATA_S + steps * (step + (TRAIN_STEP_OVERHEAD_S if task.device == "cpu" else 0.0))


def _step_seconds(task: PointTask, config: TransformerConfig, mode: str, batch_size: int, seq_len: int) -> float:
    rate = CPU_FLOPS_PER_S if task.device == "cpu" else GPU_FLOPS_PER_S
    flops = analytic_cost(config, batch_size, seq_len, mode, device_type=task.device.split(":")[0]).total
    seconds = flops / rate
    if config.backend == "eager" and task.device == "cpu":
        probs = sum(config.new_heads(layer) for layer in range(config.n_layers)) * seq_len ** 2
        seconds += EAGER_S_PER_PROB * batch_size * probs * (3 if mode == "train" else 1)
    return seconds
