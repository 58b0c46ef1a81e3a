"""Back-compat: what a pre-zoned writer (QEMU 7.2) does with zoned images.

1. `old_writer_refuses()`: with incompatible bit 5 (the v10 design, ZONE-1/ZONE-2)
   every way QEMU 7.2 can open an image for writing must refuse, and leave the file
   byte for byte as it was.
2. `autoclear_simulation()`: the design v4 weighed and v10 rejected, an autoclear bit.
   The zoned image is rewritten to carry autoclear bit 5 instead of incompatible bit 5;
   QEMU 7.2 then opens it, writes guest data where the zones say nothing may be (above
   a write pointer, in a capacity gap) and clears the autoclear bit it does not know,
   as qcow2 asks old writers to. The zone information is now stale, and the checker
   must say so.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any

from qcow2harness import qemu

INCOMPAT_OFFSET = 72
AUTOCLEAR_OFFSET = 88
ZONED_BIT = 1 << 5


@dataclass
class Attempt:
    image: str
    action: str
    refused: bool
    unchanged: bool
    message: str

    @property
    def ok(self) -> bool:
        return self.refused and self.unchanged


def _digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def zoned_images(directory: str) -> dict[str, str]:
    """A few zoned images from the reference writer: fresh, written, full zones, odd limits."""
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    from .workload import ZONES

    os.makedirs(directory, exist_ok=True)
    out = {}
    configs = {
        "fresh": (ZONES, []),
        "written": (ZONES, [("write", 16384, 4096), ("append", 2, 2048), ("finish", 3, 0)]),
        "no-limits-512-clusters": (ZoneConfig(size=1 << 20, zone_size=1 << 16,
                                              zone_capacity=1 << 16), [("write", 0, 8192)]),
        "capacity-gap": (ZoneConfig(size=1 << 20, zone_size=1 << 17, zone_capacity=96 << 10,
                                    conventional_zones=2, max_open_zones=2,
                                    max_active_zones=4, max_append_bytes=8192),
                         [("write", 2 << 17, 4096)]),
    }
    for name, (config, ops) in configs.items():
        path = os.path.join(directory, f"zoned-{name}.qcow2")
        cluster = 512 if "512" in name else 4096
        with ReferenceWriter.create(path, config.size, cluster_size=cluster, zoned=config,
                                    fsync=False) as writer:
            for kind, where, length in ops:
                if kind == "write":
                    writer.write(where, b"\x5a" * length)
                elif kind == "append":
                    writer.append(where, b"\x5b" * length)
                else:
                    writer.finish_zone(where)
            writer.flush()
        out[name] = path
    return out


def _write_actions(path: str, scratch: str) -> list[tuple[str, list[str]]]:
    opts = f"driver=qcow2,file.filename={path}"
    return [
        ("qemu-io write", ["qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 4k", path]),
        ("qemu-io write (--image-opts)", ["qemu-io", "--image-opts", opts, "-c",
                                          "write -P 0x77 0 4k"]),
        ("qemu-img resize", ["qemu-img", "resize", "-f", "qcow2", path, "+1M"]),
        ("qemu-img snapshot -c", ["qemu-img", "snapshot", "-c", "s1", path]),
        ("qemu-img amend", ["qemu-img", "amend", "-f", "qcow2", "-o", "lazy_refcounts=on",
                            path]),
        ("qemu-img check -r all", ["qemu-img", "check", "-r", "all", path]),
        ("qemu-img commit", ["qemu-img", "commit", "-f", "qcow2", path]),
        ("qemu-img rebase -u", ["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "", path]),
        ("qemu-img convert (as source)", ["qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                                          path, os.path.join(scratch, "out.raw")]),
        ("qemu-img info (read only)", ["qemu-img", "info", path]),
    ]


def old_writer_refuses(directory: str, build: str | None = None) -> list[Attempt]:
    """Try every write path of a pre-zoned QEMU (the default writer, or build="stock") on
    each zoned image."""
    attempts = []
    for name, path in zoned_images(directory).items():
        for action, argv in _write_actions(path, directory):
            before = _digest(path)
            tool = qemu.require_tool(argv[0], build)
            proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True,
                                  timeout=60, check=False, env=qemu.tool_environment(build))
            text = (proc.stderr or proc.stdout).strip().splitlines()
            refused = proc.returncode != 0 or "failed" in (proc.stdout + proc.stderr)
            attempts.append(Attempt(name, action, refused, _digest(path) == before,
                                    text[0] if text else ""))
    return attempts


@dataclass
class AutoclearResult:
    image: str
    qemu_output: str
    autoclear_after: int
    incompat_after: int
    extension_kept: bool
    before: list[str] = field(default_factory=list)  # checker findings, "LEVEL CLAUSE msg"
    after: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(line.startswith("MUST") for line in self.after)


def _findings(path: str) -> list[str]:
    from qcow2harness.checker import check_path

    return [f"{f.level} {f.clause} {f.message}" for f in check_path(path).findings]


def autoclear_simulation(directory: str, build: str | None = None) -> AutoclearResult:
    """Run a pre-zoned QEMU (the default writer, 7.2, or build="stock") as the old writer on
    an autoclear-bit zoned image."""
    from qcow2harness.reference.writer import ZONED_EXT_MAGIC

    images = zoned_images(os.path.join(directory, "images"))
    path = os.path.join(directory, "autoclear-zoned.qcow2")
    shutil.copyfile(images["capacity-gap"], path)
    with open(path, "r+b") as stream:
        stream.seek(INCOMPAT_OFFSET)
        incompat = struct.unpack(">Q", stream.read(8))[0]
        stream.seek(INCOMPAT_OFFSET)
        stream.write(struct.pack(">Q", incompat & ~ZONED_BIT))
        stream.seek(AUTOCLEAR_OFFSET)
        autoclear = struct.unpack(">Q", stream.read(8))[0]
        stream.seek(AUTOCLEAR_OFFSET)
        stream.write(struct.pack(">Q", autoclear | ZONED_BIT))
    before = _findings(path)
    # Zone 2 (the first sequential one) starts at 256 KiB with its wp 4 KiB in; zone 3's
    # capacity gap is [480 KiB, 512 KiB). The old writer knows none of this.
    proc = qemu.run("qemu-io", "-f", "qcow2", "-c", "write -P 0x66 272k 8k",
                    "-c", "write -P 0x67 490k 4k", "-c", "write -P 0x68 260k 4k", path,
                    build=build)
    with open(path, "rb") as stream:
        raw = stream.read(1 << 16)
    incompat_after = struct.unpack_from(">Q", raw, INCOMPAT_OFFSET)[0]
    autoclear_after = struct.unpack_from(">Q", raw, AUTOCLEAR_OFFSET)[0]
    kept = struct.pack(">I", ZONED_EXT_MAGIC) in raw[104:4096]
    return AutoclearResult(path, proc.stdout.strip().replace("\n", " | "), autoclear_after,
                           incompat_after, kept, before, _findings(path))




# ---------------------------------------------------------------------------
# Who opens which zoned image: pre-zoned QEMUs (7.2, stock 10.2) refuse every image with
# incompatible bit 5 (ZONE-2, HDR-9); the series opens exactly the images the spec allows.
# ---------------------------------------------------------------------------

PRE_ZONED_BUILDS: tuple[str | None, ...] = (None, "stock")
SERIES_BUILD = "zoned"
MAX_COMPARED_ZONES = 64  # zone reports compared zone by zone up to this many zones
WP_BYTE_ORDERS = ("big", "little")  # as qcow2 says; as the series writes it (WP-2)
SECTOR = 512


def build_label(build: str | None) -> str:
    return "default" if build is None else build


@dataclass(frozen=True)
class ZonedCase:
    """One zoned image offered to each QEMU.

    `clause` is the clause the image's corruption breaks (None: a conformant corpus image);
    `byte_order` the order its write-pointer table is stored in ("little": the image as the
    series would write it, to judge the series past its known WP-2 deviation); `must` the
    MUST clauses our checker reports, reading the table in that order."""

    name: str
    path: str
    clause: str | None
    byte_order: str
    must: tuple[str, ...]
    zoned_bit: bool

    @property
    def conformant(self) -> bool:
        return not self.must


@dataclass
class OpenOutcome:
    """What one QEMU did with one case: `qemu-img info`, then `qemu-io -c "read 0 512"` (and,
    on a zone-aware QEMU, a zone report), each on a fresh copy."""

    case: ZonedCase
    build: str | None
    info_ok: bool
    read_ok: bool
    unchanged: bool
    message: str
    zone_aware: bool = False  # the QEMU knows zones (the series), so the spec is the judge
    signal: int | None = None
    sanitizer: str = ""  # the first line of an AddressSanitizer report (build zoned-asan)
    zone_mismatches: list[str] = field(default_factory=list)
    broken_after: tuple[str, ...] = ()  # MUST clauses the copy breaks after the session

    @property
    def opened(self) -> bool:
        return self.info_ok and self.read_ok

    @property
    def refused(self) -> bool:
        return not self.info_ok and not self.read_ok


@dataclass
class SeriesFinding:
    """One distinct cause: a clause and what the QEMU does wrong, with every image showing it."""

    build: str | None
    clause: str
    what: str
    images: list[str] = field(default_factory=list)
    detail: str = ""
    reproduce: list[str] = field(default_factory=list)
    # The same first image: what the QEMU's own `qemu-img check` says (does it at least
    # catch what it opened?), and what stock 10.2 does with it.
    own_check: str = ""
    stock: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (build_label(self.build), self.clause, self.what)

    def to_json(self) -> dict[str, Any]:
        return {"build": build_label(self.build), "clause": self.clause, "what": self.what,
                "images": self.images, "detail": self.detail, "reproduce": self.reproduce,
                "own_check": self.own_check, "stock": self.stock}


def _swap_table(data: bytearray) -> bool:
    """Rewrite the write-pointer table in the other byte order; False when it cannot be found."""
    from qcow2harness.errors import HarnessError
    from qcow2harness.image import Image

    try:
        with Image.from_bytes(bytes(data)) as image:
            zoned = image.zoned
            if zoned is None:
                return False
            start, count = int(zoned.ofs_zonedmeta), int(zoned.num_zones)
    except HarnessError:
        return False
    end = start + 8 * count
    if start <= 0 or count == 0 or end > len(data):
        return False
    for at in range(start, end, 8):
        data[at:at + 8] = data[at:at + 8][::-1]
    return True


def _must_clauses(path: str, byte_order: str) -> tuple[str, ...]:
    from qcow2harness.checker import check_path

    report = check_path(path, wp_byte_order=byte_order)
    return tuple(sorted({f.clause for f in report.findings if f.level == "MUST"}))


def _zoned_bit(data: bytes) -> bool:
    return len(data) >= INCOMPAT_OFFSET + 8 and bool(
        struct.unpack_from(">Q", data, INCOMPAT_OFFSET)[0] & ZONED_BIT)


def corpus_zoned_images(directory: str) -> dict[str, str]:
    """The committed zoned corpus seeds (corpus/seeds/reference-zoned-*), else the corpus
    builder's zoned images made in `directory` (an installed wheel has no corpus/)."""
    from pathlib import Path

    seeds = Path(__file__).resolve().parents[2] / "corpus" / "seeds"
    found = {p.stem: str(p) for p in sorted(seeds.glob("reference-zoned-*.qcow2"))}
    if found:
        return found
    from qcow2harness.corpus import reference_zoned_images

    os.makedirs(directory, exist_ok=True)
    return {entry["name"]: os.path.join(directory, entry["file"])
            for entry in reference_zoned_images(directory)}


