"""Reports at cluster scale: `harness report`'s time and the HTML's size for runs of 120, 1,200 and
2,400 rows (issue 14's target at 2,400 rows: at most 15 s and 4 MB, still opening and reading well).

    python benchmarks/bench_report.py                 # measures a small real suite first (see below)
    python benchmarks/bench_report.py RUN_DIR         # grows an existing run instead
    python benchmarks/bench_report.py --profile 25    # also: cProfile of the largest render, top 25

Where the rows come from. The big runs are a real run's rows repeated over more batch sizes, as the
issue measured them (a real 120-row run over 20 batch sizes): copy c of every row gets batch size
B·(c+1), in its `axes` too, and its point_id and pair_id rewritten the same way for every variant
of a point, so a copy is a new set of points whose rows pair up exactly as the seed's did (the
baseline the seed shares across reuse ratios stays shared). The timings are the seed's, unchanged:
rendering cost does not depend on the values. A run of N rows takes round(N / seed rows) copies
and the script prints how many rows it got.

The seed. Given RUN_DIR, that run (the issue's shape needs about 120 rows). Without it, this
script measures BENCH_SUITE below through harness.api.run_suite into a temporary directory first:
a tiny model at 6 sequence lengths x forward/train x eager/SDPA x (the baseline + reuse at 4
ratios) = 120 rows, taking a minute or two on a 2-core CPU (the time is printed). Nothing is
read from or written to reports/.

Each size is timed twice: `harness report RUN -o FILE` in a new process (what a user waits for,
imports included; the issue's 71 s is this figure), then render_report() in this process with
the imports already paid.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from harness.results.store import RunDir  # noqa: E402
from harness.report import render_report  # noqa: E402

ROWS = (120, 1200, 2400)
TARGET_S, TARGET_BYTES = 15.0, 4_000_000  # at 2,400 rows

BENCH_SUITE: dict[str, Any] = {
    "name": "bench-report-seed",
    "description": "bench_report.py's seed: a tiny model over the axes a report lays out (x, modes, "
                   "backends, a swept reuse ratio), 120 rows",
    "model": {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "vocab_size": 64, "max_len": 512},
    "variants": {"baseline": {"model": "baseline"}, "reuse": {"model": "reuse"}},
    "sweep": {"seq_len": [16, 32, 64, 128, 256, 512], "batch_size": [2], "device": ["cpu"],
              "mode": ["forward", "train"], "backend": ["eager", "sdpa"],
              "reuse_ratio": [0.25, 0.5, 0.75, 1.0]},
    "metrics": ["time", "memory", "flops"],
    "measure": {"warmup": 1, "min_reps": 3, "max_reps": 9, "max_seconds": 0.6, "timeout": 60, "threads": 1},
    "seed": 0,
}


def measure_seed(workdir: Path) -> Path:
    from harness.api import run_suite

    suite = workdir / "bench-report-seed.yaml"
    suite.write_text(yaml.safe_dump(BENCH_SUITE, sort_keys=False))
    started = time.perf_counter()
    run = run_suite(suite, output_dir=workdir / "seed", report=False)
    print(f"seed: measured {suite.name} in {time.perf_counter() - started:.0f} s -> {run}")
    return run


def _copy_of(row: dict[str, Any], c: int) -> dict[str, Any]:
    """Copy c of a row at batch size B·(c+1); copy 0 is the row itself."""
    if c == 0:
        return row
    batch = row.get("batch_size")
    new = batch * (c + 1) if isinstance(batch, int) else batch
    out = {**row, "batch_size": new}
    if isinstance(row.get("axes"), dict):
        out["axes"] = {**row["axes"], **({"batch_size": new} if "batch_size" in row["axes"] else {})}
    pid = str(row["point_id"])
    out["point_id"] = re.sub(rf"-b{batch}-", f"-b{new}-", pid, count=1) + f"-copy{c}"
    if isinstance(row.get("pair_id"), str):
        out["pair_id"] = f"{row['pair_id']}-copy{c}"
    return out


def repeated(seed: Path, rows_wanted: int, out_dir: Path) -> tuple[Path, int]:
    """A run directory holding the seed's rows over round(rows_wanted / seed rows) batch sizes."""
    source = RunDir.open(seed)
    rows = source.rows()
    copies = max(1, round(rows_wanted / len(rows)))
    manifest = source.read_manifest()
    suite = manifest.get("suite") or {}
    batches = sorted({b * (c + 1) for b in (suite.get("sweep") or {}).get("batch_size") or [] for c in range(copies)})
    grown = RunDir.create(out_dir, f"{suite.get('name', 'seed')}-x{copies}")
    suite = {**suite, "sweep": {**(suite.get("sweep") or {}), "batch_size": batches}}
    grown.write_manifest({**manifest, "run_id": grown.path.name, "suite": suite, "n_tasks": len(rows) * copies})
    for c in range(copies):
        for row in rows:
            grown.append(_copy_of(row, c))
    return grown.path, len(rows) * copies


def time_cli(run: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "report", str(run), "-o", str(out)], cwd=ROOT,
                   check=True, capture_output=True)
    return time.perf_counter() - started


def time_in_process(run: Path, out: Path, profile: int) -> float:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    render_report(run, out)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - started
    if profiler:
        print(f"\ncProfile of render_report ({run.name}), top {profile} by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(profile)
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", nargs="?", type=Path, help="a run directory to grow (default: measure BENCH_SUITE)")
    parser.add_argument("--rows", type=int, nargs="+", default=list(ROWS), help="run sizes (default: %(default)s)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="cProfile the largest in-process render and print its top N functions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        work = Path(tmp)
        seed = args.seed or measure_seed(work)
        print(f"seed run: {seed} ({len(RunDir.open(seed).rows())} rows)\n")
        print(f"{'rows':>6} {'copies':>6} {'harness report':>15} {'render_report':>14} {'HTML':>9}")
        results = []
        for wanted in args.rows:
            run, n = repeated(seed, wanted, work / "grown")
            out = work / f"report-{n}.html"
            cli = time_cli(run, out)
            size = out.stat().st_size
            largest = wanted == max(args.rows)
            inside = time_in_process(run, work / f"report-{n}-again.html", args.profile if largest else 0)
            results.append({"rows": n, "cli_s": cli, "render_s": inside, "bytes": size})
            print(f"{n:>6} {round(n / len(RunDir.open(seed).rows())):>6} {cli:>13.1f} s {inside:>12.1f} s "
                  f"{size / 1e6:>6.2f} MB", flush=True)
        big = max(results, key=lambda r: r["rows"])
        verdict = "meets" if big["cli_s"] <= TARGET_S and big["bytes"] <= TARGET_BYTES else "misses"
        print(f"\nat {big['rows']} rows: {big['cli_s']:.1f} s, {big['bytes'] / 1e6:.2f} MB; {verdict} the target "
              f"(at most {TARGET_S:.0f} s and {TARGET_BYTES / 1e6:.0f} MB at 2,400 rows)")
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
