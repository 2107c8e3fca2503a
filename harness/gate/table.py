"""A comparison in the terminal: who against whom, the checks worth a line, the counts, the verdict."""

from __future__ import annotations

from typing import Any

from harness.compare.render import COLUMNS, STATISTICAL, cells, grouped_notes, sorted_checks, tally
from harness.compare.runs import Check, Comparison
from harness.compare.verdict import Verdict


def shown(comparison: Comparison, everything: bool) -> list[Check]:
    """The checks worth a line: all of them, or everything but quiet unchanged ones.

    Unchanged exact and memory checks are summarized in one line instead; unchanged statistical
    checks are shown, since "unchanged" there is a finding with a CI.
    """
    if everything:
        return sorted_checks(comparison.checks)
    return sorted_checks(c for c in comparison.checks
                         if c.verdict != Verdict.UNCHANGED or c.metric in STATISTICAL)


def render(checks: list[Check]) -> str:
    rows = [list(COLUMNS)] + [cells(c) for c in checks]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    right = {4, 5, 6, 8}
    lines = ["  ".join(cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
             .rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def header(comparison: Comparison) -> list[str]:
    """Who is compared with whom, and under which rules: the lines above any table."""
    base, cand = comparison.base, comparison.cand
    lines = [f"baseline:  {base.path}  ({_describe(base.manifest)})",
             f"candidate: {cand.path}  ({_describe(cand.manifest)})"]
    if comparison.context == "interleaved":
        lines.append("context: interleaved A/B on one machine: absolute times gated")
    elif comparison.same_machine:
        lines.append("context: stored baseline, same machine fingerprint: absolute times gated")
    else:
        lines.append("context: stored baseline, different machine: absolute times informational, "
                     "within-run ratios gated")
    p = comparison.policy
    lines.append(f"policy: {p.source} (alpha={p.alpha:g}, correction={p.correction}, "
                 f"{p.confidence:.0%} CIs, timing regressions re-measured {p.confirm}x)")
    lines += [f"re-measured: {path}" for path in comparison.confirmations]
    if comparison.confirm_note:
        lines.append(f"re-measurement: {comparison.confirm_note}")
    return lines


def _describe(manifest: dict[str, Any]) -> str:
    env = manifest.get("environment") or {}
    commit = (env.get("git_commit") or "unknown")[:10] + ("+dirty" if env.get("git_dirty") else "")
    return f"commit {commit}, machine {env.get('machine_fingerprint') or '?'}"


def counts_line(comparison: Comparison, everything: bool = True) -> str:
    """How many checks got each verdict; `everything`: whether the table below lists them all."""
    quiet = sum(1 for c in comparison.checks if c.verdict == Verdict.UNCHANGED and c.metric not in STATISTICAL)
    line = f"{len(comparison.checks)} checks: {tally(comparison.checks)}"
    if quiet and not everything:
        line += f" ({quiet} unchanged exact/memory checks not listed)"
    if comparison.new_rows:
        line += f"; {comparison.new_rows} candidate row(s) not in the baseline"
    return line


def verdict_line(comparison: Comparison) -> str:
    failing = comparison.failing()
    if not failing:
        return "PASS: no gated check regressed"
    kinds: dict[str, int] = {}
    for c in failing:
        kinds[str(c.verdict)] = kinds.get(str(c.verdict), 0) + 1
    return "FAIL: " + ", ".join(f"{n} {k}" for k, n in kinds.items())


def terminal(comparison: Comparison, everything: bool = False, with_verdict: bool = False) -> str:
    checks = shown(comparison, everything)
    out = header(comparison) + [""]
    out.append(render(checks) if checks else "(no checks to list)")
    notes = grouped_notes(checks)
    if notes:
        out += ["", "notes:"] + [f"  {n}" for n in notes]
    out += ["", counts_line(comparison, everything)]
    if with_verdict:
        out.append(verdict_line(comparison))
    return "\n".join(out)
