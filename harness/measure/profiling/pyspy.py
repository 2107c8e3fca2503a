"""Sampling profiles of a worker process with py-spy, turned into speedscope JSON and a flame graph.

    ok, why = pyspy_available()
    if ok:
        cmd = wrap_command(cmd, out_dir, stem)      # run this instead of cmd
        subprocess.run(cmd, ...)
        info = postprocess(out_dir, stem)           # paths + top functions, or an "error"
    else:
        note = why

The command is launched *under* py-spy (`py-spy record -- cmd`) rather than attached to a
running process: a child of py-spy may be read without extra ptrace rights under Yama's default
ptrace_scope=1, where attaching to a stranger needs root or CAP_SYS_PTRACE.

Two py-spy behaviours the caller must know (checked with py-spy 0.4.3):
  * py-spy exits 0 whatever the profiled command's exit status was: read the command's result
    from the files it writes, not from the return code.
  * py-spy prints its own progress lines ("py-spy> ...") on stdout, interleaved with the
    command's: do not parse the wrapped command's stdout.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from harness.measure.profiling.flamegraph import Stacks, render_flamegraph

SPEEDSCOPE_SCHEMA = "https://www.speedscope.app/file-format-schema.json"
TOP_N = 15

# A short CPU-bound child for the permission probe: long enough for a few samples at 200 Hz.
_PROBE_PROGRAM = "import time\nt = time.perf_counter()\nwhile time.perf_counter() - t < 0.25: pass\n"
# py-spy's raw frame: "function (file:line)"; the line is absent with --nolineno.
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


class PySpyUnavailable(RuntimeError):
    """py-spy is missing or may not sample here; the message says which and what to do."""


def collapsed_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}.collapsed.txt"


def speedscope_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}.speedscope.json"


def flamegraph_path(out_dir: Path, stem: str) -> Path:
    return Path(out_dir) / f"{stem}.flamegraph.svg"


def find_pyspy() -> Path | None:
    """The py-spy binary: beside this interpreter first (a virtualenv's bin/ is often not on
    PATH when it is run by path), then on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("py-spy")
    return Path(found) if found else None


@functools.cache
def pyspy_available() -> tuple[bool, str]:
    """(True, "py-spy <version> at <path>") when py-spy exists and may sample a child process
    here, else (False, why). Probes once per process by recording a tiny Python child."""
    exe = find_pyspy()
    if exe is None:
        return False, f"py-spy not found on PATH or beside {sys.executable}; install it with `pip install py-spy`"
    with tempfile.TemporaryDirectory(prefix="pyspy-probe-") as tmp:
        out = Path(tmp) / "probe.txt"
        cmd = [str(exe), "record", "--format", "raw", "--rate", "200", "-o", str(out),
               "--", sys.executable, "-c", _PROBE_PROGRAM]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"py-spy at {exe} could not run: {exc}"
        if proc.returncode != 0 or not out.is_file() or not out.read_text().strip():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            detail = lines[-1].strip() if lines else f"exit status {proc.returncode}, no samples"
            return False, (f"py-spy at {exe} may not sample processes here (it needs ptrace: run as "
                           f"root or grant CAP_SYS_PTRACE, e.g. docker --cap-add SYS_PTRACE): {detail}")
    try:
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.strip() or "py-spy"
    except (OSError, subprocess.TimeoutExpired):
        version = "py-spy"
    return True, f"{version} at {exe}"


def wrap_command(cmd: list[str], out_dir: Path, stem: str, rate: int = 100) -> list[str]:
    """`cmd` run under py-spy, sampling `rate` times a second into <out_dir>/<stem>.collapsed.txt.
    Raises PySpyUnavailable (with the reason) when py-spy cannot be used here."""
    ok, why = pyspy_available()
    exe = find_pyspy()
    if not ok or exe is None:
        raise PySpyUnavailable(why)
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # --function: one frame per function (its first line), not per executing line, so a hot
    # function is one wide box rather than a row of slivers.
    return [str(exe), "record", "--format", "raw", "--function", "--rate", str(rate),
            "-o", str(collapsed_path(out_dir, stem)), "--", *cmd]