def zoned_cases(directory: str, byte_orders: tuple[str, ...] = WP_BYTE_ORDERS
                ) -> list[ZonedCase]:
    """The conformant zoned corpus images and every zoned corruption of
    properties/corruptions.py (each parameter value), written under `directory`, in each
    requested write-pointer byte order."""
    import itertools

    from qcow2harness.properties.corruptions import CORRUPTIONS, CorruptionError, base_image

    images = os.path.join(directory, "images")
    os.makedirs(images, exist_ok=True)
    sources: list[tuple[str, str | None, bytes]] = []
    for name, path in corpus_zoned_images(os.path.join(directory, "corpus")).items():
        with open(path, "rb") as stream:
            sources.append((f"corpus/{name}", None, stream.read()))
    base = base_image("reference-zoned", os.path.join(directory, "base"))
    for corruption in CORRUPTIONS:
        if corruption.base != "reference-zoned":
            continue
        names = sorted(corruption.params)
        for values in itertools.product(*(corruption.params[n] for n in names)):
            params = dict(zip(names, values, strict=True))
            label = ",".join(f"{k}={v}" for k, v in params.items())
            try:
                broken = corruption.broken(base, **params)
            except CorruptionError:
                continue
            sources.append((f"{corruption.id}" + (f"[{label}]" if label else ""),
                            corruption.clause, broken))
    cases = []
    for name, clause, data in sources:
        for order in byte_orders:
            content = bytearray(data)
            # The little-endian twin of the WP-2 image is a big-endian image: not a case.
            if order == "little" and (clause == "WP-2" or not _swap_table(content)):
                continue
            file_name = name.replace("/", "--").replace("[", "-").replace("]", "") \
                .replace(",", "-").replace("=", "-")
            path = os.path.join(images, f"{file_name}.{order}.qcow2")
            with open(path, "wb") as stream:
                stream.write(content)
            cases.append(ZonedCase(name, path, clause, order, _must_clauses(path, order),
                                   _zoned_bit(bytes(content))))
    return cases


