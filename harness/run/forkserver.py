"""A fork server per code tree: `import torch` once per tree, a fresh forked worker per request.

Every measurement forks its workers from one: a suite run from a server of this tree, the A/B gate
from one per tree (a worktree of REV and the working tree). A fresh `python -m harness.run.worker`
costs an interpreter and an `import torch` each time (3-8 s on a loaded 2-core machine), which
would dominate a point measured in rounds of one worker per variant. So each tree gets a small
server, started with that tree on PYTHONPATH: it imports torch and the tree's worker module once
and forks a child per request, several alive at once when a lockstep round asks. The child is a
new process that has run nothing (the server never runs a torch op, so no thread pool exists to
break by forking) and speaks the same contract as `python -m harness.run.worker TASKS OUT`, so any
revision whose worker has that command line can be measured; the tasks it is given are first cut
to the keys that revision knows (see understood() in the server below).
"""

from __future__ import annotations

import dataclasses
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
from typing import Any, Callable, Sequence

from harness.results.jsonl import read_rows
from harness.run.executor import CODE_ROOT, complete_rows, crash_message, timeout_message, worker_process_env
from harness.suite.task import AccuracyConfig, PointTask
from models.config import TransformerConfig

# Runs inside the side's tree (its harness.run.worker), talking JSON lines over stdin/stdout:
# requests in; {"ready": pid}, then {"forked": pid} per request and {"exited": pid, "status": code}
# per worker out. Several workers may be alive at once (a lockstep round), so children are reaped
# as they exit rather than waited for one by one.
_SERVER = r"""
import dataclasses, importlib, json, os, select, sys
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
schema = None  # where this tree keeps PointTask: harness/suite/task.py, before that harness/schema.py
for name in ("harness.suite.task", "harness.schema"):
    try:
        schema = importlib.import_module(name)
        break
    except ImportError:
        continue
try:
    from models.config import TransformerConfig
except ImportError:
    TransformerConfig = None


def _known(data, cls, defaults):
    # The keys `cls` has, and of the others those the caller's tree has at another value than its
    # default (`defaults`; None: drop them all).
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items()
            if k in names or (defaults is not None and (k not in defaults or defaults[k] != v))}


def understood(path, defaults):
    # Tasks come from the caller's tree, which may be newer, and this tree's dataclasses fail on
    # keys they lack. A measure key says how to measure: dropped, this tree measures its way. Any
    # other key says what to measure: dropped where the caller has it at its default (the same
    # thing is measured without it); at another value this tree cannot measure it, and fails
    # saying so rather than measure something else.
    if schema is None:
        return
    tasks = json.load(open(path))
    kept = []
    for task in tasks:
        task = _known(task, schema.PointTask, defaults["task"])
        parts = (("measure", getattr(schema, "MeasureConfig", None), None),
                 ("accuracy", getattr(schema, "AccuracyConfig", None), defaults["accuracy"]),
                 ("model_config", TransformerConfig, defaults["model_config"]))
        for key, cls, part_defaults in parts:
            if cls is not None and isinstance(task.get(key), dict):
                task[key] = _known(task[key], cls, part_defaults)
        kept.append(task)
    if kept != tasks:
        with open(path, "w") as fh:
            json.dump(kept, fh)


def child(request):
    os.environ.update(request.get("env") or {})
    if request.get("cpus"):
        os.sched_setaffinity(0, request["cpus"])
    fd = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        understood(request["tasks"], request["defaults"])
        code = worker.main([request["tasks"], request["out"], *request.get("args", [])]) or 0
    except BaseException:
        import traceback
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def say(message):
    print(json.dumps(message), flush=True)


say({"ready": os.getpid()})
children, pending, reading = set(), b"", True
while reading or children:
    ready, _, _ = select.select([0] if reading else [], [], [], 0.05)
    if ready:
        chunk = os.read(0, 65536)
        reading = bool(chunk)  # the caller closed our input: finish the workers alive, then stop
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                child(request)
            children.add(pid)
            say({"forked": pid})
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        children.discard(pid)
        say({"exited": pid, "status": os.waitstatus_to_exitcode(status)})
"""


