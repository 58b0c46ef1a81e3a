"""What the campaigns found in the zoned series, one entry per cause, each with a
reproducer that runs.

Every `SeriesFinding` is a few qemu-img/qemu-io steps and a test of their outcome
(`shows`). The same steps run against the series build and against stock 10.2 from the
same source (QCOW2_HARNESS_ZONED_QEMU, see qcow2harness/qemu.py): a finding stands
when the series shows it and stock 10.2 refuses the steps cleanly (a non-zero exit, no
signal) or behaves. tests/test_series_review.py runs them all; the zoned suites take
their clauses as the series' known deviations (EXPECTED), so CI fails on anything new;

    python -m qcow2harness.properties.series_findings --write docs/series-review.md

runs them today and writes the review (clause text comes from spec/).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from qcow2harness.spec.registry import load

from qcow2harness import qemu
from qcow2harness.checker import check_path
from qcow2harness.checker.zoned import ZONED_FIELD_OFFSET
from qcow2harness.dmlog import read_log
from qcow2harness.errors import HarnessError
from qcow2harness.image import Image
from qcow2harness.qemu_zoned import parse_zone_report

from ..fuzz.reader import Ended, ReaderFailure, classify

KIB = 1024
# The memory bound a death is judged against (a larger failed request is an unbounded
# allocation from the file, fuzz/reader.py), as the fuzz campaigns' readers use.
MEMORY_MB = 4096
# The geometry most reproducers use: 64 KiB zones, zone 0 conventional, 8 zones.
ZONE = 64 * KIB
SIZE = 8 * ZONE
BASE_OPTIONS = {"cluster_size": "4096", "zone.mode": "host-managed", "zone.size": str(ZONE),
                "zone.capacity": str(ZONE), "zone.conventional_zones": "1",
                "zone.max_open_zones": "2", "zone.max_active_zones": "3",
                "zone.max_append_bytes": "4096"}


# A 4-zone image whose zoned extension data starts at ZONED_DATA in the file (after the
# feature name table; tests/test_series_review.py checks it with the parser): the
# crafted-header reproducers poke its fields there.
HEADER_SIZE = 4 * ZONE
HEADER_GEOMETRY = {"zone_max_open_zones": 0, "zone_max_active_zones": 0,
                   "zone_max_append_bytes": 8192}
ZONED_DATA = 120


def field_at(name: str) -> int:
    """File offset of a zoned extension field in the HEADER_GEOMETRY image."""
    return ZONED_DATA + ZONED_FIELD_OFFSET[name]


def create(size: int = SIZE, image: str = "IMG", **changes: str | int) -> str:
    """The qemu-img create line of a zoned image (BASE_OPTIONS with `changes`; keys
    use _ for the dots and dashes of the option names)."""
    options = dict(BASE_OPTIONS)
    for key, value in changes.items():
        options[key.replace("zone_", "zone.", 1) if key.startswith("zone_") else key] = str(value)
    joined = ",".join(f"{k}={v}" for k, v in options.items())
    return f"qemu-img create -q -f qcow2 -o {joined} {image} {size}"


@dataclass
class StepResult:
    line: str
    code: int | None  # None: not run (an earlier step failed)
    output: str = ""
    # How the tool died (a signal, an ASan report), as the fuzz campaigns classify it;
    # None when it exited on its own (success or a refusal).
    death: ReaderFailure | None = None

    @property
    def first_line(self) -> str:
        return self.output.splitlines()[0] if self.output else ""

    @property
    def last_line(self) -> str:
        return self.output.splitlines()[-1] if self.output else ""



@dataclass
class Run:
    """The outcome of a reproducer on one build: each step's exit and output."""

    build: str
    workdir: str
    steps: list[StepResult] = field(default_factory=list)

    def path(self, name: str = "IMG") -> str:
        return os.path.join(self.workdir, name)

    def last(self) -> StepResult:
        return [s for s in self.steps if s.code is not None][-1]

    def refused_cleanly(self) -> bool:
        """The first failing step exited non-zero without dying, or none failed."""
        failed = [s for s in self.steps if s.code not in (None, 0)]
        return not failed or failed[0].death is None


# Evidence: a sentence naming what the run shows, or None when it does not show it.
Evidence = Callable[[Run], str | None]


@dataclass(frozen=True)
class SeriesFinding:
    slug: str
    clauses: tuple[str, ...]  # the clause broken first, then those its effects break
    title: str
    series: str  # what the series does
    verdict: str  # bug, version skew (v9 code vs v10 text) or spec gap, and why
    found_by: str  # campaign, and how long it took to the first report
    steps: tuple[str, ...]
    shows: Evidence
    # Steps may fail on the way to the evidence (a refusal is sometimes the point).
    keep_going: bool = False