def _session(argv: list[str], build: str | None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False,
                              env=qemu.tool_environment(build))
    except subprocess.TimeoutExpired as error:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {error.timeout} s")


# ASan's warnings and notes, printed before or beside what the program says.
ASAN_NOTE = re.compile(r"^==\d+==WARNING: |^False positive error reports may follow|"
                       r"^For details see https://github.com/google/sanitizers")


def _first_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).strip().splitlines()
             if not ASAN_NOTE.search(line)]
    return lines[0] if lines else ""


def try_open(case: ZonedCase, build: str | None, scratch: str,
             zone_aware: bool = False) -> OpenOutcome:
    """qemu-img info, then qemu-io read 0 512 (and a zone report when `zone_aware`) on a
    fresh copy of the case; the copy is judged again afterwards."""
    os.makedirs(scratch, exist_ok=True)
    copy = os.path.join(scratch, os.path.basename(case.path))
    shutil.copyfile(case.path, copy)
    before = _digest(copy)
    _make_backing_file(copy)
    info = _session([qemu.require_tool("qemu-img", build), "info", "-f", "qcow2", copy], build)
    qemu_io = qemu.require_tool("qemu-io", build)
    read = _session([qemu_io, "-f", "qcow2", "-c", "read 0 512", copy], build)
    read_ok = read.returncode == 0 and "read 512/512 bytes" in read.stdout
    signal = next((-p.returncode for p in (info, read) if p.returncode < 0), None)
    failed = read if not read_ok else info
    outcome = OpenOutcome(case, build, info.returncode == 0, read_ok, _digest(copy) == before,
                          _first_line(failed) if not (read_ok and info.returncode == 0)
                          else "", zone_aware, signal)
    if build == "zoned-asan":
        from qcow2harness.zoned_differential import sanitizer_report

        outcome.sanitizer = next(filter(None, map(sanitizer_report, (info, read))), "")
    nr_zones = _zone_count(copy)
    if outcome.opened and case.conformant:
        if zone_aware and 0 < nr_zones <= MAX_COMPARED_ZONES:
            report = _session([qemu_io, "-r", "-f", "qcow2", "-c", f"zrp 0 {nr_zones}", copy],
                              build)
            outcome.zone_mismatches = _zone_mismatches(copy, report.stdout, case.byte_order)
        outcome.broken_after = _must_clauses(copy, case.byte_order)
    for name in os.listdir(scratch):
        os.unlink(os.path.join(scratch, name))
    return outcome


