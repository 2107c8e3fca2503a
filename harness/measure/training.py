"""Train a model on an accuracy task for each seed and report held-out accuracy.

`train_and_evaluate` is the single entry point a harness worker calls for the `accuracy` metric.
What is held fixed so that variants differ only in the model:

- weights: `torch.manual_seed(seed)` right before building, so the baseline and the reuse model
  with K = 0 start from identical parameters;
- data: the task's pool and split come from its own `data_seed`; the batch order comes from a
  generator seeded with the run seed alone, so every variant sees the same batches in the same order;
- optimisation: AdamW, linear warmup then cosine decay to zero, gradient clipping at 1.0.

A non-finite loss stops training at once and the whole result is `failed`: a diverged seed makes a
mean over seeds meaningless, and the remaining seeds would only burn the time budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import resource
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.measure.redundancy import held_out_probe, record
from harness.tasks import IGNORE_INDEX, Task, get_task
from harness.suite.task import AccuracyConfig
from models import registry

MAX_GRAD_NORM = 1.0   # standard for Transformers; keeps one bad batch from wrecking a short run
EVAL_BATCH = 256      # evaluation chunk size; fixed so the summation order (and result) never varies


class Diverged(RuntimeError):
    def __init__(self, step: int, seed: int) -> None:
        super().__init__(f"diverged: non-finite loss at step {step} (seed {seed})")
        self.step, self.seed = step, seed


@dataclass
class SeedRun:
    """What one seed's training produced."""

    seed: int
    curve: list[dict[str, Any]]        # {step, loss (mean train loss since the last point), accuracy, eval_loss}
    train_time_s: float                # optimisation steps only; evaluation passes excluded
    eval_time_s: float
    accuracy: float | None = None
    final_loss: float | None = None


# ---------------------------------------------------------------------------------------------
# Validating budgets
# ---------------------------------------------------------------------------------------------
def _validate(acc: AccuracyConfig) -> None:
    def positive_int(name: str, value: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ValueError(f"accuracy.{name}: expected a positive integer, got {value!r}")

    positive_int("train_steps", acc.train_steps)
    positive_int("eval_every", acc.eval_every)
    if not acc.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in acc.seeds):
        raise ValueError(f"accuracy.seeds: expected a non-empty list of integers, got {acc.seeds!r}")
    # warmup_steps >= train_steps is allowed: the lr then ramps up for the whole (smoke-test) run.
    if not isinstance(acc.warmup_steps, int) or isinstance(acc.warmup_steps, bool) or acc.warmup_steps < 0:
        raise ValueError(f"accuracy.warmup_steps: expected an integer >= 0, got {acc.warmup_steps!r}")
    if not isinstance(acc.lr, (int, float)) or not acc.lr > 0:
        raise ValueError(f"accuracy.lr: expected a positive number, got {acc.lr!r}")
    if not isinstance(acc.weight_decay, (int, float)) or acc.weight_decay < 0:
        raise ValueError(f"accuracy.weight_decay: expected a number >= 0, got {acc.weight_decay!r}")


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup_steps: int, train_steps: int) -> float:
    """Multiplier on the peak lr for the update at `step` (0-based): linear warmup, cosine to 0."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, train_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def loss_fn(logits: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy over scored targets; IGNORE_INDEX targets cost nothing.

    In float32 whatever the model's dtype, as models.transformer.loss_fn: a log-softmax rounded to
    bfloat16 moves the loss visibly (`.float()` of float32 logits is the tensor itself).
    """
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, device: str) -> tuple[float, float]:
    """(accuracy, mean loss per scored target) on the task's held-out set."""
    model.eval()
    x, y = task.eval_set()
    correct = counted = 0
    loss_sum = 0.0
    for start in range(0, x.shape[0], EVAL_BATCH):
        xb, yb = x[start:start + EVAL_BATCH].to(device), y[start:start + EVAL_BATCH].to(device)
        logits = model(xb)
        c, n = task.accuracy(logits, yb)
        correct, counted = correct + c, counted + n
        loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), yb.reshape(-1),
                                          ignore_index=IGNORE_INDEX, reduction="sum"))
    model.train()
    return correct / counted, loss_sum / counted


def train_one_seed(model: nn.Module, task: Task, acc: AccuracyConfig, seed: int, device: str) -> SeedRun:
    decay, no_decay = _param_groups(model)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": acc.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=acc.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, acc.warmup_steps, acc.train_steps))
    batches: Iterator[tuple[Tensor, Tensor]] = task.train_batches(seed)
    run = SeedRun(seed=seed, curve=[], train_time_s=0.0, eval_time_s=0.0)
    window: list[Tensor] = []   # losses since the last curve point, kept as tensors: no sync per step
    model.train()
    t0 = _now(device)
    for step in range(1, acc.train_steps + 1):
        x, y = next(batches)
        loss = loss_fn(model(x.to(device)), y.to(device))
        if not torch.isfinite(loss):
            raise Diverged(step, seed)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        opt.step()
        sched.step()
        window.append(loss.detach())
        if step % acc.eval_every == 0 or step == acc.train_steps:
            run.train_time_s += _now(device) - t0
            train_loss = float(torch.stack(window).mean())
            window.clear()
            t_eval = time.perf_counter()
            accuracy, eval_loss = evaluate(model, task, device)
            run.eval_time_s += time.perf_counter() - t_eval
            run.curve.append({"step": step, "loss": train_loss, "accuracy": accuracy, "eval_loss": eval_loss})
            t0 = _now(device)
    run.accuracy, run.final_loss = run.curve[-1]["accuracy"], run.curve[-1]["loss"]
    return run


