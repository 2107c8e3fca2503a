"""Exit codes of the `harness` command, and the one base class of every bad-input error.

Every stage raises its own InputError subclass for input it cannot use (a suite, a policy, a run
directory, a git revision, an allocator setting); the command line catches InputError once and
prints its message without a traceback. This module imports nothing from the harness, so any
stage can raise these and no stage needs the command line to do it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1        # a measured point failed (run), or the gate found a regression
EXIT_USAGE = 2         # invalid input: the message says what to fix
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a command ended by Ctrl-C


class InputError(Exception):
    """Input the harness cannot use: printed as its message alone, exit code 2."""


class UsageError(InputError):
    """A command line that asks for something impossible (a missing or contradictory option)."""
