"""`compile: true` (a variant key or a sweep axis): torch.compile for every variant alike.

One test compiles a real model (seconds); the others check the suite keys, the point ids and the
failure path without compiling anything.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from harness.compare.within import best_reuse, comparisons
from harness.measure.devices import get_device
from harness.report.frame import AxisPlan
from harness.report.takeaways import best_form_findings
from harness.measure.speed import measure_speed
from harness.run.worker import run_tasks
from harness.suite.loading import SuiteError, load_suite
from harness.suite.sweep import expand, group_key
from harness.suite.task import MeasureConfig, PointTask
from models.config import TransformerConfig
from conftest import tiny_suite

CXX = next((c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)

VARIANTS = """\
  baseline: {model: baseline}
  baseline-compiled: {model: baseline, compile: true}
  reuse: {model: reuse, reuse_ratio: 0.5, reuse_impl: recompute}"""


def task(*, compile: bool, mode: str = "train", variant: str = "reuse") -> PointTask:
    config = TransformerConfig(d_model=32, n_heads=4, n_layers=2, d_ff=64, vocab_size=64, max_len=32,
                               reuse_heads=2, reuse_impl="recompute", causal=True)
    return PointTask(point_id=f"{variant}-{compile}", variant=variant, model="reuse", model_config=config.to_dict(),
                     axes={}, device="cpu", mode=mode, seq_len=16, batch_size=2, seed=0,
                     metrics=("time", "memory", "flops"),
                     measure=MeasureConfig(warmup=1, min_reps=3, max_reps=3, max_seconds=1, threads=1),
                     compile=compile)


@pytest.mark.slow
@pytest.mark.skipif(CXX is None, reason="torch.compile's CPU backend (inductor) needs a C++ compiler; none found")
def test_a_compiled_training_step_is_measured_after_compiling_with_flops_of_the_uncompiled_module() -> None:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    row = measure_speed(task(compile=True), get_device("cpu"))
    assert row["status"] == "ok" and row["compile"] is True
    assert row["compile_s"] > 0 and len(row["time_ms_samples"]) == 3 and row["peak_mem_bytes"] > 0
    # Compiled once, before warm-up: no step after it compiled again.
    assert counters["stats"]["unique_graphs"] == 1
    assert row["flops_counted"] == row["flops_analytic"] and "uncompiled" in row["flops_note"]


class _Uncompilable(nn.Module):
    """What torch.compile hands back when inductor cannot build a kernel: it fails when first called."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("CppCompileError: C++ compile error\nfull log follows")


def test_a_compile_failure_fails_that_point_with_the_reason_and_the_others_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", _Uncompilable)
    out = tmp_path / "rows.jsonl"
    run_tasks([task(compile=True, mode="forward"), task(compile=False, mode="forward", variant="plain")],
              out, None, None)
    failed, ok = (json.loads(line) for line in out.read_text().splitlines())
    assert failed["status"] == "failed" and failed["compile"] is True
    assert failed["error"] == "CompileError: torch.compile failed: RuntimeError: CppCompileError: C++ compile error"
    assert ok["status"] == "ok" and ok["compile"] is False and "compile_s" not in ok


def test_compile_as_a_variant_key_keeps_the_other_ids_and_the_pairing(tmp_path: Path) -> None:
    plain = {t.variant: t for t in expand(load_suite(tiny_suite(tmp_path / "a.yaml"))) if t.seq_len == 16}
    suite = load_suite(tiny_suite(tmp_path / "b.yaml", variants=VARIANTS))
    tasks = {t.variant: t for t in expand(suite) if t.seq_len == 16}
    assert tasks["baseline"].point_id == plain["baseline"].point_id   # uncompiled ids as before
    compiled = tasks["baseline-compiled"]
    assert compiled.compile and not tasks["baseline"].compile and "-compiled-" in compiled.point_id
    # Compiled or not, every variant of a point is compared (and paired) with every other.
    assert len({group_key(t) for t in tasks.values()}) == 1
    assert load_suite(Path(suite.path)).to_json()["variants"]["baseline-compiled"]["compile"] is True


