"""`harness gate`, `harness compare` and the A/B mode on small real runs, through the real CLI."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, harness_cmd, stand_in_tree, tiny_suite
from harness.run.executor import CommandExecutor
from harness.suite.loading import load_suite
from harness.suite.sweep import expand

pytestmark = pytest.mark.slow

# Timings of a tiny model on a shared machine say nothing; these tests check the plumbing and
# the deterministic rules, so timings are shown but not gated.
TIMES_SHOWN_ONLY = """\
metrics:
  time_ms: {gate: false}
  speedup: {gate: false}
  efficiency: {gate: false}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.api import run_suite

    tmp = tmp_path_factory.mktemp("gate")
    return run_suite(tiny_suite(tmp / "tiny.yaml", seq_lens="[16]"), output_dir=tmp / "runs", report=False)


@pytest.fixture()
def shown_only(tmp_path: Path) -> Path:
    path = tmp_path / "times-shown-only.yaml"
    path.write_text(TIMES_SHOWN_ONLY)
    return path


def _edited_copy(run: Path, dest: Path, variant: str, **changes: object) -> Path:
    shutil.copytree(run, dest)
    rows = [json.loads(line) for line in (dest / "results.jsonl").read_text().splitlines()]
    for row in rows:
        if row["variant"] == variant:
            row.update(changes)
    (dest / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dest


def test_a_run_passes_against_itself_and_the_summary_goes_to_the_job_summary(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step_summary = tmp_path / "step-summary.md"
    step_summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = harness_cmd("gate", str(tiny_run), "--baseline", str(tiny_run))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout and "unchanged" in result.stdout
    text = step_summary.read_text()
    assert text.startswith("earlier step\n## ✅ Performance gate")  # appended, not overwritten
    explicit = tmp_path / "gate.md"
    result = harness_cmd("gate", str(tiny_run), "--baseline", str(tiny_run), "--summary", str(explicit))
    assert result.returncode == 0 and explicit.read_text().startswith("## ✅")
    assert step_summary.read_text() == text  # --summary given: the job summary is left alone


def test_a_deterministic_change_fails_the_gate(tiny_run: Path, tmp_path: Path, shown_only: Path) -> None:
    row = json.loads((tiny_run / "results.jsonl").read_text().splitlines()[1])
    changed = _edited_copy(tiny_run, tmp_path / "cand", row["variant"], params=row["params"] + 1)
    result = harness_cmd("gate", str(changed), "--baseline", str(tiny_run), "--policy", str(shown_only))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "changed" in result.stdout and "params" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("FAIL: ")
    # compare reports the same finding but is not a gate: exit 0, Markdown on request
    md = tmp_path / "compare.md"
    result = harness_cmd("compare", str(tiny_run), str(changed), "--markdown", str(md))
    assert result.returncode == 0 and "changed" in result.stdout
    assert md.read_text().startswith("## Performance comparison") and "| changed | params |" in md.read_text()


def test_a_failed_candidate_point_fails_the_gate(tiny_run: Path, tmp_path: Path, shown_only: Path) -> None:
    failed = _edited_copy(tiny_run, tmp_path / "cand", "reuse", status="failed", error="RuntimeError: boom")
    result = harness_cmd("gate", str(failed), "--baseline", str(tiny_run), "--policy", str(shown_only))
    assert result.returncode == 1 and "boom" in result.stdout


def test_a_timing_regression_that_does_not_reproduce_does_not_fail(tiny_run: Path, tmp_path: Path) -> None:
    """The stored-baseline gate re-measures a timing regression with this checkout before failing."""
    policy = tmp_path / "policy.yaml"
    policy.write_text("confirm: 1\nmetrics:\n  time_ms: {threshold: 4.0}\n  speedup: {threshold: 0.6}\n")
    rows = [json.loads(line) for line in (tiny_run / "results.jsonl").read_text().splitlines()]
    reuse = next(r for r in rows if r["variant"] == "reuse")
    # The stored rows take the live row's median for every sample: the tiny run's own round-to-round
    # spread (three rounds of a half-millisecond step, beside whatever else runs) was once wide
    # enough that even 20x was "too noisy", and the face-value verdict must hinge on the burst alone.
    steady = [reuse["time_ms_median"]] * len(reuse["time_ms_samples"])
    # As if a load burst hit the reuse variant's worker: every sample 20 times slower.
    burst = _edited_copy(tiny_run, tmp_path / "runs" / "cand", "reuse",
                         time_ms_samples=[20 * x for x in steady], time_ms_median=20 * reuse["time_ms_median"])
    base = _edited_copy(tiny_run, tmp_path / "stored" / "base", "reuse", time_ms_samples=steady)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    for run in (burst, base):  # "measured by this checkout", so both are re-measurable
        manifest = json.loads((run / "manifest.json").read_text())
        manifest["environment"]["git_commit"] = head
        (run / "manifest.json").write_text(json.dumps(manifest))
    strict = tmp_path / "no-confirm.yaml"
    strict.write_text(policy.read_text().replace("confirm: 1", "confirm: 0"))
    result = harness_cmd("gate", str(burst), "--baseline", str(base), "--policy", str(strict))
    assert result.returncode == 1 and "regressed" in result.stdout  # taken at face value: a regression
    result = harness_cmd("gate", str(burst), "--baseline", str(base), "--policy", str(policy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "not reproduced on re-measurement 1" in result.stdout and "re-measured: " in result.stdout
    # Both runs are of this checkout, so both were measured again, each beside its own run.
    assert "re-measurement: both runs are of this checkout's commit" in result.stdout
    for where in ("runs", "stored"):
        confirm_runs = [d for d in (tmp_path / where).iterdir() if "confirm" in d.name]
        assert len(confirm_runs) == 1 and (confirm_runs[0] / "results.jsonl").exists()


def test_the_stored_remeasure_says_which_runs_it_can_measure_again(tiny_run: Path) -> None:
    from harness.results.load import Run, load_run
    from harness.run.remeasure import stored_remeasure

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    run = load_run(tiny_run)

    def of(commit: str) -> Run:
        return dataclasses.replace(run, manifest={**run.manifest, "environment": {"git_commit": commit}})

    remeasure, note = stored_remeasure(of("f" * 40), of("e" * 40))
    assert remeasure is None and note.startswith("candidate run is of commit eeeeeeeeee")
    remeasure, note = stored_remeasure(of("f" * 40), of(head))
    assert remeasure is not None and note == ("candidate re-measured, baseline kept as stored: it is commit "
                                              "ffffffffff's run, which this checkout cannot measure again")
    remeasure, note = stored_remeasure(of(head), of(head))
    assert remeasure is not None and note.endswith("both re-measured")


@pytest.mark.parametrize("args, message", [
    (["gate", "{run}", "--baseline", "/nonexistent/run"], "baseline /nonexistent/run: not a run directory"),
    (["gate", "{run}"], "give CAND_RUN --baseline BASELINE_RUN, or --against REV"),
    (["gate", "{run}", "--against", "HEAD"], "--against measures both sides itself"),
    (["gate", "--against", "no-such-rev-xyz"], "--against no-such-rev-xyz: not a commit"),
    (["compare", "{run}", "/nonexistent/run"], "candidate /nonexistent/run: not a run directory"),
    (["export", "/nonexistent/run", "--format", "csv"], "run /nonexistent/run: not a run directory"),
])
def test_invalid_input_exits_2_with_one_message(tiny_run: Path, args: list[str], message: str) -> None:
    result = harness_cmd(*[a.format(run=tiny_run) for a in args])
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_bad_policy_exits_2_citing_file_line_and_key(tiny_run: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("alpha: 0.05\nmetrics:\n  time_ms: {treshold: 0.1}\n")
    result = harness_cmd("gate", str(tiny_run), "--baseline", str(tiny_run), "--policy", str(policy))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{policy}:3: metrics.time_ms.treshold: expected a metric setting key (did you mean 'threshold'?)" \
        in result.stderr


def test_against_measures_both_trees_interleaved_and_removes_the_worktree(tmp_path: Path, shown_only: Path) -> None:
    suite = tiny_suite(tmp_path / "one-point.yaml", seq_lens="[16]")
    worktrees_before = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    result = harness_cmd("gate", "--against", "HEAD", "--suite", str(suite), "--rounds", "1",
                         "--output-dir", str(tmp_path / "runs"), "--policy", str(shown_only), "--no-progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "context: interleaved A/B" in result.stdout
    runs = {json.loads((d / "manifest.json").read_text())["ab"]["side"]: d for d in (tmp_path / "runs").iterdir()}
    base, cand = (json.loads((runs[s] / "manifest.json").read_text()) for s in ("baseline", "candidate"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert base["environment"]["git_commit"] == head and base["ab"]["pair_id"] == cand["ab"]["pair_id"]
    assert Path(cand["ab"]["code_root"]) == ROOT and Path(base["ab"]["code_root"]) != ROOT
    assert not Path(base["ab"]["code_root"]).exists()  # the worktree is gone...
    after = subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout
    assert after == worktrees_before  # ...and unregistered
    for side in runs.values():
        rows = [json.loads(line) for line in (side / "results.jsonl").read_text().splitlines()]
        assert [(r["variant"], r["status"], r["rounds"], r["pairing"]) for r in rows] == [
            ("baseline", "ok", 1, "lockstep"), ("reuse", "ok", 1, "lockstep")]


def test_command_executor_runs_the_worker_from_the_given_tree(tmp_path: Path) -> None:
    tree = stand_in_tree(tmp_path, "[__file__, os.getcwd()]")
    task = expand(load_suite(tiny_suite(tmp_path / "tiny.yaml", seq_lens="[16]")))[0]
    [row] = CommandExecutor(root=tree).run([task], timeout=60)
    assert row["value"] == [str(tmp_path / "harness" / "run" / "worker.py"), str(tmp_path)]


def test_the_shipped_gate_suite_and_baseline_agree() -> None:
    """ci/baseline must be a run of ci/gate.yaml as it is now, or CI would report every point missing."""
    tasks = {(t.point_id, t.variant) for t in expand(load_suite(ROOT / "ci" / "gate.yaml"))}
    rows = [json.loads(line) for line in (ROOT / "ci" / "baseline" / "results.jsonl").read_text().splitlines()]
    assert {(r["point_id"], r["variant"]) for r in rows} == tasks
    assert all(r["status"] == "ok" and len(r["time_ms_samples"]) >= 10 for r in rows)
