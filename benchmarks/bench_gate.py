"""How well does the gate work on this machine? False alarms on A/A trials, detection of slowdowns.

    python benchmarks/bench_gate.py                  # 20 trials, 15-20 minutes on a loaded 2-core box
    python benchmarks/bench_gate.py --trials 4       # a quick look
    python benchmarks/bench_gate.py --threads 2      # every worker at 2 intra-op threads
    python benchmarks/bench_gate.py --reanalyze DIR  # re-judge trials kept with --keep DIR (no measuring)

Each trial is one real interleaved measurement (harness.run.ab.interleave, the engine of
`harness gate --against`) of a one-point suite with four sides, `--rounds` rounds each, the order
rotating from round to round:

    A, B  the same code (A/A: any failing gate is a false alarm)
    S5    the reuse variant does 5% more work    (tests/gate_fixture_models.py: extra matmuls
    S20   the reuse variant does 20% more work    sized to that fraction of its own step)

and is judged with ci/policy.yaml three ways:
    interleaved A/A   gate(B vs A), context interleaved: 10% thresholds
    detection         gate(S5 vs A), gate(S20 vs A), context interleaved
    stored A/A        a further single-round run of A, gated against the first trial's (same point)
                      with context stored, as `.ci/run` does against ci/baseline
Trials alternate two points (forward/SDPA at n=256 and train/eager at n=128) so both the forward
and the backward paths of the injected work are exercised. The injected slowdown's real size is measured too:
median reuse time of S5/S20 over that of A, per trial.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from harness.results.load import Run, load_run  # noqa: E402
from harness.run.ab import Side, interleave  # noqa: E402
from harness.compare.runs import Comparison, compare_runs  # noqa: E402
from harness.gate.confirm import confirm  # noqa: E402
from harness.run.forkserver import ForkServerExecutor  # noqa: E402
from harness.compare.policy import load_policy  # noqa: E402
from harness.suite.loading import Suite, load_suite  # noqa: E402
from tests.gate_fixture_models import SLOWDOWN_ENV  # noqa: E402

SUITE = """\
name: bench-gate-{label}
description: one point for bench_gate.py
model: {{d_model: 128, n_heads: 4, n_layers: 4, d_ff: 512, vocab_size: 256, causal: false}}
variants:
  baseline: {{model: baseline}}
  reuse: {{model: "tests.gate_fixture_models:slowed", reuse_ratio: 0.5}}
