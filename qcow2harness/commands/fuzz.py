"""`qcow2-harness fuzz TARGET`: an atheris campaign, or a plain replay of a corpus.

    qcow2-harness fuzz check --time 3600                    # robustness of parse + check
    qcow2-harness fuzz differential --time 600              # check vs qemu-img check
    qcow2-harness fuzz model --time 600                     # zone model vs reference writer
    qcow2-harness fuzz external --reader 'qemu-img info {}' --time 600
    qcow2-harness fuzz external --build series --reader 'qemu-img info {}' --time 600
                                                            # the zoned series as the reader
    qcow2-harness fuzz check --replay corpus/ data/fuzz-check/corpus   # no atheris needed
    qcow2-harness fuzz check --time 600 --shard 1/4 --json shard-1.json   # then `merge`

Exit 0 when nothing was found, 2 when something was (findings are in the artifacts
dir as crash-*/oom-*/slow-*/diff-*, minimized, each with a regression test).
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from typing import TYPE_CHECKING

from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK
from qcow2harness.sharding import add_shard_argument

if TYPE_CHECKING:
    from qcow2harness.fuzz.campaign import CampaignResult, Sample
    from qcow2harness.fuzz.targets import Finding, Target
    from qcow2harness.junit import Case, Suite

NAME = "fuzz"
HELP = "fuzz a target (check, differential, model, external) or replay a corpus through it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qcow2harness.fuzz.reader import BUILD_CHOICES
    from qcow2harness.fuzz.targets import TARGET_NAMES
    from qcow2harness.qemu import ZONED_ENV

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
    parser.add_argument("--build", choices=BUILD_CHOICES,
                        help="differential/external: the QEMU build the reader is "
                             f"({ZONED_ENV}): series = zoned-asan when built, else zoned; "
                             "without --seeds, zoned seeds the series makes join the "
                             "default seeds")
    parser.add_argument("--mutator", choices=["structured", "bytes", "zoned"],
                        default="structured",
                        help="structure-aware (default), libFuzzer's byte mutation only, or "
                             "zoned: new zone geometries and tables for zoned inputs "
                             "(fuzz/zone_geometry.py; give it room with --max-len 1048576)")
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
    parser.add_argument("--junit", metavar="FILE", help="also write JUnit XML: a testcase "
                        "for the run (per input with --replay), a failing one per finding")


def reproduce_command(args: argparse.Namespace, path: str) -> str:
    """The command that replays one input through the same target."""
    argv = ["qcow2-harness", "fuzz", args.target, "--replay", path]
    if args.reader:
        argv += ["--reader", args.reader]
    if getattr(args, "build", None):
        argv += ["--build", args.build]
    return shlex.join(argv)


def _finding_case(args: argparse.Namespace, name: str, finding: Finding, path: str,
                  extra: list[str]) -> Case:
    from qcow2harness.junit import Case, Failure

    text = [*extra, f"reproduce: {reproduce_command(args, path)}"]
    if finding.where:
        text.append(f"at: {finding.where}")
    if finding.details:
        text += ["", finding.details]
    return Case(name, f"fuzz.{args.target}", finding.seconds,
                failure=Failure(finding.summary, finding.kind, "\n".join(text)))


def cannot_run(result: CampaignResult) -> bool:
    """No execution recorded, and workers failed: the campaign did not run (exit 1)."""
    idle = not result.samples or result.samples[-1].execs == 0
    return idle and bool(result.worker_errors)


def campaign_suite(args: argparse.Namespace, result: CampaignResult) -> Suite:
    """A campaign as a testsuite: one testcase for the run (an error when the workers
    failed without running an input: exit 1), one failing testcase per new finding
    (duplicates are counted in the properties, as the CLI counts them)."""
    from qcow2harness.junit import Case, Failure, Suite

    last = result.samples[-1] if result.samples else None
    suite = Suite(f"fuzz {args.target}", seconds=last.seconds if last else 0.0)
    if last is not None:
        suite.properties = {key: str(value) for key, value in last.to_json().items()}
    suite.properties["duplicates"] = str(result.duplicates)
    run = Case(f"{args.target} campaign", f"fuzz.{args.target}",
               last.seconds if last else 0.0, system_out="\n".join(
                   ([last.line(args.target)] if last else []) + result.worker_errors))
    if cannot_run(result):
        run.error = Failure("the workers could not run", "cannot-run",
                            "\n".join(result.worker_errors))
    suite.cases.append(run)
    for record in result.findings:
        extra = [f"artifact: {record.artifact} ({record.size} bytes)"]
        if record.minimized:
            extra.append(f"minimized: {record.minimized} ({record.minimized_size} bytes)")
        if record.regression:
            extra.append(f"regression test: {record.regression}")
        suite.cases.append(_finding_case(
            args, f"{record.finding.kind} {record.finding.where or record.finding.summary}",
            record.finding, record.minimized or record.artifact, extra))
    return suite


def live_line(target: str, seconds: float, sample: Sample) -> str:
    """The one updating line of a campaign on a terminal."""
    corpus = (f"{sample.corpus_bytes / (1 << 20):.1f}Mb" if sample.corpus_bytes >= 1 << 20
              else f"{sample.corpus_bytes // 1024}Kb")
    return (f"fuzz {target}: {sample.seconds:.0f}/{seconds:g}s execs {sample.execs} "
            f"({sample.rate:.0f}/s) cov {sample.cov} ft {sample.ft} "
            f"corpus {sample.units}/{corpus} findings {sample.findings}")


def _replay(args: argparse.Namespace) -> int:
    """Replay under the target's address-space bound, lifted again afterwards (an
    in-process caller, such as a test, must not keep it: its children inherit it)."""
    import resource

    from qcow2harness.fuzz.targets import get_target, limit_address_space

    target = get_target(args.target, args.reader, args.reader_timeout, args.reader_memory_mb,
                        build=args.build)
    saved = resource.getrlimit(resource.RLIMIT_AS)
    limit_address_space(target.bounds.address_space_mb)
    try:
        return _replay_bounded(args, target)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, saved)


def _replay_bounded(args: argparse.Namespace, target: Target) -> int:
    from qcow2harness.fuzz.targets import replay
    from qcow2harness.junit import Case, Suite, write_junit
    from qcow2harness.progress import Progress

    count = found = 0
    suite = Suite(f"fuzz {args.target} replay")
    with Progress.for_cli(f"fuzz {args.target} replay") as progress:
        for path, finding in replay(target, args.replay):
            count += 1
            progress.count(count, None, "inputs")
            if finding is None:
                suite.cases.append(Case(path, f"fuzz.{args.target}"))
                continue
            found += 1
            suite.cases.append(_finding_case(args, path, finding, path, []))
            progress.note(f"{finding.kind}: {path}: {finding.summary}"
                          + (f" (at {finding.where})" if finding.where else ""))
    if args.junit:
        write_junit(args.junit, [suite])
    print(f"replayed {count} inputs through {args.target}: {found} finding(s)")
    return EXIT_INVALID if found else EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.target == "external" and not args.reader:
        print("qcow2-harness: fuzz: the external target needs --reader 'COMMAND {}'")
        return EXIT_CANNOT_RUN
    if args.build is not None:
        from qcow2harness.errors import HarnessError
        from qcow2harness.fuzz.reader import resolve_build
        from qcow2harness.fuzz.targets import BUILD_TARGETS

        if args.target not in BUILD_TARGETS:
            print(f"qcow2-harness: fuzz: --build is for {' and '.join(BUILD_TARGETS)}")
            return EXIT_CANNOT_RUN
        try:
            args.build = resolve_build(args.build)
        except HarnessError as refused:
            print(f"qcow2-harness: fuzz: --build: {refused}")
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
    seeds = args.seeds if args.seeds is not None else repo_seed_dirs()
    if args.build is not None and args.seeds is None:
        from qcow2harness.errors import HarnessError
        from qcow2harness.fuzz.series_seeds import build_series_seeds

        series_seeds = os.path.join("data", "fuzz-series-seeds")
        try:
            build_series_seeds(series_seeds, "zoned")
        except HarnessError as refused:
            print(f"qcow2-harness: fuzz: cannot make the series seeds: {refused}")
            return EXIT_CANNOT_RUN
        seeds = [*seeds, series_seeds]
    config = CampaignConfig(
        target=args.target,
        corpus=args.corpus or os.path.join(base, "corpus"),
        artifacts=args.artifacts or os.path.join(base, "artifacts"),
        seconds=args.time, jobs=args.jobs,
        seeds=seeds,
        mutator=args.mutator, reader=args.reader, reader_timeout=args.reader_timeout,
        reader_memory_mb=args.reader_memory_mb, regressions=regressions,
        minimize_seconds=args.minimize_time, interval=args.interval, runs=args.runs,
        max_len=args.max_len, seed=args.seed, libfuzzer_args=list(args.libfuzzer),
        shard=args.shard, build=args.build,
    )
    print(f"fuzz {args.target}: corpus {config.corpus}, seeds {', '.join(config.seeds) or '-'},"
          f" artifacts {config.artifacts}, {config.jobs} job(s), {config.seconds:g} s, "
          f"mutator {config.mutator}" + (f", build {config.build}" if config.build else ""),
          flush=True)
    from qcow2harness.progress import Progress

    started = time.monotonic()
    with Progress.for_cli(f"fuzz {args.target}") as progress:
        result = run_campaign(
            config, progress=progress.note,
            tick=(lambda sample: progress.show(live_line(args.target, config.seconds, sample)))
            if progress.enabled else None)
        if result.samples:
            progress.show(live_line(args.target, config.seconds, result.samples[-1]), True)
    code = EXIT_CANNOT_RUN if cannot_run(result) else result.exit_code
    if args.junit:
        from qcow2harness.junit import write_junit

        write_junit(args.junit, [campaign_suite(args, result)])
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
        if record.finding.where:
            print(f"  at: {record.finding.where}")
        if record.finding.fields:
            print(f"  field: {record.finding.fields} (seed {record.finding.seed})"
                  + (f"; breaks {', '.join(record.clauses)}" if record.clauses else ""))
        if record.found_as:
            print(f"  found as: {record.found_as}")
        if record.reproduce:
            print(f"  reproduce: {record.reproduce}")
        if record.stock:
            print(f"  stock: {record.stock}")
        if record.narrowed:
            print(f"  narrowed (seed + field): {record.narrowed}")
            if record.narrowed_stock:
                print(f"  stock on it: {record.narrowed_stock}")
        if record.regression:
            print(f"  regression test: {record.regression}")
    if result.duplicates:
        print(f"{result.duplicates} more input(s) hit already-reported findings")
    print(f"{len(result.findings)} finding(s)")
    return code
