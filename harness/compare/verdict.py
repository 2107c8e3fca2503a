"""The gate's statistical rule: a change is a regression only if significant AND past its threshold.

Pure functions over numpy arrays. Significance alone would fail on a harmless 1% shift measured
precisely, a threshold alone on noise; a regression needs both. Every quantity is a ratio
candidate ÷ baseline of a metric, so one rule serves absolute times and within-run speedups:

- Absolute times: the estimate is the ratio of median times, its CI a percentile bootstrap of that
  ratio, and significance a two-sided Mann-Whitney U test on the raw samples. A rank test needs no
  distributional assumption, is exact for small samples and is not moved by the long right tail
  that interrupts put on timings; the bootstrap CI says how large the change is.
- Within-run ratios (speedup = baseline time ÷ reuse time, measured in one run): the quantity
  gated is speedup_candidate ÷ speedup_baseline, a contrast of four samples that no rank test
  covers. We bootstrap it from the four raw samples and test log(ratio) = 0 with the bootstrap
  standard error (a Wald test on the log scale, where a ratio of medians is close to normal).
  Unlike a percentile-count p-value its resolution does not depend on the number of resamples,
  which matters once Holm divides alpha by dozens of checks.
- Interleaved A/B runs pool several rounds (workers) per side. Samples of one worker share its
  moment's load; those of different rounds do not, so there the round is the unit: rounds are
  resampled before samples (and paired across sides), for times too (log_contrast).
- Many checks at once: p-values are adjusted across every gated statistical check of a gate
  (Holm: family-wise error; BH: false discovery rate).
- Verdict: regressed/improved when the adjusted p < alpha and the estimate is beyond the threshold
  in that direction; otherwise "too noisy to tell" when the CI is wider than the threshold (a
  change of threshold size would fit inside it), else unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness import stats


class Verdict(str, Enum):
    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    NOISY = "too noisy"
    CHANGED = "changed"      # an exact metric differs
    MISSING = "missing"      # a baseline row the candidate lacks
    FAILED = "failed"        # a baseline row whose candidate run failed

    def __str__(self) -> str:
        return self.value


# ---- significance and size -----------------------------------------------------------------
Rounds = Sequence[NDArray[np.float64]]  # one sample split by worker (round), in measuring order


def as_rounds(samples: ArrayLike | Rounds) -> list[NDArray[np.float64]]:
    """A sample as a list of rounds: a flat sequence is one round."""
    if isinstance(samples, (list, tuple)) and samples and isinstance(samples[0], (list, tuple, np.ndarray)):
        return [np.asarray(r, dtype=np.float64).ravel() for r in samples]
    return [np.asarray(samples, dtype=np.float64).ravel()]


def _pooled_medians(rounds: list[NDArray[np.float64]], idx: NDArray[np.int64],
                    rng: np.random.Generator) -> NDArray[np.float64]:
    """Median of each two-stage resample: rounds `idx` (n_boot, R), then samples within each."""
    sizes = np.array([r.size for r in rounds])
    padded = np.full((len(rounds), sizes.max()), np.nan)
    for i, r in enumerate(rounds):
        padded[i, :r.size] = r
    n = sizes[idx]                                                       # (n_boot, R)
    pick = np.floor(rng.random((*idx.shape, padded.shape[1])) * n[..., None]).astype(np.int64)
    values = padded[idx[..., None], pick]                                # (n_boot, R, max size)
    values[np.arange(padded.shape[1]) >= n[..., None]] = np.nan          # slots past a round's size
    return np.nanmedian(values.reshape(idx.shape[0], -1), axis=1)


@dataclass(frozen=True)
class Contrast:
    """A ratio estimate with its CI and the test of "ratio = 1" (see log_contrast)."""

    estimate: float
    low: float
    high: float
    p: float
    log_se: float       # standard error of log(estimate)
    df: int | None      # Student's t degrees of freedom; None: normal

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.estimate, self.low, self.high, self.p

    def scaled(self, factor: float) -> "Contrast":
        """The same measurement times a known constant (e.g. a FLOP ratio), tested against 1 anew."""
        estimate = self.estimate * factor
        return Contrast(estimate, self.low * factor, self.high * factor,
                        _p_value(math.log(estimate), self.log_se, self.df), self.log_se, self.df)


def _p_value(log_estimate: float, se: float, df: int | None) -> float:
    if se == 0.0:  # every resample identical (e.g. constant samples): no evidence of a change
        return 1.0 if log_estimate == 0.0 else 0.0
    if df is not None:  # R clusters carry R - 1 degrees of freedom, however many samples they hold
        return t_two_sided(abs(log_estimate) / se, df)
    return math.erfc(abs(log_estimate) / se / math.sqrt(2.0))


def log_contrast(samples: Sequence[ArrayLike | Rounds], signs: Sequence[int], confidence: float = 0.95,
                 n_boot: int = 2000, seed: int = 0) -> Contrast:
    """exp(sum sign_i * log median_i), with a two-stage bootstrap CI and a two-sided test of "= 1".

    Each sample may be split into rounds (one worker each). Timings of one worker share its
    moment's machine load, so the unit of replication is the round: rounds are resampled first,
    then samples within them. When every sample has the same number R >= 2 of rounds (an
    interleaved A/B run, where round r of every side was measured back to back) the same round
    indices are drawn for all of them, which keeps that pairing. With one round this is the plain
    bootstrap. p: test of log(estimate) = 0 with the bootstrap SE, widened by sqrt(R/(R-1)) for
    the known shrinkage of a bootstrap over R clusters, against Student's t with R-1 degrees of
    freedom (the normal distribution with one round, where the samples are the units). The seed
    is fixed so a gate re-run on the same stored samples gives the same answer.
    """
    nan = Contrast(math.nan, math.nan, math.nan, math.nan, math.nan, None)
    groups = [[r[np.isfinite(r) & (r > 0)] for r in as_rounds(s)] for s in samples]
    groups = [[r for r in g if r.size] for g in groups]
    if any(not g for g in groups):
        return nan
    estimate_log = sum(sign * math.log(float(np.median(np.concatenate(g)))) for sign, g in zip(signs, groups))
    rng = np.random.default_rng(seed)
    counts = {len(g) for g in groups}
    shared = rng.integers(0, counts.pop(), (n_boot, len(groups[0]))) if len(counts) == 1 else None
    boot = np.zeros(n_boot)
    for sign, g in zip(signs, groups):
        idx = shared if shared is not None else rng.integers(0, len(g), (n_boot, len(g)))
        boot += sign * np.log(_pooled_medians(g, idx, rng))
    return _from_bootstrap(estimate_log, boot, min(len(g) for g in groups), confidence)


def _from_bootstrap(estimate_log: float, boot: NDArray[np.float64], rounds: int, confidence: float) -> Contrast:
    """The Contrast of a log-scale estimate from its bootstrap over `rounds` clusters."""
    alpha = 1.0 - confidence
    low, high = np.exp(np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)]))
    se = float(np.std(boot, ddof=1)) * (math.sqrt(rounds / (rounds - 1)) if rounds > 1 else 1.0)
    df = rounds - 1 if rounds > 1 else None
    return Contrast(math.exp(estimate_log), float(low), float(high), _p_value(estimate_log, se, df), se, df)


# ---- lockstep pairs ----------------------------------------------------------------------------
def paired_logs(base: ArrayLike | Rounds, cand: ArrayLike | Rounds) -> list[NDArray[np.float64]] | None:
    """log(cand_i / base_i) per round, for samples taken back to back in a lockstep A/B run.

    In lockstep the i-th timed step of each side is taken right after the other's (harness/run/turns.py),
    so the pair shares the machine's state of that moment and its log ratio is free of it. Pairs go
    up to the shorter side of each round. None when the two do not have the same rounds.
    """
    b, c = as_rounds(base), as_rounds(cand)
    if len(b) != len(c):
        return None
    rounds = [np.log(rc[:k]) - np.log(rb[:k]) for rb, rc in zip(b, c) if (k := min(rb.size, rc.size))]
    return rounds if len(rounds) == len(b) else None


def paired_contrast(pairs: Sequence[list[NDArray[np.float64]]], signs: Sequence[int], confidence: float = 0.95,
                    n_boot: int = 2000, seed: int = 0) -> Contrast:
    """exp(sum sign_j * median of pair log ratios j), tested against 1 (see log_contrast).

    One term is a time change (candidate ÷ baseline of one row); two are a change of a speedup
    (that of the reuse row ÷ that of its reference). Rounds stay the unit of replication: pairing
    removes what the two sides' steps share (the moment), not what differs between two workers of
    one round (say the memory layout of each process), so rounds are resampled first, the same
    rounds for every term, then pairs within them.
    """
    nan = Contrast(math.nan, math.nan, math.nan, math.nan, math.nan, None)
    if not pairs or any(not p for p in pairs) or len({len(p) for p in pairs}) != 1:
        return nan
    estimate_log = sum(sign * float(np.median(np.concatenate(p))) for sign, p in zip(signs, pairs))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(pairs[0]), (n_boot, len(pairs[0])))
    boot = np.zeros(n_boot)
    for sign, p in zip(signs, pairs):
        boot += sign * _pooled_medians(p, idx, rng)
    return _from_bootstrap(estimate_log, boot, len(pairs[0]), confidence)


def t_two_sided(t: float, df: int) -> float:
    """P(|T| >= t) for Student's t with df degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


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


