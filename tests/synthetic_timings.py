"""Synthetic timings of two rows with a known ratio, for checking the estimators (harness.compare.paired).

Shared by tests/test_paired_estimator.py and benchmarks/bench_estimator.py. A trial is R rounds
(fresh worker processes) of n samples per row; on the log scale a step of row s, round r, index i
takes

    log t = log scale_s + moment_ri + process_sr + noise_sri

- moment: what the machine is doing at that instant, a random walk over the round (±20%). In
  lockstep both rows' step i is taken within one rotation and shares it; measured one row after
  the other ("sequential"), each row has a walk of its own.
- process: a per-row, per-round offset (memory layout, core, allocator state of that worker): what
  pairing cannot cancel, and why rounds, not pairs, are the unit of replication.
- noise, one of NOISE_MODELS:
    iid     independent normal step noise;
    ar1     autocorrelated within a round (AR(1), phi = 0.7), the same marginal spread;
    bursty  iid noise plus stalls that hit one step of a pair (5% of steps, +10..60%), and in 30%
            of rounds a stretch of a third of its pairs in which one row (either) runs 5..20% slower.

Every model treats the two rows alike, so the true ratio of their medians is `ratio` exactly, and
the per-pair log ratio is symmetric about log(ratio).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Noise = Literal["iid", "ar1", "bursty"]
NOISE_MODELS: tuple[Noise, ...] = ("iid", "ar1", "bursty")


@dataclass(frozen=True)
class Design:
    rounds: int = 8
    per_round: int = 4         # samples per row and round (the pairs of a round)
    step_sd: float = 0.03      # log-scale sd of a step's own noise
    process_sd: float = 0.02   # log-scale sd of a worker's offset
    drift_sd: float = 0.05     # log-scale step of the machine's random walk, clipped to ±0.2
    phi: float = 0.7           # AR(1) coefficient of the ar1 model


def _noise(rng: np.random.Generator, model: Noise, shape: tuple[int, ...], d: Design) -> NDArray[np.float64]:
    """Step noise of one row, shape (trials, rounds, per_round)."""
    z = rng.normal(0.0, d.step_sd, shape)
    if model == "ar1":
        # e_i = phi e_{i-1} + sqrt(1 - phi^2) z_i keeps the marginal sd at step_sd
        e = np.empty(shape)
        e[..., 0] = z[..., 0]
        for i in range(1, shape[-1]):
            e[..., i] = d.phi * e[..., i - 1] + np.sqrt(1.0 - d.phi ** 2) * z[..., i]
        return e
    if model == "bursty":
        stalls = rng.random(shape) < 0.05
        return z + np.where(stalls, np.log1p(rng.uniform(0.1, 0.6, shape)), 0.0)
    return z


def _stretches(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Log slowdowns of (row 0, row 1) from the bursty model's stretches of consecutive pairs."""
    trials, rounds, n = shape
    length = max(1, n // 3)
    hit = rng.random((trials, rounds)) < 0.3
    start = rng.integers(0, n - length + 1, (trials, rounds))
    index = np.arange(n)
    inside = hit[..., None] & (index >= start[..., None]) & (index < (start + length)[..., None])
    size = np.log1p(rng.uniform(0.05, 0.2, (trials, rounds)))[..., None]
    first = (rng.random((trials, rounds)) < 0.5)[..., None]
    return np.where(inside & first, size, 0.0), np.where(inside & ~first, size, 0.0)


def _walk(rng: np.random.Generator, shape: tuple[int, ...], d: Design) -> NDArray[np.float64]:
    return np.cumsum(rng.normal(0.0, d.drift_sd, shape), axis=-1).clip(-0.2, 0.2)


def timings(rng: np.random.Generator, model: Noise, ratio: float, trials: int, design: Design = Design(),
            lockstep: bool = True) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(slow, fast): two rows' times, each (trials, rounds, per_round); slow ÷ fast = `ratio` in truth."""
    shape = (trials, design.rounds, design.per_round)
    moment = _walk(rng, shape, design)
    moments = (moment, moment) if lockstep else (moment, _walk(rng, shape, design))
    stretch = _stretches(rng, shape) if model == "bursty" else (0.0, 0.0)
    rows = []
    for s, scale in enumerate((ratio, 1.0)):
        process = rng.normal(0.0, design.process_sd, shape[:2])[..., None]
        rows.append(10.0 * scale * np.exp(moments[s] + process + _noise(rng, model, shape, design) + stretch[s]))
    return rows[0], rows[1]
