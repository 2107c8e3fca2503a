"""The machines of a run, as its manifest records them.

A local run is measured on one machine, whose environment fingerprint is the manifest's
`environment`. A cluster run's rows each carry `node` (a label: hostname and a short Ray node
id), and its manifest records every node's own environment, taken on that node: under
`executor.nodes` ({label: {"environment": {...}, "hostname", "node_id", ...}}, as the Ray
executor writes it) or a top-level `nodes` ({label: environment, or its fingerprint string}).
This module is the one reader of both shapes.
"""

from __future__ import annotations

from typing import Any


def _entry(value: Any) -> dict[str, Any]:
    """One node's record as an environment dict (what the node said of itself, flattened)."""
    if isinstance(value, str):
        return {"machine_fingerprint": value}
    if not isinstance(value, dict):
        return {}
    env = value.get("environment")
    if isinstance(env, dict):  # the executor's record: the node's facts beside its environment
        return {**{k: v for k, v in value.items() if k != "environment"}, **env}
    return dict(value)


def node_environments(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{node label: its environment} for every node the manifest records ({} for a local run)."""
    executor = manifest.get("executor") if isinstance(manifest.get("executor"), dict) else {}
    out: dict[str, dict[str, Any]] = {}
    for source in (executor.get("nodes"), manifest.get("nodes")):
        if isinstance(source, dict):
            out.update({str(label): _entry(value) for label, value in source.items()})
    return out