sweep: {{seq_len: [{seq_len}], batch_size: [2], device: [cpu], mode: [{mode}], backend: [{backend}]}}
metrics: [time, memory, flops]
measure: {{warmup: 2, min_reps: 18, max_reps: 120, target_ci: 0.01, max_seconds: 2.4, timeout: 120, threads: {threads}}}
seed: 0
"""
# (label, mode, backend, seq_len): a training step at n=128 costs about what a forward at 256 does
POINTS = (("fwd-sdpa", "forward", "sdpa", 256), ("train-eager", "train", "eager", 128))
SLOWDOWNS = {"S5": 0.05, "S20": 0.20}
SIDES = {"A": Side("A", ROOT), "B": Side("B", ROOT),
         **{name: Side(name, ROOT, env={SLOWDOWN_ENV: str(f)}) for name, f in SLOWDOWNS.items()}}
# One worker server per side for the whole benchmark: each holds an imported torch, so a trial
# costs forks, not interpreter starts (as in one `harness gate --against` call).
SERVERS: dict[str, ForkServerExecutor] = {}


def _measure(suite: Suite, names: list[str], rounds: int, out: Path, only: set[str] | None = None) -> list[Run]:
    for name in names:
        if name not in SERVERS:
            SERVERS[name] = ForkServerExecutor(SIDES[name].root, SIDES[name].env)
    paths = interleave(suite, [SIDES[n] for n in names], rounds=rounds, output_dir=out, only=only,
                       executors=[SERVERS[n] for n in names])
    return [load_run(p) for p in paths]


@dataclass
class Trial:
    point: str
    load: float
    interleaved_aa: bool             # the gate failed on A/A: a false alarm
    stored_aa: bool | None           # None for the first trial of a point (it is the stored baseline)
    detected: dict[str, bool]        # the gate failed on S5 / S20
    flagged_reuse: dict[str, bool]   # ... because of a check on the slowed reuse row
    measured: dict[str, float]       # real slowdown of the reuse row: median S / median A - 1
    baseline_drift: dict[str, float]  # the unslowed baseline row, same ratio (should be ~0)
    seconds: float


def _median_ms(run: Run, variant: str) -> float:
    row = run.results[run.results["variant"] == variant].iloc[0]
    return float(np.median(row["time_ms_samples"]))


def _flagged_reuse(comparison: Comparison) -> bool:
    return any(c.variant.startswith("reuse") for c in comparison.failing())


def _judge(base: Run, cand: Run, names: list[str], suite: Suite, rounds: int, out: Path,
           policy_file: Path, context: str) -> Comparison:
    """The gate's decision, re-measurement of timing regressions included, as `harness gate` makes it.

    Interleaved: both sides (names) are measured again. Stored: only the candidate (one name) is,
    and the stored baseline stays, as in `harness gate RUN --baseline ci/baseline`.
    """
    policy = load_policy(policy_file)
    comparison = compare_runs(base, cand, policy, context=context)  # type: ignore[arg-type]

    def remeasure(ids: set[str]) -> tuple[Run, Run]:
        again = _measure(suite, names, rounds, out / "confirm", only=ids)
        return (base, again[0]) if len(again) == 1 else (again[0], again[1])

    return confirm(comparison, remeasure, policy.confirm)


def run_trial(index: int, suite: Suite, label: str, out: Path, policy_file: Path,
              stored: dict[str, Run], rounds: int) -> Trial:
    started, load = time.perf_counter(), os.getloadavg()[0]
    trial_dir = out / f"trial-{index:02d}"
    runs = dict(zip(SIDES, _measure(suite, list(SIDES), rounds, trial_dir)))
    a = runs["A"]
    aa = _judge(a, runs["B"], ["A", "B"], suite, rounds, trial_dir, policy_file, "interleaved")
    # As .ci/run: one worker per point (a single round), gated against this point's first such
    # run, a stored baseline from minutes earlier.
    [single] = _measure(suite, ["A"], 1, trial_dir / "single")
    stored_aa = None
    if label in stored:
        stored_aa = not _judge(stored[label], single, ["A"], suite, 1, trial_dir, policy_file, "stored").passed
    else:
        stored[label] = single
    detected, flagged, measured, drift = {}, {}, {}, {}
    for name in SLOWDOWNS:
        comparison = _judge(a, runs[name], ["A", name], suite, rounds, trial_dir, policy_file, "interleaved")
        detected[name], flagged[name] = not comparison.passed, _flagged_reuse(comparison)
        measured[name] = _median_ms(runs[name], "reuse") / _median_ms(a, "reuse") - 1.0
        drift[name] = _median_ms(runs[name], "baseline") / _median_ms(a, "baseline") - 1.0
    return Trial(label, load, not aa.passed, stored_aa, detected, flagged, measured, drift,
                 time.perf_counter() - started)


def _rate(hits: list[bool]) -> str:
    return f"{sum(hits)}/{len(hits)}" + (f" ({100 * sum(hits) / len(hits):.0f}%)" if hits else "")


def report(trials: list[Trial], wall: float, command: str) -> str:
    lines = [f"command: {command}",
             f"trials: {len(trials)}, wall {wall / 60:.1f} min, 1-min load average during trials: "
             f"min {min(t.load for t in trials):.1f} / median {statistics.median(t.load for t in trials):.1f} "
             f"/ max {max(t.load for t in trials):.1f} on {os.cpu_count()} cores", "",
             f"{'#':>2}  {'point':<11} {'load':>4}  {'A/A inter':>9} {'A/A stored':>10}  "
             f"{'S5: real':>8} {'gate':>4}  {'S20: real':>9} {'gate':>4}  {'baseline drift':>14}"]
    for i, t in enumerate(trials):
        stored = "-" if t.stored_aa is None else ("ALARM" if t.stored_aa else "pass")
        lines.append(f"{i:>2}  {t.point:<11} {t.load:>4.1f}  {'ALARM' if t.interleaved_aa else 'pass':>9} "
                     f"{stored:>10}  {100 * t.measured['S5']:>+7.1f}% {'yes' if t.detected['S5'] else 'no':>4}  "
                     f"{100 * t.measured['S20']:>+8.1f}% {'yes' if t.detected['S20'] else 'no':>4}  "
                     f"{100 * t.baseline_drift['S20']:>+13.1f}%")
    stored_trials = [t.stored_aa for t in trials if t.stored_aa is not None]
    lines += ["",
              f"false alarms, A/A interleaved (policy thresholds):   {_rate([t.interleaved_aa for t in trials])}",
              f"false alarms, A/A vs a stored run (CI thresholds):   {_rate(stored_trials)}"]
    for name in SLOWDOWNS:
        real = [t.measured[name] for t in trials]
        lines.append(f"detection of {name[1:]:>2}% injected (measured median {100 * statistics.median(real):+.1f}%, "
                     f"IQR {100 * np.percentile(real, 25):+.1f}..{100 * np.percentile(real, 75):+.1f}%): "
                     f"{_rate([t.detected[name] for t in trials])}, on the slowed reuse row: "
                     f"{_rate([t.flagged_reuse[name] for t in trials])}")
    return "\n".join(lines)


def reanalyze(out: Path, policy_file: Path) -> str:
    """Judge kept trials again, single shot (no re-measurement), two ways: rounds as the unit (the
    gate's rule) and every sample as if independent (pooled), to show what the rule buys."""
    policy = load_policy(policy_file)

    def pooled(run: Run) -> Run:
        results = run.results.copy()
        results["ab_round_sizes"] = None  # forget which round a sample came from
        return Run(run.path, run.manifest, results)

    trials = sorted(p for p in out.glob("trial-*") if p.is_dir())
    lines = [f"re-judged {len(trials)} kept trials in {out} with {policy_file}, single shot:"]
    for name, view in (("rounds as the unit (the gate)", lambda r: r), ("samples pooled as independent", pooled)):
        alarms = {"B": 0, "S5": 0, "S20": 0}
        for trial in trials:
            runs = {side: view(load_run(next(trial.glob(f"*-ab-{side}-2*")))) for side in ("A", *alarms)}
            for side in alarms:
                alarms[side] += not compare_runs(runs["A"], runs[side], policy, context="interleaved").passed
        lines.append(f"  {name:31s} A/A false alarms {alarms['B']}/{len(trials)}, "
                     f"5% detected {alarms['S5']}/{len(trials)}, 20% detected {alarms['S20']}/{len(trials)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds per point and side (gate --rounds)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads of every worker (ci/gate.yaml's 1; 2 on a 2-core machine leaves no "
                             "core to spare: the workers are not pinned and share both cores with everything else)")
    parser.add_argument("--policy", type=Path, default=ROOT / "ci" / "policy.yaml")
    parser.add_argument("--keep", type=Path, help="keep the run directories here (default: a temp dir, removed)")
    parser.add_argument("--reanalyze", type=Path, metavar="DIR", help="re-judge the trials kept in DIR; no measuring")
    args = parser.parse_args(argv)
    if args.reanalyze:
        print(reanalyze(args.reanalyze, args.policy))
        return 0
    out = args.keep or Path(tempfile.mkdtemp(prefix="bench-gate-"))
    suite_dir = out / "suites"
    suite_dir.mkdir(parents=True, exist_ok=True)
    suites = {}
    for label, mode, backend, seq_len in POINTS:
        path = suite_dir / f"{label}.yaml"
        path.write_text(SUITE.format(label=label, mode=mode, backend=backend, seq_len=seq_len, threads=args.threads))
        suites[label] = load_suite(path)
    started = time.perf_counter()
    trials: list[Trial] = []
    stored: dict[str, Run] = {}
    try:
        for i in range(args.trials):
            label = POINTS[i % len(POINTS)][0]
            trials.append(run_trial(i, suites[label], label, out, args.policy, stored, args.rounds))
            t = trials[-1]
            print(f"trial {i + 1}/{args.trials} {label}: {t.seconds:.0f} s, load {t.load:.1f}, A/A "
                  f"{'ALARM' if t.interleaved_aa else 'pass'}, S5 {'detected' if t.detected['S5'] else 'missed'}, "
                  f"S20 {'detected' if t.detected['S20'] else 'missed'}", file=sys.stderr, flush=True)
    finally:
        for server in SERVERS.values():
            server.close()
        if trials:
            command = "python benchmarks/bench_gate.py " + " ".join(argv if argv is not None else sys.argv[1:])
            print(report(trials, time.perf_counter() - started, command.strip()))
        if args.keep is None:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
