"""The nightly property campaign: the stateful suites, round after round.

    python -m qcow2harness.properties.nightly --minutes 30
    python -m qcow2harness.properties.nightly --rounds 40 --shard 1/4 --json shard-1.json

A **round** runs every suite once (`--examples` examples of up to `--steps` steps each,
the `nightly` settings: no deadline, example database in data/hypothesis unless
--no-database): the model against the reference writer, against real QEMU, against
QEMU's maintenance tools (properties/tools.py), and the zoned tools suite
(properties/zoned_tools.py) against the reference tools and, where a zoned-capable QEMU
is found, against QEMU (otherwise reported as not run). Rounds are numbered 0, 1, 2...; round r
uses the Hypothesis seed `--seed + r`, so a round means the same run on every machine.

**Shards.** `--shard I/N` runs the rounds r with r mod N = I, so shards never share a
seed and N shards with `--rounds R` run exactly rounds 0..R-1 between them, as the
unsharded run does; with `--minutes` each shard runs its rounds in order until its time
is up. `--jobs J` runs J local processes, process j taking the rounds of shard
(I + j*N)/(N*J): together the rounds of shard I/N. (The database, when on, replays
stored failures first, and Hypothesis bounds shrinking by time: for runs that repeat
exactly use --no-database, and --no-shrink.)

Every round runs even after a failure. Findings are counted by cause, not by round:
each distinct failure Hypothesis reports (every member of its ExceptionGroup) is kept
once per suite and identity (the clause of a zoned verdict, else the exception's type
and first line), with the round and seed that found it first, the rounds that saw it
again, the shrunk steps and its `@reproduce_failure` blob. In the zoned suites a clause
found in one round is a known deviation for the later rounds, so they look past it;
`--expect CLAUSE` declares one from the start (for example WP-2 for the posted series):
it is counted under `expected_seen` and everything else is still judged. Exit 0 when no
round failed, 2 when one did. `--json FILE` writes the result `qcow2-harness merge` reads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.reporting import with_reporter
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from qcow2harness import qemu
from qcow2harness.sharding import WHOLE, Shard, add_shard_argument

from .stateful import QemuGuestMachine, zoned_qemu_unavailable, zoned_writer_machine
from .tools import QemuToolsMachine
from .verdicts import OBSERVED, ClauseViolation, Observation
from .zoned_tools import zoned_tools_machine

DATABASE = "data/hypothesis"
NIGHTLY = settings(
    max_examples=50,
    stateful_step_count=50,
    deadline=None,
    derandomize=False,  # whatever profile is loaded: the round's seed decides
    database=DirectoryBasedExampleDatabase(DATABASE),
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
SUITES = ("reference", "qemu", "tools", "zoned-tools", "zoned-qemu")
QEMU_SUITES = ("qemu", "tools", "zoned-qemu")
SUITE_NAMES = {"reference": "reference writer", "qemu": "real QEMU",
               "tools": "QEMU maintenance tools", "zoned-tools": "reference tools, zoned",
               "zoned-qemu": "zoned QEMU and its tools"}
OUTPUT_KEPT = 8000  # characters of Hypothesis' report kept per failure


@dataclass
class Plan:
    """What a (shard of a) nightly run does; the same for all its processes."""

    suites: list[str]
    examples: int = 50
    steps: int = 50
    base_seed: int = 0
    rounds: int | None = None  # run rounds 0..rounds-1 (this shard's share)
    minutes: float | None = None
    mutants: tuple[str, ...] = ()
    database: str | None = DATABASE
    shrink: bool = True
    expected: frozenset[str] = frozenset()  # the writer's declared deviations (--expect)

    def settings(self) -> settings:
        database = DirectoryBasedExampleDatabase(self.database) if self.database else None
        phases = [p for p in Phase if p is not Phase.explain and (self.shrink
                                                                 or p is not Phase.shrink)]
        return settings(NIGHTLY, max_examples=self.examples, stateful_step_count=self.steps,
                        database=database, phases=phases)

    def machine(self, suite: str, known: frozenset[str] = frozenset(),
                ) -> type[RuleBasedStateMachine]:
        if suite == "reference":
            return zoned_writer_machine(self.mutants)
        if suite in ("zoned-tools", "zoned-qemu"):
            return zoned_tools_machine(qemu_writer=suite == "zoned-qemu",
                                       expected=self.expected | known)
        return QemuToolsMachine if suite == "tools" else QemuGuestMachine


@dataclass
class Outcome:
    rounds: list[int] = field(default_factory=list)
    examples: dict[str, int] = field(default_factory=dict)  # machines run, per suite
    # One per distinct finding (suite, identity), the first as found.
    failures: list[dict[str, Any]] = field(default_factory=list)
    # Declared deviations seen, per suite and clause: count and first message.
    expected: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def add_failure(self, failure: dict[str, Any]) -> bool:
        """Keep a failure; False when its finding was already kept (rounds_seen grows)."""
        for kept in self.failures:
            if (kept["suite"], kept["identity"]) == (failure["suite"], failure["identity"]):
                kept["rounds_seen"] = sorted(set(kept["rounds_seen"] + failure["rounds_seen"]))
                if failure["round"] < kept["round"]:
                    kept.update({k: v for k, v in failure.items() if k != "rounds_seen"})
                return False
        self.failures.append(dict(failure))
        self.failures.sort(key=lambda f: (f["round"], f["suite"], f["identity"]))
        return True

    def add_expected(self, suite: str, seen: dict[str, Observation]) -> None:
        for clause, observation in seen.items():
            entry = self.expected.setdefault(suite, {}).setdefault(
                clause, {"count": 0, "first": observation.first[:2000]})
            entry["count"] += observation.count

    def add(self, other: Outcome) -> None:
        self.rounds = sorted(self.rounds + other.rounds)
        for suite, count in other.examples.items():
            self.examples[suite] = self.examples.get(suite, 0) + count
        for failure in other.failures:
            self.add_failure(failure)
        for suite, clauses in other.expected.items():
            self.add_expected(suite, {c: Observation(c, e["first"], e["count"])
                                      for c, e in clauses.items()})


def round_seed(base: int, number: int) -> int:
    return base + number


def failures_of(error: BaseException) -> list[BaseException]:
    """The distinct failures Hypothesis reports: the members of a group, or the error."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in failures_of(inner)]
    return [error]