def _make_backing_file(path: str) -> None:
    """Give an image that names a backing file (ZONE-23) a plain one, so that the open is
    decided by the zones, not by a missing file."""
    from qcow2harness.errors import HarnessError
    from qcow2harness.image import Image
    from qcow2harness.reference.writer import ReferenceWriter

    try:
        with Image.open(path) as image:
            name, size = image.backing_file_name, int(image.header.virtual_size)
    except HarnessError:
        return
    if name:
        target = os.path.join(os.path.dirname(path), name)
        with ReferenceWriter.create(target, size, fsync=False):
            pass


def _zone_count(path: str) -> int:
    from qcow2harness.errors import HarnessError
    from qcow2harness.image import Image

    try:
        with Image.open(path) as image:
            zoned = image.zoned
            return int(zoned.num_zones) if zoned is not None else 0
    except HarnessError:
        return 0


def _zone_mismatches(path: str, report_text: str, byte_order: str) -> list[str]:
    """How the zones the QEMU reports differ from the persisted zones read in `byte_order`
    (properties.stateful.persisted_zone_mismatches: WP-8, WP-9)."""
    from qcow2harness.image import Image
    from qcow2harness.properties.stateful import persisted_zone_mismatches
    from qcow2harness.qemu_zoned import parse_zone_report
    from qcow2harness.reference.zones import ZoneInfo, ZoneState, ZoneType

    reported = parse_zone_report(report_text)
    with Image.open(path) as image:
        zoned = image.zoned
        assert zoned is not None
        zone_size = int(zoned.zone_size)
    infos = [ZoneInfo(i, i * zone_size, zone_size, zone_size,
                      ZoneType.CONVENTIONAL if state is ZoneState.NOT_WRITE_POINTER
                      else ZoneType.SEQUENTIAL, state, wp)
             for i, (state, wp) in enumerate(reported)]
    if len(infos) != _zone_count(path):
        return [f"the zone report lists {len(infos)} zones, the image has {_zone_count(path)}"]
    # persisted_zone_mismatches calls the report it is given "model"; here it is the QEMU's.
    return [line.replace("; model: ", "; reported: ")
            for line in persisted_zone_mismatches(path, infos, wp_byte_order=byte_order)]


