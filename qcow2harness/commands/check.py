"""`qcow2-harness check IMAGE [--json]`: conformance against spec/'s clauses."""

from __future__ import annotations

import argparse

from qcow2harness.commands.output import emit_json
from qcow2harness.exitcodes import EXIT_OK

NAME = "check"
HELP = "check an image against the spec's clauses (exit 0, 2 MUST, 3 SHOULD only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="qcow2 image (opened read-only, never modified)")
    parser.add_argument("--json", action="store_true", help="machine-readable report")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also list MAY-level notes (always in --json)")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.checker import check_path

    report = check_path(args.image)
    if args.json:
        emit_json(report.to_json())
        return report.exit_code
    notes = 0
    for finding in report.findings:
        if finding.level == "MAY" and not args.verbose:
            notes += 1
            continue
        print(finding.one_line())
    for clause, count in sorted(report.suppressed.items()):
        print(f"{'':<6} {clause:<8} ... and {count} more")
    counts = report.level_counts
    if report.exit_code == EXIT_OK:
        print("No errors were found on the image.")
    else:
        print(f"{counts['MUST']} MUST violation(s), {counts['SHOULD']} SHOULD finding(s).")
    if notes:
        print(f"{notes} MAY-level note(s) not shown (--verbose lists them).")
    stats = report.stats
    if "clusters_in_file" in stats:
        print(f"{stats.get('data_clusters', 0)} data clusters, "
              f"{stats.get('l2_tables', 0)} L2 tables, "
              f"{stats.get('leaked_clusters', 0)} leaked, "
              f"{stats['clusters_in_file']} clusters in the file.")
    return report.exit_code
