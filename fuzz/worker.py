"""One atheris/libFuzzer process for one target (started by the campaign runner).

    python -m qcow2harness.fuzz.worker --target check --artifacts DIR \
        [--mutator structured|bytes] [--reader CMD] -- [libFuzzer flags] CORPUS [SEEDS...]

Only our own code (qcow2harness: checker, image model, generated parser) is instrumented
for coverage; the kaitaistruct runtime (and qcow2harness.filestream, our part of it),
numpy and the standard library are not: the runtime's branches are the same for every
input, and its read calls are the hottest code of a parse. A finding is written as
`{kind}-{sha1}` (libFuzzer's artifact naming: crash-, oom-, slow-, diff-) with a
`.json` beside it (with the field the input changed relative to its nearest seed, when
`--cause-seeds` are given: fuzz/cause.py), then the process exits with EXIT_FINDING.
A finding whose signature (crash site + field) is in `--known` is counted, not kept.
libFuzzer's own `-timeout` and `-rss_limit_mb` stay armed as backstops (timeout-*, oom-*).
Every HEARTBEAT seconds a `#qcow2 execs=N` line reports the executions so far, and a
`#qcow2 fuzzing execs=N cpu=S` line marks the first mutation (seed corpus loaded), so
that fuzz/bench.py can tell the steady rate from start-up.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Callable

EXIT_FINDING = 77
HEARTBEAT = 10.0


def _parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="qcow2harness.fuzz.worker")
    parser.add_argument("--target", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--mutator", choices=["structured", "bytes", "zoned"],
                        default="structured")
    parser.add_argument("--reader")
    parser.add_argument("--reader-timeout", type=float, default=10.0)
    parser.add_argument("--reader-memory-mb", type=int, default=4096)
    parser.add_argument("--seconds", type=float, help="time bound per input")
    parser.add_argument("--rss-mb", type=int, help="peak-RSS growth bound")
    parser.add_argument("--known", help="file of finding signatures to count, not report")
    parser.add_argument("--build", help="the QEMU build a reader target runs "
                        "(qcow2harness.qemu.BUILDS; default: the default QEMU)")
    parser.add_argument("--cause-seeds", action="append", default=[], metavar="DIR",
                        help="seeds a finding is compared with to name the field it "
                             "changed (fuzz/cause.py); repeatable")
    # Off by default: with atheris 3.0 comparison tracing grows the RSS by ~3 KiB per
    # execution (measured in fuzz/RESULTS.md), which an hour-long campaign cannot afford.
    parser.add_argument("--dataflow", action=argparse.BooleanOptionalAction, default=False,
                        help="also trace comparisons (atheris' default; leaks memory)")
    if "--" in argv:
        split = argv.index("--")
        ours, theirs = argv[:split], argv[split + 1:]
    else:
        ours, theirs = argv, []
    return parser.parse_args(ours), theirs


def instrument_imports(target: str, dataflow: bool = False) -> None:
    """Import our code and kaitaistruct under atheris' coverage instrumentation (numpy and
    the standard library stay uninstrumented). Also used by libfuzzer_entry.py."""
    from atheris import import_hook

    # atheris.instrument_imports() with a choice of comparison (dataflow) tracing, for our
    # package only (not the kaitaistruct runtime, not filestream's plain reads); the
    # loader override also instruments modules a PyInstaller bundle loads.
    hooks = import_hook.HookManager({"qcow2harness"}, {"qcow2harness.filestream"}, True,
                                    trace_dataflow=dataflow)
    with hooks:
        import qcow2harness.checker  # noqa: F401 - instrumented for coverage
        import qcow2harness.image  # noqa: F401
        import qcow2harness.info  # noqa: F401
        import qcow2harness.parser.qcow2  # noqa: F401
        if target == "model":
            import qcow2harness.reference.persistence  # noqa: F401
            import qcow2harness.reference.writer  # noqa: F401


def structured_mutator() -> Callable[[bytes, int, int], bytes]:
    """The structure-aware mutator, with libFuzzer's own mutation as its byte fallback."""
    import atheris
    from qcow2harness.fuzz import mutator

    # Looked up at each call: Setup() replaces atheris.Mutate with libFuzzer's.
    mutator.LIBFUZZER_MUTATE = lambda data, max_size: atheris.Mutate(data, max_size)
    return mutator.mutate


