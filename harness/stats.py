"""Statistics on raw timing samples: pure functions over numpy arrays, no I/O, no global state.

Timings are skewed (a long right tail from interrupts, allocator growth, frequency changes), so
everything here is built on medians and ranks rather than means and normal theory:

- `summarize`: the median with a distribution-free 95% CI from order statistics, plus IQR and the
  usual moments (reported for completeness, never used for decisions).
- `stop_reason`: adaptive repetition, stop once the CI of the median is narrow enough (or why else).
- `ratio_of_medians_ci`: speedups (baseline ÷ candidate) with a bootstrap CI.
- `mann_whitney_u`: does one sample tend to be slower than the other?
- `t_two_sided` / `t_critical`: Student's t, for tests on a few independent units (rounds).
- `holm` / `benjamini_hochberg`: many comparisons at once (a gate checks dozens of points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Literal, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

MwuMethod = Literal["auto", "exact", "asymptotic"]

# Bootstrap resamples are drawn in chunks of at most this many values, so a long sample (say 10k
# timings) does not allocate n_boot × n floats at once.
_BOOT_CHUNK_VALUES = 2_000_000


def _as_samples(samples: ArrayLike) -> NDArray[np.float64]:
    """A 1-D float array of finite values; empty or non-finite input is a caller bug, so raise."""
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("need at least one sample")
    if not np.all(np.isfinite(x)):
        raise ValueError("samples must be finite (no NaN or inf)")
    return x


# ---- the median and its confidence interval -------------------------------------------------


@lru_cache(maxsize=256)
def _half_binomial_cdf(n: int) -> NDArray[np.float64]:
    """P(Bin(n, ½) ≤ k) for k = 0..n.

    Built from log C(n, k) as a running sum of log((n - k + 1) / k): accurate for large n, where
    C(n, k) itself overflows a float.
    """
    k = np.arange(1, n + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(n - k + 1) - np.log(k))))
    return np.cumsum(np.exp(log_comb - n * math.log(2.0)))


@lru_cache(maxsize=256)
def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """0-based indices (lo, hi) into the sorted sample bounding a CI of the median.

    The interval [x[lo], x[n-1-lo]] misses the true median only when at most lo of the n draws fall
    below it (or, symmetrically, above it). That count is Binomial(n, 1/2) for ANY continuous
    distribution, so coverage is 1 - 2·P(Bin(n, ½) ≤ lo) exactly; we take the largest lo whose
    coverage is still ≥ `confidence` (conservative: actual coverage is at or above nominal, e.g.
    0.957 at n = 30, where the interval is the 10th to 21st smallest values).

    Small n: even [min, max] covers with probability only 1 - 2^(1-n) (0.9375 at n = 5), so for
    n < 6 at 95% no interval reaches the target and we return [min, max] — the widest available,
    whose coverage is below nominal (`median_ci_level` says how far). Callers that need a real
    95% CI need n ≥ 6.
    """
    if n < 1:
        raise ValueError("n must be at least 1")
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    cdf = _half_binomial_cdf(n)
    alpha_half = (1.0 - confidence) / 2.0
    # x_(lo) (0-based) lies above the median exactly when at most lo draws fall below it, which
    # has probability P(Bin ≤ lo); we need that ≤ alpha/2. j counts the k with cdf[k] ≤ alpha/2
    # (k = 0..j-1), so the largest admissible lo is j - 1. The relative slack guards against a
    # rounding error excluding a k whose tail equals alpha/2 exactly.
    j = int(np.searchsorted(cdf, alpha_half * (1.0 + 1e-12), side="right"))
    # j == 0 is the small-n case: no order-statistic interval reaches the target; use [min, max].
    lo = max(j - 1, 0)
    hi = n - 1 - lo
    return lo, hi


def median_ci_level(n: int, confidence: float = 0.95) -> float:
    """The coverage the interval of `median_ci_ranks(n, confidence)` actually achieves.

    1 - 2·P(Bin(n, ½) ≤ lo): at or above `confidence` from n = 6 on (at 95%), below it for
    smaller n, where [min, max] covers only 1 - 2^(1-n) (0.75 at n = 3; 0 for one sample). A row
    records it so that nothing downstream calls a 75% interval a 95% one.
    """
    lo, _ = median_ci_ranks(n, confidence)
    return max(0.0, 1.0 - 2.0 * float(_half_binomial_cdf(n)[lo]))


def median_ci(samples: ArrayLike, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median (see `median_ci_ranks` for coverage and small n)."""
    x = np.sort(_as_samples(samples))
    lo, hi = median_ci_ranks(x.size, confidence)
    return float(x[lo]), float(x[hi])


