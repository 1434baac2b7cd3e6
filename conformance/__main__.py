"""Command line: ``python -m conformance run|serve|generate|lint``.

run       check a backend: golden cases, then Hypothesis properties; exit 1 on any
          unexpected failure or when nothing was checked, 2 on a usage error
serve     serve a Python backend over the wire protocol on stdin/stdout
          (what ``run --backend`` starts; docs/wire_protocol.md)
generate  rebuild the golden files from the reference (deterministic)
lint      check the golden files: schema, ids, flags, counts, manifest
"""

from __future__ import annotations

import argparse
import sys


def _run(args: argparse.Namespace) -> int:
    from .runner import default_jobs, format_report, read_xfails, run, write_report

    def progress(res):
        if args.verbose:
            print(f"{res.status:>13}  {res.family:<13} {res.kind:<8} {res.id}", flush=True)

    if args.in_process and args.backend_cmd:
        print("error: --in-process applies to --backend, not to --backend-cmd", file=sys.stderr)
        return 2
    try:
        report = run(
            args.backend,
            backend_cmd=args.backend_cmd,
            in_process=args.in_process,
            timeout=args.timeout,
            profile=args.profile,
            families=args.family,
            max_examples=args.max_examples,
            seed=args.seed,
            xfails=read_xfails(args.xfails_file),
            golden_cases=not args.properties_only,
            properties=not args.golden_only,
            case_ids=args.case,
            property_names=args.property,
            golden_dir=args.golden_dir,
            progress=progress,
            shrink=not args.no_shrink,
            jobs=default_jobs(args.backend, args.backend_cmd, args.in_process)
            if args.jobs is None
            else args.jobs,
        )
    except (ValueError, TypeError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.report:
        write_report(report, args.report)
        print(f"report written to {args.report}")
    return 0 if report.ok else 1


def _serve(args: argparse.Namespace) -> int:
    from .wire import serve

    return serve(args.backend, args.profile)


def _generate(args: argparse.Namespace) -> int:
    from .generate import generate

    for path in generate(args.out) if args.out else generate():
        print(path)
    return 0


def _lint(args: argparse.Namespace) -> int:
    from . import golden
    from .backend import OPERATIONS

    problems = golden.verify_manifest(args.dir)
    files = golden.family_files(args.dir)
    for path in files:
        problems += golden.lint(path, OPERATIONS)
    for p in problems:
        print(p)
    print(f"{len(files)} golden files, {len(problems)} problems")
    return 1 if problems else 0


def _jobs(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    from .golden import GOLDEN_DIR
    from .runner import DEFAULT_MAX_EXAMPLES
    from .wire import DEFAULT_TIMEOUT

    parser = argparse.ArgumentParser(
        prog="python -m conformance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="check a backend against the reference")
    which = r.add_mutually_exclusive_group()
    which.add_argument(
        "--backend",
        default=None,
        help="package.module:object (a class is instantiated), run in a worker "
        "process; default: the reference",
    )
    which.add_argument(
        "--backend-cmd",
        metavar="COMMAND",
        help="command of a process speaking the wire protocol (docs/wire_protocol.md)",
    )
    r.add_argument(
        "--in-process",
        action="store_true",
        help="call the --backend in this process (for debugging: a crash, an exit or a "
        "hang of the backend then stops the run)",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"time limit of one call to a backend process (default {DEFAULT_TIMEOUT:g})",
    )
    r.add_argument(
        "--profile",
        default=None,
        help="convention profile the backend claims (reference, torch, tfmot, open-lth, "
        "shrinkbench); default: the one its process claims, else reference",
    )
    r.add_argument(
        "--family", action="append", help="run only this family (repeatable); default: every family"
    )
    r.add_argument(
        "--max-examples",
        type=int,
        default=DEFAULT_MAX_EXAMPLES,
        help=f"Hypothesis examples per property (default {DEFAULT_MAX_EXAMPLES})",
    )
    r.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="processes running the properties, each with its own copy of the backend "
        "(default: 2 on a machine with 2 cores or more when the backend runs in its "
        "process, else 1)",
    )
    r.add_argument("--seed", type=int, default=0, help="Hypothesis seed (default 0)")
    r.add_argument("--report", help="write a JSON report to this path")
    r.add_argument(
        "--xfails-file", help="file of expected-failure ids (case ids or property names)"
    )
    r.add_argument("--golden-only", action="store_true", help="skip the properties")
    r.add_argument("--properties-only", action="store_true", help="skip the golden cases")
    r.add_argument(
        "--case", type=int, action="append", help="run only this golden case id (repeatable)"
    )
    r.add_argument("--property", action="append", help="run only this property (repeatable)")
    r.add_argument(
        "--no-shrink",
        action="store_true",
        help="report the first failing example found instead of the smallest (faster)",
    )
    r.add_argument(
        "--golden-dir",
        default=str(GOLDEN_DIR),
        metavar="DIR",
        help="golden directory to run (default: the installed one); verified first",
    )
    r.add_argument("-v", "--verbose", action="store_true", help="print every check as it finishes")
    r.set_defaults(func=_run)
    s = sub.add_parser("serve", help="serve a Python backend over the wire protocol (stdin/stdout)")
    s.add_argument("backend", help="package.module:object (a class is instantiated)")
    s.add_argument(
        "--profile",
        default=None,
        help="profile to claim in the hello (default: the backend's 'profile' "
        "attribute, else reference)",
    )
    s.set_defaults(func=_serve)
    g = sub.add_parser("generate", help="rebuild the golden files from the reference")
    g.add_argument("--out", help=f"output directory (default {GOLDEN_DIR})")
    g.set_defaults(func=_generate)
    lnt = sub.add_parser("lint", help="check the golden files and their manifest")
    lnt.add_argument("--dir", default=str(GOLDEN_DIR))
    lnt.set_defaults(func=_lint)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
