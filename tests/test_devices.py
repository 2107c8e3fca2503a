"""Devices: CUDA timing against a stand-in for torch.cuda's streams and events, and (device, dtype) support."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

from cuda_standin import REPLACED, FakeCuda, fake_cuda  # noqa: F401  (fake_cuda is a fixture)
from harness.measure.devices import CpuDevice, CudaDevice
from harness.run.worker import measure_task
from harness.suite.task import MeasureConfig, PointTask


def test_the_stand_in_only_replaces_names_torch_cuda_has() -> None:
    # A misspelt name would pass against the stand-in and fail on a real GPU.
    assert [name for name in REPLACED if not hasattr(torch.cuda, name)] == []
    assert "stream" in inspect.signature(torch.cuda.Event.record).parameters
    assert "device" in inspect.signature(torch.cuda.current_stream).parameters
    assert {"end_event"} <= set(inspect.signature(torch.cuda.Event.elapsed_time).parameters)


def test_cuda_timing_on_cuda1_records_both_events_on_cuda1(fake_cuda: FakeCuda) -> None:
    # The step's kernels run on cuda:1 (its tensors live there) while cuda:0 stays current, as in
    # a worker that never calls set_device. Events recorded on cuda:0 would bracket an idle stream.
    elapsed = CudaDevice("cuda:1").time_step_ms(lambda: fake_cuda.launch("cuda:1", 7.5))
    assert fake_cuda.records == [1, 1]
    assert elapsed == 7.5
    assert fake_cuda.current == 0, "the caller's current device is restored"


def test_the_step_runs_with_its_device_current(fake_cuda: FakeCuda) -> None:
    # Anything in the step that allocates on "cuda" (no index) lands on the measured device.
    seen: list[int] = []
    CudaDevice("cuda:1").time_step_ms(lambda: seen.append(torch.cuda.current_stream().device_index))
    assert seen == [1]


def test_bare_cuda_times_the_current_device(fake_cuda: FakeCuda) -> None:
    assert CudaDevice("cuda").time_step_ms(lambda: fake_cuda.launch("cuda:0", 2.0)) == 2.0
    assert fake_cuda.records == [0, 0]


def _capabilities(**features: bool) -> dict[str, Any]:
    return {"cpu_name": "Test CPU", "avx512_bf16": False, "amx_bf16": False, "avx512_fp16": False,
            "amx_fp16": False, **features}


@pytest.mark.parametrize("features,dtype,supported", [
    ({}, "float32", True),
    ({"avx512_bf16": True}, "bfloat16", True),
    ({}, "bfloat16", False),
    ({"avx512_bf16": True}, "float16", False),
    ({"amx_fp16": True}, "float16", True),
    ({"fp16_arith": True}, "float16", True),      # ARM
])
def test_cpu_dtype_support_follows_the_cpu_features(monkeypatch: pytest.MonkeyPatch, features: dict[str, bool],
                                                   dtype: str, supported: bool) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: _capabilities(**features))
    reason = CpuDevice().availability(dtype)
    assert (reason is None) == supported
    if not supported:
        assert dtype in reason and "Test CPU" in reason and "emulate" in reason


def test_this_machine_runs_float32_and_says_why_not_for_the_rest() -> None:
    assert CpuDevice().availability() is None
    for dtype in ("bfloat16", "float16"):
        reason = CpuDevice().availability(dtype)
        assert reason is None or reason.startswith(f"{dtype} unsupported on this CPU")


@pytest.mark.parametrize("capability,supported", [((7, 0), False), ((8, 0), True), ((9, 0), True)])
def test_cuda_bfloat16_needs_ampere(fake_cuda: FakeCuda, capability: tuple[int, int], supported: bool) -> None:
    fake_cuda.capability = capability
    reason = CudaDevice("cuda:1").availability("bfloat16")
    assert (reason is None) == supported
    if not supported:
        assert "compute capability 7.0" in reason and "cuda:1" in reason
    assert CudaDevice("cuda:1").availability("float16") is None
    assert CudaDevice("cuda:2").availability("float16") == "cuda:2 not present: 2 CUDA device(s)"


def test_an_unsupported_dtype_is_a_skipped_row_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: _capabilities())
    config = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 16, "vocab_size": 16, "dtype": "float16"}
    task = PointTask(point_id="p", variant="baseline", model="baseline", model_config=config, axes={"dtype": "float16"},
                     device="cpu", mode="forward", seq_len=8, batch_size=1, seed=0, metrics=("time",),
                     measure=MeasureConfig(warmup=1, min_reps=1, max_reps=1))
    row = measure_task(task)
    assert row["status"] == "skipped"
    assert row["error"].startswith("float16 unsupported on this CPU (Test CPU)")
    assert row["time_ms_median"] is None


# ---- on a real GPU (skipped here, with the reason) --------------------------------------------------
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (this build or machine has none)")
needs_two = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs (cuda:1 with cuda:0 current)")


@needs_gpu
def test_real_cuda_step_memory_sees_a_known_allocation() -> None:
    size = 64 * 2**20
    memory = CudaDevice("cuda:0").step_memory(lambda: torch.empty(size, dtype=torch.uint8, device="cuda:0"))
    assert memory.peak_bytes == pytest.approx(size, rel=0.01)


@needs_two
def test_real_cuda_timing_on_cuda1_covers_its_work() -> None:
    import time

    def step() -> None:
        with torch.cuda.device(1):
            torch.cuda._sleep(100_000_000)  # tens of ms of GPU time on cuda:1's stream, no CPU time

    torch.cuda.set_device(0)
    started = time.perf_counter()
    elapsed = CudaDevice("cuda:1").time_step_ms(step)
    wall_ms = (time.perf_counter() - started) * 1e3  # time_step_ms waited for the end event
    assert elapsed > 0.5 * wall_ms, "events on an idle cuda:0 would time the launch alone"
