"""Connecting to a Ray cluster for one run, or starting a local instance that lives as long."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import ray

from harness.run.cluster.code import shipping_runtime_env
from harness.run.cluster.settings import NAMESPACE, SLOT_RESOURCE, ClusterError, check_address
from harness.run.executor import CODE_ROOT


@dataclass(frozen=True)
class Session:
    address: str | None   # as asked: None for a local instance started for the run
    ships_code: bool      # this checkout travels as the job's working directory
    ray_version: str

    def record(self) -> dict[str, object]:
        return {"address": self.address, "local_instance": self.address is None, "ray_version": self.ray_version,
                "code_shipped_as": "working_dir" if self.ships_code else "this machine's checkout"}


@contextmanager
def connect(address: str | None) -> Iterator[Session]:
    """Connect to the cluster at `address` (`auto`, HOST:PORT, ray://HOST:PORT) with this checkout
    as the job's working directory, or, without an address, start a local Ray instance whose one
    node has this machine's CPUs and GPUs and one measuring slot; disconnect (and stop the local
    instance) after. A cluster that cannot be reached is a ClusterError (exit 2)."""
    if address is not None:
        check_address(address)
    quiet = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            # "local", not None: a RAY_ADDRESS in the environment must not divert the run elsewhere.
            ray.init(address="local", num_cpus=os.cpu_count(), resources={SLOT_RESOURCE: 1},
                     include_dashboard=False, **quiet)
        else:
            ray.init(address=address, runtime_env=shipping_runtime_env(CODE_ROOT), **quiet)
    except (ConnectionError, TimeoutError, ValueError, RuntimeError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        hint = ("; start one with `ray start --head` or leave out --ray-address to start a local instance for the run"
                if address == "auto" else "")
        raise ClusterError(f"could not connect to {where}: {first}{hint}") from None
    try:
        yield Session(address=address, ships_code=address is not None, ray_version=ray.__version__)
    finally:
        ray.shutdown()