def time_change(base: ArrayLike | Rounds, cand: ArrayLike | Rounds, confidence: float = 0.95,
                n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float, float]:
    """(ratio of medians cand/base, CI low, CI high, two-sided p) of raw timings.

    One worker per side (a stored run): Mann-Whitney U on the raw samples, which are exchangeable
    within a worker. Several rounds per side (an interleaved A/B run): the samples of different
    rounds are not exchangeable (each round has its own load), so the p comes from the two-stage
    bootstrap over rounds (log_contrast).
    """
    ratio, low, high, p_rounds = log_contrast([base, cand], [-1, 1], confidence, n_boot, seed).as_tuple()
    if min(len(as_rounds(base)), len(as_rounds(cand))) >= 2:
        return ratio, low, high, p_rounds
    flat_base, flat_cand = np.concatenate(as_rounds(base)), np.concatenate(as_rounds(cand))
    _, p = stats.mann_whitney_u(flat_base, flat_cand)
    return ratio, low, high, p


def ratio_of_ratios(base_ref: ArrayLike | Rounds, base_cand: ArrayLike | Rounds, cand_ref: ArrayLike | Rounds,
                    cand_cand: ArrayLike | Rounds, confidence: float = 0.95, n_boot: int = 2000,
                    seed: int = 0) -> Contrast:
    """Change of a within-run speedup between two runs, from raw samples.

    speedup = median(ref) / median(cand) inside each run; the estimate is speedup in the candidate
    run ÷ speedup in the baseline run. No rank test covers a contrast of four samples, so the CI
    and p come from the bootstrap (log_contrast).
    """
    return log_contrast([base_ref, base_cand, cand_ref, cand_cand], [-1, 1, 1, -1], confidence, n_boot, seed)


