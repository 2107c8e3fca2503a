"""The `dtype` model key as a sweep axis: validated, expanded, run and summarised like any other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import harness_cmd
from harness.measure.devices import CpuDevice
from harness.suite.loading import SuiteError, load_suite
from harness.suite.sweep import expand

SUITE = """\
name: dtypes
description: A tiny model in each dtype.
model: {{d_model: 32, n_heads: 2, n_layers: 2, d_ff: 64, vocab_size: 64, max_len: 64}}
variants:
  baseline: {{model: baseline}}
  reuse: {{model: reuse, reuse_ratio: 0.5}}
sweep:
  seq_len: [16]
  batch_size: [2]
  device: [cpu]
  mode: [train]
  backend: [sdpa]
{dtype_axis}metrics: [time, memory, flops]
measure: {{warmup: 1, min_reps: 3, max_reps: 3, max_seconds: 0.5, timeout: 60, threads: 1}}
seed: 0
"""


def suite(tmp_path: Path, dtypes: str | None, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(SUITE.format(dtype_axis=f"  dtype: {dtypes}\n" if dtypes else ""))
    return path


def test_float32_points_keep_the_ids_they_had_before_dtype_existed(tmp_path: Path) -> None:
    swept = expand(load_suite(suite(tmp_path, "[float32, bfloat16]")))
    plain = expand(load_suite(suite(tmp_path, None, "plain.yaml")))
    ids = {dtype: {t.point_id for t in swept if t.model_config["dtype"] == dtype} for dtype in ("float32", "bfloat16")}
    assert ids["float32"] == {t.point_id for t in plain}
    assert ids["bfloat16"].isdisjoint(ids["float32"]) and len(ids["bfloat16"]) == 2
    assert all(t.axes["dtype"] == t.model_config["dtype"] for t in swept)


def test_a_bad_dtype_is_reported_at_its_line(tmp_path: Path) -> None:
    path = suite(tmp_path, "[float32, float64]")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    assert f"{path}:13: sweep.dtype[1]: expected one of float32, bfloat16, float16; found 'float64'" in str(err.value)
    result = harness_cmd("validate", str(path))
    assert result.returncode == 2 and "sweep.dtype[1]" in result.stdout + result.stderr


@pytest.mark.slow
def test_a_dtype_sweep_runs_and_is_an_axis_of_the_summary(tmp_path: Path) -> None:
    result = harness_cmd("run", str(suite(tmp_path, "[float32, bfloat16, float16]")), "--output-dir", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    by_dtype: dict[str, list[dict]] = {}
    for row in rows:
        by_dtype.setdefault(row["axes"]["dtype"], []).append(row)
    assert {row["model_config"]["dtype"] for row in rows} == {"float32", "bfloat16", "float16"}
    for dtype, group in by_dtype.items():
        reason = CpuDevice().availability(dtype)
        assert {r["status"] for r in group} == ({"ok"} if reason is None else {"skipped"}), dtype
        assert all(r["error"] == reason for r in group if reason is not None)
        assert all(r["flops_counted"] == r["flops_analytic"] for r in group if r["status"] == "ok")
    summary = result.stdout
    assert "dtype" in summary and "bfloat16" in summary
    # ...and of the report: a word-valued axis splits series and labels them, as a number does.
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "dtype=bfloat16" in page and "dtype=float32" in page