def parse_collapsed(text: str) -> dict[tuple[str, ...], int]:
    """Collapsed stacks ("root;child;leaf count" per line) -> {root-first frames: samples}.
    py-spy may write an empty stack (" 1") for a sample taken outside any Python frame."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in text.splitlines():
        stack, sep, count = line.rstrip().rpartition(" ")
        if not sep or not count.isdigit():
            continue
        stacks[tuple(stack.split(";")) if stack else ()] += int(count)
    return dict(stacks)


def split_frame(frame: str) -> dict[str, Any]:
    """"fn (file.py:12)" -> {"name": "fn", "file": "file.py", "line": 12} (speedscope's Frame)."""
    m = _FRAME.match(frame)
    if m is None:
        return {"name": frame}
    out: dict[str, Any] = {"name": m["name"], "file": m["file"]}
    if m["line"] is not None:
        out["line"] = int(m["line"])
    return out


def to_speedscope(stacks: Stacks, name: str) -> dict[str, Any]:
    """A speedscope file with one "sampled" profile; each distinct stack once, weighted by its
    sample count (the schema's weights), frames shared by index."""
    index: dict[str, int] = {}
    frames: list[dict[str, Any]] = []
    samples: list[list[int]] = []
    weights: list[int] = []
    for stack, count in sorted(stacks.items()):
        ids = []
        for frame in stack:
            if frame not in index:
                index[frame] = len(frames)
                frames.append(split_frame(frame))
            ids.append(index[frame])
        samples.append(ids)
        weights.append(count)
    total = sum(weights)
    return {
        "$schema": SPEEDSCOPE_SCHEMA,
        "shared": {"frames": frames},
        "profiles": [{"type": "sampled", "name": name, "unit": "none", "startValue": 0,
                      "endValue": total, "samples": samples, "weights": weights}],
        "name": name,
        "activeProfileIndex": 0,
        "exporter": "reuse-bench",
    }


def top_self(stacks: Stacks, n: int = TOP_N) -> list[dict[str, Any]]:
    """Functions by samples in which they were the innermost frame (self), with their share
    of all samples both as self and inclusive of callees (a recursive frame counted once)."""
    total = sum(stacks.values())
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack:
            own[stack[-1]] += count
        for frame in set(stack):
            inclusive[frame] += count
    ranked = sorted(own.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
    rows = []
    for frame, count in ranked:
        parts = split_frame(frame)
        location = parts.get("file", "") + (f":{parts['line']}" if "line" in parts else "")
        rows.append({"function": parts["name"], "location": location or None,
                     "self_samples": count, "self_pct": 100.0 * count / total,
                     "total_pct": 100.0 * inclusive[frame] / total})
    return rows


def focus_stacks(stacks: dict[tuple[str, ...], int], function: str) -> dict[tuple[str, ...], int]:
    """Only the samples taken inside `function`, rooted at it (interpreter start-up, imports and
    set-up would otherwise dwarf the work being profiled). Unchanged when no sample is inside."""
    focused: Counter[tuple[str, ...]] = Counter()
    for stack, count in stacks.items():
        for i, frame in enumerate(stack):
            if frame.split(" (", 1)[0] == function:
                focused[stack[i:]] += count
                break
    return dict(focused) if focused else stacks


def postprocess(out_dir: Path, stem: str, focus: str | None = None) -> dict[str, Any]:
    """Turn <stem>.collapsed.txt into <stem>.speedscope.json and <stem>.flamegraph.svg.

    With `focus`, the speedscope file, flame graph and top functions keep only the samples
    inside that function (the raw collapsed file keeps everything).

    Returns {"error": None | why, "collapsed_path", "speedscope_path", "flamegraph_path"
    (str, None when not written), "total_samples", "top_self": [{"function", "location",
    "self_samples", "self_pct", "total_pct"}, ...]}. Never raises for a missing or empty
    profile: that comes back as "error".
    """
    raw = collapsed_path(out_dir, stem)
    result: dict[str, Any] = {"error": None, "collapsed_path": None, "speedscope_path": None,
                              "flamegraph_path": None, "total_samples": 0, "top_self": []}
    if not raw.is_file():
        result["error"] = f"no py-spy profile at {raw}: py-spy did not run or failed (see its output)"
        return result
    result["collapsed_path"] = str(raw)
    stacks = parse_collapsed(raw.read_text(errors="replace"))
    if focus is not None:
        stacks = focus_stacks(stacks, focus)
    total = sum(stacks.values())
    if total == 0:
        result["error"] = f"py-spy recorded no samples in {raw}: the command ran for less than one sampling interval"
        return result
    result["total_samples"] = total
    result["top_self"] = top_self(stacks)
    scope = speedscope_path(out_dir, stem)
    scope.write_text(json.dumps(to_speedscope(stacks, stem)))
    result["speedscope_path"] = str(scope)
    result["flamegraph_path"] = str(render_flamegraph(stacks, flamegraph_path(out_dir, stem), f"py-spy: {stem}"))
    return result
