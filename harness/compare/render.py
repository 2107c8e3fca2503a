"""Checks as text: the columns, cells, order, notes and counts every printer of a comparison shows.

The terminal table and Markdown summary (harness.gate) and the HTML comparison page
(harness.report) all lay out these cells, so one check reads the same wherever it is printed.
"""

from __future__ import annotations

from typing import Any, Iterable

from harness.compare import fmt
from harness.compare.policy import METRIC_KINDS
from harness.compare.runs import Check
from harness.compare.verdict import Verdict

COLUMNS: tuple[str, ...] = ("verdict", "metric", "point", "variant", "baseline", "candidate", "change",
                            "95% CI", "p adj.", "gated")
STATISTICAL: frozenset[str] = frozenset(m for m, kind in METRIC_KINDS.items() if kind == "statistical")
# Failing verdicts first, then what a reader should look at, then the rest.
_ORDER = {Verdict.FAILED: 0, Verdict.MISSING: 1, Verdict.CHANGED: 2, Verdict.REGRESSED: 3,
          Verdict.NOISY: 4, Verdict.FEW: 4, Verdict.IMPROVED: 5, Verdict.UNCHANGED: 6}


def value(metric: str, v: Any) -> str:
    """A metric's value in its unit; deterministic counts keep every digit, since one matters."""
    if metric == "time_ms":
        return fmt.ms(v)
    if metric in ("speedup", "efficiency"):
        return fmt.times(v)
    if metric == "peak_mem_bytes":
        return fmt.bytes_(v)
    return fmt.exact(v)


def gated(check: Check) -> str:
    """Whether the check can fail a gate, and the change it must exceed to count."""
    return ("yes" if check.gated else "info") + (f" (±{100 * check.threshold:g}%)" if check.threshold else "")


def cells(check: Check) -> list[str]:
    """The COLUMNS of one check."""
    return [str(check.verdict), check.metric, check.label, check.variant, value(check.metric, check.base),
            value(check.metric, check.cand), fmt.change(check.ratio), fmt.change_ci(check.ci_low, check.ci_high),
            fmt.p_value(check.p_adjusted), gated(check)]


def sorted_checks(checks: Iterable[Check]) -> list[Check]:
    return sorted(checks, key=lambda c: (_ORDER.get(c.verdict, 9), not c.gated, c.label, c.variant, c.metric))


def tally(checks: Iterable[Check]) -> str:
    """'3 regressed, 12 unchanged': how many checks got each verdict, in the Verdict's order."""
    verdicts = [c.verdict for c in checks]
    return ", ".join(f"{verdicts.count(v)} {v}" for v in Verdict if v in verdicts) or "none"


def grouped_notes(checks: Iterable[Check]) -> list[str]:
    """Each distinct note once, with where it applies (one line, not one per check)."""
    where: dict[str, list[Check]] = {}
    for c in checks:
        if c.note:
            where.setdefault(c.note, []).append(c)
    out = []
    for note, group in where.items():
        first = group[0]
        place = f"{first.metric} {first.label} {first.variant}"
        metrics = {c.metric for c in group}
        what = f"{first.metric} checks" if len(metrics) == 1 else "checks"  # e.g. a speedup and its efficiency
        out.append(f"{place}: {note}" if len(group) == 1 else f"{len(group)} {what}: {note}")
    return out
