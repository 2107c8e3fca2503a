"""What `--executor ray` is told and says, importable without Ray: the measuring-slot resource,
the addresses `--ray-address` takes, the error every unusable cluster becomes, and the check that
Ray is installed at all."""

from __future__ import annotations

import re

from harness.errors import InputError, UsageError

# The custom Ray resource a node advertises once per measuring slot: a timing unit holds one for
# its whole measurement, so it has the node (its CPUs, and its GPUs) to itself. A node started
# without it still runs accuracy units, never timing ones.
SLOT_RESOURCE = "measuring_slot"
RAY_EXTRA = "pip install -e '.[ray]'"
# A Ray namespace of our own: the job's actors are named nowhere else's.
NAMESPACE = "reuse-bench"

_ADDRESS = re.compile(r"^(auto|(ray://)?[A-Za-z0-9_.\-]+:\d{1,5})$")


class ClusterError(InputError):
    """A cluster this run cannot use (unreachable, no measuring slot, other code): exit 2."""


def check_address(address: str) -> str:
    """`auto`, HOST:PORT (a cluster's head, e.g. 10.0.0.5:6379) or ray://HOST:PORT (Ray Client)."""
    if not _ADDRESS.match(address):
        raise UsageError(f"--ray-address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return address


def require_ray() -> None:
    """UsageError (exit 2, one line) unless Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise UsageError(f"--executor ray needs Ray, which is not installed here: {RAY_EXTRA} installs "
                         "the `ray` extra") from None


def slot_node_command(head: str = "HEAD_IP:6379", slots: int = 1) -> str:
    """How to start a node that measures: joined to the head, advertising its measuring slot."""
    return f"ray start --address={head} --resources='{{\"{SLOT_RESOURCE}\": {slots}}}'"


def count(n: int, noun: str) -> str:
    """`n noun`, the noun in the plural unless n is 1 (status lines and the dry run)."""
    return f"{n} {noun}" + ("" if n == 1 else "s")
