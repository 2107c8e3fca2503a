"""Profiling: a real py-spy recording of a real workload, flame graph + speedscope output,
and a real torch.profiler trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import torch

from harness.measure.profiling import pyspy
from harness.measure.profiling.flamegraph import render_flamegraph
from harness.measure.profiling.pyspy import (
    PySpyUnavailable, parse_collapsed, postprocess, pyspy_available, to_speedscope, top_self, wrap_command,
)
from harness.measure.profiling.torch_profile import profile_steps

# numpy rather than torch: importing torch costs seconds on a busy 2-core machine, and this
# test is about py-spy seeing the loop, not about torch.
WORKLOAD = """
import time
import numpy as np

def busy_matmul_loop(seconds):
    a = np.random.default_rng(0).standard_normal((192, 192))
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        a = np.tanh(a @ a)
    return a

busy_matmul_loop(0.8)
"""


@pytest.fixture
def fresh_probe():
    pyspy_available.cache_clear()
    yield
    pyspy_available.cache_clear()


def check_speedscope(doc: dict) -> None:
    """The parts of https://www.speedscope.app/file-format-schema.json a sampled file uses."""
    assert doc["$schema"] == "https://www.speedscope.app/file-format-schema.json"
    frames = doc["shared"]["frames"]
    assert frames and all(isinstance(f["name"], str) for f in frames)
    assert all(isinstance(f.get("file", ""), str) and isinstance(f.get("line", 0), int) for f in frames)
    for prof in doc["profiles"]:
        assert prof["type"] == "sampled" and prof["unit"] == "none" and isinstance(prof["name"], str)
        assert len(prof["samples"]) == len(prof["weights"]) > 0
        assert all(0 <= i < len(frames) for stack in prof["samples"] for i in stack)
        assert prof["endValue"] - prof["startValue"] == sum(prof["weights"])
    assert 0 <= doc.get("activeProfileIndex", 0) < len(doc["profiles"])


# ---- real py-spy ----------------------------------------------------------------------------

def test_pyspy_profiles_a_real_matmul_workload(tmp_path: Path) -> None:
    assert pyspy.find_pyspy() is not None, "py-spy is a declared dependency but is not installed"
    ok, why = pyspy_available()
    if not ok:
        pytest.skip(f"py-spy is installed but may not sample processes here: {why}")
    cmd = wrap_command([sys.executable, "-c", WORKLOAD], tmp_path / "prof", "point1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    info = postprocess(tmp_path / "prof", "point1")
    assert info["error"] is None
    svg = Path(info["flamegraph_path"]).read_text()
    ET.fromstring(svg)  # well-formed XML
    assert "busy_matmul_loop" in svg
    doc = json.loads(Path(info["speedscope_path"]).read_text())
    check_speedscope(doc)
    assert doc["profiles"][0]["endValue"] == info["total_samples"] >= 40
    assert any(f["name"] == "busy_matmul_loop" for f in doc["shared"]["frames"])
    hot = {row["function"]: row for row in info["top_self"]}
    assert "busy_matmul_loop" in hot, info["top_self"]  # time in numpy's C code lands on its caller
    assert hot["busy_matmul_loop"]["self_samples"] >= 20
    assert hot["busy_matmul_loop"]["location"].startswith("<string>:")


def test_missing_pyspy_is_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_probe) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    ok, why = pyspy_available()
    assert not ok and why.startswith("py-spy not found") and "pip install py-spy" in why
    with pytest.raises(PySpyUnavailable, match="py-spy not found"):
        wrap_command(["true"], tmp_path, "x")