# ----- running a reproducer ---------------------------------------------------------------

def run_steps(finding: SeriesFinding, build: str, workdir: str,
              lines: Sequence[str] | None = None, keep_going: bool | None = None) -> Run:
    """Run the steps (default: all of the finding's) with `build`'s qemu-img/qemu-io in
    `workdir` (IMG, BASE... there)."""
    result = Run(build, workdir)
    failed = False
    going = finding.keep_going if keep_going is None else keep_going
    for line in finding.steps if lines is None else lines:
        if failed and not going:
            result.steps.append(StepResult(line, None))
            continue
        words = shlex.split(line)  # file names are relative to workdir, the cwd
        tool = words[0]
        variant = build
        death = None
        if tool.startswith("zoned-asan/"):  # this step on the series' ASan build
            variant, tool = "zoned-asan" if build == "zoned" else build, tool.split("/")[1]
        if tool in ("qemu-img", "qemu-io"):
            argv = [qemu.require_tool(tool, variant), *words[1:]]
            proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                                  timeout=120, env=qemu.tool_environment(variant), cwd=workdir)
            code, output = proc.returncode, proc.stdout + proc.stderr
            death = classify(Ended(tuple(argv), code, output), variant, MEMORY_MB)
        elif tool in FILE_STEPS:
            try:
                code, output = FILE_STEPS[tool](*(kept_input(w) if w.startswith(KEPT)
                                                  else os.path.join(workdir, w)
                                                  for w in words[1:]))
            except OSError as error:
                code, output = 1, f"{tool}: {error.strerror}: {os.path.basename(error.filename)}"
            except HarnessError as error:  # an empty or broken log
                code, output = 1, f"{tool}: {error}"
        else:
            raise ValueError(f"{finding.slug}: unknown step {line!r}")
        result.steps.append(StepResult(line, code, output.strip(), death))
        failed = failed or code != 0
    return result


# Inputs the fuzz campaigns kept (fuzz/findings/): a step names them by this prefix.
KEPT = "fuzz/findings/"


def kept_input(name: str) -> str:
    from qcow2harness import fuzz

    return os.path.join(os.path.dirname(fuzz.__file__), "findings", name[len(KEPT):])


def crash_state(base: str, log: str, count: str, out: str) -> tuple[int, str]:
    """The image a power cut leaves when only the first `count` logged writes landed."""
    kept = int(os.path.basename(count))
    writes = [e for e in read_log(log) if e.is_write]
    shutil.copyfile(base, out)
    with open(out, "r+b") as image:
        for entry in writes[:kept]:
            image.seek(entry.sector * 512)
            image.write(entry.data)
    return 0, f"kept {min(kept, len(writes))} of {len(writes)} logged writes"


def _copy(source: str, target: str) -> tuple[int, str]:
    shutil.copyfile(source, target)
    return 0, ""


def _touch(path: str) -> tuple[int, str]:
    open(path, "ab").close()  # blklogwrites logs into an existing file
    return 0, ""


def _poke(path: str, offset: str, data: str) -> tuple[int, str]:
    """Write bytes (hex) at a byte offset: a crafted header field."""
    with open(path, "r+b") as image:
        image.seek(int(os.path.basename(offset), 0))
        image.write(bytes.fromhex(os.path.basename(data)))
    return 0, ""


# Steps that are file operations (paths relative to the run's folder):
# crash-state BASE LOG N OUT (BASE plus the first N logged writes), cp, touch,
# poke FILE OFFSET HEX (write those bytes at that offset).
FILE_STEPS: dict[str, Callable[..., tuple[int, str]]] = {
    "crash-state": crash_state, "cp": _copy, "touch": _touch, "poke": _poke}


def check_clauses(path: str, wp_byte_order: str = "little") -> list[str]:
    """What our checker finds (MUST and SHOULD), the WP-2 table read as written."""
    return [f.one_line() for f in check_path(path, wp_byte_order=wp_byte_order).violations]


def zones_of(run: Run) -> list[tuple[str, int]]:
    """(state, wp) per zone in the last `zrp` the run printed."""
    for step in reversed(run.steps):
        rows = parse_zone_report(step.output)
        if rows:
            return [(state.value, wp) for state, wp in rows]
    return []


def blklog(image: str, log: str) -> str:
    """qemu-io options that stack qcow2 -> blklogwrites -> file, logging to `log`."""
    return (f"--image-opts driver=qcow2,file.driver=blklogwrites,file.file.filename={image},"
            f"file.log.filename={log},file.log-sector-size=512")


# ----- the findings ------------------------------------------------------------------------

