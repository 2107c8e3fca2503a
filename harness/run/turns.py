"""Taking turns with other workers: the worker side of a lockstep A/B measurement.

In `harness gate --against REV` a worker of each code version is alive at once, and a conductor
(harness/run/lockstep.py) lets exactly one of them run at a time: the holder of the turn does all
its work (model build, warm-up, memory and FLOP steps) and gives the turn back after each timed
step. Timed steps of the two versions therefore alternate one for one, each with the machine to
itself, and step i of one version and step i of the other are taken a few hundred milliseconds
apart: whatever the machine does on the scale of seconds (another tenant, a frequency change)
hits both alike, and the gate compares them pair by pair.

The protocol is one byte per message over two FIFOs made by the conductor, named in
REUSE_BENCH_TURNS as "GO_PATH:DONE_PATH":
    conductor -> worker, on GO:   b"g"  your turn
    worker -> conductor, on DONE: b"d"  one timed step done, turn given back
                                  b"x"  finished, out of the rotation
A worker outside a lockstep measurement (no variable) never waits. If the conductor goes away,
reading GO ends (EOF) and the worker carries on alone rather than hang.
"""

from __future__ import annotations

import os

ENV = "REUSE_BENCH_TURNS"


class Turns:
    """This worker's end of the turn-taking; a no-op when not in a lockstep measurement."""

    def __init__(self, go_path: str | None = None, done_path: str | None = None) -> None:
        self._go = self._done = -1
        if go_path and done_path:
            # The conductor holds both FIFOs open read-write, so neither open blocks while it lives.
            # If it died first (its process killed, or a cluster node with it), a blocking open would
            # wait forever for a partner: open without blocking instead, and go on alone.
            self._go = os.open(go_path, os.O_RDONLY | os.O_NONBLOCK)
            os.set_blocking(self._go, True)  # a read waits for the turn, or ends at EOF
            try:
                self._done = os.open(done_path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody reads the other end, the conductor is gone
                self._detach()
                return
            os.set_blocking(self._done, True)

    @classmethod
    def from_env(cls) -> "Turns":
        spec = os.environ.get(ENV, "")
        go, _, done = spec.partition(":")
        return cls(go or None, done or None)

    @property
    def active(self) -> bool:
        return self._go >= 0

    def wait(self) -> None:
        """Block until it is this worker's turn."""
        if self._go < 0:
            return
        if os.read(self._go, 1) != b"g":  # EOF: the conductor is gone, go on alone
            self._detach()

    def give_back(self) -> None:
        """One timed step done: hand the machine to the next worker and wait for the turn again."""
        if self._send(b"d"):
            self.wait()

    def finish(self) -> None:
        """Leave the rotation (when the worker is done, or failing)."""
        self._send(b"x")
        self._detach()

    def _send(self, message: bytes) -> bool:
        if self._done < 0:
            return False
        try:
            os.write(self._done, message)
            return True
        except OSError:  # the conductor is gone
            self._detach()
            return False

    def _detach(self) -> None:
        for fd in (self._go, self._done):
            if fd >= 0:
                os.close(fd)
        self._go = self._done = -1
