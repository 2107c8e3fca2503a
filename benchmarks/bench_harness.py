"""How good is the harness as a stopwatch? Prints three figures (issue #3):

1. agreement: the harness's median vs torch.utils.benchmark's blocked_autorange median for the
   same workload in one process, alternating the two methods (target: within 3%);
2. spread: the coefficient of variation of the median over 5 runs of one point, each in its own
   fresh worker process and measured as the suite measures it (target: CV <= 2%), beside the
   machine's own floor: the same figure for torch.utils.benchmark timing the same workload, in a
   fresh process after each worker;
3. overhead: the share of a suite's wall time not spent in timed steps (target: <= 15%).

    python benchmarks/bench_harness.py [--suite suites/seq_len.yaml] [--only agreement,spread,overhead]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.measure.devices import CpuDevice  # noqa: E402
from harness.run.forkserver import ForkServerExecutor  # noqa: E402
from harness.measure.speed import make_step, timed_steps  # noqa: E402
from harness.suite.task import MeasureConfig, PointTask  # noqa: E402
from harness.suite.loading import Suite, load_suite  # noqa: E402
from harness.run.workerenv import worker_env  # noqa: E402
from models.registry import build_model, model_config  # noqa: E402
from models.transformer import make_inputs  # noqa: E402

MODEL = dict(d_model=256, n_heads=8, n_layers=6, d_ff=1024, vocab_size=1024, backend="sdpa")
MEASURE = MeasureConfig(warmup=2, min_reps=5, max_reps=200, target_ci=0.01, max_seconds=3.0, timeout=300, threads=2)


def _task(seq_len: int, mode: str, measure: MeasureConfig, metrics: tuple[str, ...] = ("time",)) -> PointTask:
    return PointTask(point_id=f"bench-{mode}-n{seq_len}", variant="baseline", model="baseline", model_config=MODEL,
                     axes={}, device="cpu", mode=mode, seq_len=seq_len, batch_size=4, seed=0,
                     metrics=metrics, measure=measure)


@dataclasses.dataclass(frozen=True)
class Agreement:
    ours_ms: float        # median over rounds of the harness's median
    theirs_ms: float      # median over rounds of blocked_autorange's median
    ratio: float          # median over rounds of ours / theirs, each round's two windows back to back
    ratio_low: float      # smallest and largest per-round ratio
    ratio_high: float


def agreement(seq_len: int, mode: str, rounds: int, window_s: float) -> Agreement:
    """Both stopwatches on one warmed step, in rounds of two equal windows back to back.

    The harness side is its real timing loop (`timed_steps`, stop rule and all) with the CI stop
    turned off, so both sides time for the same `window_s`: a method that stopped after 0.3 s would
    otherwise be compared with one that saw 3 s of a drifting machine. The order alternates between
    rounds and the figure is the median of the per-round ratios, so drift slower than a round
    cancels; the ratio's spread over rounds says how far to trust it.
    """
    torch.manual_seed(0)
    task = _task(seq_len, mode, dataclasses.replace(MEASURE, min_reps=1, max_reps=10**9, target_ci=0.0,
                                                    max_seconds=window_s))
    torch.set_num_threads(task.measure.threads or 2)
    cfg = model_config("baseline", MODEL)
    model = build_model("baseline", MODEL)
    x, y = make_inputs(cfg, 4, seq_len, seed=0)
    step, _ = make_step(model, cfg, x, y, mode)
    for _ in range(3):
        step()
    device = CpuDevice()
    timer = tbench.Timer(stmt="step()", globals={"step": step}, num_threads=task.measure.threads or 2)

    def harness_median() -> float:
        return timed_steps(task, device, step)["time_ms_median"]

    def torch_median() -> float:
        return timer.blocked_autorange(min_run_time=window_s).median * 1e3

    ours, theirs = [], []
    for r in range(rounds):
        if r % 2 == 0:
            ours.append(harness_median())
            theirs.append(torch_median())
        else:
            theirs.append(torch_median())
            ours.append(harness_median())
    ratios = [a / b for a, b in zip(ours, theirs)]
    return Agreement(statistics.median(ours), statistics.median(theirs), statistics.median(ratios),
                     min(ratios), max(ratios))


# The machine's own noise floor: the same workload timed by torch.utils.benchmark instead of the
# harness, in a fresh process started right after each harness worker, for as long as the suite's
# budget. If torch's stopwatch sees the same spread between processes, the spread is the machine's.
_REFERENCE = """
import sys, torch, torch.utils.benchmark as tbench
sys.path.insert(0, {root!r})
from harness.measure.speed import make_step
from models.registry import build_model, model_config
from models.transformer import make_inputs
torch.set_num_threads({threads})
torch.manual_seed(0)
cfg, model = model_config("baseline", {model!r}), build_model("baseline", {model!r})
x, y = make_inputs(cfg, 4, {seq_len}, seed=0)
step, _ = make_step(model, cfg, x, y, {mode!r})
step()
timer = tbench.Timer(stmt="step()", globals={{"step": step}}, num_threads={threads})
print(timer.blocked_autorange(min_run_time={seconds}).median * 1e3)
"""


def _reference_median(seq_len: int, mode: str, threads: int, seconds: float) -> float:
    code = _REFERENCE.format(root=str(ROOT), model=MODEL, seq_len=seq_len, mode=mode, threads=threads,
                             seconds=seconds)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def spread(seq_len: int, mode: str, repeats: int, suite: Suite, threads: int) -> tuple[list[float], list[float]]:
    """Medians of `repeats` fresh workers, each followed by a reference process (the noise floor).

    Each worker measures the point as the suite would (its metrics, warm-up, stop rule and budget),
    at the given thread count; the reference times for as long as the suite's budget.
    """
    measure = dataclasses.replace(suite.measure, threads=threads)
    task = _task(seq_len, mode, measure, tuple(suite.metrics))
    medians, floor = [], []
    with ForkServerExecutor() as executor:
        for _ in range(repeats):
            (row,) = executor.run([task], timeout=300)
            if row["status"] != "ok":
                raise RuntimeError(row["error"])
            medians.append(row["time_ms_median"])
            floor.append(_reference_median(seq_len, mode, threads, measure.max_seconds))
    return medians, floor


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.mean(values)


def overhead(suite: Path) -> dict[str, float]:
    from harness.api import run_suite
    from harness.results.store import RunDir

    started = time.perf_counter()
    run = RunDir(run_suite(suite, output_dir=ROOT / "reports" / "bench", report=False))
    wall = time.perf_counter() - started
    rows = [r for r in run.rows() if r.get("status") == "ok"]
    timed = sum(r.get("timed_s") or 0.0 for r in rows)
    warmup = sum(r.get("warmup_s") or 0.0 for r in rows)
    # Is one (instrumented) warm-up step enough? The first timed step should look like the rest.
    first_vs_median = [r["time_ms_samples"][0] / r["time_ms_median"] for r in rows if r.get("time_ms_samples")]
    return {"wall_s": wall, "timed_s": timed, "warmup_s": warmup, "share_not_timed": 1 - timed / wall,
            "share_not_measured": 1 - (timed + warmup) / wall, "rows": len(rows),
            "first_vs_median": statistics.median(first_vs_median),
            "first_slow": sum(f > 1.10 for f in first_vs_median), "run_dir": str(run.path)}


FIGURES = ("agreement", "spread", "overhead")


def _in_worker_env() -> None:
    """Re-run this script in the environment the harness's workers start with (harness/run/workerenv.py).

    The agreement figure times both stopwatches in this process; measured in a plain shell
    environment, the very same step is ~25% slower (glibc maps and zero-fills big tensors afresh)
    than it ever is in a harness worker, and that is not the workload the harness times.
    """
    extra = worker_env()
    if extra:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **extra})


def main() -> int:
    _in_worker_env()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "suites" / "seq_len.yaml")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {', '.join(FIGURES)}")
    parser.add_argument("--rounds", type=int, default=10, help="agreement: rounds of two windows")
    parser.add_argument("--window", type=float, default=1.5, help="agreement: seconds per method per round")
    parser.add_argument("--threads", default="2,1", help="thread counts for the spread figure")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"torch {torch.__version__}, load average {Path('/proc/loadavg').read_text().split()[:3]}, "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES')}")

    if "agreement" in only:
        print(f"\n1. harness median vs torch.utils.benchmark blocked_autorange (same process, {MEASURE.threads} "
              f"threads, {args.rounds} rounds of two {args.window:g} s windows, order alternating)")
        print(f"   {'workload':<28} {'harness ms':>11} {'torch ms':>9} {'diff':>7}  per-round range")
        for seq_len, mode in [(128, "forward"), (512, "forward"), (256, "train")]:
            a = agreement(seq_len, mode, args.rounds, args.window)
            print(f"   {'baseline sdpa ' + mode + ' n=' + str(seq_len):<28} {a.ours_ms:>11.2f} {a.theirs_ms:>9.2f} "
                  f"{(a.ratio - 1) * 100:>+6.1f}%  {(a.ratio_low - 1) * 100:+.1f}..{(a.ratio_high - 1) * 100:+.1f}%")

    if "spread" in only:
        suite = load_suite(args.suite)
        m = suite.measure
        print(f"\n2. median over 5 runs of one point, each in a fresh worker process, measured as {args.suite.name} "
              f"measures (warmup {m.warmup}, reps {m.min_reps}-{m.max_reps}, CI target ±{m.target_ci:.0%}, "
              f"budget {m.max_seconds:g} s)")
        for threads in (int(t) for t in args.threads.split(",")):
            for seq_len, mode in [(512, "forward"), (256, "train")]:
                medians, floor = spread(seq_len, mode, 5, suite, threads)
                print(f"   {threads} thread(s), baseline sdpa {mode} n={seq_len}: medians "
                      f"{', '.join(f'{m:.2f}' for m in medians)} ms; CV {_cv(medians) * 100:.2f}%")
                print(f"      floor: torch.utils.benchmark on the same workload, a fresh process after each: "
                      f"{', '.join(f'{m:.2f}' for m in floor)} ms; CV {_cv(floor) * 100:.2f}%")

    if "overhead" in only:
        print(f"\n3. share of suite wall time not in timed steps: {args.suite}")
        o = overhead(args.suite)
        print(f"   wall {o['wall_s']:.1f} s, timed steps {o['timed_s']:.1f} s, warm-up/instrumented steps "
              f"{o['warmup_s']:.1f} s -> not timed {o['share_not_timed'] * 100:.1f}%, not in any measured step "
              f"{o['share_not_measured'] * 100:.1f}%  ({o['run_dir']})")
        print(f"   first timed step / median over {o['rows']} rows: median {o['first_vs_median']:.3f}; "
              f"{o['first_slow']} rows with the first step > 10% slower")
    return 0


if __name__ == "__main__":
    sys.exit(main())
