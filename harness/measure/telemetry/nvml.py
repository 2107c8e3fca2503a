"""GPU power, utilization, memory, temperature and SM clock over a measured window, via NVML.

    sampler = GpuSampler(0)
    with sampler.window() as w:
        run_n_steps()
    row.update(w.summary(n_steps))
    sampler.close()

Telemetry must never break a benchmark: a missing pynvml, a machine without a driver, a metric
the device does not support or NVML failing mid-run all end up as None values plus a
`telemetry_note` saying why, never as an exception.

Energy prefers the driver's cumulative counter (nvmlDeviceGetTotalEnergyConsumption, Volta+):
on recent GPUs nvmlDeviceGetPowerUsage reports a power value averaged over about a second, so
integrating it over a short window smears energy across the window's edges. Only where the
counter is not supported (or did not advance) do we integrate the sampled power (trapezoid rule).
Both sources update at driver intervals (tens of ms up to a second), so a window should span
many steps and last a second or more; per-step energy is the window's energy / n_steps.

The sampling thread runs while the steps are timed and takes the GIL for the Python around each
NVML call (ctypes releases it inside the call), which can delay the step's own launches. So every
window records what it cost: `gpu_sampler_ms_per_step` is the thread's time spent taking readings,
per step, an upper bound on the GIL time it took; `interval_s=None` turns the thread off (readings
at the window's edges only, energy from the counter), which is how benchmarks/gpu_check.py
measures the cost on a GPU: steps timed with sampling on against off.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

EnergySource = Literal["counter", "integrated_power"]

# Keys of GpuWindow.summary(); units are in the names (W, bytes, °C, MHz; util in percent).
GPU_FIELDS: tuple[str, ...] = (
    "energy_j_per_step", "mean_power_w", "max_power_w", "gpu_util_mean",
    "gpu_mem_used_max_bytes", "temp_max_c", "sm_clock_mean_mhz", "energy_source", "telemetry_note",
    "gpu_samples", "gpu_sampler_ms_per_step",
)

DEFAULT_INTERVAL_S = 0.02


def null_gpu_summary(note: str) -> dict[str, Any]:
    """The summary row of a window with no GPU values, saying why."""
    row: dict[str, Any] = dict.fromkeys(GPU_FIELDS)
    row["telemetry_note"] = note
    return row


@dataclass(frozen=True)
class GpuSample:
    """One reading; a field is None where the device does not support that metric."""

    t_s: float                      # time.perf_counter() when the reading was taken
    power_w: float | None
    util_pct: float | None
    mem_used_bytes: int | None      # device-wide: includes other processes' memory
    temp_c: float | None
    sm_clock_mhz: float | None


# Metric name -> how to read it from (nvml module, handle). Names double as the words used in
# telemetry_note when a metric is not supported.
_METRICS: dict[str, Callable[[Any, Any], float | int]] = {
    "power": lambda nv, h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0,  # mW -> W
    "gpu_util": lambda nv, h: nv.nvmlDeviceGetUtilizationRates(h).gpu,
    "memory": lambda nv, h: nv.nvmlDeviceGetMemoryInfo(h).used,
    "temperature": lambda nv, h: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU),
    "sm_clock": lambda nv, h: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM),
}


def _not_supported_errors(nv: Any) -> tuple[type[BaseException], ...]:
    """NVML's 'this device or driver cannot do that' errors (FunctionNotFound: driver too old)."""
    names = ("NVMLError_NotSupported", "NVMLError_FunctionNotFound")
    return tuple(getattr(nv, n) for n in names if isinstance(getattr(nv, n, None), type))


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__


