"""The oracle: what makes a crash state wrong.

(a) **check.** The conformance checker runs on every state. A MUST finding is a
    violation. After a crash leaks are expected (RC-5), and so is data above a
    lagging write pointer (WP-10, PERS-6). HDR-12 (dirty bit, refcounts to repair) is
    allowed exactly when the image has lazy_refcounts (compatible bit 0) set: only
    then may a writer postpone refcount updates behind the dirty bit (PERS-9). The
    checker files the COPIED-flag checks of a dirty image (L1-3, L2-3: they compare
    with the stale stored refcounts) under HDR-12 too, so they are allowed likewise.
    Other SHOULD findings are violations unless the base image had them already.
(b) **data.** Guest bytes are read through the real QEMU: one long-lived qemu-io
    process opens each state read-only, lists its allocation with `map`, and checks
    each range of the expectation with `read -P`. A range that may hold one of several
    values is tried against each; when no single value covers it, the state is
    split in halves on sector boundaries until each piece is covered by one value (a
    write half on disk); when that does not settle it (a sector matching no allowed value,
    or too many pieces), the state is converted to raw by qemu-img and that range is
    checked byte by byte, which also gives the message its first wrong byte. Ranges that
    must read zeros and that QEMU's own `map` reports unallocated (no backing file)
    are not read: QEMU's block status already says they read as zeros.
(c) **zoned.** The reference model's CrashAnswer judges the recovered write pointers
    and the data below them (PERS-3, PERS-4, PERS-5). QEMU 7.2 refuses zoned images
    (ZONE-2), so the reference writer's states are read with its own reader; the zoned
    series' states are read back by the series itself (zoned.py).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from qcow2harness import qemu
from qcow2harness.checker import check_path
from qcow2harness.checker.report import Report
from qcow2harness.errors import ParseError, WriterError
from qcow2harness.image import Image

from .capture import QemuIoSession
from .expect import Ranges

# SHOULD findings a crash may leave behind.
CRASH_ALLOWED = {"RC-5", "WP-10"}
READ_CHUNK = 4 << 20
SECTOR = 512
SPLIT_BUDGET = 128  # halvings per range before falling back to a raw conversion


@dataclass(frozen=True)
class Problem:
    prop: str  # a clause id, or "data" / "open" / "model"
    message: str
    steps: tuple[str, ...] = ()  # shell steps after rebuilding the state (see repair.py)
    cause: str = ""  # what broke, not where: findings are deduplicated by (prop, cause)
    show: tuple[str, ...] = ()  # qemu-io commands that show it on the rebuilt state


def check_problems(path: str, base_clauses: set[str] | None = None,
                   wp_byte_order: str = "big") -> tuple[list[Problem], Report]:
    """(a): the checker's findings that a crash must not cause (wp_byte_order: see
    check_path; "little" looks past the known WP-2 deviation)."""
    report = check_path(path, wp_byte_order=wp_byte_order)
    lazy = _lazy_refcounts(path)
    problems: list[Problem] = []
    for finding in report.findings:
        if finding.level == "MUST":
            problems.append(Problem(finding.clause, finding.message))
        elif finding.level == "SHOULD":
            if finding.clause in CRASH_ALLOWED or finding.clause in (base_clauses or set()):
                continue
            if finding.clause == "HDR-12" and lazy:
                continue
            why = (" (dirty bit without lazy_refcounts)" if finding.clause == "HDR-12" else "")
            problems.append(Problem(finding.clause, finding.message + why))
    return problems, report


def _lazy_refcounts(path: str) -> bool:
    """lazy_refcounts (HDR-12) as ksy/ reads it; unset when the header does not parse
    (the checker has then said why)."""
    try:
        with Image.open(path) as image:
            return bool(image.header.has_lazy_refcounts)
    except ParseError:
        return False


MAP_LINE = re.compile(r"\((0x[0-9a-f]+)\) bytes\s+(not )?allocated at offset .*\((0x[0-9a-f]+)\)")
PATTERN_FAILED = "Pattern verification failed"
PATTERN_AT = re.compile(r"Pattern verification failed at offset (\d+),")
PROCESS_THRESHOLD = 32  # pieces above which the first pass runs as its own qemu-io process


class QemuReader:
    """Reads crash states through one long-lived qemu-io process (data oracle)."""

    def __init__(self, build: str | None = None) -> None:
        self.build = build
        self.session = QemuIoSession([], build=build)
        self.reads = 0
        self.fallbacks = 0
        self.processes = 0

    def close(self) -> None:
        self.session.quit()

    def __enter__(self) -> QemuReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify(self, path: str, expected: Ranges, *, has_backing: bool,
               only: list[tuple[int, int]] | None = None) -> list[Problem]:
        """Read the state's guest bytes through QEMU against `expected` (restricted to
        the guest ranges `only`, when given: see delta.py)."""
        opened = self.session.command(f"open -r -o driver=qcow2 {path}").strip()
        if opened:
            self.session.command("close")
            return [Problem("open", f"QEMU cannot open the state: {opened}")]
        problems: list[Problem] = []
        try:
            try:
                size = _virtual_size(path)
            except ParseError as error:
                return [Problem("open", f"QEMU opens the state but its header does not "
                                f"parse: {error}")]
            if size not in expected.sizes:
                problems.append(Problem("data", f"virtual size {size} is none of the sizes the "
                                        f"disk may have, {sorted(expected.sizes)}"))
            unallocated = ([] if has_backing else
                           mapped_ranges(self.session.command("map"), allocated=False))
            pieces: list[tuple[int, int, frozenset[int]]] = []
            for lo, hi, values in expected:
                hi = min(hi, size)
                parts = _outside(lo, hi, unallocated) if values == {0} else [(lo, hi)]
                if only is not None:
                    parts = [(max(a, c), min(b, d)) for a, b in parts for c, d in only
                             if max(a, c) < min(b, d)]
                pieces += [(a, b, values) for p, q in parts for a, b in _chunks(p, q)]
            # First pass: each piece against its most likely value.
            firsts = [min(values, key=lambda v: v == 0) for _, _, values in pieces]
            self.reads += len(pieces)
            if len(pieces) > PROCESS_THRESHOLD:
                failed = self._first_pass_process(path, pieces, firsts)
            else:
                failed = {}
                for number, ((lo, hi, _), value) in enumerate(zip(pieces, firsts, strict=True)):
                    out = self.session.command(f"read -q -P {value:#x} {lo} {hi - lo}").strip()
                    if out:
                        failed[number] = out
            undecided: list[tuple[int, int, frozenset[int]]] = []
            for number, out in sorted(failed.items()):
                lo, hi, values = pieces[number]
                if PATTERN_FAILED not in out:
                    problems.append(Problem("data", f"QEMU read [{lo:#x}, {hi:#x}) failed: "
                                            f"{out.splitlines()[0]}"))
                    continue
                outcome = self._cover(lo, hi, values, [SPLIT_BUDGET]) if len(values) > 1 else None
                if outcome is None:
                    undecided.append((lo, hi, values))
                elif outcome:
                    problems.append(Problem("data", f"QEMU read [{lo:#x}, {hi:#x}) "
                                            f"failed: {outcome}"))
        finally:
            self.session.command("close")
        if undecided:
            problems += self._bytewise(path, undecided)
        return problems

    def _first_pass_process(self, path: str, pieces: list[tuple[int, int, frozenset[int]]],
                            firsts: list[int]) -> dict[int, str]:
        """The first pass as one `qemu-io -c ... -c ...` process: cheaper than a pipe round
        trip per read once there are many (qemu-io reads piped commands one per wake-up,
        so they cannot be pipelined into the long-lived session)."""
        self.processes += 1
        argv = ["-r", "-f", "qcow2"]
        for (lo, hi, _), value in zip(pieces, firsts, strict=True):
            argv += ["-c", f"read -q -P {value:#x} {lo} {hi - lo}"]
        proc = qemu.run("qemu-io", *argv, path, check=False, build=self.build)
        failed: dict[int, str] = {}
        where = {lo: number for number, (lo, _, _) in enumerate(pieces)}
        for line in (proc.stdout + proc.stderr).splitlines():
            match = PATTERN_AT.search(line)
            if match and int(match.group(1)) in where:
                failed[where[int(match.group(1))]] = line
            elif line.strip():
                # An error the output does not tie to a piece: redo the pass piece by piece.
                return {n: f"{PATTERN_FAILED} (rechecked)" for n in range(len(pieces))}
        return failed

    def _cover(self, lo: int, hi: int, values: frozenset[int], budget: list[int]) -> str | None:
        """Like _try, but split a range no single value covers into halves (on sector
        boundaries) until each piece is covered: old and new data side by side."""
        outcome = self._try(lo, hi, values)
        if outcome is not None or len(values) < 2 or hi - lo <= SECTOR:
            return outcome
        budget[0] -= 1
        if budget[0] < 0:
            return None
        middle = lo + ((hi - lo) // 2 + SECTOR - 1) // SECTOR * SECTOR
        if middle >= hi:
            return None
        first = self._cover(lo, middle, values, budget)
        if first is None or first:
            return first
        return self._cover(middle, hi, values, budget)

    def _try(self, lo: int, hi: int, values: frozenset[int]) -> str | None:
        """'' when one value covers [lo, hi), None when none does, else a read error."""
        for value in sorted(values, key=lambda v: v == 0):
            self.reads += 1
            out = self.session.command(f"read -q -P {value:#x} {lo} {hi - lo}").strip()
            if not out:
                return ""
            if PATTERN_FAILED not in out:
                return out.splitlines()[0]
        return None

    def _bytewise(self, path: str, ranges: Iterable[tuple[int, int, frozenset[int]]]
                  ) -> list[Problem]:
        """Convert the state to raw with qemu-img and check the ranges byte by byte."""
        self.fallbacks += 1
        problems = []
        with tempfile.TemporaryDirectory(prefix="qcow2-crash-raw-") as tmp:
            raw = os.path.join(tmp, "state.raw")
            try:
                qemu.run("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, raw,
                         build=self.build)
            except WriterError as error:
                return [Problem("data", f"QEMU cannot read the guest data back: "
                                f"{error.message[-300:]}")]
            data = np.memmap(raw, dtype=np.uint8, mode="r")
            for lo, hi, values in ranges:
                chunk = np.asarray(data[lo:hi])
                bad = np.nonzero(~np.isin(chunk, np.fromiter(values, dtype=np.uint8)))[0]
                if bad.size:
                    first = lo + int(bad[0])
                    found = sorted({int(v) for v in np.unique(chunk[bad])})[:6]
                    problems.append(Problem(
                        "data", f"guest bytes [{lo:#x}, {hi:#x}) may hold only "
                        f"{_values(values)}, but {bad.size} byte(s) differ, first at {first:#x} "
                        f"(read {_values(found)})"))
            del data
        return problems


def mapped_ranges(mapped: str, allocated: bool) -> list[tuple[int, int]]:
    """The guest ranges qemu-io's `map` output lists as allocated (or as not)."""
    out = []
    for line in mapped.splitlines():
        match = MAP_LINE.search(line)
        if match and bool(match.group(2)) != allocated:
            length, offset = int(match.group(1), 16), int(match.group(3), 16)
            out.append((offset, offset + length))
    return out


