"""Which allocator measuring workers start with (harness/run/workerenv.py), and that they really do."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import ROOT, harness_cmd, stand_in_tree, tiny_suite
from harness.run import workerenv
from harness.run.workerenv import ALLOCATOR_VAR, MALLOC_TUNABLES, AllocatorError, allocator, worker_env
from harness.suite.loading import load_suite
from harness.suite.sweep import expand

CLEAN: dict[str, str] = {}  # an environment with none of the variables involved


@pytest.fixture
def fake_lib_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Library search confined to an empty directory the test fills (or not)."""
    monkeypatch.setattr(workerenv, "_library_dirs", lambda: [tmp_path])
    return tmp_path


def test_auto_prefers_tcmalloc_when_present(fake_lib_dir: Path) -> None:
    lib = fake_lib_dir / "libtcmalloc_minimal.so.4"
    lib.write_bytes(b"")
    env = worker_env(CLEAN)
    assert env["LD_PRELOAD"] == str(lib)
    assert env["TCMALLOC_RELEASE_RATE"] == "0"
    assert allocator(CLEAN).name == "tcmalloc"


def test_auto_falls_back_to_glibc_with_fixed_thresholds(fake_lib_dir: Path) -> None:
    assert worker_env(CLEAN) == {"GLIBC_TUNABLES": MALLOC_TUNABLES}
    assert allocator(CLEAN).name == "glibc"


def test_tcmalloc_required_but_missing_is_an_error_that_says_what_to_do(fake_lib_dir: Path) -> None:
    with pytest.raises(AllocatorError, match="apt-get install libtcmalloc-minimal4.*REUSE_BENCH_ALLOCATOR=glibc"):
        allocator({ALLOCATOR_VAR: "tcmalloc"})


def test_glibc_opts_out_even_when_tcmalloc_is_present(fake_lib_dir: Path) -> None:
    (fake_lib_dir / "libtcmalloc_minimal.so.4").write_bytes(b"")
    assert "LD_PRELOAD" not in worker_env({ALLOCATOR_VAR: "glibc"})


def test_a_library_path_is_preloaded_and_a_bad_one_rejected(tmp_path: Path) -> None:
    lib = tmp_path / "libmymalloc.so"
    lib.write_bytes(b"")
    assert worker_env({ALLOCATOR_VAR: str(lib)})["LD_PRELOAD"] == str(lib.resolve())
    with pytest.raises(AllocatorError, match="expected auto, tcmalloc, glibc or the path"):
        allocator({ALLOCATOR_VAR: str(tmp_path / "missing.so")})


def test_the_users_own_preload_and_tunables_are_kept(fake_lib_dir: Path) -> None:
    (fake_lib_dir / "libtcmalloc_minimal.so.4").write_bytes(b"")
    users = {"LD_PRELOAD": "/opt/libjemalloc.so.2", "GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert worker_env(users) == {}
    assert workerenv.recorded(users)["allocator"] == "LD_PRELOAD=/opt/libjemalloc.so.2"


def test_a_bad_allocator_request_exits_2_before_anything_runs(tmp_path: Path) -> None:
    proc = harness_cmd("run", str(ROOT / "suites" / "smoke.yaml"), "--output-dir", str(tmp_path),
                       extra_env={ALLOCATOR_VAR: "/nonexistent/libfoo.so"})
    assert proc.returncode == 2, proc.stderr
    assert "REUSE_BENCH_ALLOCATOR='/nonexistent/libfoo.so'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(workerenv.find_tcmalloc() is None,
                    reason="no libtcmalloc on this machine (Debian: apt-get install libtcmalloc-minimal4)")
def test_workers_really_run_on_tcmalloc(tmp_path: Path) -> None:
    """The fork server is started with LD_PRELOAD, so every worker has tcmalloc mapped."""
    from harness.run.forkserver import ForkServerExecutor

    if os.environ.get("LD_PRELOAD") or os.environ.get(ALLOCATOR_VAR):
        pytest.skip("the user's own LD_PRELOAD or REUSE_BENCH_ALLOCATOR is in effect")
    task = expand(load_suite(tiny_suite(tmp_path / "s.yaml", seq_lens="[16]")))[0]
    with ForkServerExecutor(stand_in_tree(tmp_path, "'libtcmalloc' in open('/proc/self/maps').read()")) as executor:
        [row] = executor.run([task], timeout=60)
    assert row["value"] is True
    assert "libtcmalloc" not in Path("/proc/self/maps").read_text()  # this process is left alone
