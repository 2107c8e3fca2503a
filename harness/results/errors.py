"""Why a run directory cannot be written now: input errors (exit 2, one line, no traceback)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import InputError


class RunDirError(InputError):
    """A run directory that cannot be written as asked: invalid input, not a failed measurement."""


class NotARunDir(RunDirError, FileNotFoundError):
    """A path without manifest.json. Still a FileNotFoundError, as it was, for callers that catch that."""


class RunLocked(RunDirError):
    """Another process is writing the run directory (it holds the writer lock)."""

    def __init__(self, run_dir: Path, holder: dict[str, Any]) -> None:
        self.run_dir, self.holder = run_dir, holder
        if holder:
            who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
                   f"({holder.get('command', '?')}, since {holder.get('since', '?')})")
        else:  # it took the lock a moment ago and has not written who it is yet
            who = "another process"
        super().__init__(f"{run_dir} is being written by {who}")


class RunDamaged(RunDirError):
    """results.jsonl has lines that are not rows: appending more would bury them."""

    SHOWN = 3  # problems spelled out; the rest are counted

    def __init__(self, run_dir: Path, problems: list[str]) -> None:
        self.run_dir, self.problems = run_dir, problems
        listed = "; ".join(problems[: self.SHOWN])
        more = f" and {len(problems) - self.SHOWN} more" if len(problems) > self.SHOWN else ""
        super().__init__(f"{listed}{more}; run `harness repair {run_dir}` to move the damaged line(s) aside")
