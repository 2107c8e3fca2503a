"""The Ray executor against a real two-node Ray cluster on this machine (ray.cluster_utils.Cluster:
a head and a worker node, one CPU and one measuring slot each), shared by the module.

A Ray run stores the same (point, variant) rows as a local run of the suite, each saying its node;
a worker node killed mid-run costs the unit it was measuring (failed, with the reason) and nothing
else, as does a unit that raises; accuracy units run as tasks of their own; Ctrl-C and then a
driver killed with SIGKILL leave a run that --resume finishes on the cluster; a retried unit is
told apart; nodes running other code than the driver's measure nothing. Skipped, saying why,
without Ray.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

ray = pytest.importorskip("ray", reason="the Ray executor's tests need Ray: pip install -e '.[ray]'")

from ray.cluster_utils import Cluster  # noqa: E402

from conftest import ROOT, tiny_suite  # noqa: E402
from harness.results.store import RunDir  # noqa: E402
from harness.run.cluster.code import source_digest  # noqa: E402
from harness.run.cluster.dryrun import cluster_dry_run  # noqa: E402
from harness.run.cluster.settings import SLOT_RESOURCE, ClusterError  # noqa: E402
from harness.run.runner import RunOptions, resume, start  # noqa: E402
from harness.suite.loading import load_suite  # noqa: E402
from harness.suite.sweep import expand  # noqa: E402

pytestmark = pytest.mark.slow

NODE = {"num_cpus": 1, "resources": {SLOT_RESOURCE: 1}}
ONE_ROUND = ["measure.rounds=1"]  # where what is checked is the bookkeeping, not the timings
ACCURACY_SUITE = """\
name: acc
model: {d_model: 32, n_heads: 2, n_layers: 2, d_ff: 64}
variants: {baseline: {model: baseline}, reuse: {model: reuse, reuse_ratio: 0.5}}
sweep: {task: [digits]}
metrics: [accuracy]
accuracy: {seeds: [0], train_steps: 10, eval_every: 5}
measure: {threads: 1}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    from ray._private.utils import get_ray_address_file

    address_file = Path(get_ray_address_file(None))
    before = address_file.read_text() if address_file.exists() else None
    # A node killed without warning is noticed after period × threshold (the default is 15 s).
    head = {**NODE, "include_dashboard": False,
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}}
    cluster = Cluster(initialize_head=True, head_node_args=head)
    cluster.add_node(**NODE)
    cluster.wait_for_nodes()
    try:
        yield cluster
    finally:
        address = cluster.address
        cluster.shutdown()
        # Cluster wrote its address where `ray.init("auto")` looks: put back what was there,
        # unless another cluster has written its own since.
        if address_file.exists() and address_file.read_text() == address:
            if before is None:
                address_file.unlink()
            else:
                address_file.write_text(before)


def _keys(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["point_id"], r["variant"]) for r in rows]


def _expected(suite_path: Path, overrides: list[str] = ONE_ROUND) -> list[tuple[str, str]]:
    """Every (point, variant) of the suite, sorted."""
    return sorted((t.point_id, t.variant) for t in expand(load_suite(suite_path, overrides)))


def _first_run(out: Path) -> Path:
    found = sorted(out.glob("*/manifest.json"))
    return found[0].parent if found else out / "none-yet"


def test_a_ray_run_stores_the_rows_of_a_local_run_each_with_its_node(cluster: Cluster, tmp_path: Path) -> None:
    suite = load_suite(tiny_suite(tmp_path / "s.yaml"))
    local = RunDir(start(suite, RunOptions(output_dir=tmp_path / "local", progress=False)).run_dir)
    outcome = start(suite, RunOptions(output_dir=tmp_path / "ray", progress=False, executor="ray",
                                      ray_address=cluster.address))
    assert outcome.exit_code == 0
    cluster_run = RunDir(outcome.run_dir)
    rows = cluster_run.rows()
    assert sorted(_keys(rows)) == sorted(_keys(local.rows())) and len(set(_keys(rows))) == len(rows) == 4
    manifest = cluster_run.read_manifest()
    executor = manifest["executor"]
    assert manifest["status"] == "complete" and executor["kind"] == "ray" and executor["address"] == cluster.address
    assert executor["code"]["source_digest"] == source_digest(ROOT)
    node_ids = {n.node_id for n in cluster.list_all_nodes()}
    for label, node in executor["nodes"].items():
        assert node["node_id"] in node_ids and label.endswith(node["node_id"][:8])
        assert node["runs_driver_code"] and node["environment"]["torch"] and node["environment"]["cpu_model"]
    for row in rows:
        assert row["status"] == "ok" and row["retried"] is False and row["pairing"] == "lockstep"
        assert row["node"] in executor["nodes"] and row["node_ip"] == executor["nodes"][row["node"]]["ip"]
        # The variants of a point were measured together, on one node.
        partners = [r for r in rows if r["pair_id"] == row["pair_id"]]
        assert len(partners) == 2 and {r["node"] for r in partners} == {row["node"]}
    assert set(rows[0]) >= set(local.rows()[0])  # every column a local row has
    assert executor["unit_overhead_s"]["units"] == 2