class _Device:
    """An opened NVML device handle plus which metrics it supports (probed once)."""

    def __init__(self, nv: Any, handle: Any) -> None:
        self.nv = nv
        self.handle = handle
        not_supported = _not_supported_errors(nv)
        self.supported: dict[str, bool] = {}
        for name, read in _METRICS.items():
            try:
                read(nv, handle)
                self.supported[name] = True
            except not_supported:
                self.supported[name] = False  # e.g. utilization on a MIG slice
        try:
            nv.nvmlDeviceGetTotalEnergyConsumption(handle)
            self.has_energy_counter = True
        except not_supported:
            self.has_energy_counter = False

    def read(self) -> GpuSample:
        # Timestamp first and power first (dict order of _METRICS): the integral needs each
        # power value at its own time, the other metrics are not integrated.
        t_s = time.perf_counter()
        values = {name: (_METRICS[name](self.nv, self.handle) if ok else None)
                  for name, ok in self.supported.items()}
        return GpuSample(
            t_s=t_s, power_w=values["power"], util_pct=values["gpu_util"],
            mem_used_bytes=values["memory"], temp_c=values["temperature"],
            sm_clock_mhz=values["sm_clock"],
        )

    def energy_mj(self) -> int | None:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) if self.has_energy_counter else None

    def unsupported(self) -> list[str]:
        return [name for name, ok in self.supported.items() if not ok]


@dataclass
class GpuWindow:
    """Raw readings of one window; `summary` reduces them. Kept whole: statistics are computed
    from raw samples, never instead of them."""

    samples: list[GpuSample] = field(default_factory=list)
    energy_start_mj: int | None = None
    energy_end_mj: int | None = None
    unsupported: list[str] = field(default_factory=list)
    error: str | None = None        # why values are null; set instead of raising
    closed: bool = False
    sampler_busy_s: float = 0.0     # time the sampling thread spent taking readings (0 without one)

    @property
    def duration_s(self) -> float | None:
        if len(self.samples) < 2:
            return None
        return self.samples[-1].t_s - self.samples[0].t_s

    def summary(self, n_steps: int) -> dict[str, Any]:
        """Per-step energy and window statistics; see GPU_FIELDS for the keys."""
        if n_steps <= 0:
            raise ValueError(f"n_steps must be positive, got {n_steps}")
        if not self.closed:
            raise RuntimeError("summary() called before the telemetry window closed")
        if self.error is not None:
            return null_gpu_summary(self.error)

        energy_j, source = self._energy_j()
        duration = self.duration_s
        powers = [s.power_w for s in self.samples if s.power_w is not None]
        row: dict[str, Any] = {
            "energy_j_per_step": None if energy_j is None else energy_j / n_steps,
            # Energy over time rather than the mean of the samples: samples need not be evenly
            # spaced (the sampler thread competes for the GIL), a time-weighted mean is unbiased.
            "mean_power_w": energy_j / duration if energy_j is not None and duration else None,
            "max_power_w": max(powers) if powers else None,
            "gpu_util_mean": _mean(s.util_pct for s in self.samples),
            "gpu_mem_used_max_bytes": _max(s.mem_used_bytes for s in self.samples),
            "temp_max_c": _max(s.temp_c for s in self.samples),
            "sm_clock_mean_mhz": _mean(s.sm_clock_mhz for s in self.samples),
            "energy_source": source,
            "telemetry_note": None,
            "gpu_samples": len(self.samples),
            "gpu_sampler_ms_per_step": self.sampler_busy_s * 1e3 / n_steps,
        }
        if self.unsupported:
            row["telemetry_note"] = "not supported on this device: " + ", ".join(self.unsupported)
        return row

    def _energy_j(self) -> tuple[float | None, EnergySource | None]:
        if self.energy_start_mj is not None and self.energy_end_mj is not None:
            delta = self.energy_end_mj - self.energy_start_mj
            # A powered GPU never uses zero energy: a delta <= 0 means the counter did not tick
            # within the window (it updates at driver intervals) or was reset; use power then.
            if delta > 0:
                return delta / 1000.0, "counter"
        points = [(s.t_s, s.power_w) for s in self.samples if s.power_w is not None]
        if len(points) < 2:
            return None, None
        joules = sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(points, points[1:]))
        return joules, "integrated_power"