def main(argv: list[str] | None = None) -> None:
    args, libfuzzer_args = _parse(list(sys.argv[1:] if argv is None else argv))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import atheris

    instrument_imports(args.target, args.dataflow)
    from dataclasses import replace

    from qcow2harness.fuzz import targets

    target = targets.get_target(args.target, args.reader, args.reader_timeout,
                                args.reader_memory_mb, build=args.build)
    bounds = target.bounds
    if args.seconds is not None:
        bounds = replace(bounds, seconds=args.seconds)
    if args.rss_mb is not None:
        bounds = replace(bounds, rss_mb=args.rss_mb)
    os.makedirs(args.artifacts, exist_ok=True)
    targets.limit_address_space(bounds.address_space_mb)
    known: set[str] = set()
    if args.known and os.path.exists(args.known):
        with open(args.known) as f:
            known = {line.rstrip("\n") for line in f}
    from qcow2harness.fuzz import cause

    seeds = cause.load_seeds(args.cause_seeds)
    hints: dict[str, list[frozenset[str]]] = {}  # site -> field sets that explained it
    state = {"execs": 0, "dups": 0, "next": time.monotonic() + HEARTBEAT,
             "start": time.monotonic(), "fuzzing": 0}

    def test_one_input(data: bytes) -> None:
        state["execs"] += 1
        finding = targets.execute(target, data, bounds)
        if finding is not None and seeds:
            # Name the field (the same site with another field is another finding).
            site = finding.site_signature
            if site not in hints:
                hints[site] = cause.known_fields(known, site)
            finding = cause.attribute(target, data, finding, seeds, bounds, hints)
        if finding is not None and finding.signature in known:
            state["dups"] += 1  # a bug already reported: counted, not re-reported
            finding = None
        if finding is not None:
            name = f"{finding.kind}-{targets.input_name(data)}"
            path = os.path.join(args.artifacts, name)
            with open(path, "wb") as out:
                out.write(data)
            with open(path + ".json", "w") as out:
                json.dump(finding.to_json(), out, indent=1)
            sys.stderr.write(f"#qcow2 FINDING {finding.kind} {path}: {finding.summary}\n"
                             f"{finding.details}\n")
            sys.stderr.flush()
            os._exit(EXIT_FINDING)
        if state["execs"] % 256 == 0 and time.monotonic() >= state["next"]:
            now = time.monotonic()
            state["next"] = now + HEARTBEAT
            sys.stderr.write(f"#qcow2 execs={state['execs']} dups={state['dups']} "
                             f"seconds={now - state['start']:.1f}\n")
            sys.stderr.flush()

    kwargs = {}
    if args.mutator in ("structured", "zoned"):
        mutate = structured_mutator()
        if args.mutator == "zoned":
            from qcow2harness.fuzz.zone_geometry import geometry_mutate as mutate

        def custom_mutate(data: bytes, max_size: int, seed: int) -> bytes:
            if not state["fuzzing"]:
                state["fuzzing"] = 1
                sys.stderr.write(f"#qcow2 fuzzing execs={state['execs']} "
                                 f"cpu={time.process_time():.3f}\n")
            return mutate(data, max_size, seed)

        kwargs["custom_mutator"] = custom_mutate
    atheris.Setup([sys.argv[0], *libfuzzer_args], test_one_input, **kwargs)
    # Everything imported so far lives as long as the process: keep it out of the
    # collector's full passes (each input's parse tree is cyclic, so collections run
    # often, and scanning numpy's and the parser's module objects each time cost ~9 %).
    gc.collect()
    gc.freeze()
    # A parse tree lives for one input: with a larger first generation most of it is
    # collected as garbage instead of being scanned alive and promoted (+3 % measured).
    gc.set_threshold(20000, 10, 10)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
