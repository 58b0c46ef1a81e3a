"""Stateful suites: the reference model beside a real writer, every operation applied to both.

- `QemuGuestMachine`: guest reads and writes, write-zeroes, discard, flush, reopen and
  internal snapshots on a qcow2 image driven through ONE long-running qemu-io
  (properties/qemu_io.py). Invariants: every guest byte reads back through QEMU as the
  model says, and `check` is clean after a flush.
- `zoned_writer_machine(mutants)`: the zone model (reference/persistence.py) beside the
  reference writer, optionally with named mutants. Invariants: same answers, the file
  re-parsed by our Kaitai parser shows the model's write pointers, `check` is clean, the
  data reads back; a `crash` rule rebuilds a power cut from the writer's log and judges
  it with the persistence model.
- `ZoneGuestRules`: the guest's zone operations as rules, shared with the zoned tools
  suite (properties/zoned_tools.py); `persisted_zone_mismatches` compares the zones
  parsed from a file with a model report.
- `zoned_qemu_unavailable()`: why the zoned-QEMU suite (properties/zoned_tools.py) cannot
  run here (QEMU 7.2 has no zoned qcow2), or None when a zoned-capable qemu-img is found.

A failure message carries the shrunk sequence as a `qcow2-harness model` trace and as a
qemu-io script, ready for a bug report.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from qcow2harness.reference.persistence import PersistenceModel, pattern_byte
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig, ZoneInfo, ZoneState, ZoneType

from qcow2harness import qemu
from qcow2harness.checker import check_path
from qcow2harness.dmlog import read_log
from qcow2harness.errors import WriterError
from qcow2harness.image import Image
from qcow2harness.info import describe_zones

from .qemu_io import QemuIO
from .strategies import image_options, zone_configs

SECTOR = 512
GUEST_SIZE = 4 << 20
SNAPSHOTS = ("s0", "s1", "s2")

# What an in-memory zone state looks like once persisted (WP-8).
PERSISTED_STATES = {
    ZoneState.EMPTY: {"empty"},
    ZoneState.IMPLICIT_OPEN: {"closed", "empty"},
    ZoneState.EXPLICIT_OPEN: {"closed", "empty"},
    ZoneState.CLOSED: {"closed", "empty"},
    ZoneState.FULL: {"full"},
    ZoneState.NOT_WRITE_POINTER: {"not_write_pointer"},
}


def check_is_clean(path: str, *, dirty_allowed: bool = False,
                   leaks_allowed: bool = False) -> list[str]:
    """`check` findings that break the invariant (HDR-12 only when lazy refcounts allow it,
    RC-5 only after a writer was seen to leak)."""
    report = check_path(path)
    allowed = {"HDR-12"} if dirty_allowed else set()
    if leaks_allowed:
        allowed.add("RC-5")
    return [f.one_line() for f in report.violations if f.clause not in allowed]


# ----- model vs real QEMU -------------------------------------------------------------


class GuestData:
    """What every 512-byte guest sector holds: a pattern byte, 0 for zeros."""

    def __init__(self, size: int) -> None:
        self.sectors = np.zeros(size // SECTOR, dtype=np.uint8)
        # Every state since the last durable point, when a crash rule is tracking them.
        self.history: list[np.ndarray] | None = None

    def fill(self, sector: int, count: int, pattern: int | np.ndarray) -> None:
        self.sectors[sector:sector + count] = pattern
        if self.history is not None:
            self.history.append(self.sectors.copy())

    def runs(self) -> Iterable[tuple[int, int, int]]:
        """(first sector, sector count, pattern) for each run of equal sectors."""
        sectors = self.sectors
        edges = np.flatnonzero(np.diff(sectors)) + 1
        starts = np.concatenate(([0], edges))
        ends = np.concatenate((edges, [sectors.size]))
        for first, end in zip(starts, ends, strict=True):
            yield int(first), int(end - first), int(sectors[first])

    def copy(self) -> np.ndarray:
        return self.sectors.copy()


class QemuGuestMachine(RuleBasedStateMachine):
    """The real QEMU qcow2 driver against a plain guest-data model."""

    def __init__(self) -> None:
        super().__init__()
        self.workdir = tempfile.mkdtemp(prefix="qcow2-harness-qemu-")
        self.image = os.path.join(self.workdir, "guest.qcow2")
        self.io: QemuIO | None = None
        self.data = GuestData(GUEST_SIZE)
        self.snapshots: dict[str, np.ndarray] = {}
        self.options: dict[str, str] = {}
        self.leaks_allowed = False

    @initialize(options=image_options())
    def create(self, options: dict[str, str]) -> None:
        self.options = options
        args = ",".join(f"{k}={v}" for k, v in options.items())
        qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", args, self.image,
                 str(GUEST_SIZE))
        self.io = QemuIO(self.image)

    @property
    def cluster_size(self) -> int:
        return int(self.options.get("cluster_size", "65536"))

    def _io(self) -> QemuIO:
        assert self.io is not None
        return self.io

    def _run(self, command: str) -> str:
        out = self._io().command(command)
        if "error" in out.lower() or "failed" in out.lower():
            self._fail(f"qemu-io {command!r} failed: {out.strip()}")
        return out

    def _fail(self, message: str) -> None:
        raise AssertionError(
            f"{message}\nimage options: {self.options}\n"
            f"qemu-io script (qemu-img create -f qcow2 -o "
            f"{','.join(f'{k}={v}' for k, v in self.options.items())} IMG 4M; "
            f"qemu-io -f qcow2 IMG < script):\n{self._io().as_script()}"
        )

    sectors = st.integers(0, GUEST_SIZE // SECTOR - 1)
    counts = st.sampled_from([1, 2, 7, 8, 128, 129])

    @rule(sector=sectors, count=counts, pattern=st.integers(1, 255))
    def write(self, sector: int, count: int, pattern: int) -> None:
        sector %= self.data.sectors.size
        count = min(count, self.data.sectors.size - sector)
        self._run(f"write -P {pattern:#x} {sector * SECTOR} {count * SECTOR}")
        self.data.fill(sector, count, pattern)

    @rule(sector=sectors, count=counts)
    def write_zeroes(self, sector: int, count: int) -> None:
        sector %= self.data.sectors.size
        count = min(count, self.data.sectors.size - sector)
        self._run(f"write -z {sector * SECTOR} {count * SECTOR}")
        self.data.fill(sector, count, 0)

    @rule(cluster=st.integers(0, 63), clusters=st.integers(1, 4))
    def discard(self, cluster: int, clusters: int) -> None:
        # Whole clusters only: qcow2 may ignore a partial-cluster discard.
        size = self.data.sectors.size * SECTOR
        first = cluster * self.cluster_size
        if first >= size:
            return
        length = min(clusters * self.cluster_size, size - first)
        self._run(f"discard {first} {length}")
        self.data.fill(first // SECTOR, length // SECTOR,
                       self.discarded(first // SECTOR, length // SECTOR))

    def discarded(self, sector: int, count: int) -> int | np.ndarray:
        """What discarded sectors read as: zeros here (no backing file)."""
        return 0

    @rule()
    def flush(self) -> None:
        self._run("flush")

    @rule()
    def reopen(self) -> None:
        self._io().reopen()

    def _with_image_closed(self, *qemu_img_args: str) -> None:
        """Run qemu-img on the image while qemu-io has it closed (image locking)."""
        io = self._io()
        io.command("close")
        io.script.append(f"# qemu-img {' '.join(qemu_img_args)} IMG")
        try:
            qemu.run("qemu-img", *qemu_img_args, self.image)
        finally:
            io.command(f"open -t {io.cache} -o driver=qcow2 {self.image}")

    @rule(name=st.sampled_from(SNAPSHOTS))
    def snapshot_create(self, name: str) -> None:
        if name in self.snapshots:
            return
        try:
            self._with_image_closed("snapshot", "-c", name)
        except WriterError as error:
            # With 1-bit refcounts a shared cluster cannot count 2: QEMU refuses the
            # snapshot (EINVAL). The image must come out unchanged and clean.
            if self.options.get("refcount_bits") == "1" and "Invalid argument" in error.message:
                # QEMU 7.2 leaks the clusters it had allocated for the snapshot (qemu-img
                # check agrees): recorded in README "Findings"; leaks are allowed from here.
                self._io().script.append(f"# refused: {error.message}")
                self.leaks_allowed = True
                return
            raise
        self.snapshots[name] = self.data.copy()

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def snapshot_apply(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.snapshots)))
        self._with_image_closed("snapshot", "-a", name)
        self.data.sectors = self.snapshots[name].copy()

    @precondition(lambda self: bool(self.snapshots))
    @rule(data=st.data())
    def snapshot_delete(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(sorted(self.snapshots)))
        self._with_image_closed("snapshot", "-d", name)
        del self.snapshots[name]

    @invariant()
    def guest_data_reads_back_through_qemu(self) -> None:
        if self.io is None:
            return
        for first, count, pattern in self.data.runs():
            if not self.io.verify(first * SECTOR, count * SECTOR, pattern):
                self._fail(f"guest bytes {first * SECTOR}..{(first + count) * SECTOR} do not "
                           f"read back as {pattern:#x}")

    @invariant()
    def check_is_clean_after_flush(self) -> None:
        if self.io is None:
            return
        self.io.command("flush")
        problems = check_is_clean(self.image,
                                  dirty_allowed=self.options.get("lazy_refcounts") == "on",
                                  leaks_allowed=self.leaks_allowed)
        if problems:
            self._fail("check after flush: " + "; ".join(problems))

    def teardown(self) -> None:
        if self.io is not None:
            self.io.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


# ----- model vs reference writer (zoned) ----------------------------------------------


class ZoneGuestRules(RuleBasedStateMachine):
    """The guest's zone operations as rules, for machines that keep a PersistenceModel
    in `self.model` and send each op to it and their writer in `_apply`."""

    model: PersistenceModel | None
    config: ZoneConfig | None

    def _apply(self, op: dict[str, Any]) -> None:
        raise NotImplementedError

    def _zone(self, drawn: int) -> int:
        assert self.config is not None
        return drawn % self.config.nr_zones

    @rule(zone=st.integers(0, 63), at_wp=st.booleans(), blocks=st.integers(1, 16))
    def write(self, zone: int, at_wp: bool, blocks: int) -> None:
        assert self.model is not None
        info = self.model.zones.zone(self._zone(zone))
        base = info.wp if info.type is ZoneType.SEQUENTIAL else info.start
        offset = base if at_wp else base + SECTOR
        self._apply({"op": "write", "offset": offset, "length": blocks * SECTOR})

    @rule(zone=st.integers(0, 63), blocks=st.integers(1, 8))
    def append(self, zone: int, blocks: int) -> None:
        self._apply({"op": "append", "zone": self._zone(zone), "length": blocks * SECTOR})

    @rule(name=st.sampled_from(["open", "close", "finish", "reset"]), zone=st.integers(0, 63))
    def manage(self, name: str, zone: int) -> None:
        self._apply({"op": name, "zone": self._zone(zone)})

    @rule()
    def reset_all(self) -> None:
        self._apply({"op": "reset_all"})

    @rule()
    def flush(self) -> None:
        self._apply({"op": "flush"})

    @rule()
    def reopen(self) -> None:
        self._apply({"op": "reopen"})


def persisted_zone_mismatches(path: str, report: Iterable[ZoneInfo], *,
                              wp_byte_order: str = "big") -> list[str]:
    """How the zones parsed from the file differ from a model report (WP-8: open states
    are stored as closed or empty; WP-9: a FULL zone's wp may be anything from its
    writable end to its zone end)."""
    with Image.open(path, wp_byte_order=wp_byte_order) as image:
        zones = describe_zones(image)
    if zones is None:
        return ["the image has no zoned extension"]
    mismatches = []
    for row, info in zip(zones["zones"], report, strict=True):
        persisted = PERSISTED_STATES.get(info.state, {info.state.value})
        full = info.state is ZoneState.FULL and row["state"] == "full"
        if row["state"] not in persisted or (
                info.type is ZoneType.SEQUENTIAL and not full and row["wp"] != info.wp):
            mismatches.append(f"zone {info.number} on disk: {row['state']} wp {row['wp']:#x}; "
                              f"model: {info.state.value} wp {info.wp:#x}")
    return mismatches


class ZonedWriterMachine(ZoneGuestRules):
    """The zone and persistence model beside the reference writer (MUTANTS applied)."""

    MUTANTS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.workdir = tempfile.mkdtemp(prefix="qcow2-harness-zoned-")
        self.image = os.path.join(self.workdir, "zoned.qcow2")
        self.log = os.path.join(self.workdir, "writes.log")
        self.writer: ReferenceWriter | None = None
        self.model: PersistenceModel | None = None
        self.config: ZoneConfig | None = None
        self.ops: list[dict[str, Any]] = []
        self.last_crash: dict[str, Any] | None = None

    @initialize(config=zone_configs())
    def create(self, config: ZoneConfig) -> None:
        self.config = config
        self.model = PersistenceModel(config)
        self.writer = ReferenceWriter.create(self.image, config.size, cluster_size=512,
                                             zoned=config, log=self.log, fsync=False,
                                             mutants=self.MUTANTS)

    # -- applying one op to both --------------------------------------------------------

    def _apply(self, op: dict[str, Any]) -> None:
        assert self.model is not None and self.writer is not None
        self.ops.append(op)
        expected = self.model.apply(op)
        fill = bytes([pattern_byte(self.model.last_content) or 0])
        got = self.writer.apply(op, fill)
        if got != expected:
            self._fail(f"{op}: the writer answered {got}, the model {expected}")

    def _fail(self, message: str) -> None:
        raise AssertionError(f"{message}\n{self.replay_text()}"
                             f"{REGRESSION_TAG}{json.dumps(self.regression())}\n")

    def regression(self) -> dict[str, Any]:
        """This run as data: `replay_regression` runs it again, on any writer."""
        assert self.config is not None
        return {"config": dataclasses.asdict(self.config), "ops": self.ops,
                "crash": self.last_crash}

    def replay_text(self) -> str:
        """The ops so far, as a `qcow2-harness model` trace and a qemu-io zone script."""
        return (f"model trace (qcow2-harness model < trace):\n{model_trace(self.config, self.ops)}"
                f"qemu-io script (a zoned-capable qemu-io):\n{qemu_io_zone_script(self.ops)}")

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """A power cut: durable epochs plus any subset of the in-flight one (PERS-*)."""
        assert self.writer is not None
        self.writer.sync_log()
        entries = list(read_log(self.log))
        created = next(i for i, e in enumerate(entries) if e.is_mark and e.label == "create ok")
        stop = data.draw(st.integers(created + 1, len(entries)), label="crash after entry")
        in_flight = self._in_flight(entries, created, stop)
        kept = data.draw(st.lists(st.booleans(), min_size=len(in_flight),
                                  max_size=len(in_flight)), label="in-flight writes kept")
        self.crash_at(stop, [i for i, k in zip(in_flight, kept, strict=True) if k])

    @staticmethod
    def _in_flight(entries: list[Any], created: int, stop: int) -> list[int]:
        last_flush = max((i for i in range(created, stop) if entries[i].is_flush),
                         default=created)
        return [i for i in range(last_flush + 1, stop) if entries[i].is_write]

    def crash_at(self, stop: int, kept: list[int]) -> None:
        """Judge the crash state: log entries before the last flush before `stop`, plus
        the in-flight writes listed in `kept`."""
        assert self.writer is not None and self.config is not None
        self.writer.sync_log()
        entries = list(read_log(self.log))
        created = next(i for i, e in enumerate(entries) if e.is_mark and e.label == "create ok")
        in_flight = self._in_flight(entries, created, stop)
        first_in_flight = in_flight[0] if in_flight else stop
        applied = [i for i in range(min(first_in_flight, stop)) if entries[i].is_write]
        applied += [i for i in kept if i in in_flight]
        self.last_crash = {"stop": stop, "kept": sorted(kept)}
        crashed = os.path.join(self.workdir, "crashed.qcow2")
        with open(crashed, "wb") as out:
            for index in applied:
                entry = entries[index]
                out.seek(entry.sector * SECTOR)
                out.write(entry.data)
        acked = sum(1 for e in entries[created + 1:stop] if e.is_mark)
        judge = PersistenceModel(self.config)
        for op in self.ops[:acked]:
            judge.apply(op)
        if acked < len(self.ops) and self.ops[acked]["op"] not in ("flush", "reopen"):
            # In flight: its effects may or may not be there. A flush in flight has
            # made nothing durable yet, so it is not applied.
            judge.apply(self.ops[acked])
        answer = judge.crash()
        where = f"crash after log entry {stop} keeping in-flight writes {sorted(kept)}"
        # After a crash only MUST violations count: leaks (RC-5) and dead data above a
        # wp that did not reach the disk (WP-10) are the SHOULD-level cost of a power cut.
        problems = [f.one_line() for f in check_path(crashed).findings if f.level == "MUST"]
        with ReferenceWriter.open(crashed, fsync=False) as recovered:
            problems += answer.violations(recovered.wps_on_disk(), recovered.read)
        if problems:
            self._fail(f"{where}: " + "; ".join(problems))
        self.last_crash = None

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def file_reparsed_matches_model(self) -> None:
        if self.model is None:
            return
        mismatches = persisted_zone_mismatches(self.image, self.model.zones.report())
        if mismatches:
            self._fail(mismatches[0])

    @invariant()
    def check_is_clean(self) -> None:
        if self.model is None:
            return
        problems = check_is_clean(self.image)
        if problems:
            self._fail("check: " + "; ".join(problems))

    @invariant()
    def data_reads_back(self) -> None:
        if self.model is None or self.writer is None:
            return
        assert self.config is not None
        for extent in self.model.content():
            want = bytes([pattern_byte(extent.content) or 0]) * extent.length
            if self.writer.read(extent.offset, extent.length) != want:
                self._fail(f"guest bytes {extent.offset:#x}+{extent.length} read back wrong")

    def teardown(self) -> None:
        if self.writer is not None:
            self.writer.close()
        shutil.rmtree(self.workdir, ignore_errors=True)


REGRESSION_TAG = "regression (tests/properties/regressions): "


def replay_regression(regression: dict[str, Any], mutants: Iterable[str] = ()) -> None:
    """Run a recorded sequence against a writer; raises AssertionError as the suite would."""
    machine = zoned_writer_machine(mutants)()
    try:
        machine.create(ZoneConfig(**regression["config"]))
        for op in [None, *regression["ops"]]:
            if op is not None:
                machine._apply(op)
            machine.file_reparsed_matches_model()
            machine.check_is_clean()
            machine.data_reads_back()
        if regression["crash"] is not None:
            machine.crash_at(regression["crash"]["stop"], regression["crash"]["kept"])
    finally:
        machine.teardown()


def zoned_writer_machine(mutants: Iterable[str] = ()) -> type[ZonedWriterMachine]:
    """The zoned machine against a writer with these named mutants."""
    chosen = tuple(mutants)
    name = "ZonedWriterMachine_" + "_".join(m.replace("-", "_") for m in chosen)
    return type(name if chosen else "ZonedWriterMachine", (ZonedWriterMachine,),
                {"MUTANTS": chosen})


def model_trace(config: ZoneConfig | None, ops: list[dict[str, Any]]) -> str:
    if config is None:
        return ""
    create = {"op": "create", "size": config.size, "zone_size": config.zone_size,
              "zone_capacity": config.zone_capacity,
              "conventional_zones": config.conventional_zones,
              "max_open_zones": config.max_open_zones,
              "max_active_zones": config.max_active_zones,
              "max_append_bytes": config.max_append_bytes}
    return "".join(json.dumps(op) + "\n" for op in [create, *ops, {"op": "report"}])


def qemu_io_zone_script(ops: list[dict[str, Any]], zone_size: int | None = None) -> str:
    """The same ops as qemu-io commands (zo/zc/zf/zrs/zap need a zoned-capable QEMU)."""
    lines = []
    for op in ops:
        name = op["op"]
        if name == "write":
            lines.append(f"write {op['offset']} {op['length']}")
        elif name == "append":
            lines.append(f"zap zone {op['zone']} {op['length']}")
        elif name in ("open", "close", "finish", "reset"):
            short = {"open": "zo", "close": "zc", "finish": "zf", "reset": "zrs"}[name]
            lines.append(f"{short} zone {op['zone']}")
        elif name == "reset_all":
            lines.append("zrs 0 <device size>")
        elif name == "reopen":
            lines.append("close\nopen IMG")
        else:
            lines.append(name)
    return "\n".join(lines) + "\n"


def zoned_qemu_unavailable() -> str | None:
    """Why the model-vs-zoned-QEMU suite cannot run, or None when it can: the series
    build (QCOW2_HARNESS_ZONED_QEMU) when there is one, else the default QEMU."""
    build = "zoned" if qemu.build_unavailable("zoned") is None else None
    if qemu.find_tool("qemu-img", build) is None or qemu.find_tool("qemu-io", build) is None:
        return "qemu-img/qemu-io not found"
    try:
        if not qemu.supports_zoned_qcow2(build):
            version = qemu.qemu_version("qemu-img", build)
            return (f"{version} has no zoned qcow2 (the series is not merged): its create "
                    f"options have no zone settings; {qemu.build_unavailable('zoned')}")
    except subprocess.SubprocessError as error:
        return f"cannot query qemu-img: {error}"
    return None
