"""The run directory's owner (harness.results): loading, one writer at a time, damaged lines.

Real files and real `harness` processes throughout: a killed run resumed twice at once, a line
damaged in the middle of results.jsonl, `harness repair`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from conftest import ROOT, harness_cmd, tiny_suite
from harness.compare import within as analysis
from harness.report import render_report
from harness.results.errors import RunDamaged, RunLocked
from harness.results.jsonl import read_lines
from harness.results.load import DamagedRunWarning, load_run, load_runs, read_results
from harness.results.lock import writer_lock
from harness.results.schema import RESULT_FIELDS, not_a_row
from harness.results.store import RunDir
from harness.suite.loading import load_suite
from harness.suite.sweep import expand
from test_analysis import run_dir, seq_len_sweep, write_run  # noqa: F401 (run_dir is a fixture)

GARBAGE = '{"point_id": "cpu-forward-sdpa-n16-b2-baseline", "vari'  # a row cut short, then more rows


# ---- loading ---------------------------------------------------------------------------------


def test_read_results_ignores_partial_last_line_and_keeps_last_duplicate(run_dir: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a torn last line is what a kill leaves: no warning
        rows = read_results(run_dir)
    assert len(rows) == len(seq_len_sweep())
    first = next(r for r in rows if r["point_id"] == "cpu-forward-eager-n1024-b4-reuse0.25")
    assert first["time_ms_median"] == pytest.approx(90.0)
    assert read_results(run_dir / "results.jsonl") == rows


def test_read_results_skips_damage_before_the_last_line_and_names_it(tmp_path: Path) -> None:
    file = tmp_path / "results.jsonl"
    file.write_text('{"point_id": "a", "variant": "x"}\n{"point_id": \n{"point_id": "b"}\n')
    with pytest.warns(DamagedRunWarning, match="results.jsonl:2: not a JSON line") as caught:
        rows = read_results(file)
    assert rows == [{"point_id": "a", "variant": "x"}]
    assert "results.jsonl:3: not a result row (no variant)" in str(caught[0].message)
    assert read_results(tmp_path / "missing") == []


def test_load_run_keeps_lists_and_dicts_and_all_contract_columns(run_dir: Path) -> None:
    run = load_run(run_dir)
    assert run.run_id == "run1" and run.manifest["environment"]["cpu_cores"] == 2
    assert run.manifest["suite"]["name"] == "seq_len" and run.manifest["status"] == "interrupted"
    assert list(run.results.columns[: len(RESULT_FIELDS)]) == list(RESULT_FIELDS)
    ok = run.results[run.results["status"] == "ok"].iloc[0]
    assert isinstance(ok["time_ms_samples"], list) and len(ok["time_ms_samples"]) == 5
    assert isinstance(ok["flops_by_component"], dict) and isinstance(ok["axes"], dict)
    assert set(run.results["status"]) == {"ok", "failed", "skipped"}
    assert [r.run_id for r in load_runs([run_dir, run_dir])] == ["run1", "run1"]
    assert run.damaged == []


def test_load_run_validates_the_manifest(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 2}))
    with pytest.raises(ValueError, match="format_version"):
        load_run(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "run_id": "r"}))
    empty = load_run(tmp_path)  # a run killed before its first row
    assert empty.results.empty and analysis.comparisons(empty.results).empty


# ---- damaged lines ---------------------------------------------------------------------------


def test_only_a_last_line_without_its_newline_counts_as_torn(tmp_path: Path) -> None:
    good = json.dumps({"point_id": "p", "variant": "v"})
    file = tmp_path / "results.jsonl"
    file.write_text(f"{good}\n{GARBAGE}")
    found = read_lines(file, not_a_row)
    assert len(found.rows) == 1 and found.damaged == [] and found.torn is not None and found.torn.line == 2
    # Finished with its newline, the same text was not cut by a kill: something else wrote it.
    file.write_text(f"{good}\n{GARBAGE}\n")
    found = read_lines(file, not_a_row)
    assert found.torn is None and [d.line for d in found.damaged] == [2]
    file.write_text(f'[1, 2]\n{{"hello": 1}}\n{good}\n')
    assert read_lines(file, not_a_row).problems == [f"{file}:1: expected a JSON object, got list",
                                                    f"{file}:2: not a result row (no point_id, variant)"]


def test_a_damaged_middle_line_is_skipped_named_and_shown_in_the_report(tmp_path: Path) -> None:
    rows = seq_len_sweep()
    run = write_run(tmp_path / "run1", rows)
    lines = (run / "results.jsonl").read_text().splitlines(keepends=True)
    (run / "results.jsonl").write_text("".join(lines[:2]) + GARBAGE + "\n" + "".join(lines[2:]))
    with pytest.warns(DamagedRunWarning, match=r"results.jsonl:3: not a JSON line"):
        loaded = load_run(run)
    assert len(loaded.results) == len(rows)  # every good row, before and after the damage
    assert loaded.damaged == [f"{run / 'results.jsonl'}:3: not a JSON line (Unterminated string starting at)"]
    with pytest.warns(DamagedRunWarning):
        page = render_report(run).read_text()
    assert "1 line(s) of the results file are not result rows and were skipped" in page
    assert "results.jsonl:3: not a JSON line" in page and "harness repair" in page
    # On the command line the warning is one line a user reads, not Python's warning format.
    shown = harness_cmd("report", str(run))
    assert shown.returncode == 0, shown.stderr
    [warning] = [line for line in shown.stderr.splitlines() if "results.jsonl:3" in line]
    assert warning.startswith("warning: 1 line(s) skipped") and "DamagedRunWarning" not in shown.stderr


def test_repair_moves_damaged_lines_aside_keeping_them(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run1", seq_len_sweep()[:3], tail=GARBAGE)  # the torn last line goes too
    lines = (run / "results.jsonl").read_text().split("\n")
    (run / "results.jsonl").write_text("\n".join([lines[0], "not json at all", *lines[1:]]))
    with pytest.raises(RunDamaged, match=r"results.jsonl:2: not a JSON line .*run `harness repair "):
        RunDir(run).ready_to_append()
    result = harness_cmd("repair", str(run))
    assert result.returncode == 0, result.stderr
    assert "moved 2 line(s)" in result.stdout and "results.jsonl:2: not a JSON line" in result.stdout
    aside = [json.loads(line) for line in (run / "results.damaged.jsonl").read_text().splitlines()]
    assert [(d["line"], d["text"]) for d in aside] == [(2, "not json at all"), (5, GARBAGE)]
    assert read_results(run) == seq_len_sweep()[:3]
    assert (run / "results.jsonl").read_text().endswith("\n")
    again = harness_cmd("repair", str(run))
    assert again.returncode == 0 and "nothing to repair" in again.stdout


# ---- one writer ------------------------------------------------------------------------------


def test_the_writer_lock_names_its_holder_and_is_released(tmp_path: Path) -> None:
    with writer_lock(tmp_path):
        with pytest.raises(RunLocked) as locked:
            with writer_lock(tmp_path):
                pass
        holder = json.loads((tmp_path / "writer.lock").read_text())
    assert locked.value.holder == holder and holder["pid"] == os.getpid()
    assert str(locked.value).startswith(f"{tmp_path} is being written by pid {os.getpid()} on "
                                        f"{socket.gethostname()} (")
    assert f", since {holder['since']})" in str(locked.value)
    assert (tmp_path / "writer.lock").read_text() == ""  # no one is writing
    with writer_lock(tmp_path):  # free again
        pass


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.api import run_suite

    tmp = tmp_path_factory.mktemp("rundir")
    return run_suite(tiny_suite(tmp / "tiny.yaml", seq_lens="[16]", metrics="[time]"), output_dir=tmp / "runs",
                     report=False)


def _keys(run: Path) -> list[tuple[str, str]]:
    return [(r["point_id"], r["variant"]) for r in RunDir(run).rows()]


def _copy(run: Path, dest: Path) -> Path:
    dest.mkdir()
    for name in ("manifest.json", "results.jsonl"):
        (dest / name).write_bytes((run / name).read_bytes())
    return dest


@pytest.mark.slow
def test_a_writer_holding_the_lock_stops_harness_run_resume_and_repair(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path / "run")
    before = (run / "results.jsonl").read_bytes()
    with writer_lock(run):
        holder = json.loads((run / "writer.lock").read_text())
        for args in (("run", "--resume", str(run), "--no-report"), ("repair", str(run))):
            result = harness_cmd(*args)
            assert result.returncode == 2, result.stderr
            assert result.stderr.strip().splitlines() == [
                f"harness {args[0]}: {run} is being written by pid {os.getpid()} on {socket.gethostname()} "
                f"({holder['command']}, since {holder['since']})"]
    assert (run / "results.jsonl").read_bytes() == before


@pytest.mark.slow
def test_a_damaged_run_refuses_to_resume_until_repaired(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path / "run")
    first, second = (run / "results.jsonl").read_text().splitlines()
    (run / "results.jsonl").write_text(f"{first}\n{GARBAGE}\n")  # the second row lost, a line damaged
    result = harness_cmd("run", "--resume", str(run), "--no-report")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line == (f"harness run: {run / 'results.jsonl'}:2: not a JSON line (Unterminated string starting at); "
                    f"run `harness repair {run}` to move the damaged line(s) aside")
    assert harness_cmd("repair", str(run)).returncode == 0
    result = harness_cmd("run", "--resume", str(run), "--no-report")
    assert result.returncode == 0, result.stderr
    assert _keys(run) == _keys(tiny_run)  # the lost row measured again, nothing twice
    assert json.loads((run / "results.damaged.jsonl").read_text())["text"] == GARBAGE


@pytest.mark.slow
def test_two_resumes_of_one_killed_run_write_each_row_once(tmp_path: Path) -> None:
    """The second `harness run --resume` exits 2 naming the first, which finishes the run alone."""
    variants = "  baseline: {model: baseline}\n  hanging: {model: 'tests.fixture_models:hanging'}"
    # hanging sleeps at seq_len == max_len (32) until the timeout: the resume holds the lock that long.
    suite = tiny_suite(tmp_path / "s.yaml", variants=variants, seq_lens="[16, 24, 32]", metrics="[time]",
                       max_len=32, timeout=15)
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def harness(*args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "harness.cli", *args, "--no-report", "--no-progress"], cwd=ROOT,
                                env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    first = harness("run", str(suite), "--output-dir", str(out))
    results = _wait_for(lambda: next((f for f in out.glob("*/results.jsonl") if len(f.read_text().splitlines()) >= 2),
                                     None))
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    run = results.parent
    resuming = harness("run", "--resume", str(run))
    try:
        _wait_for(lambda: (run / "writer.lock").read_text().startswith(f'{{"pid": {resuming.pid},') or None)
        second = harness_cmd("run", "--resume", str(run), "--no-report", "--no-progress", timeout=120)
        assert second.returncode == 2, second.stderr
        assert second.stderr.strip().splitlines() == [
            f"harness run: {run} is being written by pid {resuming.pid} on {socket.gethostname()} "
            f"(harness run --resume {run} --no-report --no-progress, since "
            + json.loads((run / "writer.lock").read_text())["since"] + ")"]
        assert resuming.wait(timeout=120) == 1, resuming.stderr.read()  # the hanging point failed
    finally:
        if resuming.poll() is None:
            os.killpg(resuming.pid, signal.SIGKILL)
    keys = _keys(run)
    assert len(keys) == len(set(keys)) == 6
    assert set(keys) == {(t.point_id, t.variant) for t in expand(load_suite(suite))}
    assert RunDir(run).read_manifest()["status"] == "complete"


def _wait_for(found, seconds: float = 120.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = found()
        if value is not None:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")