# What each expectation mismatch is called.
ACCEPTS = "accepts an image it must refuse"
REFUSES = "refuses an image it must accept"
CRASHES = "dies of a signal"
SANITIZER = "AddressSanitizer reports a memory error"
MISREADS = "misreads the persisted zones"
CHANGES_ON_REFUSAL = "changes the file it refused"
BREAKS_ON_READ = "a read-only session leaves the image non-conformant"
BYTE_ORDER = "reads and writes the write-pointer table little-endian"


def _pre_zoned_problems(outcome: OpenOutcome) -> list[tuple[str, str, str]]:
    case = outcome.case
    if outcome.signal is not None:
        return [(case.clause or "ZONE-2", CRASHES, f"signal {outcome.signal}")]
    if not case.zoned_bit:
        return []  # nothing tells a pre-zoned QEMU the image is zoned (ZONE-1 images)
    problems = []
    if not outcome.refused:
        problems.append(("ZONE-2", ACCEPTS,
                         f"info {'opens' if outcome.info_ok else 'refuses'}, read "
                         f"{'succeeds' if outcome.read_ok else 'fails'}"))
    if outcome.refused and not outcome.unchanged:
        problems.append(("TOOL-2", CHANGES_ON_REFUSAL, outcome.message))
    return problems


def _series_problems(outcome: OpenOutcome, twin: OpenOutcome | None
                     ) -> list[tuple[str, str, str]]:
    case = outcome.case
    clause = case.clause or "ZONE-2"
    if outcome.signal is not None:
        return [(clause, CRASHES, f"signal {outcome.signal}: {outcome.message}")]
    if outcome.sanitizer:
        return [(clause, SANITIZER, outcome.sanitizer)]
    problems = []
    if case.conformant and not outcome.opened:
        problems.append((clause, REFUSES, outcome.message))
    elif not case.conformant and not outcome.refused:
        if case.clause == "WP-2":
            problems.append(("WP-2", BYTE_ORDER, "opens the little-endian table as its own"))
        else:
            shown = clause if clause in case.must else case.must[0]
            problems.append((shown, ACCEPTS,
                             f"breaks {', '.join(case.must)}; info "
                             f"{'opens' if outcome.info_ok else 'refuses'}, read "
                             f"{'succeeds' if outcome.read_ok else 'fails'}"))
    if outcome.refused and not outcome.unchanged:
        problems.append(("TOOL-2", CHANGES_ON_REFUSAL, outcome.message))
    if outcome.zone_mismatches:
        # Byte order explains a misread big-endian table when the series reads the same
        # image with its table little-endian right (its own order, WP-2).
        said = (f"its zone report vs the file read {case.byte_order}-endian "
                f"({len(outcome.zone_mismatches)} zone(s)): {outcome.zone_mismatches[0]}")
        if case.byte_order == "big" and twin is not None and twin.opened \
                and not twin.zone_mismatches:
            problems.append(("WP-2", BYTE_ORDER, said + "; the little-endian twin reads "
                                                        "right"))
        else:
            problems.append(("WP-8", MISREADS, said))
    new = tuple(c for c in outcome.broken_after if c not in case.must)
    if new:
        problems.append((new[0], BREAKS_ON_READ, f"after the session the image breaks "
                                                  f"{', '.join(new)}"))
    return problems