def _task_defaults() -> dict[str, dict[str, Any]]:
    """This tree's defaults of what a task says to measure, as JSON values: where a key an older
    tree lacks has them, that tree may drop it (see understood() above)."""

    def of(cls: type) -> dict[str, Any]:
        values = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                values[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                values[f.name] = f.default_factory()
        return {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in values.items()}

    defaults = {"task": of(PointTask), "accuracy": of(AccuracyConfig), "model_config": TransformerConfig().to_dict()}
    return json.loads(json.dumps(defaults))  # tuples as the lists a task's JSON holds


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
    """Executor (tasks of one point in, rows out) whose workers fork from a server in `root`.

    `worker_args`: added to each worker's command line (`--artifacts DIR --profile torch`).
    """

    def __init__(self, root: Path | None = None, env: dict[str, str] | None = None, start_timeout: float = 300.0,
                 worker_args: Sequence[str] = ()) -> None:
        self.root = Path(root) if root is not None else None
        self.worker_args = list(worker_args)
        self._tmp = tempfile.TemporaryDirectory(prefix="reuse-bench-fs-")
        self._log = open(Path(self._tmp.name) / "server.log", "w+b")
        self._proc = subprocess.Popen([sys.executable, "-c", _SERVER], cwd=self.root, text=True,
                                      env=worker_process_env(env or {}, self.root),
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        self._pending = b""  # bytes read from the server beyond the last full line
        self._exited: dict[int, int] = {}  # exit codes the server reported while we waited for others
        self._alive: set[int] = set()      # workers forked and not yet finished: what kill() stops
        if self._read(start_timeout) is None:
            self.close()
            raise RuntimeError(f"worker server for {self.root or CODE_ROOT} did not start: {self._server_log()}")

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

    def _read_until(self, wanted: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any] | None:
        """The first message `wanted` accepts, within `timeout`; exits of other workers are kept."""
        deadline = time.monotonic() + timeout
        while (message := self._read(deadline - time.monotonic())) is not None:
            if "exited" in message:
                self._exited[int(message["exited"])] = int(message["status"])
            if wanted(message):
                return message
        return None

    def _exit_code(self, pid: int, timeout: float) -> int | None:
        """The exit code of worker `pid` once it exits within `timeout`, else None."""
        if pid not in self._exited:
            self._read_until(lambda m: m.get("exited") == pid, timeout)
        return self._exited.pop(pid, None)

    def _server_log(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:].strip() or "no output"

    def run(self, tasks: list[PointTask], timeout: float) -> list[dict[str, Any]]:
        return self.finish(self.start(tasks), timeout)

    def start(self, tasks: list[PointTask], env: dict[str, str] | None = None,
              cpus: Sequence[int] | None = None) -> Pending:
        """Fork a worker for `tasks` (with `env` added to its environment, pinned to `cpus` if
        given) and return at once; other workers of this server may be alive meanwhile."""
        tmp = tempfile.TemporaryDirectory(prefix="reuse-bench-", dir=self._tmp.name)
        pending = Pending(tasks, tmp, Path(tmp.name) / "rows.jsonl", Path(tmp.name) / "stderr.txt")
        task_file = Path(tmp.name) / "tasks.json"
        task_file.write_text(json.dumps([t.to_json() for t in tasks]))
        request = {"tasks": str(task_file), "out": str(pending.out), "stderr": str(pending.err), "env": env or {},
                   "cpus": sorted(cpus) if cpus else None, "args": self.worker_args,
                   "defaults": _task_defaults()}
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps(request) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pending.error = f"worker server died: {self._server_log()}"
            return pending
        # Requests are served in order, so the next fork reported is this one.
        forked = self._read_until(lambda m: "forked" in m, 60.0)
        if forked is None:
            pending.error = f"worker server did not fork a worker: {self._server_log()}"
        else:
            pending.pid = int(forked["forked"])
            self._alive.add(pending.pid)
        return pending

    def finish(self, pending: Pending, timeout: float) -> list[dict[str, Any]]:
        """Wait up to `timeout` for the worker `start` forked (then kill it); its rows, one per task."""
        if pending.error is None:
            pending.error = self._wait_child(pending, timeout)
        self._alive.discard(pending.pid)
        rows = complete_rows(pending.tasks, read_rows(pending.out), pending.error)
        pending.tmp.cleanup()
        return rows

    def _wait_child(self, pending: Pending, timeout: float) -> str | None:
        code = self._exit_code(pending.pid, timeout)
        if code is None:
            try:
                os.kill(pending.pid, signal.SIGKILL)  # the worker we forked, by its pid
            except ProcessLookupError:
                pass
            self._exit_code(pending.pid, 30.0)  # the server's report of that exit
            return timeout_message(pending.tasks[0].measure.timeout)
        return crash_message(code, pending.err)

    def kill(self) -> None:
        """Stop every worker still alive and the server now, waiting for nothing: a cancelled
        measurement (a cluster run interrupted mid-point) must not leave workers measuring on.
        Safe to call from another thread than the one measuring; that one's workers then fail."""
        for pid in list(self._alive):
            try:
                os.kill(pid, signal.SIGKILL)  # a worker this server forked, by its pid
            except ProcessLookupError:
                pass
        if self._proc.poll() is None:
            self._proc.kill()

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
