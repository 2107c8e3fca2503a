"""The paired estimator (harness.compare.paired) on synthetic noise with a known answer.

Fixed seeds, 2000 trials a cell: the standard error of a rate near 0.95 is then 0.005, so the
bands below ([0.92, 0.98] for coverage, [0.6α, 1.4α] for false alarms) are four to six of them
wide: decisive, and the whole file runs in seconds. benchmarks/bench_estimator.py prints the same
simulations as tables, with the estimator this one replaced beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from harness import stats
from harness.compare.paired import Contrast, between_runs, from_rounds, paired_contrast, paired_logs, round_medians
from synthetic_timings import NOISE_MODELS, Design, Noise, timings

TRIALS, ALPHA = 2000, 0.05


def _speedups(model: Noise, ratio: float, seed: int, trials: int = TRIALS, design: Design = Design()) -> list[Contrast]:
    """The estimator's slow ÷ fast on `trials` lockstep trials whose true ratio is `ratio`."""
    slow, fast = timings(np.random.default_rng(seed), model, ratio, trials, design)
    return [paired_contrast([paired_logs(list(f), list(s))], [1]) for s, f in zip(slow, fast)]


def _coverage(contrasts: list[Contrast], truth: float) -> float:
    return float(np.mean([c.low <= truth <= c.high for c in contrasts]))


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_the_95_ci_covers_the_true_speedup_95_percent_of_the_time(model: Noise) -> None:
    contrasts = _speedups(model, 1.15, seed=NOISE_MODELS.index(model))
    assert 0.92 <= _coverage(contrasts, 1.15) <= 0.98
    assert all(c.method == "lockstep pairs, 8 rounds" and c.df == 7 and c.paired for c in contrasts)


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_a_a_false_alarms_at_alpha_are_nominal(model: Noise) -> None:
    """The same code on both sides: p < alpha as often as alpha says, not a fifth as often."""
    rate = float(np.mean([c.p < ALPHA for c in _speedups(model, 1.0, seed=10 + NOISE_MODELS.index(model))]))
    assert 0.6 * ALPHA <= rate <= 1.4 * ALPHA


def test_its_standard_error_is_the_spread_of_its_estimate() -> None:
    """No double counting: the reported SE matches the estimate's true spread over trials."""
    contrasts = _speedups("iid", 1.15, seed=20)
    spread = float(np.std([math.log(c.estimate) for c in contrasts]))
    assert np.mean([c.log_se for c in contrasts]) == pytest.approx(spread, rel=0.1)


def test_pairs_of_one_round_give_no_interval_however_many() -> None:
    """Each worker's own offset is shared by all pairs of its round: they are one unit, not 32."""
    slow, fast = timings(np.random.default_rng(21), "ar1", 1.15, 50)
    as_one_round = [paired_contrast([[np.concatenate(paired_logs(list(f), list(s)))]], [1]) for s, f in zip(slow, fast)]
    assert all(c.method == "needs rounds (1 round)" and not c.has_interval for c in as_one_round)


def test_one_round_has_no_interval_and_two_have_a_wide_one() -> None:
    one = from_rounds([0.1], 0.95, "lockstep pairs", paired=True)
    assert one.estimate == pytest.approx(math.exp(0.1)) and math.isnan(one.low) and math.isnan(one.p)
    assert one.method == "needs rounds (1 round)" and one.paired
    two = from_rounds([0.1, 0.12], 0.95, "lockstep pairs")
    assert two.df == 1 and two.high / two.low > math.exp(2 * 12.7 * 0.01 * 0.99)  # t(1) = 12.706


def test_round_statistics_are_medians_of_pairs_and_the_interval_a_one_sample_t() -> None:
    base = [np.array([10.0, 10.0, 10.0]), np.array([20.0, 20.0]), np.array([10.0, 10.0, 10.0, 10.0])]
    cand = [np.array([11.0, 30.0, 11.0]), np.array([21.0, 21.0, 99.0]), np.array([12.0, 12.0, 12.0, 12.0])]
    c = paired_contrast([paired_logs(base, cand)], [1])
    m = np.log([1.1, 1.05, 1.2])  # a round's median ignores its stalled step; pairs stop at the shorter side
    assert c.estimate == pytest.approx(math.exp(m.mean()))
    ref = scipy.stats.ttest_1samp(m, 0.0)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-6)
    low, high = ref.confidence_interval(0.95)
    assert (c.low, c.high) == pytest.approx((math.exp(low), math.exp(high)))


def test_two_runs_combine_as_welch() -> None:
    rng = np.random.default_rng(30)
    a, b = rng.normal(0.10, 0.02, 8), rng.normal(0.05, 0.04, 5)
    c = between_runs(from_rounds(a, 0.95, "round medians"), from_rounds(b, 0.95, "round medians"))
    ref = scipy.stats.ttest_ind(b, a, equal_var=False)
    assert math.log(c.estimate) == pytest.approx(b.mean() - a.mean())
    assert c.p == pytest.approx(ref.pvalue, rel=1e-6) and c.df == pytest.approx(ref.df, rel=1e-9)
    assert c.method == "two runs: round medians, 8 rounds / round medians, 5 rounds"


def test_the_change_of_a_paired_speedup_between_two_runs_covers() -> None:
    """The stored gate: each run's paired speedup, then candidate ÷ baseline (true change: none)."""
    runs = [_speedups("bursty", 1.15, seed=seed, trials=1000) for seed in (40, 41)]
    changes = [between_runs(base, cand) for base, cand in zip(*runs)]
    assert 0.92 <= _coverage(changes, 1.0) <= 0.98
    assert all(c.paired for c in changes)


@pytest.mark.parametrize("model", NOISE_MODELS)
def test_round_medians_cover_unpaired_rounds(model: Noise) -> None:
    slow, fast = timings(np.random.default_rng(50 + NOISE_MODELS.index(model)), model, 1.15, TRIALS, lockstep=False)
    contrasts = [round_medians([list(s), list(f)], [1, -1]) for s, f in zip(slow, fast)]
    assert 0.92 <= _coverage(contrasts, 1.15) <= 0.98
    assert not any(c.paired for c in contrasts)


def test_t_critical_matches_tables() -> None:
    for confidence, df, t in ((0.95, 1, 12.706), (0.95, 7, 2.365), (0.99, 3, 5.841), (0.95, 1e9, 1.960)):
        assert stats.t_critical(confidence, df) == pytest.approx(t, rel=1e-3)


@pytest.mark.parametrize("log_speedup", [0.0, 0.06, 0.2])
def test_bench_noises_flip_chance_is_the_disagreement_of_two_independent_runs(log_speedup: float) -> None:
    # benchmarks/bench_noise.py prints, per point, how often two runs would disagree on the verdict
    # if the intervals are as the estimator says: it must be the rate two simulated runs disagree.
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_noise import flip_chance

    from harness.compare import fmt

    rng, rounds, sd = np.random.default_rng(7), 3, 0.03
    runs = [[from_rounds(log_speedup + sd * rng.standard_normal(rounds), 0.95, "sim", paired=True)
             for _ in range(2)] for _ in range(TRIALS)]
    seen = np.mean([len({fmt.outcome(c.estimate, c.low, c.high) for c in pair}) > 1 for pair in runs])
    ratio = math.exp(log_speedup)  # the truth as a contrast: its standard error and df are what matter
    truth = Contrast(ratio, ratio, ratio, math.nan, sd / math.sqrt(rounds), rounds - 1, "sim")
    assert abs(flip_chance((truth, truth)) - seen) < 0.04
