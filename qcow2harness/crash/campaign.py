"""A crash campaign: capture a workload, enumerate crash states, judge each one.

The crash point of a state in epoch k is taken as late as it can be: just before the
FLUSH that closes epoch k completes (or at the end of the log). Any subset of the
epoch's writes may be on disk at that moment, and the oracle may count as
acknowledged every op whose log entries all lie before that FLUSH. So:

- the last guest flush acknowledged by then (`flush`, the final `close`, or with
  cache=writethrough/directsync any write, which QEMU acknowledges only once it is
  durable) fixes what must read back exactly (PERS-5);
- every op that had started by then may or may not have reached the disk: its
  ranges may read old or new, byte by byte, and nothing else.

For the reference writer the same ops go through the PersistenceModel, whose
CrashAnswer judges the state (zones included); the writer's MARKs are the op
boundaries. A zoned QEMU workload (the series build, `--build zoned`) is judged by the
same CrashAnswer on what the series reads back, and its log by the persistence order
(zoned.py).

Violations are per state; findings are per cause (clause and what broke, not where):
each keeps how many states showed it, when the first was found, and a minimal
reproducer, the state of the shortest workload prefix with the fewest kept entries.
"""

from __future__ import annotations

import functools
import os
import shlex
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qcow2harness.errors import ParseError, UsageError, WriterError
from qcow2harness.sharding import WHOLE, Shard

from .capture import CAPTURE_FILE, Capture, capture_qemu, capture_reference
from .expect import GuestModel, Ranges
from .oracle import Problem, QemuReader, check_problems, zoned_problems
from .repair import DEFAULT_REPAIR, MATRIX_REPAIR, RepairJudge, RepairStats, reproduce_steps
from .shard import capture_digest, load_kept_capture, shard_states
from .states import CrashState, Epoch, Replayer, enumerate_states, epochs_of, full_replay
from .workload import Workload, get_workload, plain_qemu_workloads, zoned_qemu_workloads
from .zoned import (
    ZONED_BUILDS,
    ZonedJudge,
    ZonedReader,
    check_state,
    known_deviations,
    last_op_of,
    order_problems,
    require_zoned_build,
    shell_reproducer,
)

DEFAULT_MAX_STATES = 5000
PARALLEL_MIN = 400  # fewer states are judged in-process


@dataclass
class CampaignSpec:
    writer: str = "qemu"
    workload: str = "allocation"
    mutants: tuple[str, ...] = ()
    seed: int = 0
    max_states: int = DEFAULT_MAX_STATES
    torn: bool = False
    options: dict[str, str] = field(default_factory=dict)
    data: bool = True  # read guest data through QEMU (qemu writer)
    delta: bool = True  # after a verified prefix, read only what a state can change
    workdir: str | None = None
    reuse_capture: bool = False  # judge the capture kept in workdir (shards share one log)
    repair: tuple[str, ...] = DEFAULT_REPAIR  # recovery paths judged per state (repair.py)
    build: str | None = None  # a variant of the series build (qemu.BUILDS); None: default
    expect: tuple[str, ...] | None = None  # declared deviations; None: the build's known ones

    @property
    def deviations(self) -> tuple[str, ...]:
        return known_deviations(self.build, self.expect)

    def command(self, state: str | None = None, out: str = "state.qcow2") -> str:
        """The qcow2-harness command line that runs this campaign (or rebuilds one state)."""
        argv = ["qcow2-harness", "crash", "--writer", self.writer, "--workload", self.workload]
        if self.build:
            argv += ["--build", self.build]
        if self.expect is not None:
            argv += ["--expect", ",".join(self.expect) or "none"]
        for mutant in self.mutants:
            argv += ["--mutant", mutant]
        for key, value in self.options.items():
            argv += ["--qemu-opt", f"{key}={value}"]
        if self.torn:
            argv.append("--torn")
        if not self.delta:
            argv.append("--full-data")
        if self.workdir:
            argv += ["--workdir", self.workdir]
        if self.reuse_capture and state is None:
            argv.append("--reuse-capture")
        if self.writer == "qemu" and self.repair != DEFAULT_REPAIR:
            argv += ["--repair", ",".join(self.repair) or "none"]
        if state is None:
            argv += ["--seed", str(self.seed), "--max-states", str(self.max_states)]
        else:
            argv += ["--state", state, "--out", out]
        return shlex.join(argv)

    def reproduce(self, state: str, problem: Problem, out: str = "state.qcow2") -> str:
        """command(state, out), then the problem's own steps on `out` (a repair's)."""
        return " ; ".join([self.command(state, out), *reproduce_steps(problem.steps, out)])

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items()) or "defaults"
        extra = f" mutant={'+'.join(self.mutants)}" if self.mutants else ""
        writer = f"{self.writer}({self.build})" if self.build else self.writer
        return f"{writer}/{self.workload} [{opts}]{extra}"


