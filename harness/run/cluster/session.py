"""Connecting to a Ray cluster for one run, or starting a local instance that lives as long."""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import ray

from harness.run.cluster.code import shipping_runtime_env
from harness.run.cluster.settings import NAMESPACE, SLOT_RESOURCE, ClusterError, check_address
from harness.run.executor import CODE_ROOT


# How long the head's port may take to accept a connection. Ray itself retries an address that
# does not answer for minutes before it gives up; a wrong address should fail at once.
PROBE_S = 10.0
NO_CLUSTER = "no running Ray cluster is known here (no RAY_ADDRESS, none started on this machine)"


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
    hint = ""
    if address is not None:
        check_address(address)
        if address == "auto":
            hint = (f"; start one with `ray start --head --resources='{{\"{SLOT_RESOURCE}\": 1}}'`, or leave out "
                    "--ray-address to start a local instance for the run")
        if (why := _unreachable(address)) is not None:
            raise ClusterError(f"could not connect to the Ray cluster at {address}: {why}{hint}")
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
        if address is not None and os.environ.get("RAY_AUTH_MODE") != "token":
            # Something answered (the probe passed), so a refused token is the likely cause: `ray
            # start` clusters require one by default from Ray 2.59 on, and Ray says so only in its log.
            hint += ("; if the cluster uses token authentication, set RAY_AUTH_MODE=token here too, with its "
                     "token in ~/.ray/auth_token or RAY_AUTH_TOKEN")
        raise ClusterError(f"could not connect to {where}: {first}{hint}") from None
    try:
        yield Session(address=address, ships_code=address is not None, ray_version=ray.__version__)
    finally:
        ray.shutdown()


def _unreachable(address: str) -> str | None:
    """Why nothing answers at `address` (`auto` resolved as Ray resolves it), or None if something
    does or the address cannot be resolved here (then Ray's own error says what is wrong)."""
    target = address.removeprefix("ray://")
    if not address.startswith("ray://"):
        try:  # Ray's own resolution: `auto` is the cluster this machine last joined or started
            from ray._private.services import canonicalize_bootstrap_address

            target = canonicalize_bootstrap_address(address) or ""
        except Exception as error:  # noqa: BLE001 - a private helper; its absence or complaint is Ray's to report
            return NO_CLUSTER if address == "auto" and isinstance(error, ConnectionError) else None
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        return NO_CLUSTER if address == "auto" else None
    try:
        socket.create_connection((host, int(port)), timeout=PROBE_S).close()
    except OSError as error:
        return f"nothing answers at {host}:{port} ({error.strerror or error})"
    return None
