"""Rows from several machines: the judge takes a ratio only between rows one node measured.

A cluster run's rows carry `node`. Here two nodes measure the same point, one three times slower:
every within-node speedup is the same (1.25x against eager, 0.5x against SDPA), while a ratio
across the nodes would be off by 3x either way (3.75x, 0.42x, ...).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.compare import within
from harness.compare.runs import compare_runs, row_fingerprint
from harness.compare.policy import Policy
from harness.results.load import Run, results_frame
from test_analysis import make_row

FAST, SLOW = "bench-1 6f3a", "bench-2 91c0"


def _point(node: str | None, scale: float, n: int = 1024, tag: str = "") -> list[dict]:
    extra = {"node": node} if node else {}
    rows = [make_row("baseline", "baseline", "eager", n, 100 * scale, 1000.0, 1000.0, **extra),
            make_row("baseline", "baseline", "sdpa", n, 40 * scale, 500.0, 1000.0, **extra),
            make_row("reuse", "reuse", "eager", n, 80 * scale, 800.0, 600.0, 0.5, **extra)]
    for row in rows:  # the same point on each node, told apart as a cluster run's rows are: by node
        row["point_id"] += tag
    return rows


def two_nodes() -> pd.DataFrame:
    return results_frame(_point(FAST, 1.0, tag="-a") + _point(SLOW, 3.0, tag="-b"))


def test_ratios_are_taken_within_a_node_only() -> None:
    comps = within.comparisons(two_nodes())
    assert len(comps) == 4  # 2 candidates x 2 baseline backends, not x 4 baselines on both nodes
    assert set(comps["node"]) == {FAST, SLOW}
    by = {(r["node"], r["reference_backend"]): r for _, r in comps.iterrows()}
    for node in (FAST, SLOW):
        assert by[(node, "eager")]["speedup"] == pytest.approx(100 / 80)
        assert by[(node, "sdpa")]["speedup"] == pytest.approx(40 / 80)
        assert by[(node, "eager")]["reference_point_id"].endswith("-a" if node == FAST else "-b")
    assert list(comps.columns) == list(within.COMPARISON_COLUMNS)


def test_best_forms_and_unmatched_keep_to_their_node() -> None:
    results = results_frame(_point(FAST, 1.0, tag="-a") + _point(SLOW, 3.0, tag="-b")
                            # reuse re-measured on a third node whose baselines were not: nothing to pair with
                            + [make_row("reuse", "reuse", "eager", 512, 50.0, ratio=0.5, node="bench-3 77aa"),
                               make_row("baseline", "baseline", "eager", 512, 60.0, node=FAST)])
    comps = within.comparisons(results)
    best = within.best_baseline(comps)
    assert sorted(best["node"]) == [FAST, SLOW] and set(best["reference_backend"]) == {"sdpa"}
    assert list(best["speedup"]) == pytest.approx([0.5, 0.5])
    assert sorted(within.best_reuse(comps)["node"]) == [FAST, SLOW]
    lonely = within.unmatched(results, comps)
    assert list(lonely["node"]) == ["bench-3 77aa"]  # a baseline at n=512 on another node does not count


def test_summary_table_groups_lines_by_machine() -> None:
    table = within.summary_table(two_nodes())
    lines = table.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("-- machine ")]
    assert [lines[i] for i in heads] == [f"-- machine {FAST}", f"-- machine {SLOW}"]
    for i in heads:  # each machine's line: its own speedups, never a cross-node one
        assert "1.25×" in lines[i + 1] and "0.50×" in lines[i + 1]
    assert "3.75×" not in table and "0.42×" not in table
    local = within.summary_table(results_frame(_point(None, 1.0)))
    assert "machine" not in local  # a local run is one machine: no heading


def test_rows_without_a_node_are_one_machine_of_their_own() -> None:
    rows = _point(None, 1.0, tag="-local") + _point(SLOW, 3.0, tag="-b")
    comps = within.comparisons(results_frame(rows))
    assert len(comps) == 4 and set(comps["node"].map(lambda v: v if isinstance(v, str) else "")) == {"", SLOW}
    assert set(comps["speedup"].round(4)) == {1.25, 0.5}


def test_between_runs_a_row_is_on_its_nodes_machine() -> None:
    """Absolute times are gated only where both runs measured the point on one machine (node)."""
    envs = {FAST: {"machine_fingerprint": "fp-fast"}, SLOW: {"machine_fingerprint": "fp-slow"}}
    manifest = {"format_version": 1, "run_id": "r", "environment": {"machine_fingerprint": "fp-driver"},
                "nodes": envs}
    base = Run(Path("/a"), manifest, results_frame(_point(FAST, 1.0)))
    swapped = Run(Path("/b"), manifest, results_frame(_point(SLOW, 1.0)))  # same rows, the other node
    assert row_fingerprint(base, {"node": FAST}) == "fp-fast" and row_fingerprint(base, {}) == "fp-driver"
    same = compare_runs(base, base, Policy())
    moved = compare_runs(base, swapped, Policy())
    times = [c for c in same.checks if c.metric == "time_ms"]
    assert times and all(c.gated for c in times)
    moved_times = [c for c in moved.checks if c.metric == "time_ms"]
    assert moved_times and not any(c.gated for c in moved_times)
    assert all("fp-fast vs fp-slow" in c.note for c in moved_times)
    # A within-node ratio travels across machines (the cross-backend ones are never gated).
    speedups = [c for c in moved.checks if c.metric == "speedup" and c.fields["same_backend"]]
    assert speedups and all(c.gated for c in speedups)


def test_node_environments_read_both_manifest_shapes() -> None:
    from harness.results.machines import node_environments

    executor = {"executor": {"kind": "ray", "nodes": {FAST: {"node_id": "6f3a0000", "hostname": "bench-1",
                                                             "environment": {"machine_fingerprint": "fp-fast"}}}}}
    assert node_environments(executor)[FAST]["machine_fingerprint"] == "fp-fast"
    assert node_environments(executor)[FAST]["node_id"] == "6f3a0000"
    assert node_environments({"nodes": {SLOW: "fp-slow"}}) == {SLOW: {"machine_fingerprint": "fp-slow"}}
    assert node_environments({"environment": {"machine_fingerprint": "x"}}) == {}