def _param_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    # Weight decay on matrices only: decaying biases, LayerNorm gains and embeddings' rows toward 0
    # hurts small models and is not what the papers we compare against do.
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.ndim >= 2 and "embed" not in name and "pos" not in name else no_decay).append(p)
    return decay, no_decay


def _now(device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter()


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------
def train_and_evaluate(model_name: str, model_config: Mapping[str, Any], acc: AccuracyConfig,
                       device: str = "cpu", threads: int | None = None, redundancy: bool = False) -> dict[str, Any]:
    """Train `model_name` on `acc.task` once per seed in `acc.seeds`; a flat, JSON-able result.

    Keys of `model_config` override the task's default model size, and the task's data fixes
    input kind, vocabulary, length and head (see `Task.resolve_model_config`). The harness passes a fully
    resolved config, so a suite spells out the model size (suites/accuracy.yaml does). Raises on
    invalid configs; returns status "failed" (with the reason in `error`) when training diverges.
    With `redundancy`, each seed's model is measured on held-out inputs at its random
    initialisation (the control) and after training (harness/measure/redundancy.py).
    """
    _validate(acc)
    task = get_task(acc.task, **acc.task_options)
    config = task.resolve_model_config(model_config)
    runs: list[SeedRun] = []
    error: str | None = None
    params = flops_per_step = None
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)
    with _determinism(threads):
        x_probe, _ = task.eval_set()   # builds the data once, outside any timed region
        seq_len = int(x_probe.shape[1])
        flops_per_step = _train_flops_per_step(model_name, config, task.batch_size, seq_len, device)
        probe = held_out_probe(task, model_name, bool(config.get("causal")), device) if redundancy else None
        states: dict[str, list[dict[str, Any]]] = {"init": [], "trained": []}
        for seed in acc.seeds:
            torch.manual_seed(seed)    # identical initial weights for baseline and reuse K = 0
            model = registry.build_model(model_name, config).to(device)
            params = sum(p.numel() for p in model.parameters())
            if probe is not None:      # first: a model that hides its attention fails before training
                states["init"].append(probe.measure(model, seed))
            torch.manual_seed(seed)    # dropout masks, if any, start from the same state for every variant
            try:
                runs.append(train_one_seed(model, task, acc, seed, device))
            except Diverged as exc:
                error = str(exc)
                break
            if probe is not None:
                states["trained"].append(probe.measure(model, seed))
        used_threads = torch.get_num_threads()

    done = [r for r in runs if r.accuracy is not None]
    accuracies = [r.accuracy for r in done]
    losses = [r.final_loss for r in done]
    ok = error is None
    return {
        **task.describe(),
        "status": "ok" if ok else "failed",
        "error": error,
        "model": model_name,
        "accuracy_model_config": config,
        "params": params,
        "train_steps": acc.train_steps,
        "eval_every": acc.eval_every,
        "lr": acc.lr,
        "weight_decay": acc.weight_decay,
        "warmup_steps": acc.warmup_steps,
        "seeds": list(acc.seeds),
        "accuracy_mean": statistics.fmean(accuracies) if ok else None,
        "accuracy_std": _std(accuracies) if ok else None,
        "accuracy_seeds": accuracies,
        "final_loss": statistics.fmean(losses) if ok else None,
        "final_loss_seeds": losses,
        "learning_curve": [r.curve for r in runs],
        # Per seed: the mean over seeds of the optimisation wall time (evaluation excluded).
        "train_time_s": statistics.fmean(r.train_time_s for r in done) if done else None,
        "train_time_s_seeds": [r.train_time_s for r in done],
        "train_step_ms": 1e3 * statistics.fmean(r.train_time_s for r in done) / acc.train_steps if done else None,
        "eval_time_s": sum(r.eval_time_s for r in done),
        # Per seed (every seed trains the same steps on same-shaped batches): analytic FLOPs x steps.
        "train_flops": flops_per_step * acc.train_steps if flops_per_step is not None else None,
        "train_flops_per_step": flops_per_step,
        # Process-wide high-water mark since the process started, not this training alone.
        "peak_rss_bytes": _peak_rss_bytes(),
        "peak_mem_bytes": torch.cuda.max_memory_allocated(device) if device.startswith("cuda") else None,
        "threads": used_threads,
        "device": device,
        "redundancy": record(states, probe) if probe is not None else None,
    }


def _std(values: list[float]) -> float | None:
    # Sample standard deviation across seeds; undefined (None, not 0) for a single seed.
    return statistics.stdev(values) if len(values) > 1 else None


def _train_flops_per_step(model_name: str, config: dict[str, Any], batch: int, seq_len: int,
                          device: str) -> float | None:
    # models.cost is optional while it is being written; a present-but-broken module still raises.
    if importlib.util.find_spec("models.cost") is None:
        return None
    from models import cost

    tcfg = registry.model_config(model_name, config)
    if tcfg is None:   # third-party model: no analytic cost model
        return None
    device_type = "cuda" if device.startswith("cuda") else "cpu"   # picks which SDPA kernel is counted
    return float(cost.analytic_cost(tcfg, batch, seq_len, "train", device_type=device_type).total)


def _peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)   # Linux reports KiB, macOS bytes


@contextlib.contextmanager
def _determinism(threads: int | None) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the duration; both restored afterwards."""
    previous_threads = torch.get_num_threads()
    previous_det = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    # warn_only: an op without a deterministic kernel (some CUDA scatter ops) warns instead of failing.
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_det, warn_only=previous_warn)
        torch.set_num_threads(previous_threads)


__all__ = ["Diverged", "SeedRun", "evaluate", "loss_fn", "lr_factor", "train_and_evaluate", "train_one_seed"]