def test_dry_run_lists_the_units_and_the_nodes_with_their_slots(cluster: Cluster, tmp_path: Path) -> None:
    lines = cluster_dry_run(load_suite(tiny_suite(tmp_path / "s.yaml")), cluster.address)
    text = "\n".join(lines)
    assert "2 units of work, 4 (point, variant) measurements" in text
    assert sum("a measuring slot (a whole node)" in line and "baseline, reuse" in line for line in lines) == 2
    assert "2 nodes alive, 2 measuring slots" in text
    for node in cluster.list_all_nodes():
        assert any(node.node_id[:8] in line and "CPUs 1" in line and "measuring slots 1" in line for line in lines)


def test_a_raising_unit_fails_alone_accuracy_units_run_as_tasks_retries_are_told_and_other_code_refused(
        cluster: Cluster, tmp_path: Path) -> None:
    from harness.run.cluster.driver import ClusterWarning, cluster_backend
    from harness.run.cluster.ledger import attempt, start_ledger
    from harness.run.cluster.unit import stamp
    from harness.run.points import points

    tasks = expand(load_suite(tiny_suite(tmp_path / "s.yaml"), ONE_ROUND))
    broken, fine = points(tasks)
    broken = [dataclasses.replace(t, device="tpu") for t in broken]  # get_device raises on the node
    (tmp_path / "acc.yaml").write_text(ACCURACY_SUITE)
    (accuracy,) = points(expand(load_suite(tmp_path / "acc.yaml")))  # a Ray task of its own, CPUs only
    with cluster_backend(cluster.address, tasks, 1) as backend:
        came_back = {p[0].point_id: rows for p, rows in backend.measure(None, [broken, fine, accuracy], lambda _: None)}
        recorded = backend.record()
        # The ledger counts starts: a task Ray starts again (allowed one retry here, to see it)
        # learns it is attempt 1.
        ledger = start_ledger()

        def dies_on_first_attempt(ledger: Any) -> int | None:
            started = attempt(ledger, "unit-1")
            if started == 0:
                os._exit(1)  # the worker process crashes: Ray starts the task again
            return started

        task = ray.remote(dies_on_first_attempt).options(max_retries=1, num_cpus=0)
        assert ray.get(task.remote(ledger), timeout=60) == 1
        assert ray.get(ledger.begin.remote("unit-2")) == 0
        # Nodes whose sources differ from the driver's measure nothing: here the driver claims other code.
        backend.code["source_digest"] = "0" * 16
        with pytest.raises(ClusterError, match="no measuring node runs this checkout's code.*imports other code"), \
                pytest.warns(ClusterWarning, match="imports other code than this checkout"):
            list(backend.measure(None, [fine], lambda _: None))
    failed, ok, trained = (came_back[unit[0].point_id] for unit in (broken, fine, accuracy))
    assert [r["status"] for r in failed] == ["failed", "failed"] and [r["status"] for r in ok] == ["ok", "ok"]
    assert all(r["error"].startswith("ValueError: unknown device 'tpu'") and r["node"] for r in failed)
    assert stamp([{}], None, 1)[0]["retried"] is True and all(r["retried"] is False for r in ok)
    assert [r["status"] for r in trained] == ["ok", "ok"] and all(r["accuracy_mean"] is not None for r in trained)
    assert {r["node"] for r in trained} <= set(recorded["nodes"]) and all(r["retried"] is False for r in trained)


