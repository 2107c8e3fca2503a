"""`harness run --profile pyspy|torch` on a real small run: artifacts land in the run directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import harness_cmd, tiny_suite
from harness.measure.profiling.pyspy import pyspy_available
from harness.results.store import RunDir

pytestmark = pytest.mark.slow


def _only_run(out: Path) -> RunDir:
    (path,) = out.iterdir()
    return RunDir(path)


def test_pyspy_profile_names_the_models_functions(tmp_path: Path) -> None:
    ok, why = pyspy_available()
    if not ok:
        pytest.skip(f"py-spy cannot record here: {why}")
    suite = tiny_suite(tmp_path / "s.yaml", seq_lens="[128]", metrics="[time]", max_len=128)
    # Flame graphs keep only the timed steps: time long enough (~1.5 s at 100 Hz) to sample them.
    result = harness_cmd("run", str(suite), "--output-dir", str(tmp_path / "runs"), "--profile", "pyspy",
                         "--no-report", "--set", "measure.max_seconds=1.5", "--set", "measure.max_reps=100000",
                         "--set", "measure.target_ci=0.0001")
    assert result.returncode == 0, result.stderr
    run = _only_run(tmp_path / "runs")
    rows = run.rows()
    assert len(rows) == 2
    for row in rows:
        svg = (run.path / row["pyspy_flamegraph"]).read_text()
        assert "<svg" in svg and "transformer.py" in svg  # the model's own frames are in the graph
        speedscope = json.loads((run.path / row["pyspy_speedscope"]).read_text())
        assert speedscope["profiles"][0]["samples"]
        top = row["pyspy_top_functions"]
        assert top and all(f["self_samples"] > 0 for f in top)


def test_torch_profile_writes_a_trace_with_aten_ops(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path / "s.yaml", seq_lens="[32]", metrics="[time]")
    result = harness_cmd("run", str(suite), "--output-dir", str(tmp_path / "runs"), "--profile", "torch",
                         "--no-report")
    assert result.returncode == 0, result.stderr
    run = _only_run(tmp_path / "runs")
    for row in run.rows():
        trace = json.loads((run.path / row["torch_trace"]).read_text())
        names = {e.get("name", "") for e in trace["traceEvents"]}
        assert any(n.startswith("aten::") for n in names)
        assert row["top_ops"] and all("self_cpu_ms" in op for op in row["top_ops"])


def test_pyspy_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    from harness import cli
    from harness.measure.profiling import pyspy

    monkeypatch.setattr(pyspy, "pyspy_available", lambda: (False, "py-spy not found on PATH"))
    suite = tiny_suite(tmp_path / "s.yaml", seq_lens="[32]", metrics="[time]")
    code = cli.main(["run", str(suite), "--output-dir", str(tmp_path / "runs"), "--profile", "pyspy"])
    assert code == 2
    err = capsys.readouterr().err
    assert "--profile pyspy: py-spy not found on PATH" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()  # refused before anything ran
