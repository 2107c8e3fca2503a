"""What the Ray executor costs per unit of work, and a worker node killed mid-run.

    python benchmarks/bench_ray.py               # the main job's model, n in {128, 256, 512}: 6 units
    python benchmarks/bench_ray.py --quick       # the smoke suite's tiny model: 4 units (about a minute)
    python benchmarks/bench_ray.py --kill-node   # the cluster run only, its worker node killed mid-run

On this machine it brings up a two-node Ray cluster (ray.cluster_utils.Cluster: a head and a worker
node, one CPU and one measuring slot each) and runs one suite twice through the harness itself
(harness.api.run_suite): with the local executor, then with `--executor ray` on the cluster. It
prints:

- the cluster's start time (head and worker node up), apart from everything else;
- the Ray executor's overhead per unit once the cluster is up, two ways. Per unit as the driver
  timed it: its round trip (sent to an idle measurer until its rows are back) less its time on the
  node, i.e. what the executor adds to measuring the point (target: at most 1 s). End to end:
  (Ray run's wall − local run's wall) / units, which also holds the run's one-off start (each
  node's measurer: a Ray worker, its fork server importing torch, its fingerprint, also printed)
  and the gain of two slots measuring at once, here two nodes sharing one machine's cores;
- whether the cluster run's (point, variant) rows are the local run's.

--kill-node runs the suite on the cluster only, kills the worker node (every process of it, SIGKILL)
once both nodes are measuring, and prints each unit's node and status: the unit the node was
measuring fails with the reason, every other unit is measured on the head.

Both nodes share this machine's cores and run with one thread; a run on the cluster is not a timing
to compare with the local one, only a check of the executor. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from harness.api import run_suite  # noqa: E402
from harness.results.load import read_results  # noqa: E402
from harness.results.store import RunDir  # noqa: E402
from harness.run.cluster.settings import SLOT_RESOURCE, require_ray  # noqa: E402
from harness.run.points import points  # noqa: E402
from harness.suite.loading import load_suite  # noqa: E402
from harness.suite.sweep import expand  # noqa: E402

TARGET_S = 1.0  # the target: at most 1 s of overhead per unit
NODE = {"num_cpus": 1, "resources": {SLOT_RESOURCE: 1}}


def bench_suite(quick: bool) -> dict[str, Any]:
    """The smoke suite (quick) or the main job's model at small sizes; one thread, CPU only."""
    base = yaml.safe_load((ROOT / "suites" / ("smoke.yaml" if quick else "seq_len.yaml")).read_text())
    sweep = {"seq_len": [64, 128] if quick else [128, 256, 512], "batch_size": base["sweep"]["batch_size"],
             "device": ["cpu"], "mode": ["forward", "train"], "backend": ["eager", "sdpa"]}
    measure = {**base["measure"], "threads": 1, "max_seconds": 0.5 if quick else 3}
    return {"name": "bench-ray", "description": "bench_ray: the same units on this machine and on a Ray cluster",
            "model": base["model"], "variants": base["variants"], "sweep": sweep,
            "metrics": ["time", "memory", "flops"], "measure": measure, "seed": 0}


