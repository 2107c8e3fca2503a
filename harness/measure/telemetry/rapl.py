"""CPU package energy over a measured window, from Linux powercap (Intel RAPL, also AMD Zen).

    meter = RaplMeter()
    with meter.window() as w:
        run_n_steps()
    row.update(w.summary(n_steps))

Only top-level package domains are summed (`intel-rapl:0`, `intel-rapl:1`, …): their subdomains
(`intel-rapl:0:0` cores, `:1` uncore/dram) are parts of the package and would be counted twice,
and a top-level `psys` domain covers the whole platform, packages included. `intel-rapl-mmio:*`
is a second interface to the same package counter, so it is left out too.

Since 2020 (CVE-2020-8694) `energy_uj` is readable by root only on most distributions; without
permission the values are None with a note, never an exception.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

POWERCAP_ROOT = Path("/sys/class/powercap")
CPU_FIELDS: tuple[str, ...] = ("cpu_energy_j_per_step", "cpu_energy_source", "cpu_energy_note")
CpuEnergySource = Literal["rapl"]

_PACKAGE_DIR = re.compile(r"^intel-rapl:\d+$")
_PLATFORM_DOMAINS = {"psys"}


def null_cpu_summary(note: str) -> dict[str, Any]:
    return {"cpu_energy_j_per_step": None, "cpu_energy_source": None, "cpu_energy_note": note}


class RaplReadError(Exception):
    """A powercap file could not be read; the message is the note shown in results."""


@dataclass(frozen=True)
class RaplDomain:
    path: Path             # the domain's directory, e.g. /sys/class/powercap/intel-rapl:0
    name: str              # "package-0", ...
    max_range_uj: int      # energy_uj wraps to 0 after this value

    def read_uj(self) -> int:
        return _read_int(self.path / "energy_uj")


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except PermissionError as exc:
        raise RaplReadError(f"permission denied reading {path}") from exc
    except (OSError, ValueError) as exc:
        raise RaplReadError(f"cannot read {path}: {exc}") from exc


def find_package_domains(root: Path) -> list[RaplDomain]:
    """Top-level package domains under `root`, sorted by name. Raises RaplReadError when a
    domain exists but cannot be read (the caller reports it; an empty list means no RAPL)."""
    domains = []
    candidates = sorted(p for p in root.glob("intel-rapl:*") if _PACKAGE_DIR.match(p.name)) if root.is_dir() else []
    for path in candidates:
        try:
            name = (path / "name").read_text().strip()
        except OSError:
            name = path.name  # older kernels have no name file; only psys needs recognising
        if name in _PLATFORM_DOMAINS:
            continue
        domains.append(RaplDomain(path=path, name=name, max_range_uj=_read_int(path / "max_energy_range_uj")))
    return domains


def energy_delta_uj(start: int, end: int, max_range_uj: int) -> int:
    """Energy between two readings of one counter, across at most one wraparound. A window
    longer than one full wrap (minutes to hours, depending on power) cannot be told apart."""
    return end - start if end >= start else end + (max_range_uj - start)


@dataclass
class RaplWindow:
    """Raw counter readings of one window; `summary` reduces them."""

    domains: list[RaplDomain] = field(default_factory=list)
    start_uj: list[int] = field(default_factory=list)
    end_uj: list[int] = field(default_factory=list)
    t_start_s: float | None = None
    t_end_s: float | None = None
    error: str | None = None
    closed: bool = False

    @property
    def energy_j(self) -> float | None:
        if self.error is not None or not self.end_uj:
            return None
        total = sum(energy_delta_uj(s, e, d.max_range_uj)
                    for d, s, e in zip(self.domains, self.start_uj, self.end_uj))
        return total / 1e6

    def summary(self, n_steps: int) -> dict[str, Any]:
        """cpu_energy_j_per_step (all packages together), cpu_energy_source, cpu_energy_note."""
        if n_steps <= 0:
            raise ValueError(f"n_steps must be positive, got {n_steps}")
        if not self.closed:
            raise RuntimeError("summary() called before the RAPL window closed")
        energy = self.energy_j
        if energy is None:
            return null_cpu_summary(self.error or "RAPL window recorded no readings")
        return {"cpu_energy_j_per_step": energy / n_steps, "cpu_energy_source": "rapl",
                "cpu_energy_note": None}


class RaplMeter:
    """Reads package energy counters at a window's entry and exit (no thread: counters are
    cumulative, two readings suffice as long as the window is shorter than one wrap)."""

    def __init__(self, root: Path = POWERCAP_ROOT) -> None:
        self.root = Path(root)
        self._domains: list[RaplDomain] | None = None

    def _discover(self) -> list[RaplDomain]:
        if self._domains is None:
            self._domains = find_package_domains(self.root)
        return self._domains

    @contextmanager
    def window(self) -> Iterator[RaplWindow]:
        win = RaplWindow()
        try:
            win.domains = self._discover()
            if not win.domains:
                win.error = f"no RAPL domains under {self.root}"
            else:
                win.start_uj = [d.read_uj() for d in win.domains]
                win.t_start_s = time.perf_counter()
        except RaplReadError as exc:
            win.error = str(exc)
        try:
            yield win
        finally:
            if win.error is None:
                try:
                    win.end_uj = [d.read_uj() for d in win.domains]
                    win.t_end_s = time.perf_counter()
                except RaplReadError as exc:
                    win.error = str(exc)
            win.closed = True