def adjust(pvalues: ArrayLike, correction: str) -> NDArray[np.float64]:
    """p-values adjusted for testing them together; NaN (no test possible) stays NaN."""
    p = np.asarray(pvalues, dtype=np.float64)
    if correction == "holm":
        return stats.holm(p)
    if correction == "bh":
        return stats.benjamini_hochberg(p)
    if correction == "none":
        return p.copy()
    raise ValueError(f"correction must be holm, bh or none, got {correction!r}")


# ---- the verdict -----------------------------------------------------------------------------
def decide(ratio: ArrayLike, ci_low: ArrayLike, ci_high: ArrayLike, p_adjusted: ArrayLike,
           threshold: ArrayLike, higher_is_worse: ArrayLike, alpha: float) -> NDArray[np.object_]:
    """Verdicts for statistical checks, element-wise over arrays (broadcasting).

    ratio: candidate ÷ baseline of the metric; higher_is_worse: True for times, False for
    speedups. A NaN ratio or p (no test possible) can only be "too noisy to tell".
    """
    r, lo, hi, p, t, hiw = np.broadcast_arrays(
        np.asarray(ratio, dtype=np.float64), np.asarray(ci_low, dtype=np.float64),
        np.asarray(ci_high, dtype=np.float64), np.asarray(p_adjusted, dtype=np.float64),
        np.asarray(threshold, dtype=np.float64), np.asarray(higher_is_worse, dtype=bool))
    with np.errstate(invalid="ignore"):
        significant = p < alpha  # NaN compares False
        up, down = r > 1.0 + t, r < 1.0 - t
        worse = significant & np.where(hiw, up, down)
        better = significant & np.where(hiw, down, up)
        noisy = ~((hi - lo) <= t)  # NaN width (no CI) is noisy too
    out = np.full(r.shape, Verdict.UNCHANGED, dtype=object)
    out[noisy] = Verdict.NOISY
    out[better] = Verdict.IMPROVED
    out[worse] = Verdict.REGRESSED
    return out


def decide_percent(base: float, cand: float, threshold: float, higher_is_worse: bool = True) -> Verdict:
    """Deterministic-but-tolerant metrics (memory): a relative change past the threshold counts."""
    if not (math.isfinite(base) and math.isfinite(cand)) or base <= 0:
        return Verdict.CHANGED if base != cand else Verdict.UNCHANGED
    change = cand / base - 1.0
    if abs(change) <= threshold:
        return Verdict.UNCHANGED
    return Verdict.REGRESSED if (change > 0) == higher_is_worse else Verdict.IMPROVED


def decide_exact(base: object, cand: object) -> Verdict:
    return Verdict.UNCHANGED if base == cand else Verdict.CHANGED