def identity(error: BaseException) -> str:
    """What makes two failures the same finding: the clause of a verdict, else the
    exception type and its first line."""
    if isinstance(error, ClauseViolation):
        return error.clause
    return f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"


def run_suite(plan: Plan, suite: str, number: int, known: frozenset[str] = frozenset(),
              ) -> tuple[int, list[dict[str, Any]], dict[str, Observation]]:
    """One suite in round `number`: (machines run, its distinct failures, the expected
    deviations it saw). Clauses in `known` count as expected for the zoned suites."""
    base = plan.machine(suite, known)
    count = [0]

    def counting_init(machine: Any) -> None:
        count[0] += 1
        base.__init__(machine)

    machine = type(base.__name__, (base,), {"__init__": counting_init})
    seed(round_seed(plan.base_seed, number))(machine)
    lines: list[str] = []
    OBSERVED.clear()
    failures = []
    try:
        with with_reporter(lambda text: lines.append(str(text))):
            run_state_machine_as_test(machine, settings=plan.settings())
    except BaseException as error:  # noqa: BLE001 - a failing round is recorded, not raised
        if isinstance(error, KeyboardInterrupt):
            raise
        for failure in failures_of(error):
            notes = getattr(failure, "__notes__", [])
            output = "\n".join([*lines, str(failure), *notes])
            blob = next((line.strip() for line in output.splitlines()
                         if "@reproduce_failure" in line), "")
            failures.append({"round": number, "seed": round_seed(plan.base_seed, number),
                             "suite": suite, "identity": identity(failure),
                             "error": f"{type(failure).__name__}: {failure}"[:2000],
                             "reproduce": blob, "output": output[-OUTPUT_KEPT:],
                             "rounds_seen": [number]})
    seen = {clause: dataclasses.replace(obs) for clause, obs in OBSERVED.items()}
    return count[0], failures, seen