def _mean(values: Iterator[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _max(values: Iterator[Any]) -> Any:
    present = [v for v in values if v is not None]
    return max(present) if present else None


class GpuSampler:
    """Samples one GPU in a background thread while a window is open.

    `device` is an NVML index (int) or an NVML UUID ("GPU-…", "MIG-…"); NVML numbers devices
    in PCI order and ignores CUDA_VISIBLE_DEVICES, so callers holding a torch device string
    should resolve it with `harness.measure.telemetry.nvml_target`. `nvml` is the pynvml module or a
    stand-in with the same names; None imports pynvml on first use (no import-time side effects).
    """

    def __init__(self, device: int | str = 0, *, interval_s: float | None = DEFAULT_INTERVAL_S,
                 nvml: ModuleType | Any | None = None) -> None:
        if interval_s is not None and interval_s <= 0:
            raise ValueError(f"interval_s must be positive or None (no sampling thread), got {interval_s}")
        self.device = device
        self.interval_s = interval_s
        self._nvml_given = nvml
        self._nv: Any | None = None           # the module, once nvmlInit succeeded
        self._dev: _Device | None = None
        self._unavailable: str | None = None  # sticky: once NVML is unusable it stays so

    def __enter__(self) -> GpuSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> _Device | None:
        """Initialise NVML and the device once; on failure remember why and return None."""
        if self._dev is not None or self._unavailable is not None:
            return self._dev
        nv = self._nvml_given
        if nv is None:
            try:
                nv = importlib.import_module("pynvml")
            except ImportError:
                self._unavailable = "NVML unavailable: pynvml not installed"
                return None
        try:
            nv.nvmlInit()
        except Exception as exc:  # NVMLError (no driver, no library) or OSError from ctypes
            self._unavailable = f"NVML unavailable: {_describe(exc)}"
            return None
        self._nv = nv
        try:
            if isinstance(self.device, str):
                handle = nv.nvmlDeviceGetHandleByUUID(self.device)
            else:
                handle = nv.nvmlDeviceGetHandleByIndex(self.device)
            self._dev = _Device(nv, handle)
        except Exception as exc:
            self._unavailable = f"NVML unavailable: device {self.device!r}: {_describe(exc)}"
            self.close()
        return self._dev

    @contextmanager
    def window(self) -> Iterator[GpuWindow]:
        """Sample from entry to exit. The window's first and last readings are taken on entry
        and exit themselves, so a window shorter than the interval, or one without a sampling
        thread (interval_s None), still has two."""
        win = GpuWindow()
        dev = self._open()
        if dev is None:
            win.error = self._unavailable or "NVML unavailable"
            win.closed = True
            yield win
            return
        win.unsupported = dev.unsupported()
        stop = threading.Event()
        thread: threading.Thread | None = None
        # NVML is touched by one thread at a time: here before the thread starts, the thread,
        # then here again after it has been joined.
        if _guard(win, lambda: _start(win, dev)) and self.interval_s is not None:
            thread = threading.Thread(target=_sample, args=(win, dev, stop, self.interval_s),
                                      name=f"gpu-sampler-{self.device}", daemon=True)
            thread.start()
        try:
            yield win
        finally:
            stop.set()
            if thread is not None:
                thread.join()
            if win.error is None:
                _guard(win, lambda: _finish(win, dev))
            win.closed = True

    def close(self) -> None:
        """Shut NVML down (once); safe to call repeatedly and when NVML never opened."""
        nv, self._nv, self._dev = self._nv, None, None
        if nv is not None:
            try:
                nv.nvmlShutdown()
            except Exception:
                pass  # shutting down a lost GPU's NVML may fail; nothing left to release
        if self._unavailable is None:
            self._unavailable = "NVML unavailable: sampler closed"


def _sample(win: GpuWindow, dev: _Device, stop: threading.Event, interval_s: float) -> None:
    """The sampling thread: a reading every interval_s until stopped, timing its own work."""
    while not stop.wait(interval_s):
        began = time.perf_counter()
        ok = _guard(win, lambda: win.samples.append(dev.read()))
        win.sampler_busy_s += time.perf_counter() - began
        if not ok:
            return


def _start(win: GpuWindow, dev: _Device) -> None:
    win.energy_start_mj = dev.energy_mj()
    win.samples.append(dev.read())


def _finish(win: GpuWindow, dev: _Device) -> None:
    win.samples.append(dev.read())
    win.energy_end_mj = dev.energy_mj()


def _guard(win: GpuWindow, action: Callable[[], object]) -> bool:
    """Run one NVML action; on any failure record it as the window's note instead of raising
    (telemetry must never take a benchmark down). Returns whether it succeeded."""
    try:
        action()
        return True
    except Exception as exc:
        win.error = f"NVML error mid-run: {type(exc).__name__}: {_describe(exc)}"
        return False
