"""Every CUDA path of the harness on one GPU, in about 5 minutes, as a pass/fail table.

    python benchmarks/gpu_check.py [--budget-s 300]

It runs the harness's own code, never a copy of it: CudaDevice (harness/measure/devices.py), the
step speed.py times, the FLOP counter and analytic model (models/), the NVML telemetry and, for the
main job, the worker processes `harness run` starts. Checks:
  - CUDA timing: CudaDevice.time_step_ms against torch.utils.benchmark's CUDA timer, within 3%,
    on cuda:0 and on cuda:1 when there is one (cuda:0 left current, as in a worker);
  - allocator peak: CudaDevice.step_memory of a step that allocates a known 256 MiB, within 1%;
  - FLOPs: counted = analytic, no uncounted op, for each SDPA backend (flash, efficient, math,
    cuDNN) x forward/train x causal/bidirectional x dtype; a combination torch has no kernel for
    is skipped with torch's reason; the bytes a training step keeps, saved = analytic within 1%;
  - NVML: energy per step above 0 from the driver's counter, and with the counter hidden
    (integrated power); the sampling thread's cost, steps timed with sampling on against off;
  - the main job: suites/seq_len.yaml's CUDA points (bfloat16, n up to 16k) on a short budget, each
    (mode, n) with reuse's speedup over both baselines; every row ok, FLOPs agreeing, energy > 0.
Without a GPU it says so and exits 0 without measuring anything. Exit 1 when any check failed.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.measure.devices import CudaDevice  # noqa: E402
from models.registry import build_model  # noqa: E402

Status = Literal["pass", "fail", "skip"]
MAIN_SUITE = ROOT / "suites" / "seq_len.yaml"
# The main job's CUDA points on a short budget: enough steps for a median, not for a tight CI.
MAIN_OVERRIDES = ("measure.warmup=1", "measure.min_reps=3", "measure.max_reps=10", "measure.max_seconds=1",
                  "measure.timeout=120")
TIMING_REL, MEMORY_REL, FLOPS_REL = 0.03, 0.01, 0.01
# Sampling may cost at most the harness's default CI target (±2%): below it a row cannot show it.
SAMPLER_LIMIT = 0.02
DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class Check:
    check: str        # which path
    case: str         # what ran
    measured: str
    expected: str     # reference and limit
    status: Status
    note: str = ""    # deviation, or why skipped


# ---- rules and the table (pure) -------------------------------------------------------------------
def agreement(check: str, case: str, ours: float, theirs: float, rel: float, unit: str) -> Check:
    deviation = ours / theirs - 1
    return Check(check, case, f"{ours:.4g} {unit}", f"{theirs:.4g} {unit} ±{rel:.0%}",
                 "pass" if abs(deviation) <= rel else "fail", f"{deviation:+.2%}")


def energy_check(case: str, summary: Mapping[str, Any], source: str) -> Check:
    """Energy per step of one telemetry window, which must come from `source` (see nvml.py)."""
    energy, got, note = summary["energy_j_per_step"], summary["energy_source"], summary["telemetry_note"] or ""
    if got is None and note.startswith("NVML unavailable"):
        return skipped("nvml energy", case, note)
    if source == "counter" and got == "integrated_power":
        return skipped("nvml energy", case, "this GPU's energy counter is unsupported or did not advance")
    ok = energy is not None and energy > 0 and got == source
    measured = "none" if energy is None else f"{energy:.4g} J/step ({got})"
    return Check("nvml energy", case, measured, f"> 0, from {source}", "pass" if ok else "fail", note)


def at_most(check: str, case: str, ratio: float, limit: float, note: str = "") -> Check:
    return Check(check, case, f"{ratio - 1:+.2%}", f"<= {limit:+.0%}", "pass" if ratio - 1 <= limit else "fail", note)


def flops_check(case: str, counted: int, analytic: int, uncounted: Iterable[str], ran: str) -> Check:
    missing = ", ".join(uncounted)
    ok = counted == analytic and not missing
    note = f"uncounted: {missing}" if missing else ran
    return Check("flops", case, f"{counted:,}", f"{analytic:,} (analytic)", "pass" if ok else "fail", note)


def skipped(check: str, case: str, reason: str) -> Check:
    return Check(check, case, "-", "-", "skip", reason)


def main_job_check(mode: str, seq_len: int, rows: list[Mapping[str, Any]]) -> Check:
    """One (mode, n) of the main job: every row ok with agreeing FLOPs and energy; reuse (on SDPA)
    against the SDPA and the eager baseline as speedups (baseline ms / reuse ms)."""
    case = f"{mode} n={seq_len}"
    bad = [f"{r['variant']}/{r['backend']}: {r['status']} {r.get('error') or ''}".strip()
           for r in rows if r["status"] != "ok"]
    if bad:
        return Check("main job", case, "-", "all rows ok", "fail", "; ".join(bad))
    problems = []
    for r in rows:
        where = f"{r['variant']}/{r['backend']}"
        if r.get("flops_warning"):
            problems.append(f"{where}: {r['flops_warning']}")
        elif abs(r["flops_counted"] / r["flops_analytic"] - 1) > FLOPS_REL:
            problems.append(f"{where}: counted {r['flops_counted']:.4g} vs analytic {r['flops_analytic']:.4g} FLOPs")
        no_nvml = (r.get("telemetry_note") or "").startswith("NVML unavailable")  # the nvml checks say why
        if not no_nvml and not (r.get("energy_j_per_step") or 0) > 0:
            problems.append(f"{where}: no energy ({r.get('telemetry_note')})")
    ms = {(r["variant"], r["backend"]): r["time_ms_median"] for r in rows}
    reuse = ms.get(("reuse", "sdpa"))
    speedups = [f"vs {backend} {ms[('baseline', backend)] / reuse:.2f}x" for backend in ("sdpa", "eager")
                if reuse and ("baseline", backend) in ms]
    measured = f"reuse {reuse:.4g} ms, " + ", ".join(speedups) if reuse else "no reuse/sdpa row"
    return Check("main job", case, measured, "rows ok, FLOPs ±1%, energy > 0",
                 "fail" if problems else "pass", "; ".join(problems))


def render(checks: list[Check]) -> str:
    header = ("check", "case", "measured", "expected", "result")
    rows = [(c.check, c.case, c.measured, c.expected, f"{c.status}{': ' + c.note if c.note else ''}") for c in checks]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths)) + "  " + r[4] for r in [header, *rows]]
    counts = {s: sum(c.status == s for c in checks) for s in ("pass", "fail", "skip")}
    return "\n".join([*lines, f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped"])


def exit_code(checks: list[Check]) -> int:
    return 1 if any(c.status == "fail" for c in checks) else 0


# ---- measurements (need a GPU) ---------------------------------------------------------------------
def main_tasks(overrides: tuple[str, ...] = MAIN_OVERRIDES) -> list[Any]:
    from harness.suite.loading import load_suite
    from harness.suite.sweep import expand

    return [t for t in expand(load_suite(MAIN_SUITE, list(overrides))) if t.device.startswith("cuda")]


def workload(device: str, mode: str, seq_len: int, backend: str = "sdpa") -> Callable[[], object]:
    """The main job's step for its baseline at (mode, n, backend), built as speed.py builds it, on `device`."""
    from harness.measure.speed import input_config, make_step
    from models.transformer import make_inputs, torch_dtype

    task = next(t for t in main_tasks() if (t.mode, t.seq_len, t.variant, t.model_config["backend"]) ==
                (mode, seq_len, "baseline", backend))
    cfg = input_config(task)
    torch.manual_seed(0)
    model = build_model(task.model, task.model_config).to(device=device, dtype=torch_dtype(cfg))
    x, y = make_inputs(cfg, task.batch_size, seq_len, device=device)
    step, _ = make_step(model, cfg, x, y, mode)
    for _ in range(3):
        step()
    torch.cuda.synchronize(device)
    return step


