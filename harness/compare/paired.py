"""One estimator for every ratio the judge reports: speedups, time changes and changes of speedups.

Pure functions over per-round arrays. Which of them applies to two result rows is decided in
timing.py; here is what each computes and why.

Paired timings (`paired_contrast`). In lockstep, sample i of round r of two rows was taken in one
rotation, a few milliseconds apart. Per pair, the log ratio

    d_ri = log t_num,ri − log t_den,ri     speedup: num = baseline, den = reuse;
                                           time change: num = candidate, den = baseline;
                                           speedup change between A/B sides: the four-way
                                           difference (reference change − reuse change)

is free of whatever the machine did at that moment. Then

    m_r = median_i d_ri                    one statistic per round
    log estimate = mean_r m_r,  se = sd_r(m_r) / √R,  CI and p: Student's t with R − 1 df.

- Pairs cancel what the moment shares; under a change of scale alone, d_ri is symmetric about the
  true log ratio (two steps with the same noise), so its median estimates it without bias.
- The median within a round: a burst that stalls one step of a pair makes that pair an outlier,
  which the median ignores and a mean would not.
- Rounds are the unit. Pairing does not cancel what differs between the two processes of a round
  (memory layout, core, allocator state): that is fixed within a round and varies between rounds,
  so the pairs of one round are not independent replicates; rounds are. A one-sample t on the R
  round statistics counts every source of spread once: the within-round spread inside each m_r,
  the between-round spread across them. (The two-stage bootstrap this replaces resampled pairs
  inside resampled rounds, which adds the within-round spread a second time, and then widened the
  result by √(R/(R−1)) as well: its standard errors came out 1.2-1.5 times too large, and its A/A
  false alarms at 0.01-0.03 for a nominal 0.05; figures below.)
- The mean of the m_r, not their median: the t interval is a statement about a mean, and the m_r
  are medians already. A whole round off is process-to-process variation, which the interval
  must include rather than ignore.
- R = 1: one round has no spread between rounds to estimate; no interval ("needs rounds").

Measured with benchmarks/bench_estimator.py (8 rounds of 4 pairs, as `harness gate --against`
takes them; 2000 trials a cell; a worker offset of sd 2% per side and round on top of the step
noise): coverage of the 95% CI 0.953 with iid step noise, 0.955 with AR(1) noise within rounds
(phi = 0.7), 0.953 with bursts (stalls of single steps, stretches of pairs at another speed); A/A
rejection at alpha = 0.05: 0.053, 0.047, 0.045. Its standard error is the estimate's spread (iid:
0.0125 reported, 0.0128 true). The two-stage bootstrap it replaces reported 0.0173 against a true
0.0141 and rejected A/A at 0.018, 0.026, 0.007; for a true 5% slowdown at the gate's settings
(Holm over 12 checks, 3% threshold) it said "regressed" in 16% of trials (iid) where this says so
in 43%, and 3% against 22% once `confirm: 2` asks for two reproductions.

Unpaired timings fall back, and every Contrast says which method produced its interval:
- `round_medians`: rows measured in R ≥ 2 rounds side by side: m_r = Σ_j sign_j · log median of
  row j in round r, then the same t.
- `samples_ratio`: one round per side: median ÷ median with a percentile-bootstrap CI and a
  Mann-Whitney p. Its units are one worker's samples, so it covers that worker's noise and not a
  load change between the two sides (on sequential synthetic timings whose load wanders by ±20%
  it covered in 0% of trials, where round medians covered in 94-96%); it needs
  stats.MIN_SAMPLES_FOR_BOOTSTRAP samples a side.
- `between_runs`: two independent estimates (each run's own speedup): logs subtract, variances
  add, Welch-Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness import stats

Rounds = Sequence[NDArray[np.float64]]  # one row's samples (or pair log ratios) split by round, in order


@dataclass(frozen=True)
class Contrast:
    """A ratio estimate, its CI, the test of "ratio = 1", and how the interval was made."""

    estimate: float
    low: float              # CI bounds; NaN: no interval (see method)
    high: float
    p: float                # two-sided; NaN: no test
    log_se: float           # standard error of log(estimate)
    df: float | None        # Student's t degrees of freedom; None: normal
    method: str             # for readers: "lockstep pairs, 8 rounds", "needs rounds (1 round)", ...
    paired: bool = False    # every part of it came from lockstep pairs

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)

    def as_tuple(self) -> tuple[float, float, float, float]:
        return self.estimate, self.low, self.high, self.p

    def scaled(self, factor: float) -> "Contrast":
        """The same measurement times a known constant (e.g. a FLOP ratio), tested against 1 anew."""
        estimate = self.estimate * factor
        p = _p_value(math.log(estimate), self.log_se, self.df) if self.has_interval else math.nan
        return replace(self, estimate=estimate, low=self.low * factor, high=self.high * factor, p=p)


def no_interval(estimate: float, why: str) -> Contrast:
    """An estimate without a CI or test, saying why (too few samples, one round)."""
    return Contrast(estimate, math.nan, math.nan, math.nan, math.nan, None, why)


def _p_value(log_estimate: float, se: float, df: float | None) -> float:
    if se == 0.0:  # every unit identical (constant samples): no spread to weigh the change against
        return 1.0 if log_estimate == 0.0 else 0.0
    z = abs(log_estimate) / se
    return stats.t_two_sided(z, df) if df is not None else math.erfc(z / math.sqrt(2.0))


def _critical(confidence: float, df: float | None) -> float:
    return stats.t_critical(confidence, df) if df is not None else NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _t_contrast(log_estimate: float, se: float, df: float | None, confidence: float, method: str,
                paired: bool) -> Contrast:
    half = _critical(confidence, df) * se
    return Contrast(math.exp(log_estimate), math.exp(log_estimate - half), math.exp(log_estimate + half),
                    _p_value(log_estimate, se, df), se, df, method, paired)


def from_rounds(round_stats: ArrayLike, confidence: float, method: str, paired: bool = False) -> Contrast:
    """exp(mean) of R per-round log statistics, with Student's t on them (R − 1 df)."""
    m = np.asarray(round_stats, dtype=np.float64)
    m = m[np.isfinite(m)]
    if m.size == 0:
        return no_interval(math.nan, "no samples")
    if m.size < 2:
        return replace(no_interval(math.exp(float(m[0])), "needs rounds (1 round)"), paired=paired)
    se = float(np.std(m, ddof=1)) / math.sqrt(m.size)
    return _t_contrast(float(m.mean()), se, m.size - 1, confidence, f"{method}, {m.size} rounds", paired)


