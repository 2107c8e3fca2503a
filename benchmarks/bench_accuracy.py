"""Accuracy of reuse vs the baseline at each task's real budget (issue #5), run directly (no harness).

    python benchmarks/bench_accuracy.py                       # 3 tasks x ratios {0, .25, .5, 1} x 3 seeds
    python benchmarks/bench_accuracy.py --tasks digits --seeds 0 --json out.json

Reuse at ratio 0 *is* the baseline (same parameters, created from the same seed), so it is the
reference row. For each task the table gives held-out accuracy mean ± sample std over seeds, and
says whether reuse at 0.5 is within seed noise of the baseline: the difference of means is within
two standard errors of that difference (sqrt(s0²/n + s½²/n)), a deliberately lenient test for 3 seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.measure.training import train_and_evaluate  # noqa: E402
from harness.suite.task import accuracy_config  # noqa: E402
from harness.tasks import TASKS  # noqa: E402

RATIOS = (0.0, 0.25, 0.5, 1.0)


def within_noise(base: dict, other: dict) -> tuple[bool, float, float]:
    """(within, difference of means, two standard errors of the difference)."""
    n0, n1 = len(base["accuracy_seeds"]), len(other["accuracy_seeds"])
    s0, s1 = base["accuracy_std"] or 0.0, other["accuracy_std"] or 0.0
    diff = other["accuracy_mean"] - base["accuracy_mean"]
    two_se = 2 * math.sqrt(s0 ** 2 / n0 + s1 ** 2 / n1)
    return abs(diff) <= two_se, diff, two_se


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--ratios", nargs="+", type=float, default=list(RATIOS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    # One thread, as suites/accuracy.yaml: these models gain little from intra-op threads, and on a
    # busy 2-core machine two threads waiting on each other ran 5-10x slower.
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    parser.add_argument("--json", type=Path, help="also write every result dict here")
    args = parser.parse_args()

    start, cpu_s = time.perf_counter(), 0.0
    results: dict[str, dict[float, dict]] = {}
    for task in args.tasks:
        acc = accuracy_config(task, seeds=tuple(args.seeds))
        results[task] = {}
        for ratio in args.ratios:
            t0, c0 = time.perf_counter(), time.process_time()
            r = train_and_evaluate("reuse", {"reuse_ratio": ratio}, acc, threads=args.threads)
            cpu_s += time.process_time() - c0
            results[task][ratio] = r
            shown = (f"{r['accuracy_mean']:.4f} ± {r['accuracy_std'] or 0:.4f}" if r["status"] == "ok"
                     else r["error"])
            print(f"  {task:<19} ratio {ratio:<4} {shown}  seeds {[round(a, 4) for a in r['accuracy_seeds']]}  "
                  f"({time.perf_counter() - t0:.0f} s, train {r['train_time_s'] or 0:.1f} s/seed)", flush=True)
    wall = time.perf_counter() - start

    print(f"\nHeld-out accuracy, mean ± std over seeds {args.seeds} "
          f"(threads {args.threads}, 1-min load average at the end {os.getloadavg()[0]:.1f}):\n")
    print(f"| task | steps | {' | '.join(f'reuse {x:g}' for x in args.ratios)} | 0.5 vs baseline |")
    print(f"|---|---|{'---|' * len(args.ratios)}---|")
    for task, by_ratio in results.items():
        cells = [f"{r['accuracy_mean']:.3f} ± {r['accuracy_std'] or 0:.3f}" if r["status"] == "ok" else "failed"
                 for r in by_ratio.values()]
        verdict = "n/a"
        if 0.0 in by_ratio and 0.5 in by_ratio and all(by_ratio[x]["status"] == "ok" for x in (0.0, 0.5)):
            ok, diff, two_se = within_noise(by_ratio[0.0], by_ratio[0.5])
            verdict = f"{'within' if ok else 'OUTSIDE'} noise (Δ {diff:+.3f}, 2·SE {two_se:.3f})"
        steps = next(iter(by_ratio.values()))["train_steps"]
        print(f"| {task} | {steps} | {' | '.join(cells)} | {verdict} |")
    # With one thread, CPU time approximates the wall time the same work takes on an idle machine;
    # wall time on a shared machine also counts time spent waiting for a core.
    print(f"\nwall time: {wall:.0f} s for {sum(len(v) for v in results.values()) * len(args.seeds)} trainings "
          f"(CPU time of the trainings: {cpu_s:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"wall_s": wall, "cpu_s": cpu_s, "results": {t: {str(k): v for k, v in r.items()}
                                                                     for t, r in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