def run_rounds(plan: Plan, shard: Shard,
               say: Callable[[str], None] = lambda line: None) -> Outcome:
    """This shard's rounds, in order, until the rounds or the minutes run out. A failure
    found once is a known deviation for the later rounds of its suite, which go on
    looking for others; a round that finds it again adds to its `rounds_seen`."""
    outcome = Outcome(examples={suite: 0 for suite in plan.suites})
    begun = time.monotonic()
    deadline = begun + plan.minutes * 60 if plan.minutes is not None else math.inf
    number = shard.index
    while time.monotonic() < deadline and (plan.rounds is None or number < plan.rounds):
        for suite in plan.suites:
            started = time.monotonic()
            known = frozenset(f["identity"] for f in outcome.failures if f["suite"] == suite)
            machines, failures, seen = run_suite(plan, suite, number, known)
            outcome.examples[suite] += machines
            outcome.add_expected(suite, seen)
            name = SUITE_NAMES[suite]
            for failure in failures:
                # Time to this finding: from the start of this process's run.
                failure["found_after_seconds"] = round(time.monotonic() - begun, 1)
                if outcome.add_failure(failure):
                    say(f"nightly: round {number} (seed {failure['seed']}): FAILED against "
                        f"{name}: {failure['identity']}\n{failure['output'] or failure['error']}")
                else:
                    say(f"nightly: round {number}: {name}: {failure['identity']} again")
            if not failures:
                say(f"nightly: round {number}: {name}: {plan.examples} examples of up to "
                    f"{plan.steps} steps passed in {time.monotonic() - started:.0f} s"
                    + (f" (expected: {', '.join(sorted(seen))})" if seen else ""))
        outcome.rounds.append(number)
        number += shard.count
    return outcome


def _job(args: tuple[Plan, Shard]) -> Outcome:
    plan, shard = args
    return run_rounds(plan, shard, lambda line: print(line, flush=True))


def run(plan: Plan, shard: Shard = WHOLE, jobs: int = 1,
        say: Callable[[str], None] = lambda line: None) -> Outcome:
    """Shard I/N with `jobs` local processes: process j runs shard (I + j*N)/(N*jobs)."""
    if jobs <= 1:
        return run_rounds(plan, shard, say)
    import multiprocessing

    parts = [(plan, Shard(shard.index + j * shard.count, shard.count * jobs))
             for j in range(jobs)]
    with multiprocessing.get_context("fork").Pool(jobs) as pool:
        outcomes = pool.map(_job, parts)
    total = Outcome(examples={suite: 0 for suite in plan.suites})
    for outcome in outcomes:
        total.add(outcome)
    return total


def result_json(plan: Plan, shard: Shard, jobs: int, outcome: Outcome, not_run: list[str],
                seconds: float) -> dict[str, Any]:
    return {
        "kind": "properties", "shard": shard.to_json(), "jobs": jobs,
        "suites": plan.suites, "examples_per_round": plan.examples, "steps": plan.steps,
        "mutants": list(plan.mutants), "seed": plan.base_seed, "rounds_wanted": plan.rounds,
        "minutes": plan.minutes, "database": plan.database, "shrink": plan.shrink,
        "rounds": outcome.rounds, "examples": outcome.examples,
        "expect": sorted(plan.expected), "expected_seen": outcome.expected,
        "failures": outcome.failures, "not_run": not_run,
        "exit_code": 2 if outcome.failures else 0, "seconds": round(seconds, 3),
    }


