"""harness.stats against known distributions, scipy, and hand-worked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from harness import stats


# ---- median CI --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, expected",
    [
        (1, (0, 0)),
        (5, (0, 4)),     # no interval reaches 95% below n = 6: [min, max]
        (6, (0, 5)),     # [min, max] covers 1 - 2/64 = 0.969
        (10, (1, 8)),    # textbook: 2nd and 9th smallest
        (30, (9, 20)),   # textbook: 10th and 21st smallest
        (100, (39, 60)),
    ],
)
def test_median_ci_ranks_match_binomial_tables(n: int, expected: tuple[int, int]) -> None:
    assert stats.median_ci_ranks(n) == expected


def test_median_ci_ranks_have_at_least_nominal_exact_coverage() -> None:
    for n in range(6, 200):
        lo, hi = stats.median_ci_ranks(n)
        coverage = 1.0 - 2.0 * scipy.stats.binom.cdf(lo, n, 0.5)
        assert coverage >= 0.95
        # ...and the next narrower interval would fall short, so lo is the tightest choice.
        assert 1.0 - 2.0 * scipy.stats.binom.cdf(lo + 1, n, 0.5) < 0.95
        assert hi == n - 1 - lo


def test_median_ci_level_is_the_coverage_actually_achieved() -> None:
    # [min, max] below n = 6: 1 - 2^(1-n), which is 0.75 at n = 3, not 95%
    assert [stats.median_ci_level(n) for n in (1, 2, 3, 5)] == pytest.approx([0.0, 0.5, 0.75, 0.9375])
    for n in (6, 10, 30, 100, 5000):
        lo, _ = stats.median_ci_ranks(n)
        assert stats.median_ci_level(n) == pytest.approx(1.0 - 2.0 * scipy.stats.binom.cdf(lo, n, 0.5))
        assert stats.median_ci_level(n) >= 0.95
    assert stats.summarize([3.0, 1.0, 2.0]).ci_level == 0.75
    assert stats.summarize(np.arange(30.0)).ci_level == pytest.approx(0.9572, abs=1e-4)


def test_median_ci_covers_true_median_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2024)
    draws, n, sigma = 2000, 30, 0.6
    samples = np.sort(rng.lognormal(mean=0.0, sigma=sigma, size=(draws, n)), axis=1)
    lo, hi = stats.median_ci_ranks(n)
    true_median = 1.0  # exp(mean) for a lognormal
    covered = (samples[:, lo] <= true_median) & (true_median <= samples[:, hi])
    assert 0.92 <= covered.mean() <= 0.99
    # The vectorized check above uses the same ranks as the public function; tie them together.
    first_lo, first_hi = stats.median_ci(samples[0])
    assert (first_lo, first_hi) == (samples[0, lo], samples[0, hi])


def test_summarize_on_a_hand_worked_sample() -> None:
    s = stats.summarize([3.0, 1.0, 2.0, 5.0, 4.0, 6.0, 7.0, 100.0])
    assert s.n == 8
    assert s.median == 4.5
    assert (s.ci_low, s.ci_high) == (1.0, 100.0)  # n = 8: 1st and 8th smallest
    assert (s.q1, s.q3) == (2.75, 6.25)           # numpy's linear interpolation
    assert s.iqr == pytest.approx(3.5)
    assert s.mean == pytest.approx(16.0)
    assert s.std == pytest.approx(np.std([3, 1, 2, 5, 4, 6, 7, 100], ddof=1))
    assert (s.min, s.max) == (1.0, 100.0)


def test_summarize_single_sample_and_bad_input() -> None:
    s = stats.summarize([2.5])
    assert (s.n, s.median, s.ci_low, s.ci_high, s.std, s.iqr) == (1, 2.5, 2.5, 2.5, 0.0, 0.0)
    with pytest.raises(ValueError):
        stats.summarize([])
    with pytest.raises(ValueError):
        stats.summarize([1.0, math.nan])


def test_ci_half_width_rel_is_the_wider_side() -> None:
    # n = 10: CI is [x[1], x[8]] = [9, 14] around a median of 10.5.
    samples = [1.0, 9.0, 10.0, 10.0, 10.0, 11.0, 11.0, 12.0, 14.0, 50.0]
    assert stats.ci_half_width_rel(samples) == pytest.approx((14.0 - 10.5) / 10.5)
    assert stats.ci_half_width_rel([0.0, 0.0, 0.0]) == math.inf


# ---- adaptive repetition -------------------------------------------------------------------


def test_stop_reason_precedence() -> None:
    tight = [10.0 + 0.001 * i for i in range(10)]
    wide = [1.0, 5.0, 10.0, 20.0, 40.0, 2.0, 8.0, 30.0, 3.0, 15.0]
    kw = dict(target_ci=0.02, max_seconds=10.0)
    # Below min_reps: continue even when the CI is tight and the budget is spent.
    assert stats.stop_reason(tight[:4], min_reps=5, max_reps=50, elapsed=99.0, **kw) is None
    assert stats.stop_reason([], min_reps=0, max_reps=50, elapsed=0.0, **kw) is None
    # A tight CI stops; a wide one does not, until the budget or the cap is reached.
    assert stats.stop_reason(tight, min_reps=5, max_reps=50, elapsed=1.0, **kw) == "ci_target"
    assert stats.stop_reason(wide, min_reps=5, max_reps=50, elapsed=1.0, **kw) is None
    assert stats.stop_reason(wide, min_reps=5, max_reps=50, elapsed=10.0, **kw) == "budget"
    assert stats.stop_reason(wide, min_reps=5, max_reps=10, elapsed=1.0, **kw) == "max_reps"
    # Below 6 samples no order-statistic interval is a 95% CI, so a tight spread alone cannot stop
    # the loop (three samples within ±2% happen often by chance); the budget still can.
    assert stats.stop_reason(tight[:5], min_reps=3, max_reps=50, elapsed=1.0, **kw) is None
    assert stats.stop_reason(tight[:6], min_reps=3, max_reps=50, elapsed=1.0, **kw) == "ci_target"
    assert stats.stop_reason(tight[:3], min_reps=3, max_reps=50, elapsed=10.0, **kw) == "budget"
    assert stats.median_ci_ranks(stats.MIN_SAMPLES_FOR_CI) == (0, stats.MIN_SAMPLES_FOR_CI - 1)
    assert 1 - 2.0 ** (1 - stats.MIN_SAMPLES_FOR_CI) >= 0.95 > 1 - 2.0 ** (2 - stats.MIN_SAMPLES_FOR_CI)
    # max_reps is a hard cap even if misconfigured below min_reps.
    assert stats.stop_reason(wide[:3], min_reps=5, max_reps=3, elapsed=0.0, **kw) == "max_reps"


# ---- ratio of medians ----------------------------------------------------------------------


def test_ratio_of_medians_ci_covers_true_ratio() -> None:
    rng = np.random.default_rng(7)
    true_ratio, trials, covered = 2.0, 300, 0
    for i in range(trials):
        a = true_ratio * rng.lognormal(0.0, 0.3, size=20)
        b = rng.lognormal(0.0, 0.3, size=20)
        ratio, lo, hi = stats.ratio_of_medians_ci(a, b, n_boot=1000, seed=i)
        assert lo <= ratio <= hi
        covered += lo <= true_ratio <= hi
    assert 0.90 <= covered / trials <= 0.995


def test_ratio_of_medians_ci_is_deterministic_and_exact_point() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.lognormal(size=25), rng.lognormal(size=31)
    first = stats.ratio_of_medians_ci(a, b)
    assert first == stats.ratio_of_medians_ci(a, b)
    assert first[0] == pytest.approx(np.median(a) / np.median(b))
    assert first != stats.ratio_of_medians_ci(a, b, seed=1)
    narrow = stats.ratio_of_medians_ci(a, b, confidence=0.5)
    assert first[1] <= narrow[1] <= narrow[2] <= first[2]


def test_ratio_of_medians_degenerate_inputs() -> None:
    assert stats.ratio_of_medians_ci([4.0], [2.0]) == (2.0, 2.0, 2.0)
    assert all(math.isnan(v) for v in stats.ratio_of_medians_ci([1.0, 2.0], [0.0, 0.0, 1.0]))


def test_bootstrap_chunking_matches_one_shot(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(10, 1, size=40), rng.normal(5, 1, size=40)
    whole = stats.ratio_of_medians_ci(a, b, n_boot=500)
    monkeypatch.setattr(stats, "_BOOT_CHUNK_VALUES", 40 * 7)  # 7 resamples per chunk
    assert stats.ratio_of_medians_ci(a, b, n_boot=500) == whole


# ---- Mann-Whitney U ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["asymptotic", "exact", "auto"])
def test_mann_whitney_matches_scipy(method: str) -> None:
    rng = np.random.default_rng(11)
    for trial in range(150):
        n1, n2 = (int(v) for v in rng.integers(1, 25, size=2))
        a = rng.lognormal(0.0, 0.5, size=n1)
        b = rng.lognormal(0.2, 0.5, size=n2)
        if trial % 2:
            # Ties exercise the tie correction (asymptotic) and the half-integer U (exact).
            a, b = np.round(a, 1), np.round(b, 1)
        u, p = stats.mann_whitney_u(a, b, method=method)
        ref = scipy.stats.mannwhitneyu(a, b, method=method)
        assert u == pytest.approx(ref.statistic, abs=1e-9)
        assert p == pytest.approx(ref.pvalue, abs=1e-6)


def test_mann_whitney_u_says_which_sample_is_slower() -> None:
    fast = [10.0, 10.2, 10.1, 9.9, 10.05, 10.15, 9.95, 10.3, 10.25, 9.85]
    slow = [v * 1.1 for v in fast]
    u, p = stats.mann_whitney_u(fast, slow)
    assert p < 0.001 and u == 0.0  # no fast value beats a slow one
    assert stats.mann_whitney_u(slow, fast) == (len(fast) ** 2, p)
    assert stats.mann_whitney_u([1.0, 1.0, 1.0], [1.0, 1.0])[1] == 1.0


def test_mann_whitney_p_values_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(5)
    samples = rng.lognormal(0.0, 0.5, size=(2000, 2, 15))
    p = np.array([stats.mann_whitney_u(a, b)[1] for a, b in samples])
    # Rank tests are discrete and the continuity correction makes them slightly conservative,
    # so compare the empirical CDF with the uniform one loosely and check the 5% level directly.
    assert 0.03 <= np.mean(p < 0.05) <= 0.065
    assert scipy.stats.kstest(p, "uniform").statistic < 0.05
    shifted = np.array([stats.mann_whitney_u(a, 1.5 * b)[1] for a, b in samples[:300]])
    assert np.mean(shifted < 0.05) > 0.5  # and the test has power when b really is slower


# ---- multiple comparisons ------------------------------------------------------------------


def test_holm_hand_worked() -> None:
    # sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → running max 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(stats.holm([0.5, 0.6]), [1.0, 1.0])  # capped at 1


def test_benjamini_hochberg_hand_worked() -> None:
    # sorted: 0.005·4/1 = 0.02, 0.01·4/2 = 0.02, 0.03·4/3 = 0.04, 0.04·4/4 = 0.04
    np.testing.assert_allclose(stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]),
                               [0.02, 0.04, 0.04, 0.02])
    # step-up: 0.04·3/2 = 0.06 is pulled down to the later 0.045·3/3 = 0.045
    np.testing.assert_allclose(stats.benjamini_hochberg([0.001, 0.04, 0.045]),
                               [0.003, 0.045, 0.045])


def test_adjustments_skip_nan_and_reject_bad_input() -> None:
    np.testing.assert_allclose(stats.holm([0.01, math.nan, 0.02]), [0.02, math.nan, 0.02])
    np.testing.assert_allclose(stats.benjamini_hochberg([math.nan, 0.02, 0.01]),
                               [math.nan, 0.02, 0.02])
    assert stats.holm([]).size == 0
    with pytest.raises(ValueError):
        stats.holm([1.5])
