"""Map and check differentials on zoned images, against a zone-aware QEMU (the series).

Images: the series makes them itself (qemu-img create with zone options, then qemu-io
writes, appends, resets, finishes, opens and closes over one or more sessions), and the
conformant zoned corpus images. On each one:

- map: our `map` against the series' `qemu-img map --output=json`, on the fields we model
  (qemu_json.map_difference; L2-6);
- check: our verdict against the series' `qemu-img check --output=json`. A conformant
  zoned image is clean for check (TOOL-3); a leak the series reports on clusters of the
  write-pointer table is the table not being counted as referenced (ZONE-21);
- repair: `qemu-img check -r leaks` and `-r all` on a copy, then our check again: repair
  must keep the table where it is, refcounted and unchanged (TOOL-4);
- the series' own images must conform: what our check reports on them, read with the
  series' byte order (its known WP-2 deviation, declared once), is a finding too.

Each distinct difference is one finding, named by clause and what, listing its images.
Stock 10.2 is run on the first image of each finding, to show what a QEMU without the
series does with the same input.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from qcow2harness import qemu
from qcow2harness.errors import HarnessError

SERIES_BUILD = "zoned"
STOCK_BUILD = "stock"
# The series writes its table little-endian (WP-2): its own images are judged in that
# order, so that this one deviation does not hide the others. It is reported once.
DECLARED = {"WP-2": "the series writes the write-pointer table little-endian"}
LEAKED_CLUSTER = re.compile(r"Leaked cluster (\d+)")
REPAIR_MODES = ("leaks", "all")


@dataclass(frozen=True)
class Scenario:
    """A zoned image the series makes: its geometry (reference ZoneConfig fields), cluster
    size and qemu-io sessions (each a list of commands, one qemu-io run per session)."""

    name: str
    geometry: dict[str, int]
    cluster_size: int
    sessions: tuple[tuple[str, ...], ...] = ()


K = 1024
# 8 zones of 64 KiB, capacity 48 KiB (a gap), one conventional zone, limits 2/3.
SMALL = dict(size=512 * K, zone_size=64 * K, zone_capacity=48 * K, conventional_zones=1,
             max_open_zones=2, max_active_zones=3, max_append_bytes=8 * K)
# 8 zones of 1 MiB, no gap, no conventional zone, no limits.
WIDE = dict(size=8192 * K, zone_size=1024 * K, zone_capacity=1024 * K, conventional_zones=0,
            max_open_zones=0, max_active_zones=0, max_append_bytes=64 * K)
# 512-byte clusters: 16 zones of 8 KiB, two conventional, no append.
TINY = dict(size=128 * K, zone_size=8 * K, zone_capacity=8 * K, conventional_zones=2,
            max_open_zones=4, max_active_zones=4, max_append_bytes=0)

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("small-fresh", SMALL, 4 * K),
    Scenario("small-written", SMALL, 4 * K, (
        ("write -P 0x11 0 8k", "write -P 0x12 32k 4k", "write -P 0x21 64k 8k",
         "write -P 0x22 72k 4k"),)),
    Scenario("small-appended", SMALL, 4 * K, (("zap -p 128k 4k", "zap -p 128k 8k"),)),
    Scenario("small-reset", SMALL, 4 * K, (("write -P 0x41 256k 16k", "zrs 256k 64k"),)),
    Scenario("small-finished", SMALL, 4 * K, (("write -P 0x31 192k 4k", "zf 192k 64k"),)),
    Scenario("small-full", SMALL, 4 * K, (("write -P 0x51 320k 48k",),)),
    Scenario("small-sessions", SMALL, 4 * K, (
        ("write -P 0x61 64k 4k", "zo 128k 64k"),
        ("write -P 0x62 68k 4k", "zc 64k 64k", "zap -p 128k 4k"),
        ("zf 64k 64k", "write -P 0x63 192k 12k", "zrs 192k 64k", "write -P 0x64 192k 4k"))),
    Scenario("wide-mixed", WIDE, 64 * K, (
        ("write -P 0x71 0 128k", "zap -p 1M 64k", "write -P 0x72 2M 4k", "zf 2M 1M",
         "write -P 0x73 3M 1M", "write -P 0x74 4M 64k", "zrs 4M 1M"),)),
    Scenario("tiny-mixed", TINY, 512, (
        ("write -P 0x81 0 2k", "write -P 0x82 9k 1k", "write -P 0x83 16k 3k",
         "zf 24k 8k", "write -P 0x84 32k 8k", "write -P 0x85 40k 1k", "zrs 40k 8k"),)),
)


@dataclass
class Observation:
    """What both sides say about one image."""

    image: str
    path: str
    byte_order: str  # how our check reads the table: "little" for the series' own images
    map_difference: str | None = None
    ours_exit: int = 0
    ours_clauses: tuple[str, ...] = ()
    ours_must: tuple[str, ...] = ()
    theirs: dict[str, Any] = field(default_factory=dict)  # qemu-img check JSON
    leaked: tuple[int, ...] = ()  # cluster numbers qemu-img check calls leaked
    table_clusters: tuple[int, ...] = ()  # the write-pointer table's clusters (our parse)
    repairs: dict[str, tuple[str, ...]] = field(default_factory=dict)  # mode -> new MUSTs
    table_after_repair: dict[str, str] = field(default_factory=dict)  # mode -> what changed
    made_by: list[str] = field(default_factory=list)  # the commands that made it
    sanitizer: dict[str, str] = field(default_factory=dict)  # step -> ASan SUMMARY line
    error: str = ""


@dataclass
class DiffFinding:
    clause: str
    what: str
    images: list[str] = field(default_factory=list)
    detail: str = ""
    reproduce: list[str] = field(default_factory=list)
    stock: str = ""  # what stock 10.2 does with the first image's reproducer

    @property
    def key(self) -> tuple[str, str]:
        return (self.clause, self.what)

    def to_json(self) -> dict[str, Any]:
        return {"clause": self.clause, "what": self.what, "images": self.images,
                "detail": self.detail, "reproduce": self.reproduce, "stock": self.stock}


@dataclass
class DifferentialResult:
    build: str
    version: str
    observations: list[Observation]
    findings: list[DiffFinding]
    seconds: float
    # Declared deviation -> the series' own images that show it read as the spec says
    # (an empty list would mean the declaration is stale).
    declared_seen: dict[str, list[str]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"build": self.build, "version": self.version,
                "images": len(self.observations), "seconds": round(self.seconds, 1),
                "declared": {clause: {"what": what, "images": self.declared_seen.get(clause, [])}
                             for clause, what in DECLARED.items()},
                "findings": [f.to_json() for f in self.findings]}


def _tool(name: str, build: str) -> str:
    return qemu.require_tool(name, build)


def _run(argv: list[str], build: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              cwd=cwd, env=qemu.tool_environment(build))
    except subprocess.TimeoutExpired as error:
        return subprocess.CompletedProcess(argv, 124, "", f"timed out after {error.timeout} s")


ASAN_SUMMARY = re.compile(r"^SUMMARY: AddressSanitizer: .*$", re.MULTILINE)
# The clause of each step a sanitizer report can come from.
STEP_CLAUSES = {"create": "TOOL-12", "qemu-io": "ZSM-18", "map": "L2-6", "check": "TOOL-3",
                "repair": "TOOL-4"}


def sanitizer_report(proc: subprocess.CompletedProcess[str]) -> str:
    """The SUMMARY line of an AddressSanitizer report (exit qemu.ASAN_EXIT_CODE), or ""."""
    if proc.returncode != qemu.ASAN_EXIT_CODE:
        return ""
    found = ASAN_SUMMARY.search(proc.stderr)
    return found.group(0) if found else f"exit {proc.returncode} (AddressSanitizer)"


def make_series_image(scenario: Scenario, directory: str, build: str = SERIES_BUILD
                      ) -> tuple[str, list[str], dict[str, str]]:
    """Create the scenario's image with the series and run its sessions; returns the path,
    the command lines (for a reproducer) and the sanitizer reports by step. A step that
    dies under AddressSanitizer (build zoned-asan) is run again by the plain series build,
    so that the later steps are still judged. Raises WriterError when the series refuses."""
    from qcow2harness.qemu_zoned import zone_create_options

    path = os.path.join(directory, f"{scenario.name}.qcow2")
    options = zone_create_options(scenario.geometry, scenario.cluster_size)
    create = ["qemu-img", "create", "-q", "-f", "qcow2", "-o", options, path,
              str(scenario.geometry["size"])]
    steps = [create] + [["qemu-io", "-f", "qcow2",
                         *[part for c in session for part in ("-c", c)], path]
                        for session in scenario.sessions]
    lines: list[str] = []
    reports: dict[str, str] = {}
    for tool, *args in steps:
        argv = [_tool(tool, build), *args]
        proc = _run(argv, build)
        step = "create" if args[0] == "create" else tool
        report = sanitizer_report(proc)
        if report and step not in reports:
            reports[step] = report
            proc = _run([_tool(tool, SERIES_BUILD), *args], SERIES_BUILD)
        if proc.returncode != 0 or "failed" in proc.stdout + proc.stderr:
            from qcow2harness.errors import WriterError

            raise WriterError(f"{scenario.name}: {shlex.join(argv)}: exit {proc.returncode}: "
                              f"{(proc.stderr + proc.stdout).strip()[:300]}")
        lines.append(shlex.join(argv))
    return path, lines, reports


def _table_clusters(path: str) -> tuple[int, ...]:
    from qcow2harness.image import Image

    try:
        with Image.open(path) as image:
            zoned = image.zoned
            if zoned is None:
                return ()
            start, size = int(zoned.ofs_zonedmeta), int(zoned.len_zonedmeta)
            first, last = start // image.cluster_size, (start + size - 1) // image.cluster_size
            return tuple(range(first, last + 1))
    except HarnessError:
        return ()


def _table_bytes(path: str) -> bytes:
    from qcow2harness.image import Image

    try:
        with Image.open(path) as image:
            zoned = image.zoned
            if zoned is None:
                return b""
            start, size = int(zoned.ofs_zonedmeta), int(zoned.len_zonedmeta)
    except HarnessError:
        return b""
    with open(path, "rb") as stream:
        stream.seek(start)
        return stream.read(size)


def _ours(path: str, byte_order: str) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    from qcow2harness.checker import check_path

    report = check_path(path, wp_byte_order=byte_order)
    return (report.exit_code, tuple(sorted({f.clause for f in report.violations})),
            tuple(sorted({f.clause for f in report.findings if f.level == "MUST"})))


def observe(image: str, path: str, byte_order: str, build: str, scratch: str) -> Observation:
    """Map, check and repair one image with the series; our map and check beside them."""
    from qcow2harness.map import map_json
    from qcow2harness.qemu_json import map_difference

    seen = Observation(image, path, byte_order)
    qemu_img = _tool("qemu-img", build)
    proc = _run([qemu_img, "map", "--output=json", "-f", "qcow2", path], build)
    if sanitizer_report(proc):
        seen.sanitizer["map"] = sanitizer_report(proc)
    if proc.returncode == 0:
        try:
            seen.map_difference = map_difference(map_json(path), json.loads(proc.stdout))
        except HarnessError as error:
            seen.map_difference = f"our map refuses the image: {error}"
    else:
        seen.error = f"qemu-img map exit {proc.returncode}: {proc.stderr.strip()[:200]}"
    seen.ours_exit, seen.ours_clauses, seen.ours_must = _ours(path, byte_order)
    proc = _run([qemu_img, "check", "--output=json", "-f", "qcow2", path], build)
    try:
        seen.theirs = json.loads(proc.stdout) if proc.stdout.strip() else {}
    except ValueError:
        seen.theirs = {}
    seen.theirs["exit"] = proc.returncode
    if sanitizer_report(proc):
        seen.sanitizer["check"] = sanitizer_report(proc)
    human = _run([qemu_img, "check", "-f", "qcow2", path], build)
    seen.leaked = tuple(int(n) for n in LEAKED_CLUSTER.findall(human.stdout + human.stderr))
    seen.table_clusters = _table_clusters(path)
    table = _table_bytes(path)
    for mode in REPAIR_MODES:
        copy = os.path.join(scratch, f"repair-{mode}-{os.path.basename(path)}")
        shutil.copyfile(path, copy)
        repaired = _run([qemu_img, "check", "-r", mode, "-f", "qcow2", copy], build)
        if sanitizer_report(repaired):
            seen.sanitizer.setdefault("repair", sanitizer_report(repaired))
        _, _, must = _ours(copy, byte_order)
        seen.repairs[mode] = tuple(c for c in must if c not in seen.ours_must)
        after = _table_bytes(copy)
        if after != table:
            seen.table_after_repair[mode] = (
                "the table reads as zeros" if after and not any(after)
                else "the table changed")
        os.unlink(copy)
    return seen


def _problems(seen: Observation) -> list[tuple[str, str, str]]:
    from qcow2harness.qemu_json import check_counts

    problems: list[tuple[str, str, str]] = []
    for step, report in seen.sanitizer.items():
        problems.append((STEP_CLAUSES[step],
                         f"AddressSanitizer reports a memory error in the {step} step", report))
    if seen.map_difference:
        problems.append(("L2-6", "qemu-img map differs from the image's L2 tables",
                         seen.map_difference))
    counts = check_counts(seen.theirs)
    ours_leaks = seen.ours_exit == 3
    if counts["leaks"] and not ours_leaks:
        in_table = bool(seen.leaked) and set(seen.leaked) <= set(seen.table_clusters)
        what = ("qemu-img check reports the write-pointer table's clusters as leaked"
                if in_table else "qemu-img check reports leaks the image does not have")
        problems.append(("TOOL-3", what, f"{counts['leaks']} leaked cluster(s) "
                                         f"{list(seen.leaked)}; the table is in clusters "
                                         f"{list(seen.table_clusters)}; our check: "
                                         f"exit {seen.ours_exit}"))
    if counts["corruptions"] and not seen.ours_must:
        problems.append(("TOOL-3", "qemu-img check reports corruption on a conformant image",
                         f"{counts['corruptions']} corruption(s)"))
    if counts["check-errors"]:
        problems.append(("TOOL-3", "qemu-img check fails to check the image",
                         f"{counts['check-errors']} check error(s)"))
    for clause in seen.ours_must:
        problems.append((clause, "the series writes an image that breaks it",
                         f"our check ({seen.byte_order}-endian table): "
                         f"{', '.join(seen.ours_must)}"))
    for mode, new in seen.repairs.items():
        if new:
            effect = seen.table_after_repair.get(mode, "")
            problems.append(("TOOL-4", "qemu-img check -r frees the write-pointer table",
                             f"after -r {mode}: {', '.join(new)}"
                             + (f"; {effect}" if effect else "")))
    return problems


def judge(observations: list[Observation], build: str = SERIES_BUILD) -> list[DiffFinding]:
    """One finding per (clause, what), listing every image that shows it."""
    found: dict[tuple[str, str], DiffFinding] = {}
    for seen in observations:
        for clause, what, detail in _problems(seen):
            finding = found.setdefault((clause, what), DiffFinding(
                clause, what, detail=detail, reproduce=_reproducer(seen, clause, build)))
            if seen.image not in finding.images:
                finding.images.append(seen.image)
    return sorted(found.values(), key=lambda f: f.key)


def _reproducer(seen: Observation, clause: str, build: str) -> list[str]:
    img = shlex.quote(seen.path)
    qemu_img = shlex.quote(qemu.find_tool("qemu-img", build) or "qemu-img")
    lines = list(seen.made_by)
    if clause == "L2-6":
        lines += [f"{qemu_img} map --output=json {img}", f"qcow2-harness map --output json {img}"]
    elif clause == "TOOL-4":
        lines += [f"{qemu_img} check -r leaks {img}", f"qcow2-harness check {img}"]
    elif clause == "TOOL-3":
        lines += [f"{qemu_img} check {img}", f"qcow2-harness check {img}"]
    else:
        lines.append(f"qcow2-harness check {img}")
    return lines


def _stock_answer(finding: DiffFinding, observations: list[Observation]) -> str:
    """What stock 10.2 says to the first image's reproducer: its create (series-made
    images) or its open of the image."""
    if qemu.build_unavailable(STOCK_BUILD) is not None:
        return f"not run: {qemu.build_unavailable(STOCK_BUILD)}"
    seen = next(o for o in observations if o.image == finding.images[0])
    if seen.made_by:
        argv = shlex.split(seen.made_by[0])
        argv[0] = _tool("qemu-img", STOCK_BUILD)
        argv[-2] = argv[-2] + ".stock"
        proc = _run(argv, STOCK_BUILD)
        said = "create: " + ((proc.stderr or proc.stdout).strip().splitlines() or ["ok"])[0]
    else:
        said = ""
    proc = _run([_tool("qemu-img", STOCK_BUILD), "check", "-f", "qcow2", seen.path],
                STOCK_BUILD)
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    opened = f"check exit {proc.returncode}: {lines[0] if lines else ''}"
    return "; ".join(filter(None, (said, opened)))


def run_differential(directory: str, build: str = SERIES_BUILD,
                     scenarios: tuple[Scenario, ...] = SCENARIOS) -> DifferentialResult:
    """Make every scenario with the series, take the corpus zoned images, observe, judge."""
    from qcow2harness.crash.backcompat import corpus_zoned_images

    started = time.monotonic()
    why = qemu.build_unavailable(build)
    if why is not None:
        from qcow2harness.errors import WriterError

        raise WriterError(why)
    if not qemu.supports_zoned_qcow2(build):
        from qcow2harness.errors import WriterError

        raise WriterError(f"{qemu.find_tool('qemu-img', build)} has no zoned create options")
    made = os.path.join(directory, "series")
    scratch = os.path.join(directory, "scratch")
    os.makedirs(made, exist_ok=True)
    os.makedirs(scratch, exist_ok=True)
    observations = []
    declared_seen: dict[str, list[str]] = {clause: [] for clause in DECLARED}
    for scenario in scenarios:
        path, lines, reports = make_series_image(scenario, made, build)
        seen = observe(f"series/{scenario.name}", path, "little", build, scratch)
        seen.made_by = lines
        seen.sanitizer.update(reports)
        observations.append(seen)
        for clause in set(DECLARED) & set(_ours(path, "big")[2]):
            declared_seen[clause].append(seen.image)
    corpus = os.path.join(directory, "corpus")
    os.makedirs(corpus, exist_ok=True)
    for name, source in corpus_zoned_images(corpus).items():
        path = os.path.join(corpus, os.path.basename(source))
        if os.path.abspath(source) != os.path.abspath(path):
            shutil.copyfile(source, path)
        observations.append(observe(f"corpus/{name}", path, "big", build, scratch))
    findings = judge(observations, build)
    for finding in findings:
        finding.stock = _stock_answer(finding, observations)
    return DifferentialResult(build, str(qemu.qemu_version("qemu-img", build)), observations,
                              findings, time.monotonic() - started, declared_seen)


def main(argv: list[str] | None = None) -> int:
    """python -m qcow2harness.zoned_differential DIR [--json]"""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m qcow2harness.zoned_differential",
        description="map and check of the zoned series against ours, on images the series "
                    "made and on the zoned corpus; one finding per clause and cause")
    parser.add_argument("dir", help="work directory (the images are kept there)")
    parser.add_argument("--build", default=SERIES_BUILD, choices=qemu.BUILDS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = run_differential(args.dir, args.build)
    except HarnessError as error:
        print(f"zoned_differential: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
        return 0
    print(f"{result.build}: {result.version}; {len(result.observations)} images, "
          f"{result.seconds:.1f} s; declared: {', '.join(DECLARED)}")
    for finding in result.findings:
        print(f"\n{finding.clause}: {finding.what} ({len(finding.images)} image(s)): "
              f"{finding.detail}")
        for image in finding.images:
            print(f"    {image}")
        for line in finding.reproduce:
            print(f"    $ {line}")
        print(f"    stock 10.2: {finding.stock}")
    for clause, images in result.declared_seen.items():
        print(f"\ndeclared {clause} ({DECLARED[clause]}): seen on {len(images)} of the "
              f"series' own images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