def test_compile_as_a_sweep_axis(tmp_path: Path) -> None:
    path = tiny_suite(tmp_path / "s.yaml")
    tasks = expand(load_suite(path, ["sweep.compile=[false, true]"]))
    by_compile: dict[bool, list[PointTask]] = {}
    for t in tasks:
        by_compile.setdefault(t.compile, []).append(t)
    assert len(by_compile[True]) == len(by_compile[False]) == 4 and all(t.axes["compile"] for t in by_compile[True])
    unswept = {t.point_id for t in expand(load_suite(path))}
    assert {t.point_id for t in by_compile[False]} == unswept
    assert len({group_key(t) for t in tasks}) == 2                     # one per seq_len, compiled or not


@pytest.mark.parametrize("overrides,message", [
    (["variants.reuse.compile=maybe"], "variants.reuse.compile: expected true or false"),
    (["sweep.compile=[1]"], "sweep.compile[0]: expected true or false"),
    (["sweep.compile=[true]", "variants.reuse.compile=true"], "either a variant key or swept, not both"),
])
def test_bad_compile_keys_are_reported_where_written(tmp_path: Path, overrides: list[str], message: str) -> None:
    with pytest.raises(SuiteError) as err:
        load_suite(tiny_suite(tmp_path / "s.yaml"), overrides)
    assert message in str(err.value)


def _row(variant: str, model: str, backend: str, n: int, ms: float, **extra: Any) -> dict[str, Any]:
    samples = list(ms * (1 + 0.01 * np.sin(np.arange(8))))   # a 1% spread: tight, finite intervals
    impl = extra.pop("reuse_impl", None)
    return {"point_id": f"{variant}-{impl}-{backend}-{n}", "variant": variant, "model": model, "status": "ok",
            "device": "cpu", "mode": "train", "backend": backend, "seq_len": n, "batch_size": 4,
            "reuse_ratio": 0.5 if model == "reuse" else None, "reuse_heads": None, "reuse_source": None,
            "time_ms_median": float(np.median(samples)), "time_ms_samples": samples, "peak_mem_bytes": 100,
            "axes": {"seq_len": n, **({"reuse_impl": impl} if impl else {})}, **extra}


def test_the_verdict_names_the_fastest_reuse_form_against_the_fastest_baseline_compiled_ones_included() -> None:
    # suites/implementations.yaml's shape: reuse_impl swept over a plain and a compiled reuse variant.
    # At n=256 the compiled baseline is the fastest of three and compiled recompute beats it; at
    # n=1024 every reuse form loses to it, and the fastest of them is named.
    times = {256: dict(eager=30, sdpa=20, compiled=15, mat=18, rec=16, rec_c=12),
             1024: dict(eager=300, sdpa=150, compiled=120, mat=200, rec=160, rec_c=140)}
    rows = []
    for n, t in times.items():
        rows += [_row("baseline", "baseline", "eager", n, t["eager"]), _row("baseline", "baseline", "sdpa", n, t["sdpa"]),
                 _row("baseline-compiled", "baseline", "sdpa", n, t["compiled"], compile=True),
                 _row("reuse", "reuse", "sdpa", n, t["mat"], reuse_impl="materialize"),
                 _row("reuse", "reuse", "sdpa", n, t["rec"], reuse_impl="recompute"),
                 _row("reuse-compiled", "reuse", "sdpa", n, t["rec_c"], reuse_impl="recompute", compile=True)]
    best = best_reuse(comparisons(pd.DataFrame(rows)))
    assert list(best["seq_len"]) == [256, 1024] and list(best["forms"]) == [3, 3]
    assert list(best["point_id"]) == ["reuse-compiled-recompute-sdpa-256", "reuse-compiled-recompute-sdpa-1024"]
    assert list(best["reference_variant"]) == ["baseline-compiled"] * 2
    assert list(best["speedup"].round(3)) == [1.25, round(120 / 140, 3)]
    plan = AxisPlan(x="seq_len", x_values=(256, 1024), extra=(), ratio_swept=False, facets=(("cpu", "train"),))
    said = best_form_findings(comparisons(pd.DataFrame(rows)), plan, pd.DataFrame(rows))
    assert len(said) == 2
    assert all("reuse-compiled · sdpa (ratio 0.5) [reuse_impl=recompute]" in s and "baseline-compiled" in s
               for s in said), said
    assert said[0].endswith("reuse wins.") and said[1].endswith("reuse loses.")
