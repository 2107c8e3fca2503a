"""One writer per run directory: an exclusive flock on RUN/writer.lock for the whole session.

Two writers of one directory (say two `harness run --resume` of one killed run) would each skip
what was stored when they started and measure the rest, so every row measured by both lands
twice. The lock makes the second one stop before it writes anything, naming the first. The kernel
drops an flock when its holder dies, however it dies, so a killed run never leaves a stale lock
behind. Readers (report, load_run, export) never take it: rows are appended whole and the
manifest is replaced atomically, so a reader sees a consistent state at any moment.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from harness.results.errors import RunLocked
from harness.results.store import LOCK, now_iso

# A holder writes who it is right after taking the lock; a loser waits this long to read it.
HOLDER_WAIT_S = 1.0


def _command() -> str:
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    # `python -m harness.cli` and the `harness` script are the same command to the user.
    if program in ("cli.py", "harness"):
        program = "harness"
    return shlex.join([program, *sys.argv[1:]])


def _holder(fd: int) -> dict[str, Any]:
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        text = os.pread(fd, 4096, 0).decode(errors="replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.02)


@contextmanager
def writer_lock(run_dir: Path) -> Iterator[None]:
    """Hold RUN's writer lock inside the block, or raise RunLocked naming its holder at once."""
    fd = os.open(Path(run_dir) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(Path(run_dir), _holder(fd)) from None
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "since": now_iso()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield
        finally:
            # Said before letting go, so no one reads a finished writer as the holder.
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock
