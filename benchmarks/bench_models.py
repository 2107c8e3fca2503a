"""Every way to run reuse against every way to run the baseline, on this machine, measured in pairs.

    python benchmarks/bench_models.py                        # the table: n in {256, 1024, 2048}, forward and train
    python benchmarks/bench_models.py --n 1024 --modes train  # some of it
    python benchmarks/bench_models.py --quick                # smoke run: a tiny model, n = 64, forward
    python benchmarks/bench_models.py --variants baseline-sdpa reuse --impl recompute --threads 1 --rounds 8
                                                             # recompute against SDPA alone, at decision size

The variants are suites/implementations.yaml's: the baseline eager, on SDPA and compiled (SDPA);
reuse (ratio 0.5) from each source (previous, first) in each implementation (materialize,
recompute), compiled or not. The main job's model (d = 256, 8 heads, 6 layers, B = 4) runs in
float32 on the CPU through the harness itself (harness.api.run_suite), so all the variants of a
point are measured in lockstep (workers alive at once, taking turns one timed step each, in rounds
of fresh processes) and every ratio's 95% interval is the harness's paired estimate. The run
directory (with its HTML report) is kept under --out.

Per point it prints each form's step time against the SDPA baseline [95% CI], its FLOP-ideal
speedup, its peak step memory against the SDPA baseline's, then the fastest reuse form against the
fastest baseline. Where a recompute form is slower than the SDPA baseline it shows where the time
goes: torch.profiler's top ops for both, side by side, per step (--profile). Last, the targets:
recompute at least 1.0x the SDPA baseline (compiled: the compiled baseline) at every point, and
its peak step memory within 5% of the SDPA baseline's.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from harness.api import run_suite  # noqa: E402
from harness.compare import fmt  # noqa: E402
from harness.compare.paired import Contrast  # noqa: E402
from harness.compare.timing import speedup, timing  # noqa: E402
from harness.compare.within import best_reuse, comparisons  # noqa: E402
from harness.results.load import load_run  # noqa: E402

SUITE = ROOT / "suites" / "implementations.yaml"
SDPA, COMPILED = "baseline-sdpa", "baseline-sdpa-compiled"  # the references, as implementations.yaml names them
MEMORY_TARGET = 1.05                                        # recompute's peak within 5% of the SDPA baseline's
TINY_MODEL = {"d_model": 64, "n_heads": 4, "n_layers": 2, "d_ff": 256, "vocab_size": 256}


# ---- the suite ---------------------------------------------------------------------------------
def bench_suite(args: argparse.Namespace) -> dict[str, Any]:
    """suites/implementations.yaml at this script's sizes: CPU, float32, its own budget."""
    suite = yaml.safe_load(SUITE.read_text())
    suite["name"] = "bench_models"
    suite["model"].update(max_len=max(args.n), **(TINY_MODEL if args.quick else {}))
    sweep = suite["sweep"]
    for key in ("zip", "exclude"):  # the shipped suite's CUDA section and CPU size limit
        sweep.pop(key)
    sweep.update(seq_len=args.n, mode=args.modes, device=["cpu"], batch_size=[2 if args.quick else 4])
    # Rounds of fresh workers are what a paired interval is computed over (Student's t, rounds - 1
    # degrees of freedom): the suite's 2 give one, too wide to tell 0.97x from 1.03x.
    suite["measure"].update(threads=args.threads, max_seconds=args.budget, rounds=args.rounds)
    if args.variants:  # a part of the table, e.g. recompute against the SDPA baseline alone
        unknown = sorted(set(args.variants) - set(suite["variants"]))
        if unknown:
            raise SystemExit(f"--variants: {', '.join(unknown)} not in {SUITE.name} "
                             f"(it has {', '.join(suite['variants'])})")
        suite["variants"] = {k: v for k, v in suite["variants"].items() if k in args.variants}
    if args.impl:
        sweep["reuse_impl"] = args.impl
    if args.quick:
        suite["measure"].update(min_reps=2, max_reps=4, timeout=300)
    return suite


def run(args: argparse.Namespace) -> Path:
    from harness.suite.estimate import estimate_seconds
    from harness.suite.loading import load_suite
    from harness.suite.sweep import expand

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench_models.yaml"
        path.write_text(yaml.safe_dump(bench_suite(args), sort_keys=False))
        suite = load_suite(path)
        tasks = expand(suite)
        compiles = sum(t.compile for t in tasks) * suite.measure.rounds
        print(f"# {len(tasks)} measurements in {suite.measure.rounds} rounds: about "
              f"{estimate_seconds(tasks) / 60:.0f} min of measuring (the harness's estimate), plus {compiles} "
              "compilations of a few seconds (cached) to a minute (cold) each", flush=True)
        return run_suite(path, output_dir=args.out, progress=True)


