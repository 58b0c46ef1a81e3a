"""The campaign runner behind `qcow2-harness fuzz TARGET`, with libFuzzer's conventions.

    corpus dir      the working corpus; new interesting inputs are written there
    seed dirs       read-only seeds (corpus/seeds and corpus/broken by default)
    artifacts dir   crash-*, oom-*, slow-*, diff-* (ours), timeout-*/oom-* (libFuzzer's
                    backstops), each with a .json; minimized-KIND-CATEGORY-from-*.qcow2 beside
                    them (named for what the minimized input does), narrowed-*.qcow2
                    (the seed with only the finding's fields changed, fuzz/cause.py);
                    stats.jsonl (one progress sample per interval); worker-N.log
    regressions     one ready-to-commit pytest module per finding

`--jobs N` runs N workers on the same corpus (libFuzzer reloads units the others add).
`--shard I/N` gives the run its own seeds and seed-corpus slice (fuzz/shard.py).
A worker stops at its first finding; the runner records it, minimizes it, writes its
regression test, adds its signature to `known-signatures.txt` (so the same bug is
counted, not re-reported) and starts the worker again until the time is up.

Nothing here prints: progress goes to a callback (the CLI prints it).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from qcow2harness.fuzz.shard import seed_slice, worker_seed
from qcow2harness.fuzz.targets import Finding, get_target, input_name

from qcow2harness.sharding import WHOLE, Shard

ARTIFACT_PREFIXES = ("crash-", "oom-", "slow-", "diff-", "timeout-", "leak-")
FUZZ_DIR = os.path.dirname(os.path.abspath(__file__))
DICTIONARY = os.path.join(FUZZ_DIR, "qcow2.dict")
MAX_WORKER_ERRORS = 3
NARROW_TESTS = 150  # runs to narrow a finding to its fields before minimizing it

_LIBFUZZER_LINE = re.compile(
    r"^#(\d+)\s+(\w+)\s+cov: (\d+) ft: (\d+) corp: (\d+)/(\d+)(b|Kb|Mb)")
_HEARTBEAT = re.compile(r"^#qcow2 execs=(\d+)")


def repo_seed_dirs() -> list[str]:
    """corpus/seeds and corpus/broken next to the package (a source checkout)."""
    root = os.path.dirname(FUZZ_DIR)
    dirs = [os.path.join(root, "corpus", sub) for sub in ("seeds", "broken")]
    return [d for d in dirs if os.path.isdir(d)]


@dataclass
class CampaignConfig:
    target: str
    corpus: str
    artifacts: str
    seconds: float = 60.0
    jobs: int = 1
    seeds: list[str] = field(default_factory=list)
    mutator: str = "structured"
    reader: str | None = None
    reader_timeout: float = 10.0
    reader_memory_mb: int = 4096
    regressions: str | None = None
    minimize_seconds: float = 30.0
    interval: float = 10.0
    runs: int | None = None  # stop each worker after this many executions
    max_len: int | None = None
    seed: int | None = None
    libfuzzer_args: list[str] = field(default_factory=list)
    python: str = sys.executable
    shard: Shard = WHOLE
    build: str | None = None  # the QEMU a reader target runs (fuzz/reader.py)


@dataclass
class FindingRecord:
    finding: Finding  # as the minimized input reproduces it (re-classified)
    artifact: str
    minimized: str | None
    size: int
    minimized_size: int
    regression: str | None
    found_as: str = ""  # the artifact's own summary, when minimizing changed it
    clauses: list[str] = field(default_factory=list)  # what the input breaks (check)
    reproduce: str = ""  # the reader command that shows it on the minimized input
    stock: str = ""  # what the stock build does with the minimized input
    seconds: float = 0.0  # into the campaign when found
    narrowed: str | None = None  # the seed with only the finding's fields changed
    narrowed_stock: str = ""  # what the stock build does with that

    def to_json(self) -> dict[str, Any]:
        return {**self.finding.to_json(), "artifact": self.artifact,
                "minimized": self.minimized, "size": self.size,
                "minimized_size": self.minimized_size, "regression": self.regression,
                "found_as": self.found_as, "clauses": self.clauses,
                "reproduce": self.reproduce, "stock": self.stock,
                "found_after_seconds": round(self.seconds, 1), "narrowed": self.narrowed,
                "narrowed_stock": self.narrowed_stock}


@dataclass
class Sample:
    seconds: float
    execs: int
    cov: int
    ft: int
    units: int
    corpus_bytes: int
    findings: int

    @property
    def rate(self) -> float:
        return self.execs / self.seconds if self.seconds > 0 else 0.0

    def line(self, target: str) -> str:
        size = (f"{self.corpus_bytes / (1 << 20):.1f}Mb" if self.corpus_bytes >= 1 << 20
                else f"{self.corpus_bytes // 1024}Kb")
        return (f"#{self.execs} {target} {self.seconds:.0f}s exec/s: {self.rate:.0f} "
                f"cov: {self.cov} ft: {self.ft} corp: {self.units}/{size} "
                f"findings: {self.findings}")

    def to_json(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 1), "execs": self.execs,
                "exec_per_s": round(self.rate, 1), "cov": self.cov, "ft": self.ft,
                "corpus_units": self.units, "corpus_bytes": self.corpus_bytes,
                "findings": self.findings}


@dataclass
class CampaignResult:
    samples: list[Sample]
    findings: list[FindingRecord]
    duplicates: int
    worker_errors: list[str]
    seed_slice: dict[str, Any] = field(default_factory=dict)  # fuzz/shard.py

    @property
    def exit_code(self) -> int:
        from qcow2harness.exitcodes import EXIT_INVALID, EXIT_OK

        return EXIT_INVALID if self.findings else EXIT_OK


class _Worker:
    def __init__(self, index: int, argv: list[str], log_path: str) -> None:
        self.index = index
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.execs = 0
        self.buffer = b""

    def feed(self, chunk: bytes, on_line: Callable[[_Worker, str], None]) -> None:
        self.log.write(chunk)
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for raw in lines:
            on_line(self, raw.decode("utf-8", "replace"))

    def finish(self) -> int:
        code = self.proc.wait()
        self.log.close()
        return code


def _dir_stats(path: str) -> tuple[int, int]:
    units = size = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file():
                units += 1
                size += entry.stat().st_size
    return units, size


def _artifacts(directory: str) -> set[str]:
    return {name for name in os.listdir(directory)
            if name.startswith(ARTIFACT_PREFIXES) and not name.endswith((".json", ".py"))}


def worker_argv(config: CampaignConfig, index: int, seconds: float, known: str) -> list[str]:
    target = get_target(config.target, config.reader, config.reader_timeout,
                        config.reader_memory_mb, build=config.build)
    argv = [config.python, "-m", "qcow2harness.fuzz.worker", "--target", config.target,
            "--artifacts", config.artifacts, "--mutator", config.mutator, "--known", known]
    if config.build:
        argv += ["--build", config.build]
    for seed_dir in config.seeds:
        argv += ["--cause-seeds", seed_dir]
    if config.reader:
        argv += ["--reader", config.reader, "--reader-timeout", str(config.reader_timeout),
                 "--reader-memory-mb", str(config.reader_memory_mb)]
    hard_timeout = max(10, int(target.bounds.seconds * 5) + 5)
    argv += ["--", f"-max_total_time={max(1, int(seconds))}", f"-timeout={hard_timeout}",
             "-rss_limit_mb=2560", "-print_final_stats=1",
             f"-artifact_prefix={os.path.join(config.artifacts, '')}", "-reload=1"]
    if os.path.exists(DICTIONARY):  # package data: absent from an install without it
        argv.append(f"-dict={DICTIONARY}")
    if config.runs is not None:
        argv.append(f"-runs={config.runs}")
    if config.max_len is not None:
        argv.append(f"-max_len={config.max_len}")
    seed = worker_seed(config.seed, config.shard, index)
    if seed is not None:
        argv.append(f"-seed={seed}")
    argv += list(config.libfuzzer_args)
    argv += [config.corpus, *config.seeds]
    return argv


class _Minimization:
    """Minimizes one finding in a forked child (its own address-space bound), while the
    runner keeps reading its workers; killed when its budget is spent.

    The child starts from the seed with only the finding's fields changed (fuzz/cause.py)
    when that still reproduces, shrinks it (fuzz/minimize.py: same category and site),
    then runs the result once more and records the finding as *that* run classifies it:
    a minimized input that fails another way is named for what it does. For a target
    that runs QEMU, it also records the reader command that shows the finding and what
    the stock build does with the same input."""

    def __init__(self, config: CampaignConfig, finding: Finding, data: bytes,
                 artifact: str, found_by: str, seconds: float = 0.0) -> None:
        self.config, self.finding, self.data = config, finding, data
        self.artifact, self.found_by, self.seconds = artifact, found_by, seconds
        self.result: dict[str, Any] = {"data": data, "finding": finding}
        self.deadline = time.monotonic() + config.minimize_seconds + 90
        ctx = multiprocessing.get_context("fork")
        self.pipe, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=self._work, args=(child,), daemon=True)
        if config.minimize_seconds > 0:
            self.proc.start()

    def _work(self, child: Any) -> None:
        from qcow2harness.fuzz.minimize import minimize, same_finding
        from qcow2harness.fuzz.targets import execute, limit_address_space

        config, finding = self.config, self.finding
        target = get_target(config.target, config.reader, config.reader_timeout,
                            config.reader_memory_mb, build=config.build)
        limit_address_space(target.bounds.address_space_mb)
        still = same_finding(target, finding)
        start, seed, fields = self.data, _seed_bytes(finding), finding.fields
        units: list[Any] = []
        if seed is not None:  # narrowed again, with more runs than the worker spends
            from qcow2harness.fuzz.cause import apply_units, changed_units, field_names, narrow

            hints = [frozenset(fields.split(","))] if fields else []
            units = narrow(seed, self.data, changed_units(seed, self.data), still,
                           max_tests=NARROW_TESTS, hints=hints) or []
            if units:
                fields, start = field_names(units), apply_units(seed, self.data, units)
        small = minimize(start, still, seconds=config.minimize_seconds)
        again = execute(target, small)
        if again is None:  # does not fail on its own any more: keep the finding's input
            small, again = start, execute(target, start) or finding
        again = replace(again, fields=fields, seed=finding.seed)
        result: dict[str, Any] = {"data": small, "finding": again}
        stem = f"{again.kind}-{_slug(again.summary.split(':')[0])}-from-{input_name(self.data)}"
        if small != self.data:
            result["minimized"] = _write(config, f"minimized-{stem}", small)
            result.update(_verdicts(config, result["minimized"]))
        if units and seed is not None:
            from qcow2harness.fuzz.cause import clauses_broken

            result["clauses"] = clauses_broken(seed, start, units)
            result["narrowed"] = _write(config, f"narrowed-{stem}", start)
            result["narrowed_stock"] = _verdicts(config, result["narrowed"]).get("stock", "")
        child.send(result)

    def done(self) -> bool:
        if self.config.minimize_seconds <= 0:
            return True
        if self.pipe.poll():
            try:
                self.result = self.pipe.recv()
            except EOFError:
                pass
        elif self.proc.is_alive() and time.monotonic() < self.deadline:
            return False
        self.proc.join(1)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        return True

    def record(self, known_path: str) -> FindingRecord | None:
        """Write the minimized input, the regression test and findings.jsonl; None when
        the minimized input is a finding already recorded (its signature is known)."""
        from qcow2harness.fuzz.regression import regression_test

        config, small = self.config, self.result["data"]
        finding: Finding = self.result["finding"]
        if finding.signature != self.finding.signature:
            known = _known(known_path)
            if finding.signature in known:
                return None
            with open(known_path, "a") as f:
                f.write(finding.signature + "\n")
        minimized = self.result.get("minimized")
        if small != self.data and minimized is None:
            minimized = _write(config, f"minimized-{finding.kind}-"
                               f"{_slug(finding.summary.split(':')[0])}-from-"
                               f"{input_name(self.data)}", small)
        regression = None
        if config.regressions:
            os.makedirs(config.regressions, exist_ok=True)
            file_name, text = regression_test(finding, small, reader=config.reader,
                                              found_by=self.found_by, build=config.build)
            regression = os.path.join(config.regressions, file_name)
            with open(regression, "w") as out:
                out.write(text)
        found_as = self.finding.summary if finding.summary != self.finding.summary else ""
        record = FindingRecord(finding, self.artifact, minimized, len(self.data),
                               len(small), regression, found_as,
                               list(self.result.get("clauses", [])),
                               str(self.result.get("reproduce", "")),
                               str(self.result.get("stock", "")), self.seconds,
                               self.result.get("narrowed"),
                               str(self.result.get("narrowed_stock", "")))
        with open(os.path.join(config.artifacts, "findings.jsonl"), "a") as out:
            out.write(json.dumps(record.to_json()) + "\n")
        return record


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "finding"


def _known(known_path: str) -> set[str]:
    if not os.path.exists(known_path):
        return set()
    with open(known_path) as f:
        return {line.rstrip("\n") for line in f}


def _seed_bytes(finding: Finding) -> bytes | None:
    if not finding.seed or not os.path.isfile(finding.seed):
        return None
    with open(finding.seed, "rb") as f:
        return f.read()


def _write(config: CampaignConfig, name: str, data: bytes) -> str:
    path = os.path.join(config.artifacts, name + ".qcow2")
    with open(path, "wb") as out:
        out.write(data)
    return path


def _verdicts(config: CampaignConfig, path: str) -> dict[str, str]:
    """For a target that runs QEMU with a build other than stock: the command that
    shows the finding under the build, and what stock does with the same file."""
    from qcow2harness.fuzz.reader import verdict
    from qcow2harness.fuzz.targets import reader_commands

    commands = reader_commands(config.target, config.reader)
    if config.build is None or not commands:
        return {}
    bounds = dict(memory_mb=config.reader_memory_mb, seconds=config.reader_timeout)
    result = {"reproduce": verdict(commands, path, config.build, **bounds).command}
    if config.build != "stock":
        from qcow2harness import qemu

        reason = qemu.build_unavailable("stock")
        result["stock"] = (verdict(commands, path, "stock", **bounds).outcome
                           if reason is None else f"not run: {reason}")
    return result


def _describe_artifact(config: CampaignConfig, name: str) -> Finding:
    path = os.path.join(config.artifacts, name)
    if os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            return Finding.from_json(json.load(f))
    # libFuzzer's own artifacts: its -timeout or -rss_limit_mb fired.
    kind = "slow" if name.startswith("timeout-") else "oom" if name.startswith(
        "oom-") else "crash"
    return Finding(config.target, kind, f"libFuzzer {name.split('-')[0]}", name.split("-")[0])


def start_minimization(config: CampaignConfig, name: str, known_path: str,
                       found_by: str, seconds: float = 0.0) -> _Minimization | None:
    """A new artifact: None when its signature was reported already (a duplicate)."""
    path = os.path.join(config.artifacts, name)
    with open(path, "rb") as f:
        data = f.read()
    finding = _describe_artifact(config, name)
    if finding.signature in _known(known_path):
        return None
    with open(known_path, "a") as f:
        f.write(finding.signature + "\n")
    return _Minimization(config, finding, data, path, found_by, seconds)


def run_campaign(config: CampaignConfig,
                 progress: Callable[[str], None] = lambda line: None,
                 tick: Callable[[Sample], None] | None = None) -> CampaignResult:
    """`progress` gets the log lines (a sample per interval, each finding); `tick`, when
    given, gets an unrecorded Sample at every turn of the loop (a live display)."""
    os.makedirs(config.corpus, exist_ok=True)
    os.makedirs(config.artifacts, exist_ok=True)
    shard = config.shard
    part = seed_slice(config.seeds, shard, os.path.join(
        os.path.dirname(os.path.abspath(config.corpus)),
        f"seed-slice-{shard.index}-of-{shard.count}"))
    if not shard.whole:
        config = replace(config, seeds=[part["dir"]])
    known_path = os.path.join(config.artifacts, "known-signatures.txt")
    seen = _artifacts(config.artifacts)
    start = time.monotonic()
    deadline = start + config.seconds
    selector = selectors.DefaultSelector()
    workers: dict[int, _Worker] = {}
    base_execs = 0
    state = {"cov": 0, "ft": 0, "units": 0, "bytes": 0}  # from libFuzzer's status lines
    findings: list[FindingRecord] = []
    duplicates = 0
    errors: list[str] = []
    samples: list[Sample] = []
    stats_path = os.path.join(config.artifacts, "stats.jsonl")

    def on_line(worker: _Worker, line: str) -> None:
        match = _LIBFUZZER_LINE.match(line)
        if match:
            worker.execs = max(worker.execs, int(match.group(1)))
            state["cov"] = max(state["cov"], int(match.group(3)))
            state["ft"] = max(state["ft"], int(match.group(4)))
            unit = {"b": 1, "Kb": 1 << 10, "Mb": 1 << 20}[match.group(7)]
            state["units"], state["bytes"] = int(match.group(5)), int(match.group(6)) * unit
            return
        beat = _HEARTBEAT.match(line)
        if beat:
            worker.execs = max(worker.execs, int(beat.group(1)))
        elif line.startswith("#qcow2 FINDING"):
            progress(line)

    def spawn(index: int) -> None:
        left = deadline - time.monotonic()
        argv = worker_argv(config, index, left, known_path)
        worker = _Worker(index, argv, os.path.join(config.artifacts, f"worker-{index}.log"))
        workers[index] = worker
        assert worker.proc.stderr is not None
        selector.register(worker.proc.stderr, selectors.EVENT_READ, worker)

    def snapshot() -> Sample:
        # libFuzzer's own count (units in its corpus after reductions), else the directory.
        units, size = (state["units"], state["bytes"]) if state["units"] else _dir_stats(
            config.corpus)
        execs = base_execs + sum(w.execs for w in workers.values())
        return Sample(time.monotonic() - start, execs, state["cov"], state["ft"], units,
                      size, len(findings))

    def sample() -> Sample:
        point = snapshot()
        samples.append(point)
        with open(stats_path, "a") as out:
            out.write(json.dumps(point.to_json()) + "\n")
        return point

    for index in range(max(1, config.jobs)):
        spawn(index)
    next_sample = start + config.interval
    next_tick = start
    pending: list[_Minimization] = []
    while workers or pending:
        events = selector.select(timeout=0.5) if workers else []
        if not workers:
            time.sleep(0.2)  # only minimizations left
        for key, _ in events:
            worker = key.data
            chunk = os.read(key.fd, 65536)
            if chunk:
                worker.feed(chunk, on_line)
                continue
            selector.unregister(key.fileobj)
            code = worker.finish()
            base_execs += worker.execs
            del workers[worker.index]
            new = sorted(_artifacts(config.artifacts) - seen)
            seen.update(new)
            for name in new:
                job = start_minimization(
                    config, name, known_path,
                    found_by=f"Found by `qcow2-harness fuzz {config.target}` "
                             f"(mutator {config.mutator}"
                             + (f", build {config.build}" if config.build else "") + ").",
                    seconds=time.monotonic() - start)
                if job is None:
                    duplicates += 1
                else:
                    pending.append(job)
            if code not in (0, 77) and not new:
                errors.append(f"worker {worker.index} exited {code} without an artifact "
                              f"(see worker-{worker.index}.log)")
            time_left = deadline - time.monotonic()
            if code != 0 and time_left > 2 and len(errors) < MAX_WORKER_ERRORS and (
                    config.runs is None):
                spawn(worker.index)
        for job in [j for j in pending if j.done()]:
            pending.remove(job)
            record = job.record(known_path)
            if record is None:
                duplicates += 1
                continue
            findings.append(record)
            progress(f"finding {len(findings)}: {record.finding.kind} {record.finding.summary} "
                     f"({record.size} -> {record.minimized_size} bytes) -> "
                     f"{record.regression or record.artifact}")
        if time.monotonic() >= next_sample:
            next_sample += config.interval
            progress(sample().line(config.target))
        if tick is not None and time.monotonic() >= next_tick:
            next_tick = time.monotonic() + 0.1
            tick(snapshot())
    final = sample()
    progress(final.line(config.target) + " DONE")
    return CampaignResult(samples, findings, duplicates, errors, part)
