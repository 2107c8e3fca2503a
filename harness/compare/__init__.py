"""The judge: one comparison engine for every verdict the harness prints.

within.py (reuse against each baseline inside one run) · runs.py (two runs, check by check) ·
paired.py (the one estimator of every ratio and its CI) and timing.py (which of its methods two
rows allow) · verdict.py (significance AND threshold, corrected for many checks) · policy.py (the
thresholds) · rows.py (where a row was measured, and its label) · render.py and fmt.py (a check
and its numbers as text, the same in the terminal, Markdown and HTML printers).
"""
