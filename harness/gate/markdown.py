"""A comparison as Markdown, fit for a pull-request comment or a GitHub Actions job summary.

The verdict comes first (one line a reviewer can act on), then the checks that need attention,
then every check folded away in <details> so the summary stays short on a green run.
"""

from __future__ import annotations

from harness.compare.render import COLUMNS, cells, grouped_notes, sorted_checks
from harness.compare.runs import Check, Comparison
from harness.compare.verdict import Verdict
from harness.gate.table import counts_line, header, shown, verdict_line


def _escape(cell: str) -> str:
    return cell.replace("|", "\\|")


def _table(checks: list[Check]) -> list[str]:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(_escape(c) for c in cells(check)) + " |" for check in checks]
    return lines


def render_markdown(comparison: Comparison, title: str = "Performance gate", gate: bool = True) -> str:
    out: list[str] = []
    if gate:
        outcome = "passed" if comparison.passed else "failed: " + verdict_line(comparison).removeprefix("FAIL: ")
        out.append(f"## {'✅' if comparison.passed else '❌'} {title} {outcome}")
    else:
        out.append(f"## {title}")
    out.append("")
    out += [f"- {line}" for line in header(comparison)]
    out += ["", counts_line(comparison), ""]
    attention = [c for c in sorted_checks(comparison.checks)
                 if c in comparison.failing() or c.verdict in (Verdict.REGRESSED, Verdict.IMPROVED, Verdict.CHANGED)]
    if attention:
        out += ["### Needs attention" if gate else "### Changes", ""] + _table(attention) + [""]
    listed = shown(comparison, everything=True)
    out += ["<details><summary>All checks</summary>", ""] + _table(listed) + ["", "</details>", ""]
    notes = grouped_notes(listed)
    if notes:
        out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    out.append("Verdicts: *regressed*/*improved* = significant after correction **and** beyond the "
               "threshold; *too noisy* = the CI is wider than the threshold; *too few samples* = no honest 95% "
               "interval (one round of pairs, or too few samples), so not tested; *changed* = a deterministic "
               "metric differs. Change and CI are candidate ÷ baseline − 1.")
    return "\n".join(out) + "\n"
