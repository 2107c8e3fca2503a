"""Counting the starts of each unit: how a retried unit is told apart.

Ray's retries are off for measurements (tasks: max_retries=0; measurers: no restarts, no task
retries), and Ray 2.x tells a running task nothing of its attempt number (the runtime context has
none; only an actor learns that it was reconstructed). So each unit asks the run's ledger as it
starts, and a second start of the same unit is a retry, whatever caused it. Imports Ray alone: the
ledger's own worker process need not import torch.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.exceptions import RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

TIMEOUT_S = 30.0


class AttemptLedger:
    def __init__(self) -> None:
        self._starts: dict[str, int] = {}

    def begin(self, key: str) -> int:
        """The attempt this start is: 0 the first time `key` starts."""
        attempt = self._starts.get(key, 0)
        self._starts[key] = attempt + 1
        return attempt


def start_ledger() -> Any:
    """The run's ledger, on the driver's node (it lives and dies with the run, using no CPU slot)."""
    here = ray.get_runtime_context().get_node_id()
    return ray.remote(AttemptLedger).options(
        num_cpus=0, max_restarts=0,
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=True)).remote()


def attempt(ledger: Any, key: str) -> int | None:
    """Record a start of unit `key`; which attempt it is, or None if the ledger cannot be asked
    (its node went away: the unit is measured anyway and its rows say `retried` unknown)."""
    try:
        return int(ray.get(ledger.begin.remote(key), timeout=TIMEOUT_S))
    except RayError:
        return None
