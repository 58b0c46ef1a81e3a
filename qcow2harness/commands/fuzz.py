"""`qcow2-harness fuzz TARGET`: an atheris campaign, or a plain replay of a corpus.

    qcow2-harness fuzz check --time 3600                    # robustness of parse + check
    qcow2-harness fuzz differential --time 600              # check vs qemu-img check
    qcow2-harness fuzz model --time 600                     # zone model vs reference writer
    qcow2-harness fuzz external --reader 'qemu-img info {}' --time 600
    qcow2-harness fuzz check --replay corpus/ data/fuzz-check/corpus   # no atheris needed
    qcow2-harness fuzz check --time 600 --shard 1/4 --json shard-1.json   # then `merge`

Exit 0 when nothing was found, 2 when something was (findings are in the artifacts
dir as crash-*/oom-*/slow-*/diff-*, minimized, each with a regression test).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK
from qcow2harness.sharding import add_shard_argument

NAME = "fuzz"
HELP = "fuzz a target (check, differential, model, external) or replay a corpus through it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qcow2harness.fuzz.targets import TARGET_NAMES

    parser.add_argument("target", choices=TARGET_NAMES)
    parser.add_argument("--corpus", help="working corpus dir (default data/fuzz-TARGET/corpus)")
    parser.add_argument("--seeds", action="append", default=None,
                        help="read-only seed dir (repeatable; default corpus/seeds, "
                             "corpus/broken)")
    parser.add_argument("--artifacts", help="findings dir (default data/fuzz-TARGET/artifacts)")
    parser.add_argument("--time", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="parallel local worker processes on one corpus (default 1)")
    parser.add_argument("--reader", help="external target: command, {} is the input file")
    parser.add_argument("--reader-timeout", type=float, default=10.0)
    parser.add_argument("--reader-memory-mb", type=int, default=4096)
    parser.add_argument("--mutator", choices=["structured", "bytes"], default="structured",
                        help="structure-aware (default) or libFuzzer's byte mutation only")
    parser.add_argument("--regressions",
                        help="where regression tests go (default tests/fuzz/regressions "
                             "when it exists, else ARTIFACTS/regressions)")
    parser.add_argument("--minimize-time", type=float, default=30.0,
                        help="seconds to minimize each finding (0: off)")
    parser.add_argument("--interval", type=float, default=10.0, help="progress interval")
    parser.add_argument("--runs", type=int, help="stop each worker after N executions")
    parser.add_argument("--max-len", type=int, help="libFuzzer -max_len")
    parser.add_argument("--seed", type=int, help="libFuzzer -seed (worker w of shard I/N gets "
                        "seed + w*N + I; default random, or 1 when sharded)")
    add_shard_argument(parser, "fuzzing (its own seeds, seed-corpus slice and dirs)")
    parser.add_argument("--json", metavar="FILE",
                        help="write the run's result (execs, coverage, corpus, findings) "
                        "here, for `qcow2-harness merge`")
    parser.add_argument("--libfuzzer", action="append", default=[], metavar="ARG",
                        help="extra libFuzzer flag, e.g. --libfuzzer=-mutate_depth=2")
    parser.add_argument("--replay", nargs="+", metavar="PATH",
                        help="run these files/dirs through the target once, no atheris")


def _replay(args: argparse.Namespace) -> int:
    from qcow2harness.fuzz.targets import get_target, limit_address_space, replay

    target = get_target(args.target, args.reader, args.reader_timeout, args.reader_memory_mb)
    limit_address_space(target.bounds.address_space_mb)
    count = found = 0
    for path, finding in replay(target, args.replay):
        count += 1
        if finding is not None:
            found += 1
            print(f"{finding.kind}: {path}: {finding.summary}"
                  + (f" (at {finding.where})" if finding.where else ""))
    print(f"replayed {count} inputs through {args.target}: {found} finding(s)")
    return EXIT_INVALID if found else EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.target == "external" and not args.reader:
        print("qcow2-harness: fuzz: the external target needs --reader 'COMMAND {}'")
        return EXIT_CANNOT_RUN
    if args.replay:
        return _replay(args)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("qcow2-harness: fuzz: atheris is not installed (pip install "
              "'qcow2-harness[fuzz]'); --replay works without it")
        return EXIT_CANNOT_RUN
    from qcow2harness.fuzz.campaign import CampaignConfig, repo_seed_dirs, run_campaign

    missing = [d for d in args.seeds or [] if not os.path.isdir(d)]
    if missing:
        print(f"qcow2-harness: fuzz: no such seed directory: {', '.join(missing)}")
        return EXIT_CANNOT_RUN

    base = os.path.join("data", f"fuzz-{args.target}")
    if not args.shard.whole:
        base = os.path.join(base, f"shard-{args.shard.index}-of-{args.shard.count}")
    regressions = args.regressions
    if regressions is None:
        in_repo = os.path.join("tests", "fuzz", "regressions")
        regressions = in_repo if os.path.isdir(in_repo) else os.path.join(
            args.artifacts or os.path.join(base, "artifacts"), "regressions")
    config = CampaignConfig(
        target=args.target,
        corpus=args.corpus or os.path.join(base, "corpus"),
        artifacts=args.artifacts or os.path.join(base, "artifacts"),
        seconds=args.time, jobs=args.jobs,
        seeds=args.seeds if args.seeds is not None else repo_seed_dirs(),
        mutator=args.mutator, reader=args.reader, reader_timeout=args.reader_timeout,
        reader_memory_mb=args.reader_memory_mb, regressions=regressions,
        minimize_seconds=args.minimize_time, interval=args.interval, runs=args.runs,
        max_len=args.max_len, seed=args.seed, libfuzzer_args=list(args.libfuzzer),
        shard=args.shard,
    )
    print(f"fuzz {args.target}: corpus {config.corpus}, seeds {', '.join(config.seeds) or '-'},"
          f" artifacts {config.artifacts}, {config.jobs} job(s), {config.seconds:g} s, "
          f"mutator {config.mutator}", flush=True)
    started = time.monotonic()
    result = run_campaign(config, progress=lambda line: print(line, flush=True))
    code = _exit_code(result)
    if args.json:
        from qcow2harness.commands.output import write_json
        from qcow2harness.fuzz.shard import result_json

        write_json(args.json, result_json(config, result, code, time.monotonic() - started))
    if not args.shard.whole:
        part = result.seed_slice
        print(f"shard {args.shard.label()}: {part['files']} of {part['total']} seed files")
    for error in result.worker_errors:
        print(f"warning: {error}")
    for record in result.findings:
        print(f"{record.finding.kind}: {record.artifact} ({record.size} -> "
              f"{record.minimized_size} bytes): {record.finding.summary}")
        if record.regression:
            print(f"  regression test: {record.regression}")
    if result.duplicates:
        print(f"{result.duplicates} more input(s) hit already-reported findings")
    print(f"{len(result.findings)} finding(s)")
    return code


def _exit_code(result: Any) -> int:
    if not result.samples or result.samples[-1].execs == 0:
        return EXIT_CANNOT_RUN if result.worker_errors else int(result.exit_code)
    return int(result.exit_code)
