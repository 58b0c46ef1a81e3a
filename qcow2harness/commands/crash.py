"""`qcow2-harness crash`: crash-consistency campaigns against QEMU or the reference writer."""

from __future__ import annotations

import argparse
import os
import sys

from qcow2harness.commands.output import emit_json
from qcow2harness.errors import UsageError
from qcow2harness.exitcodes import EXIT_INVALID, EXIT_OK

NAME = "crash"
HELP = "enumerate crash states of a workload and judge each (exit 0 none, 2 violations)"
SHOWN = 20  # violations printed in full; --json has them all


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--writer", choices=["qemu", "reference"], default="qemu")
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
    parser.add_argument("--json", action="store_true", help="machine-readable report")


def _options(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--qemu-opt wants KEY=VALUE, not {pair!r}")
        out[key] = value
    return out


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
    if args.matrix:
        repair = MATRIX_REPAIR if args.repair is None else parse_modes(args.repair)
        names = args.workload.split(",") if args.workload else None
        results = run_matrix(names, max_states=args.max_states, seed=args.seed, torn=args.torn,
                             repair=repair,
                             report=None if args.json else lambda r: print(r.summary(),
                                                                           flush=True))
        if args.json:
            emit_json([r.to_json() for r in results])
        failing = [r for r in results if r.violations and r.spec.options.get("cache") != "unsafe"]
        return EXIT_INVALID if failing else EXIT_OK
    workload_name: str = args.workload or ("allocation" if args.writer == "qemu" else "zones")
    spec = CampaignSpec(args.writer, workload_name, tuple(args.mutant), seed=args.seed,
                        max_states=args.max_states, torn=args.torn,
                        options=_options(args.qemu_opt), data=not args.no_data,
                        delta=not args.full_data,
                        repair=DEFAULT_REPAIR if args.repair is None else parse_modes(args.repair),
                        workdir=os.path.abspath(args.workdir) if args.workdir else None)
    if args.state:
        violations, where = rebuild_state(spec, args.state, args.out)
        if args.json:
            emit_json({"state": args.state, "image": args.out, "crash_point": where,
                       "violations": [v.to_json() for v in violations]})
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
    result = run_campaign(spec, None if args.json else
                          lambda n, total: print(f"  ... {n}/{total} states", file=sys.stderr))
    if args.json:
        emit_json(result.to_json())
        return EXIT_INVALID if result.violations else EXIT_OK
    print(result.summary())
    for violation in result.violations[:SHOWN]:
        print(f"state {violation.state}: {violation.prop}: {violation.message}")
        print(f"  {violation.crash_point}")
        for line in violation.applied:
            print(f"  applied: {line}")
        print(f"  reproduce: {violation.reproduce}")
    if len(result.violations) > SHOWN:
        print(f"... and {len(result.violations) - SHOWN} more (--json lists them all)")
    return EXIT_INVALID if result.violations else EXIT_OK