def outcome_problems(outcome: OpenOutcome, twin: OpenOutcome | None = None
                     ) -> list[tuple[str, str, str]]:
    """(clause, what, detail) of each expectation one outcome misses. A zone-aware QEMU is
    judged against our checker's verdict; a pre-zoned one must refuse bit 5 (ZONE-2).
    `twin`: the same image with its table little-endian, opened by the same QEMU."""
    if outcome.zone_aware:
        return _series_problems(outcome, twin)
    return _pre_zoned_problems(outcome)


def judge(outcomes: list[OpenOutcome]) -> list[SeriesFinding]:
    """Findings, one per (build, clause, what), each listing every image that shows it."""
    found: dict[tuple[str, str, str], SeriesFinding] = {}
    little = {(o.build, o.case.name): o for o in outcomes if o.case.byte_order == "little"}
    for outcome in outcomes:
        twin = little.get((outcome.build, outcome.case.name))
        for clause, what, detail in outcome_problems(outcome, twin):
            finding = found.setdefault(
                (build_label(outcome.build), clause, what),
                SeriesFinding(outcome.build, clause, what, detail=detail,
                              reproduce=reproducer(outcome)))
            label = _label(outcome)
            if label not in finding.images:
                finding.images.append(label)
    return sorted(found.values(), key=lambda f: f.key)


def reproducer(outcome: OpenOutcome) -> list[str]:
    img = shlex.quote(outcome.case.path)
    qemu_img = qemu.find_tool("qemu-img", outcome.build) or "qemu-img"
    qemu_io = qemu.find_tool("qemu-io", outcome.build) or "qemu-io"
    return [f"{qemu_img} info -f qcow2 {img}",
            f"{qemu_io} -f qcow2 -c 'read 0 512' {img}  # on a copy: it may write"]


@dataclass
class OpenCampaign:
    """The open campaign's record: every case, every outcome, the distinct findings."""

    cases: list[ZonedCase]
    outcomes: list[OpenOutcome]
    findings: list[SeriesFinding]
    builds: dict[str, str]  # build label -> its version, or "not run: why"
    seconds: float

    def counts(self) -> dict[str, dict[str, int]]:
        """Per build: images tried, opened (info and read), refused (both), partly."""
        table: dict[str, dict[str, int]] = {}
        for outcome in self.outcomes:
            row = table.setdefault(build_label(outcome.build),
                                   {"tried": 0, "opened": 0, "refused": 0, "partly": 0})
            row["tried"] += 1
            key = "opened" if outcome.opened else "refused" if outcome.refused else "partly"
            row[key] += 1
        return table

    def to_json(self) -> dict[str, Any]:
        return {"builds": self.builds, "images": len({c.name for c in self.cases}),
                "cases": len(self.cases), "counts": self.counts(),
                "seconds": round(self.seconds, 1),
                "findings": [f.to_json() for f in self.findings]}


def open_campaign(directory: str, builds: tuple[str | None, ...] = (*PRE_ZONED_BUILDS,
                                                                    SERIES_BUILD)
                  ) -> OpenCampaign:
    """Offer every zoned case to each available build; judge; deduplicate by cause."""
    import time

    started = time.monotonic()
    cases = zoned_cases(directory)
    outcomes: list[OpenOutcome] = []
    status: dict[str, str] = {}
    for build in builds:
        label = build_label(build)
        why = (None if qemu.find_tool("qemu-img") and qemu.find_tool("qemu-io")
               else "qemu-img/qemu-io not found") if build is None \
            else qemu.build_unavailable(build)
        if why is not None:
            status[label] = f"not run: {why}"
            continue
        status[label] = str(qemu.qemu_version("qemu-img", build))
        zone_aware = qemu.supports_zoned_qcow2(build)
        scratch = os.path.join(directory, "scratch", label)
        for case in cases:
            if case.byte_order == "little" and not zone_aware:
                continue  # bit 5 alone decides for a pre-zoned QEMU
            outcomes.append(try_open(case, build, scratch, zone_aware))
    findings = judge(outcomes)
    by_label = {_label(o): o.case for o in outcomes}
    for finding in findings:
        case = by_label[finding.images[0]]
        if finding.build is not None or qemu.supports_zoned_qcow2(None):
            finding.own_check = _check_answer(case.path, finding.build, directory)
        if finding.build != "stock" and qemu.build_unavailable("stock") is None:
            finding.stock = _open_answer(case.path, "stock", directory)
    return OpenCampaign(cases, outcomes, findings, status, time.monotonic() - started)