def _wp_table_little_endian(run: Run) -> str | None:
    found = [f.one_line() for f in check_path(run.path()).violations if f.clause == "WP-2"]
    return f"our check: {found[0]}" if found else None


def _check_calls_table_leaked(run: Run) -> str | None:
    check, repair = run.steps[1], run.steps[2]
    if "Leaked cluster" not in check.output or check.code != 3:
        return None
    after = check_clauses(run.path())
    broken = [line for line in after if "ZONE-21" in line or "RC-4" in line]
    return (f"`check` exits 3: {check.first_line}; `check -r leaks` then "
            f"{repair.last_line or 'repairs it'}; our check "
            f"of the repaired file: {broken[0] if broken else after}") if broken else None


def _accepted(what: str, index: int = -1) -> Evidence:
    def shows(run: Run) -> str | None:
        step = run.steps[index]
        return f"`{step.line}` exits 0: {what}" if step.code == 0 else None
    return shows


def _resize_accepted(run: Run) -> str | None:
    if run.steps[1].code != 0:
        return None
    found = [line for line in check_clauses(run.path()) if "ZONE-9" in line or "ZONE-18" in line]
    return f"resize exits 0, and the image is left inconsistent: {found[0]}" if found else \
        "resize exits 0"


def _create_refused(run: Run) -> str | None:
    step = run.steps[0]
    return f"create exits {step.code}: {step.output}" if step.code not in (0, None) else None


def _zone_state_after(zone: int, state: str) -> Evidence:
    def shows(run: Run) -> str | None:
        zones = zones_of(run)
        if len(zones) > zone and zones[zone][0] == state:
            return f"zone {zone} is reported {state}, wp {zones[zone][1]:#x}"
        return None
    return shows


def _aborts(run: Run) -> str | None:
    death = run.last().death
    return None if death is None else (f"`{run.last().line}` dies ({death.category}): "
                                       f"{death.detail}")


def _reads_other_data(run: Run) -> str | None:
    last = run.last()
    failed = [line for line in last.output.splitlines() if "Pattern verification" in line]
    return f"`{last.line}`: {failed[0]}" if failed else None


def _too_many_active(run: Run) -> str | None:
    zones = zones_of(run)
    active = [z for z, (state, _) in enumerate(zones)
              if state in ("implicit_open", "explicit_open", "closed")]
    return f"{len(active)} zones are active ({active}) with max_active_zones=3" \
        if len(active) > 3 else None


def _too_many_open(limit: int) -> Evidence:
    def shows(run: Run) -> str | None:
        zones = zones_of(run)
        opened = [z for z, (state, _) in enumerate(zones)
                  if state in ("implicit_open", "explicit_open")]
        return f"{len(opened)} zones are open ({opened}) with max_open_zones={limit}" \
            if len(opened) > limit else None
    return shows


def _wp_before_data(run: Run) -> str | None:
    with Image.open(run.path("BASE")) as image:
        zoned = image.zoned
        assert zoned is not None
        table = int(zoned.ofs_zonedmeta), int(zoned.ofs_zonedmeta) + 8 * int(zoned.num_zones)
    entries = list(read_log(run.path("LOG")))
    order = []
    for entry in entries:
        if entry.is_flush:
            order.append("flush")
        elif entry.is_write:
            start = entry.sector * 512
            order.append("wp" if table[0] <= start < table[1] else
                         "data" if entry.data == bytes([1]) * len(entry.data) else "metadata")
    if order and order[0] == "wp" and "data" in order:
        return ("the log of one guest write, in order: " + ", ".join(order)
                + "; the crash state with only the first request: "
                + (_reads_other_data(run) or "reads the data"))
    return None


def _asan_report(run: Run) -> str | None:
    """ASan's report: what it found and where (the first frame in QEMU's block code)."""
    death = run.last().death
    if death is None or not death.category.startswith("ASan"):
        return None
    return f"AddressSanitizer {death.detail.split(': ', 1)[-1]} at {death.site}"


def _empty_zone_reads_old_data(run: Run) -> str | None:
    zones = zones_of(run)
    old = _reads_other_data(run)
    if len(zones) > 1 and zones[1][0] == "empty" and old:
        return f"zone 1 comes back EMPTY after the first logged request, and {old}"
    return None


