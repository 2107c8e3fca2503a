"""Energy and device telemetry around a block of measured steps: one object per worker.

    with open_telemetry(task.device) as tel:
        with tel.window() as w:
            for _ in range(n_steps):
                step()
        row.update(w.summary(n_steps))      # every key in TELEMETRY_FIELDS, None where unknown

GPU keys come from NVML (`nvml.GpuSampler`) on CUDA points and are None with
telemetry_note "not a CUDA point" elsewhere; CPU package energy comes from RAPL
(`rapl.RaplMeter`) on every point. Nothing here raises because a meter is unavailable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.measure.telemetry.nvml import (
    DEFAULT_INTERVAL_S, GPU_FIELDS, GpuSampler, GpuSample, GpuWindow, null_gpu_summary,
)
from harness.measure.telemetry.rapl import CPU_FIELDS, POWERCAP_ROOT, RaplMeter, RaplWindow

__all__ = [
    "TELEMETRY_FIELDS", "GPU_FIELDS", "CPU_FIELDS", "Telemetry", "TelemetryWindow",
    "open_telemetry", "nvml_target", "GpuSampler", "GpuSample", "GpuWindow", "RaplMeter", "RaplWindow",
]

TELEMETRY_FIELDS: tuple[str, ...] = GPU_FIELDS + CPU_FIELDS
NOT_CUDA_NOTE = "not a CUDA point"


def nvml_target(device: str, environ: Mapping[str, str] = os.environ) -> int | str:
    """The NVML index (or UUID) of a torch CUDA device string such as "cuda" or "cuda:1".

    NVML ignores CUDA_VISIBLE_DEVICES, so torch's ordinal is looked up in it, as torch's own
    `torch.cuda.power_draw` does. Integer entries follow CUDA_DEVICE_ORDER, which agrees with
    NVML's PCI order on single-GPU machines and whenever CUDA_DEVICE_ORDER=PCI_BUS_ID.
    Raises ValueError for a device that is not visible.
    """
    kind, _, ordinal_text = device.partition(":")
    if kind != "cuda":
        raise ValueError(f"not a CUDA device: {device!r}")
    ordinal = int(ordinal_text) if ordinal_text else 0  # bare "cuda" is torch's default device 0
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return ordinal
    entries: list[int | str] = []
    for raw in (e.strip() for e in visible.split(",")):
        if raw.isdigit():
            entries.append(int(raw))
        elif raw.startswith(("GPU-", "MIG-")):
            entries.append(raw)
        else:
            break  # CUDA ignores everything from the first invalid entry on (e.g. "-1")
    if ordinal >= len(entries):
        raise ValueError(f"{device} is not visible with CUDA_VISIBLE_DEVICES={visible!r}")
    return entries[ordinal]


@dataclass
class TelemetryWindow:
    gpu: GpuWindow | None       # None on non-CUDA points
    cpu: RaplWindow
    gpu_note: str | None = None  # why there is no GPU window

    def summary(self, n_steps: int) -> dict[str, Any]:
        """Every key of TELEMETRY_FIELDS; per-step energies divide the window by n_steps."""
        gpu = self.gpu.summary(n_steps) if self.gpu is not None else null_gpu_summary(self.gpu_note or NOT_CUDA_NOTE)
        return {**gpu, **self.cpu.summary(n_steps)}


class Telemetry:
    """GPU sampler (or the reason there is none) plus the RAPL meter, behind one window."""

    def __init__(self, gpu: GpuSampler | None, cpu: RaplMeter, gpu_note: str | None = None) -> None:
        self.gpu = gpu
        self.cpu = cpu
        self.gpu_note = gpu_note if gpu is None else None
        self.last_window: TelemetryWindow | None = None

    @contextmanager
    def window(self) -> Iterator[TelemetryWindow]:
        with ExitStack() as stack:
            gpu_win = stack.enter_context(self.gpu.window()) if self.gpu is not None else None
            cpu_win = stack.enter_context(self.cpu.window())
            win = TelemetryWindow(gpu=gpu_win, cpu=cpu_win, gpu_note=self.gpu_note)
            self.last_window = win
            yield win

    def summary(self, n_steps: int) -> dict[str, Any]:
        """Summary of the most recent closed window (same as that window's own summary)."""
        if self.last_window is None:
            raise RuntimeError("summary() called before any telemetry window")
        return self.last_window.summary(n_steps)

    def close(self) -> None:
        if self.gpu is not None:
            self.gpu.close()

    def __enter__(self) -> Telemetry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_telemetry(device: str, *, interval_s: float | None = DEFAULT_INTERVAL_S,
                   nvml: ModuleType | Any | None = None, rapl_root: Path = POWERCAP_ROOT) -> Telemetry:
    """Telemetry for a point on `device` ("cpu", "cuda", "cuda:1"). `interval_s=None` reads the
    GPU at the window's edges only (no sampling thread). `nvml` and `rapl_root` are for tests and
    unusual machines; the defaults read the real pynvml and sysfs."""
    cpu = RaplMeter(rapl_root)
    if not device.startswith("cuda"):
        return Telemetry(gpu=None, cpu=cpu, gpu_note=NOT_CUDA_NOTE)
    try:
        target = nvml_target(device)
    except ValueError as exc:
        return Telemetry(gpu=None, cpu=cpu, gpu_note=f"NVML unavailable: {exc}")
    return Telemetry(gpu=GpuSampler(target, interval_s=interval_s, nvml=nvml), cpu=cpu)
