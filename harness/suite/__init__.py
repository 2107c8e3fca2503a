"""Stage 1, the plan: a suite file becomes a validated `Suite`, then one `PointTask` per (point, variant).

loading.py (Suite, load_suite) · sections.py and checks.py (validation, every problem at once, and
`load_checked`, the YAML file loader the gate policy shares: `file:line[:column]: key.path:
expected …; found …`) · yamlpos.py (YAML parsing that remembers lines) · points.py (the points of
a sweep) · sweep.py (expansion and point identity) · task.py (PointTask and the measure/accuracy
settings) · estimate.py (the dry run: what will run, and roughly how long).
"""
