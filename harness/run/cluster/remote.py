"""What runs on the cluster's nodes: a measurer per measuring slot, and the task an accuracy unit
runs in (each unit first tells the run's attempt ledger, ledger.py, that it started).

Plain classes and functions: driver.py and pool.py make them Ray actors and tasks with the
resources and retry settings of each use (ray.remote(...).options(...)), so importing this
module starts nothing.
"""

from __future__ import annotations

import socket

import ray

from harness.run.cluster.code import source_digest
from harness.run.cluster.ledger import attempt
from harness.run.cluster.unit import NodeIdentity, NodeReport, Unit, UnitResult, run_unit
from harness.run.environment import environment
from harness.run.executor import CODE_ROOT
from harness.run.forkserver import ForkServerExecutor

def this_node() -> NodeIdentity:
    return NodeIdentity(ray.get_runtime_context().get_node_id(), socket.gethostname(),
                        ray.util.get_node_ip_address())


def node_report(threads: int | None) -> NodeReport:
    """This node's fingerprint and the digest of the sources this process imports."""
    return NodeReport(this_node(), environment(threads), source_digest(CODE_ROOT))


class NodeMeasurer:
    """One measuring slot of one node, held for the run: the node's fork server (torch imported
    once per node, as a local run imports it once) and the local lockstep machinery. Every variant
    of every round still runs in a fresh worker forked for it, so units share no process that
    measures; what this actor keeps is the conductor, which measures nothing."""

    def __init__(self, threads: int | None, ledger: "ray.actor.ActorHandle") -> None:
        self._threads = threads
        self._ledger = ledger
        self._node = this_node()
        self._executor = ForkServerExecutor()

    def report(self) -> NodeReport:
        return node_report(self._threads)

    def measure(self, unit: Unit) -> UnitResult:
        return run_unit(self._executor, unit, self._node, attempt(self._ledger, unit.key))

    def abort(self) -> None:
        """Kill the workers of the unit being measured (an interrupted run), from a second thread."""
        self._executor.kill()

    def close(self) -> None:
        self._executor.close()


def measure_shared(unit: Unit, ledger: "ray.actor.ActorHandle", threads: int | None) -> UnitResult:
    """An accuracy unit, in a fresh Ray worker process of its own (max_calls=1) that may share its
    node with other accuracy units: its own fork server, the same rounds as anywhere else."""
    started = attempt(ledger, unit.key)
    with ForkServerExecutor() as executor:
        result = run_unit(executor, unit, this_node(), started)
    result.report = node_report(threads)
    return result
