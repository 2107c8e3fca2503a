"""Read a stored run: its manifest and one flat results row per (point, variant), as a DataFrame.

Everything downstream (the report, the compare engine, the gate, exports, notebooks) reads runs
through `load_run`. Reading never needs the writer lock and never stops at a damaged line: the
good rows load, each bad line is named (`file:line: why`) on `Run.damaged` and in a warning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from harness.results.errors import NotARunDir
from harness.results.jsonl import read_lines
from harness.results.schema import RESULT_FIELDS, not_a_row
from harness.results.store import FORMAT_VERSION, MANIFEST, RESULTS


class DamagedRunWarning(UserWarning):
    """results.jsonl holds lines that are not rows; they were skipped."""


@dataclass
class Run:
    """One stored run: its manifest and one flat results row per (point, variant)."""

    path: Path
    manifest: dict[str, Any]
    results: pd.DataFrame  # list columns (time_ms_samples) hold lists, dict columns hold dicts
    damaged: list[str] = field(default_factory=list)  # `file:line: why` per line that is not a row

    @property
    def run_id(self) -> str:
        return str(self.manifest.get("run_id", self.path.name))


def _read(file: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows of a results file, the last of each (point_id, variant), and its damaged lines."""
    lines = read_lines(file, check=not_a_row)
    if lines.problems:
        warnings.warn(f"{len(lines.problems)} line(s) skipped, not result rows: {'; '.join(lines.problems)} "
                      f"(`harness repair {file.parent}` moves them aside)", DamagedRunWarning, stacklevel=3)
    rows: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in lines.rows:
        key = (row["point_id"], row["variant"])
        rows.pop(key, None)  # re-insert so the surviving row sits where it was last written
        rows[key] = row
    return list(rows.values()), lines.problems


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a run directory's results.jsonl (or of a .jsonl file given directly).

    A run killed mid-write leaves a partial last line; it is ignored. A line that is not a row
    anywhere else is skipped with a DamagedRunWarning naming it. When a (point_id, variant)
    appears more than once (a point re-run after a retry or a resume), the last row wins.
    """
    file = Path(path) / RESULTS if Path(path).is_dir() else Path(path)
    return _read(file)[0]


def results_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with every RESULT_FIELDS column present (first, in contract order)."""
    frame = pd.DataFrame(list(rows))
    for column in RESULT_FIELDS:
        if column not in frame.columns:
            frame[column] = None
    extra = [c for c in frame.columns if c not in RESULT_FIELDS]
    return frame[list(RESULT_FIELDS) + extra]


def load_run(path: str | Path) -> Run:
    path = Path(path)
    manifest_file = path / MANIFEST
    if not manifest_file.exists():
        raise NotARunDir(f"{path} is not a run directory: no {MANIFEST}")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(f"{manifest_file}: format_version {version!r} is not supported "
                         f"(this harness reads {FORMAT_VERSION})")
    rows, damaged = _read(path / RESULTS)
    return Run(path=path, manifest=manifest, results=results_frame(rows), damaged=damaged)


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    return [load_run(p) for p in paths]
