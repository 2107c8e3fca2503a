"""Checks as text: cell formatting shared by the terminal table and the Markdown summary."""

from __future__ import annotations

import math
from typing import Any, Iterable

from harness.compare.runs import Check, Comparison
from harness.compare.verdict import Verdict

COLUMNS: tuple[str, ...] = ("verdict", "metric", "point", "variant", "baseline", "candidate", "change",
                            "95% CI", "p adj.", "gated")
# Failing verdicts first, then what a reader should look at, then the rest.
_ORDER = {Verdict.FAILED: 0, Verdict.MISSING: 1, Verdict.CHANGED: 2, Verdict.REGRESSED: 3,
          Verdict.NOISY: 4, Verdict.IMPROVED: 5, Verdict.UNCHANGED: 6}


def value(metric: str, v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if metric == "time_ms":
        return f"{v:.3g} ms" if v < 100 else f"{v:.0f} ms"
    if metric in ("speedup",):
        return f"{v:.3f}x"
    if metric == "efficiency":
        return f"{v:.3f}"
    if metric == "peak_mem_bytes":
        return f"{v / 2**20:.2f} MiB"
    return str(v)  # exact counts: every digit matters


def percent(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:+.1f}%"


def ci(check: Check) -> str:
    if not (math.isfinite(check.ci_low) and math.isfinite(check.ci_high)):
        return "-"
    return f"[{percent(check.ci_low - 1)}, {percent(check.ci_high - 1)}]"


def p_value(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return f"{p:.2g}" if p >= 1e-4 else "<1e-4"


def cells(check: Check) -> list[str]:
    return [str(check.verdict), check.metric, check.label, check.variant, value(check.metric, check.base),
            value(check.metric, check.cand), percent(check.change), ci(check), p_value(check.p_adjusted),
            ("yes" if check.gated else "info") + (f" (±{100 * check.threshold:g}%)" if check.threshold else "")]


def sorted_checks(checks: Iterable[Check]) -> list[Check]:
    return sorted(checks, key=lambda c: (_ORDER.get(c.verdict, 9), not c.gated, c.label, c.variant, c.metric))


def shown(comparison: Comparison, everything: bool) -> list[Check]:
    """The checks worth a line: all of them, or everything but quiet unchanged ones.

    Unchanged exact and memory checks are summarized in one line instead; unchanged statistical
    checks are shown, since "unchanged" there is a finding with a CI.
    """
    if everything:
        return sorted_checks(comparison.checks)
    return sorted_checks(c for c in comparison.checks
                         if c.verdict != Verdict.UNCHANGED or c.metric in ("time_ms", "speedup", "efficiency"))


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
                 f"{p.confidence:.0%} bootstrap CIs, timing regressions re-measured {p.confirm}x)")
    lines += [f"re-measured: {path}" for path in comparison.confirmations]
    if comparison.confirm_note:
        lines.append(f"not re-measured: {comparison.confirm_note}")
    return lines


def _describe(manifest: dict[str, Any]) -> str:
    env = manifest.get("environment") or {}
    commit = (env.get("git_commit") or "unknown")[:10] + ("+dirty" if env.get("git_dirty") else "")
    return f"commit {commit}, machine {env.get('machine_fingerprint') or '?'}"


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
        out.append(f"{place}: {note}" if len(group) == 1 else f"{len(group)} {first.metric} checks: {note}")
    return out


def counts_line(comparison: Comparison) -> str:
    counts = comparison.counts()
    parts = [f"{counts[str(v)]} {v}" for v in Verdict if str(v) in counts]
    quiet = sum(1 for c in comparison.checks if c.verdict == Verdict.UNCHANGED
                and c.metric not in ("time_ms", "speedup", "efficiency"))
    line = f"{len(comparison.checks)} checks: " + ", ".join(parts)
    if quiet:
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
    out += ["", counts_line(comparison)]
    if with_verdict:
        out.append(verdict_line(comparison))
    return "\n".join(out)
