"""`qcow2-harness crash`: crash-consistency campaigns against QEMU or the reference writer."""

from __future__ import annotations

import argparse
import os
from collections import defaultdict
from typing import TYPE_CHECKING

from qcow2harness.commands.output import versioned, write_json
from qcow2harness.errors import UsageError
from qcow2harness.exitcodes import EXIT_INVALID, EXIT_OK
from qcow2harness.sharding import add_shard_argument

if TYPE_CHECKING:
    from qcow2harness.crash.campaign import CampaignResult, Finding, Violation
    from qcow2harness.crash.workload import Workload
    from qcow2harness.junit import Case, Suite

NAME = "crash"
HELP = "enumerate crash states of a workload and judge each (exit 0 none, 2 violations)"
JUNIT_SHOWN = 50  # violations written out in full per JUnit testcase


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writer", choices=["qemu", "reference"], default="qemu")
    parser.add_argument("--build", choices=["zoned", "zoned-asan", "stock"], default=None,
                        help="run QEMU from the series build in $QCOW2_HARNESS_ZONED_QEMU "
                        "(make zoned-qemu) instead of the default: zoned (the series; the "
                        "zoned workloads need it), zoned-asan, or stock (10.2 without it)")
    parser.add_argument("--expect", default=None, metavar="CLAUSES",
                        help="deviations the writer is known for (comma-separated clause "
                        "ids, or none): reported once, looked past in every crash state. "
                        "Default: the build's known ones (zoned: WP-2)")
    parser.add_argument("--workload", default=None,
                        help="a named workload (see --list) or a JSON file; with --matrix, "
                        "a comma-separated list of named workloads (default: all)")
    parser.add_argument("--mutant", action="append", default=[],
                        help="reference writer mutant (repeatable)")
    parser.add_argument("--qemu-opt", action="append", default=[], metavar="K=V",
                        help="qemu-img create option (cluster_size, lazy_refcounts, "
                        "extended_l2, refcount_bits...), cache=MODE, or a qcow2 runtime option")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-states", type=int, default=5000)
    parser.add_argument("--torn", action="store_true", help="also tear multi-sector writes")
    parser.add_argument("--no-data", action="store_true",
                        help="skip reading guest data through QEMU (checker only)")
    parser.add_argument("--full-data", action="store_true",
                        help="read every guest byte of every state through QEMU (no delta "
                        "against the epoch's verified prefix)")
    parser.add_argument("--repair", default=None, metavar="MODES",
                        help="recovery paths run on a copy of every crash state and judged "
                        "(comma-separated: auto, check-r-all, check-r-leaks; or none). Default: "
                        "auto; with --matrix auto,check-r-all. See crash/repair.py")
    parser.add_argument("--state", help="rebuild one state (an id from a report, or 'base')")
    parser.add_argument("--out", default="crash-state.qcow2", help="where --state writes it")
    parser.add_argument("--workdir", help="keep the capture (base image, log, capture.json) "
                        "here; --state with the same --workdir rebuilds from that very log "
                        "(QEMU's log can differ a little from run to run)")
    parser.add_argument("--matrix", action="store_true",
                        help="run the QEMU option matrix over every named QEMU workload")
    parser.add_argument("--list", action="store_true", help="list workloads and mutants")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE",
                        help="machine-readable report, on stdout or into FILE (what "
                        "`qcow2-harness merge` reads; docs/schema/crash.schema.json)")
    parser.add_argument("--junit", metavar="FILE", help="also write JUnit XML: a testsuite "
                        "per campaign, a testcase per epoch of crash states")
    add_shard_argument(parser, "crash states (with --matrix: of the campaigns)")
    parser.add_argument("--jobs", type=int, default=0,
                        help="local processes judging states (default: one per CPU, at "
                        "most 4; campaigns under 400 states use one)")
    parser.add_argument("--capture-only", action="store_true",
                        help="capture the workload into --workdir and stop (shards then "
                        "share it with --reuse-capture)")
    parser.add_argument("--reuse-capture", action="store_true",
                        help="judge the capture kept in --workdir instead of capturing again")


