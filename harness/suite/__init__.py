"""Stage 1, the plan: a suite file becomes a validated `Suite`, then one `PointTask` per (point, variant).

loading.py (Suite, load_suite) · sections.py and checks.py (validation, every problem at once) ·
yamlpos.py (the checked YAML loader: `file:line:column: key.path: expected …; found …`) ·
sweep.py (expansion and point identity) · task.py (PointTask and the measure/accuracy settings).
"""
