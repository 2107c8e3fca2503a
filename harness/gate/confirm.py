"""Re-measure before failing: a timing regression must reproduce in a fresh measurement.

On a shared machine the load can change between the baseline and the reuse variant of one worker
(seconds apart), or during a whole worker, and shift every sample of it at once: the samples then
agree with each other, the change looks significant, and no statistic computed from that one
measurement can tell it from a real regression. A second, independent measurement can: a load
burst does not come back at the same point in the same direction, a slower code path does. So
before the gate fails on a timing check, the points behind the failing checks are measured again
(the stored-baseline gate: the candidate's suite with this checkout's code, and the baseline's
too when it is a run of this commit, else it stays as stored; the A/B gate: both sides,
interleaved again) and a check fails only if it regresses every time. Exact checks (FLOPs,
parameters), memory and missing points are deterministic and need no confirmation. This module
judges; the measuring is harness.run's (remeasure.py, ab.py), handed in as a Remeasure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.compare import fmt
from harness.compare.runs import Check, Comparison, compare_runs
from harness.compare.policy import METRIC_KINDS
from harness.compare.verdict import Verdict

if TYPE_CHECKING:  # the judge only calls what it is handed; it never loads an executor itself
    from harness.run.remeasure import Remeasure


def suspects(comparison: Comparison) -> list[Check]:
    return [c for c in comparison.failing() if METRIC_KINDS.get(c.metric) == "statistical"]


def point_ids(checks: list[Check]) -> set[str]:
    """Every row a check was computed from: the row itself and, for ratios, its reference."""
    ids = {c.point_id for c in checks}
    ids |= {c.fields["reference_point_id"] for c in checks if c.fields.get("reference_point_id")}
    return ids


def confirm(comparison: Comparison, remeasure: Remeasure, attempts: int) -> Comparison:
    """Downgrade timing regressions that do not reproduce to "too noisy"; returns `comparison`."""
    for attempt in range(1, attempts + 1):
        pending = [c for c in suspects(comparison) if "not reproduced" not in c.note]
        if not pending:
            break
        base, cand = remeasure(point_ids(pending))
        again = compare_runs(base, cand, comparison.policy, comparison.context)
        comparison.confirmations.append(cand.path)
        found = {(c.metric, c.point_id, c.variant): c for c in again.checks}
        for check in pending:
            other = found.get((check.metric, check.point_id, check.variant))
            seen = f"{other.verdict}, {fmt.change(other.ratio)}" if other else "not measured"
            if other is not None and other.verdict == Verdict.REGRESSED:
                check.note = _join(check.note, f"reproduced on re-measurement {attempt} ({seen})")
            else:
                check.note = _join(check.note, f"{fmt.change(check.ratio)} here, not reproduced on "
                                               f"re-measurement {attempt} ({seen})")
                check.verdict = Verdict.NOISY
    return comparison


def _join(note: str, more: str) -> str:
    return f"{note}; {more}" if note else more