# ---- lockstep pairs ----------------------------------------------------------------------------
def paired_logs(base: Rounds, cand: Rounds) -> list[NDArray[np.float64]] | None:
    """log(cand_i / base_i) per round, for samples taken in lockstep; None unless both have the same rounds.

    Pairs go up to the shorter side of each round, so (round, index) is what aligns them; a pair
    with a missing or non-positive step is dropped as a pair.
    """
    if len(base) != len(cand):
        return None
    out = []
    for b, c in zip(base, cand):
        k = min(len(b), len(c))
        b_k, c_k = np.asarray(b[:k], dtype=np.float64), np.asarray(c[:k], dtype=np.float64)
        ok = np.isfinite(b_k) & np.isfinite(c_k) & (b_k > 0) & (c_k > 0)
        out.append(np.log(c_k[ok]) - np.log(b_k[ok]))
    return out


def paired_contrast(terms: Sequence[Sequence[NDArray[np.float64]]], signs: Sequence[int],
                    confidence: float = 0.95) -> Contrast:
    """exp(mean over rounds of the median over pairs of Σ_j sign_j · d_jri): see the module docstring.

    `terms[j]` holds term j's pair log ratios per round (paired_logs): one term for a speedup or a
    time change, two for the change of a speedup between A/B sides. A round without a pair in
    every term is left out.
    """
    if not terms or len({len(t) for t in terms}) != 1:
        return no_interval(math.nan, "rounds do not match")
    stats_per_round = []
    for r in range(len(terms[0])):
        k = min(len(t[r]) for t in terms)
        if k:
            stats_per_round.append(float(np.median(sum(s * np.asarray(t[r][:k]) for s, t in zip(signs, terms)))))
    return from_rounds(stats_per_round, confidence, "lockstep pairs", paired=True)


# ---- unpaired fallbacks ------------------------------------------------------------------------
def round_medians(rows: Sequence[Rounds], signs: Sequence[int], confidence: float = 0.95) -> Contrast:
    """Rows measured in the same R rounds: m_r = Σ_j sign_j · log median(row j, round r), then t."""
    if len({len(r) for r in rows}) != 1:
        return no_interval(math.nan, "rounds do not match")
    stats_per_round = [sum(s * math.log(float(np.median(row[r]))) for s, row in zip(signs, rows))
                       for r in range(len(rows[0])) if all(len(row[r]) for row in rows)]
    return from_rounds(stats_per_round, confidence, "round medians")


def samples_ratio(num: ArrayLike, den: ArrayLike, confidence: float = 0.95) -> Contrast:
    """median(num) ÷ median(den) of one worker each: percentile-bootstrap CI, Mann-Whitney p.

    The log-scale standard error (for `between_runs`) is read off the bootstrap interval as if it
    were normal. The seed of the bootstrap is fixed so a re-run on stored samples agrees.
    """
    x, y = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if min(x.size, y.size) == 0 or np.median(y) <= 0 or np.median(x) <= 0:
        return no_interval(math.nan, "no samples")
    ratio = float(np.median(x) / np.median(y))
    fewest = min(x.size, y.size)
    if fewest < stats.MIN_SAMPLES_FOR_BOOTSTRAP:
        return no_interval(ratio, f"too few samples ({fewest} < {stats.MIN_SAMPLES_FOR_BOOTSTRAP})")
    _, low, high = stats.ratio_of_medians_ci(x, y, confidence)
    _, p = stats.mann_whitney_u(x, y)
    se = (math.log(high) - math.log(low)) / (2.0 * _critical(confidence, None))
    return Contrast(ratio, low, high, p, se, None, "one round each: samples")


def between_runs(base: Contrast, cand: Contrast, confidence: float = 0.95, what: str = "two runs") -> Contrast:
    """cand ÷ base of two independent estimates: log difference, variances added, Welch-Satterthwaite df.

    df = (se_b² + se_c²)² / (se_b⁴/df_b + se_c⁴/df_c) (Satterthwaite 1946); a normal part (df None)
    adds no term, and two normal parts stay normal. `what` names the two parts in the method.
    """
    estimate = cand.estimate / base.estimate if base.estimate > 0 else math.nan
    if not (base.has_interval and cand.has_interval):
        return no_interval(estimate, f"{what}: {(base if not base.has_interval else cand).method}")
    se = math.hypot(base.log_se, cand.log_se)
    terms = [c.log_se ** 4 / c.df for c in (base, cand) if c.df is not None and c.df > 0]
    df = se ** 4 / sum(terms) if terms and se > 0 else None
    method = base.method if base.method == cand.method else f"{base.method} / {cand.method}"
    return _t_contrast(math.log(estimate), se, df, confidence, f"{what}: {method}", base.paired and cand.paired)
