"""Stage 2, execution: measure each point's tasks and store the rows that come back.

runner.py (a suite run, resume; its backends) · cluster/ (the Ray executor) · points.py (tasks
into points) · rounds.py (a point's variants in rounds of fresh workers, paired)
· executor.py (the Executor protocol, the command executor) · forkserver.py (a fork server per code
tree) · lockstep.py, turns.py (workers taking turns) · worker.py (the process that measures) ·
preload.py, workerenv.py (how workers start) · ab.py, git.py (two code trees measured in lockstep)
· remeasure.py (the gate's confirmation) · environment.py (the machine fingerprint).
"""