@dataclass
class Violation:
    state: str
    prop: str
    message: str
    crash_point: str
    applied: list[str]
    reproduce: str
    cause: str = ""  # what broke, not where (findings group by prop and cause)
    seconds: float = 0.0  # when it was found, from the start of the campaign
    show: tuple[str, ...] = ()  # qemu-io commands that show it on the state
    last_op: int = -1  # a log-order finding: the op whose requests are out of order
    entries: tuple[int, ...] = ()  # ... and the log entries that show it

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "property": self.prop, "message": self.message,
                "crash_point": self.crash_point, "applied": self.applied,
                "reproduce": self.reproduce, "cause": self.cause}

    @property
    def key(self) -> tuple[str, str]:
        return self.prop, self.cause or _generic(self.message)


def _generic(message: str) -> str:
    from .zoned import _generic as generic

    return generic(message)


@dataclass
class Finding:
    """One cause: every violation with the same (prop, cause), and the smallest of them."""

    prop: str
    cause: str
    states: int  # crash states (or, for the log order, wp updates) that showed it
    seconds: float  # when the first was found
    example: Violation  # the state of the shortest prefix with the fewest kept entries
    reproducer: list[str] = field(default_factory=list)  # qemu-img/qemu-io/dd lines

    def to_json(self) -> dict[str, Any]:
        return {"property": self.prop, "cause": self.cause, "states": self.states,
                "first_seconds": round(self.seconds, 3), "state": self.example.state,
                "message": self.example.message, "reproduce": self.example.reproduce,
                "reproducer": self.reproducer}


@dataclass
class CampaignResult:
    spec: CampaignSpec
    version: str = ""
    log_entries: int = 0
    epochs: int = 0
    states_possible: int = 0
    states_checked: int = 0
    exhaustive: bool = False
    violations: list[Violation] = field(default_factory=list)
    seconds: float = 0.0
    capture_seconds: float = 0.0
    qemu_reads: int = 0
    raw_fallbacks: int = 0
    not_run: str = ""
    sharding: dict[str, Any] = field(default_factory=dict)  # shard.py: part, digests
    repair: RepairStats | None = None
    findings: list[Finding] = field(default_factory=list)
    deviations: list[str] = field(default_factory=list)  # declared ones the base showed
    model_until: int | None = None  # Capture.diverged_at: the model judges states before it

    @property
    def failing_states(self) -> int:
        return len({v.state for v in self.violations})

    @property
    def states_per_second(self) -> float:
        judging = self.seconds - self.capture_seconds
        return self.states_checked / judging if judging > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": "crash", "campaign": self.spec.label(), "writer": self.spec.writer,
            "workload": self.spec.workload, "options": self.spec.options,
            "mutants": list(self.spec.mutants), "seed": self.spec.seed,
            "writer_version": self.version, "log_entries": self.log_entries,
            "epochs": self.epochs, "states_possible": self.states_possible,
            "states_checked": self.states_checked, "exhaustive": self.exhaustive,
            "failing_states": self.failing_states,
            "violations": [v.to_json() for v in self.violations],
            "seconds": round(self.seconds, 3),
            "states_per_second": round(self.states_per_second, 1),
            "qemu_reads": self.qemu_reads, "raw_fallbacks": self.raw_fallbacks,
            "not_run": self.not_run, "command": self.spec.command(),
            "repair": self.repair.to_json() if self.repair is not None else None,
            "build": self.spec.build, "expected_deviations": self.deviations,
            "model_until_op": self.model_until,
            "findings": [f.to_json() for f in self.findings],
            **self.sharding,
        }

    def summary(self) -> str:
        if self.not_run:
            return f"{self.spec.label()}: not run ({self.not_run})"
        how = "all" if self.exhaustive else f"sampled (seed {self.spec.seed}) from"
        repaired = ""
        if self.repair is not None and self.repair.modes:
            repaired = (f", repair {'+'.join(self.repair.modes)} judged {self.repair.states} "
                        f"time(s) ({self.repair.clusters_written} cluster writes)")
        first = (f", first after {min(f.seconds for f in self.findings):.1f} s"
                 if self.findings else "")
        known = (f"; declared deviations seen: {', '.join(self.deviations)}"
                 if self.deviations else "")
        if self.model_until is not None:
            known += (f"; writer and model disagree from op {self.model_until} on: states "
                      "past it judged by the checker and the log order only")
        return (f"{self.spec.label()}: {self.states_checked} crash states checked ({how} "
                f"{self.states_possible}), {self.epochs} epochs, {self.log_entries} log entries, "
                f"{len(self.violations)} violation(s) in {self.failing_states} state(s), "
                f"{len(self.findings)} distinct finding(s){first}{repaired}, "
                f"{self.seconds:.1f} s ({self.states_per_second:.0f} states/s); "
                f"{self.version}{known}")


