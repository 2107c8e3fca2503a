"""The `harness` command line: argument parsing and dispatch to the stage that does the work.

Exit codes (harness.errors): 0 success; 1 a measured point failed (run) or a regression was found
(gate); 2 invalid input (bad suite, missing run directory, bad option); 130 interrupted.
Handlers import their stage when they run, so `harness --help` does not wait for torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, InputError, UsageError
from harness.gate import commands as gate_commands
from harness.suite.checks import ProblemsError


def _cmd_run(args: argparse.Namespace) -> int:
    from harness.run import runner
    from harness.run.environment import machine_warnings
    from harness.suite.estimate import dry_run
    from harness.suite.loading import load_suite

    options = _run_options(args)
    if args.resume:
        if args.suite or args.set:
            raise UsageError("--resume takes the suite from the run directory: give no SUITE or --set")
        _require_run_dir(args.resume)
        outcome = runner.resume(Path(args.resume), options)
        return _finish(outcome, report=not args.no_report)
    if not args.suite:
        raise UsageError("give a SUITE file (or --resume RUN_DIR)")
    options.check()
    if args.executor == "ray":
        from harness.run.cluster.settings import require_ray

        require_ray()  # before anything else is said or loaded: the one line names the extra
    suite = load_suite(args.suite, args.set)
    if args.profile == "pyspy":
        from harness.measure.profiling.pyspy import pyspy_available

        ok, why = pyspy_available()
        if not ok:
            raise UsageError(f"--profile pyspy: {why}")
    if args.dry_run:
        print("\n".join(_cluster_dry_run(suite, args.ray_address) if args.executor == "ray" else dry_run(suite)))
        return EXIT_OK
    if args.executor != "ray" or args.ray_address is None:  # the machine that measures is this one
        for warning in machine_warnings(suite.measure.threads):
            print(f"warning: {warning}", file=sys.stderr)
    return _finish(runner.start(suite, options), report=not args.no_report)


def _cluster_dry_run(suite, address: str | None) -> list[str]:  # suite: harness.suite.loading.Suite
    from harness.run.cluster.dryrun import cluster_dry_run  # imports Ray: checked by require_ray() above

    return cluster_dry_run(suite, address)


def _run_options(args: argparse.Namespace):  # -> runner.RunOptions
    from harness.run.runner import RunOptions

    return RunOptions(output_dir=Path(args.output_dir) if args.output_dir else None, profile=args.profile,
                      progress=not args.no_progress and sys.stderr.isatty() or args.progress,
                      executor=args.executor, ray_address=args.ray_address)


def _finish(outcome, report: bool) -> int:  # outcome: runner.RunOutcome
    from harness.api import write_report
    from harness.compare.within import summary_table
    from harness.results.load import load_run

    if report:
        outcome.report_error = write_report(outcome.run_dir)
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
    if args.policy and len(args.runs) != 2:
        raise UsageError("--policy goes with RUN_A RUN_B (a comparison)")
    if len(args.runs) == 1:
        path = render_report(Path(args.runs[0]), out)
    elif len(args.runs) == 2:
        path = render_comparison(Path(args.runs[0]), Path(args.runs[1]), out, args.policy)
    else:
        raise UsageError("give RUN_DIR, or RUN_A RUN_B to compare two runs")
    print(path)
    return EXIT_OK


def _cmd_repair(args: argparse.Namespace) -> int:
    from harness.results.lock import writer_lock
    from harness.results.store import RunDir

    run = RunDir.open(Path(args.run))
    with writer_lock(run.path):  # a writer appending meanwhile would be cut off mid-row
        moved = run.repair()
    if not moved:
        print(f"{run.path}: every line of {run.results_path.name} is a row; nothing to repair")
        return EXIT_OK
    print(f"{run.path}: moved {len(moved)} line(s) that were not rows to {run.damaged_path}:")
    for damage in moved:
        print(f"  {damage.describe(run.results_path)}")
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
    run.add_argument("--executor", choices=["local", "ray"],
                     help="where points are measured: this machine (default) or a Ray cluster, one point with all "
                          "its variants per unit of work (needs the ray extra: pip install -e '.[ray]'); "
                          "--resume uses the run's own unless given")
    run.add_argument("--ray-address", metavar="ADDR",
                     help="with --executor ray: the cluster (auto, HOST:PORT or ray://HOST:PORT); without it a "
                          "local Ray instance is started for the run and stopped after it")
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
    report.add_argument("--policy", metavar="FILE",
                        help="RUN_A RUN_B: judge by this gate policy, as `harness compare --policy` (default: built in)")
    report.set_defaults(func=_cmd_report)

    repair = sub.add_parser("repair", help="move damaged lines of RUN/results.jsonl aside, so the run can resume")
    repair.add_argument("run", metavar="RUN")
    repair.set_defaults(func=_cmd_repair)

    gate_commands.register(sub)  # compare, gate, export
    return parser


def _one_line_warnings() -> None:
    """Warnings meant for the user (a damaged results.jsonl) as `warning: ...`, not Python's two lines."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show


def main(argv: Sequence[str] | None = None) -> int:
    from harness.run.workerenv import allocator

    _one_line_warnings()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in ("run", "gate"):
            allocator()  # a bad REUSE_BENCH_ALLOCATOR is an input error, before anything runs
        return args.func(args)
    except InputError as error:
        # A problem list names its file and line on every line; any other message needs the command.
        print(error if isinstance(error, ProblemsError) else f"harness {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
