"""Do reuse's speedups survive a busy machine? The same suite measured quiet, then beside a busy loop.

    python benchmarks/bench_noise.py            # n in {256, 512, 1024}, forward and train, eager and sdpa
    python benchmarks/bench_noise.py --quick    # smoke run: a tiny model, n = 64 (under a minute)
    python benchmarks/bench_noise.py --threads 2 --rounds 5   # other measure settings than the main job's
    python benchmarks/bench_noise.py --rounds 6 --seconds 10  # a bigger budget: fewer points near a verdict's edge

The suite is the main job's (suites/seq_len.yaml: its model, variants and measure block, so its
pairing and rounds too) on the CPU at n in {256, 512, 1024}. It runs twice through the harness
itself (harness.api.run_suite): once on the machine as it is, once while a busy loop holds one
core for the whole run. Per point it prints reuse's speedup over each baseline in both runs [95%
CI], the ratio busy / quiet, and each run's verdict as the report draws it (faster / slower / no
clear difference: compare.fmt.outcome). Targets: every speedup within ±10% between the runs, and no
verdict flips between faster and slower or to and from no clear difference.

How many flips calibrated intervals make by chance. A verdict is a threshold on a noisy interval: a
point whose true speedup is 1.03 and whose interval is ±4% wide is "faster" in some runs and "no
clear difference" in others however honest the interval is, because its edge sits at 1.0. So the
script also prints, per point, the chance that two independent runs give different verdicts if
each run's estimate and interval are what the estimator says they are (log estimate normal around
the two runs' mean with the standard error they report; the standard error itself drawn as the
estimator's Student-t df say): the flips to expect from the statistics alone, beside the flips seen.
A "faster" <-> "slower" flip can only come from an interval that is wrong; a move to or from "no
clear difference" is expected wherever an interval's edge is near 1.0.

Measure on an otherwise idle machine (the quiet run is the reference); the script prints the load
average before each run.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from harness import stats  # noqa: E402
from harness.api import run_suite  # noqa: E402
from harness.compare import fmt  # noqa: E402
from harness.compare.paired import Contrast  # noqa: E402
from harness.compare.timing import speedup, timing  # noqa: E402
from harness.compare.within import comparisons  # noqa: E402
from harness.results.load import load_run  # noqa: E402

MAIN_JOB = ROOT / "suites" / "seq_len.yaml"
AGREE = 0.10  # the target: busy / quiet within ±10%
CONFIDENCE = 0.95  # the level of every interval the harness reports
WORDS = {fmt.WIN: "faster", fmt.LOSS: "slower", fmt.TIE: "no clear difference", fmt.UNKNOWN: "?"}


def noise_suite(args: argparse.Namespace) -> dict[str, Any]:
    """The main job's model, variants and measure block at this script's sizes, CPU only."""
    main = yaml.safe_load(MAIN_JOB.read_text())
    suite = {"name": "noise", "description": "bench_noise: the main job's points, quiet vs one busy core",
             "model": main["model"], "variants": main["variants"],
             "sweep": {"seq_len": args.n, "batch_size": main["sweep"]["batch_size"], "device": ["cpu"],
                       "mode": args.modes, "backend": ["eager", "sdpa"]},
             "metrics": ["time"], "measure": dict(main["measure"]), "seed": main.get("seed", 0)}
    for key, measure_key in (("threads", "threads"), ("rounds", "rounds"), ("seconds", "max_seconds")):
        if getattr(args, key) is not None:  # what to try against the main job's own settings
            suite["measure"][measure_key] = getattr(args, key)
    if args.quick:
        suite["model"] = {**suite["model"], "d_model": 64, "n_heads": 4, "n_layers": 3, "d_ff": 128}
        suite["measure"].update(max_seconds=1.5)
    return suite


def _spin() -> None:
    while True:
        pass


@contextmanager
def busy_core(enabled: bool) -> Iterator[None]:
    """A process spinning on the CPU for the duration: another tenant holding one core."""
    if not enabled:
        yield
        return
    proc = multiprocessing.get_context("spawn").Process(target=_spin, daemon=True)
    proc.start()
    try:
        yield
    finally:
        proc.kill()
        proc.join()


def measure(suite_file: Path, out: Path, busy: bool) -> pd.DataFrame:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    print(f"{'busy' if busy else 'quiet'} run: load average {load:.2f} at start"
          + (", a busy loop holding one core" if busy else ""), flush=True)
    with busy_core(busy):
        run_dir = run_suite(suite_file, output_dir=out, report=False)
    print(f"  {run_dir}", flush=True)
    results = load_run(run_dir).results
    # every (reuse, baseline) pair at a point: against both backends' baselines
    comps = comparisons(results).set_index(["point_id", "reference_point_id"])
    rows = {r["point_id"]: r for r in results.to_dict("records") if r.get("status") == "ok"}
    comps["contrast"] = [speedup(timing(rows[ref]), timing(rows[cand])) for cand, ref in comps.index]
    return comps


# ---- flips to expect -----------------------------------------------------------------------------
def flip_chance(runs: tuple[Contrast, Contrast], draws: int = 20_000, seed: int = 0) -> float:
    """P(two independent runs give different verdicts) if the estimator's own model holds.

    Each run: log estimate ~ N(μ, se²) with μ the two runs' mean log estimate and se² the mean of
    their squared standard errors; its reported standard error ~ se·√(χ²_df / df), df the runs'
    (Student's t); its interval estimate ± t_df·reported se, judged by fmt.outcome's rule.
    """
    if not all(c.has_interval and c.df for c in runs):
        return math.nan
    rng = np.random.default_rng(seed)
    mu = float(np.mean([math.log(c.estimate) for c in runs]))
    se = math.sqrt(float(np.mean([c.log_se ** 2 for c in runs])))
    df = float(min(c.df for c in runs))  # type: ignore[type-var]
    half = stats.t_critical(CONFIDENCE, df)  # the interval's half-width in standard errors
    centre = mu + se * rng.standard_normal(draws)
    reported = se * np.sqrt(rng.chisquare(df, draws) / df)
    verdict = np.where(centre - half * reported > 0, 1, np.where(centre + half * reported < 0, -1, 0))
    shares = np.array([(verdict == v).mean() for v in (-1, 0, 1)])
    return float(1.0 - np.sum(shares ** 2))


def table(quiet: pd.DataFrame, busy: pd.DataFrame) -> tuple[list[str], list[float], int, float, int]:
    lines = [f"{'mode':<8}{'n':>6}  {'reuse on':<9}{'vs':<7}{'quiet':>22}{'busy':>22}{'busy/quiet':>12}"
             f"{'P(flip)':>9}  verdicts"]
    ratios, flips, expected, crossed = [], 0, 0.0, 0
    for key, q in quiet.sort_values(["mode", "seq_len", "backend", "reference_backend"]).iterrows():
        if key not in busy.index:
            lines.append(f"{q['mode']:<8}{q['seq_len']:>6}  {q['backend']:<9}{q['reference_backend']:<7}  (missing in busy run)")
            continue
        b = busy.loc[key]
        ratio = float(b["speedup"]) / float(q["speedup"])
        ratios.append(ratio)
        verdicts = [WORDS[fmt.outcome(r["speedup"], r["speedup_ci_low"], r["speedup_ci_high"])] for r in (q, b)]
        flipped = verdicts[0] != verdicts[1]
        flips += flipped
        crossed += set(verdicts) == {"faster", "slower"}
        chance = flip_chance((q["contrast"], b["contrast"]))
        expected += chance if math.isfinite(chance) else 0.0
        cells = [fmt.times_ci(r["speedup"], r["speedup_ci_low"], r["speedup_ci_high"]) for r in (q, b)]
        lines.append(f"{q['mode']:<8}{q['seq_len']:>6}  {q['backend']:<9}{q['reference_backend']:<7}"
                     f"{cells[0]:>22}{cells[1]:>22}{fmt.times(ratio):>12}{chance:>9.2f}  "
                     + (f"{verdicts[0]} -> {verdicts[1]}  FLIP" if flipped else verdicts[0]))
    return lines, ratios, flips, expected, crossed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[256, 512, 1024], help="sequence lengths")
    parser.add_argument("--modes", nargs="+", default=["forward", "train"], choices=["forward", "train"])
    parser.add_argument("--quick", action="store_true", help="a tiny model at n = 64: checks the script")
    parser.add_argument("--threads", type=int, help="intra-op threads per worker (default: the main job's)")
    parser.add_argument("--rounds", type=int, help="rounds of fresh workers per point (default: the main job's)")
    parser.add_argument("--seconds", type=float, help="timing budget per point and variant (default: the main job's)")
    parser.add_argument("--out", type=Path, default=None, help="keep both run directories here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = [64]
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        suite_file = Path(tmp) / "noise.yaml"
        suite = noise_suite(args)
        suite_file.write_text(yaml.safe_dump(suite, sort_keys=False))
        m = suite["measure"]
        print(f"measure: threads {m.get('threads')}, rounds {m.get('rounds', 'default')}, "
              f"pairing {m.get('pairing', 'default')}, {m.get('max_seconds')} s per variant", flush=True)
        quiet = measure(suite_file, out, busy=False)
        busy = measure(suite_file, out, busy=True)
    lines, ratios, flips, expected, crossed = table(quiet, busy)
    print("\nreuse's speedup over each baseline (baseline ms / reuse ms), 95% CI as the harness reports it;"
          "\nP(flip): the chance two runs disagree on the verdict if every interval is as the estimator says")
    print("\n".join(lines))
    within = sum(abs(r - 1) <= AGREE for r in ratios)
    worst = max(ratios, key=lambda r: abs(r - 1)) if ratios else math.nan
    print(f"\nwithin ±{AGREE:.0%}: {within} of {len(ratios)} (worst busy/quiet {fmt.times(worst)}); "
          f"verdict flips: {flips} (faster <-> slower: {crossed}); flips to expect from the statistics alone: "
          f"{expected:.1f}")
    return 0 if ratios and within == len(ratios) and flips == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
