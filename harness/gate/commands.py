"""`harness compare`, `harness gate` and `harness export`: the gate's subcommands of `harness`.

    harness compare BASE_RUN CAND_RUN [--markdown FILE] [--policy FILE] [--all]
    harness gate CAND_RUN --baseline BASELINE_RUN [--policy FILE] [--summary FILE] [--all]
    harness gate --against REV [--suite ci/gate.yaml] [--rounds N] [--output-dir DIR] [--policy FILE] ...
    harness export RUN --format pytest-benchmark|csv|parquet [-o FILE]

Handlers return exit codes: 0 pass, 1 regression (gate only); bad input raises an InputError,
which `harness` reports with exit code 2. Heavy imports wait inside the handlers, so registering
these commands costs every other `harness` command nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.errors import EXIT_OK, UsageError


def _cmd_compare(args: argparse.Namespace) -> int:
    from harness.gate.gate import compare_dirs, publish

    comparison = compare_dirs(args.base, args.cand, args.policy)
    publish(comparison, gate=False, everything=args.all, markdown_file=args.markdown)
    return EXIT_OK


def _cmd_gate(args: argparse.Namespace) -> int:
    from harness.gate.gate import compare_dirs, confirm_stored, exit_code, publish
    from harness.compare.policy import load_policy

    if args.against:
        if args.cand or args.baseline:
            raise UsageError("--against measures both sides itself: give no CAND_RUN or --baseline")
        load_policy(args.policy)  # a bad policy should fail before minutes of measuring, not after
        comparison = _gate_against(args)
    else:
        if not args.cand or not args.baseline:
            raise UsageError("give CAND_RUN --baseline BASELINE_RUN, or --against REV")
        if args.suite or args.rounds is not None:
            raise UsageError("--suite and --rounds go with --against REV")
        comparison = confirm_stored(compare_dirs(args.baseline, args.cand, args.policy))
    publish(comparison, gate=True, everything=args.all, markdown_file=args.summary, append_step_summary=True)
    return exit_code(comparison)


def _gate_against(args: argparse.Namespace):  # -> harness.compare.runs.Comparison
    from harness.run.git import repo_root, resolve_rev

    repo = repo_root()
    resolve_rev(repo, args.against)  # a typo in REV should not wait for torch and the suite to load
    from harness.results.load import load_run
    from harness.run.ab import against
    from harness.gate.confirm import confirm
    from harness.gate.gate import compare_dirs
    from harness.suite.loading import load_suite

    suite_path = Path(args.suite or "ci/gate.yaml")
    if not suite_path.exists() and not suite_path.is_absolute():
        suite_path = repo / suite_path  # the default works from any directory of the repo
    suite = load_suite(suite_path)
    rounds = 8 if args.rounds is None else args.rounds
    if rounds < 1:
        raise UsageError(f"--rounds: expected an integer >= 1; found {rounds}")
    output_dir = Path(args.output_dir or suite.output_dir)
    progress = not args.no_progress and sys.stderr.isatty() or args.progress
    with against(args.against, suite, rounds, output_dir, progress=progress) as session:
        base, cand = session.measure()
        print(f"baseline run ({args.against}): {base}\ncandidate run (working tree): {cand}", flush=True)
        comparison = compare_dirs(base, cand, args.policy, context="interleaved")

        def remeasure(ids: set[str]):  # -> (Run, Run)
            again = session.measure(only=ids)
            return load_run(again[0]), load_run(again[1])

        return confirm(comparison, remeasure, comparison.policy.confirm)


def _cmd_export(args: argparse.Namespace) -> int:
    from harness.results.export import export_run
    from harness.gate.gate import open_run

    open_run(args.run, "run")  # one clear message for a path that is not a run directory
    try:
        written = export_run(args.run, args.format, args.output)
    except ValueError as error:  # e.g. parquet to stdout
        raise UsageError(str(error)) from None
    if written is not None:
        print(written)
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:
    compare = subparsers.add_parser("compare", help="compare two runs point by point (change, CI, verdict)")
    compare.add_argument("base", metavar="BASE_RUN")
    compare.add_argument("cand", metavar="CAND_RUN")
    compare.add_argument("--policy", metavar="FILE", help="gate policy YAML (default: the built-in policy)")
    compare.add_argument("--markdown", metavar="FILE", help="also write the comparison as Markdown")
    compare.add_argument("--all", action="store_true", help="list unchanged exact and memory checks too")
    compare.set_defaults(func=_cmd_compare)

    gate = subparsers.add_parser("gate", help="fail (exit 1) on a significant regression past its threshold")
    gate.add_argument("cand", nargs="?", metavar="CAND_RUN", help="candidate run directory")
    gate.add_argument("--baseline", metavar="BASELINE_RUN", help="stored baseline run directory")
    gate.add_argument("--against", metavar="REV", help="measure REV and the working tree interleaved, then gate")
    gate.add_argument("--suite", metavar="FILE", help="suite for --against (default: ci/gate.yaml)")
    gate.add_argument("--rounds", type=int, metavar="N", help="--against: rounds per point and side, splitting the suite's time budget (default 8)")
    gate.add_argument("--output-dir", metavar="DIR", help="--against: where both run directories go")
    gate.add_argument("--policy", metavar="FILE", help="gate policy YAML (default: the built-in policy)")
    gate.add_argument("--summary", metavar="FILE",
                      help="write the Markdown summary here (default: append to $GITHUB_STEP_SUMMARY if set)")
    gate.add_argument("--all", action="store_true", help="list unchanged exact and memory checks too")
    gate.add_argument("--progress", action="store_true", help="--against: progress lines even without a terminal")
    gate.add_argument("--no-progress", action="store_true", help="--against: no progress lines")
    gate.set_defaults(func=_cmd_gate)

    export = subparsers.add_parser("export", help="write a run as pytest-benchmark JSON, CSV or parquet")
    export.add_argument("run", metavar="RUN")
    export.add_argument("--format", required=True, choices=["pytest-benchmark", "csv", "parquet"])
    export.add_argument("-o", "--output", metavar="FILE",
                        help="output file ('-' for stdout; default: RUN/export-FORMAT.EXT)")
    export.set_defaults(func=_cmd_export)
