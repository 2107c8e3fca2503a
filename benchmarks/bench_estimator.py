"""How good are the judge's intervals? Coverage, false alarms and power on synthetic timings.

    python benchmarks/bench_estimator.py               # 2000 trials a cell: about two CPU-minutes
    python benchmarks/bench_estimator.py --trials 500  # a quick look

Pure simulation (tests/synthetic_timings.py: iid, autocorrelated and bursty noise, a worker offset
per round that pairing cannot cancel): nothing is timed, so it runs anywhere. Tables:

1. Lockstep pairs: coverage of the 95% CI of a 1.15x speedup, the A/A rejection rate at
   alpha = 0.05, and the true spread of the log estimate against the standard error each method
   reports, for the estimator of harness.compare.paired (new), the two-stage bootstrap it replaced
   (old, kept below as the reference it is measured against) and pairs taken as independent units
   (naive: what ignoring rounds would give).
2. Power for a true 5% slowdown at the gate's settings (`harness gate --against`: 8 rounds of
   about 4 steps; and bench_gate.py's 6 rounds of 20): Holm over 12 gated checks, the 3% lockstep
   threshold, once and with `confirm: 2` (it must reproduce on two re-measurements of its point).
3. The unpaired fallbacks on sequential timings (each row with its own moment): round medians
   over rounds, and one round of samples (the bootstrap, which covers one worker's noise only).
4. The percentile bootstrap of a ratio of two medians against the number of samples per side:
   why harness.stats.MIN_SAMPLES_FOR_BOOTSTRAP is what it is.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.typing import NDArray

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from harness import stats  # noqa: E402
from harness.compare.paired import paired_contrast, paired_logs, round_medians, samples_ratio  # noqa: E402
from tests.synthetic_timings import NOISE_MODELS, Design, timings  # noqa: E402

Estimator = Callable[[list[NDArray[np.float64]], list[NDArray[np.float64]]], tuple[float, float, float, float, float]]


# ---- the estimators compared -----------------------------------------------------------------------
def new(slow: list[NDArray[np.float64]], fast: list[NDArray[np.float64]]) -> tuple[float, float, float, float, float]:
    """(log estimate, low, high, p, se) of slow ÷ fast by harness.compare.paired."""
    c = paired_contrast([paired_logs(fast, slow)], [1])
    return math.log(c.estimate), c.low, c.high, c.p, c.log_se


def old(slow: list[NDArray[np.float64]], fast: list[NDArray[np.float64]],
        n_boot: int = 2000) -> tuple[float, float, float, float, float]:
    """The estimator before this change, as it was: the median of all pair log ratios, a two-stage
    bootstrap (rounds, then pairs within them), its SE widened by √(R/(R−1)), Student's t with R−1 df."""
    pairs = paired_logs(fast, slow)
    rounds = len(pairs)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, rounds, (n_boot, rounds))
    sizes = np.array([p.size for p in pairs])
    padded = np.full((rounds, sizes.max()), np.nan)
    for i, p in enumerate(pairs):
        padded[i, :p.size] = p
    n = sizes[idx]
    pick = np.floor(rng.random((*idx.shape, padded.shape[1])) * n[..., None]).astype(np.int64)
    values = padded[idx[..., None], pick]
    values[np.arange(padded.shape[1]) >= n[..., None]] = np.nan
    boot = np.nanmedian(values.reshape(n_boot, -1), axis=1)
    estimate = float(np.median(np.concatenate(pairs)))
    low, high = np.exp(np.percentile(boot, [2.5, 97.5]))
    se = float(np.std(boot, ddof=1)) * math.sqrt(rounds / (rounds - 1))
    return estimate, float(low), float(high), stats.t_two_sided(abs(estimate) / se, rounds - 1), se


def naive(slow: list[NDArray[np.float64]], fast: list[NDArray[np.float64]]) -> tuple[float, float, float, float, float]:
    """Every pair an independent unit: a t interval over all pairs, rounds ignored."""
    d = np.concatenate(paired_logs(fast, slow))
    se = float(np.std(d, ddof=1)) / math.sqrt(d.size)
    half = stats.t_critical(0.95, d.size - 1) * se
    mean = float(d.mean())
    return mean, math.exp(mean - half), math.exp(mean + half), stats.t_two_sided(abs(mean) / se, d.size - 1), se


METHODS: dict[str, Estimator] = {"new": new, "old": old, "naive": naive}


