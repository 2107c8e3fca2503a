"""How good is the harness as a stopwatch? Prints three figures (issue #3):

1. agreement: the harness's median vs torch.utils.benchmark's blocked_autorange median for the
   same workload in one process, alternating the two methods (target: within 3%);
2. spread: the coefficient of variation of the median over 5 runs of one point, each in its own
   fresh worker process (target: CV <= 2%);
3. overhead: the share of a suite's wall time not spent in timed steps (target: <= 15%).

    python benchmarks/bench_harness.py [--suite suites/seq_len.yaml] [--only agreement,spread,overhead]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.utils.benchmark as tbench

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.devices import CpuDevice  # noqa: E402
from harness.executor import LocalProcessExecutor  # noqa: E402
from harness.measure_speed import make_step  # noqa: E402
from harness.schema import MeasureConfig, PointTask  # noqa: E402
from harness.stats import should_stop, summarize  # noqa: E402
from models.registry import build_model, model_config  # noqa: E402
from models.transformer import make_inputs  # noqa: E402

MODEL = dict(d_model=256, n_heads=8, n_layers=6, d_ff=1024, vocab_size=1024, backend="sdpa")
MEASURE = MeasureConfig(warmup=2, min_reps=5, max_reps=200, target_ci=0.01, max_seconds=3.0, timeout=300, threads=2)


def _task(seq_len: int, mode: str, threads: int) -> PointTask:
    return PointTask(point_id=f"bench-{mode}-n{seq_len}", variant="baseline", model="baseline", model_config=MODEL,
                     axes={}, device="cpu", mode=mode, seq_len=seq_len, batch_size=4, seed=0,
                     metrics=("time",), measure=dataclasses.replace(MEASURE, threads=threads))


def agreement(seq_len: int, mode: str, rounds: int) -> tuple[float, float]:
    torch.set_num_threads(MEASURE.threads or 2)
    torch.manual_seed(0)
    cfg = model_config("baseline", MODEL)
    model = build_model("baseline", MODEL)
    x, y = make_inputs(cfg, 4, seq_len, seed=0)
    step, _ = make_step(model, cfg, x, y, mode)
    for _ in range(3):
        step()
    device, ours, theirs = CpuDevice(), [], []
    for _ in range(rounds):  # alternate, so slow drift of the machine hits both methods alike
        samples: list[float] = []
        started = time.perf_counter()
        while not samples or not should_stop(samples, MEASURE.min_reps, MEASURE.max_reps, MEASURE.target_ci,
                                             time.perf_counter() - started, MEASURE.max_seconds):
            samples.append(device.time_step_ms(step))
        ours.append(summarize(samples).median)
        timer = tbench.Timer(stmt="step()", globals={"step": step}, num_threads=MEASURE.threads or 2)
        theirs.append(timer.blocked_autorange(min_run_time=MEASURE.max_seconds).median * 1e3)
    return statistics.median(ours), statistics.median(theirs)


def spread(seq_len: int, mode: str, repeats: int, threads: int) -> list[float]:
    executor, medians = LocalProcessExecutor(), []
    for _ in range(repeats):
        (row,) = executor.run([_task(seq_len, mode, threads)], timeout=300)
        if row["status"] != "ok":
            raise RuntimeError(row["error"])
        medians.append(row["time_ms_median"])
    return medians


def overhead(suite: Path) -> dict[str, float]:
    from harness.runner import run_suite
    from harness.store import RunDir

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, default=ROOT / "suites" / "seq_len.yaml")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"comma-separated subset of {', '.join(FIGURES)}")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", default="2,1", help="thread counts for the spread figure")
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"torch {torch.__version__}, load average {Path('/proc/loadavg').read_text().split()[:3]}")

    if "agreement" in only:
        print(f"\n1. harness median vs torch.utils.benchmark blocked_autorange (same process, alternating, "
              f"{MEASURE.threads} threads)")
        print(f"   {'workload':<28} {'harness ms':>11} {'torch ms':>9} {'diff':>7}")
        for seq_len, mode in [(128, "forward"), (512, "forward"), (256, "train")]:
            ours, theirs = agreement(seq_len, mode, args.rounds)
            print(f"   {'baseline sdpa ' + mode + ' n=' + str(seq_len):<28} {ours:>11.2f} {theirs:>9.2f} "
                  f"{(ours / theirs - 1) * 100:>+6.1f}%")

    if "spread" in only:
        print("\n2. median over 5 runs of one point, each in a fresh worker process")
        for threads in (int(t) for t in args.threads.split(",")):
            for seq_len, mode in [(512, "forward"), (256, "train")]:
                medians = spread(seq_len, mode, 5, threads)
                cv = statistics.stdev(medians) / statistics.mean(medians)
                print(f"   {threads} thread(s), baseline sdpa {mode} n={seq_len}: medians "
                      f"{', '.join(f'{m:.2f}' for m in medians)} ms; CV {cv * 100:.2f}%")

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
