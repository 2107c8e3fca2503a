"""JSON-lines files written by processes that may be killed at any instant."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row and fsync, so a kill right after loses nothing already measured."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(_clean(row)) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows in file order.

    A process killed mid-write leaves a partial *last* line; it is ignored. An unreadable line
    anywhere else means the file was damaged some other way, and silently dropping rows there
    would bias every comparison, so that raises.
    """
    file = Path(path)
    if not file.exists():
        return []
    lines = file.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise ValueError(f"{file}:{number}: not a JSON line ({error.msg})") from error
        if not isinstance(row, dict):
            raise ValueError(f"{file}:{number}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows
