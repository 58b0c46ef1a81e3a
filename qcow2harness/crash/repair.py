"""Repair after a crash: run the writer's own recovery path on a copy of each crash
state and judge the repaired image.

Recovery paths (`--repair`, comma-separated; the default is `auto`):

- **auto**: what a restarted guest gets without anyone's help. qemu-io opens the
  copy read-write (QEMU repairs a dirty lazy-refcounts image while opening it, PERS-9),
  flushes and closes it.
- **check-r-all**: `qemu-img check -r all`, what an administrator runs. A non-zero exit
  (errors left, or the check could not complete) is itself a finding.
- **check-r-leaks**: `qemu-img check -r leaks`. It does not claim to fix refcount
  errors, so a dirty bit left behind in a lazy-refcounts image is allowed, and so is
  QEMU 7.2 stopping with "need to rebuild refcount structures" (exit 1), which it does
  in a typical dirty crash state: only `-r all` rebuilds.

The repaired copy (the state image itself is never modified) must then pass:

1. **check**: no MUST finding, no dirty bit (HDR-12) and no other SHOULD finding the
   crash oracle does not allow; leaks (RC-5) are allowed only after `auto`, which
   repairs nothing in a clean image.
2. **data**: the crash state's own expectation (PERS-5: flushed data reads back; data
   in flight reads old or new), read through QEMU. A state whose data the crash already
   lost is reported by the crash oracle, not again here.
3. **writes**: one qemu-io session opens the copy read-write, writes a distinct pattern
   to the first WRITE_BYTES of every allocated guest cluster (QEMU's `map`; beyond
   WRITE_LIMIT clusters an evenly spaced, hence deterministic, sample) and of
   UNALLOCATED_WRITES unallocated ones, reads each back, and closes; the checker then
   runs again. A write or read error, a pattern mismatch, or a check finding the image
   did not have before the writes is a finding.

A recovery path that fails (QEMU cannot open the state read-write, or `qemu-img
check -r` exits non-zero: it says itself that the image is still broken) is the
finding for that copy, which is judged no further.
When the recovery path left the file byte-identical (auto on a clean image), step 2
and the findings of step 1 the crash oracle reported already are not repeated; step 3
always runs.
A finding carries the shell steps that reproduce it on the file `--state ID --out`
wrote (@IMAGE@ in Problem.steps).
"""

from __future__ import annotations

import fcntl
import filecmp
import os
import shlex
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from qcow2harness import qemu
from qcow2harness.checker import check_path
from qcow2harness.errors import ParseError, UsageError
from qcow2harness.image import Image

from .capture import QemuIoSession
from .expect import Ranges
from .oracle import PATTERN_AT, Problem, QemuReader, check_problems, mapped_ranges

MODES = ("auto", "check-r-all", "check-r-leaks")
DEFAULT_REPAIR: tuple[str, ...] = ("auto",)
MATRIX_REPAIR: tuple[str, ...] = ("auto", "check-r-all")
WRITE_LIMIT = 64  # allocated guest clusters written per state; an even sample beyond
UNALLOCATED_WRITES = 4
WRITE_BYTES = 64 << 10  # written at the start of each cluster (the whole of a small one)
SESSION_COMMANDS = 24  # more writes + reads than this run as their own qemu-io process
FIRST_PATTERN = 0x21  # pattern bytes 0x21, 0x22, ...: one per cluster written
IMAGE = "@IMAGE@"  # stands for the reproducer's image path in Problem.steps (shell-safe)
FICLONE = 0x40049409  # ioctl: share the extents of a file (btrfs, xfs)
REBUILD_NEEDED = "need to rebuild refcount structures"
QEMU_CHECK_EXIT = {0: "no errors", 1: "check not completed (internal error)",
                   2: "corruptions left", 3: "leaks left", 63: "checks not supported"}


def parse_modes(text: str) -> tuple[str, ...]:
    """'auto', 'auto,check-r-all' or 'none' as a tuple of modes."""
    if text.strip() in ("none", ""):
        return ()
    modes = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    for mode in modes:
        if mode not in MODES:
            raise UsageError(f"--repair: {mode!r} is none of {', '.join(MODES)}, none")
    return modes


def repair_command(mode: str, image: str = IMAGE) -> list[str]:
    """The recovery path as one command line."""
    if mode == "auto":
        return ["qemu-io", "-f", "qcow2", "-c", "flush", image]
    return ["qemu-img", "check", "-r", mode.removeprefix("check-r-"), "-f", "qcow2", image]