def expected_clauses(given: list[str]) -> frozenset[str]:
    """--expect values: clause ids, or 'series' for the series' documented findings."""
    clauses = {clause for value in given if value != "series" for clause in value.split(",")}
    if "series" in given:
        from .series_findings import SERIES_EXPECTED

        clauses |= SERIES_EXPECTED
    return frozenset(clauses)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, help="stop starting rounds after this "
                        "(default 30 unless --rounds is given)")
    parser.add_argument("--rounds", type=int, help="run rounds 0..R-1 (this shard's share)")
    parser.add_argument("--seed", type=int, default=0, help="round r uses seed SEED + r")
    add_shard_argument(parser, "rounds (round r goes to shard r mod N)")
    parser.add_argument("--jobs", type=int, default=1, help="local processes (default 1)")
    parser.add_argument("--suite", action="append", choices=SUITES,
                        help="run only this suite (repeatable; default all)")
    parser.add_argument("--examples", type=int, default=NIGHTLY.max_examples)
    parser.add_argument("--steps", type=int, default=NIGHTLY.stateful_step_count)
    parser.add_argument("--expect", action="append", default=[], metavar="CLAUSE",
                        help="a known deviation of the writer (repeatable, e.g. WP-2; "
                        "'series': every clause in docs/series-review.md): counted once, "
                        "and everything else is still judged (zoned suites)")
    parser.add_argument("--mutant", action="append", default=[],
                        help="reference writer mutant (the failures must then be found)")
    parser.add_argument("--no-database", action="store_true",
                        help="no example database: runs repeat exactly from their seeds")
    parser.add_argument("--no-shrink", action="store_true",
                        help="report failures unshrunk (Hypothesis bounds shrinking by "
                        "time, so a shrunk form may differ between runs; the seed does not)")
    parser.add_argument("--json", metavar="FILE", help="write the result here (for "
                        "`qcow2-harness merge`)")
    args = parser.parse_args(argv)
    minutes = args.minutes if args.minutes is not None or args.rounds is not None else 30.0
    suites = list(dict.fromkeys(args.suite or SUITES))
    not_run = []
    needs_qemu = [suite for suite in suites if suite in QEMU_SUITES]
    if needs_qemu and not (qemu.find_tool("qemu-img") and qemu.find_tool("qemu-io")):
        for suite in needs_qemu:
            suites.remove(suite)
            not_run.append(f"{suite}: qemu-img/qemu-io not found")
        print("nightly: not run against QEMU: qemu-img/qemu-io not found", flush=True)
    if "zoned-qemu" in suites and (reason := zoned_qemu_unavailable()) is not None:
        suites.remove("zoned-qemu")
        not_run.append(f"zoned-qemu: {reason}")
        print(f"nightly: zoned-qemu not run: {reason}", flush=True)
    plan = Plan(suites, args.examples, args.steps, args.seed, args.rounds, minutes,
                tuple(args.mutant), None if args.no_database else DATABASE,
                not args.no_shrink, expected_clauses(args.expect))
    started = time.monotonic()
    outcome = run(plan, args.shard, args.jobs, lambda line: print(line, flush=True))
    total = time.monotonic() - started
    if args.json:
        with open(args.json, "w") as stream:
            json.dump(result_json(plan, args.shard, args.jobs, outcome, not_run, total), stream,
                      indent=2)
            stream.write("\n")
    part = "" if args.shard.whole else f" (shard {args.shard.label()})"
    verdict = (f"{len(outcome.failures)} distinct finding(s): "
               + "; ".join(f"{f['suite']} {f['identity']} (round {f['round']}, seen in "
                           f"{len(f['rounds_seen'])})" for f in outcome.failures)
               if outcome.failures else "no failure")
    for suite, clauses in sorted(outcome.expected.items()):
        print(f"nightly: {suite}: expected deviations seen: "
              + ", ".join(f"{c} x{e['count']}" for c, e in sorted(clauses.items())), flush=True)
    print(f"nightly: {len(outcome.rounds)} rounds{part} over {len(suites)} suites in "
          f"{total / 60:.1f} min, {verdict}", flush=True)
    return 2 if outcome.failures else 0


if __name__ == "__main__":
    sys.exit(main())
