"""The gate's statistical rule: a change is a regression only if significant AND past its threshold.

Pure functions over numpy arrays. Significance alone would fail on a harmless 1% shift measured
precisely, a threshold alone on noise; a regression needs both. Every quantity is a ratio
candidate ÷ baseline of a metric (absolute times, within-run speedups), estimated with its CI and
p-value by paired.py (which estimator applies to which rows: timing.py); here:

- Many checks at once: p-values are adjusted across every gated statistical check of a gate
  (Holm: family-wise error; BH: false discovery rate).
- Verdict: regressed/improved when the adjusted p < alpha and the estimate is beyond the threshold
  in that direction; otherwise "too noisy to tell" when the CI is wider than the threshold (a
  change of threshold size would fit inside it), else unchanged. A check whose estimator could
  give no honest interval (one round of pairs, too few samples) is "too few samples" and is left
  out of the adjustment: it was never tested.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness import stats


class Verdict(str, Enum):
    IMPROVED = "improved"
    REGRESSED = "regressed"
    UNCHANGED = "unchanged"
    NOISY = "too noisy"
    FEW = "too few samples"  # no honest 95% interval: no test was made
    CHANGED = "changed"      # an exact metric differs
    MISSING = "missing"      # a baseline row the candidate lacks
    FAILED = "failed"        # a baseline row whose candidate run failed

    def __str__(self) -> str:
        return self.value


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
