"""The CI gate: compare stored runs under a policy, print the verdict, publish a job summary.

    harness gate CAND_RUN --baseline BASELINE_RUN [--policy FILE] [--summary FILE]

Exit codes: 0 pass, 1 a gated check failed, 2 invalid input (harness.errors).
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.results.load import Run, load_run
from harness.compare.runs import Comparison, Context, NothingToCompare, compare_runs
from harness.errors import EXIT_FAILED, EXIT_OK, InputError
from harness.gate.markdown import render_markdown
from harness.compare.policy import load_policy
from harness.gate.table import terminal


class GateInputError(InputError):
    """A run directory the gate cannot use: missing, damaged, or sharing no point with the other."""


def open_run(path: str | Path, role: str) -> Run:
    path = Path(path)
    if not (path / "manifest.json").is_file():
        raise GateInputError(f"{role} {path}: not a run directory (expected {path / 'manifest.json'})")
    try:
        return load_run(path)
    except (ValueError, OSError) as error:  # damaged results, unsupported format version
        raise GateInputError(f"{role} {path}: {error}") from None


def compare_dirs(base: str | Path, cand: str | Path, policy_file: str | Path | None,
                 context: Context | None = None) -> Comparison:
    """Load both runs and the policy (PolicyError on a bad policy) and compare them."""
    policy = load_policy(policy_file)
    base_run, cand_run = open_run(base, "baseline"), open_run(cand, "candidate")
    try:
        return compare_runs(base_run, cand_run, policy, context)
    except NothingToCompare as error:
        raise GateInputError(str(error)) from None


def confirm_stored(comparison: Comparison) -> Comparison:
    """Re-measure the points of timing regressions with this checkout (policy.confirm times)."""
    from harness.gate.confirm import confirm, suspects
    from harness.run.remeasure import stored_remeasure

    if comparison.policy.confirm < 1 or not suspects(comparison):
        return comparison
    remeasure, comparison.confirm_note = stored_remeasure(comparison.base, comparison.cand)
    if remeasure is None:
        return comparison
    print(f"re-measuring {len(suspects(comparison))} timing regression(s) before failing ...", flush=True)
    return confirm(comparison, remeasure, comparison.policy.confirm)


def exit_code(comparison: Comparison) -> int:
    return EXIT_OK if comparison.passed else EXIT_FAILED


def publish(comparison: Comparison, *, gate: bool, everything: bool = False,
            markdown_file: str | Path | None = None, append_step_summary: bool = False) -> list[Path]:
    """Print the table; write the Markdown to `markdown_file`, or append it to
    $GITHUB_STEP_SUMMARY when asked and set. Returns the files written."""
    print(terminal(comparison, everything=everything, with_verdict=gate))
    markdown = render_markdown(comparison, gate=gate,
                               title="Performance gate" if gate else "Performance comparison")
    written = []
    if markdown_file is not None:
        path = Path(markdown_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(markdown, encoding="utf-8")
        written.append(path)
    elif append_step_summary and os.environ.get("GITHUB_STEP_SUMMARY"):
        # GitHub collects the job summary from this file; several steps may append to it.
        path = Path(os.environ["GITHUB_STEP_SUMMARY"])
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(markdown)
        written.append(path)
    for path in written:
        print(f"summary: {path}")
    return written
