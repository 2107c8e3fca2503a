"""The git plumbing of the A/B gate, light enough to check REV before anything heavy is imported."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from harness.errors import InputError


class ABError(InputError):
    """`--against REV`: the repository or REV cannot be used."""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise ABError(f"git {' '.join(args)}: {out.stderr.strip() or f'exit code {out.returncode}'}")
    return out.stdout.strip()


def repo_root(start: Path | None = None) -> Path:
    try:
        return Path(git(start or Path.cwd(), "rev-parse", "--show-toplevel"))
    except (ABError, OSError) as error:
        raise ABError(f"--against needs a git repository: {error}") from None


def resolve_rev(repo: Path, rev: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    except ABError:
        raise ABError(f"--against {rev}: not a commit in {repo}") from None


@contextmanager
def worktree(repo: Path, commit: str) -> Iterator[Path]:
    """A temporary detached checkout of `commit`, removed afterwards whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="reuse-bench-ab-"))
    tree = tmp / "baseline"
    git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=repo, capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run(["git", "worktree", "prune"], cwd=repo, capture_output=True)
