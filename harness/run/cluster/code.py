"""Which code a cluster runs: this checkout shipped as the job's working directory, and a digest
of the measuring sources that each node computes over what it imports, so the manifest states
the code that ran rather than assuming it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

# The sources whose digest a node reports: everything a measurement executes of this project.
SOURCE_PACKAGES: tuple[str, ...] = ("harness", "models")
# Never shipped: history, environments, stored runs, caches, build output (Ray also skips what
# .gitignore lists). User models in the checkout (`package.module:build`) and the tests travel.
SHIPPING_EXCLUDES: list[str] = [
    ".git", ".venv", ".venv-*", "reports", "**/__pycache__", "*.pyc", "*.egg-info", ".pytest_cache",
    ".benchmarks", ".import_linter_cache", ".mypy_cache", ".ruff_cache", "build", "node_modules",
]


def source_digest(root: Path) -> str:
    """A short SHA-256 over the files of harness/ and models/ under `root` (names and contents,
    compiled files left out): equal on two machines exactly when they measure with the same code."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        files = sorted(p for p in (Path(root) / package).rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def shipping_runtime_env(root: Path) -> dict[str, Any]:
    """The job's Ray runtime environment: this checkout as every worker's working directory (its
    cwd and first on its import path), so a node built from a plain Python image with the
    dependencies installed imports this code, not whatever it may have installed."""
    return {"working_dir": str(root), "excludes": list(SHIPPING_EXCLUDES)}
