"""Executors: take tasks, return their result rows, one per task.

The seam is deliberately narrow (plain PointTasks in, plain rows out) so a cluster engine such
as Ray can replace the local fork server (harness/run/forkserver.py, which can also start workers
that take turns) for sweeps that outgrow one machine. Here: the protocol, what every executor
does with a worker's exit, and the command-line executor (a worker launched as a command, e.g.
under py-spy).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from harness.measure.devices import get_device
from harness.results.jsonl import read_rows
from harness.suite.task import PointTask
from harness.run.worker import base_row
from harness.run.workerenv import worker_env

# Wraps the worker command, e.g. to launch it under py-spy. Gets (command, stem) and returns the
# command to run.
CommandWrapper = Callable[[list[str], str], list[str]]


class Executor(Protocol):
    def run(self, tasks: list[PointTask], timeout: float) -> list[dict[str, Any]]: ...


def absent_device_rows(point: list[PointTask]) -> list[dict[str, Any]] | None:
    """A skipped row per task when the point's device is absent (no process needed to learn
    that), else None: the point is to be measured."""
    reason = get_device(point[0].device).availability()
    if reason is None:
        return None
    return [{**base_row(t), "status": "skipped", "error": reason} for t in point]


# The tree this module belongs to: where a worker of this checkout imports harness and models from.
CODE_ROOT = Path(__file__).resolve().parents[2]


def worker_process_env(extra: dict[str, str], root: Path | None = None) -> dict[str, str]:
    """Workers import the project and user models ("package.module:callable") from the cwd.

    With `root` (another checkout, e.g. the A/B gate's baseline worktree) the worker imports from
    that tree alone, ahead of anything inherited.
    """
    env = {**os.environ, **worker_env(), **extra, "PYTHONUNBUFFERED": "1"}
    first = (str(root),) if root is not None else (os.getcwd(), str(CODE_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (*first, env.get("PYTHONPATH")) if p)
    return env


def complete_rows(tasks: list[PointTask], rows: list[dict[str, Any]], error: str | None) -> list[dict[str, Any]]:
    """Every task gets a row: whatever the worker did not report failed with the process."""
    done = {r["variant"] for r in rows}
    for task in tasks:
        if task.variant not in done:
            rows.append({**base_row(task), "status": "failed",
                         "error": error or "worker exited without reporting this variant"})
    return rows


def crash_message(code: int, stderr_path: Path, tail_chars: int = 2000) -> str | None:
    if code == 0:
        return None
    tail = stderr_path.read_bytes().decode(errors="replace")[-tail_chars:].strip() if stderr_path.exists() else ""
    how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
    if code == -signal.SIGKILL:
        how += " (out of memory?)"
    return f"worker crashed ({how})" + (f": {tail}" if tail else "")


def timeout_message(timeout: float) -> str:
    return f"timeout: point still running after {timeout:g} s (measure.timeout); killed"


# ---- command-line workers (for wrappers such as py-spy) ---------------------------------------
@dataclass
class CommandExecutor:
    """`python -m harness.run.worker` per call, optionally wrapped (e.g. `py-spy record -- ...`)."""

    wrap: CommandWrapper | None = None
    artifacts: Path | None = None
    profile: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    root: Path | None = None  # code tree to run the worker from (its cwd too); None: this one

    def run(self, tasks: list[PointTask], timeout: float) -> list[dict[str, Any]]:
        with tempfile.TemporaryDirectory(prefix="reuse-bench-") as tmp:
            task_file, out, err = Path(tmp) / "tasks.json", Path(tmp) / "rows.jsonl", Path(tmp) / "stderr.txt"
            task_file.write_text(json.dumps([t.to_json() for t in tasks]))
            cmd = [sys.executable, "-m", "harness.run.worker", str(task_file), str(out)]
            if self.artifacts is not None:
                cmd += ["--artifacts", str(self.artifacts)]
            if self.profile == "torch":
                cmd += ["--profile", "torch"]
            if self.wrap is not None:
                cmd = self.wrap(cmd, tasks[0].point_id)
            with open(err, "wb") as err_fh:
                # A new session: on timeout the whole group goes (py-spy and its child too).
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_fh,
                                        env=worker_process_env(self.env, self.root), start_new_session=True, cwd=self.root)
                try:
                    error = crash_message(proc.wait(timeout=timeout), err)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    error = timeout_message(timeout)
            return complete_rows(tasks, read_rows(out), error)