def _capture(spec: CampaignSpec, workload: Workload, workdir: str) -> Capture:
    if spec.writer == "qemu":
        if spec.mutants:
            raise UsageError("--mutant applies to the reference writer only")
        return capture_qemu(workload, spec.options, workdir, spec.build)
    if spec.writer == "reference":
        if spec.options:
            raise UsageError("--qemu-opt applies to the QEMU writer only")
        if spec.build:
            raise UsageError("--build chooses a QEMU: it applies to --writer qemu only")
        return capture_reference(workload, list(spec.mutants), workdir)
    raise UsageError(f"--writer must be qemu or reference, not {spec.writer!r}")


class Judge:
    """The oracle for one capture: expectations per epoch, problems per state."""

    def __init__(self, spec: CampaignSpec, workload: Workload, capture: Capture,
                 epochs: list[Epoch], reader: QemuReader | ZonedReader | None) -> None:
        self.spec = spec
        self.workload = workload
        self.capture = capture
        self.epochs = epochs
        self.reader = reader
        self.deviations = spec.deviations
        self.base_problems, base_report = check_problems(capture.base)
        self.base_clauses = {f.clause for f in base_report.findings}
        # Declared deviations the base shows: reported once, looked past in every state.
        self.deviations_seen = sorted({p.prop for p in self.base_problems}
                                      & set(self.deviations))
        if self.deviations_seen:
            self.base_problems = check_state(capture.base, None, self.deviations)
            self.base_clauses = {p.prop for p in self.base_problems} | set(self.deviations_seen)
        plain_qemu = capture.writer == "qemu" and workload.zoned is None
        self.guest = (GuestModel(workload.size, workload.backing or [], capture.ops)
                      if plain_qemu else None)
        self.zoned = (ZonedJudge(capture, workload, reader if isinstance(reader, ZonedReader)
                                 else None)
                      if capture.writer == "qemu" and workload.zoned is not None else None)
        self._expectations: dict[int, Any] = {}
        self._prefix_ok: dict[int, Any] = {}  # epoch -> HostMap of its verified prefix
        self.delta_reads = 0
        qemu_reader = reader if isinstance(reader, QemuReader) else None
        self.repair = (RepairJudge(spec.repair, qemu_reader, self.base_clauses,
                                   capture.backing is not None, capture.build)
                       if spec.repair and plain_qemu else None)

    def _starts(self) -> list[int]:
        return [self.capture.first_entry, *self.capture.boundaries[:-1]]

    def crash_point(self, epoch: Epoch) -> tuple[int, list[int]]:
        """(ops durable by the last acknowledged flush, ops that may have started)."""
        capture = self.capture
        end = epoch.end
        last = end >= len(capture.entries)
        durable = 0
        for number, (op, boundary) in enumerate(zip(capture.ops, capture.boundaries,
                                                    strict=True)):
            if boundary <= end and (op.is_flush or capture.writethrough):
                durable = number + 1
        starts = self._starts()
        touching = [n for n in range(durable, len(capture.ops))
                    if starts[n] < end or (last and starts[n] <= end)]
        return durable, touching

    def expectation(self, epoch: Epoch) -> Any:
        if epoch.index not in self._expectations:
            durable, touching = self.crash_point(epoch)
            if self.guest is not None:
                self._expectations[epoch.index] = self.guest.expectation(durable, touching)
            else:
                self._expectations[epoch.index] = self._model_answer(epoch)
        return self._expectations[epoch.index]

    def _model_answer(self, epoch: Epoch) -> Any:
        from qcow2harness.reference.persistence import PersistenceModel

        assert self.workload.zoned is not None
        capture = self.capture
        acked = sum(1 for boundary in capture.boundaries if boundary <= epoch.end)
        model = PersistenceModel(self.workload.zoned, capture.options.get("policy", "lru"))
        for op in capture.ops[:acked]:
            model.apply(capture.model_op(op))
        starts = self._starts()
        if acked < len(capture.ops) and starts[acked] < epoch.end:
            op = capture.ops[acked]
            if not op.is_flush:
                model.apply(capture.model_op(op))  # in flight: may or may not be there
        return model.crash()

    def judge(self, path: str, epoch: Epoch, state: CrashState | None = None,
              changed: list[tuple[int, int]] | None = None, repair: bool = True,
              ) -> list[Problem]:
        """Problems of the state in `path`. With `state` and the host ranges it `changed`
        since its epoch's prefix, QEMU reads only what those ranges can affect, provided
        the prefix was read in full and found right (see delta.py). `repair=False` skips
        the recovery paths (a shard's warm-up state, judged only to seed the delta)."""
        if self.deviations_seen:
            problems = check_state(path, self.base_clauses, self.deviations)
        else:
            problems, _ = check_problems(path, self.base_clauses)
        expected = self.expectation(epoch)
        if self.zoned is not None:
            problems += self.zoned.problems(path, expected, epoch)
        elif isinstance(expected, Ranges):
            if isinstance(self.reader, QemuReader):
                only = None
                prefix = state is not None and not state.applied and state.torn is None
                if (self.spec.delta and state is not None and not prefix and changed is not None
                        and self._prefix_ok.get(epoch.index) is not None):
                    only = self._prefix_ok[epoch.index].affected(changed)
                found = self.reader.verify(path, expected, only=only,
                                           has_backing=self.capture.backing is not None)
                if only is not None:
                    self.delta_reads += 1
                if prefix and self.spec.delta:
                    from .delta import HostMap

                    self._prefix_ok[epoch.index] = None if found else HostMap(path)
                problems += found
        else:
            problems += zoned_problems(path, expected)
        if self.repair is not None and repair:
            problems += self.repair.judge(path, expected if isinstance(expected, Ranges)
                                          else None, problems)
        return problems

    def describe_crash_point(self, epoch: Epoch) -> str:
        capture = self.capture
        durable, touching = self.crash_point(epoch)
        if epoch.end < len(capture.entries):
            number = capture.op_of(epoch.end)
            where = (f"before FLUSH entry #{epoch.end} completes (issued by op {number}: "
                     f"{capture.ops[number].describe() if number < len(capture.ops) else '?'})")
        else:
            where = "at the end of the log"
        flushed = (f"ops 0..{durable - 1} acknowledged by a flush" if durable
                   else "no op acknowledged by a flush")
        return f"crash {where}; {flushed}; ops {touching} may be partly on disk"

    def describe_applied(self, state: CrashState) -> list[str]:
        capture = self.capture
        epoch = self.epochs[state.epoch]
        before = sum(len(e.writes) for e in self.epochs[: state.epoch])
        lines = [f"epochs 0..{state.epoch - 1}: all {before} writes"] if state.epoch else []
        chosen: list[tuple[int, int | None]] = [(p, None) for p in state.applied]
        if state.torn is not None:
            chosen.append((state.torn[0], state.torn[1]))
        for position, kept in sorted(chosen, key=lambda c: c[0]):
            index = epoch.writes[position]
            entry = capture.entries[index]
            number = capture.op_of(index)
            what = "discard" if entry.is_discard else "write"
            size = f"{entry.nr_sectors} sector(s)"
            if kept is not None:
                size = f"first {kept} of {entry.nr_sectors} sectors (torn)"
            op = capture.ops[number].describe() if number < len(capture.ops) else "?"
            lines.append(f"#{index} {what} {size} at file offset "
                         f"{entry.sector * capture.sectorsize:#x} (op {number}: {op})")
        skipped = [p for p in range(len(epoch.writes)) if p not in state.applied
                   and (state.torn is None or p != state.torn[0])]
        if skipped:
            lines.append(f"not applied from epoch {state.epoch}: entries "
                         f"{[epoch.writes[p] for p in skipped]}")
        return lines