def check_timing(device: str) -> Check:
    import torch.utils.benchmark as tbench

    case = f"train sdpa n=8192 bfloat16 on {device}"
    step = workload(device, "train", 8192)
    ours = statistics.median(CudaDevice(device).time_step_ms(step) for _ in range(15))
    with torch.cuda.device(torch.device(device)):  # the benchmark timer synchronizes the current device
        theirs = tbench.Timer("step()", globals={"step": step}).blocked_autorange(min_run_time=1.0).median * 1e3
    return agreement("cuda timing", case, ours, theirs, TIMING_REL, "ms")


def check_allocator() -> Check:
    size = 256 * 2**20
    memory = CudaDevice("cuda:0").step_memory(lambda: torch.empty(size, dtype=torch.uint8, device="cuda:0"))
    return agreement("allocator peak", "one 256 MiB tensor", memory.peak_bytes / 2**20, size / 2**20, MEMORY_REL, "MiB")


def check_flops() -> list[Check]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from models.config import TransformerConfig
    from models.cost import analytic_cost
    from models.flops import count_flops
    from models.transformer import Transformer, make_inputs

    backends = {SDPBackend.FLASH_ATTENTION: "flash", SDPBackend.EFFICIENT_ATTENTION: "efficient",
                SDPBackend.CUDNN_ATTENTION: "cudnn", SDPBackend.MATH: "math"}
    # Training with and without attention dropout: on CUDA the fused kernels keep dropout (5 backward
    # matmul units per fused head), where the CPU falls back to the math path (4).
    modes = (("forward", 0.0), ("train", 0.0), ("train", 0.1))
    checks = []
    for (backend, name), dtype, causal, (mode, attn_dropout) in itertools.product(
            backends.items(), DTYPES, (False, True), modes):
        # 4 heads, K = 2: the layers have materialized, fused and reused heads between them.
        cfg = TransformerConfig(d_model=128, n_heads=4, n_layers=3, d_ff=256, vocab_size=256, max_len=512,
                                reuse_heads=2, causal=causal, dtype=dtype, attn_dropout=attn_dropout)
        torch.manual_seed(0)
        model = Transformer(cfg).to("cuda:0")
        x, y = make_inputs(cfg, 2, 256, device="cuda:0")
        case = (f"{name} · {mode}{' + dropout' if attn_dropout else ''} · "
                f"{'causal' if causal else 'bidirectional'} · {dtype}")
        try:
            with sdpa_kernel(backend):
                counted = count_flops(model, x, y, mode)  # type: ignore[arg-type]
        except RuntimeError as error:  # torch has no kernel of this backend for this combination
            checks.append(skipped("flops", case, str(error).strip().splitlines()[0][:100]))
            continue
        analytic = analytic_cost(cfg, 2, 256, mode, device_type="cuda",  # type: ignore[arg-type]
                                 sdpa="math" if backend == SDPBackend.MATH else "fused").total
        ran = ", ".join(op.removeprefix("aten.") for op in counted.by_op if "attention" in op) or "bmm only"
        checks.append(flops_check(case, counted.total, analytic, counted.uncounted, ran))
    return checks


