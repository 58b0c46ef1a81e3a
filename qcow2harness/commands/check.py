"""`qcow2-harness check IMAGE|DIR [...] [--json] [--junit FILE] [--jobs N]`: conformance
against spec/'s clauses, of one image or of a whole collection (qcow2harness.batch)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from qcow2harness.commands.output import emit_json, versioned
from qcow2harness.exitcodes import EXIT_OK

NAME = "check"
HELP = "check an image against the spec's clauses (exit 0, 2 MUST, 3 SHOULD only)"


EPILOG = """\
One image: its findings, then a verdict line. Several images or a directory (walked,
every file starting with the qcow2 magic is checked, whatever its name): each image's
verdict and findings, then a summary (images per verdict, the most frequent clauses).
With --json, one record per line (docs/schema/check.schema.json), each naming its
image; --junit writes one testsuite per image. A file that cannot be read is a record
of exit class 1 and the batch goes on.

Exit codes: 0 conformant, 2 a MUST clause is violated (or not qcow2 at all), 3 SHOULD
findings only, 1 could not run. For a collection, the worst image's: 1 (an image could
not be read) over 2 over 3 over 0.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("images", nargs="+", metavar="IMAGE|DIR",
                        help="qcow2 images or directories of them (opened read-only, "
                        "never modified)")
    parser.add_argument("--json", action="store_true", help="machine-readable report "
                        "(docs/schema/check.schema.json; one per line for a collection)")
    parser.add_argument("--junit", metavar="FILE",
                        help="also write JUnit XML: one testsuite per image, one testcase "
                        "per clause of the checker")
    parser.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N",
                        help="check a collection in N worker processes (default 1; 0: one "
                        "per CPU)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also list MAY-level notes (always in --json)")


def _jobs(text: str) -> int:
    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if jobs < 0:
        raise argparse.ArgumentTypeError("must be 0 (one per CPU) or more")
    return jobs or (os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    if len(args.images) == 1 and not os.path.isdir(args.images[0]):
        return _run_one(args, args.images[0])
    return _run_many(args)


def _run_one(args: argparse.Namespace, image: str) -> int:
    from qcow2harness.checker import check_path
    from qcow2harness.progress import Progress

    progress = Progress.for_cli("check", quiet=args.json)
    try:
        report = check_path(image, progress=progress.stage if progress.enabled else None)
    finally:
        progress.close(keep=False)
    if args.junit:
        from qcow2harness.checker.report import junit_suite
        from qcow2harness.junit import write_junit

        write_junit(args.junit, [junit_suite(report)])
    if args.json:
        emit_json(versioned("check", report.to_json()))
        return report.exit_code
    listed = [f.to_json() for f in report.findings if args.verbose or f.level != "MAY"]
    for line in _finding_lines(listed, report.suppressed, indent=""):
        print(line)
    counts = report.level_counts
    if report.exit_code == EXIT_OK:
        print("No errors were found on the image.")
    else:
        print(f"{counts['MUST']} MUST violation(s), {counts['SHOULD']} SHOULD finding(s).")
    notes = len(report.findings) - len(listed)
    if notes:
        print(f"{notes} MAY-level note(s) not shown (--verbose lists them).")
    stats = report.stats
    if "clusters_in_file" in stats:
        print(f"{stats.get('data_clusters', 0)} data clusters, "
              f"{stats.get('l2_tables', 0)} L2 tables, "
              f"{stats.get('leaked_clusters', 0)} leaked, "
              f"{stats['clusters_in_file']} clusters in the file.")
    return report.exit_code


def _finding_lines(findings: list[dict[str, Any]], suppressed: dict[str, int],
                   indent: str) -> list[str]:
    """Findings (as in a JSON record) as check prints them, then a line per clause whose
    further findings were not listed."""
    from qcow2harness.checker import Finding

    lines = [indent + Finding(**f).one_line() for f in findings]
    lines += [f"{indent}{'':<6} {clause:<8} ... and {count} more"
              for clause, count in sorted(suppressed.items())]
    return lines


def _run_many(args: argparse.Namespace) -> int:
    import json

    from qcow2harness.batch import VERDICTS, Summary, check_many, count_files
    from qcow2harness.progress import Progress

    progress = Progress.for_cli("check", quiet=False)
    total = count_files(args.images) if progress.enabled else None
    looked_at = 0

    def on_file() -> None:
        nonlocal looked_at
        looked_at += 1
        progress.count(looked_at, total, "files")

    junit = None
    if args.junit:
        from qcow2harness.junit import JUnitWriter

        junit = JUnitWriter(args.junit)
    summary = Summary()
    try:
        for outcome in check_many(args.images, jobs=args.jobs, junit=junit is not None,
                                  on_file=on_file):
            summary.add(outcome)
            if junit is not None:
                junit.add(outcome.suite)
            if args.json:
                progress.note(json.dumps(versioned("check", outcome.record)))
                continue
            record = outcome.record
            counts = record["counts"]
            verdict = record.get("error") or VERDICTS[outcome.exit_code]
            if outcome.exit_code != EXIT_OK and "error" not in record:
                verdict += f" ({counts['MUST']} MUST, {counts['SHOULD']} SHOULD)"
            lines = [f"{outcome.path}: {verdict}"]
            listed = record["violations"] + (record["notes"] if args.verbose else [])
            lines += _finding_lines(listed, record["suppressed"], indent="    ")
            progress.note("\n".join(lines))
    finally:
        progress.close(keep=False)
        if junit is not None:
            junit.close()
    if not args.json:
        for line in summary.lines():
            print(line)
    return summary.exit_code
