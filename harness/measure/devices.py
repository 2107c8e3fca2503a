"""CPU and CUDA behind one interface: availability, step timing and step peak memory.

Timing: CPU uses a monotonic high-resolution clock around the step; CUDA records events on the
measured device's current stream and synchronizes before reading them (timing CUDA without
synchronizing measures the kernel *launch*, not the work). The measured device is made current
for the step: an event recorded without a stream lands on the *current* device's stream, so on
cuda:1 it would bracket an idle cuda:0 and time the launches.

Availability is per (device, dtype): a dtype the hardware has no arithmetic for is reported with
the reason, like an absent device, and its rows are `skipped`.

Peak memory of one step is reported *above* the resting bytes (weights, inputs, optimizer
state) that were allocated before it began, so reuse's saving on activations is not diluted by
the weights both models hold.
"""

from __future__ import annotations

import resource
import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

Step = Callable[[], object]


@dataclass(frozen=True)
class StepMemory:
    peak_bytes: int                      # the step's own peak above what was allocated before it
    peak_reserved_bytes: int | None      # CUDA caching-allocator reserve; None on CPU
    method: str                          # how it was measured, recorded in results


class Device(Protocol):
    name: str

    def availability(self, dtype: str = "float32") -> str | None:
        """None when a model in `dtype` (models.config.DTYPES) can be measured here, else why not."""

    def synchronize(self) -> None: ...

    def time_step_ms(self, step: Step) -> float: ...

    def step_memory(self, step: Step) -> StepMemory: ...

    def allocated_bytes(self) -> int | None: ...


_CPU_MEMORY_METHOD = "torch.profiler allocation events (CPU allocator)"

# CPU features (torch.cpu.get_capabilities() names, x86 then ARM) that give a reduced-precision
# dtype native arithmetic. Without one torch still runs the model, converting operands to float32
# around every op: the time measured would be that emulation's, which no deployment sees.
_CPU_NATIVE: dict[str, tuple[str, ...]] = {
    "bfloat16": ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"),
    "float16": ("avx512_fp16", "amx_fp16", "fp16_arith"),
}
# bfloat16 arithmetic on NVIDIA GPUs starts with Ampere; on older ones torch emulates it.
_CUDA_BF16_CAPABILITY = (8, 0)


class CpuDevice:
    name = "cpu"

    def availability(self, dtype: str = "float32") -> str | None:
        needs = _CPU_NATIVE.get(dtype)
        if needs is None:
            return None
        capabilities = torch.cpu.get_capabilities()
        if any(capabilities.get(feature) for feature in needs):
            return None
        return (f"{dtype} unsupported on this CPU ({capabilities.get('cpu_name', 'unknown')}): it has none of "
                f"{', '.join(needs)}, so torch would emulate {dtype} through float32")

    def synchronize(self) -> None:
        pass

    def time_step_ms(self, step: Step) -> float:
        t0 = time.perf_counter_ns()
        step()
        return (time.perf_counter_ns() - t0) / 1e6

    def step_memory(self, step: Step) -> StepMemory:
        """Peak bytes held by torch's CPU allocator during one step.

        The profiler's allocation events carry the CPU allocator's running total of the blocks
        it has seen allocated while any profiling session was on. It sees every c10 allocation
        (kernel workspaces included), unlike tracking op outputs from Python. That total lives as
        long as the process: a block allocated under an earlier session and freed since, outside
        one, is never subtracted (the gradients of the previous variant's instrumented training
        step, say). So the peak is taken above the level the total had when this step began.
        """
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
        events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
        while stack:
            event = stack.pop()
            stack.extend(event.children)
            if event.tag == _EventType.Allocation:
                events.append((event.start_time_ns, event.extra_fields.total_allocated, event.extra_fields.alloc_size))
        if not events:
            return StepMemory(0, None, _CPU_MEMORY_METHOD)
        events.sort()
        _, first_total, first_size = events[0]
        start_level = first_total - first_size  # the running total just before the step's first event
        peak = max(total for _, total, _ in events) - start_level
        return StepMemory(int(max(peak, 0)), None, _CPU_MEMORY_METHOD)

    def allocated_bytes(self) -> int | None:
        return None  # the CPU allocator keeps no running total outside the profiler


class CudaDevice:
    def __init__(self, name: str = "cuda") -> None:
        self.name = name

    def availability(self, dtype: str = "float32") -> str | None:
        if not torch.cuda.is_available():
            built = "built without CUDA" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
            return f"CUDA not available (torch {torch.__version__}, {built}; no usable GPU)"
        index = torch.device(self.name).index or 0
        if index >= torch.cuda.device_count():
            return f"{self.name} not present: {torch.cuda.device_count()} CUDA device(s)"
        if dtype == "bfloat16" and torch.version.hip is None:
            capability = torch.cuda.get_device_capability(index)
            if capability < _CUDA_BF16_CAPABILITY:
                return (f"bfloat16 unsupported on {self.name} ({torch.cuda.get_device_name(index)}, compute "
                        f"capability {capability[0]}.{capability[1]}): it needs 8.0 or newer")
        return None

    def _current(self) -> AbstractContextManager[object]:
        """This device as torch's current CUDA device (a bare "cuda" keeps the current one)."""
        return torch.cuda.device(torch.device(self.name))

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.name)

    def time_step_ms(self, step: Step) -> float:
        with self._current():
            stream = torch.cuda.current_stream(torch.device(self.name))
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(stream)
            step()
            end.record(stream)
        end.synchronize()
        return float(start.elapsed_time(end))

    def step_memory(self, step: Step) -> StepMemory:
        self.synchronize()
        before = torch.cuda.memory_allocated(self.name)
        torch.cuda.reset_peak_memory_stats(self.name)
        with self._current():
            step()
        self.synchronize()
        peak = torch.cuda.max_memory_allocated(self.name) - before
        return StepMemory(int(peak), int(torch.cuda.max_memory_reserved(self.name)),
                          "torch.cuda.max_memory_allocated after reset_peak_memory_stats")

    def allocated_bytes(self) -> int | None:
        return int(torch.cuda.memory_allocated(self.name))


def get_device(name: str) -> Device:
    if name == "cpu":
        return CpuDevice()
    if name == "cuda" or name.startswith("cuda:"):
        return CudaDevice(name)
    raise ValueError(f"unknown device {name!r}: expected cpu, cuda or cuda:N")


def peak_rss_bytes() -> int:
    """Process peak resident set size since the last reset_peak_rss() (else: process lifetime).

    Read from /proc (VmHWM), which clear_refs resets; getrusage's ru_maxrss never goes down.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark so the next reading describes what follows, not the past."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
    except OSError:
        pass  # not Linux, or not permitted: peak_rss_bytes then covers the process lifetime
