"""benchmarks/gpu_check.py on a machine without a GPU: it skips cleanly, and its table and pass/fail
rules (pure functions) hold. The measurements themselves need a GPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import gpu_check  # noqa: E402
from gpu_check import (Check, agreement, at_most, energy_check, exit_code, flops_check, main_job_check,  # noqa: E402
                       render, skipped)


def test_without_a_gpu_it_says_so_and_exits_0() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True,
                            text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("No GPU: CUDA not available") and "Nothing measured." in result.stdout


def test_without_a_gpu_nothing_is_measured(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def measure(budget_s: float) -> list[Check]:
        raise AssertionError("measured without a GPU")

    monkeypatch.setattr(gpu_check, "run_checks", measure)
    assert gpu_check.main([]) == 0
    assert "Nothing measured." in capsys.readouterr().out


def test_agreement_within_the_limit_passes() -> None:
    assert agreement("t", "c", 10.2, 10.0, 0.03, "ms").status == "pass"
    failed = agreement("t", "c", 9.6, 10.0, 0.03, "ms")
    assert failed.status == "fail" and failed.note == "-4.00%" and failed.expected == "10 ms ±3%"


def test_flops_must_be_equal_and_all_counted() -> None:
    assert flops_check("c", 100, 100, (), "flash").status == "pass"
    assert flops_check("c", 99, 100, (), "flash").status == "fail"
    missing = flops_check("c", 100, 100, ("aten._cudnn_attention_forward",), "cudnn")
    assert missing.status == "fail" and "aten._cudnn_attention_forward" in missing.note


def summary(energy: float | None, source: str | None, note: str | None = None) -> dict[str, Any]:
    return {"energy_j_per_step": energy, "energy_source": source, "telemetry_note": note}


def test_energy_must_be_positive_and_from_the_path_asked_for() -> None:
    assert energy_check("counter", summary(1.5, "counter"), "counter").status == "pass"
    assert energy_check("hidden", summary(1.5, "integrated_power"), "integrated_power").status == "pass"
    assert energy_check("hidden", summary(1.5, "counter"), "integrated_power").status == "fail"  # not hidden
    assert energy_check("counter", summary(0.0, "counter"), "counter").status == "fail"
    assert energy_check("counter", summary(1.5, "integrated_power"), "counter").status == "skip"
    gone = energy_check("counter", summary(None, None, "NVML unavailable: Driver Not Loaded"), "counter")
    assert gone.status == "skip" and gone.note == "NVML unavailable: Driver Not Loaded"


def test_sampler_overhead_limit() -> None:
    assert at_most("s", "c", 1.015, 0.02).status == "pass"
    failed = at_most("s", "c", 1.025, 0.02)
    assert failed.status == "fail" and failed.measured == "+2.50%"


def row(variant: str, backend: str, ms: float, **extra: Any) -> dict[str, Any]:
    return {"variant": variant, "backend": backend, "status": "ok", "error": None, "time_ms_median": ms,
            "flops_counted": 1000, "flops_analytic": 1000, "flops_warning": None, "energy_j_per_step": 2.0,
            "telemetry_note": None, **extra}


def test_main_job_rows_give_reuse_against_both_baselines() -> None:
    rows = [row("baseline", "sdpa", 10.0), row("baseline", "eager", 40.0), row("reuse", "sdpa", 8.0),
            row("reuse", "eager", 30.0)]
    check = main_job_check("forward", 4096, rows)
    assert check.status == "pass" and check.case == "forward n=4096"
    assert check.measured == "reuse 8 ms, vs sdpa 1.25x, vs eager 5.00x"
    # Training at 16k has no eager rows (excluded in the suite): the SDPA comparison alone.
    assert main_job_check("train", 16384, rows[0:1] + rows[2:3]).measured == "reuse 8 ms, vs sdpa 1.25x"


@pytest.mark.parametrize("broken,why", [
    (dict(status="failed", error="CUDA out of memory"), "CUDA out of memory"),
    (dict(flops_counted=900), "counted 900 vs analytic 1000"),
    (dict(flops_warning="FLOPs of aten.x not counted"), "aten.x"),
    (dict(energy_j_per_step=None, telemetry_note="NVML error mid-run: lost"), "no energy"),
])
def test_main_job_fails_on_any_bad_row(broken: dict[str, Any], why: str) -> None:
    rows = [row("baseline", "sdpa", 10.0), row("reuse", "sdpa", 8.0, **broken)]
    check = main_job_check("train", 512, rows)
    assert check.status == "fail" and why in check.note


def test_main_job_without_nvml_leaves_energy_to_the_nvml_checks() -> None:
    rows = [row("baseline", "sdpa", 10.0, energy_j_per_step=None, telemetry_note="NVML unavailable: no driver"),
            row("reuse", "sdpa", 8.0)]
    assert main_job_check("train", 512, rows).status == "pass"


def test_the_table_aligns_columns_and_counts_results() -> None:
    checks = [agreement("cuda timing", "train n=8192", 10.1, 10.0, 0.03, "ms"),
              skipped("cuda timing", "on cuda:1", "one CUDA device"),
              flops_check("flash · forward", 99, 100, (), "flash")]
    lines = render(checks).splitlines()
    assert lines[0].split() == ["check", "case", "measured", "expected", "result"]
    for header in ("measured", "result"):
        at = lines[0].index(header)
        assert all(line[at - 2:at] == "  " and line[at] != " " for line in lines[1:4]), header
    assert lines[2].endswith("skip: one CUDA device")
    assert lines[-1] == "1 passed, 1 failed, 1 skipped"
    assert exit_code(checks) == 1 and exit_code(checks[:2]) == 0


def test_the_main_job_points_are_the_shipped_cuda_section() -> None:
    tasks = gpu_check.main_tasks()
    assert {t.model_config["dtype"] for t in tasks} == {"bfloat16"} and {t.device for t in tasks} == {"cuda"}
    assert max(t.seq_len for t in tasks) == 16384 and all(t.seq_len <= t.model_config["max_len"] for t in tasks)
    for mode in ("forward", "train"):
        at_16k = {(t.variant, t.model_config["backend"]) for t in tasks if (t.mode, t.seq_len) == (mode, 16384)}
        assert ("reuse", "sdpa") in at_16k and ("baseline", "sdpa") in at_16k
    assert all(t.measure.max_seconds == 1 for t in tasks)


def test_hiding_the_energy_counter_raises_what_the_sampler_reads_as_unsupported() -> None:
    pynvml = pytest.importorskip("pynvml")
    from harness.measure.telemetry.nvml import _not_supported_errors

    with pytest.raises(_not_supported_errors(pynvml)):
        gpu_check._NoEnergyCounter(pynvml).nvmlDeviceGetTotalEnergyConsumption(None)
