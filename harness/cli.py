"""The `harness` command line.

Exit codes: 0 success; 1 a measured point failed (run) or a regression was found (gate);
2 invalid input (bad suite, missing run directory, bad option); 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: printed without a traceback, exit code 2."""


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.run import runner
    from harness.suite.loading import load_suite
    from harness.suite.sweep import estimate_seconds, expand

    if args.resume:
        if args.suite or args.set:
            raise UsageError("--resume takes the suite from the run directory: give no SUITE or --set")
        _require_run_dir(args.resume)
        outcome = runner.resume(Path(args.resume), _run_options(args))
        return _finish(outcome)
    if not args.suite:
        raise UsageError("harness run: give a SUITE file (or --resume RUN_DIR)")
    suite = load_suite(args.suite, args.set)
    if args.profile == "pyspy":
        from harness.measure.profiling.pyspy import pyspy_available

        ok, why = pyspy_available()
        if not ok:
            raise UsageError(f"--profile pyspy: {why}")
    if args.dry_run:
        tasks = expand(suite)
        print(f"{suite.name}: {len(tasks)} (point, variant) measurements")
        for t in tasks:
            print(f"  {t.point_id:<44} {t.variant:<12} {t.device:<5} {t.mode:<8} "
                  f"{t.model_config.get('backend', ''):<6} n={t.seq_len:<6} b={t.batch_size}")
        print(f"estimated time: {estimate_seconds(tasks, suite.measure) / 60:.1f} min (rough: analytic FLOPs "
              "at an assumed throughput, capped by each point's budget)")
        return EXIT_OK
    for warning in machine_warnings(suite.measure.threads, os.cpu_count() or 1,
                                    os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0):
        print(f"warning: {warning}", file=sys.stderr)
    return _finish(runner.start(suite, _run_options(args)))


def machine_warnings(threads: int | None, cores: int, load: float) -> list[str]:
    """Said up front: what about this machine will make the timings noisy (never stops a run)."""
    out = []
    if load > 0.5 * cores:
        out.append(f"load average {load:.1f} on {cores} cores: other work shares this machine, so timings "
                   "will be noisy (the manifest records the load)")
    if threads is not None and threads >= cores:
        # bench_harness.py on the 2-core CI machine: CV of a point's median over 5 processes about
        # 5-6% at 2 threads (torch.utils.benchmark's own: 6-8%), under 2% at 1 thread.
        out.append(f"measure.threads={threads} uses all {cores} cores: anything else that runs stalls a "
                   "step, so medians vary more from run to run; fewer threads than cores are steadier")
    return out


def _run_options(args: argparse.Namespace):  # -> runner.RunOptions
    from harness.run.runner import RunOptions

    return RunOptions(output_dir=Path(args.output_dir) if args.output_dir else None, profile=args.profile,
                      progress=not args.no_progress and sys.stderr.isatty() or args.progress,
                      report=not args.no_report)


def _finish(outcome) -> int:  # outcome: runner.RunOutcome
    from harness.compare.within import load_run, summary_table

    run = load_run(outcome.run_dir)
    if len(run.results):
        print(summary_table(run.results))
    counts = ", ".join(f"{n} {status}" for status, n in outcome.counts.items() if n)
    print(f"\nrun directory: {outcome.run_dir}  ({counts or 'nothing measured'})")
    report = outcome.run_dir / "report.html"
    if outcome.report_error:
        print(f"report: not written ({outcome.report_error}); retry with `harness report {outcome.run_dir}`",
              file=sys.stderr)
    elif report.exists():
        print(f"report: {report}")
    if outcome.interrupted:
        print(f"interrupted: finish it with `harness run --resume {outcome.run_dir}`", file=sys.stderr)
    return outcome.exit_code


def _cmd_validate(args: argparse.Namespace) -> int:
    from harness.suite.loading import SuiteError, load_suite
    from harness.suite.sweep import expand

    status = EXIT_OK
    for path in args.suites:
        try:
            suite = load_suite(path, args.set)
        except SuiteError as error:
            print(error, file=sys.stderr)
            status = EXIT_USAGE
            continue
        print(f"{path}: ok ({len(expand(suite))} measurements)")
    return status


def _cmd_list(args: argparse.Namespace) -> int:
    if args.what in ("suites", "all"):
        from harness.suite.loading import list_suites

        print("suites:")
        for info in list_suites(args.dir):
            print(f"  {str(info.path):<32} {info.description}")
    if args.what in ("models", "all"):
        from models.registry import known_models

        print("models:")
        for name, description in known_models().items():
            print(f"  {name:<12} {description}")
        print("  package.module:callable   your own model: callable(config: dict) -> nn.Module")
    return EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from harness.report import render_comparison, render_report

    for run in args.runs:
        _require_run_dir(run)
    out = Path(args.output) if args.output else None
    if len(args.runs) == 1:
        path = render_report(Path(args.runs[0]), out)
    elif len(args.runs) == 2:
        path = render_comparison(Path(args.runs[0]), Path(args.runs[1]), out)
    else:
        raise UsageError("harness report: give RUN_DIR, or RUN_A RUN_B to compare two runs")
    print(path)
    return EXIT_OK


def _require_run_dir(path: str | Path) -> None:
    if not (Path(path) / "manifest.json").is_file():
        raise UsageError(f"{path}: not a run directory (expected {Path(path) / 'manifest.json'})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Benchmark Reuse Transformers against baselines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="measure a suite (or --resume an interrupted run)")
    run.add_argument("suite", nargs="?", help="suite YAML file")
    run.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="override a suite value")
    run.add_argument("--output-dir", help="where run directories go (default: the suite's output_dir, reports/)")
    run.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run")
    run.add_argument("--dry-run", action="store_true", help="list the measurements and an estimated time")
    run.add_argument("--profile", choices=["pyspy", "torch"], help="record a profile of every point")
    run.add_argument("--no-report", action="store_true", help="do not write report.html")
    run.add_argument("--progress", action="store_true", help="show the progress bar even without a terminal")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(func=_cmd_run)

    validate = sub.add_parser("validate", help="check suite files without running them")
    validate.add_argument("suites", nargs="+")
    validate.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    validate.set_defaults(func=_cmd_validate)

    lister = sub.add_parser("list", help="list suites and models")
    lister.add_argument("what", nargs="?", choices=["suites", "models", "all"], default="all")
    lister.add_argument("--dir", default="suites", help="suite directory (default: suites)")
    lister.set_defaults(func=_cmd_list)

    report = sub.add_parser("report", help="render RUN_DIR/report.html, or compare two runs")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR")
    report.add_argument("-o", "--output", help="output HTML file")
    report.set_defaults(func=_cmd_report)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[argparse._SubParsersAction], None]]:
    """compare, gate and export live with the gate (harness/gate)."""
    try:
        from harness.gate.commands import register
    except ImportError as error:
        if error.name not in ("harness.gate", "harness.gate.commands"):
            raise
        return []
    return [register]


def main(argv: Sequence[str] | None = None) -> int:
    from harness.suite.loading import SuiteError
    from harness.run.workerenv import AllocatorError, allocator

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "gate"):
            allocator()  # a bad REUSE_BENCH_ALLOCATOR is an input error, before anything runs
        return args.func(args)
    except SuiteError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    except (UsageError, FileNotFoundError, AllocatorError) as error:
        print(f"harness {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