FINDINGS: tuple[SeriesFinding, ...] = (
    SeriesFinding(
        "wp-table-byte-order", ("WP-2", "WP-1"),
        "The write-pointer table is written in host byte order",
        "Each zonedmeta entry is stored little-endian on x86; every other qcow2 number, "
        "and the v10 text for this table, is big-endian. Another implementation reads "
        "every write pointer as garbage.",
        "bug: qcow2 stores all numbers big-endian (docs/interop/qcow2.rst); v10 keeps "
        "that rule and does not except the table.",
        "every zoned suite and the crash engine, on the first image (under 1 s)",
        (create(), "qemu-io -c 'write -P 0x11 65536 4096' IMG"),
        _wp_table_little_endian),
    SeriesFinding(
        "check-frees-wp-table", ("TOOL-3", "TOOL-4", "ZONE-21"),
        "qemu-img check does not know the write-pointer table",
        "`qemu-img check` counts no reference to the zonedmeta clusters, so it calls "
        "them leaked on every zoned image (exit 3); `check -r leaks` and `-r all` set "
        "their refcount to 0, after which the next allocation reuses them for data or "
        "metadata and the write pointers are overwritten.",
        "bug: v10 makes the table refcounted metadata like the L1 table (ZONE-21).",
        "stateful zoned-qemu suite, round 1 (first minute); zoned check differential",
        (create(), "qemu-img check IMG", "qemu-img check -r leaks IMG"),
        _check_calls_table_leaked, keep_going=True),
    SeriesFinding(
        "resize-accepted", ("TOOL-6", "ZONE-9"),
        "Resize is accepted on a zoned image",
        "`qemu-img resize` grows the virtual size and leaves nr_zones and the table as "
        "they were, so the header no longer describes the disk.",
        "bug: v10 fixes the zone count at create (nr_zones = ceil(size / zone_size)); "
        "nothing in the series refuses a resize.",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(), f"qemu-img resize -f qcow2 IMG +{ZONE}"),
        _resize_accepted),
    SeriesFinding(
        "commit-into-zoned", ("TOOL-7", "ZONE-23"),
        "An overlay can be committed into a zoned image",
        "`qemu-img commit` writes the overlay's clusters into the zoned image in cluster "
        "order, ignoring write pointers and zone states.",
        "spec gap: the v10 text does not say how a backing chain meets zones; writing "
        "guest data past the write pointers cannot be right.",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(), f"qemu-img create -q -f qcow2 -u -b IMG -F qcow2 TOP {SIZE}",
         "qemu-io -f qcow2 -c 'write -P 0x22 131072 4096' TOP", "qemu-img commit -q TOP"),
        _accepted("the overlay's data is written into a sequential zone")),
    SeriesFinding(
        "open-limit-without-active-limit", ("TOOL-12", "ZONE-13"),
        "max_active_zones = 0 is taken as zero, not as no limit",
        "Create refuses max_open_zones > 0 with max_active_zones = 0 ('exceeds "
        "max_active_zones 0').",
        "bug: 0 means no limit for both limits (v10 text; ZBC).",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(zone_max_active_zones=0, zone_max_open_zones=1),),
        _create_refused),
    SeriesFinding(
        "append-to-conventional", ("ZSM-10",),
        "Zone append to a conventional zone succeeds",
        "`zap` on zone 0 (conventional) writes and reports where it landed.",
        "bug: zone append needs a write pointer; ZBC and null_blk fail it.",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(), "qemu-io -c 'zap -p 0 4096' IMG"),
        _accepted("an append to conventional zone 0 succeeds")),
    SeriesFinding(
        "write-across-zone-boundary", ("ZSM-4",),
        "A write from a conventional zone into a sequential one succeeds",
        "A write that starts in conventional zone 0 and runs into sequential zone 1 is "
        "accepted and moves nothing in zone 1's state.",
        "bug: a request that crosses into a sequential zone must fail.",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(), f"qemu-io -c 'write -P 0x33 {ZONE - 4096} 8192' -c 'zrp 0 2' IMG"),
        _accepted("the write crosses into sequential zone 1", -1)),
    SeriesFinding(
        "active-limit-not-enforced", ("ZSM-5", "ZSM-2"),
        "The active-zone limit is not enforced",
        "With max_active_zones = 3 a fourth zone opens on write: closed zones are not "
        "counted.",
        "bug: active = open + closed zones, at most max_active_zones.",
        "stateful zoned-qemu suite, round 2 (second minute); crash engine (zones workload)",
        (create(),
         "qemu-io -c 'write -P 5 65536 8192' -c 'write -P 6 131072 512' "
         "-c 'zc 65536 65536' -c 'zc 131072 65536' -c 'write -P 7 196608 512' "
         "-c 'write -P 8 262144 512' -c 'zrp 0 8' IMG"),
        _too_many_active),
    SeriesFinding(
        "explicit-open-past-the-open-limit", ("ZSM-6", "ZSM-12", "ZSM-2"),
        "Explicit open ignores the open limit",
        "With max_open_zones = 1, a second zone opens explicitly while the first is "
        "explicitly open: two zones are open.",
        "bug: an explicitly open zone is never closed to make room, so with no implicitly "
        "open zone to close, the open must fail.",
        "stateful zoned-qemu suite (second run, round 1)",
        (create(zone_max_open_zones=1, zone_max_active_zones=2),
         "qemu-io -c 'zo 65536 65536' -c 'zo 131072 65536' -c 'zrp 0 3' IMG"),
        _too_many_open(1)),
    SeriesFinding(
        "write-at-the-open-limit-crashes", ("ZSM-6",),
        "A write at the open limit with only explicitly open zones crashes QEMU",
        "With max_open_zones = 1 and zone 1 explicitly open, a write to zone 2 looks for "
        "an implicitly open zone to close, finds none and dereferences NULL "
        "(qcow2_rm_imp_open_zone, from qcow2_can_open_zone): SIGSEGV. The same with an "
        "append.",
        "bug: the write must fail (no implicitly open zone can be closed).",
        "stateful zoned-qemu suite (second run, round 14; an append)",
        (create(zone_max_open_zones=1, zone_max_active_zones=2),
         "qemu-io -c 'zo 65536 65536' -c 'write -P 1 131072 4096' IMG"),
        _aborts),
    SeriesFinding(
        "second-append-lands-at-zone-start", ("ZSM-11", "ZSM-18"),
        "A zone append to a non-empty zone writes at the zone start",
        "The append reports the right landing sector (the wp) but writes its data at the "
        "zone start, over what is there.",
        "bug.",
        "stateful zoned-qemu suite, round 1 (first minute); crash engine (zones-append)",
        (create(), "qemu-io -c 'zap -p 65536 2048' -c 'zap -p 65536 1024' "
                   "-c 'read -P 0xcd 67584 1024' IMG"),
        _reads_other_data),
    SeriesFinding(
        "capacity-not-power-of-two", ("ZONE-8", "ZSM-8"),
        "A zone capacity that is not a power of two breaks the state machine",
        "With zone.capacity=1536 a write of one block leaves the zone CLOSED instead of "
        "IMPLICIT_OPEN, and the zone report gives the zone size as the capacity.",
        "bug: the code tests FULL by masking with capacity - 1; v10 allows any capacity "
        "that is a multiple of 512 up to the zone size.",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(8192, cluster_size=512, zone_size=4096, zone_capacity=1536,
                zone_conventional_zones=0, zone_max_open_zones=0, zone_max_active_zones=0,
                zone_max_append_bytes=0), "qemu-io -c 'write -P 1 0 512' -c 'zrp 0 2' IMG"),
        _zone_state_after(0, "closed")),
    SeriesFinding(
        "close-of-an-empty-zone", ("ZSM-1", "ZSM-13"),
        "Closing an EMPTY zone succeeds",
        "`zone_close` on an EMPTY zone returns success and leaves it EMPTY.",
        "spec gap: the v10 text does not say what closing an EMPTY zone does. Our model "
        "follows null_blk, which fails it (it is no open zone); a no-op success is the "
        "other reading. The text should decide.",
        "stateful zoned-qemu suite, round 1 (first minute)",
        (create(), "qemu-io -c 'zc 65536 65536' -c 'zrp 0 2' IMG"),
        _accepted("closing EMPTY zone 1 succeeds")),
    SeriesFinding(
        "explicit-open-twice-aborts", ("ZSM-12",),
        "Opening an explicitly open zone again aborts QEMU",
        "The second `zone_open` dies on an assertion in the coroutine code "
        "(`!to->locks_held`): a lock taken by the first is never released.",
        "bug: opening an EXPLICIT_OPEN zone is a no-op.",
        "stateful zoned-qemu suite, round 1 (first minute; seen in 5 of 15 rounds)",
        (create(), "qemu-io -c 'zo 65536 65536' -c 'zo 65536 65536' IMG"),
        _aborts),
    SeriesFinding(
        "overlap-check-reads-past-its-table", ("TOOL-9", "ZONE-22"),
        "The metadata overlap check reads past its allocation on every zoned create",
        "qcow2_check_metadata_overlap, called before the first write of every zoned "
        "create, reads 4 bytes past a heap buffer (AddressSanitizer: heap-buffer-"
        "overflow, qcow2-refcount.c:2942). What it reads is garbage, so the check "
        "misjudges at random: `qemu-img convert -O qcow2 -o zone...` (TOOL-9) aborts on "
        "`last_entry < s->refcount_table_size` in some runs and not in others.",
        "bug: the check over the zonedmeta range indexes a table sized for the "
        "pre-zoned metadata kinds.",
        "stateful zoned-qemu suite, round 1 (convert abort, first minute); crash engine "
        "with the zoned-asan build (every create)",
        ("zoned-asan/" + create(),),
        _asan_report),
    SeriesFinding(
        "open-trusts-the-zoned-header", ("ZONE-4", "ZONE-3", "ZONE-5", "ZONE-6", "ZONE-7",
                                         "ZONE-16", "ZONE-19", "ZONE-20", "ZONE-21",
                                         "ZONE-22", "WP-3", "WP-6"),
        "Open does not validate the zoned extension",
        "The series opens, and writes to, images whose zoned extension breaks the v10 "
        "rules: a zone model other than host-managed, a wrong extension length, "
        "non-zero reserved bytes, a zone size that is not a power of two, an unaligned "
        "capacity or append limit, a table at offset 0, unaligned, past the end of the "
        "file, unrefcounted or inside a data cluster, and table entries with reserved "
        "bits or a wp outside its zone (which it reports as FULL). Here: zone model 2.",
        "bug: a reader must refuse what it cannot interpret (the text's 'any other value: "
        "refuse'); the back-compat open campaign offers every zoned corruption of "
        "properties/corruptions.py (`python -m qcow2harness.crash.backcompat DIR`).",
        "back-compat open campaign (69 images in 4.4 s)",
        (create(HEADER_SIZE, **HEADER_GEOMETRY), f"poke IMG {field_at('zoned_model')} 02",
         "qemu-io -c 'write -P 0x44 65536 4096' -c 'zrp 0 4' IMG"),
        _accepted("an image with zone model 2 opens and takes a write")),
    SeriesFinding(
        "zone-limits-abort-on-open", ("ZONE-12", "ZONE-13", "ZONE-14"),
        "An open limit above the sequential zone count aborts QEMU",
        "With max_open_zones = 4 and 3 sequential zones, `qemu-img info` dies on an "
        "assertion in error_setv (`*errp == NULL`): the option check sets an error twice "
        "instead of refusing the image once. The fuzz campaigns reach the same assertion "
        "from max_open_zones > max_active_zones (block/qcow2.c:540, ZONE-13) and from "
        "both limits past the sequential zones (qcow2.c:534, ZONE-14).",
        "bug.",
        "back-compat open campaign (first pass, under 5 s); fuzz external 'qemu-img info' "
        "(first at 2 s)",
        (create(HEADER_SIZE, **HEADER_GEOMETRY), f"poke IMG {field_at('max_open_zones')} 00000004",
         "qemu-img info IMG"),
        _aborts),
    SeriesFinding(
        "zone-count-allocates-unbounded", ("ZONE-9", "ZONE-10", "ZONE-18"),
        "A huge zone count from the file is allocated before it is checked",
        "With nr_zones = 2^29 in the header (the virtual size needs 4), `qemu-img info` "
        "dies in g_malloc ('failed to allocate 25769803776 bytes') instead of refusing the "
        "image: per-zone state is sized by a number taken from the file, unchecked against "
        "the virtual size. The fuzz campaigns reach three such sites: nr_zones in "
        "qcow2_refresh_zonedmeta (block/qcow2.c:473) and in qcow2_read_extensions "
        "(qcow2.c:828), and zonedmeta_size (qcow2.c:821); fuzz/findings/ keeps one input "
        "each.",
        "bug: nr_zones must equal ceil(size / zone_size) (ZONE-9), and a reader must "
        "refuse a header before it sizes anything by it.",
        "back-compat open campaign (first pass, under 5 s); fuzz external 'qemu-img info' "
        "(first at 4 s)",
        (create(HEADER_SIZE, **HEADER_GEOMETRY), f"poke IMG {field_at('nr_zones')} 20000000",
         "qemu-img info IMG"),
        _aborts),
    SeriesFinding(
        "table-size-overflows-its-buffer", ("ZONE-18",),
        "A zonedmeta_size larger than 8 x nr_zones overflows a heap buffer",
        "The table is read with zonedmeta_size bytes into a buffer sized for nr_zones "
        "entries: AddressSanitizer reports a heap-buffer-overflow WRITE; the plain build "
        "opens the image silently.",
        "bug: zonedmeta_size must be 8 * nr_zones (ZONE-18); a reader must refuse "
        "anything else, and never read more than it allocated.",
        "back-compat open campaign with the zoned-asan build (9 s)",
        (create(HEADER_SIZE, **HEADER_GEOMETRY),
         f"poke IMG {field_at('zonedmeta_size')} 0000000000000028",
         "zoned-asan/qemu-img info IMG"),
        _asan_report),
    SeriesFinding(
        "zone-size-zero-divides-by-zero", ("ZONE-6",),
        "A zone size of 0 kills QEMU with SIGFPE",
        "Open divides by zone_size before checking it: `qemu-img info` on an image whose "
        "zone_size is 0 dies of SIGFPE in qcow2_read_extensions (block/qcow2.c:836).",
        "bug: zone_size must be a non-zero power of two; a reader refuses anything else.",
        "fuzz external 'qemu-img info' with the zoned-asan build (first at 329 s; 28 s in "
        "the differential campaign)",
        (f"cp {KEPT}series-qemu-img-info-sigfpe-zone-size-zero.qcow2 IMG",
         "qemu-img info IMG"),
        _aborts),
    SeriesFinding(
        "zone-report-reads-past-the-table", ("ZONE-18",),
        "A zone report reads past a table smaller than the zone count",
        "With zonedmeta_size = 56 for 8 zones, `zone_report` reads the eighth entry past "
        "the table's buffer: AddressSanitizer heap-buffer-overflow READ in "
        "qcow2_co_zone_report (block/qcow2.c:4979).",
        "bug: zonedmeta_size must be 8 * nr_zones (ZONE-18), checked at open.",
        "fuzz external with qemu-io zone commands, zoned-asan build (first at 5 s)",
        (f"cp {KEPT}series-qemu-io-zone-report-heap-overflow-zonedmeta-size.qcow2 IMG",
         "zoned-asan/qemu-io -c 'zrp 0 64' IMG"),
        _asan_report),
    SeriesFinding(
        "extension-length-overwrites-the-stack", ("ZONE-3",),
        "A zoned extension longer than 56 bytes overwrites the stack",
        "The extension body is read with its stored length into a 56-byte structure on "
        "the stack: a length of 200 kills `qemu-img info` (SIGSEGV, no usable stack; "
        "AddressSanitizer reports a stack-buffer-overflow for some lengths and misses "
        "64-96, where the read lands on a coroutine stack).",
        "bug, and a memory-safety one: the extension length must be exactly 56 (ZONE-3), "
        "and a reader never copies more than its structure holds.",
        "fuzz external 'qemu-img info' with the zoned-asan build (first at 54 s)",
        (f"cp {KEPT}series-qemu-img-info-stack-overwrite-extension-length.qcow2 IMG",
         "qemu-img info IMG"),
        _aborts),
    SeriesFinding(
        "reset-rewinds-wp-before-unmapping", ("PERS-7", "ZSM-16"),
        "A reset rewinds the write pointer before it drops the data",
        "Reset writes wp = zone start first, then the L2 updates that unmap the zone, "
        "with no flush between. A power cut between them leaves an EMPTY zone that "
        "still reads its old data.",
        "bug: after a crash a reset is either done or not (PERS-7), and an EMPTY zone "
        "reads zeros (ZSM-16); the v10 review asks for the wp to be written last.",
        "crash engine (zones workload)",
        (create(), "qemu-io -c 'write -P 1 65536 4096' IMG", "cp IMG BASE", "cp IMG RUN",
         "touch LOG", f"qemu-io -t writeback {blklog('RUN', 'LOG')} -c 'zrs 65536 65536'",
         "crash-state BASE LOG 1 IMG",
         "qemu-io -r -f qcow2 -c 'zrp 0 2' -c 'read -P 0 65536 4096' IMG"),
        _empty_zone_reads_old_data),
    SeriesFinding(
        "wp-written-before-data", ("PERS-1", "PERS-2", "PERS-4"),
        "The write pointer is written before the data, with no flush",
        "For every write and append the first request is the zonedmeta sector, then "
        "the refcount and L2 updates, then the data, with no flush in between. A power "
        "cut after the first request leaves a write pointer over data that is not there.",
        "bug, and the v10 review asks for the opposite order: data, then metadata, each "
        "flushed, then the write pointer.",
        "crash engine (zones workload, first state judged in under 1 s)",
        (create(image="BASE"), "cp BASE RUN", "touch LOG",
         f"qemu-io -t writeback {blklog('RUN', 'LOG')} -c 'write -P 1 65536 4096'",
         "crash-state BASE LOG 1 IMG", "qemu-io -r -f qcow2 -c 'read -P 1 65536 4096' IMG"),
        _wp_before_data, keep_going=True),
)


