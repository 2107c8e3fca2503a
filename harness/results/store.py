"""A run directory: manifest.json (what and where) and results.jsonl (one row per point × variant).

Rows are appended and fsync'ed as they are measured; the manifest is replaced atomically. A run
directory is never reused for another run: names carry a timestamp and a counter.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness.results.jsonl import append_row, read_rows

FORMAT_VERSION = 1
MANIFEST, RESULTS, REPORT, ARTIFACTS = "manifest.json", "results.jsonl", "report.html", "artifacts"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "suite"


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
    def artifacts(self) -> Path:
        return self.path / ARTIFACTS

    @classmethod
    def create(cls, output_dir: Path, suite_name: str) -> "RunDir":
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
            raise FileNotFoundError(f"{path}: not a run directory (no {MANIFEST})")
        return run

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

    def append(self, row: dict[str, Any]) -> None:
        append_row(self.results_path, row)

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.results_path)

    def repair_tail(self) -> None:
        """Cut a partial last line so appended rows start on a line of their own."""
        path = self.results_path
        if not path.exists() or path.stat().st_size == 0:
            return
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(keep)

    def done_keys(self) -> set[tuple[str, str]]:
        return {(r["point_id"], r["variant"]) for r in self.rows() if "point_id" in r and "variant" in r}
