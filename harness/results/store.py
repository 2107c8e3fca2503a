"""A run directory: manifest.json (what and where) and results.jsonl (one row per point × variant).

Rows are appended and fsync'ed as they are measured; the manifest is replaced atomically. A run
directory is never reused for another run: names carry a timestamp and a counter. Whoever writes
one holds its writer lock (harness.results.lock) for the whole session.

    RUN/manifest.json           format_version, suite, environment, status, sessions, ...
    RUN/results.jsonl           one row per (point, variant), appended
    RUN/results.damaged.jsonl   lines `harness repair` moved out of results.jsonl, with line numbers
    RUN/writer.lock             who is writing the run now (empty when no one is)
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.results.errors import NotARunDir, RunDamaged
from harness.results.jsonl import Damage, Lines, append_row, move_aside, read_lines
from harness.results.schema import not_a_row

if TYPE_CHECKING:  # the suite loader imports the accuracy tasks, and they torch: readers need neither
    from harness.suite.loading import Suite

FORMAT_VERSION = 1
MANIFEST, RESULTS, DAMAGED = "manifest.json", "results.jsonl", "results.damaged.jsonl"
REPORT, ARTIFACTS, LOCK = "report.html", "artifacts", "writer.lock"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_session(resumed: bool = False) -> dict[str, Any]:
    """One writing session of a run (a start, a resume): when and by which command line."""
    return {"started_at": now_iso(), "argv": sys.argv[1:], **({"resumed": True} if resumed else {})}


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS

    @property
    def damaged_path(self) -> Path:
        return self.path / DAMAGED

    @property
    def artifacts(self) -> Path:
        return self.path / ARTIFACTS

    @classmethod
    def create(cls, output_dir: Path, suite_name: str) -> "RunDir":
        from harness.suite.loading import slug

        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = output_dir / f"{slug(suite_name)}-{stamp}"
        for n in range(1000):
            path = base if n == 0 else base.with_name(f"{base.name}-{n}")
            try:
                path.mkdir(parents=True, exist_ok=False)
                return cls(path)
            except FileExistsError:
                continue
        raise RuntimeError(f"could not create a fresh run directory next to {base}")

    @classmethod
    def open(cls, path: Path) -> "RunDir":
        run = cls(Path(path))
        if not run.manifest_path.is_file():
            raise NotARunDir(f"{path}: not a run directory (no {MANIFEST})")
        return run

    # ---- manifest ----------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        return json.loads(self.manifest_path.read_text(encoding="utf-8"))

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.manifest_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.manifest_path)

    def update_manifest(self, **changes: Any) -> dict[str, Any]:
        manifest = {**self.read_manifest(), **changes}
        self.write_manifest(manifest)
        return manifest

    def new_manifest(self, suite: Suite, environment: dict[str, Any], n_tasks: int, profile: str | None = None,
                     **extras: Any) -> dict[str, Any]:
        """Write the manifest of a run starting now; `extras` (e.g. `ab`, `confirms`) say what kind."""
        manifest = {
            "format_version": FORMAT_VERSION, "run_id": self.path.name, "suite": suite.to_json(),
            "suite_path": suite.path or None, "environment": environment, "profile": profile,
            "n_tasks": n_tasks, "started_at": now_iso(), "finished_at": None, "status": "running",
            "sessions": [new_session()], **extras,
        }
        self.write_manifest(manifest)
        return manifest

    def resume_session(self) -> dict[str, Any]:
        """Record that the run is being written again; returns the manifest."""
        manifest = self.read_manifest()
        sessions = [*manifest.get("sessions", []), new_session(resumed=True)]
        return self.update_manifest(status="running", finished_at=None, sessions=sessions)

    def finish(self, status: str, counts: dict[str, int] | None = None, wall_s: float | None = None) -> None:
        """Close the current session and record how the run stands (complete, interrupted)."""
        manifest = self.read_manifest()
        sessions = manifest.get("sessions") or [{}]
        sessions[-1].update(finished_at=now_iso(), **({"wall_s": round(wall_s, 3)} if wall_s is not None else {}))
        changes: dict[str, Any] = {"status": status, "finished_at": now_iso(), "sessions": sessions}
        if counts is not None:
            changes["counts"] = counts
        self.update_manifest(**changes)

    # ---- rows --------------------------------------------------------------------------------
    def append(self, row: dict[str, Any]) -> None:
        append_row(self.results_path, row)

    def lines(self) -> Lines:
        return read_lines(self.results_path, check=not_a_row)

    def rows(self) -> list[dict[str, Any]]:
        return self.lines().rows

    def done_keys(self) -> set[tuple[str, str]]:
        return {(r["point_id"], r["variant"]) for r in self.rows()}

    def ready_to_append(self) -> None:
        """Before a resume appends: refuse damage (RunDamaged), set aside a torn last line.

        A damaged line is left for `harness repair` to move aside with the user watching; a torn
        line is what a kill leaves, and appending after it would glue the next row onto it.
        """
        found = self.lines()
        if found.damaged:
            raise RunDamaged(self.path, found.problems)
        if found.torn is not None:
            self.repair()

    def repair(self) -> list[Damage]:
        """Move every line of results.jsonl that is not a row to results.damaged.jsonl."""
        return move_aside(self.results_path, self.damaged_path, check=not_a_row)