def _driver(*args: str) -> subprocess.Popen[str]:
    """`harness run ...` as a user starts it, in a session of its own."""
    return subprocess.Popen([sys.executable, "-m", "harness.cli", "run", *args, "--no-report"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _when_rows(driver: subprocess.Popen[str], out: Path, more_than: int) -> None:
    """Wait until the run under `out` holds more than `more_than` rows, the driver still running."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and driver.poll() is None:
        results = _first_run(out) / "results.jsonl"  # the run directory appears once the driver is connected
        if results.exists() and results.read_text().count("\n") > more_than:
            return
        time.sleep(0.05)
    assert driver.poll() is None, f"the driver ended first: {driver.communicate()[1][-2000:]}"
    raise AssertionError(f"no more than {more_than} rows after 120 s")


def test_ctrl_c_then_a_killed_driver_leave_a_run_that_resumes_on_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    suite_path = tiny_suite(tmp_path / "s.yaml", seq_lens="[16, 24, 32, 40, 48]", metrics="[time]")
    out = tmp_path / "runs"
    # Ctrl-C after the first unit: what is pending is cancelled, the run is left interrupted, exit 130.
    driver = _driver(str(suite_path), "--executor", "ray", "--ray-address", cluster.address, "--output-dir",
                     str(out), "--set", ONE_ROUND[0])
    _when_rows(driver, out, 1)
    driver.send_signal(signal.SIGINT)
    assert driver.wait(timeout=60) == 130, driver.communicate()[1][-2000:]
    assert f"harness run --resume {_first_run(out)}" in driver.communicate()[1]
    run = RunDir(_first_run(out))
    interrupted = run.rows()
    assert run.read_manifest()["status"] == "interrupted" and 2 <= len(interrupted) < 10

    # Resumed on the cluster the manifest names, then SIGKILLed after one more unit.
    driver = _driver("--resume", str(run.path))
    _when_rows(driver, out, len(interrupted))
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    killed = run.rows()
    assert len(interrupted) < len(killed) < 10 and killed[: len(interrupted)] == interrupted
    assert run.read_manifest()["status"] == "running"  # as the kill left it

    outcome = resume(run.path, RunOptions(progress=False))
    after = run.rows()
    assert outcome.exit_code == 0 and after[: len(killed)] == killed
    assert sorted(_keys(after)) == _expected(suite_path) and all(r["status"] == "ok" for r in after)
    manifest = run.read_manifest()
    assert manifest["status"] == "complete" and len(manifest["sessions"]) == 3
    assert manifest["executor"]["address"] == cluster.address


def test_a_worker_node_killed_mid_run_costs_its_unit_only(cluster: Cluster, tmp_path: Path) -> None:
    # Last in the module: the cluster is left with its head alone.
    suite_path = tiny_suite(tmp_path / "s.yaml", seq_lens="[16, 24, 32, 40, 48, 56]", metrics="[time]")
    worker = next(iter(cluster.worker_nodes))
    out = tmp_path / "runs"
    killed = threading.Event()

    def kill_when_both_nodes_measure() -> None:
        # Once both nodes have reported and a unit has landed, each node is busy with a unit as
        # long as any is queued (a measurer gets the next one the moment it is free).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                run = RunDir(_first_run(out))
                nodes = run.read_manifest().get("executor", {}).get("nodes", {})
                if len(nodes) == 2 and run.rows():
                    cluster.remove_node(worker, allow_graceful=False)  # every process of the node, SIGKILL
                    killed.set()
                    return
            except (OSError, ValueError):  # the manifest being replaced at that moment
                pass
            time.sleep(0.05)

    killer = threading.Thread(target=kill_when_both_nodes_measure)
    killer.start()
    outcome = start(load_suite(suite_path), RunOptions(output_dir=out, progress=False, executor="ray",
                                                       ray_address=cluster.address))
    killer.join()
    assert killed.is_set(), "the worker node was never seen measuring"
    rows = RunDir(outcome.run_dir).rows()
    assert sorted(_keys(rows)) == _expected(suite_path, [])  # nothing lost, nothing twice
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 2 and len({r["seq_len"] for r in failed}) == 1, [r.get("error") for r in failed]
    assert all("died" in r["error"] and r["node"].endswith(worker.node_id[:8]) for r in failed)
    assert all(r["status"] == "ok" for r in rows if r not in failed)
    assert outcome.exit_code == 1  # a failed point, as in a local run
