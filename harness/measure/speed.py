"""Time, memory and FLOPs of one (point, variant): the `time`, `memory` and `flops` metrics.

Order of work, all in the worker process:
  build model and inputs (seeded, never all-zero) → [compile: count FLOPs on the uncompiled
  module, then torch.compile it and run the step that compiles, recording compile_s] → warm-up
  steps, the last one under the FLOP counter and the memory tracker (untimed) → timed steps until
  the 95% CI of the median is within target or the budget is spent → optional profiler steps.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import torch
from torch import nn

from harness.measure.devices import Device, peak_rss_bytes, reset_peak_rss
from harness.suite.task import PointTask
from harness.stats import stop_reason, summarize
from models.config import REUSE_KEYS, TransformerConfig
from models.registry import build_model, model_config
from models.transformer import loss_fn, make_inputs, torch_dtype

if TYPE_CHECKING:
    from models.flops import Counted

FLOPS_NOTE_COMPILED = "counted on the uncompiled module: the counter cannot see inside compiled kernels"


class CompileError(RuntimeError):
    """torch.compile could not compile (or run) the step; the message says why."""


def input_config(task: PointTask) -> TransformerConfig:
    """The config that shapes inputs; third-party models get inputs from the suite's model keys."""
    cfg = model_config(task.model, task.model_config)
    if cfg is not None:
        return cfg
    known = set(TransformerConfig.fields()) - REUSE_KEYS
    return TransformerConfig.from_dict({k: v for k, v in task.model_config.items() if k in known})