@dataclass(frozen=True)
class Summary:
    """Descriptive statistics of one sample; ci_low/ci_high bound the median with coverage ci_level
    (at least 0.95 from 6 samples on, less below: see median_ci_level)."""

    n: int
    median: float
    ci_low: float
    ci_high: float
    ci_level: float
    iqr: float
    q1: float
    q3: float
    mean: float
    std: float      # sample standard deviation (ddof=1); 0.0 for a single sample
    min: float
    max: float


def summarize(samples: ArrayLike) -> Summary:
    x = _as_samples(samples)
    q1, median, q3 = (float(v) for v in np.percentile(x, [25.0, 50.0, 75.0]))
    ci_low, ci_high = median_ci(x)
    return Summary(n=int(x.size), median=median, ci_low=ci_low, ci_high=ci_high,
                   ci_level=median_ci_level(int(x.size)), iqr=q3 - q1, q1=q1, q3=q3, mean=float(x.mean()),
                   std=float(x.std(ddof=1)) if x.size > 1 else 0.0, min=float(x.min()), max=float(x.max()))


def ci_half_width_rel(samples: ArrayLike) -> float:
    """The wider side of the median's 95% CI, relative to the median (inf if the median is ≤ 0)."""
    x = _as_samples(samples)
    median = float(np.median(x))
    if median <= 0.0:
        return math.inf
    lo, hi = median_ci(x)
    return max(median - lo, hi - median) / median


# The smallest n whose [min, max] covers the median with probability >= 95% (1 - 2^(1-n)).
MIN_SAMPLES_FOR_CI = 6


# Why a timing loop stopped; every result row records it (`stop_reason`).
StopReason = Literal["max_reps", "budget", "ci_target"]


def stop_reason(samples: Sequence[float], min_reps: int, max_reps: int, target_ci: float, elapsed: float,
                max_seconds: float) -> StopReason | None:
    """Adaptive repetition: why the timing loop may stop after these samples (None: go on).

    Precedence: max_reps is a hard cap; below min_reps we always continue (even past the time
    budget: the worker's own timeout is the backstop for a step that is simply too slow); otherwise
    stop once the time budget is spent or the CI of the median is within ±target_ci of it.
    The CI rule needs MIN_SAMPLES_FOR_CI samples: below that [min, max] is all there is, and three
    samples within ±2% of each other happen often by chance (that interval covers the median only
    75% of the time), so stopping on it would report a 95% CI that is not one.
    """
    n = len(samples)
    if n >= max_reps:
        return "max_reps"
    if n < min_reps or n == 0:
        return None
    if elapsed >= max_seconds:
        return "budget"
    if n >= MIN_SAMPLES_FOR_CI and ci_half_width_rel(samples) <= target_ci:
        return "ci_target"
    return None


# ---- ratios of medians ----------------------------------------------------------------------


