"""The CI performance gate: the commands that apply a policy's verdicts, and their printers.

The judging itself (matching runs, changes, CIs, corrected p-values, verdicts, the policy) is
harness.compare's, shared with the HTML report; this package decides what a verdict does.

- gate.py: load, compare, publish, exit code.  confirm.py: re-measure a timing regression first.
- table.py / markdown.py: the terminal table and the CI job summary.
- commands.py: the compare, gate and export subcommands of `harness`.
"""
