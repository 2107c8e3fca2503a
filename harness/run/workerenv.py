"""The environment every measuring worker starts with, on top of the user's.

Both settings here are read by a process when it starts, so they go into the environment that
starts the worker (or the fork server that forks workers), never set inside one.

**The memory allocator.** A training step frees and reallocates gigabytes of activations. glibc's
malloc serves a block above its mmap threshold with a fresh mapping and unmaps it on free, so a
tensor that size costs page faults and kernel zero-filling on every step (a 64 MiB buffer: 30 ms to
allocate and fill against 5 ms from the heap, on the 2-core CI machine). The threshold is also
dynamic: it rises as mapped blocks are freed, so each process switches between the two regimes at
its own, unpredictable step, and timings jump by 10-40% mid-run and differ between processes.
Fixing the threshold high (and never trimming) removes that, but glibc's heap then fragments: the
first steps of a process keep growing it (a train step at n=1024 faulted in 0.9 GB more in its
second step than in its first, and the step was 1.8x slower), and each process fragments
differently. tcmalloc keeps freed blocks in per-size lists and hands the same ones back, so from
the second step on a step touches no new memory (0-2 page faults against ~200 k) and the
warm-up step is ~40% cheaper. PyTorch's CPU tuning guides recommend it (or jemalloc) for the same
reasons. So workers preload tcmalloc when the system has it (Debian/Ubuntu package
libtcmalloc-minimal4) and fall back to glibc with fixed thresholds otherwise.

`REUSE_BENCH_ALLOCATOR` chooses: `auto` (the default: tcmalloc if found, else glibc), `tcmalloc`
(required: an error without it), `glibc`, or the path of an allocator library to preload. An
LD_PRELOAD or GLIBC_TUNABLES the user set is left alone. Either way what workers start with is
recorded in the manifest, and the allocator is part of the machine fingerprint (absolute timings
under two allocators are not comparable).
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError

ALLOCATOR_VAR = "REUSE_BENCH_ALLOCATOR"
MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184"
TCMALLOC_LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
# Keep freed pages (the same reason as glibc's trim threshold above), and do not print a line to
# stderr for every allocation over 1 GiB (a long-sequence training step makes several).
TCMALLOC_SETTINGS = {"TCMALLOC_RELEASE_RATE": "0", "TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD": str(1 << 40)}
_CHOICES = "auto, tcmalloc, glibc or the path of an allocator library"


class AllocatorError(InputError):
    """REUSE_BENCH_ALLOCATOR asks for what this machine does not have."""


@dataclass(frozen=True)
class Allocator:
    name: str              # "tcmalloc", "glibc", "LD_PRELOAD=<the user's>", or the library's file name
    library: str | None    # what LD_PRELOAD gets; None: nothing added


def _library_dirs() -> list[Path]:
    multiarch = sysconfig.get_config_var("MULTIARCH") or ""
    dirs = [f"/usr/lib/{multiarch}", f"/lib/{multiarch}"] if multiarch else []
    return [Path(d) for d in [*dirs, "/usr/lib64", "/usr/lib", "/usr/local/lib", "/lib64", "/lib"]]


def find_tcmalloc() -> Path | None:
    if not sys.platform.startswith("linux"):
        return None
    for directory in _library_dirs():
        for name in TCMALLOC_LIBRARIES:
            if (directory / name).is_file():
                return directory / name
    return None


def allocator(environ: Mapping[str, str] = os.environ) -> Allocator:
    """The allocator workers will use. Raises AllocatorError for a request that cannot be met."""
    wanted = environ.get(ALLOCATOR_VAR, "").strip() or "auto"
    if wanted == "glibc":
        return Allocator("glibc", None)
    if preloaded := environ.get("LD_PRELOAD", "").strip():
        is_tcmalloc = any(name in preloaded for name in TCMALLOC_LIBRARIES)
        return Allocator("tcmalloc" if is_tcmalloc else f"LD_PRELOAD={preloaded}", None)
    if wanted in ("auto", "tcmalloc"):
        found = find_tcmalloc()
        if found is not None:
            return Allocator("tcmalloc", str(found))
        if wanted == "tcmalloc":
            raise AllocatorError(
                f"{ALLOCATOR_VAR}=tcmalloc, but no {' or '.join(TCMALLOC_LIBRARIES)} in "
                f"{', '.join(map(str, _library_dirs()))}: install it (Debian/Ubuntu: apt-get install "
                f"libtcmalloc-minimal4) or set {ALLOCATOR_VAR}=glibc")
        return Allocator("glibc", None)
    path = Path(wanted).expanduser()
    if not path.is_file():
        raise AllocatorError(f"{ALLOCATOR_VAR}={wanted!r}: expected {_CHOICES}; no such file")
    return Allocator(path.name, str(path.resolve()))


def worker_env(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Variables to add to a worker's (or a worker server's) environment."""
    chosen = allocator(environ)
    env: dict[str, str] = {}
    if chosen.library is not None:
        env["LD_PRELOAD"] = chosen.library
        if chosen.name == "tcmalloc":
            env.update({k: v for k, v in TCMALLOC_SETTINGS.items() if k not in environ})
    if "GLIBC_TUNABLES" not in environ:
        env["GLIBC_TUNABLES"] = MALLOC_TUNABLES  # harmless under tcmalloc: glibc's malloc is then unused
    return env


def recorded(environ: Mapping[str, str] = os.environ) -> dict[str, str | None]:
    """What workers of this run start with, for the manifest."""
    full = {**environ, **worker_env(environ)}
    return {"allocator": allocator(environ).name,
            **{k: full.get(k) for k in ("LD_PRELOAD", "GLIBC_TUNABLES", *TCMALLOC_SETTINGS)}}
