"""Stage 2, execution: hand each point's tasks to an executor and store the rows it returns.

runner.py (a suite run, resume) · executor.py (the Executor protocol, local fork-server and command
executors) · worker.py (the process that measures) · preload.py, workerenv.py (how workers start) ·
forkserver.py, lockstep.py, turns.py (a fork server per code tree; workers taking turns) ·
ab.py, git.py (two code trees measured in lockstep) · environment.py (the machine fingerprint).
"""