def make_step(model: nn.Module, cfg: TransformerConfig, x: torch.Tensor, y: torch.Tensor,
              mode: str) -> tuple[Callable[[], object], torch.optim.Optimizer | None]:
    if mode == "forward":
        model.eval()

        def forward_step() -> object:
            with torch.inference_mode():
                return model(x)

        return forward_step, None
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    _prime_optimizer_state(model, optimizer)

    def train_step() -> object:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(cfg, model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return train_step, optimizer


def _prime_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Let AdamW allocate its state now, with one update on zero gradients, not inside step 1.

    Without this the first training step allocates two buffers per parameter and is unlike every
    later step, so it could be neither timed nor instrumented, and each training point paid for a
    whole extra warm-up step. A zero-gradient AdamW update leaves the moments at zero and moves
    each weight only by its weight decay (a factor 1 - lr·wd = 1 - 1e-6).
    """
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor))


def resting_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...],
                  optimizer: torch.optim.Optimizer | None) -> int:
    """Weights, buffers, inputs and optimizer state: what is held before a step begins."""
    total = _tensor_bytes(model.parameters()) + _tensor_bytes(model.buffers()) + _tensor_bytes(inputs)
    if optimizer is not None:
        total += sum(_tensor_bytes(state.values()) for state in optimizer.state.values())
    return total


def _analytic(task: PointTask, cfg: TransformerConfig) -> dict[str, Any]:
    from models.cost import analytic_cost

    if model_config(task.model, task.model_config) is None:
        return {}  # third-party model: only counted FLOPs
    # The device type picks the SDPA kernel (and so the backward's matmuls) and what a step keeps.
    cost = analytic_cost(cfg, task.batch_size, task.seq_len, task.mode,
                         device_type=torch.device(task.device).type)
    return {"flops_analytic": int(cost.total), "flops_by_component": dict(cost.by_component),
            "activation_bytes_analytic": int(cost.activation_bytes)}


def _instrumented_step(task: PointTask, device: Device, step: Callable[[], object],
                       counted: Counted | None = None) -> dict[str, Any]:
    """The last warm-up step, run under the FLOP counter and/or the memory tracker (untimed).

    Counting on a real step of the very code that is timed, rather than a separate pass, keeps
    the counted FLOPs honest and costs no extra step. A matrix product the counter has no formula
    for (a kernel a new torch or device introduces) puts `flops_warning` on the row. `counted`:
    FLOPs already counted elsewhere (a compiled step's, on its uncompiled module); then only the
    memory tracker runs here.
    """
    from contextlib import nullcontext

    from models.flops import StepCounter

    out: dict[str, Any] = {}
    counter = StepCounter() if "flops" in task.metrics and counted is None else None
    with counter if counter is not None else nullcontext():
        if "memory" in task.metrics:
            reset_peak_rss()
            memory = device.step_memory(step)
            out.update(peak_mem_bytes=memory.peak_bytes, peak_mem_reserved_bytes=memory.peak_reserved_bytes,
                       memory_method=memory.method, peak_rss_bytes=peak_rss_bytes())
        else:
            step()
    if counter is not None:
        counted = counter.result()
    if counted is not None:
        out.update(flops_counted=counted.total, flops_counted_by_op=counted.by_op, flops_warning=counted.warning())
    return out


def compile_model(model: nn.Module, task: PointTask, x: torch.Tensor,
                  y: torch.Tensor) -> tuple[nn.Module, Counted | None]:
    """torch.compile(model), with the FLOPs of one step counted on the uncompiled module first.

    The counter cannot see inside compiled kernels, and compiling leaves the matrix products as
    they are. Counting before compiling, not after, also means no eager step changes the module
    (a cache it fills) under a compiled graph that guards on it.
    """
    from models.flops import count_flops

    counted = count_flops(model, x, y, task.mode) if "flops" in task.metrics else None  # type: ignore[arg-type]
    return torch.compile(model), counted


def run_compiling_step(step: Callable[[], object], device: Device) -> float:
    """Seconds the first step of a compiled model takes: compilation (forward, and backward in a
    training step) plus one step. Untimed; a failure becomes a CompileError with the reason."""
    started = time.perf_counter()
    try:
        step()
        device.synchronize()
    except Exception as exc:  # inductor raises many types (a missing compiler, a lowering error, ...)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no message"
        raise CompileError(f"torch.compile failed: {type(exc).__name__}: {reason}") from exc
    return time.perf_counter() - started


def measure_speed(task: PointTask, device: Device, artifacts: Path | None = None,
                  profile: str | None = None, between_steps: Callable[[], None] | None = None) -> dict[str, Any]:
    """`between_steps`: called after each timed step (a lockstep A/B run gives the machine to the
    other version's worker there, see harness/run/turns.py)."""
    m = task.measure
    if m.threads is not None:
        torch.set_num_threads(m.threads)
    torch.manual_seed(task.seed)
    cfg = input_config(task)
    # Built-in models are built in cfg.dtype already; a third-party one is cast to what its row says.
    model = build_model(task.model, task.model_config).to(device=task.device, dtype=torch_dtype(cfg))
    x, y = make_inputs(cfg, task.batch_size, task.seq_len, seed=task.seed, device=task.device)
    row: dict[str, Any] = {
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "compile": task.compile,
    }
    counted: Counted | None = None
    if task.compile:
        model, counted = compile_model(model, task, x, y)
    step, optimizer = make_step(model, cfg, x, y, task.mode)
    if task.compile:
        row["compile_s"] = run_compiling_step(step, device)
        if counted is not None:
            row["flops_note"] = FLOPS_NOTE_COMPILED

    setup_started = time.perf_counter()
    # Warm-up; its last step is the instrumented one, so `warmup: 1` costs no plain step at all
    # (the optimizer state already exists, see _prime_optimizer_state).
    instrumented = bool({"flops", "memory"} & set(task.metrics))
    n_warmup = max(m.warmup, 1)
    for _ in range(n_warmup - 1 if instrumented else n_warmup):
        step()
    if instrumented:
        if optimizer is not None:
            # Free last step's gradients first: frees of blocks allocated before tracking began
            # are invisible to the tracker and would inflate the peak by the gradients' size.
            optimizer.zero_grad(set_to_none=True)
        row.update(_instrumented_step(task, device, step, counted))
        row["resting_mem_bytes"] = resting_bytes(model, (x, y), optimizer)
    if "flops" in task.metrics:
        row.update(_analytic(task, cfg))
    device.synchronize()
    row["warmup_s"] = time.perf_counter() - setup_started

    if "time" in task.metrics:
        row.update(timed_steps(task, device, step, between_steps))
    if profile == "torch" and artifacts is not None:
        from harness.measure.profiling.torch_profile import profile_steps

        artifacts.mkdir(parents=True, exist_ok=True)
        trace = artifacts / f"{task.point_id}.torch-trace.json"
        result = profile_steps(step, 3, trace, task.device)
        row.update(torch_trace=str(trace.relative_to(artifacts.parent)), top_ops=result["top_ops"])
    row["status"] = "ok"
    return row


def timed_steps(task: PointTask, device: Device, step: Callable[[], object],
                between_steps: Callable[[], None] | None = None) -> dict[str, Any]:
    """Timed steps until the CI target or the budget (py-spy flame graphs are rooted here).

    The budget counts this worker's own time only: in a lockstep run the time spent waiting while
    the other worker steps (inside `between_steps`) is not ours. Telemetry is skipped there, as
    its window would hold the other worker's steps too.
    """
    m = task.measure
    samples: list[float] = []
    started, waited = time.perf_counter(), 0.0
    with _telemetry_window(task, lockstep=between_steps is not None) as window:
        while True:
            samples.append(device.time_step_ms(step))
            if between_steps is not None:
                paused = time.perf_counter()
                between_steps()
                waited += time.perf_counter() - paused
            stopped = stop_reason(samples, m.min_reps, m.max_reps, m.target_ci,
                                  time.perf_counter() - started - waited, m.max_seconds)
            if stopped is not None:
                break
    return {
        **timing_columns(task, samples),
        "stop_reason": stopped,
        **(window.summary(len(samples)) if window is not None else
           {"telemetry_note": "not taken in a lockstep run: the window would hold the other worker's steps"}),
    }


def timing_columns(task: PointTask, samples: list[float]) -> dict[str, Any]:
    """A row's timing columns from its raw samples (also those of several rounds pooled into one
    row, harness/run/rounds.py)."""
    s = summarize(samples)
    tokens = task.batch_size * task.seq_len
    return {
        "time_ms_median": s.median, "time_ms_ci_low": s.ci_low, "time_ms_ci_high": s.ci_high,
        "time_ms_ci_level": s.ci_level, "time_ms_iqr": s.iqr, "time_ms_mean": s.mean, "time_ms_std": s.std,
        "time_ms_min": s.min, "time_ms_n": s.n, "time_ms_samples": samples,
        "tokens_per_s": tokens / (s.median / 1e3) if s.median > 0 else None,
        "timed_s": sum(samples) / 1e3,
    }


@contextmanager
def _telemetry_window(task: PointTask, lockstep: bool) -> Iterator[Any]:
    if lockstep:
        yield None
        return
    from harness.measure.telemetry import open_telemetry

    with open_telemetry(task.device) as telemetry, telemetry.window() as window:
        yield window
