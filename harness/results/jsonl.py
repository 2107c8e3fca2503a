"""JSON-lines files written by processes that may be killed at any instant."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# Says why an object read from a line is not a row of this file, or None when it is one.
RowCheck = Callable[[dict[str, Any]], "str | None"]


@dataclass(frozen=True)
class Damage:
    """A line that is not a row, kept verbatim so that moving it aside loses nothing."""

    line: int    # 1-based
    text: str
    reason: str

    def describe(self, file: Path) -> str:
        return f"{file}:{self.line}: {self.reason}"


@dataclass(frozen=True)
class Lines:
    """What a JSON-lines file holds: its rows, the lines that are not rows, a torn last line."""

    file: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    damaged: list[Damage] = field(default_factory=list)
    torn: Damage | None = None   # a partial last line: what a kill mid-write leaves, no problem

    @property
    def problems(self) -> list[str]:
        """One `file:line: why` per damaged line."""
        return [d.describe(self.file) for d in self.damaged]


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


def _split(file: Path) -> list[str]:
    """The file's lines; the last is "" when the file ends with a newline. Undecodable bytes
    survive as surrogates, so a foreign line can be written elsewhere unchanged."""
    return file.read_text(encoding="utf-8", errors="surrogateescape").split("\n")


def read_lines(path: Path, check: RowCheck | None = None) -> Lines:
    """Rows in file order, and every line that is not one (`check` may reject foreign objects).

    A row is written with its newline in one append, so a kill mid-write leaves a last line that
    has no newline and does not parse: that torn line is set apart and is no problem. Any other
    line that is not a row means the file was damaged some other way; it is reported, never
    silently dropped (that would bias every comparison), and the rows around it are kept.
    """
    file = Path(path)
    if not file.exists():
        return Lines(file)
    lines = _split(file)
    rows: list[dict[str, Any]] = []
    damaged: list[Damage] = []
    torn = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            damage = Damage(number, line, f"not a JSON line ({error.msg})")
            if number == len(lines):  # the last element has no newline after it
                torn = damage
            else:
                damaged.append(damage)
            continue
        if not isinstance(row, dict):
            why = f"expected a JSON object, got {type(row).__name__}"
        else:
            why = check(row) if check is not None else None
        if why:
            damaged.append(Damage(number, line, why))
        else:
            rows.append(row)
    return Lines(file, rows, damaged, torn)


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a file one process writes (a worker's output): a line that is not a row leaves
    its variant unreported, which the executor records as failed."""
    return read_lines(path).rows


def move_aside(path: Path, aside: Path, check: RowCheck | None = None) -> list[Damage]:
    """Move every line of `path` that is not a row (a torn last line too) to the end of `aside`,
    one JSON object per line with its line number and reason. Returns what was moved.

    The caller must be the file's only writer. `aside` is appended and fsync'ed before `path` is
    replaced, so a kill in between leaves a line in both files, never in neither.
    """
    file = Path(path)
    found = read_lines(file, check)
    moved = found.damaged + ([found.torn] if found.torn else [])
    if not moved:
        return []
    with open(aside, "a", encoding="utf-8", errors="surrogateescape") as fh:
        for damage in moved:
            fh.write(json.dumps({"file": file.name, "line": damage.line, "reason": damage.reason,
                                 "text": damage.text}) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    gone = {d.line for d in moved}
    kept = [line for number, line in enumerate(_split(file), start=1) if number not in gone and line.strip()]
    tmp = file.with_name(file.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", errors="surrogateescape") as fh:
        fh.write("".join(line + "\n" for line in kept))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, file)
    return moved