# ---- the table ---------------------------------------------------------------------------------
def form(row: dict[str, Any]) -> str:
    """'reuse-compiled previous/recompute': the variant, with the reuse axes it was swept over."""
    axes = row.get("axes") if isinstance(row.get("axes"), dict) else {}
    reuse = "/".join(str(axes[k]) for k in ("reuse_source", "reuse_impl") if k in axes)
    return f"{row['variant']} {reuse}".strip()


def order(row: dict[str, Any]) -> tuple[Any, ...]:
    """Baselines first, then reuse by source, implementation, uncompiled before compiled."""
    axes = row.get("axes") if isinstance(row.get("axes"), dict) else {}
    return (row["model"] != "baseline", str(axes.get("reuse_source", "")), str(axes.get("reuse_impl", "")),
            bool(row.get("compile")), row["variant"])


def reference_of(row: dict[str, Any]) -> str:
    """What a form is judged against: the SDPA baseline, compiled like it."""
    return COMPILED if row.get("compile") else SDPA


def versus(row: dict[str, Any], reference: dict[str, Any] | None) -> Contrast | None:
    return speedup(timing(reference), timing(row)) if reference is not None else None


def ratio(a: Any, b: Any) -> float:
    a, b = float(a or math.nan), float(b or math.nan)
    return a / b if b > 0 else math.nan


def print_point(rows: list[dict[str, Any]]) -> None:
    by_variant = {r["variant"]: r for r in rows if r["model"] == "baseline"}
    sdpa = by_variant.get(SDPA)
    first = rows[0]
    pairing = {r.get("pairing") for r in rows if r.get("status") == "ok"} - {None}
    print(f"\n{first['mode']} n={first['seq_len']}  (pairing: {', '.join(sorted(pairing)) or 'none'})")
    print(f"  {'form':36s} {'ms':>9s}  {'vs sdpa base [95% CI]':>24s} {'ideal':>6s}  {'peak MiB':>9s} {'vs sdpa':>7s}")
    for r in rows:
        if r.get("status") != "ok":
            print(f"  {form(r):36s} {r.get('status')}: {r.get('error')}")
            continue
        c = versus(r, sdpa)
        cell = fmt.times_ci(c.estimate, c.low, c.high) if c is not None else fmt.DASH
        ideal = ratio(sdpa.get("flops_analytic"), r.get("flops_analytic")) if sdpa else math.nan
        mem = ratio(r.get("peak_mem_bytes"), sdpa.get("peak_mem_bytes")) if sdpa else math.nan
        print(f"  {form(r):36s} {r['time_ms_median']:9.1f}  {cell:>24s} {fmt.times(ideal):>6s}  "
              f"{(r.get('peak_mem_bytes') or 0) / 2**20:9.1f} {fmt.times(mem):>7s}")


def print_best(comps: pd.DataFrame, rows: list[dict[str, Any]]) -> None:
    print("\nThe fastest reuse form against the fastest baseline at each point:")
    by_id = {r["point_id"]: r for r in rows}
    for _, b in best_reuse(comps).iterrows():
        outcome = fmt.outcome(b["speedup"], b["speedup_ci_low"], b["speedup_ci_high"])
        words = {fmt.WIN: "reuse wins", fmt.LOSS: "reuse loses", fmt.TIE: "no clear difference"}.get(outcome, "")
        print(f"  {b['mode']:7s} n={b['seq_len']:<5}  {form(by_id[b['point_id']]):36s} "
              f"{fmt.times_ci(b['speedup'], b['speedup_ci_low'], b['speedup_ci_high'])} vs "
              f"{b['reference_variant']} ({b['reference_backend']}): {words}")


# ---- where the time goes -----------------------------------------------------------------------
def profile(row: dict[str, Any], threads: int, artifacts: Path) -> list[dict[str, Any]]:
    """torch.profiler's top ops of 3 steps of the row's model, in this process (not a timing)."""
    import torch

    from harness.measure.devices import get_device
    from harness.measure.speed import measure_speed
    from harness.suite.task import MeasureConfig, PointTask

    torch._dynamo.reset()  # each model compiles afresh: dynamo's per-function cache would fill up
    task = PointTask(point_id=f"profile-{row['point_id']}", variant=row["variant"], model=row["model"],
                     model_config=row["model_config"], axes=row.get("axes") or {}, device="cpu",
                     mode=row["mode"], seq_len=int(row["seq_len"]), batch_size=int(row["batch_size"]),
                     seed=int(row.get("seed") or 0), metrics=("time",), compile=bool(row.get("compile")),
                     measure=MeasureConfig(warmup=1, min_reps=1, max_reps=1, max_seconds=1, threads=threads))
    return measure_speed(task, get_device("cpu"), artifacts=artifacts, profile="torch")["top_ops"]