def _split(states: list[CrashState], jobs: int) -> list[list[CrashState]]:
    """Contiguous runs of states, cut at epoch changes, one per worker."""
    if jobs <= 1:
        return [states]
    size = -(-len(states) // jobs)
    chunks: list[list[CrashState]] = [[]]
    for state in states:
        last = chunks[-1]
        if len(last) >= size and last[-1].epoch != state.epoch and len(chunks) < jobs:
            chunks.append([])
        chunks[-1].append(state)
    return chunks


def _judge_states(spec: CampaignSpec, workload: Workload, capture: Capture,
                  epochs: list[Epoch], states: list[CrashState], work: str,
                  judge: Judge | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  warmups: frozenset[str] = frozenset(), started: float = 0.0,
                  ) -> tuple[list[Violation], int, int, RepairStats | None]:
    """Replay and judge a run of states (in one process, with its own working file);
    `warmups` are judged without repair, their problems dropped (shard.py)."""
    violations: list[Violation] = []
    own = judge is None
    if judge is None:
        judge = Judge(spec, workload, capture, epochs, _reader(spec, workload))
    try:
        with Replayer(capture.base, capture.entries, epochs, capture.sectorsize,
                      work) as replayer:
            for number, state in enumerate(states):
                path = replayer.goto(state)
                epoch = epochs[state.epoch]
                warmup = state.id in warmups
                for problem in judge.judge(path, epoch, state, replayer.changed(),
                                           repair=not warmup):
                    if warmup:
                        continue
                    violations.append(Violation(
                        state.id, problem.prop, problem.message,
                        judge.describe_crash_point(epoch), judge.describe_applied(state),
                        spec.reproduce(state.id, problem), problem.cause,
                        time.perf_counter() - started, problem.show))
                if progress is not None:
                    progress(number + 1, len(states))
    finally:
        if own and judge.reader is not None:
            judge.reader.close()
        if own and judge.repair is not None:
            judge.repair.close()
    reads = judge.reader.reads if judge.reader is not None else 0
    fallbacks = judge.reader.fallbacks if isinstance(judge.reader, QemuReader) else 0
    return violations, reads, fallbacks, judge.repair.stats if judge.repair else None


_progress_slots: Any = None  # a worker process's view of the shared per-worker counters


def _share_progress(slots: Any) -> None:
    global _progress_slots
    _progress_slots = slots


def _shared_progress(slot: int, done: int, total: int) -> None:
    _progress_slots[slot] = done


def _reader(spec: CampaignSpec, workload: Workload) -> QemuReader | ZonedReader | None:
    """What reads crash states back: the writer's own QEMU (None: --no-data, or the
    reference writer, which reads its states itself)."""
    if spec.writer != "qemu" or not spec.data:
        return None
    if workload.zoned is not None:
        return ZonedReader(require_zoned_build(spec.build, workload.name), workload.zoned)
    return QemuReader(spec.build)


def run_campaign(spec: CampaignSpec,
                 progress: Callable[[int, int], None] | None = None,
                 jobs: int = 0, shard: Shard = WHOLE) -> CampaignResult:
    """Capture, enumerate, judge. Raises WriterError when the writer cannot run.
    `progress(states judged, states)` is called as the judging goes.

    `jobs` worker processes (default: one per CPU, at most 4) judge contiguous runs of
    states, each replaying into its own working file; small campaigns use one. With
    `shard`, only that part of the states is judged (shard.py).
    """
    jobs = jobs or min(4, os.cpu_count() or 1)
    result = CampaignResult(spec)
    started = time.perf_counter()
    workload = get_workload(spec.workload, spec.writer)
    with _workdir(spec) as workdir:
        capture = ((load_kept_capture(workdir, spec, workload) if spec.reuse_capture else None)
                   or _capture(spec, workload, workdir))
        result.capture_seconds = time.perf_counter() - started
        result.version = capture.version
        result.log_entries = len(capture.entries)
        epochs = epochs_of(capture.entries, capture.first_entry)
        result.epochs = len(epochs)
        states, result.exhaustive = enumerate_states(
            epochs, capture.entries, max_states=spec.max_states, seed=spec.seed, torn=spec.torn)
        result.states_possible = (len(states) if result.exhaustive else
                                  sum(1 << min(len(e.writes), 62) for e in epochs))
        states, warmups, result.sharding = shard_states(states, shard)
        part = "" if shard.whole else f"-shard{shard.index}"  # shards may share a workdir
        result.sharding["capture_digest"] = capture_digest(capture)
        reader = _reader(spec, workload)
        judge: Judge | None = None
        try:
            judge = Judge(spec, workload, capture, epochs, reader)
            result.deviations = judge.deviations_seen
            result.model_until = capture.diverged_at
            for problem in judge.base_problems if shard.index == 0 else []:
                result.violations.append(Violation("base", problem.prop, problem.message,
                                                   "before the workload", [],
                                                   spec.command("base"), problem.cause,
                                                   time.perf_counter() - started))
            for text in capture.disagreements if shard.index == 0 else []:
                result.violations.append(Violation("run", "model", text, "while running",
                                                   [], spec.command(), "",
                                                   time.perf_counter() - started))
            if shard.index == 0:
                result.violations += _order_violations(spec, capture, workdir, started)
            chunks = _split(states, jobs if len(states) >= PARALLEL_MIN else 1)
            if len(chunks) > 1:
                import multiprocessing

                context = multiprocessing.get_context("fork")
                done = context.Array("q", len(chunks), lock=False)  # states judged, per worker
                with context.Pool(len(chunks), _share_progress, (done,)) as pool:
                    pending = pool.starmap_async(_judge_states, [
                        (spec, workload, capture, epochs, chunk,
                         os.path.join(workdir, f"state{part}-{n}.qcow2"), None,
                         functools.partial(_shared_progress, n) if progress else None,
                         frozenset(warmups), started)
                        for n, chunk in enumerate(chunks)])
                    while progress is not None:  # the last call sees every state judged
                        pending.wait(0.1)
                        progress(sum(done), len(states))
                        if pending.ready():
                            break
                    outcomes = pending.get()
            else:
                outcomes = [_judge_states(spec, workload, capture, epochs, states,
                                          os.path.join(workdir, f"state{part}.qcow2"), judge,
                                          progress, frozenset(warmups), started)]
            for violations, reads, fallbacks, repaired in outcomes:
                result.violations += violations
                result.qemu_reads += reads
                result.raw_fallbacks += fallbacks
                if repaired is not None:
                    result.repair = result.repair or RepairStats()
                    result.repair.merge(repaired)
            result.states_checked = len(states) - len(warmups)
            result.findings = findings_of(result.violations, capture, workload, epochs)
        finally:
            if reader is not None:
                reader.close()
            if judge is not None and judge.repair is not None:
                judge.repair.close()
    result.seconds = time.perf_counter() - started
    return result


def _order_violations(spec: CampaignSpec, capture: Capture, workdir: str,
                      started: float) -> list[Violation]:
    """PERS-1/PERS-2 over the log of a zoned QEMU capture (zoned.order_problems), judged
    on the final image (every entry replayed onto the base)."""
    if capture.writer != "qemu" or capture.append_fill is None:
        return []
    import shutil

    from qcow2harness.dmlog import replay

    final = os.path.join(workdir, "final.qcow2")
    shutil.copyfile(capture.base, final)
    with open(final, "r+b") as stream:
        replay(capture.entries, stream, capture.sectorsize)
    try:
        found = order_problems(capture, final)
    finally:
        os.unlink(final)
    return [Violation("order", p.clause, p.message, f"log entry #{p.entry}", [],
                      spec.command(), p.cause, time.perf_counter() - started,
                      last_op=p.op, entries=(p.entry, p.other)) for p in found]


def _size(violation: Violation) -> tuple[int, int, int]:
    """How small a violation's state is: (epoch, entries kept, torn)."""
    if ":" not in violation.state:
        return (-1, 0, 0)
    state = CrashState.parse(violation.state)
    return (state.epoch, len(state.applied), state.torn is not None)


def findings_of(violations: list[Violation], capture: Capture, workload: Workload,
                epochs: list[Epoch]) -> list[Finding]:
    """Violations grouped by cause, each with its smallest state and, for a QEMU
    capture, the qemu-img/qemu-io lines that rebuild and show it."""
    groups: dict[tuple[str, str], list[Violation]] = {}
    for violation in violations:
        groups.setdefault(violation.key, []).append(violation)
    findings = []
    for (prop, cause), group in groups.items():
        example = min(group, key=_size)
        # A log-order finding counts the wp updates that show it, a state one the states.
        finding = Finding(prop, cause, len({(v.state, v.crash_point) for v in group}),
                          min(v.seconds for v in group), example)
        if capture.writer == "qemu":
            finding.reproducer = _reproducer(example, capture, workload, epochs)
        findings.append(finding)
    return sorted(findings, key=lambda f: (f.seconds, f.prop))


def _reproducer(example: Violation, capture: Capture, workload: Workload,
                epochs: list[Epoch]) -> list[str]:
    try:
        if example.state == "order":
            return shell_reproducer(capture, workload, None, epochs, example.last_op, (),
                                    example.entries)
        if ":" not in example.state:
            return []
        state = CrashState.parse(example.state)
        return shell_reproducer(capture, workload, state, epochs,
                                last_op_of(capture, epochs[state.epoch]), example.show)
    except WriterError:
        return []  # the tools are gone: the harness command still rebuilds the state


def rebuild_state(spec: CampaignSpec, state_id: str, out: str) -> tuple[list[Violation], str]:
    """Capture again, rebuild one state from a fresh copy of the base into `out`, judge it."""
    workload = get_workload(spec.workload, spec.writer)
    with _workdir(spec) as workdir:
        kept = os.path.join(workdir, CAPTURE_FILE)
        # A kept capture pins the log: QEMU's may differ a little from run to run.
        capture = (Capture.restore(kept) if spec.workdir and os.path.exists(kept)
                   else _capture(spec, workload, workdir))
        epochs = epochs_of(capture.entries, capture.first_entry)
        reader = _reader(spec, workload)
        judge: Judge | None = None
        try:
            judge = Judge(spec, workload, capture, epochs, reader)
            if state_id == "base":
                import shutil

                shutil.copyfile(capture.base, out)
                return [Violation("base", p.prop, p.message, "before the workload", [],
                                  spec.command("base"), p.cause)
                        for p in judge.base_problems], "base"
            state = CrashState.parse(state_id)
            if state.epoch >= len(epochs):
                raise UsageError(f"state {state_id}: the log has {len(epochs)} epochs")
            epoch = epochs[state.epoch]
            if any(p >= len(epoch.writes) for p in state.applied):
                raise UsageError(f"state {state_id}: epoch {state.epoch} has "
                                 f"{len(epoch.writes)} writes")
            full_replay(capture.base, capture.entries, epochs, capture.sectorsize, state, out)
            problems = judge.judge(out, epoch)
            where = judge.describe_crash_point(epoch)
            applied = judge.describe_applied(state)
        finally:
            if reader is not None:
                reader.close()
            if judge is not None and judge.repair is not None:
                judge.repair.close()
    return ([Violation(state.id, p.prop, p.message, where, applied,
                       spec.reproduce(state.id, p, out), p.cause, show=p.show)
             for p in problems], where)


class _workdir:
    """The spec's workdir, or a temporary one removed afterwards."""

    def __init__(self, spec: CampaignSpec) -> None:
        self.spec = spec
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        if self.spec.workdir:
            os.makedirs(self.spec.workdir, exist_ok=True)
            return self.spec.workdir
        self._tmp = tempfile.TemporaryDirectory(prefix="qcow2-crash-")
        return self._tmp.name

    def __exit__(self, *exc: object) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()


def iter_matrix() -> Iterator[dict[str, str]]:
    """The QEMU option matrix: each row changes one thing that shapes write ordering."""
    yield from MATRIX


MATRIX: list[dict[str, str]] = [
    {},
    {"cluster_size": "512"},
    {"cluster_size": "4096"},
    {"cluster_size": "2M"},
    {"lazy_refcounts": "on"},
    {"lazy_refcounts": "on", "cluster_size": "4096"},
    {"lazy_refcounts": "on", "cluster_size": "512"},
    {"refcount_bits": "1"},
    {"refcount_bits": "64"},
    {"lazy_refcounts": "on", "refcount_bits": "1"},
    {"extended_l2": "on"},
    {"extended_l2": "on", "cluster_size": "16384"},
    {"cache": "none"},
    {"cache": "writethrough"},
    {"cache": "directsync"},
    {"discard": "unmap"},
    {"cache": "unsafe"},  # control: flushes are ignored by design
]
EXPECTED_TO_FAIL = {"cache=unsafe": "cache=unsafe ignores guest flushes by design, so "
                    "acknowledged-and-flushed data may be lost"}
# The zoned series' rows: the cache modes that change when its writes reach the file,
# and lazy refcounts (a dirty bit instead of refcount writes: another write order).
ZONED_MATRIX: list[dict[str, str]] = [
    {},
    {"cache": "none"},
    {"cache": "writethrough"},
    {"lazy_refcounts": "on"},
    {"cache": "unsafe"},  # control
]


def run_matrix(workloads: list[str] | None = None, max_states: int = DEFAULT_MAX_STATES,
               seed: int = 0, torn: bool = False,
               report: Callable[[CampaignResult], None] | None = None,
               shard: Shard = WHOLE, jobs: int = 0,
               repair: tuple[str, ...] = MATRIX_REPAIR, build: str | None = None,
               expect: tuple[str, ...] | None = None) -> list[CampaignResult]:
    """The QEMU campaign across MATRIX for every named QEMU workload, each state also
    repaired by every path in `repair` (with `shard`, the campaigns k with k mod N = I:
    shard.py). On a zoned series build (`build`), ZONED_MATRIX over the zoned workloads,
    without repair (it is not judged for zoned images)."""
    from .shard import matrix_shard_fields

    zoned = build in ZONED_BUILDS
    if zoned:
        require_zoned_build(build, "zones")
    names = workloads or (zoned_qemu_workloads() if zoned else plain_qemu_workloads())
    rows = ZONED_MATRIX if zoned else MATRIX
    repair = () if zoned else repair
    results = []
    campaigns = [(options, name) for options in rows for name in names]
    for number, (options, name) in enumerate(campaigns):
        if not shard.owns(number):
            continue
        # The control row fails nearly every state; a small sample shows it.
        bound = min(max_states, 200) if options.get("cache") == "unsafe" else max_states
        spec = CampaignSpec("qemu", name, seed=seed, max_states=bound, torn=torn,
                            options=dict(options), repair=repair, build=build, expect=expect)
        try:
            result = run_campaign(spec, jobs=jobs)
        except WriterError as error:
            result = CampaignResult(spec, not_run=f"QEMU refused this combination: "
                                    f"{error.message.splitlines()[0][-200:]}")
        except ParseError as error:  # a log that does not parse: this campaign only
            result = CampaignResult(spec, not_run=f"the write log does not parse: {error}")
        row = ",".join(f"{k}={v}" for k, v in options.items())
        result.sharding.update(matrix_shard_fields(shard, number, len(campaigns),
                                                   EXPECTED_TO_FAIL.get(row, "")))
        results.append(result)
        if report is not None:
            report(result)
    return results


def short_campaign() -> str:
    """The demo's QEMU crash campaign: one small workload, its summary."""
    from qcow2harness import qemu

    if qemu.find_tool("qemu-io") is None or qemu.find_tool("qemu-img") is None:
        return "crash campaign: not run (qemu-img/qemu-io not found)"
    lines = []
    for spec in (CampaignSpec("qemu", "allocation", max_states=300),
                 CampaignSpec("reference", "zones-small"),
                 CampaignSpec("reference", "zones-small", mutants=("wp-before-data",))):
        result = run_campaign(spec)
        lines.append(result.summary())
        if result.violations:
            first = result.violations[0]
            lines.append(f"  e.g. state {first.state}: {first.prop}: {first.message}")
            lines.append(f"  reproduce: {first.reproduce}")
    return "\n".join(lines)


__all__ = ["CampaignResult", "CampaignSpec", "MATRIX", "Violation", "rebuild_state",
           "run_campaign", "run_matrix", "short_campaign"]
