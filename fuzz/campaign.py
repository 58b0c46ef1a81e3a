"""The campaign runner behind `qcow2-harness fuzz TARGET`, with libFuzzer's conventions.

    corpus dir      the working corpus; new interesting inputs are written there
    seed dirs       read-only seeds (corpus/seeds and corpus/broken by default)
    artifacts dir   crash-*, oom-*, slow-*, diff-* (ours), timeout-*/oom-* (libFuzzer's
                    backstops), each with a .json; minimized-from-* beside them;
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


@dataclass
class FindingRecord:
    finding: Finding
    artifact: str
    minimized: str | None
    size: int
    minimized_size: int
    regression: str | None

    def to_json(self) -> dict[str, Any]:
        return {**self.finding.to_json(), "artifact": self.artifact,
                "minimized": self.minimized, "size": self.size,
                "minimized_size": self.minimized_size, "regression": self.regression}


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
                        config.reader_memory_mb)
    argv = [config.python, "-m", "qcow2harness.fuzz.worker", "--target", config.target,
            "--artifacts", config.artifacts, "--mutator", config.mutator, "--known", known]
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
    runner keeps reading its workers; killed when its budget is spent."""

    def __init__(self, config: CampaignConfig, finding: Finding, data: bytes,
                 artifact: str, found_by: str) -> None:
        self.config, self.finding, self.data = config, finding, data
        self.artifact, self.found_by = artifact, found_by
        self.result = data
        self.deadline = time.monotonic() + config.minimize_seconds + 30
        ctx = multiprocessing.get_context("fork")
        self.pipe, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=self._work, args=(child,), daemon=True)
        if config.minimize_seconds > 0:
            self.proc.start()

    def _work(self, child: Any) -> None:
        from qcow2harness.fuzz.minimize import minimize, same_finding
        from qcow2harness.fuzz.targets import limit_address_space

        config = self.config
        target = get_target(config.target, config.reader, config.reader_timeout,
                            config.reader_memory_mb)
        limit_address_space(target.bounds.address_space_mb)
        still = same_finding(target, self.finding)
        child.send_bytes(minimize(self.data, still, seconds=config.minimize_seconds))

    def done(self) -> bool:
        if self.config.minimize_seconds <= 0:
            return True
        if self.pipe.poll():
            try:
                self.result = self.pipe.recv_bytes()
            except EOFError:
                pass
        elif self.proc.is_alive() and time.monotonic() < self.deadline:
            return False
        self.proc.join(1)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        return True

    def record(self) -> FindingRecord:
        """Write minimized-from-*, the regression test and findings.jsonl."""
        from qcow2harness.fuzz.regression import regression_test

        config, small = self.config, self.result
        minimized = None
        if small != self.data:
            minimized = os.path.join(config.artifacts,
                                     f"minimized-from-{input_name(self.data)}")
            with open(minimized, "wb") as out:
                out.write(small)
        regression = None
        if config.regressions:
            os.makedirs(config.regressions, exist_ok=True)
            file_name, text = regression_test(self.finding, small, reader=config.reader,
                                              found_by=self.found_by)
            regression = os.path.join(config.regressions, file_name)
            with open(regression, "w") as out:
                out.write(text)
        record = FindingRecord(self.finding, self.artifact, minimized, len(self.data),
                               len(small), regression)
        with open(os.path.join(config.artifacts, "findings.jsonl"), "a") as out:
            out.write(json.dumps(record.to_json()) + "\n")
        return record


def _describe_artifact(config: CampaignConfig, name: str) -> Finding:
    path = os.path.join(config.artifacts, name)
    if os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            raw = json.load(f)
        return Finding(raw["target"], raw["kind"], raw["summary"], raw["where"],
                       raw.get("details", ""), raw.get("seconds", 0.0))
    # libFuzzer's own artifacts: its -timeout or -rss_limit_mb fired.
    kind = "slow" if name.startswith("timeout-") else "oom" if name.startswith(
        "oom-") else "crash"
    return Finding(config.target, kind, f"libFuzzer {name.split('-')[0]}", name.split("-")[0])


def start_minimization(config: CampaignConfig, name: str, known_path: str,
                       found_by: str) -> _Minimization | None:
    """A new artifact: None when its signature was reported already (a duplicate)."""
    path = os.path.join(config.artifacts, name)
    with open(path, "rb") as f:
        data = f.read()
    finding = _describe_artifact(config, name)
    known = set()
    if os.path.exists(known_path):
        with open(known_path) as f:
            known = {line.rstrip("\n") for line in f}
    if finding.signature in known:
        return None
    with open(known_path, "a") as f:
        f.write(finding.signature + "\n")
    return _Minimization(config, finding, data, path, found_by)


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
                             f"(mutator {config.mutator}).")
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
            record = job.record()
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