def _expect(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    if text.strip() in ("none", ""):
        return ()
    from qcow2harness.spec.registry import load

    known = load().levels
    clauses = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    unknown = [c for c in clauses if c not in known]
    if unknown:
        raise UsageError(f"--expect: {', '.join(unknown)} is no clause of spec/clauses.toml")
    return clauses


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--qemu-opt wants KEY=VALUE, not {pair!r}")
        out[key] = value
    return out


def _violation_text(violations: list[Violation]) -> str:
    lines = []
    for violation in violations[:JUNIT_SHOWN]:
        lines += [f"state {violation.state}: {violation.prop}: {violation.message}",
                  f"  {violation.crash_point}"]
        lines += [f"  applied: {line}" for line in violation.applied]
        lines.append(f"  reproduce: {violation.reproduce}")
    if len(violations) > JUNIT_SHOWN:
        lines.append(f"... and {len(violations) - JUNIT_SHOWN} more (--json lists them all)")
    return "\n".join(lines)


def _case(name: str, classname: str, violations: list[Violation],
          expected: str | None = None) -> Case:
    from qcow2harness.junit import Case, Failure

    case = Case(name, classname)
    if violations:
        states = len({v.state for v in violations})
        first = violations[0]
        message = (f"{len(violations)} violation(s) in {states} state(s); first: state "
                   f"{first.state}: {first.prop}: {first.message}")
        if expected is not None:  # a control row: its failures are the point
            case.skipped = f"expected to fail: {expected}; {message}"
            case.system_out = _violation_text(violations)
        else:
            case.failure = Failure(message, first.prop, _violation_text(violations))
    return case


def junit_suite(result: CampaignResult, expected: str | None = None) -> Suite:
    """A campaign as a testsuite: "base" (the image before the workload), "run" (writer
    and model agree while running) and one testcase per epoch, failing with every
    violating state of that epoch (state ID, property, message, reproduce command).
    Per epoch rather than per state keeps the file bounded: a campaign judges up to
    --max-states states but has only as many epochs as the log has flushes."""
    from qcow2harness.junit import Case, Suite

    spec = result.spec
    classname = f"crash.{spec.writer}.{spec.workload}"
    suite = Suite(f"crash {spec.label()}", seconds=result.seconds, properties={
        "command": spec.command(), "writer_version": result.version,
        "states_checked": str(result.states_checked),
        "states_possible": str(result.states_possible),
        "exhaustive": str(result.exhaustive).lower(), "epochs": str(result.epochs)})
    if result.not_run:
        suite.cases.append(Case("campaign", classname, skipped=result.not_run))
        return suite
    by_epoch: dict[str, list[Violation]] = defaultdict(list)
    for violation in result.violations:
        by_epoch[violation.state.split(":")[0]].append(violation)
    suite.cases.append(_case("base image", classname, by_epoch.pop("base", []), expected))
    suite.cases.append(_case("writer and model agree", classname, by_epoch.pop("run", []),
                             expected))
    for epoch in range(result.epochs):
        suite.cases.append(_case(f"epoch {epoch}", classname, by_epoch.pop(str(epoch), []),
                                 expected))
    for other, violations in sorted(by_epoch.items()):  # none expected; never dropped
        suite.cases.append(_case(f"state group {other}", classname, violations, expected))
    return suite


def named_or_file(name: str) -> Workload:
    from qcow2harness.crash.workload import get_workload

    return get_workload(name, "qemu")


def print_findings(result: CampaignResult) -> None:
    """The distinct findings (one per cause), each with its smallest state: where it
    crashed, what it kept, and the lines that rebuild it."""
    for number, finding in enumerate(result.findings, 1):
        example = finding.example
        print(f"[{number}] {finding.prop}: {finding.cause} ({finding.states} time(s), first "
              f"after {finding.seconds:.1f} s)")
        print(f"  state {example.state}: {example.message}")
        print(f"  {example.crash_point}")
        for line in example.applied:
            print(f"  applied: {line}")
        print(f"  reproduce: {example.reproduce}")
        if finding.reproducer:
            print("  with qemu-img/qemu-io alone:")
            for line in finding.reproducer:
                print(f"    {line}")


def print_matrix_findings(results: list[CampaignResult]) -> None:
    """The matrix's findings united by cause across its campaigns (the control rows,
    expected to fail, left out), each with the smallest reproducer any campaign had."""
    found: dict[tuple[str, str], list[tuple[CampaignResult, Finding]]] = defaultdict(list)
    for result in results:
        if result.sharding.get("matrix", {}).get("expected_to_fail"):
            continue
        for finding in result.findings:
            found[(finding.prop, finding.cause)].append((result, finding))
    if not found:
        return
    print(f"{len(found)} distinct finding(s) across the matrix, by cause:")
    for (prop, cause), hits in found.items():
        states = sum(f.states for _, f in hits)
        print(f"  {prop}: {cause}: {states} time(s) in {len(hits)} campaign(s), e.g. "
              f"{hits[0][0].spec.label()} state {hits[0][1].example.state}")
        print(f"    reproduce: {hits[0][1].example.reproduce}")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.crash.campaign import CampaignSpec, rebuild_state, run_campaign, run_matrix
    from qcow2harness.crash.repair import DEFAULT_REPAIR, MATRIX_REPAIR, parse_modes
    from qcow2harness.crash.workload import named_workloads

    if args.list:
        from qcow2harness.reference.writer import Mutant

        for writer in ("qemu", "reference"):
            for name, workload in named_workloads(writer).items():
                print(f"{writer:<10} {name:<16} {workload.description}")
        print("mutants:", ", ".join(m.value for m in Mutant))
        return EXIT_OK
    from qcow2harness.progress import Progress

    quiet = args.json == "-"  # stdout carries the JSON
    progress = Progress.for_cli("crash", quiet=quiet)
    if args.matrix and (args.capture_only or args.reuse_capture):
        raise UsageError("--matrix is split by campaign and captures each itself: "
                         "--capture-only/--reuse-capture are for one campaign")
    if args.matrix:
        from qcow2harness.crash.shard import counts_against

        repair = MATRIX_REPAIR if args.repair is None else parse_modes(args.repair)
        names = args.workload.split(",") if args.workload else None
        finished: list[CampaignResult] = []

        def matrix_report(result: CampaignResult) -> None:
            finished.append(result)
            if not quiet:
                progress.note(result.summary())
            progress.count(len(finished), None, "campaigns")

        with progress:
            results = run_matrix(names, max_states=args.max_states, seed=args.seed,
                                 torn=args.torn, report=matrix_report, shard=args.shard,
                                 jobs=args.jobs, repair=repair, build=args.build,
                                 expect=_expect(args.expect))
        if not quiet:
            print_matrix_findings(results)
        if args.junit:
            from qcow2harness.junit import write_junit

            write_junit(args.junit, [junit_suite(
                r, r.sharding.get("matrix", {}).get("expected_to_fail") or None)
                for r in results])
        reports = [r.to_json() for r in results]
        if args.json:
            write_json(args.json, versioned("crash", {"campaigns": reports}))
        return EXIT_INVALID if any(counts_against(r) for r in reports) else EXIT_OK
    workload_name: str = args.workload or (
        "zones" if args.writer == "reference" or args.build in ("zoned", "zoned-asan")
        else "allocation")
    if (args.writer == "qemu" and args.repair not in (None, "none")
            and named_or_file(workload_name).zoned is not None):
        raise UsageError("--repair is not judged for zoned workloads (its writes test "
                         "ignores the write pointers): leave it out, or --repair none")
    spec = CampaignSpec(args.writer, workload_name, tuple(args.mutant), seed=args.seed,
                        max_states=args.max_states, torn=args.torn,
                        options=_options(args.qemu_opt), data=not args.no_data,
                        delta=not args.full_data,
                        repair=DEFAULT_REPAIR if args.repair is None else parse_modes(args.repair),
                        workdir=os.path.abspath(args.workdir) if args.workdir else None,
                        reuse_capture=args.reuse_capture, build=args.build,
                        expect=_expect(args.expect))
    if args.capture_only:
        from qcow2harness.crash.shard import keep_capture

        capture, digest = keep_capture(spec)
        print(f"captured {spec.label()} into {spec.workdir}: {len(capture.entries)} log "
              f"entries, capture digest {digest[:16]}")
        return EXIT_OK
    if args.state:
        violations, where = rebuild_state(spec, args.state, args.out)
        if args.junit:
            from qcow2harness.junit import Suite, write_junit

            write_junit(args.junit, [Suite(f"crash {spec.label()} state {args.state}", [
                _case(f"state {args.state}", f"crash.{spec.writer}.{spec.workload}",
                      violations)])])
        if args.json:
            write_json(args.json, versioned("crash", {
                "state": args.state, "image": args.out, "crash_point": where,
                "violations": [v.to_json() for v in violations]}))
        else:
            print(f"state {args.state} written to {args.out}")
            print(f"  {where}")
            shown = set()
            for violation in violations:
                print(f"  {violation.prop}: {violation.message}")
                if violation.prop.startswith("repair/") and violation.reproduce not in shown:
                    shown.add(violation.reproduce)
                    print(f"    reproduce: {violation.reproduce}")
            if violations:
                for line in violations[0].applied:
                    print(f"    applied: {line}")
            else:
                print("  no violations")
        return EXIT_INVALID if violations else EXIT_OK
    with progress:
        result = run_campaign(spec, (lambda n, total: progress.count(n, total, "states judged"))
                              if progress.enabled else None, jobs=args.jobs, shard=args.shard)
    if args.junit:
        from qcow2harness.junit import write_junit

        write_junit(args.junit, [junit_suite(result)])
    if args.json:
        write_json(args.json, versioned("crash", result.to_json()))
        if quiet:
            return EXIT_INVALID if result.violations else EXIT_OK
    if not args.shard.whole:
        print(f"shard {args.shard.label()}: states {result.sharding['states_total']} in all, "
              "this part judged below")
    print(result.summary())
    print_findings(result)
    if len(result.violations) > len(result.findings):
        print(f"{len(result.violations)} violation(s) in all, {len(result.findings)} cause(s) "
              "(--json lists every one)")
    return EXIT_INVALID if result.violations else EXIT_OK