def check_activation_bytes() -> list[Check]:
    """What a training step keeps for backward on CUDA, under the kernel torch picks by default:
    bool dropout masks, float32 layer-norm statistics, no T×T tensor for fused heads."""
    from models.config import TransformerConfig
    from models.cost import analytic_cost
    from models.flops import saved_activation_bytes
    from models.transformer import Transformer, make_inputs

    checks = []
    for dtype, attn_dropout in itertools.product(DTYPES, (0.0, 0.1)):
        cfg = TransformerConfig(d_model=128, n_heads=4, n_layers=3, d_ff=256, vocab_size=256, max_len=512,
                                reuse_heads=2, causal=True, dtype=dtype, attn_dropout=attn_dropout, dropout=0.1)
        torch.manual_seed(0)
        model = Transformer(cfg).to("cuda:0")
        x, y = make_inputs(cfg, 2, 256, device="cuda:0")
        kept = saved_activation_bytes(model, x, y)
        analytic = analytic_cost(cfg, 2, 256, "train", device_type="cuda").activation_bytes
        case = f"train{' + attention dropout' if attn_dropout else ''} · causal · {dtype}"
        checks.append(agreement("activation bytes", case, kept / 2**20, analytic / 2**20, MEMORY_REL, "MiB"))
    return checks


