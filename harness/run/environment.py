"""The environment fingerprint stored in every run's manifest."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from harness.run import workerenv

# Keys that decide whether absolute times from two runs are comparable (the gate uses this).
MACHINE_KEYS: tuple[str, ...] = ("cpu_model", "cpu_cores", "threads", "gpu_name", "torch", "allocator")


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> tuple[str | None, bool]:
    """This checkout's commit (None outside git) and whether tracked files differ from it."""
    return _git("rev-parse", "HEAD"), bool(_git("status", "--porcelain", "--untracked-files=no"))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    info: dict[str, Any] = {"name": torch.cuda.get_device_name(0), "count": torch.cuda.device_count(),
                            "cuda": torch.version.cuda, "driver": None}
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            driver = pynvml.nvmlSystemGetDriverVersion()
            info["driver"] = driver.decode() if isinstance(driver, bytes) else driver
        finally:
            pynvml.nvmlShutdown()
    except Exception as exc:  # NVML is optional; say why the driver is unknown
        info["driver_note"] = f"NVML unavailable: {exc}"
    return info


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(threads: int | None = None) -> dict[str, Any]:
    import numpy
    import torch

    gpu = _gpu()
    commit, dirty = git_state()
    env = {
        "harness_version": _version("reuse-bench"),
        "git_commit": commit,
        "git_dirty": dirty,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "os": platform.platform(),
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "gpu": gpu,
        "gpu_name": gpu["name"] if gpu else None,
        # A busy machine explains noisy or slow timings; recorded, not part of the fingerprint.
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "worker_env": workerenv.recorded(),
    }
    env["allocator"] = env["worker_env"]["allocator"]
    env["machine_fingerprint"] = machine_fingerprint(env)
    return env


def machine_fingerprint(env: dict[str, Any]) -> str:
    """Short hash of what makes absolute timings comparable between two runs."""
    key = json.dumps({k: env.get(k) for k in MACHINE_KEYS}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def machine_warnings(threads: int | None, cores: int | None = None, load: float | None = None) -> list[str]:
    """Said before a run starts: what about this machine will make the timings noisy (never stops
    a run). `cores` and `load` (the 1-minute load average) default to this machine's, now."""
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    out = []
    if load > 0.5 * cores:
        out.append(f"load average {load:.1f} on {cores} cores: other work shares this machine, so timings "
                   "will be noisy (the manifest records the load)")
    if threads is not None and threads >= cores:
        # bench_harness.py on the 2-core CI machine: CV of a point's median over 5 processes about
        # 5-6% at 2 threads (torch.utils.benchmark's own: 6-8%), under 2% at 1 thread.
        out.append(f"measure.threads={threads} uses all {cores} cores: anything else that runs stalls a "
                   "step, so medians vary more from run to run; fewer threads than cores are steadier")
    return out