def _label(outcome: OpenOutcome) -> str:
    return f"{outcome.case.name} ({outcome.case.byte_order}-endian table)"


def _check_answer(path: str, build: str | None, directory: str) -> str:
    """`qemu-img check --output=json` of `build` on a copy: its exit and modelled counts."""
    import json

    from qcow2harness.qemu_json import check_counts

    copy = os.path.join(directory, "scratch", "answer.qcow2")
    shutil.copyfile(path, copy)
    _make_backing_file(copy)
    proc = _session([qemu.require_tool("qemu-img", build), "check", "--output=json", "-f",
                     "qcow2", copy], build)
    try:
        counts = check_counts(json.loads(proc.stdout)) if proc.stdout.strip() else {}
    except ValueError:
        counts = {}
    said = ", ".join(f"{k} {v}" for k, v in counts.items()) or _first_line(proc)
    return f"qemu-img check exit {proc.returncode}" + (f" ({said})" if said else "")


def _open_answer(path: str, build: str, directory: str) -> str:
    """What `build` does on `qemu-img info` of a copy: opens, or its refusal."""
    copy = os.path.join(directory, "scratch", "answer.qcow2")
    shutil.copyfile(path, copy)
    _make_backing_file(copy)
    proc = _session([qemu.require_tool("qemu-img", build), "info", "-f", "qcow2", copy], build)
    return "opens it" if proc.returncode == 0 else f"refuses: {_first_line(proc)}"


def main(argv: list[str] | None = None) -> int:
    """python -m qcow2harness.crash.backcompat DIR [--json] [--build B ...]"""
    import argparse
    import json
    import sys

    from qcow2harness.errors import HarnessError

    parser = argparse.ArgumentParser(
        prog="python -m qcow2harness.crash.backcompat",
        description="offer every zoned corpus image and zoned corruption to QEMU 7.2, stock "
                    "10.2 and the series; report each distinct mismatch with its clause")
    parser.add_argument("dir", help="work directory (images kept under DIR/images)")
    parser.add_argument("--build", action="append", choices=["default", *qemu.BUILDS],
                        help="only these builds (default: default, stock, zoned)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    chosen = tuple(None if b == "default" else b for b in args.build) if args.build \
        else (*PRE_ZONED_BUILDS, SERIES_BUILD)
    try:
        result = open_campaign(args.dir, chosen)
    except HarnessError as error:
        print(f"backcompat: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    for label, version in result.builds.items():
        row = result.counts().get(label)
        print(f"{label:<8} {version}" + (f": {row['tried']} tried, {row['opened']} opened, "
                                         f"{row['refused']} refused, {row['partly']} partly"
                                         if row else ""))
    print(f"{len({c.name for c in result.cases})} images, {len(result.cases)} cases "
          f"(both wp byte orders), {result.seconds:.1f} s")
    for finding in result.findings:
        print(f"\n[{build_label(finding.build)}] {finding.clause}: {finding.what} "
              f"({len(finding.images)} image(s)): {finding.detail}")
        for image in finding.images[:6]:
            print(f"    {image}")
        if len(finding.images) > 6:
            print(f"    ... {len(finding.images) - 6} more")
        for line in finding.reproduce:
            print(f"    $ {line}")
        if finding.own_check:
            print(f"    its own {finding.own_check}")
        if finding.stock:
            print(f"    stock 10.2: {finding.stock}")
    return 0


__all__ = ["Attempt", "AutoclearResult", "OpenCampaign", "OpenOutcome", "SeriesFinding",
           "ZonedCase", "autoclear_simulation", "judge", "old_writer_refuses", "open_campaign",
           "outcome_problems", "try_open", "zoned_cases", "zoned_images"]


if __name__ == "__main__":
    raise SystemExit(main())