def _run(method: Estimator, slow: NDArray[np.float64], fast: NDArray[np.float64]) -> NDArray[np.float64]:
    """One row (log estimate, low, high, p, se) per trial."""
    return np.array([method(list(s), list(f)) for s, f in zip(slow, fast)])


# ---- tables --------------------------------------------------------------------------------------
def calibration(trials: int, design: Design, rng: np.random.Generator) -> None:
    print(f"\n1. Lockstep pairs, {design.rounds} rounds of {design.per_round}, {trials} trials per cell")
    print(f"{'noise':8} {'method':6} {'coverage':>9} {'A/A rate':>9} {'true sd':>8} {'mean se':>8}")
    for model in NOISE_MODELS:
        slow, fast = timings(rng, model, 1.15, trials, design)
        same_slow, same_fast = timings(rng, model, 1.0, trials, design)
        for name, method in METHODS.items():
            shifted, null = _run(method, slow, fast), _run(method, same_slow, same_fast)
            coverage = np.mean((shifted[:, 1] <= 1.15) & (1.15 <= shifted[:, 2]))
            print(f"{model:8} {name:6} {coverage:9.3f} {np.mean(null[:, 3] < 0.05):9.3f} "
                  f"{np.std(shifted[:, 0]):8.4f} {np.mean(shifted[:, 4]):8.4f}")


def power(trials: int, design: Design, rng: np.random.Generator, checks: int = 12, rechecks: int = 3,
          threshold: float = 0.03, confirm: int = 2) -> None:
    """P(regressed): significant after Holm AND past the threshold; then again on each re-measurement,
    which holds only the suspect point (its two times and its speedup: `rechecks` hypotheses)."""
    print(f"\n2. A true 5% slowdown, {design.rounds} rounds of {design.per_round}: regressed at Holm "
          f"alpha 0.05/{checks} and past {threshold:.0%}; then reproduced on {confirm} re-measurements "
          f"(alpha 0.05/{rechecks})")
    print(f"{'noise':8} {'method':6} {'once':>7} {'confirmed':>10}")
    for model in NOISE_MODELS:
        slow, fast = timings(rng, model, 1.05, trials, design)
        for name in ("new", "old"):
            r = _run(METHODS[name], slow, fast)
            past = np.exp(r[:, 0]) > 1 + threshold
            once, again = (float(np.mean((r[:, 3] < 0.05 / m) & past)) for m in (checks, rechecks))
            print(f"{model:8} {name:6} {once:7.3f} {once * again ** confirm:10.3f}")


def fallbacks(trials: int, design: Design, rng: np.random.Generator) -> None:
    print(f"\n3. Unpaired (sequential) timings, {design.rounds} rounds of {design.per_round}: coverage of 1.15x")
    print(f"{'noise':8} {'round medians':>14} {'one round: samples':>19}")
    for model in NOISE_MODELS:
        slow, fast = timings(rng, model, 1.15, trials, design, lockstep=False)
        by_round = [round_medians([list(s), list(f)], [1, -1]) for s, f in zip(slow, fast)]
        # one round per row: only the first round's samples, as a single-worker run has
        pooled = [samples_ratio(s[0], f[0]) for s, f in zip(slow, fast)]
        cover = [np.mean([c.low <= 1.15 <= c.high for c in cs]) for cs in (by_round, pooled)]
        print(f"{model:8} {cover[0]:14.3f} {cover[1]:19.3f}")


def bootstrap_sizes(trials: int, rng: np.random.Generator) -> None:
    print(f"\n4. Percentile bootstrap of a ratio of medians (one worker each, no process offset), {trials} trials")
    print(f"{'samples':>7} {'iid':>6} {'bursty':>7}")
    plain = Design(rounds=1, process_sd=0.0, drift_sd=0.0)
    for n in range(2, 9):
        design = Design(rounds=1, per_round=n, process_sd=0.0, drift_sd=0.0, step_sd=plain.step_sd)
        row = []
        for model in ("iid", "bursty"):
            slow, fast = timings(rng, model, 1.15, trials, design)
            row.append(np.mean([(c := stats.ratio_of_medians_ci(s[0], f[0], n_boot=500, seed=k))[1] <= 1.15 <= c[2]
                                for k, (s, f) in enumerate(zip(slow, fast))]))
        print(f"{n:7} {row[0]:6.3f} {row[1]:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    calibration(args.trials, Design(), rng)
    for design in (Design(), Design(rounds=6, per_round=20)):
        power(args.trials, design, rng)
    fallbacks(args.trials, Design(), rng)
    bootstrap_sizes(min(args.trials, 1500), rng)


if __name__ == "__main__":
    main()