class _NoEnergyCounter:
    """pynvml with the energy counter reported unsupported, so the sampler integrates power."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nvml, name)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        raise self._nvml.NVMLError(self._nvml.NVML_ERROR_NOT_SUPPORTED)


def _window(step: Callable[[], object], seconds: float, nvml: Any = None,
            interval_s: float | None = 0.02) -> tuple[dict[str, Any], float]:
    """Timed steps for `seconds` inside one telemetry window: (its summary, median step ms)."""
    from harness.measure.telemetry import open_telemetry

    device, times = CudaDevice("cuda:0"), []
    with open_telemetry("cuda:0", interval_s=interval_s, nvml=nvml) as telemetry, telemetry.window() as window:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            times.append(device.time_step_ms(step))
    return window.summary(len(times)), statistics.median(times)


def check_nvml() -> list[Check]:
    try:
        import pynvml
    except ImportError:
        return [skipped("nvml", "energy and sampler", "pynvml not installed")]
    step = workload("cuda:0", "train", 4096)
    checks = [energy_check("energy counter", _window(step, 2.0)[0], "counter"),
              energy_check("counter hidden", _window(step, 2.0, nvml=_NoEnergyCounter(pynvml))[0],
                           "integrated_power")]
    # The thread competes with the step for the GIL most where the step is launch-bound: forward, n=512.
    small = workload("cuda:0", "forward", 512)
    on, off, busy = [], [], []
    for _ in range(4):  # alternating windows, so drift hits both alike
        summary, ms = _window(small, 0.5)
        on.append(ms)
        busy.append(summary["gpu_sampler_ms_per_step"] or 0.0)
        off.append(_window(small, 0.5, interval_s=None)[1])
    note = (f"{statistics.median(on):.4g} vs {statistics.median(off):.4g} ms/step; "
            f"thread busy {statistics.median(busy):.3g} ms/step")
    checks.append(at_most("nvml sampler", "forward n=512 bfloat16, on vs off",
                          statistics.median(on) / statistics.median(off), SAMPLER_LIMIT, note))
    return checks


def check_main_job(deadline: float) -> list[Check]:
    from harness.run.forkserver import ForkServerExecutor
    from harness.run.runner import points

    rows: list[dict] = []
    tasks = main_tasks()
    with ForkServerExecutor() as executor:
        for point in points(tasks):
            if time.perf_counter() > deadline:
                break
            rows.extend(executor.run(point, point[0].measure.timeout))
    checks = []
    for mode, seq_len in dict.fromkeys((t.mode, t.seq_len) for t in tasks):
        group = [r for r in rows if (r["mode"], r["seq_len"]) == (mode, seq_len)]
        expected = sum((t.mode, t.seq_len) == (mode, seq_len) for t in tasks)
        checks.append(main_job_check(mode, seq_len, group) if len(group) == expected else
                      skipped("main job", f"{mode} n={seq_len}", "over the time budget"))
    return checks


def run_checks(budget_s: float) -> list[Check]:
    started = time.perf_counter()
    checks = [check_timing("cuda:0")]
    checks.append(check_timing("cuda:1") if torch.cuda.device_count() > 1 else
                  skipped("cuda timing", "on cuda:1", "one CUDA device"))
    checks.append(check_allocator())
    checks.extend(check_flops())
    checks.extend(check_activation_bytes())
    checks.extend(check_nvml())
    torch.cuda.empty_cache()  # the main job's workers need the memory this process holds
    checks.extend(check_main_job(started + budget_s))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=300.0,
                        help="stop starting main-job points after this many seconds (default 300)")
    args = parser.parse_args(argv)
    reason = CudaDevice("cuda").availability()
    if reason is not None:
        print(f"No GPU: {reason}. Nothing measured.")
        return 0
    print(f"GPU check on {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} device(s)), "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    checks = run_checks(args.budget_s)
    print(render(checks))
    return exit_code(checks)


if __name__ == "__main__":
    sys.exit(main())
