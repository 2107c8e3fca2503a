"""harness.compare.within on small, hand-checkable run directories written the way the runner writes them.

make_row and write_run are shared with test_run_dir.py (loading them).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from harness import stats
from harness.compare import within as analysis
from harness.results.load import load_run, results_frame
from harness.results.schema import RESULT_FIELDS

SPREAD = (-0.02, -0.01, 0.0, 0.01, 0.02)  # samples around a known median


def make_row(variant: str, model: str, backend: str, seq_len: int, time_ms: float | None,
             mem: float | None = None, flops: float | None = None, ratio: float | None = None,
             status: str = "ok", device: str = "cpu", extra_axes: dict[str, Any] | None = None,
             **fields: Any) -> dict[str, Any]:
    """A result row as the worker writes it: every contract field, None where not measured."""
    axes: dict[str, Any] = {"device": device, "mode": "forward", "seq_len": seq_len,
                            "batch_size": 4, "backend": backend, **(extra_axes or {})}
    if ratio is not None:
        axes["reuse_ratio"] = ratio
    tag = "-".join(f"{k}{v}" for k, v in sorted((extra_axes or {}).items()))
    row: dict[str, Any] = {key: None for key in RESULT_FIELDS}
    row.update(
        point_id=f"{device}-forward-{backend}-n{seq_len}-b4-{variant}{ratio or ''}{tag}",
        variant=variant, model=model, status=status, device=device, mode="forward",
        backend=backend, seq_len=seq_len, batch_size=4, reuse_ratio=ratio,
        reuse_heads=None if ratio is None else int(ratio * 8),
        reuse_source=None if model == "baseline" else "previous", axes=axes,
    )
    if status == "ok" and time_ms is not None:
        samples = [time_ms * (1.0 + s) for s in SPREAD]
        summary = stats.summarize(samples)
        row.update(time_ms_median=summary.median, time_ms_ci_low=summary.ci_low,
                   time_ms_ci_high=summary.ci_high, time_ms_n=summary.n, time_ms_samples=samples)
    if status == "ok":
        row.update(peak_mem_bytes=mem, flops_analytic=flops, flops_counted=flops,
                   flops_by_component={"attention": flops} if flops else None)
    if status == "failed":
        row["error"] = "RuntimeError: out of memory"
    if status == "skipped":
        row["error"] = "cuda is not available"
    row.update(fields)
    return row


def write_run(path: Path, rows: list[dict[str, Any]], tail: str = "") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": 1, "run_id": path.name,
        "suite": {"name": "seq_len", "description": "t", "model": {}, "variants": {}, "sweep": {},
                  "metrics": ["time", "memory", "flops"], "measure": {}, "seed": 0},
        "environment": {"harness_version": "0.1.0", "git_commit": "abc", "python": "3.12",
                        "torch": "2.13", "numpy": "2", "os": "linux", "cpu_model": "x",
                        "cpu_cores": 2, "threads": 2, "gpu": None},
        "started_at": "2025-01-01T00:00:00Z", "finished_at": None, "status": "interrupted",
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    text = "".join(json.dumps(r) + "\n" for r in rows) + tail
    (path / "results.jsonl").write_text(text)
    return path


def seq_len_sweep() -> list[dict[str, Any]]:
    """seq_len × backend × reuse_ratio; the baseline ignores reuse_ratio, so it has one row per point."""
    rows = []
    for n, scale in ((1024, 1.0), (2048, 4.0)):
        rows.append(make_row("baseline", "baseline", "eager", n, 100 * scale, 1000 * scale, 1000 * scale))
        rows.append(make_row("baseline", "baseline", "sdpa", n, 40 * scale, 500 * scale, 1000 * scale))
        for ratio, t, mem, fl in ((0.25, 90.0, 900.0, 800.0), (0.5, 80.0, 800.0, 600.0)):
            rows.append(make_row("reuse", "reuse", "eager", n, t * scale, mem * scale, fl * scale, ratio))
            if not (n == 2048 and ratio == 0.5):
                rows.append(make_row("reuse", "reuse", "sdpa", n, 50 * scale, 600 * scale, fl * scale, ratio))
    rows.append(make_row("reuse", "reuse", "sdpa", 2048, None, ratio=0.5, status="failed"))
    rows.append(make_row("reuse", "reuse", "eager", 1024, None, ratio=0.5, status="skipped", device="cuda"))
    rows.append(make_row("baseline", "baseline", "eager", 1024, None, status="skipped", device="cuda"))
    return rows


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rows = seq_len_sweep()
    # A superseded row for the first reuse point: a later retry of it wins.
    stale = make_row("reuse", "reuse", "eager", 1024, 999.0, 1.0, 1.0, 0.25)
    return write_run(tmp_path / "run1", [stale] + rows, tail='{"point_id": "cpu-forward-eag')


# ---- comparisons -----------------------------------------------------------------------------


def pick(comps: pd.DataFrame, seq_len: int, backend: str, ratio: float, reference: str) -> pd.Series:
    match = comps[(comps["seq_len"] == seq_len) & (comps["backend"] == backend)
                  & (comps["reuse_ratio"] == ratio) & (comps["reference_backend"] == reference)]
    assert len(match) == 1
    return match.iloc[0]


def test_every_candidate_is_compared_with_both_baseline_backends(run_dir: Path) -> None:
    comps = analysis.comparisons(load_run(run_dir).results)
    # 7 ok reuse rows (one failed, one skipped on cuda) × 2 baseline backends each.
    assert len(comps) == 14
    per_candidate = comps.groupby("point_id")["reference_backend"].apply(sorted)
    assert all(refs == ["eager", "sdpa"] for refs in per_candidate)
    assert set(comps["device"]) == {"cpu"}  # the skipped cuda rows never compare
    assert list(comps.columns) == list(analysis.COMPARISON_COLUMNS)


def test_comparison_values_by_hand(run_dir: Path) -> None:
    comps = analysis.comparisons(load_run(run_dir).results)
    vs_eager = pick(comps, 1024, "eager", 0.5, "eager")
    assert vs_eager["speedup"] == pytest.approx(100 / 80)
    assert vs_eager["same_backend"] and vs_eager["reference_variant"] == "baseline"
    assert vs_eager["mem_ratio"] == pytest.approx(0.8)
    assert vs_eager["mem_saving"] == pytest.approx(0.2)
    assert vs_eager["flop_ratio"] == pytest.approx(0.6)
    assert vs_eager["flop_ideal_speedup"] == pytest.approx(1 / 0.6)
    assert vs_eager["efficiency"] == pytest.approx(1.25 * 0.6)
    assert vs_eager["reuse_source"] == "previous" and vs_eager["reuse_heads"] == 4
    assert vs_eager["point_id"] == "cpu-forward-eager-n1024-b4-reuse0.5"
    assert vs_eager["reference_point_id"] == "cpu-forward-eager-n1024-b4-baseline"
    assert math.isnan(vs_eager["accuracy_delta"])

    vs_sdpa = pick(comps, 1024, "eager", 0.5, "sdpa")  # the fused baseline is 2x faster than reuse
    assert not vs_sdpa["same_backend"]
    assert vs_sdpa["speedup"] == pytest.approx(40 / 80)
    assert vs_sdpa["mem_ratio"] == pytest.approx(800 / 500)
    assert vs_sdpa["speedup_ci_high"] < 1.0

    # The single baseline row at n=2048 serves both reuse ratios.
    quarter = pick(comps, 2048, "eager", 0.25, "eager")
    half = pick(comps, 2048, "eager", 0.5, "eager")
    assert quarter["reference_point_id"] == half["reference_point_id"]
    assert quarter["speedup"] == pytest.approx(400 / 360)
    assert half["speedup"] == pytest.approx(400 / 320)


def test_speedup_ci_comes_from_the_raw_samples(run_dir: Path) -> None:
    results = load_run(run_dir).results
    comps = analysis.comparisons(results)
    row = pick(comps, 1024, "sdpa", 0.25, "eager")
    by_id = results.set_index("point_id")
    expected = stats.ratio_of_medians_ci(by_id.loc[row["reference_point_id"], "time_ms_samples"],
                                         by_id.loc[row["point_id"], "time_ms_samples"])
    assert (row["speedup_ci_low"], row["speedup_ci_high"]) == pytest.approx(expected[1:])
    assert row["speedup"] == pytest.approx(100 / 50)
    assert row["speedup_ci_low"] < row["speedup"] < row["speedup_ci_high"]


def test_missing_metrics_give_nan_not_errors() -> None:
    base = make_row("baseline", "baseline", "eager", 64, 10.0, mem=None, flops=None)
    cand = make_row("reuse", "reuse", "eager", 64, None, mem=5.0, flops=None, ratio=0.5,
                    flops_counted=50.0, accuracy_mean=0.91)
    base["flops_counted"] = 100.0
    base.pop("peak_mem_bytes")  # a row from an older writer lacking a column
    comps = analysis.comparisons(results_frame([base, cand]))
    row = comps.iloc[0]
    assert math.isnan(row["speedup"]) and math.isnan(row["speedup_ci_low"])
    assert math.isnan(row["mem_ratio"]) and math.isnan(row["efficiency"])
    assert row["flop_ratio"] == pytest.approx(0.5)  # falls back to counted FLOPs on both sides
    assert math.isnan(row["accuracy_delta"])         # only one side has accuracy


def test_accuracy_delta_and_single_sample_ci() -> None:
    base = make_row("baseline", "baseline", "sdpa", 64, None, accuracy_mean=0.90,
                    time_ms_median=10.0, time_ms_samples=[10.0])
    cand = make_row("reuse", "reuse", "sdpa", 64, None, ratio=0.5, accuracy_mean=0.88,
                    time_ms_median=8.0, time_ms_samples=[8.0])
    row = analysis.comparisons(results_frame([base, cand])).iloc[0]
    assert row["accuracy_delta"] == pytest.approx(-0.02)
    assert row["speedup"] == pytest.approx(1.25)
    assert math.isnan(row["speedup_ci_low"])  # one sample each: no honest interval


def test_other_swept_keys_split_groups() -> None:
    rows = []
    for layers, base_t in ((2, 10.0), (4, 20.0)):
        extra = {"n_layers": layers}
        rows.append(make_row("baseline", "baseline", "eager", 64, base_t, extra_axes=extra))
        rows.append(make_row("reuse", "reuse", "eager", 64, 8.0, ratio=0.5, extra_axes=extra))
    comps = analysis.comparisons(results_frame(rows))
    assert len(comps) == 2  # not 4: a 2-layer reuse model is never set against a 4-layer baseline
    assert list(comps.columns[:5]) == ["device", "mode", "seq_len", "batch_size", "n_layers"]
    assert dict(zip(comps["n_layers"], comps["speedup"])) == pytest.approx({2: 10 / 8, 4: 20 / 8})


def test_candidate_without_baseline_is_reported_unmatched(run_dir: Path) -> None:
    results = load_run(run_dir).results
    no_eager_base = results[~((results["model"] == "baseline") & (results["backend"] == "eager"))]
    comps = analysis.comparisons(no_eager_base)
    assert set(comps["reference_backend"]) == {"sdpa"} and len(comps) == 7
    assert analysis.unmatched(no_eager_base).empty
    only_reuse = results[results["model"] == "reuse"]
    assert analysis.comparisons(only_reuse).empty
    assert len(analysis.unmatched(only_reuse)) == 7


def test_best_baseline_picks_the_faster_reference(run_dir: Path) -> None:
    comps = analysis.comparisons(load_run(run_dir).results)
    best = analysis.best_baseline(comps)
    assert len(best) == 7 and best["point_id"].is_unique
    assert set(best["reference_backend"]) == {"sdpa"}  # SDPA is faster at every point here
    assert list(best["point_id"]) == list(dict.fromkeys(comps["point_id"]))
    assert analysis.best_baseline(comps.iloc[0:0]).empty


# ---- summary table ---------------------------------------------------------------------------


def test_summary_table_shows_both_baselines_and_fits_100_columns(run_dir: Path) -> None:
    results = load_run(run_dir).results
    table = analysis.summary_table(results)
    lines = table.splitlines()
    print(table)
    assert all(len(line) <= 100 for line in lines)
    header = lines[0].split()
    assert header[:7] == ["dev", "mode", "seq", "batch", "variant", "backend", "reuse"]
    assert header.index("eager") < header.index("sdpa")  # "vs eager", "vs sdpa" blocks
    body = [line for line in lines[1:] if line.startswith("cpu")]
    assert len(body) == 7
    first = body[0].split()
    # reuse eager n=1024 K=0.25: 100/90 vs eager, 40/90 vs sdpa, FLOP-ideal 1000/800
    assert first[:7] == ["cpu", "forward", "1024", "4", "reuse", "eager", "0.25"]
    assert first[7:10] == ["1.11×", "[1.08–1.14]", "0.90×"]  # speedup [CI] and mem vs eager
    assert first[10] == "0.44×" and first[12] == "1.80×"      # speedup and mem vs sdpa
    assert first[13] == "1.25×"                               # FLOP-ideal speedup
    assert "rows: 11 ok, 1 failed, 2 skipped" in table


def test_summary_table_without_comparisons() -> None:
    rows = [make_row("reuse", "reuse", "eager", 64, 8.0, ratio=0.5)]
    table = analysis.summary_table(results_frame(rows))
    assert table.startswith("no reuse-vs-baseline comparison")
    assert "1 candidate row(s) had no ok baseline" in table