def shorten(line: str) -> str:
    """A step as the review shows it: create options are in the reproducer above."""
    head, _, tail = line.partition(" -o ")
    return f"{head} -o ... {tail.split(' ', 1)[1]}" if tail and " " in tail else line


# The clauses the series is known to break: the zoned suites' EXPECTED on the series.
SERIES_EXPECTED = frozenset(clause for finding in FINDINGS for clause in finding.clauses)


# ----- the review --------------------------------------------------------------------------

@dataclass
class Verified:
    finding: SeriesFinding
    series: Run
    stock: Run | None
    evidence: str | None

    @property
    def stands(self) -> bool:
        return self.evidence is not None and (self.stock is None
                                              or self.stock.refused_cleanly())


def verify(finding: SeriesFinding, workdir: str) -> Verified:
    series_dir = os.path.join(workdir, finding.slug, "series")
    os.makedirs(series_dir)
    series = run_steps(finding, "zoned", series_dir)
    stock = None
    if qemu.build_unavailable("stock") is None:
        # Stock 10.2 is offered the create, then every later step on the image the series
        # created: each must be refused cleanly (incompatible bit 5, ZONE-2) or behave.
        stock_dir = os.path.join(workdir, finding.slug, "stock")
        os.makedirs(stock_dir)
        first, rest = finding.steps[:1], finding.steps[1:]
        stock = run_steps(finding, "stock", stock_dir, first)
        if stock.steps[0].code != 0:
            run_steps(finding, "zoned", stock_dir, first)
        stock.steps += run_steps(finding, "stock", stock_dir, rest, keep_going=True).steps
    return Verified(finding, series, stock, finding.shows(series))