class TwoNodes:
    """A head and a worker node on this machine, each with one CPU and one measuring slot."""

    def __enter__(self) -> "TwoNodes":
        from ray._private.utils import get_ray_address_file
        from ray.cluster_utils import Cluster

        self._address_file = Path(get_ray_address_file(None))
        self._before = self._address_file.read_text() if self._address_file.exists() else None
        began = time.perf_counter()
        head = {**NODE, "include_dashboard": False,
                "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3}}
        self.cluster = Cluster(initialize_head=True, head_node_args=head)
        self.worker = self.cluster.add_node(**NODE)
        self.cluster.wait_for_nodes()
        self.start_s = time.perf_counter() - began
        return self

    def __exit__(self, *_: object) -> None:
        address = self.cluster.address
        self.cluster.shutdown()
        # Cluster wrote its address where `ray.init("auto")` looks: put back what was there,
        # unless another cluster has written its own since.
        file = self._address_file
        if file.exists() and file.read_text() == address:
            if self._before is None:
                file.unlink()
            else:
                file.write_text(self._before)


def timed_run(suite: Path, out: Path, **executor: Any) -> tuple[Path, float]:
    began = time.perf_counter()
    run_dir = run_suite(suite, output_dir=out, report=False, **executor)
    return run_dir, time.perf_counter() - began


def keys(run_dir: Path) -> set[tuple[str, str]]:
    return {(r["point_id"], r["variant"]) for r in read_results(run_dir)}


def overhead(suite: Path, out: Path) -> int:
    local_dir, local_s = timed_run(suite, out / "local")
    units = len(points(expand(load_suite(suite))))
    print(f"local run: {local_s:.1f} s for {units} units ({len(keys(local_dir))} rows)  [{local_dir}]")
    with TwoNodes() as nodes:
        print(f"cluster start (head + worker node): {nodes.start_s:.1f} s")
        ray_dir, ray_s = timed_run(suite, out / "ray", executor="ray", ray_address=nodes.cluster.address)
    executor = RunDir(ray_dir).read_manifest()["executor"]
    per_unit, first = executor["unit_overhead_s"], executor["first_measurer_s"]
    print(f"ray run:   {ray_s:.1f} s on {len(executor['nodes'])} nodes  [{ray_dir}]")
    print(f"  first measurer ready after {first:.1f} s (once per run: a Ray worker, its fork server, the node's "
          "fingerprint)")
    verdict = "PASS" if per_unit["mean"] <= TARGET_S else "FAIL"
    print(f"per-unit overhead (driver round trip - time on node): mean {per_unit['mean'] * 1000:.0f} ms, "
          f"max {per_unit['max'] * 1000:.0f} ms over {per_unit['units']} units; target <= {TARGET_S:g} s: {verdict}")
    print(f"end to end: (ray wall - local wall) / units = {(ray_s - local_s) / units:+.2f} s per unit "
          "(holds the run's start; two slots measured at once, on the same 2 cores)")
    same = keys(ray_dir) == keys(local_dir)
    print(f"row sets match: {'yes' if same else 'NO'} ({len(keys(ray_dir))} rows on the cluster, "
          f"{len(keys(local_dir))} local)")
    if not same:
        print(f"  only local: {sorted(keys(local_dir) - keys(ray_dir))}")
        print(f"  only on the cluster: {sorted(keys(ray_dir) - keys(local_dir))}")
    return 0 if same and verdict == "PASS" else 1


def kill_node(suite: Path, out: Path) -> int:
    with TwoNodes() as nodes:
        print(f"cluster start (head + worker node): {nodes.start_s:.1f} s; worker node {nodes.worker.node_id[:8]} "
              "will be killed once both nodes measure")
        killer = threading.Thread(target=_kill_when_both_measure, args=(nodes, out), daemon=True)
        killer.start()
        run_dir, ray_s = timed_run(suite, out, executor="ray", ray_address=nodes.cluster.address)
        killer.join(timeout=1)
    rows = read_results(run_dir)
    print(f"ray run: {ray_s:.1f} s  [{run_dir}]")
    for unit in _units(rows):
        first = unit[0]
        what = first["status"] if first["status"] != "failed" else f"failed: {first['error'][:400]}"
        print(f"  unit {first['mode']:<8} n={first['seq_len']:<5} {len(unit)} variants on {first['node']:<24} {what}")
    failed = [r for r in rows if r["status"] == "failed"]
    expected = {(t.point_id, t.variant) for t in expand(load_suite(suite))}
    lost = expected - {(r["point_id"], r["variant"]) for r in rows}
    print(f"{len(rows)} rows of {len(expected)}: {len(rows) - len(failed)} ok, {len(failed)} failed "
          f"({len(_units(failed))} unit); nothing lost: {'yes' if not lost else f'NO, {len(lost)} missing'}")
    return 0 if failed and not lost else 1


def _kill_when_both_measure(nodes: TwoNodes, out: Path) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        runs = sorted(out.glob("*/manifest.json"))
        try:
            if runs and len(RunDir(runs[0].parent).read_manifest().get("executor", {}).get("nodes", {})) == 2 \
                    and read_results(runs[0].parent):
                print(f"  killing worker node {nodes.worker.node_id[:8]} (SIGKILL, every process of it)")
                nodes.cluster.remove_node(nodes.worker, allow_graceful=False)
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)


def _units(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Rows grouped as the executor sent them: one unit per point (every backend and variant)."""
    units: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        units.setdefault((row["mode"], row["seq_len"]), []).append(row)
    return list(units.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the smoke suite's tiny model (a minute or two)")
    parser.add_argument("--kill-node", action="store_true", help="kill the worker node mid-run and show what happened")
    parser.add_argument("--keep", action="store_true", help="keep the run directories (printed)")
    args = parser.parse_args(argv)
    require_ray()
    logging.getLogger("ray").setLevel(logging.WARNING)  # Ray's INFO lines (addresses, packaging) are not ours
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    with _workdir(args.keep) as out:
        suite = out / "bench-ray.yaml"
        suite.write_text(yaml.safe_dump(bench_suite(args.quick), sort_keys=False))
        return kill_node(suite, out / "kill") if args.kill_node else overhead(suite, out)


@contextmanager
def _workdir(keep: bool) -> Iterator[Path]:
    if keep:
        yield Path(tempfile.mkdtemp(prefix="bench-ray-"))
        return
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        yield Path(tmp)


if __name__ == "__main__":
    sys.exit(main())