def _label(mode: str) -> str:
    """The recovery path's command without its image, for messages."""
    return "`" + " ".join(repair_command(mode)[:-1]) + "`"


def copy_image(source: str, target: str) -> None:
    """A copy of `source` at `target`: a reflink where the file system has them."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            fcntl.ioctl(dst.fileno(), FICLONE, src.fileno())
            return
        except OSError:
            pass
        shutil.copyfileobj(src, dst, 1 << 20)


@dataclass
class RepairStats:
    """What the repair step did over a run of states (merged across workers)."""

    modes: tuple[str, ...] = ()
    states: int = 0  # (state, mode) pairs judged
    changed: int = 0  # of them, where the recovery path changed the file
    clusters_written: int = 0
    sampled: int = 0  # pairs with more than WRITE_LIMIT allocated clusters
    by_mode: dict[str, int] = field(default_factory=dict)  # failing pairs per mode

    def merge(self, other: RepairStats) -> None:
        self.modes = self.modes or other.modes
        self.states += other.states
        self.changed += other.changed
        self.clusters_written += other.clusters_written
        self.sampled += other.sampled
        for mode, count in other.by_mode.items():
            self.by_mode[mode] = self.by_mode.get(mode, 0) + count

    def to_json(self) -> dict[str, object]:
        return {"modes": list(self.modes), "states": self.states, "changed": self.changed,
                "clusters_written": self.clusters_written, "sampled_states": self.sampled,
                "failing": dict(self.by_mode), "write_limit": WRITE_LIMIT,
                "unallocated_writes": UNALLOCATED_WRITES, "write_bytes": WRITE_BYTES}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepairStats:
        """The inverse of to_json (for `qcow2-harness merge`)."""
        return cls(tuple(data["modes"]), data["states"], data["changed"],
                   data["clusters_written"], data["sampled_states"], dict(data["failing"]))


class RepairJudge:
    """Runs each recovery path on a copy of a state and judges the result."""

    def __init__(self, modes: Iterable[str], reader: QemuReader | None,
                 base_clauses: set[str], has_backing: bool, build: str | None = None) -> None:
        self.modes = tuple(modes)
        self.build = build
        self.reader = reader
        self.base_clauses = base_clauses
        self.has_backing = has_backing
        self.stats = RepairStats(self.modes)
        self._session: QemuIoSession | None = None

    @property
    def session(self) -> QemuIoSession:
        if self.reader is not None:
            return self.reader.session
        if self._session is None:
            self._session = QemuIoSession([], build=self.build)
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.quit()
            self._session = None

    def judge(self, path: str, expected: Ranges | None, before: list[Problem],
              copy: str | None = None) -> list[Problem]:
        """Problems of every recovery path applied to a copy of the state in `path`
        (`before`: the crash oracle's problems of the state itself)."""
        copy = copy or path + ".repaired"
        problems: list[Problem] = []
        try:
            for mode in self.modes:
                found = self._judge_mode(mode, path, copy, expected, before)
                self.stats.states += 1
                if found:
                    self.stats.by_mode[mode] = self.stats.by_mode.get(mode, 0) + 1
                problems += found
        finally:
            if os.path.exists(copy):
                os.unlink(copy)
        return problems

    def _judge_mode(self, mode: str, path: str, copy: str, expected: Ranges | None,
                    before: list[Problem]) -> list[Problem]:
        copy_image(path, copy)
        steps = [shlex.join(repair_command(mode))]
        problems = self._repair(mode, copy, steps)
        if problems:
            return problems
        changed = not filecmp.cmp(path, copy, shallow=False)
        self.stats.changed += changed
        found, clauses = self._check(mode, copy, "after the recovery path")
        after = [shlex.join(["qcow2-harness", "check", IMAGE])]
        # Unchanged bytes: only what the crash oracle allowed but a repair must fix
        # (leaks after -r all, a dirty bit left) is new; the rest is reported already.
        reported = set() if changed else {p.prop for p in before}
        problems += [Problem(f"repair/{mode}/{p.prop}", p.message, (*steps, *after))
                     for p in found if p.prop not in reported]
        data_lost = any(p.prop == "data" for p in before)
        if changed:
            if expected is not None and self.reader is not None and not data_lost:
                for problem in self.reader.verify(copy, expected, has_backing=self.has_backing):
                    problems.append(Problem(
                        f"repair/{mode}/data", f"after {_label(mode)}: {problem.message}",
                        (*steps, *after)))
        problems += self._write_every_cluster(mode, copy, clauses, steps)
        return problems

    def _repair(self, mode: str, copy: str, steps: list[str]) -> list[Problem]:
        """Run the recovery path on `copy`; problems when it fails."""
        prop = f"repair/{mode}/exit"
        if mode == "auto":
            session = self.session
            opened = session.command(f"open -o driver=qcow2 {copy}")
            if "can't open" in opened:
                return [Problem(prop, f"QEMU cannot open the state read-write: "
                                f"{_last_line(opened)}", tuple(steps))]
            flushed = session.command("flush").strip()
            session.command("close")
            if flushed:
                return [Problem(prop, f"flush after the read-write open failed: "
                                f"{_last_line(flushed)}", tuple(steps))]
            return []
        level = mode.removeprefix("check-r-")
        proc = qemu.run("qemu-img", "check", "-r", level, "-f", "qcow2", copy, check=False,
                        build=self.build)
        code = proc.returncode
        output = (proc.stdout + proc.stderr).strip()
        # -r leaks leaves refcount errors alone (exit 2), and stops (exit 1) when only a
        # rebuild (-r all) could fix them: neither is a failed repair.
        if code == 0 or (level == "leaks" and (code == 2 or REBUILD_NEEDED in output)):
            return []
        lines = [line for line in output.splitlines()
                 if "ERROR" in line or "could not" in line.lower() or "Leaked" in line]
        detail = "; ".join(lines[:3]) or _last_line(output)
        return [Problem(prop, f"qemu-img check -r {level} exited {code} "
                        f"({QEMU_CHECK_EXIT.get(code, 'unknown')}): {detail}", tuple(steps))]

    def _check(self, mode: str, path: str, when: str) -> tuple[list[Problem], set[str]]:
        """The checker's verdict on a repaired image, and every clause it reported."""
        if mode == "check-r-leaks":
            # Refcount errors are not this path's job: the crash oracle's allowances.
            allowed, report = check_problems(path, self.base_clauses)
            return _per_clause([Problem(p.prop, f"{when}: {p.message}") for p in allowed]), \
                {f.clause for f in report.findings}
        report = check_path(path)
        problems = []
        for finding in report.findings:
            if finding.level == "SHOULD":
                if finding.clause in self.base_clauses or finding.clause == "WP-10":
                    continue
                if finding.clause == "RC-5" and mode == "auto":
                    continue  # QEMU repairs leaks on open only in a dirty image
            elif finding.level != "MUST":
                continue
            problems.append(Problem(finding.clause, f"{when}: {finding.message}"))
        return _per_clause(problems), {f.clause for f in report.findings}

    def _write_every_cluster(self, mode: str, copy: str, clauses_before: set[str],
                             steps: list[str]) -> list[Problem]:
        """Step 3: write and read back a pattern in each (sampled) guest cluster."""
        prop = f"repair/{mode}/write"
        session = self.session
        opened = session.command(f"open -r -o driver=qcow2 {copy}")
        if "can't open" in opened:
            return [Problem(prop, f"QEMU cannot open the repaired image: "
                            f"{_last_line(opened)}", tuple(steps))]
        try:
            mapped = session.command("map")
        finally:
            session.command("close")
        try:
            with Image.open(copy) as image:
                cluster, size = image.cluster_size, int(image.header.virtual_size)
        except ParseError as error:
            return [Problem(prop, f"after {_label(mode)}: the header does not parse: "
                            f"{error.message}", tuple(steps))]
        targets, sampled = write_targets(mapped_ranges(mapped, allocated=True), size, cluster)
        self.stats.sampled += sampled
        self.stats.clusters_written += len(targets)
        writes = [f"write -q -P {FIRST_PATTERN + n:#04x} {offset} {length}"
                  for n, (offset, length) in enumerate(targets)]
        reads = [w.replace("write", "read", 1) for w in writes]
        commands = writes + reads
        if len(commands) <= SESSION_COMMANDS:
            failure = self._run_in_session(copy, commands)
        else:
            failure = self._run_in_process(copy, commands, writes, reads)
        if failure:
            script = _qemu_io_script(commands)
            return [Problem(prop, f"after {_label(mode)}: {failure}", (*steps, script))]
        found, _ = self._check(mode, copy, f"after {len(writes)} guest writes into the "
                               "repaired image")
        new = [p for p in found if p.prop not in clauses_before]
        script = _qemu_io_script(writes)
        check = shlex.join(["qcow2-harness", "check", IMAGE])
        return [Problem(f"{prop}/{p.prop}", p.message, (*steps, script, check)) for p in new]

    def _run_in_session(self, copy: str, commands: list[str]) -> str:
        """Run the commands one by one in the session; '' or what failed first."""
        session = self.session
        opened = session.command(f"open -o driver=qcow2 {copy}")
        if "can't open" in opened:
            return f"QEMU cannot open the image read-write: {_last_line(opened)}"
        try:
            for command in commands:
                out = session.command(command).strip()
                if out:
                    return f"`{command}` failed: {_first_line(out)}"
        finally:
            session.command("close")
        return ""

    def _run_in_process(self, copy: str, commands: list[str], writes: list[str],
                        reads: list[str]) -> str:
        """Run the commands as one `qemu-io -c ... -c ...` process (cheaper than a pipe
        round trip per command once there are many; piped commands cannot be pipelined
        into the session, since qemu-io reads one line per wake-up)."""
        argv = ["-f", "qcow2"]
        for command in commands:
            argv += ["-c", command]
        proc = qemu.run("qemu-io", *argv, copy, check=False, build=self.build)
        output = (proc.stdout + proc.stderr).strip()
        if not output and proc.returncode == 0:
            return ""
        return (f"{_failed_command(output, writes, reads)}: {_first_line(output)} "
                f"(qemu-io exit {proc.returncode})")


def write_targets(allocated: list[tuple[int, int]], size: int,
                  cluster: int) -> tuple[list[tuple[int, int]], bool]:
    """(offset, length) of each write: the allocated guest clusters (an evenly spaced
    sample of WRITE_LIMIT when there are more), then UNALLOCATED_WRITES unallocated ones
    evenly spaced; and whether the allocated ones were sampled."""
    clusters = -(-size // cluster)
    used: list[int] = []
    for lo, hi in allocated:
        used.extend(range(lo // cluster, min(clusters, -(-hi // cluster))))
    taken = set(used)
    used = sorted(taken)
    sampled = len(used) > WRITE_LIMIT
    if sampled:
        used = [used[n * len(used) // WRITE_LIMIT] for n in range(WRITE_LIMIT)]
    free = [c for c in range(clusters) if c not in taken] if clusters < 1 << 22 else []
    if len(free) > UNALLOCATED_WRITES:
        free = [free[n * len(free) // UNALLOCATED_WRITES] for n in range(UNALLOCATED_WRITES)]
    out = []
    for index in [*used, *free]:
        offset = index * cluster
        out.append((offset, min(WRITE_BYTES, cluster, size - offset)))
    return out, sampled


def _qemu_io_script(commands: list[str]) -> str:
    argv = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        argv += ["-c", command.replace(" -q", "", 1)]
    return shlex.join([*argv, IMAGE])


def _per_clause(problems: list[Problem]) -> list[Problem]:
    """One problem per clause: the first message, and how many more there were."""
    grouped: dict[str, list[Problem]] = {}
    for problem in problems:
        grouped.setdefault(problem.prop, []).append(problem)
    return [Problem(prop, group[0].message + (f" (and {len(group) - 1} more)"
                                              if len(group) > 1 else ""))
            for prop, group in grouped.items()]


def _failed_command(output: str, writes: list[str], reads: list[str]) -> str:
    """Which command the first error of a `qemu-io -c ...` run belongs to."""
    match = PATTERN_AT.search(output)
    if match:
        offset = int(match.group(1))
        for read in reads:
            if int(read.split()[-2]) <= offset < int(read.split()[-2]) + int(read.split()[-1]):
                return f"read back `{read}` does not match"
    kind = "a write" if "write failed" in output else "a command"
    return f"{kind} of the {len(writes)} writes and {len(reads)} reads failed"


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else "(no output)"


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def reproduce_steps(steps: Iterable[str], image: str) -> list[str]:
    """Problem.steps with the image path filled in."""
    quoted = shlex.quote(image)
    return [step.replace(IMAGE, quoted) for step in steps]


__all__ = ["DEFAULT_REPAIR", "MATRIX_REPAIR", "MODES", "RepairJudge", "RepairStats",
           "copy_image", "parse_modes", "repair_command", "reproduce_steps", "write_targets"]