def test_pyspy_that_may_not_sample_is_a_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      fresh_probe) -> None:
    # A stand-in binary answering like py-spy in a container without CAP_SYS_PTRACE.
    fake = tmp_path / "py-spy"
    fake.write_text("#!/bin/sh\necho 'Error: Permission Denied (os error 1)' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    ok, why = pyspy_available()
    assert not ok and "CAP_SYS_PTRACE" in why and "Permission Denied (os error 1)" in why


def test_postprocess_reports_missing_and_empty_profiles(tmp_path: Path) -> None:
    missing = postprocess(tmp_path, "nothing")
    assert missing["error"].startswith("no py-spy profile at") and missing["flamegraph_path"] is None
    (tmp_path / "short.collapsed.txt").write_text("")
    empty = postprocess(tmp_path, "short")
    assert "no samples" in empty["error"] and empty["total_samples"] == 0


# ---- collapsed stacks -> speedscope / top functions / flame graph ---------------------------

COLLAPSED = """\
<module> (run.py:1);main (run.py:10);attention (model.py:40) 30
<module> (run.py:1);main (run.py:10);attention (model.py:40);softmax (torch/functional.py:7) 50
<module> (run.py:1);main (run.py:10);mlp (model.py:80) 20
 2
"""


def test_collapsed_stacks_convert_to_speedscope_and_top_functions() -> None:
    stacks = parse_collapsed(COLLAPSED)
    assert stacks[()] == 2 and sum(stacks.values()) == 102
    doc = to_speedscope(stacks, "p")
    check_speedscope(doc)
    frames = doc["shared"]["frames"]
    assert {"name": "softmax", "file": "torch/functional.py", "line": 7} in frames
    top = top_self(stacks)
    assert [r["function"] for r in top] == ["softmax", "attention", "mlp"]
    assert top[0]["self_pct"] == pytest.approx(100 * 50 / 102)
    assert top[1]["total_pct"] == pytest.approx(100 * 80 / 102)  # attention includes softmax


def test_flamegraph_merges_frames_narrower_than_a_pixel(tmp_path: Path) -> None:
    stacks = {("main", "hot_loop"): 100_000}
    stacks.update({("main", f"tiny_{i:04d}"): 1 for i in range(3000)})
    out = render_flamegraph(stacks, tmp_path / "fg.svg", "merge test")
    svg = out.read_text()
    ET.fromstring(svg)
    assert "hot_loop" in svg and "merge test" in svg
    assert "[3000 narrow frames]" in svg           # all tiny siblings in one box
    assert "tiny_0001" not in svg
    assert svg.count("<title>") == 4               # all, main, hot_loop, the merged box
    assert out.stat().st_size < 50_000


# ---- torch.profiler -------------------------------------------------------------------------

def test_torch_profile_of_real_steps(tmp_path: Path) -> None:
    torch.manual_seed(0)
    x, w1, w2 = torch.randn(32, 64), torch.randn(64, 64), torch.randn(64, 16)

    def step() -> None:
        torch.mm(torch.relu(torch.mm(x, w1)), w2).sum()

    out = profile_steps(step, n_steps=4, out_path=tmp_path / "trace" / "p.json", device="cpu")
    trace = json.loads(Path(out["trace_path"]).read_text())
    names = {e.get("name") for e in trace["traceEvents"]}
    assert "aten::mm" in names and "step 0" in names and "step 3" in names
    ops = {row["name"]: row for row in out["top_ops"]}
    assert out["activities"] == ["cpu"] and out["note"] is None
    assert 0 < len(out["top_ops"]) <= 15 and "step 0" not in ops
    assert ops["aten::mm"]["calls"] == 2.0            # two matmuls per step: calls are per step
    assert ops["aten::mm"]["self_device_ms"] is None  # no device was profiled
    self_ms = [row["self_cpu_ms"] for row in out["top_ops"]]
    assert self_ms == sorted(self_ms, reverse=True) and self_ms[0] > 0
    assert all(row["cpu_total_ms"] >= row["self_cpu_ms"] - 1e-9 for row in out["top_ops"])


def test_torch_profile_on_cuda_without_cuda_notes_it(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the note is for machines without it")
    out = profile_steps(lambda: None, 1, tmp_path / "t.json", device="cuda")
    assert out["note"] == "CUDA not available: profiled CPU activity only"
    assert os.path.getsize(out["trace_path"]) > 0


def test_focus_keeps_only_samples_inside_the_function_rooted_there() -> None:
    from harness.measure.profiling.pyspy import focus_stacks

    stacks = {("main (w.py:1)", "import_torch (w.py:2)"): 90,
              ("main (w.py:1)", "timed_steps (m.py:5)", "forward (t.py:9)"): 7,
              ("main (w.py:1)", "timed_steps (m.py:5)"): 3}
    assert focus_stacks(stacks, "timed_steps") == {("timed_steps (m.py:5)", "forward (t.py:9)"): 7,
                                                   ("timed_steps (m.py:5)",): 3}
    assert focus_stacks(stacks, "absent") == stacks  # nothing inside: keep everything rather than nothing