def print_profiles(row: dict[str, Any], reference: dict[str, Any], threads: int, artifacts: Path) -> None:
    mine, theirs = (profile(r, threads, artifacts) for r in (row, reference))
    ms = {name: [0.0, 0.0] for name in [o["name"] for o in mine + theirs]}
    for side, ops in enumerate((mine, theirs)):
        for op in ops:
            ms[op["name"]][side] = op["self_cpu_ms"]
    print(f"\n  where the time goes, {row['mode']} n={row['seq_len']}: {form(row)} against {reference['variant']} "
          f"(self CPU ms per step, torch.profiler; traces in {artifacts})")
    print(f"    {'op':48s} {'reuse':>9s} {'baseline':>9s} {'extra':>9s}")
    for name, (a, b) in sorted(ms.items(), key=lambda kv: -abs(kv[1][0] - kv[1][1]))[:12]:
        print(f"    {name[:48]:48s} {a:9.2f} {b:9.2f} {a - b:+9.2f}")


# ---- targets -----------------------------------------------------------------------------------
def print_targets(points: list[list[dict[str, Any]]], args: argparse.Namespace, run_dir: Path) -> None:
    print("\nTargets: recompute >= 1.0x the SDPA baseline (compiled: the compiled one), peak memory within 5% of it:")
    for rows in points:
        baselines = {r["variant"]: r for r in rows if r["model"] == "baseline" and r.get("status") == "ok"}
        for r in rows:
            if r.get("status") != "ok" or (r.get("axes") or {}).get("reuse_impl") != "recompute":
                continue
            reference = baselines.get(reference_of(r))
            c = versus(r, reference)
            if reference is None or c is None:
                print(f"  [ -- ] {r['mode']:7s} n={r['seq_len']:<5} {form(r)}: no {reference_of(r)} row to judge against")
                continue
            mem = ratio(r.get("peak_mem_bytes"), reference.get("peak_mem_bytes"))
            speed_ok, mem_ok = c.estimate >= 1.0, mem <= MEMORY_TARGET
            print(f"  [{'MET ' if speed_ok and mem_ok else 'MISS'}] {r['mode']:7s} n={r['seq_len']:<5} {form(r):36s} "
                  f"{fmt.times_ci(c.estimate, c.low, c.high)} vs {reference['variant']} ({c.method}); "
                  f"peak memory {fmt.times(mem)} its")
            if args.profile == "always" or (args.profile == "slower" and not speed_ok):
                print_profiles(r, reference, args.threads, run_dir / "artifacts")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    run_dir = run(args)
    results = load_run(run_dir).results
    rows = results.to_dict("records")
    points: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in sorted(rows, key=order):
        points.setdefault((r["mode"], int(r["seq_len"])), []).append(r)
    print(f"\n# bench_models: {run_dir} (report.html there); B={rows[0]['batch_size']}, float32, "
          f"{args.threads} threads; ratios > 1: faster than the SDPA baseline; ideal: its FLOPs / the form's")
    ordered = [points[k] for k in sorted(points, key=lambda k: (args.modes.index(k[0]), k[1]))]
    for point_rows in ordered:
        print_point(point_rows)
    print_best(comparisons(results), rows)
    print_targets(ordered, args, run_dir)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, nargs="+", help="sequence lengths (default 256 1024 2048; --quick: 64)")
    ap.add_argument("--modes", nargs="+", choices=["forward", "train"],
                    help="default forward train (--quick: forward)")
    ap.add_argument("--quick", action="store_true", help="smoke run: a tiny model, one round, under a minute")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=7.0,
                    help="seconds of timed steps per variant and point, shared by its rounds")
    ap.add_argument("--rounds", type=int, help="rounds of fresh workers per point (default 4; --quick: 1)")
    ap.add_argument("--variants", nargs="+", metavar="LABEL",
                    help="only these of implementations.yaml's variants (default: all)")
    ap.add_argument("--impl", nargs="+", choices=["materialize", "recompute"],
                    help="only these reuse implementations (default: both)")
    ap.add_argument("--profile", choices=["slower", "always", "never"],
                    help="profile a recompute form against its baseline when it is slower (default; --quick: "
                         "never), always, or never")
    ap.add_argument("--out", type=Path, default=ROOT / "reports", help="where the run directory goes")
    args = ap.parse_args(argv)
    args.n = args.n or ([64] if args.quick else [256, 1024, 2048])
    args.modes = args.modes or (["forward"] if args.quick else ["forward", "train"])
    args.rounds = args.rounds or (1 if args.quick else 4)
    args.profile = args.profile or ("never" if args.quick else "slower")
    if args.quick:
        args.budget = min(args.budget, 1.0)
    return args


if __name__ == "__main__":
    main()
