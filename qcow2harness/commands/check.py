"""`qcow2-harness check IMAGE [--json] [--junit FILE]`: conformance against spec/'s clauses."""

from __future__ import annotations

import argparse
from collections import defaultdict
from typing import TYPE_CHECKING

from qcow2harness.commands.output import emit_json, versioned
from qcow2harness.exitcodes import EXIT_OK

if TYPE_CHECKING:
    from qcow2harness.checker import Finding, Report
    from qcow2harness.junit import Suite

NAME = "check"
HELP = "check an image against the spec's clauses (exit 0, 2 MUST, 3 SHOULD only)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="qcow2 image (opened read-only, never modified)")
    parser.add_argument("--json", action="store_true", help="machine-readable report "
                        "(docs/schema/check.schema.json)")
    parser.add_argument("--junit", metavar="FILE",
                        help="also write JUnit XML: one testcase per clause of the checker")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also list MAY-level notes (always in --json)")


def junit_suite(report: Report) -> Suite:
    """One testcase per image-checker clause of the registry (a stable list a CI UI can
    track): a failure of type "must" or "should" when check reported the clause, with
    every finding (clause, level, offset, message) in its text; MAY notes go to the
    case's system-out and never fail it. When the check stopped before the metadata walk
    (a header too broken to go on), the clauses it did not report are skipped."""
    from qcow2harness.junit import Case, Failure, Suite
    from qcow2harness.spec.registry import MODEL_ENFORCERS, load

    registry = load()
    found: dict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        found[finding.clause].append(finding)
    clauses = [c for c in registry if c.family not in MODEL_ENFORCERS]
    clauses += [registry[c] for c in sorted(report.clauses() - {c.id for c in clauses})]
    walked = "clusters_in_file" in report.stats
    cases = []
    for clause in clauses:
        case = Case(f"{clause.id} {clause.title}", f"check.{clause.family}")
        findings = found.get(clause.id, [])
        more = report.suppressed.get(clause.id, 0)
        lines = [f.one_line() for f in findings]
        if more:
            lines.append(f"... and {more} more {clause.id} finding(s) not listed")
        if findings or more:
            if clause.level == "MAY":
                case.system_out = "\n".join(lines)
            else:
                first = findings[0] if findings else None
                where = (f" (offset {first.offset:#x})"
                         if first is not None and first.offset is not None else "")
                head = f"; first: {first.message}{where}" if first is not None else ""
                case.failure = Failure(
                    f"{clause.id} {clause.level}: {len(findings) + more} finding(s){head}",
                    clause.level.lower(), "\n".join(lines))
        elif not walked:
            case.skipped = "not evaluated: the check stopped before the metadata walk"
        cases.append(case)
    counts = report.level_counts
    return Suite(f"check {report.path}", cases, seconds=report.stats.get("seconds", 0.0),
                 properties={"image": report.path, "exit_code": str(report.exit_code),
                             "must": str(counts["MUST"]), "should": str(counts["SHOULD"]),
                             "may": str(counts["MAY"])})


def run(args: argparse.Namespace) -> int:
    from qcow2harness.checker import check_path
    from qcow2harness.progress import Progress

    progress = Progress.for_cli("check", quiet=args.json)
    try:
        report = check_path(args.image, progress=progress.stage if progress.enabled else None)
    finally:
        progress.close(keep=False)
    if args.junit:
        from qcow2harness.junit import write_junit

        write_junit(args.junit, [junit_suite(report)])
    if args.json:
        emit_json(versioned("check", report.to_json()))
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
