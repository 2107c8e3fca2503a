"""A fork server per code tree: `import torch` once per tree, a fresh forked worker per point.

The A/B gate measures two trees (a worktree of REV and the working tree) in alternation, many
times per point. A fresh `python -m harness.run.worker` costs an interpreter and an `import torch`
each time (3-8 s on a loaded 2-core machine), which would dominate the measurement; the runner's
fork server (harness.run.executor) is one per process and serves only the tree it was imported from.
So each side gets its own small server, started with that tree on PYTHONPATH: it imports torch and
the tree's worker module once and forks a child per request. The child is a new process that has
run nothing (the server never runs a torch op, so no thread pool exists to break by forking) and
speaks the same contract as `python -m harness.run.worker TASKS OUT`, so any revision whose worker
has that command line can be measured.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from harness.results.jsonl import read_rows
from harness.suite.task import PointTask
from harness.run.worker import base_row
from harness.run.workerenv import worker_env

# Runs inside the side's tree (its harness.run.worker), talking JSON lines over stdin/stdout.
_SERVER = r"""
import importlib, json, os, sys
# Newest layout first: the tree may be an older revision (harness/preload.py, harness/worker.py).
for preload in ("harness.run.preload", "harness.preload"):
    try:
        importlib.import_module(preload)  # torch and the measuring code, then gc.freeze()
        break
    except ImportError:
        continue
else:  # a tree older still: import what it has; the child imports the rest
    for name in ("torch", "harness.worker", "harness.measure_speed", "models.transformer"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
try:
    from harness.run import worker
except ImportError:
    from harness import worker
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.update(request.get("env") or {})
        if request.get("cpus"):
            os.sched_setaffinity(0, request["cpus"])
        fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            code = worker.main([request["tasks"], request["out"]]) or 0
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"pid": pid, "status": os.waitstatus_to_exitcode(status)}), flush=True)
"""


@dataclass
class Pending:
    """A worker forked by ForkServerExecutor.start, not yet waited for."""

    tasks: list[PointTask]
    tmp: tempfile.TemporaryDirectory  # type: ignore[type-arg]
    out: Path
    err: Path
    pid: int = -1
    error: str | None = None  # set when no worker could be forked


class ForkServerExecutor:
    """Executor (tasks of one point in, rows out) whose workers fork from a server in `root`."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, start_timeout: float = 300.0) -> None:
        self.root = Path(root)
        self._tmp = tempfile.TemporaryDirectory(prefix="reuse-bench-fs-")
        self._log = open(Path(self._tmp.name) / "server.log", "w+b")
        path_env = os.pathsep.join(p for p in (str(self.root), os.environ.get("PYTHONPATH")) if p)
        full_env = {**os.environ, **worker_env(), **(env or {}), "PYTHONPATH": path_env, "PYTHONUNBUFFERED": "1"}
        self._proc = subprocess.Popen([sys.executable, "-c", _SERVER], cwd=self.root, env=full_env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._pending = b""  # bytes read from the server beyond the last full line
        if self._read(start_timeout) is None:
            self.close()
            raise RuntimeError(f"worker server for {self.root} did not start: {self._server_log()}")

    def _read(self, timeout: float) -> dict[str, Any] | None:
        """The server's next message, or None on timeout or if it died.

        Reads the pipe's file descriptor directly: a buffered readline could swallow two messages
        at once and leave select() waiting for data that already arrived.
        """
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        deadline = time.monotonic() + max(timeout, 0.0)
        while b"\n" not in self._pending:
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0.0))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return json.loads(line)

    def _server_log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:].strip() or "no output"

    def run(self, tasks: list[PointTask], timeout: float) -> list[dict[str, Any]]:
        return self.finish(self.start(tasks), timeout)

    def start(self, tasks: list[PointTask], env: dict[str, str] | None = None,
              cpus: Sequence[int] | None = None) -> "Pending":
        """Fork a worker for `tasks` (with `env` added to its environment, pinned to `cpus` if
        given) and return at once."""
        tmp = tempfile.TemporaryDirectory(prefix="reuse-bench-", dir=self._tmp.name)
        pending = Pending(tasks, tmp, Path(tmp.name) / "rows.jsonl", Path(tmp.name) / "stderr.txt")
        task_file = Path(tmp.name) / "tasks.json"
        task_file.write_text(json.dumps([t.to_json() for t in tasks]))
        request = {"tasks": str(task_file), "out": str(pending.out), "stderr": str(pending.err), "env": env or {},
                   "cpus": sorted(cpus) if cpus else None}
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pending.error = f"worker server died: {self._server_log()}"
            return pending
        started = self._read(60.0)
        if started is None:
            pending.error = f"worker server did not fork a worker: {self._server_log()}"
        else:
            pending.pid = int(started["pid"])
        return pending

    def finish(self, pending: "Pending", timeout: float) -> list[dict[str, Any]]:
        """Wait up to `timeout` for the worker `start` forked (then kill it); its rows, one per task."""
        if pending.error is None:
            pending.error = self._wait_child(pending, timeout)
        rows = read_rows(pending.out)
        pending.tmp.cleanup()
        done = {r.get("variant") for r in rows}
        for task in pending.tasks:  # whatever the worker did not report failed with it
            if task.variant not in done:
                rows.append({**base_row(task), "status": "failed",
                             "error": pending.error or "worker exited without reporting this variant"})
        return rows

    def _wait_child(self, pending: "Pending", timeout: float) -> str | None:
        finished = self._read(timeout)
        if finished is None:
            try:
                os.kill(pending.pid, signal.SIGKILL)  # the worker we forked, by its pid
            except ProcessLookupError:
                pass
            self._read(30.0)  # the server's report of that exit
            return f"timeout: point still running after {timeout:g} s (measure.timeout); killed"
        code = int(finished.get("status", 1))
        if code == 0:
            return None
        err = pending.err
        tail = err.read_text(errors="replace")[-2000:].strip() if err.exists() else ""
        how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        return f"worker crashed ({how})" + (f": {tail}" if tail else "")

    def close(self) -> None:
        if self._proc.poll() is None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()  # the server's loop ends with its input
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()
        self._tmp.cleanup()

    def __enter__(self) -> "ForkServerExecutor":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