def _bootstrap_medians(x: NDArray[np.float64], n_boot: int, rng: np.random.Generator) -> NDArray[np.float64]:
    rows_per_chunk = max(1, _BOOT_CHUNK_VALUES // x.size)
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        idx = rng.integers(0, x.size, size=(rows, x.size))
        out[start:start + rows] = np.median(x[idx], axis=1)
    return out


# The fewest samples per side for which the percentile bootstrap of a ratio of two medians covers
# at 95% (simulated, 1500 trials each, lognormal noise with and without 10% bursts of +50%: 0.90
# at 3 samples, 0.92-0.93 at 4, 0.965 at 5 and 6; two samples: 0.70). benchmarks/bench_estimator.py
# prints the table.
MIN_SAMPLES_FOR_BOOTSTRAP = 5


def ratio_of_medians_ci(
    a: ArrayLike,
    b: ArrayLike,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """median(a) / median(b) with a percentile-bootstrap CI; a and b are resampled independently.

    For a speedup pass (baseline_times, candidate_times). The seed is fixed so that a report
    rebuilt from the same stored samples shows the same interval. A ratio whose denominator median
    is 0 is undefined: (nan, nan, nan).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    if n_boot < 1:
        raise ValueError("n_boot must be at least 1")
    xa, xb = _as_samples(a), _as_samples(b)
    med_b = float(np.median(xb))
    if med_b == 0.0:
        return math.nan, math.nan, math.nan
    ratio = float(np.median(xa)) / med_b
    rng = np.random.default_rng(seed)
    boot_a = _bootstrap_medians(xa, n_boot, rng)
    boot_b = _bootstrap_medians(xb, n_boot, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = boot_a / boot_b
    alpha = 1.0 - confidence
    lo, hi = np.nanpercentile(boot, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return ratio, float(lo), float(hi)


# ---- Student's t ---------------------------------------------------------------------------------


def t_two_sided(t: float, df: float) -> float:
    """P(|T| >= t) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2).

    df may be fractional (a Welch-Satterthwaite df); the identity is Abramowitz & Stegun 26.7.1.
    """
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


@lru_cache(maxsize=1024)  # a bisection of ~60 incomplete-beta evaluations; the same few df recur
def t_critical(confidence: float, df: float) -> float:
    """The t with P(|T| >= t) = 1 - confidence: the half-width of a CI in standard errors."""
    if not 0.0 < confidence < 1.0:
        raise ValueError("confidence must be in (0, 1)")
    alpha, lo, hi = 1.0 - confidence, 0.0, 1.0
    while t_two_sided(hi, df) > alpha:  # the tail falls monotonically: bracket, then bisect
        lo, hi = hi, hi * 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if t_two_sided(mid, df) > alpha else (lo, mid)
    return (lo + hi) / 2.0


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) (Numerical Recipes' continued fraction, Lentz)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x > (a + 1.0) / (a + b + 2.0):  # the fraction converges fast only below this point
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-14:
            break
    return front * f / a


# ---- Mann-Whitney U ---------------------------------------------------------------------------


def _rank_with_ties(values: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Average ranks (1-based) and the sizes of the tie groups."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # A new group starts wherever the sorted value changes.
    starts = np.flatnonzero(np.concatenate(([True], sorted_values[1:] != sorted_values[:-1])))
    counts = np.diff(np.append(starts, values.size))
    # Group g occupies 1-based ranks starts[g]+1 .. starts[g]+counts[g]; its average rank:
    avg = starts + (counts + 1) / 2.0
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, counts)
    return ranks, counts


@lru_cache(maxsize=64)
def _exact_u_tail(n1: int, n2: int) -> NDArray[np.float64]:
    """tail[u] = P(U ≥ u) under H0 (no ties), u = 0..n1·n2.

    Counts arrangements with the recurrence c(u; i, j) = c(u - j; i - 1, j) + c(u; i, j - 1)
    (the largest value belongs to x, beating all j y's, or to y). Only additions, so the tail of
    the distribution keeps full relative precision, unlike 1 - cdf.
    """
    size = n1 * n2 + 1
    # counts[i] holds the distribution of U for (i, j) as j grows from 0 to n2.
    counts = [np.zeros(size) for _ in range(n1 + 1)]
    for i in range(n1 + 1):
        counts[i][0] = 1.0  # j = 0: U is always 0
    for j in range(1, n2 + 1):
        for i in range(1, n1 + 1):
            shifted = np.zeros(size)
            shifted[j:] = counts[i - 1][:size - j]
            counts[i] = shifted + counts[i]
    dist = counts[n1]
    tail = np.cumsum(dist[::-1])[::-1]
    return tail / tail[0]


def mann_whitney_u(a: ArrayLike, b: ArrayLike, method: MwuMethod = "auto") -> tuple[float, float]:
    """(U of a, two-sided p) of the Mann-Whitney U test.

    Asymptotic: normal approximation with tie correction and continuity correction. "auto" uses
    the exact null distribution when a sample has ≤ 8 values and there are no ties, as scipy
    does, and matches scipy.stats.mannwhitneyu for each method.
    """
    x, y = _as_samples(a), _as_samples(b)
    n1, n2 = x.size, y.size
    ranks, tie_counts = _rank_with_ties(np.concatenate((x, y)))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    # The p-value doubles the upper tail P(U ≥ u) of the larger U (the same convention as scipy).
    u = max(u1, n1 * n2 - u1)
    has_ties = bool(np.any(tie_counts > 1))
    if method == "auto":
        method = "asymptotic" if (n1 > 8 and n2 > 8) or has_ties else "exact"
    if method == "exact":
        # With ties forced through the exact table U can be x.5; flooring it (as scipy does)
        # takes the larger, conservative tail.
        p = float(_exact_u_tail(n1, n2)[int(math.floor(u))])
    elif method == "asymptotic":
        n = n1 + n2
        tie_term = float(np.sum(tie_counts.astype(np.float64) ** 3 - tie_counts))
        sigma = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
        if sigma == 0.0:  # every value identical: no evidence either way
            return u1, 1.0
        z = (u - n1 * n2 / 2.0 - 0.5) / sigma  # -0.5: continuity correction toward the null
        p = 0.5 * math.erfc(z / math.sqrt(2.0))
    else:
        raise ValueError(f"method must be auto, exact or asymptotic, got {method!r}")
    return u1, min(1.0, max(0.0, 2.0 * p))


# ---- multiple comparisons -------------------------------------------------------------------


def _finite_p(pvalues: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    ok = np.isfinite(p)
    if np.any((p[ok] < 0.0) | (p[ok] > 1.0)):
        raise ValueError("p-values must lie in [0, 1]")
    return p, ok


def _adjusted(pvalues: ArrayLike,
              adjust_sorted: Callable[[NDArray[np.float64]], NDArray[np.float64]]) -> NDArray[np.float64]:
    """Apply `adjust_sorted` (ascending p-values in, adjusted out) and return values in input order.

    NaN p-values (a comparison that could not be made) stay NaN and do not count toward m.
    """
    p, ok = _finite_p(pvalues)
    out = np.full(p.shape, np.nan)
    q = p[ok]
    if q.size == 0:
        return out
    order = np.argsort(q, kind="mergesort")
    result = np.empty(q.size)
    result[order] = np.minimum(1.0, adjust_sorted(q[order]))
    out[ok] = result
    return out


def holm(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Holm step-down adjusted p-values (family-wise error), in the input order."""
    def step_down(q: NDArray[np.float64]) -> NDArray[np.float64]:
        m = q.size
        return np.maximum.accumulate((m - np.arange(m)) * q)  # the i-th smallest (0-based) times m - i

    return _adjusted(pvalues, step_down)


def benjamini_hochberg(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    def step_up(q: NDArray[np.float64]) -> NDArray[np.float64]:
        scaled = q * q.size / np.arange(1, q.size + 1)
        # Each adjusted value is the smallest scaled value at or above its rank.
        return np.minimum.accumulate(scaled[::-1])[::-1]

    return _adjusted(pvalues, step_up)
