"""The `qcow2-harness` command. The only module that prints or exits.

Exit codes, for every subcommand:
  0  success (for `check`: conformant)
  1  could not run: usage error, I/O error, internal error
  2  the input is not valid: malformed image, MUST-level violation, model trace error
  3  (`check` only) conformant except SHOULD-level findings
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from qcow2harness import __version__
from qcow2harness.errors import HarnessError, ParseError

EXIT_OK = 0
EXIT_CANNOT_RUN = 1
EXIT_INVALID = 2
EXIT_SHOULD_ONLY = 3

DEBUG_ENV = "QCOW2_HARNESS_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; our contract says 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CANNOT_RUN, f"{self.prog}: error: {message}\n")


def _emit_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def cmd_info(args: argparse.Namespace) -> int:
    from qcow2harness.image import Image
    from qcow2harness.info import describe, render

    with Image.open(args.image) as image:
        info = describe(image)
    if args.json:
        _emit_json(info)
    else:
        print(render(info))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from qcow2harness.checker import check_path

    report = check_path(args.image)
    if args.json:
        _emit_json(report.to_json())
        return report.exit_code
    for finding in report.findings:
        print(finding.one_line())
    for clause, count in sorted(report.suppressed.items()):
        print(f"{'':<6} {clause:<8} ... and {count} more")
    counts = report.level_counts
    if report.exit_code == EXIT_OK:
        print("No errors were found on the image.")
    else:
        print(f"{counts['MUST']} MUST violation(s), {counts['SHOULD']} SHOULD finding(s).")
    stats = report.stats
    if "clusters_in_file" in stats:
        print(f"{stats.get('data_clusters', 0)} data clusters, "
              f"{stats.get('l2_tables', 0)} L2 tables, "
              f"{stats.get('leaked_clusters', 0)} leaked, "
              f"{stats['clusters_in_file']} clusters in the file.")
    return report.exit_code


def cmd_corpus(args: argparse.Namespace) -> int:
    from qcow2harness.corpus import build_corpus

    manifest = build_corpus(args.dir, only=args.only)
    for entry in manifest:
        print(f"{entry['name']:<40} {entry['size']:>9} bytes  {entry['description']}")
    makers = sorted({entry["made_by"] for entry in manifest})
    print(f"{len(manifest)} images in {args.dir}, made by: {'; '.join(makers)}")
    return EXIT_OK


def cmd_model(args: argparse.Namespace) -> int:
    """JSON lines in, exactly one JSON line out per input line (reference/trace.py)."""
    from qcow2harness.reference.trace import run as run_trace

    errors = 0
    for answer in run_trace(sys.stdin):
        print(answer, flush=True)
        errors += '"ok": false' in answer
    return EXIT_INVALID if errors and args.strict else EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from qcow2harness.demo import run_demo

    for title, text in run_demo(args.dir):
        print(f"\n=== {title} ===")
        print(text)
    print(f"\ndemo: images are in {args.dir}")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="qcow2-harness",
        description="Conformance checker, reference model and fuzzing harness for qcow2 "
        "and its proposed zoned extension.",
        epilog="Exit codes: 0 ok, 1 could not run, 2 invalid input or MUST violation, "
        "3 SHOULD-level findings only (check).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    info = sub.add_parser("info", help="show every header field, extension and zone")
    info.add_argument("image", help="qcow2 image (opened read-only)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    check = sub.add_parser("check", help="check an image against the spec's clauses")
    check.add_argument("image", help="qcow2 image (opened read-only, never modified)")
    check.add_argument("--json", action="store_true", help="machine-readable report")
    check.set_defaults(func=cmd_check)

    model = sub.add_parser(
        "model", help="the reference zone model as a JSON-lines service on stdin/stdout",
        description="First line: {\"op\":\"create\",\"size\":N,\"zone_size\":N,...}; then "
        "write, append, open, close, finish, reset, reset_all, flush, reopen, crash, report. "
        "One JSON answer per line, each with \"ok\" and \"error\".")
    model.add_argument("--strict", action="store_true",
                       help="exit 2 if any answer was ok:false (a refused op counts)")
    model.set_defaults(func=cmd_model)

    corpus = sub.add_parser("corpus", help="build the seed corpus with the real qemu-img")
    corpus.add_argument("action", choices=["build"])
    corpus.add_argument("dir", help="output directory")
    corpus.add_argument("--only", action="append", help="build only images whose name has this")
    corpus.set_defaults(func=cmd_corpus)

    demo = sub.add_parser("demo", help="the main job on built-in defaults (make demo)")
    demo.add_argument("--dir", default="data/demo", help="where to put the images")
    demo.set_defaults(func=cmd_demo)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ParseError as exc:
        print(f"qcow2-harness: {args.command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_INVALID
    except HarnessError as exc:
        print(f"qcow2-harness: {args.command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except OSError as exc:
        print(f"qcow2-harness: {args.command}: {exc.strerror or exc}: "
              f"{exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return EXIT_CANNOT_RUN
    except MemoryError:
        print(f"qcow2-harness: {args.command}: out of memory", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        return EXIT_CANNOT_RUN
    except Exception as exc:  # the last line of defence: never a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"qcow2-harness: {args.command}: internal error: {type(exc).__name__}: {exc} "
              f"(set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
        return EXIT_CANNOT_RUN


def main() -> NoReturn:
    sys.exit(run())
