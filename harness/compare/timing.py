"""A row's timings as the estimator needs them, and which estimator (paired.py) two rows allow.

A timed row carries `time_ms_samples` (its rounds' samples concatenated in round order),
`round_sizes` (samples per round), `pairing` ("lockstep" | "sequential") and `pair_id` (shared by
the rows of one point measured together). In lockstep, sample i of round r of every row with that
pair_id was taken in one rotation. Rows stored before these fields existed say `ab_round_sizes`
and `ab_lockstep` (an A/B side), or nothing: one round, unpaired.

Three judgements, each taking the strongest design the rows allow:
- a speedup inside one run (`speedup`): lockstep pairs; else round medians; else one round each;
- a time change between two runs (`time_change`) and the change of a speedup between two runs
  (`speedup_change`): across the sides of one lockstep A/B measurement, pairs; across its
  alternating rounds, round medians; otherwise two independent runs, combined (paired.between_runs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.compare.paired import (Contrast, between_runs, from_rounds, no_interval, paired_contrast, paired_logs,
                                    round_medians, samples_ratio)
from harness.compare.rows import num


@dataclass(frozen=True)
class Timing:
    """One row's samples split by round, positions kept (NaN where a sample is missing)."""

    rounds: tuple[NDArray[np.float64], ...]
    lockstep: bool           # sample i of round r was taken in one rotation with its pair_id's rows
    pair_id: str | None

    def valid_rounds(self) -> list[NDArray[np.float64]]:
        """Each round's positive finite samples; rounds left without any are dropped."""
        kept = [r[np.isfinite(r) & (r > 0)] for r in self.rounds]
        return [r for r in kept if r.size]

    def samples(self) -> NDArray[np.float64]:
        valid = self.valid_rounds()
        return np.concatenate(valid) if valid else np.empty(0)


def timing(row: dict[str, Any]) -> Timing:
    values = row.get("time_ms_samples")
    x = np.array([num(v) for v in values], dtype=np.float64) if isinstance(values, (list, tuple, np.ndarray)) \
        else np.empty(0)
    sizes = row.get("round_sizes")
    if not isinstance(sizes, (list, tuple, np.ndarray)):
        sizes = row.get("ab_round_sizes")
    rounds = [x]
    if isinstance(sizes, (list, tuple, np.ndarray)) and len(sizes) > 1 and int(np.sum(sizes)) == x.size:
        rounds = np.split(x, np.cumsum(sizes)[:-1].astype(int))
    pairing = row.get("pairing")
    lockstep = pairing == "lockstep" if pairing is not None else bool(row.get("ab_lockstep"))
    pair_id = row.get("pair_id")
    return Timing(tuple(rounds), lockstep, pair_id if isinstance(pair_id, str) else None)


def _unpaired(num_: Timing, den: Timing, same_rounds: bool, confidence: float) -> Contrast:
    """num ÷ den without pairs: by round when both were measured in the same R ≥ 2 rounds
    (`same_rounds`), else two sets of rounds (Welch), else one round each."""
    a, b = num_.valid_rounds(), den.valid_rounds()
    if same_rounds and len(a) == len(b) >= 2:
        return round_medians([a, b], [1, -1], confidence)
    if min(len(a), len(b)) >= 2:
        log_medians = [from_rounds([np.log(np.median(r)) for r in rs], confidence, "round medians") for rs in (b, a)]
        return between_runs(*log_medians, confidence, what="two sets of rounds")
    return samples_ratio(num_.samples(), den.samples(), confidence)


def speedup(reference: Timing, candidate: Timing, confidence: float = 0.95) -> Contrast:
    """reference time ÷ candidate time inside one run (> 1: the candidate is faster)."""
    if not (reference.samples().size and candidate.samples().size):
        return no_interval(float("nan"), "no samples")
    together = reference.lockstep and candidate.lockstep and reference.pair_id is not None \
        and reference.pair_id == candidate.pair_id
    if together and (pairs := paired_logs(candidate.rounds, reference.rounds)) is not None:
        return paired_contrast([pairs], [1], confidence)
    return _unpaired(reference, candidate, reference.pair_id is not None and reference.pair_id == candidate.pair_id,
                     confidence)


def time_change(base: Timing, cand: Timing, ab_lockstep: bool, interleaved: bool,
                confidence: float = 0.95) -> Contrast:
    """cand time ÷ base time of one row measured in two runs.

    `ab_lockstep`: the runs are the two sides of one lockstep A/B measurement, so their rows pair
    by (round, index); `interleaved`: the sides' rounds alternated, round r of each back to back.
    """
    if ab_lockstep and base.lockstep and cand.lockstep and (pairs := paired_logs(base.rounds, cand.rounds)):
        return paired_contrast([pairs], [1], confidence)
    return _unpaired(cand, base, interleaved, confidence)


def speedup_change(base_ref: Timing, base_reuse: Timing, cand_ref: Timing, cand_reuse: Timing, ab_lockstep: bool,
                   interleaved: bool, confidence: float = 0.95) -> Contrast:
    """speedup in the candidate run ÷ speedup in the baseline run (speedup = ref time ÷ reuse time)."""
    rows = (base_ref, base_reuse, cand_ref, cand_reuse)
    if ab_lockstep and all(t.lockstep for t in rows):
        ref, reuse = paired_logs(base_ref.rounds, cand_ref.rounds), paired_logs(base_reuse.rounds, cand_reuse.rounds)
        if ref and reuse:  # (ref_c / ref_b) ÷ (reuse_c / reuse_b), pair by pair
            return paired_contrast([ref, reuse], [1, -1], confidence)
    valid = [t.valid_rounds() for t in rows]
    if interleaved and len({len(v) for v in valid}) == 1 and len(valid[0]) >= 2:
        return round_medians([valid[2], valid[3], valid[0], valid[1]], [1, -1, -1, 1], confidence)
    return between_runs(speedup(base_ref, base_reuse, confidence), speedup(cand_ref, cand_reuse, confidence),
                        confidence)
