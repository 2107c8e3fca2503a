"""`--executor ray` options that need no cluster: bad input is one line and exit 2 before anything is
created, Ray missing names the extra, and a resume takes the executor its run was started with.
These run with or without Ray installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, tiny_suite
from harness.cli import main
from harness.run.runner import RunOptions, resumed_options

# Ray made unimportable, as on a machine without the extra: `import ray` raises ImportError.
WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from harness.cli import main; sys.exit(main(sys.argv[1:]))"


def test_without_ray_the_ray_executor_exits_2_naming_the_extra(tmp_path: Path) -> None:
    suite, out = tiny_suite(tmp_path / "s.yaml"), tmp_path / "runs"
    for extra in ([], ["--dry-run"]):
        result = subprocess.run([sys.executable, "-c", WITHOUT_RAY, "run", str(suite), "--executor", "ray",
                                 "--output-dir", str(out), *extra],
                                capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
        assert "pip install -e '.[ray]'" in result.stderr and "ray" in result.stderr
    assert not out.exists()  # refused before a run directory was made


@pytest.mark.parametrize("args, says", [
    (["--ray-address", "auto"], "--ray-address goes with --executor ray"),
    (["--executor", "ray", "--ray-address", "not an address"], "expected auto, HOST:PORT or ray://HOST:PORT"),
    (["--executor", "ray", "--profile", "torch"], "--profile torch runs on this machine only"),
])
def test_contradictory_options_exit_2_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  args: list[str], says: str) -> None:
    suite, out = tiny_suite(tmp_path / "s.yaml"), tmp_path / "runs"
    assert main(["run", str(suite), "--output-dir", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert says in err and err.strip().count("\n") == 0
    assert not out.exists()


def test_resume_uses_the_executor_and_address_its_run_was_started_with() -> None:
    ray_run = {"executor": {"kind": "ray", "address": "10.0.0.5:6379"}, "profile": None}
    resumed = resumed_options(RunOptions(), ray_run)
    assert (resumed.executor, resumed.ray_address) == ("ray", "10.0.0.5:6379")
    # Given again, they win: another address, or the local machine.
    assert resumed_options(RunOptions(ray_address="auto"), ray_run).ray_address == "auto"
    local = resumed_options(RunOptions(executor="local"), ray_run)
    assert (local.executor, local.ray_address) == ("local", None)
    # A run started on a local Ray instance starts one again; a run from before executors were
    # recorded ran on this machine.
    assert resumed_options(RunOptions(), {"executor": {"kind": "ray", "address": None}}).ray_address is None
    assert resumed_options(RunOptions(), {"suite": {}}).executor == "local"
