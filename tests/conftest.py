"""Shared fixtures: tiny real suites and one real run of suites/smoke.yaml per test session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TINY_SUITE = """\
name: tiny
description: Two lengths of a tiny model, for tests.
model: {{d_model: 32, n_heads: 2, n_layers: 2, d_ff: 64, vocab_size: 64, max_len: {max_len}}}
variants:
{variants}
sweep:
  seq_len: {seq_lens}
  batch_size: [2]
  device: [cpu]
  mode: [forward]
  backend: [sdpa]
metrics: {metrics}
measure: {{warmup: 1, min_reps: 3, max_reps: 5, max_seconds: 0.5, timeout: {timeout}, threads: 1}}
seed: 0
"""


def tiny_suite(path: Path, *, variants: str = "  baseline: {model: baseline}\n  reuse: {model: reuse, reuse_ratio: 0.5}",
               seq_lens: str = "[16, 32]", metrics: str = "[time, memory, flops]", max_len: int = 64,
               timeout: float = 60) -> Path:
    path.write_text(TINY_SUITE.format(variants=variants, seq_lens=seq_lens, metrics=metrics,
                                      max_len=max_len, timeout=timeout))
    return path


def stand_in_tree(root: Path, report: str) -> Path:
    """A code tree whose harness.run.worker (run as a command or by a fork server) writes, per task,
    a row whose `value` is the Python expression `report` evaluated in the worker: for checking how
    a tree's workers are started."""
    (root / "harness" / "run").mkdir(parents=True)
    (root / "harness" / "__init__.py").write_text("")
    (root / "harness" / "run" / "__init__.py").write_text("")
    (root / "harness" / "run" / "worker.py").write_text(
        "import json, os, sys\n"
        "def main(argv):\n"
        "    for task in json.load(open(argv[0])):\n"
        f"        row = {{'variant': task['variant'], 'status': 'ok', 'value': {report}}}\n"
        "        with open(argv[1], 'a') as fh:\n"
        "            fh.write(json.dumps(row) + '\\n')\n"
        "if __name__ == '__main__':\n"
        "    main(sys.argv[1:])\n")
    return root


def harness_cmd(*args: str, extra_env: dict[str, str] | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run the real command line in a subprocess, as a user would."""
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, **kwargs)


@pytest.fixture(scope="session")
def smoke_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run of suites/smoke.yaml (with its report), shared by report, gate and export tests."""
    from harness.api import run_suite

    return run_suite(ROOT / "suites" / "smoke.yaml", output_dir=tmp_path_factory.mktemp("smoke"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for a test module (restored after it)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
