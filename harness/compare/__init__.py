"""The judge: one comparison engine for every verdict the harness prints.

within.py (reuse against each baseline inside one run) · runs.py (two runs, check by check) ·
verdict.py (significance AND threshold, corrected for many checks) · policy.py (the thresholds).
"""
