"""Lockstep A/B: workers of two code versions take turns one timed step at a time, and the gate
compares their timings pair by pair. Real processes, real FIFOs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, tiny_suite
from harness.results.load import load_run
from harness.run.ab import Side, interleave
from harness.compare.runs import compare_runs
from harness.run.lockstep import Conductor
from harness.compare.policy import load_policy
from harness.compare.paired import paired_contrast, paired_logs
from harness.suite.loading import load_suite
from harness.run.turns import ENV, Turns

# A stand-in worker: `steps` busy "steps" of 20 ms, each logged as (start, end) on the system-wide
# monotonic clock, the turn given back after each; optionally, at step `stop_at`, dying (no
# goodbye) or hanging with the turn held.
WORKER = """
import json, os, sys, time
from harness.run.turns import Turns
steps, stop_at, how, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
turns = Turns.from_env()
turns.wait()
spans = []
for i in range(steps):
    if i == stop_at:
        open(log, "w").write(json.dumps(spans))
        if how == "hang":
            time.sleep(3600)
        os._exit(3)
    start = time.monotonic()
    while time.monotonic() - start < 0.02:
        pass
    spans.append((start, time.monotonic()))
    turns.give_back()
open(log, "w").write(json.dumps(spans))
turns.finish()
"""


def _start(spec: str, steps: int, log: Path, stop_at: int = -1, how: str = "die") -> subprocess.Popen:
    env = {**os.environ, ENV: spec, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WORKER, str(steps), str(stop_at), how, str(log)], env=env)


def _never(k: int) -> None:
    raise AssertionError(f"worker {k} ran out of time")


def test_workers_take_turns_one_step_at_a_time(tmp_path: Path) -> None:
    conductor = Conductor(2)
    try:
        procs = [_start(spec, 6, tmp_path / f"{i}.json") for i, spec in enumerate(conductor.specs)]
        conductor.conduct([p.pid for p in procs], order=[1, 0], limit=60, out_of_time=_never)
        assert [p.wait(timeout=30) for p in procs] == [0, 0]
    finally:
        conductor.close()
    spans = sorted((start, end, i) for i in range(2) for start, end in json.loads((tmp_path / f"{i}.json").read_text()))
    assert [i for _, _, i in spans] == [1, 0] * 6  # strict alternation, in the order asked
    assert all(end <= next_start for (_, end, _), (next_start, _, _) in zip(spans, spans[1:]))  # never overlapping
    assert conductor.turns_given == 14  # 12 steps, then each worker's last turn ends with its goodbye


def test_a_worker_that_dies_leaves_the_rotation_and_the_other_finishes(tmp_path: Path) -> None:
    conductor = Conductor(2)
    try:
        procs = [_start(conductor.specs[0], 5, tmp_path / "0.json", stop_at=2),
                 _start(conductor.specs[1], 5, tmp_path / "1.json")]
        started = time.monotonic()
        conductor.conduct([p.pid for p in procs], order=[0, 1], limit=60, out_of_time=_never)
        assert time.monotonic() - started < 30
        assert [p.wait(timeout=30) for p in procs] == [3, 0]
    finally:
        conductor.close()
    assert len(json.loads((tmp_path / "1.json").read_text())) == 5


def test_a_worker_that_hangs_with_the_turn_is_handed_over_before_anyone_else_goes_on(tmp_path: Path) -> None:
    conductor = Conductor(2)
    killed_at: list[float] = []
    try:
        procs = [_start(conductor.specs[0], 5, tmp_path / "0.json", stop_at=2, how="hang"),
                 _start(conductor.specs[1], 5, tmp_path / "1.json")]

        def out_of_time(k: int) -> None:
            procs[k].kill()
            killed_at.append(time.monotonic())

        conductor.conduct([p.pid for p in procs], order=[0, 1], limit=2.0, out_of_time=out_of_time)
        assert [p.wait(timeout=30) for p in procs] == [-9, 0]
    finally:
        conductor.close()
    spans = json.loads((tmp_path / "1.json").read_text())
    assert len(killed_at) == 1 and len(spans) == 5
    # The other worker's steps after the hang began only once the hung worker was gone.
    assert [start > killed_at[0] for start, _ in spans] == [False, False, True, True, True]


def test_a_worker_outside_a_lockstep_run_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    turns = Turns.from_env()
    assert not turns.active
    turns.wait()
    turns.give_back()
    turns.finish()


# ---- statistics of pairs -----------------------------------------------------------------------
def _lockstep_samples(rng: np.random.Generator, shift: float, rounds: int = 6, n: int = 20) -> tuple[list, list]:
    """Timings whose machine speed wanders by ±20% over time (shared by the two steps of a pair),
    with a per-worker offset of ±3% (memory layout) and ±4% step noise; cand is `shift` slower."""
    base, cand = [], []
    for _ in range(rounds):
        moment = np.exp(np.cumsum(rng.normal(0, 0.05, n)).clip(-0.2, 0.2))
        worker_b, worker_c = np.exp(rng.normal(0, 0.03, 2))
        base.append(10 * moment * worker_b * np.exp(rng.normal(0, 0.04, n)))
        cand.append(10 * (1 + shift) * moment * worker_c * np.exp(rng.normal(0, 0.04, n)))
    return base, cand


def test_pairs_find_a_shift_that_machine_drift_hides_and_keep_false_alarms_near_alpha() -> None:
    rng = np.random.default_rng(7)
    base, cand = _lockstep_samples(rng, 0.20)
    c = paired_contrast([paired_logs(base, cand)], [1])
    assert c.p < 1e-4 and 1.12 < c.estimate < 1.28 and c.low < c.estimate < c.high
    alarms = sum(paired_contrast([paired_logs(*_lockstep_samples(rng, 0.0))], [1]).p < 0.05
                 for _ in range(200))
    assert alarms <= 0.05 * 200 * 1.6, alarms  # ~alpha; the rounds, not the pairs, are the unit


def test_paired_speedup_change_cancels_what_both_variants_share() -> None:
    rng = np.random.default_rng(3)
    ref_b, ref_c = _lockstep_samples(rng, 0.10)      # the candidate tree is 10% slower overall...
    reuse_b, reuse_c = _lockstep_samples(rng, 0.10)  # ...for both variants: the speedup is unchanged
    c = paired_contrast([paired_logs(ref_b, ref_c), paired_logs(reuse_b, reuse_c)], [1, -1])
    assert abs(c.estimate - 1) < 0.04 and c.p > 0.01
    reuse_slow_b, reuse_slow_c = _lockstep_samples(rng, 0.32)  # reuse alone 20% slower on top
    c = paired_contrast([paired_logs(ref_b, ref_c), paired_logs(reuse_slow_b, reuse_slow_c)], [1, -1])
    assert c.estimate < 0.88 and c.p < 0.01


def test_pairs_need_matching_rounds() -> None:
    assert paired_logs([np.ones(3)], [np.ones(3), np.ones(3)]) is None
    assert [r.size for r in paired_logs([np.ones(3), np.ones(5)], [np.ones(4), np.ones(2)])] == [3, 2]


# ---- end to end --------------------------------------------------------------------------------
@pytest.mark.slow
def test_interleave_runs_the_sides_in_lockstep_and_the_gate_pairs_them(tmp_path: Path) -> None:
    suite = load_suite(tiny_suite(tmp_path / "one-point.yaml", seq_lens="[16]"))
    base, cand = interleave(suite, [Side("baseline", ROOT), Side("candidate", ROOT)], rounds=2,
                            output_dir=tmp_path / "runs")
    runs = [load_run(p) for p in (base, cand)]
    assert all(r.manifest["ab"]["lockstep"] for r in runs)
    for run in runs:
        assert (run.results["pairing"] == "lockstep").all() and (run.results["status"] == "ok").all()
        assert (run.results["rounds"] == 2).all()
    assert len({pair for run in runs for pair in run.results["pair_id"]}) == 1  # both sides in one rotation
    comparison = compare_runs(*runs, load_policy(ROOT / "ci" / "policy.yaml"))
    timed = [c for c in comparison.checks if c.metric in ("time_ms", "speedup")]
    assert timed and all(c.note.startswith("lockstep") for c in timed)
    assert all(c.fields["lockstep"] and c.threshold == 0.03 for c in timed)  # ci/policy.yaml's lockstep rule
    assert all(np.isfinite(c.p) for c in timed)
