"""`harness export`: pytest-benchmark JSON that pytest-benchmark itself reads, CSV and parquet."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import harness_cmd, tiny_suite
from harness.results.load import load_run
from harness.results.export import export_run, to_frame, to_pytest_benchmark

pytestmark = pytest.mark.slow

STATS_FIELDS = ("min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
                "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "data", "iterations")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from harness.api import run_suite

    tmp = tmp_path_factory.mktemp("export")
    return run_suite(tiny_suite(tmp / "tiny.yaml"), output_dir=tmp / "runs", report=False)


def test_pytest_benchmark_json_has_the_layout_and_raw_samples_in_seconds(run_dir: Path) -> None:
    data = to_pytest_benchmark(load_run(run_dir))
    assert set(data) == {"machine_info", "commit_info", "benchmarks", "datetime", "version"}
    assert data["machine_info"]["reuse_bench"]["machine_fingerprint"]
    rows = load_run(run_dir).results
    assert len(data["benchmarks"]) == len(rows) == 4  # 2 points x (baseline, reuse)
    for bench, (_, row) in zip(data["benchmarks"], rows.iterrows()):
        assert {"group", "name", "fullname", "params", "stats", "options"} <= set(bench)
        assert set(STATS_FIELDS) <= set(bench["stats"])
        stats = bench["stats"]
        assert stats["data"] == pytest.approx([x / 1e3 for x in row["time_ms_samples"]])
        assert stats["median"] == pytest.approx(row["time_ms_median"] / 1e3)
        assert stats["rounds"] == len(row["time_ms_samples"]) and stats["iterations"] == 1
        assert bench["params"]["seq_len"] == row["seq_len"] and row["point_id"] in bench["fullname"]


def test_pytest_benchmark_compare_reads_two_exported_runs(run_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "0001_base.json", tmp_path / "0002_cand.json"
    for target in (first, second):
        result = harness_cmd("export", str(run_dir), "--format", "pytest-benchmark", "-o", str(target))
        assert result.returncode == 0 and result.stdout.strip() == str(target)
    cli = Path(sys.executable).with_name("pytest-benchmark")
    out = subprocess.run([str(cli), "compare", str(first), str(second), "--columns", "min,median,max,rounds"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    # pytest-benchmark only warns (exit 0) about files it cannot load: check it read ours.
    assert "Failed to load" not in out.stdout + out.stderr
    names = [b["name"] for b in json.loads(first.read_text())["benchmarks"]]
    for name in names:
        assert out.stdout.count(name) >= 2  # one line per file


def test_csv_round_trips_one_flat_row_per_point_and_variant(run_dir: Path, tmp_path: Path) -> None:
    path = export_run(run_dir, "csv", tmp_path / "run.csv")
    frame = pd.read_csv(path)
    results = load_run(run_dir).results
    assert len(frame) == len(results)
    assert {"run_id", "machine_fingerprint", "axes.seq_len", "model_config.d_model", "point_id"} <= set(frame.columns)
    assert "axes" not in frame.columns  # flattened, not nested
    samples = json.loads(frame.loc[0, "time_ms_samples"])
    assert samples == pytest.approx(results.loc[0, "time_ms_samples"])
    assert isinstance(json.loads(frame.loc[0, "flops_by_component"]), dict)


def test_parquet_round_trips_and_keeps_samples_as_lists(run_dir: Path, tmp_path: Path) -> None:
    path = export_run(run_dir, "parquet", tmp_path / "run.parquet")
    frame = pd.read_parquet(path)
    results = load_run(run_dir).results
    assert len(frame) == len(results) and list(frame["point_id"]) == list(results["point_id"])
    assert list(frame.loc[0, "time_ms_samples"]) == pytest.approx(results.loc[0, "time_ms_samples"])
    assert frame["axes.seq_len"].tolist() == results["seq_len"].tolist()


def test_export_defaults_to_a_file_in_the_run_and_refuses_binary_on_stdout(run_dir: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(run_dir, tmp_path / "run"))
    result = harness_cmd("export", str(copy), "--format", "csv")
    assert result.returncode == 0 and Path(result.stdout.strip()) == copy / "export-csv.csv"
    result = harness_cmd("export", str(copy), "--format", "pytest-benchmark", "-o", "-")
    assert result.returncode == 0 and json.loads(result.stdout)["benchmarks"]
    result = harness_cmd("export", str(copy), "--format", "parquet", "-o", "-")
    assert result.returncode == 2 and "parquet is binary" in result.stderr


def test_failed_rows_export_without_a_benchmark_entry(run_dir: Path) -> None:
    run = load_run(run_dir)
    run.results.loc[0, "status"] = "failed"
    assert len(to_pytest_benchmark(run)["benchmarks"]) == len(run.results) - 1
    assert len(to_frame(run)) == len(run.results)
