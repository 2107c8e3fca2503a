"""The runner end to end with real worker processes: failures stay local, runs resume after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, harness_cmd, stand_in_tree, tiny_suite
from harness.measure.devices import CpuDevice
from harness.run.runner import RunOptions, resume, start
from harness.results.store import RunDir
from harness.suite.loading import load_suite
from harness.suite.sweep import expand

pytestmark = pytest.mark.slow


def _run(suite_path: Path, out: Path, **kw) -> RunDir:
    outcome = start(load_suite(suite_path), RunOptions(output_dir=out, progress=False, **kw))
    return RunDir(outcome.run_dir)


def test_run_writes_manifest_and_one_row_per_point_and_variant(tmp_path: Path) -> None:
    run = _run(tiny_suite(tmp_path / "s.yaml"), tmp_path / "runs")
    manifest = run.read_manifest()
    assert manifest["status"] == "complete" and manifest["finished_at"]
    env = manifest["environment"]
    for key in ("python", "torch", "numpy", "os", "cpu_model", "cpu_cores", "threads", "git_commit"):
        assert key in env
    rows = run.rows()
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert r["time_ms_n"] == len(r["time_ms_samples"]) >= 3
        assert r["time_ms_ci_low"] <= r["time_ms_median"] <= r["time_ms_ci_high"]
        assert r["peak_mem_bytes"] > 0 and r["resting_mem_bytes"] > 0
        assert r["flops_counted"] == pytest.approx(r["flops_analytic"], rel=0.01)
        assert r["params"] > 0 and r["threads"] == 1
        # How the loop stopped, consistent with the settings the row says it ran with.
        assert r["measure"]["threads"] == 1 and r["measure"]["max_reps"] >= r["time_ms_n"]
        assert r["stop_reason"] in ("ci_target", "budget", "max_reps")
        assert (r["stop_reason"] == "max_reps") == (r["time_ms_n"] == r["measure"]["max_reps"])
        # Measured in lockstep with the other variant of its point, in the suite's rounds.
        assert r["pairing"] == "lockstep" and r["rounds"] == r["measure"]["rounds"] == len(r["round_sizes"])
        assert sum(r["round_sizes"]) == r["time_ms_n"]
    baseline, reuse = (next(r for r in rows if r["variant"] == v and r["seq_len"] == 32) for v in ("baseline", "reuse"))
    assert reuse["flops_analytic"] < baseline["flops_analytic"]
    assert baseline["reuse_ratio"] is None and reuse["reuse_ratio"] == 0.5


def test_failing_and_crashing_points_do_not_stop_the_run(tmp_path: Path) -> None:
    variants = ("  baseline: {model: baseline}\n"
                "  exploding: {model: 'tests.fixture_models:exploding'}\n"
                "  crashing: {model: 'tests.fixture_models:crashing'}")
    # max_len doubles as the fixture models' trigger: they misbehave at seq_len == 32 only.
    run = _run(tiny_suite(tmp_path / "s.yaml", variants=variants, max_len=32, metrics="[time]"), tmp_path / "runs")
    rows = {(r["variant"], r["seq_len"]): r for r in run.rows()}
    assert len(rows) == 6
    assert rows[("baseline", 16)]["status"] == rows[("baseline", 32)]["status"] == "ok"
    assert rows[("exploding", 16)]["status"] == "ok"
    assert rows[("exploding", 32)]["status"] == "failed"
    assert "RuntimeError: boom at seq_len=32" in rows[("exploding", 32)]["error"]
    assert rows[("crashing", 16)]["status"] == "ok"
    assert rows[("crashing", 32)]["status"] == "failed"
    assert "SIGKILL" in rows[("crashing", 32)]["error"]
    # the baseline measured before the crash in the same worker was kept
    assert rows[("baseline", 32)]["time_ms_median"] > 0


def test_timeout_fails_only_that_variant(tmp_path: Path) -> None:
    variants = "  baseline: {model: baseline}\n  hanging: {model: 'tests.fixture_models:hanging'}"
    suite = tiny_suite(tmp_path / "s.yaml", variants=variants, max_len=32, metrics="[time]", timeout=8)
    outcome = start(load_suite(suite, ["measure.rounds=1"]), RunOptions(output_dir=tmp_path / "runs", progress=False))
    rows = {(r["variant"], r["seq_len"]): r for r in RunDir(outcome.run_dir).rows()}
    assert rows[("hanging", 16)]["status"] == "ok"
    assert rows[("hanging", 32)]["status"] == "failed" and rows[("hanging", 32)]["error"].startswith("timeout")
    # It hung holding the turn; its partner got the turn back once it was killed.
    assert rows[("baseline", 32)]["status"] == "ok" and rows[("baseline", 32)]["pairing"] == "lockstep"


def test_exit_code_reports_failures(tmp_path: Path) -> None:
    variants = "  exploding: {model: 'tests.fixture_models:exploding'}"
    suite = tiny_suite(tmp_path / "s.yaml", variants=variants, max_len=32, metrics="[time]")
    result = harness_cmd("run", str(suite), "--output-dir", str(tmp_path / "runs"), "--no-report")
    assert result.returncode == 1, result.stderr
    assert "1 failed" in result.stdout


def test_absent_device_is_skipped_with_reason(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the skip path needs a machine without it")
    suite = tiny_suite(tmp_path / "s.yaml", seq_lens="[16]", metrics="[time]")
    outcome = start(load_suite(suite, ["sweep.device=[cpu, cuda]"]),
                    RunOptions(output_dir=tmp_path / "runs", progress=False))
    rows = RunDir(outcome.run_dir).rows()
    skipped = [r for r in rows if r["device"] == "cuda"]
    assert len(skipped) == 2 and all(r["status"] == "skipped" and "CUDA not available" in r["error"] for r in skipped)
    assert outcome.exit_code == 0


def test_resume_after_sigkill_loses_nothing_and_duplicates_nothing(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path / "s.yaml", seq_lens="[16, 24, 32, 40]", metrics="[time]")
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", str(suite), "--output-dir", str(out),
                             "--no-report"], cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    results = None
    while time.time() < deadline:
        found = list(out.glob("*/results.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            results = found[0]
            break
        time.sleep(0.05)
    assert results is not None, "the run produced no rows"
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its worker, mid-run
    proc.wait()
    before = RunDir(results.parent).rows()
    assert 2 <= len(before) < 8
    with open(results, "a") as fh:  # a row cut short mid-write
        fh.write('{"point_id": "half-writ')

    outcome = resume(results.parent, RunOptions(progress=False))
    after = RunDir(results.parent).rows()
    keys = [(r["point_id"], r["variant"]) for r in after]
    assert len(keys) == len(set(keys)) == 8
    expected = {(t.point_id, t.variant) for t in expand(load_suite(suite))}
    assert set(keys) == expected
    assert after[: len(before)] == before  # finished rows untouched
    assert outcome.exit_code == 0
    manifest = RunDir(results.parent).read_manifest()
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 2


def test_cpu_step_peak_memory_matches_known_allocation_pattern() -> None:
    mib = 1 << 20
    keep = torch.ones(4 * mib)  # allocated before the step: must not count

    def step() -> torch.Tensor:
        a = torch.ones(8 * mib // 4)        # 8 MiB
        b = torch.ones(16 * mib // 4)       # 24 MiB held
        del a                               # 16 MiB held
        c = torch.ones(12 * mib // 4)       # 28 MiB held: the peak
        del b
        return c.sum() + keep[0]

    peak = CpuDevice().step_memory(step).peak_bytes
    assert abs(peak - 28 * mib) <= 0.10 * 28 * mib, peak / mib


def test_cpu_step_peak_ignores_blocks_left_by_an_earlier_measurement() -> None:
    """A worker measures several variants; the allocator's profiled total outlives each session.

    A training step ends with its gradients alive; they are freed later, outside any profiling
    session, so the running total never drops by them. The next variant's peak must not include
    them.
    """
    mib = 1 << 20
    left_behind: list[torch.Tensor] = []

    def step() -> None:
        left_behind.append(torch.ones(6 * mib // 4))  # outlives the step, like gradients
        scratch = torch.ones(10 * mib // 4)            # 16 MiB held: the peak
        del scratch

    device = CpuDevice()
    peaks = []
    for _ in range(3):
        peaks.append(device.step_memory(step).peak_bytes)
        left_behind.clear()  # freed outside any profiling session
    assert all(abs(p - 16 * mib) <= 0.10 * 16 * mib for p in peaks), [p / mib for p in peaks]


def test_results_rows_follow_the_contract(tmp_path: Path) -> None:
    from harness.results.schema import RESULT_FIELDS

    run = _run(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]"), tmp_path / "runs")
    for line in run.results_path.read_text().splitlines():
        row = json.loads(line)
        missing = [f for f in RESULT_FIELDS if f not in row]
        assert not missing, missing


def test_workers_start_with_the_fixed_malloc_thresholds(tmp_path: Path) -> None:
    """glibc reads GLIBC_TUNABLES at process start: the fork server must get it, this process not
    (unless the user set their own, which is then kept)."""
    from harness.run.forkserver import ForkServerExecutor
    from harness.run.workerenv import MALLOC_TUNABLES

    task = expand(load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]")))[0]
    users = os.environ.get("GLIBC_TUNABLES")
    with ForkServerExecutor(stand_in_tree(tmp_path, "os.environ.get('GLIBC_TUNABLES')")) as executor:
        [row] = executor.run([task], timeout=60)
    assert row["value"] == (users or MALLOC_TUNABLES)
    assert os.environ.get("GLIBC_TUNABLES") == users


def test_the_run_warns_when_the_machine_will_make_timings_noisy() -> None:
    from harness.run.environment import machine_warnings

    assert machine_warnings(threads=1, cores=2, load=0.3) == []
    assert machine_warnings(threads=None, cores=2, load=0.3) == []
    (busy,) = machine_warnings(threads=1, cores=2, load=1.5)
    assert "load average 1.5 on 2 cores" in busy
    (all_cores,) = machine_warnings(threads=2, cores=2, load=0.3)
    assert "measure.threads=2 uses all 2 cores" in all_cores