def review(verified: Sequence[Verified]) -> str:
    spec = load()
    version = qemu.qemu_version("qemu-img", "zoned")
    lines = [
        "# Review of the zoned qcow2 series, as the harness finds it",
        "",
        "Generated by `python -m qcow2harness.properties.series_findings --write "
        "docs/series-review.md` on " + datetime.date.today().isoformat() + ", against "
        f"the series as posted (v8 1/4, v8 2/4, v9 3/4) applied to Debian's {version} "
        "source (`make zoned-qemu SERIES=../shared/zoned-series`). Every reproducer "
        "below ran on that build and on stock 10.2 built from the same source; clause "
        "ids refer to spec/SPEC.md. One entry per cause: where one cause breaks several "
        "clauses, they are listed together.",
        "",
        "To run a reproducer: `make zoned-qemu SERIES=...` prints the build root B; put "
        "`$B/zoned` first on PATH (`$B/zoned-asan` for an ASan finding, with "
        "ASAN_OPTIONS=detect_leaks=0); `IMG`, `TOP`, ... are files in the current folder. "
        "`touch`, `cp` and `crash-state BASE LOG N OUT` (BASE with the first N writes of "
        "a blklogwrites log applied, as a power cut would leave it) are file steps.",
        "",
        "| # | finding | clauses | stock 10.2 |",
        "|---|---|---|---|",
    ]
    for number, item in enumerate(verified, 1):
        stock = "not run" if item.stock is None else (
            "refuses cleanly" if item.stock.refused_cleanly() else "fails too")
        lines.append(f"| {number} | [{item.finding.title}](#{item.finding.slug}) | "
                     f"{', '.join(item.finding.clauses)} | {stock} |")
    for number, item in enumerate(verified, 1):
        finding = item.finding
        lines += ["", f'<a id="{finding.slug}"></a>', "",
                  f"## {number}. {finding.title}", ""]
        for clause in finding.clauses:
            lines.append(f"- **{clause}** ({spec[clause].level}): {spec[clause].rule}")
        lines += ["", f"**What the series does.** {finding.series}", "",
                  f"**Bug or version skew.** {finding.verdict}", "",
                  f"**Found by.** {finding.found_by}", "", "**Reproducer.**", "", "```"]
        lines += [step for step in finding.steps]
        lines += ["```", "",
                  f"**Seen today.** {item.evidence or 'NOT SHOWN: the series no longer does this'}"]
        if item.stock is not None:
            lines += ["", "**Stock 10.2** (later steps on the image the series created):", ""]
            lines += [f"- `{shorten(step.line)}`: exit {step.code}"
                      + (f", {step.last_line}" if step.code else "")
                      for step in item.stock.steps if step.code is not None]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", metavar="FILE", help="write the review here")
    args = parser.parse_args(argv)
    reason = qemu.build_unavailable("zoned")
    if reason is not None:
        print(f"series-findings: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="qcow2-harness-series-") as workdir:
        verified = [verify(f, workdir) for f in FINDINGS]
    for item in verified:
        print(f"{'stands ' if item.stands else 'GONE   '} {item.finding.slug}: "
              f"{item.evidence or 'not shown'}")
    text = review(verified)
    if args.write:
        with open(args.write, "w") as out:
            out.write(text)
    return 0 if all(item.stands for item in verified) else 2


if __name__ == "__main__":
    sys.exit(main())
