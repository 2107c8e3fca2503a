"""What a measured row says about FLOPs and memory: the device's cost model, uncounted products, dtypes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.measure.devices import CpuDevice
from harness.measure.speed import _analytic, measure_speed
from harness.suite.task import MeasureConfig, PointTask
from models.config import TransformerConfig
from models.cost import analytic_cost

pytestmark = pytest.mark.usefixtures("one_thread")

TINY: dict[str, Any] = dict(d_model=16, n_heads=2, n_layers=2, d_ff=32, vocab_size=32, max_len=64, n_classes=4)


def task(model: str = "reuse", device: str = "cpu", mode: str = "train", metrics: tuple[str, ...] = ("flops",),
         **config: Any) -> PointTask:
    full = TransformerConfig.from_dict({**TINY, "reuse_heads": 1, **config}).to_dict()
    return PointTask(point_id="p", variant=model, model=model, model_config=full, axes={}, device=device, mode=mode,
                     seq_len=16, batch_size=2, seed=0, metrics=metrics,
                     measure=MeasureConfig(warmup=1, min_reps=1, max_reps=1, threads=1))


def test_the_analytic_cost_of_a_cuda_point_is_cudas() -> None:
    # With attention dropout in training the CPU runs SDPA's math path, CUDA its fused kernel
    # (one more backward matmul per fused head, no T×T tensors kept).
    cuda = task(device="cuda:1", attn_dropout=0.1)
    cfg = TransformerConfig.from_dict(cuda.model_config)
    row = _analytic(cuda, cfg)
    expected = analytic_cost(cfg, 2, 16, "train", device_type="cuda")
    assert expected.total != analytic_cost(cfg, 2, 16, "train", device_type="cpu").total
    assert row["flops_analytic"] == expected.total
    assert row["activation_bytes_analytic"] == expected.activation_bytes


def test_a_product_without_a_formula_puts_a_warning_on_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    row = measure_speed(task(model="uncounted_model:build", mode="forward"), CpuDevice())
    assert row["status"] == "ok" and "aten.mv" in row["flops_warning"]
    assert measure_speed(task(mode="forward"), CpuDevice())["flops_warning"] is None


def test_a_bfloat16_row_counts_its_flops_and_halves_its_bytes() -> None:
    rows = {dtype: measure_speed(task(dtype=dtype, metrics=("flops", "memory")), CpuDevice())
            for dtype in ("float32", "bfloat16")}
    f32, bf16 = rows["float32"], rows["bfloat16"]
    assert bf16["flops_counted"] == bf16["flops_analytic"] == f32["flops_counted"]
    # Weights and AdamW's two moments take 2 bytes less per parameter; inputs and step counters stay.
    assert f32["resting_mem_bytes"] - bf16["resting_mem_bytes"] == 3 * 2 * f32["params"]
    assert bf16["activation_bytes_analytic"] < f32["activation_bytes_analytic"]
    assert 0 < bf16["peak_mem_bytes"] < f32["peak_mem_bytes"]
