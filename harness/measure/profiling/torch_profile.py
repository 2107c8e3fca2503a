"""Operator-level profile of a few steps with torch.profiler: a Perfetto/Chrome trace + top ops.

The trace (open it at https://ui.perfetto.dev or chrome://tracing) shows every aten op with
input shapes and allocations; `top_ops` is the per-step table a report can show beside it.
Profiling perturbs timing: run it apart from the timed repetitions, never inside them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, record_function

TOP_OPS = 15


def _device_self_us(event: Any) -> float:
    # torch >= 2.4 says "device"; older releases only had the CUDA-specific name.
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        value = getattr(event, attr, None)
        if value is not None:
            return float(value)
    return 0.0


def top_ops(events: Iterable[Any], n_steps: int, with_device: bool, n: int = TOP_OPS) -> list[dict[str, Any]]:
    """Per-step averages of torch.profiler's key_averages(), most self time first (device
    self time where the device was profiled: that is where a GPU step's time goes)."""
    rows = []
    for e in events:
        if getattr(e, "is_user_annotation", False):
            continue  # our own "step i" ranges: they enclose ops, they are not ops
        rows.append({
            "name": e.key,
            "calls": e.count / n_steps,
            "self_cpu_ms": e.self_cpu_time_total / 1000.0 / n_steps,
            "self_device_ms": _device_self_us(e) / 1000.0 / n_steps if with_device else None,
            "cpu_total_ms": e.cpu_time_total / 1000.0 / n_steps,
        })
    key = "self_device_ms" if with_device else "self_cpu_ms"
    rows.sort(key=lambda r: (-r[key], r["name"]))
    return rows[:n]


def profile_steps(step: Callable[[], None], n_steps: int, out_path: Path, device: str) -> dict[str, Any]:
    """Run `step` n_steps times under torch.profiler (CPU, plus CUDA when `device` is a
    CUDA device and CUDA is available), write the trace JSON to `out_path`.

    Returns {"trace_path", "n_steps", "activities", "note", "top_ops": [{"name", "calls",
    "self_cpu_ms", "self_device_ms", "cpu_total_ms"}, ...]}; every number in top_ops is per
    step (totals divided by n_steps), self_device_ms is None when no device was profiled.
    """
    if n_steps <= 0:
        raise ValueError(f"n_steps must be positive, got {n_steps}")
    wants_cuda = device.startswith("cuda")
    use_cuda = wants_cuda and torch.cuda.is_available()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if use_cuda else [])
    with profile(activities=activities, record_shapes=True, profile_memory=True) as prof:
        for i in range(n_steps):
            with record_function(f"step {i}"):
                step()
                if use_cuda:
                    # Inside the range, so each step's range in the trace spans its kernels,
                    # not only their launches; and no kernel is still running at exit.
                    torch.cuda.synchronize(device)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    prof.export_chrome_trace(str(out_path))
    return {
        "trace_path": str(out_path),
        "n_steps": n_steps,
        "activities": ["cpu", "cuda"] if use_cuda else ["cpu"],
        "note": "CUDA not available: profiled CPU activity only" if wants_cuda and not use_cuda else None,
        "top_ops": top_ops(prof.key_averages(), n_steps, with_device=use_cuda),
    }
