"""The environment every measuring worker starts with, on top of the user's.

glibc's malloc serves a block above its mmap threshold with a fresh mapping and unmaps it on free,
so a tensor that size costs page faults and kernel zero-filling on every step (a 64 MiB buffer:
30 ms to allocate and fill against 5 ms from the heap, on the 2-core CI machine). The threshold
is also dynamic: it rises as mapped blocks are freed, so each process switches between the two
regimes at its own, unpredictable step. Timings then jump by 10-40% mid-run and differ between
processes running the very same code. Fixing the threshold high (and not trimming the heap back
to the OS) makes every step reuse heap memory: one regime, for every variant alike. PyTorch's CPU
tuning guides get the same effect by swapping in jemalloc or tcmalloc.

A GLIBC_TUNABLES the user set is left alone. Either way the value is recorded in the manifest.
glibc reads it when a process starts, so it must be in the environment that starts the worker
(or the fork server that forks workers), not set inside one.
"""

from __future__ import annotations

import os

MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184"


def worker_env() -> dict[str, str]:
    """Variables to add to a worker's (or a worker server's) environment."""
    return {} if "GLIBC_TUNABLES" in os.environ else {"GLIBC_TUNABLES": MALLOC_TUNABLES}


def recorded() -> dict[str, str | None]:
    """What workers of this run start with, for the manifest."""
    return {"GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", MALLOC_TUNABLES)}
