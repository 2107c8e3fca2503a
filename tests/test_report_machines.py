"""The report of a run measured on several machines: grouped by machine, every node's fingerprint
listed, and no ratio between two machines' rows.

Two nodes measure the same sweep (each under its own point ids, as a cluster spreads points),
the second three times slower: a speedup taken across them would be off by 3x.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from test_report import _render, read_rows, write_rows, write_run

FAST, SLOW = "bench-1 6f3a", "bench-2 91c0"
NODES = {FAST: {"hostname": "bench-1", "cpu_model": "Fast CPU", "cpu_cores": 8, "machine_fingerprint": "fp-fast"},
         SLOW: {"hostname": "bench-2", "cpu_model": "Slow CPU", "cpu_cores": 2, "machine_fingerprint": "fp-slow"}}


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run = write_run(tmp_path_factory.mktemp("nodes") / "run", seq_lens=(256, 1024), failures=False)
    rows = []
    for node, slowdown in ((FAST, 1.0), (SLOW, 3.0)):
        for row in read_rows(run):
            scaled = [t * slowdown for t in row["time_ms_samples"]]
            rows.append(row | {"node": node, "point_id": f"{row['point_id']}-{node[-4:]}",
                               "time_ms_samples": scaled, "time_ms_median": float(np.median(scaled))})
    write_rows(run, rows)
    manifest = json.loads((run / "manifest.json").read_text())
    (run / "manifest.json").write_text(json.dumps(manifest | {"nodes": NODES}))
    return run, _render(run)


def test_verdict_tables_are_grouped_by_machine(two_machines: tuple[Path, str]) -> None:
    _, page = two_machines
    verdict = page[page.index('id="verdict"'):page.index('id="takeaways"')]
    headings = re.findall(r'<h3 class="machine" data-node="([^"]+)">Machine: ([^<]+)</h3>', verdict)
    assert headings == [(FAST, FAST), (SLOW, SLOW)]
    fast_part, slow_part = verdict.split(f'data-node="{SLOW}">Machine')
    assert f'data-node="{SLOW}"' not in fast_part and f'data-node="{FAST}"' not in slow_part
    cards = re.findall(r'<div class="scope">([^<]+)</div>', page)
    assert f"{FAST} · cpu · forward" in cards and f"{SLOW} · cpu · forward" in cards


def test_each_speedup_is_taken_on_one_machine(two_machines: tuple[Path, str]) -> None:
    run, page = two_machines
    rows = [r for r in read_rows(run) if r["status"] == "ok"]
    at = {(r["node"], r["variant"], r["backend"], r["seq_len"]): r for r in rows}
    shown = {(node, float(v)) for node, body in re.findall(
        r'<table class="verdict-table"[^>]*data-node="([^"]+)">(.*?)</table>', page, re.S)
        for v in re.findall(r'data-speedup="([^"]+)"', body)}
    expected = set()
    for (node, variant, backend, n), reuse in at.items():
        if variant != "reuse":
            continue
        for ref in ("eager", "sdpa"):
            base = at[(node, "baseline", ref, n)]
            ratio = np.median(base["time_ms_samples"]) / np.median(reuse["time_ms_samples"])
            expected.add((node, float(f"{ratio:.4g}")))
    assert shown == expected  # every cell within its machine; a cross-machine ratio would be 3x off
    assert len(shown) == 2 * 2 * 2 * 2  # 2 machines x 2 sizes x reuse on 2 backends x 2 baselines


def test_every_machine_is_listed_with_its_fingerprint(two_machines: tuple[Path, str]) -> None:
    _, page = two_machines
    machines = page[page.index('<table id="machines">'):page.index("</table>", page.index('<table id="machines">'))]
    for node, env in NODES.items():
        assert node in machines and env["machine_fingerprint"] in machines and env["cpu_model"] in machines
    assert "Driver machine" in page
    assert f"node={FAST}" in page  # plots and takeaways keep each machine's series apart
