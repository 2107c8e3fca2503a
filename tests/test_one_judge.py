"""One judge: `harness report A B` and `harness compare A B` give every check the same verdict.

Two run directories are written through harness.results (rows with known shifts and noise, as a
worker stores them), then both commands run through the real command line. The HTML table and
the terminal table must hold the same checks with the same verdicts, and those must be the
engine's: a report with a rule of its own would disagree at the noisy or sub-threshold checks.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import harness_cmd
from harness.compare.policy import load_policy
from harness.compare.render import COLUMNS
from harness.compare.runs import compare_runs
from harness.results.load import load_run
from harness.results.store import RunDir

Key = tuple[str, str, str]  # (metric, point label, variant)


def _row(n: int, variant: str, samples: np.ndarray, **extra: Any) -> dict[str, Any]:
    model = "baseline" if variant == "baseline" else "reuse"
    return {
        "point_id": f"cpu-forward-eager-n{n}-b2-{variant}", "variant": variant, "model": model, "status": "ok",
        "device": "cpu", "mode": "forward", "backend": "eager", "seq_len": n, "batch_size": 2,
        "reuse_ratio": None if model == "baseline" else 0.5,
        "axes": {"seq_len": n, "batch_size": 2, "device": "cpu", "mode": "forward", "backend": "eager"},
        "time_ms_samples": samples.round(5).tolist(), "time_ms_median": float(np.median(samples)),
        "peak_mem_bytes": 1_000_000 * n, "params": 1000,
        "flops_analytic": 2_000 * n if model == "baseline" else 1_600 * n, **extra,
    }


def _write(path: Path, side: str, rows: list[dict[str, Any]]) -> Path:
    # Both sides of one interleaved A/B pair: the default policy holds them to 10%, not 400%.
    run = RunDir(path)
    path.mkdir(parents=True)
    run.write_manifest({"format_version": 1, "run_id": f"judge-{side}", "status": "complete",
                        "environment": {"machine_fingerprint": "m1", "git_commit": "0" * 40},
                        "ab": {"pair_id": "judge-pair", "side": side}})
    for row in rows:
        run.append(row)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)

    def times(ms: float, noise: float = 0.01, n: int = 30) -> np.ndarray:
        return ms * np.exp(rng.normal(0.0, noise, n))

    a = [_row(64, "baseline", times(10.0)), _row(64, "reuse", times(8.0)),
         _row(128, "baseline", times(20.0, 0.8, 8)), _row(128, "reuse", times(16.0, 0.8, 8)),
         _row(256, "baseline", times(40.0)), _row(256, "reuse", times(32.0)),
         _row(512, "baseline", times(80.0)), _row(512, "reuse", times(64.0))]
    b = [_row(64, "baseline", times(10.0)), _row(64, "reuse", times(8.0 * 1.3)),        # reuse 30% slower
         _row(128, "baseline", times(20.0, 0.8, 8)), _row(128, "reuse", times(16.0, 0.8, 8)),  # noise only
         _row(256, "baseline", times(40.0)), _row(256, "reuse", times(32.0 * 0.75), params=1001),
         _row(512, "baseline", times(80.0)),
         {**_row(512, "reuse", times(64.0)), "status": "failed", "error": "RuntimeError: boom"}]
    root = tmp_path_factory.mktemp("judge")
    return _write(root / "A", "baseline", a), _write(root / "B", "candidate", b)


class _Table(HTMLParser):
    """The cells of the page's table of every check (table#data), row by row."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._in_table = self._in_body = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table" and ("id", "data") in attrs:
            self._in_table = True
        self._in_body = self._in_body or (self._in_table and tag == "tbody")
        if self._in_body and tag == "tr":
            self.rows.append([])
        elif self._in_body and tag == "td":
            self.rows[-1].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_table = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_body and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def _verdicts(rows: list[list[str]]) -> dict[Key, str]:
    at = {name: COLUMNS.index(name) for name in ("verdict", "metric", "point", "variant")}
    out: dict[Key, str] = {}
    for cells in rows:
        key = (cells[at["metric"]], cells[at["point"]], cells[at["variant"]])
        assert key not in out, f"{key} listed twice"
        out[key] = cells[at["verdict"]]
    return out


def _terminal_rows(stdout: str) -> list[list[str]]:
    """The rows of `harness compare`'s table: between the header's dashes and the first blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("verdict ")) + 2
    end = lines.index("", start)
    return [re.split(r" {2,}", line.strip()) for line in lines[start:end]]


def test_report_and_compare_give_every_check_the_same_verdict(runs: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = runs
    compared = harness_cmd("compare", str(a), str(b), "--all")
    assert compared.returncode == 0, compared.stdout + compared.stderr
    page = tmp_path / "compare.html"
    reported = harness_cmd("report", str(a), str(b), "-o", str(page))
    assert reported.returncode == 0, reported.stdout + reported.stderr

    in_terminal = _verdicts(_terminal_rows(compared.stdout))
    on_page = _verdicts(_Table(page.read_text(encoding="utf-8")).rows)
    assert on_page == in_terminal
    # ...and both are the engine's, under the policy `harness compare` uses without --policy
    engine = compare_runs(load_run(a), load_run(b), load_policy(None))
    assert on_page == {(c.metric, c.label, c.variant): str(c.verdict) for c in engine.checks}

    seen = set(on_page.values())
    assert {"regressed", "unchanged", "too noisy", "improved", "changed", "failed"} <= seen, seen
    assert on_page[("time_ms", "forward eager n64 b2", "reuse")] == "regressed"
    assert on_page[("time_ms", "forward eager n64 b2", "baseline")] == "unchanged"
    assert on_page[("time_ms", "forward eager n128 b2", "reuse")] == "too noisy"
    assert on_page[("speedup", "forward eager n64 b2", "reuse / baseline[eager]")] == "regressed"


def test_a_policy_file_moves_the_report_and_compare_alike(runs: tuple[Path, Path], tmp_path: Path) -> None:
    # A threshold no change here reaches: every timing regression of the default policy goes.
    policy = tmp_path / "lenient.yaml"
    policy.write_text("rules:\n  - match: {context: interleaved}\n"
                      "    time_ms: {threshold: 50.0}\n    speedup: {threshold: 0.99}\n")
    a, b = runs
    compared = harness_cmd("compare", str(a), str(b), "--all", "--policy", str(policy))
    page = tmp_path / "compare.html"
    reported = harness_cmd("report", str(a), str(b), "-o", str(page), "--policy", str(policy))
    assert compared.returncode == reported.returncode == 0, compared.stderr + reported.stderr
    on_page = _verdicts(_Table(page.read_text(encoding="utf-8")).rows)
    assert on_page == _verdicts(_terminal_rows(compared.stdout))
    assert on_page[("time_ms", "forward eager n64 b2", "reuse")] == "unchanged"
    # --policy judges a comparison; a single-run report has nothing to judge with it
    single = harness_cmd("report", str(a), "--policy", str(policy))
    assert single.returncode == 2 and "--policy goes with RUN_A RUN_B" in single.stderr