def _virtual_size(path: str) -> int:
    with Image.open(path) as image:
        return int(image.header.virtual_size)


def _values(values: Iterable[int]) -> str:
    return "{" + ", ".join(f"{v:#04x}" for v in sorted(values)) + "}"


def _outside(lo: int, hi: int, holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of [lo, hi) that no hole (sorted, disjoint) covers."""
    out = []
    position = lo
    for start, end in holes:
        if end <= position:
            continue
        if start >= hi:
            break
        if start > position:
            out.append((position, start))
        position = max(position, end)
        if position >= hi:
            break
    if position < hi:
        out.append((position, hi))
    return out


def _chunks(lo: int, hi: int) -> list[tuple[int, int]]:
    return [(start, min(hi, start + READ_CHUNK)) for start in range(lo, hi, READ_CHUNK)]


def zoned_problems(path: str, answer: object) -> list[Problem]:
    """(c): recovered wps and the data below them, judged by the persistence model."""
    from qcow2harness.errors import HarnessError
    from qcow2harness.reference.persistence import CrashAnswer
    from qcow2harness.reference.writer import ReferenceWriter

    assert isinstance(answer, CrashAnswer)
    try:
        with ReferenceWriter.open(path, fsync=False) as recovered:
            found = answer.violations(recovered.wps_on_disk(), recovered.read)
    except HarnessError as error:
        return [Problem("open", f"the reference reader cannot open the state: {error}")]
    return [Problem(text.split(":", 1)[0], text.split(":", 1)[1].strip()) for text in found]


__all__ = ["CRASH_ALLOWED", "Problem", "QemuReader", "check_problems", "zoned_problems"]
