"""The zone state machine: what a zoned qcow2 device must do after every operation.

Plain and deterministic: no I/O, no clocks, no randomness. The model is configured by
the zoned header fields (ZoneConfig) and two policy parameters where real
implementations differ (VictimPolicy, CloseAtStart).

A refused operation is not an exception: it returns an OpResult whose `error` is one
of the Refusal names. Only misuse of the model (a bad configuration, a negative
length, a zone index of the wrong type) raises ModelError.

Decisions the facts leave open, made here and cited as clauses:

- Zones are numbered from 0; zone i starts at i * zone_size. The last zone may be
  shorter than zone_size when the virtual size is not a multiple of it; its capacity
  is min(zone_capacity, its length) (ZONE-9, ZSM-4).
- Conventional zones are writable over their whole length (their capacity is their
  length) and report wp = zone start (ZONE-11).
- A write may span any number of conventional zones. A write that leaves the
  sequential zone it starts in, or runs from a conventional zone into a sequential
  one, is refused with `exceeds-capacity`: it passes the end of the writable range
  that starts at its offset (ZSM-4).
- Refusal order for writes and appends (first match wins): out-of-range,
  conventional-zone (append only), append-too-large (append only), zone-full,
  invalid-transition (READ_ONLY / OFFLINE), not-at-write-pointer (write only),
  exceeds-capacity, too-many-active, too-many-open.
- Management ops on FULL/EMPTY zones follow null_blk: open of FULL, close of EMPTY or
  FULL are `invalid-transition`; finish of FULL and reset of EMPTY are no-ops
  (ZSM-12..ZSM-15).
- Finishing an EMPTY zone takes an active slot for an instant, so it is refused with
  `too-many-active` at the active limit, as NVMe ZNS and null_blk do (ZSM-14).
  A finished zone's wp is start + capacity.
- Explicit open may implicitly close a victim, like a write (ZSM-6).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Any, NamedTuple

from qcow2harness.errors import ModelError

SECTOR = 512
CONVENTIONAL_FLAG = 1 << 59  # WP-1: zonedmeta marks conventional zones with bit 59
MAX_NR_ZONES = (2**32 - 1) // 8  # ZONE-10
# The model keeps one object per zone, and the `model` service answers `report` and
# `crash` with every zone in one line, so the service refuses a geometry of more zones
# than this (a bound of the model, not of the format: check, info and report stream
# tables of any length).
MODEL_MAX_ZONES = 1 << 16


class ZoneState(Enum):
    EMPTY = "empty"
    IMPLICIT_OPEN = "implicit_open"
    EXPLICIT_OPEN = "explicit_open"
    CLOSED = "closed"
    FULL = "full"
    NOT_WRITE_POINTER = "not_write_pointer"
    READ_ONLY = "read_only"
    OFFLINE = "offline"


class ZoneType(Enum):
    CONVENTIONAL = "conventional"
    SEQUENTIAL = "sequential"


class Refusal(StrEnum):
    """Why an operation was refused. The values are the protocol's error names."""

    NOT_AT_WRITE_POINTER = "not-at-write-pointer"
    EXCEEDS_CAPACITY = "exceeds-capacity"
    ZONE_FULL = "zone-full"
    TOO_MANY_OPEN = "too-many-open"
    TOO_MANY_ACTIVE = "too-many-active"
    APPEND_TOO_LARGE = "append-too-large"
    CONVENTIONAL_ZONE = "conventional-zone"
    OUT_OF_RANGE = "out-of-range"
    INVALID_TRANSITION = "invalid-transition"
    # Beyond the nine: a sequential-zone write or append whose length is not a
    # whole number of 512-byte blocks would leave the wp unaligned (WP-7).
    UNALIGNED = "unaligned"


# The clause a refusal enforces, and the clause that governs an op's effect: a writer
# that answers otherwise than the model breaks it.
REFUSAL_CLAUSES: dict[Refusal, str] = {
    Refusal.NOT_AT_WRITE_POINTER: "ZSM-3",
    Refusal.EXCEEDS_CAPACITY: "ZSM-4",
    Refusal.ZONE_FULL: "ZSM-9",
    Refusal.TOO_MANY_OPEN: "ZSM-6",
    Refusal.TOO_MANY_ACTIVE: "ZSM-5",
    Refusal.APPEND_TOO_LARGE: "ZSM-11",
    Refusal.CONVENTIONAL_ZONE: "ZSM-10",
    Refusal.OUT_OF_RANGE: "ZSM-4",
    Refusal.INVALID_TRANSITION: "ZSM-1",
    Refusal.UNALIGNED: "WP-7",
}
OP_CLAUSES: dict[str, str] = {
    "write": "ZSM-8", "append": "ZSM-11", "open": "ZSM-12", "close": "ZSM-13",
    "finish": "ZSM-14", "reset": "ZSM-15", "reset_all": "ZSM-15", "reopen": "ZSM-17",
    "flush": "PERS-5",
}


class VictimPolicy(StrEnum):
    """Which IMPLICIT_OPEN zone is closed to make room at the open limit (ZSM-6)."""

    LRU = "lru"  # least recently written; the qcow2 series
    FIFO = "fifo"  # oldest opened; QEMU's NVMe ZNS emulation
    ROUND_ROBIN = "round-robin"  # next after the previous victim, by zone number; null_blk


class CloseAtStart(StrEnum):
    """What an EXPLICIT_OPEN zone whose wp is at its start becomes when closed (ZSM-13)."""

    EMPTY = "empty"  # default: the zone holds nothing, so it is EMPTY again
    CLOSED = "closed"  # NVMe ZNS: it stays active as CLOSED


class OpResult(NamedTuple):
    """The outcome of one operation: error is None on success; offset is set by append."""

    error: Refusal | None = None
    offset: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


OK = OpResult()
_REFUSED = {name: OpResult(error=name) for name in Refusal}

# Local aliases keep the hot path to identity tests.
_EMPTY = ZoneState.EMPTY
_IMP = ZoneState.IMPLICIT_OPEN
_EXP = ZoneState.EXPLICIT_OPEN
_CLOSED = ZoneState.CLOSED
_FULL = ZoneState.FULL
_NWP = ZoneState.NOT_WRITE_POINTER
_RO = ZoneState.READ_ONLY
_OFFLINE = ZoneState.OFFLINE


def _is_power_of_two(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@dataclass(frozen=True, slots=True)
class ZoneConfig:
    """The zoned header fields that shape the model (sizes in bytes, 0 = no limit)."""

    size: int
    zone_size: int
    zone_capacity: int
    conventional_zones: int = 0
    max_open_zones: int = 0
    max_active_zones: int = 0
    max_append_bytes: int = 0

    def __post_init__(self) -> None:
        self.validate()

    @property
    def nr_zones(self) -> int:
        return -(-self.size // self.zone_size)

    @property
    def sequential_zones(self) -> int:
        return self.nr_zones - self.conventional_zones

    def should_problems(self) -> list[Problem]:
        """The SHOULD rules this valid configuration breaks (ZONE-14, ZONE-17): a writer
        may refuse such a geometry."""
        return config_should_problems(self.size, self.zone_size, self.zone_capacity,
                                      self.conventional_zones, self.max_active_zones,
                                      self.max_append_bytes)

    def validate(self) -> None:
        """Raise ModelError naming the first field that breaks a ZONE-6..ZONE-16 field rule."""
        for name in (
            "size",
            "zone_size",
            "zone_capacity",
            "conventional_zones",
            "max_open_zones",
            "max_active_zones",
            "max_append_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ModelError(f"{name} must be a non-negative integer, got {value!r}")
        if self.size == 0 or self.size % SECTOR:
            raise ModelError(f"size must be a positive multiple of {SECTOR}, got {self.size}")
        for clause, _field, message in config_problems(
            self.size, self.zone_size, self.zone_capacity, self.conventional_zones,
            self.max_open_zones, self.max_active_zones, self.max_append_bytes,
        ):
            raise ModelError(message, clause=clause)


# (clause, header field, message): every rule a zone configuration breaks.
Problem = tuple[str, str, str]


def config_problems(
    size: int,
    zone_size: int,
    zone_capacity: int,
    conventional_zones: int,
    max_open_zones: int,
    max_active_zones: int,
    max_append_bytes: int,
) -> list[Problem]:
    """The MUST rules on the zone geometry and limits (ZONE-6, -7, -10..-13, -16), all of them."""
    problems: list[Problem] = []
    if not _is_power_of_two(zone_size) or zone_size < SECTOR:
        problems.append(("ZONE-6", "zone_size", f"zone_size must be a power of two of at "
                         f"least {SECTOR} bytes, got {zone_size}"))
        return problems  # nothing below can be computed without a zone size
    if not 0 < zone_capacity <= zone_size or zone_capacity % SECTOR:
        problems.append(("ZONE-7", "zone_capacity", f"zone_capacity must be a multiple of "
                         f"{SECTOR} in (0, zone_size={zone_size}], got {zone_capacity}"))
    nr_zones = -(-size // zone_size)
    if nr_zones > MAX_NR_ZONES:
        problems.append(("ZONE-10", "nr_zones", f"{nr_zones} zones is more than the "
                         f"{MAX_NR_ZONES} the table allows"))
    if conventional_zones >= nr_zones:
        problems.append(("ZONE-11", "conventional_zones", f"conventional_zones "
                         f"({conventional_zones}) must be less than nr_zones ({nr_zones})"))
    sequential = max(nr_zones - conventional_zones, 0)
    if max_open_zones > sequential:
        problems.append(("ZONE-12", "max_open_zones", f"max_open_zones ({max_open_zones}) "
                         f"exceeds the number of sequential zones ({sequential})"))
    if max_open_zones and max_active_zones and max_open_zones > max_active_zones:
        problems.append(("ZONE-13", "max_open_zones", f"max_open_zones ({max_open_zones}) "
                         f"must not exceed max_active_zones ({max_active_zones})"))
    if max_append_bytes % SECTOR:
        problems.append(("ZONE-16", "max_append_bytes", f"max_append_bytes must be a "
                         f"multiple of {SECTOR}, got {max_append_bytes}"))
    elif max_append_bytes >= zone_capacity > 0:
        problems.append(("ZONE-16", "max_append_bytes", f"max_append_bytes "
                         f"({max_append_bytes}) must be less than zone_capacity "
                         f"({zone_capacity})"))
    return problems


def config_should_problems(
    size: int,
    zone_size: int,
    zone_capacity: int,
    conventional_zones: int,
    max_active_zones: int,
    max_append_bytes: int,
) -> list[Problem]:
    """The SHOULD rules on a geometry that config_problems() accepts (ZONE-14, ZONE-17)."""
    problems: list[Problem] = []
    sequential = max(-(-size // zone_size) - conventional_zones, 0)
    if max_active_zones > sequential:
        problems.append(("ZONE-14", "max_active_zones", f"max_active_zones "
                         f"({max_active_zones}) exceeds the {sequential} "
                         "sequential zones; store 0 for no limit"))
    # ZONE-17 holds with max_append_bytes = 0 too: the capacity must exceed 512.
    if max_append_bytes % SECTOR == 0 and max_append_bytes < zone_capacity <= (
            max_append_bytes + SECTOR):
        problems.append(("ZONE-17", "max_append_bytes", f"max_append_bytes + 512 "
                         f"({max_append_bytes + SECTOR}) is not below zone_capacity "
                         f"({zone_capacity})"))
    return problems


def header_problems(fields: dict[str, int | bytes]) -> list[Problem]:
    """Every rule the on-disk zoned extension breaks (ZONE-4..ZONE-20).

    `fields` holds the extension's fields by their v10 names plus virtual_size,
    cluster_size and file_size.
    """
    def value(name: str) -> int:
        number = fields[name]
        assert isinstance(number, int)
        return number

    problems: list[Problem] = []
    if value("zoned_model") != 1:
        problems.append(("ZONE-4", "zoned_model", f"zoned byte is {value('zoned_model')}; "
                         "only 1 (host-managed) is defined"))
    if any(bytes(fields["reserved"])):  # type: ignore[arg-type]
        problems.append(("ZONE-5", "reserved", "reserved bytes 1-3 are not zero"))
    zone_size, capacity = value("zone_size"), value("zone_capacity")
    geometry = config_problems(
        value("virtual_size"), zone_size, capacity, value("conventional_zones"),
        value("max_open_zones"), value("max_active_zones"), value("max_append_bytes"))
    problems.extend(geometry)
    nr_zones = value("nr_zones")
    if nr_zones > MAX_NR_ZONES and not any(clause == "ZONE-10" for clause, _, _ in geometry):
        problems.append(("ZONE-10", "nr_zones", f"nr_zones is {nr_zones}, more than the "
                         f"{MAX_NR_ZONES} the write-pointer table allows"))
    if not any(clause == "ZONE-6" for clause, _, _ in geometry):
        expected = -(-value("virtual_size") // zone_size)
        if nr_zones != expected:
            problems.append(("ZONE-9", "nr_zones", f"nr_zones is {nr_zones}, but the virtual "
                             f"size needs {expected} zones of {zone_size} bytes"))
        problems.extend(config_should_problems(
            value("virtual_size"), zone_size, capacity, value("conventional_zones"),
            value("max_active_zones"), value("max_append_bytes")))
    if value("zonedmeta_size") != 8 * nr_zones:
        problems.append(("ZONE-18", "zonedmeta_size", f"zonedmeta_size is "
                         f"{value('zonedmeta_size')}, not 8 * nr_zones = {8 * nr_zones}"))
    offset, cluster_size = value("zonedmeta_offset"), value("cluster_size")
    if offset == 0 or offset % cluster_size:
        problems.append(("ZONE-19", "zonedmeta_offset", f"zonedmeta_offset {offset:#x} is "
                         f"not a non-zero multiple of the cluster size {cluster_size}"))
    elif offset + 8 * nr_zones > value("file_size"):
        problems.append(("ZONE-20", "zonedmeta_offset", f"the write-pointer table at "
                         f"{offset:#x} ({8 * nr_zones} bytes) runs past the end of the file"))
    return problems


def header_notes(fields: dict[str, int | bytes]) -> list[Problem]:
    """The MAY permissions a sound zoned extension exercises (ZONE-8, ZONE-15).

    Not problems: the checker lists them as notes. Call only when header_problems()
    found nothing that makes the geometry meaningless (ZONE-6, ZONE-7, ZONE-9-11).
    """
    def value(name: str) -> int:
        number = fields[name]
        assert isinstance(number, int)
        return number

    notes: list[Problem] = []
    capacity = value("zone_capacity")
    if not _is_power_of_two(capacity):
        notes.append(("ZONE-8", "zone_capacity", f"zone_capacity {capacity} is not a power "
                      "of two: FULL is decided by comparing the write pointer with zone start "
                      "+ capacity"))
    sequential = value("nr_zones") - value("conventional_zones")
    for name in ("max_open_zones", "max_active_zones"):
        if sequential > 0 and value(name) == sequential:
            notes.append(("ZONE-15", name, f"{name} equals the {sequential} sequential zones, "
                          "which means the same as 0 (no limit)"))
    return notes


# (clause, zone index or None for the whole table, message)
TableProblem = tuple[str, int | None, str]
RESERVED_ENTRY_BITS = ~((1 << 60) - 1) & (2**64 - 1)
WP_BITS = CONVENTIONAL_FLAG - 1


def zonedmeta_problems(fields: dict[str, int | bytes], entries: Sequence[int]) -> list[
        TableProblem]:
    """WP-2..WP-7 over the write-pointer table, read big-endian.

    When the table breaks the rules big-endian but satisfies them all with each
    entry byte-swapped, the one finding is WP-2: written in host (little-endian) order.
    """
    problems = _entry_problems(fields, entries)
    if problems:
        swapped = [int.from_bytes(entry.to_bytes(8, "big"), "little") for entry in entries]
        if not _entry_problems(fields, swapped):
            return [("WP-2", None, "the write-pointer table is little-endian (host byte "
                     "order, as the posted v10 code writes it); qcow2 numbers are big-endian")]
    return problems


def _entry_problems(fields: dict[str, int | bytes], entries: Sequence[int]) -> list[
        TableProblem]:
    problems: list[TableProblem] = []
    for index, entry in enumerate(entries):
        problems.extend((clause, index, message)
                        for clause, message in entry_problems(fields, index, entry))
    return problems


def entry_problems(fields: dict[str, int | bytes], index: int, entry: int) -> list[
        tuple[str, str]]:
    """(clause, message) for each WP-3..WP-7 rule zone `index`'s table entry breaks."""
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    conventional = int(fields["conventional_zones"])  # type: ignore[arg-type]
    size = int(fields["virtual_size"])  # type: ignore[arg-type]
    problems: list[tuple[str, str]] = []
    start = index * zone_size
    if entry & RESERVED_ENTRY_BITS:
        problems.append(("WP-3", f"zone {index}: reserved bits 60-63 set ({entry:#x})"))
    is_conventional = bool(entry & CONVENTIONAL_FLAG)
    if is_conventional != (index < conventional):
        problems.append(("WP-4", f"zone {index}: conventional bit "
                         f"{'set' if is_conventional else 'clear'}, but the zone is "
                         f"{'conventional' if index < conventional else 'sequential'}"))
        return problems
    wp = entry & WP_BITS
    if is_conventional:
        if wp != start:
            problems.append(("WP-5", f"zone {index}: conventional entry holds "
                             f"{wp:#x}, not its start {start:#x}"))
        return problems
    end = min(start + zone_size, size) if size > start else start + zone_size
    if not start <= wp <= max(end, start + zone_size):
        problems.append(("WP-6", f"zone {index}: write pointer {wp:#x} is outside "
                         f"the zone [{start:#x}, {start + zone_size:#x}]"))
    elif (wp - start) % SECTOR:
        problems.append(("WP-7", f"zone {index}: write pointer {wp:#x} is not "
                         f"512-byte aligned within the zone"))
    return problems


def _sound_wp(fields: dict[str, int | bytes], index: int, entry: int) -> tuple[int, int] | None:
    """(writable end, wp) of a sequential zone whose entry breaks no WP rule; None for
    other entries, which are left to zonedmeta_problems()."""
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    capacity = int(fields["zone_capacity"])  # type: ignore[arg-type]
    conventional = int(fields["conventional_zones"])  # type: ignore[arg-type]
    size = int(fields["virtual_size"])  # type: ignore[arg-type]
    start = index * zone_size
    wp = entry & WP_BITS
    if (index < conventional or entry & (RESERVED_ENTRY_BITS | CONVENTIONAL_FLAG)
            or not start <= wp <= start + zone_size or (wp - start) % SECTOR):
        return None
    return min(start + capacity, max(size, start)), wp


def entry_note(fields: dict[str, int | bytes], index: int, entry: int) -> str | None:
    """WP-9 for one entry: a FULL zone whose wp is stored past its writable end."""
    sound = _sound_wp(fields, index, entry)
    if sound is None or sound[1] <= sound[0]:
        return None
    writable_end, wp = sound
    return (f"zone {index}: FULL, write pointer stored as {wp:#x}, past its writable end "
            f"{writable_end:#x}")


def zonedmeta_notes(fields: dict[str, int | bytes], entries: Sequence[int]) -> list[
        TableProblem]:
    """The MAY permissions the write-pointer table exercises (WP-9): a FULL zone whose wp
    is stored past its writable end, up to zone start + zone_size."""
    notes: list[TableProblem] = []
    for index, entry in enumerate(entries):
        note = entry_note(fields, index, entry)
        if note is not None:
            notes.append(("WP-9", index, note))
    return notes


def dead_data_starts(fields: dict[str, int | bytes], entries: Sequence[int]) -> list[int]:
    """Per zone, the guest offset from which stored data is dead (WP-10, ZSM-16).

    In a sequential zone, everything at or above min(wp, zone start + capacity) reads as
    zeros, so data kept there can never be read. Conventional zones, and zones whose
    entry breaks a WP rule, get their zone end: nothing in them is judged dead.
    """
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    starts = []
    for index, entry in enumerate(entries):
        sound = _sound_wp(fields, index, entry)
        starts.append((index + 1) * zone_size if sound is None else min(sound[1], sound[0]))
    return starts


def readable_ranges(report: Sequence[ZoneInfo]) -> Iterator[tuple[int, int]]:
    """[start, end) of every range that may read non-zero: whole conventional zones, and
    [start, wp) of the sequential ones; the rest reads as zeros (ZSM-16)."""
    for info in report:
        if info.type is ZoneType.CONVENTIONAL:
            yield info.start, info.start + info.length
        elif info.wp > info.start:
            yield info.start, info.wp


def persisted_state(start: int, capacity: int, wp: int) -> ZoneState:
    """The state a sequential zone's stored wp gives (WP-8): open states are never stored."""
    if wp == start:
        return ZoneState.EMPTY
    if wp >= start + capacity:
        return ZoneState.FULL
    return ZoneState.CLOSED


def persisted_zone_report(
    zone_size: int,
    zone_capacity: int,
    num_conventional_zones: int,
    virtual_size: int,
    zonedmeta: Sequence[int],
) -> list[dict[str, int | str]]:
    """One row per zonedmeta entry, as stored; tolerant of a broken table (for `info`)."""
    rows: list[dict[str, int | str]] = []
    for index, entry in enumerate(zonedmeta):
        start = index * zone_size
        conventional = bool(entry & CONVENTIONAL_FLAG)
        wp = entry & WP_BITS
        length = max(min(zone_size, virtual_size - start), 0)
        if conventional:
            capacity, kind, state = length, ZoneType.CONVENTIONAL, ZoneState.NOT_WRITE_POINTER
        else:
            capacity, kind = min(zone_capacity, length), ZoneType.SEQUENTIAL
            state = persisted_state(start, capacity, wp)
        in_zone = start <= wp <= start + zone_size
        rows.append({
            "index": index,
            "start": start,
            "capacity": capacity,
            "type": kind.value,
            "state": state.value if in_zone else "invalid",
            "wp": wp,
        })
    return rows


# ----- the same rules over numpy batches ---------------------------------------------
#
# A write-pointer table may hold up to MAX_NR_ZONES entries (4 GiB). The functions
# below judge one batch of it, the zones first_index .. first_index + len(entries) - 1,
# as the scalar rule named in each docstring does; tests/reference/test_zone_batches.py
# holds each pair to the same answers. numpy is imported inside them, so that importing
# this module stays cheap.

ZONE_BATCH = 1 << 16  # zones per batch: a few MiB of temporaries whatever the table
# Stand-in start for zones whose start is 2^63 or more: no wp (< 2^59) reaches either,
# so every rule answers the same. Only a capacity shown for such a zone differs, and only
# when the virtual size passes 2^63.
START_CAP = 1 << 63
INT64_MAX = (1 << 63) - 1
# persisted_zone_batch()'s state codes, as persisted_zone_report() names them.
PERSISTED_STATES = ("empty", "closed", "full", "not_write_pointer", "invalid")


def _numpy() -> Any:
    import numpy

    return numpy


def _zone_starts(np: Any, zone_size: int, first_index: int, count: int) -> tuple[Any, Any]:
    """(zone index, zone start as uint64, START_CAP where the start reaches it)."""
    index = np.arange(first_index, first_index + count, dtype=np.uint64)
    if zone_size == 0:
        return index, np.zeros(count, dtype=np.uint64)
    exact = (START_CAP - 1) // zone_size  # the last index whose start is below 2^63
    if first_index + count - 1 <= exact:
        return index, index * np.uint64(zone_size)
    starts = np.where(index <= np.uint64(exact), index * np.uint64(zone_size % 2**64),
                      np.uint64(START_CAP))
    return index, starts


class _EntryFacts(NamedTuple):
    """What the WP rules ask of each entry of a batch (arrays)."""

    index: Any
    starts: Any
    wp: Any
    reserved: Any  # bits 60-63 set (WP-3)
    conventional: Any  # bit 59 set
    should_be_conventional: Any  # the zone is one of the first conventional_zones
    in_zone: Any  # start <= wp <= start + zone_size
    aligned: Any  # (wp - start) % 512 == 0


def _entry_facts(np: Any, fields: dict[str, int | bytes], first_index: int,
                 entries: Any) -> _EntryFacts:
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    conventional = int(fields["conventional_zones"])  # type: ignore[arg-type]
    index, starts = _zone_starts(np, zone_size, first_index, entries.size)
    wp = entries & np.uint64(WP_BITS)
    offset = wp - starts  # wraps below the start; in_zone masks that out
    return _EntryFacts(
        index, starts, wp,
        reserved=(entries & np.uint64(RESERVED_ENTRY_BITS)) != 0,
        conventional=(entries & np.uint64(CONVENTIONAL_FLAG)) != 0,
        should_be_conventional=index < np.uint64(min(conventional, 2**64 - 1)),
        in_zone=(wp >= starts) & (offset <= np.uint64(min(zone_size, 2**64 - 1))),
        aligned=(offset & np.uint64(SECTOR - 1)) == 0,
    )


def _problem_masks(facts: _EntryFacts) -> dict[str, Any]:
    sequential = ~facts.conventional & ~facts.should_be_conventional
    return {
        "WP-3": facts.reserved,
        "WP-4": facts.conventional != facts.should_be_conventional,
        "WP-5": facts.conventional & facts.should_be_conventional & (facts.wp != facts.starts),
        "WP-6": sequential & ~facts.in_zone,
        "WP-7": sequential & facts.in_zone & ~facts.aligned,
    }


def entry_problem_masks(fields: dict[str, int | bytes], first_index: int,
                        entries: Any) -> dict[str, Any]:
    """entry_problems() over a batch: clause -> bool mask of the entries breaking it."""
    np = _numpy()
    entries = np.asarray(entries, dtype=np.uint64)
    return _problem_masks(_entry_facts(np, fields, first_index, entries))


def _sound_wp_batch(np: Any, fields: dict[str, int | bytes], facts: _EntryFacts) -> tuple[
        Any, Any]:
    """_sound_wp() over a batch: (sound mask, writable end)."""
    capacity = int(fields["zone_capacity"])  # type: ignore[arg-type]
    size = int(fields["virtual_size"])  # type: ignore[arg-type]
    sound = (~facts.should_be_conventional & ~facts.conventional & ~facts.reserved
             & facts.in_zone & facts.aligned)
    # A sound wp lies below 2^60, so its start does too and start + capacity (<= 2^64 - 1
    # once ZONE-7 holds) is exact where it matters; elsewhere it is masked out.
    with np.errstate(over="ignore"):
        limit = facts.starts + np.uint64(min(capacity, 2**64 - 1))
    writable_end = np.minimum(limit, np.maximum(np.uint64(min(size, 2**64 - 1)),
                                                facts.starts))
    return sound, writable_end


def _note_mask(np: Any, fields: dict[str, int | bytes], facts: _EntryFacts) -> Any:
    sound, writable_end = _sound_wp_batch(np, fields, facts)
    return sound & (facts.wp > writable_end)


def entry_note_mask(fields: dict[str, int | bytes], first_index: int, entries: Any) -> Any:
    """entry_note() over a batch: the entries that exercise WP-9."""
    np = _numpy()
    entries = np.asarray(entries, dtype=np.uint64)
    return _note_mask(np, fields, _entry_facts(np, fields, first_index, entries))


def dead_data_starts_batch(fields: dict[str, int | bytes], first_index: int,
                           entries: Any) -> Any:
    """dead_data_starts() over a batch, as int64 clamped to INT64_MAX (no guest offset
    lies past it)."""
    np = _numpy()
    entries = np.asarray(entries, dtype=np.uint64)
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    facts = _entry_facts(np, fields, first_index, entries)
    sound, writable_end = _sound_wp_batch(np, fields, facts)
    index = facts.index
    ends_exact = index + np.uint64(1) <= np.uint64(INT64_MAX // max(zone_size, 1))
    with np.errstate(over="ignore"):
        ends = np.where(ends_exact, (index + np.uint64(1)) * np.uint64(zone_size % 2**64),
                        np.uint64(INT64_MAX))
    return np.where(sound, np.minimum(facts.wp, writable_end), ends).astype(np.int64)


def persisted_zone_batch(zone_size: int, zone_capacity: int, num_conventional_zones: int,
                         virtual_size: int, first_index: int, entries: Any) -> dict[str, Any]:
    """persisted_zone_report() over a batch, as arrays: index, start, capacity,
    conventional (bool), state (an index into PERSISTED_STATES) and wp."""
    np = _numpy()
    entries = np.asarray(entries, dtype=np.uint64)
    index, starts = _zone_starts(np, zone_size, first_index, entries.size)
    size = np.uint64(min(virtual_size, 2**64 - 1))
    conventional = (entries & np.uint64(CONVENTIONAL_FLAG)) != 0
    wp = entries & np.uint64(WP_BITS)
    length = np.where(size > starts, np.minimum(np.uint64(zone_size % 2**64), size - starts),
                      np.uint64(0))
    capacity = np.where(conventional, length, np.minimum(np.uint64(zone_capacity % 2**64),
                                                         length))
    offset = wp - starts
    in_zone = (wp >= starts) & (offset <= np.uint64(zone_size % 2**64))
    state = np.ones(entries.size, dtype=np.uint8)  # CLOSED (persisted_state)
    state[offset >= capacity] = 2  # FULL from the capacity on
    state[offset == 0] = 0  # EMPTY at the start
    state[conventional] = 3
    state[~in_zone] = 4
    return {"index": index, "start": starts, "capacity": capacity,
            "conventional": conventional, "state": state, "wp": wp}


def count_persisted_states(zone_size: int, zone_capacity: int, num_conventional_zones: int,
                           virtual_size: int, batches: Iterable[tuple[int, Any]]) -> dict[
                               str, int]:
    """How many zones of a whole table persisted_zone_report() gives each state, batch by
    batch (PERSISTED_STATES order; states no zone has are left out)."""
    np = _numpy()
    totals = np.zeros(len(PERSISTED_STATES), dtype=np.int64)
    for first_index, entries in batches:
        states = persisted_zone_batch(zone_size, zone_capacity, num_conventional_zones,
                                      virtual_size, first_index, entries)["state"]
        totals += np.bincount(states, minlength=len(PERSISTED_STATES))
    return {name: int(count) for name, count in zip(PERSISTED_STATES, totals, strict=True)
            if count}


@dataclass
class ClauseTally:
    """One clause over a whole table: how many zones break it, and the scalar rule's
    message for each of the first of them (at most the `examples` the judge was asked
    for), in zone order."""

    clause: str
    count: int
    examples: list[tuple[int, str]]  # (zone, message)

    @property
    def first(self) -> int:
        return self.examples[0][0]


@dataclass
class TableVerdict:
    """The write-pointer table judged whole: WP-2 (the table reads right only
    byte-swapped, which replaces every other finding), else the problems and the WP-9
    notes, each tallied per clause in order of the first zone."""

    little_endian: bool
    problems: list[ClauseTally]
    notes: list[ClauseTally]


EXAMPLES_PER_CLAUSE = 32  # default zones named per clause; the rest are counted


def _tallies(found: Iterable[TableProblem], examples: int) -> list[ClauseTally]:
    tallies: dict[str, ClauseTally] = {}
    for clause, index, message in found:
        assert index is not None
        tally = tallies.get(clause)
        if tally is None:
            tallies[clause] = ClauseTally(clause, 1, [(index, message)])
        else:
            tally.count += 1
            if len(tally.examples) < examples:
                tally.examples.append((index, message))
    return sorted(tallies.values(), key=lambda t: (t.first, t.clause))


def judge_zonedmeta_plain(fields: dict[str, int | bytes], entries: Sequence[int],
                          examples: int = EXAMPLES_PER_CLAUSE) -> TableVerdict:
    """The table verdict entry by entry (zonedmeta_problems, zonedmeta_notes): for small
    tables, without numpy."""
    problems = zonedmeta_problems(fields, entries)
    if [clause for clause, _, _ in problems] == ["WP-2"]:
        return TableVerdict(True, [], [])
    return TableVerdict(False, _tallies(problems, examples),
                        _tallies(zonedmeta_notes(fields, entries), examples))


def judge_zonedmeta(fields: dict[str, int | bytes], batches: Iterable[tuple[int, Any]],
                    examples: int = EXAMPLES_PER_CLAUSE) -> TableVerdict:
    """judge_zonedmeta_plain() over (first zone index, uint64 entries) batches of any
    table, in one pass and bounded memory."""
    np = _numpy()
    counts: dict[str, int] = {}
    found: dict[str, list[tuple[int, int]]] = {}  # clause -> the first (zone, entry)s
    note_count = 0
    note_found: list[tuple[int, int]] = []
    swapped_clean = True
    for first_index, batch in batches:
        entries = np.asarray(batch, dtype=np.uint64)
        facts = _entry_facts(np, fields, first_index, entries)
        for clause, mask in _problem_masks(facts).items():
            counts[clause] = counts.get(clause, 0) + _collect(
                np, mask, first_index, entries, found.setdefault(clause, []), examples)
        if swapped_clean:
            swapped = entries.byteswap()
            swapped_clean = not any(mask.any() for mask in entry_problem_masks(
                fields, first_index, swapped).values())
        note_count += _collect(np, _note_mask(np, fields, facts), first_index, entries,
                               note_found, examples)
    counts = {clause: count for clause, count in counts.items() if count}
    if counts and swapped_clean:
        return TableVerdict(True, [], [])
    problems = [ClauseTally(clause, count, [(index, dict(entry_problems(fields, index,
                                                                         entry))[clause])
                                            for index, entry in found[clause]])
                for clause, count in counts.items()]
    notes_out = []
    if note_count:
        named = []
        for index, entry in note_found:
            note = entry_note(fields, index, entry)
            assert note is not None
            named.append((index, note))
        notes_out.append(ClauseTally("WP-9", note_count, named))
    return TableVerdict(False, sorted(problems, key=lambda t: (t.first, t.clause)), notes_out)


def _collect(np: Any, mask: Any, first_index: int, entries: Any,
             kept: list[tuple[int, int]], examples: int) -> int:
    """How many zones `mask` marks; the first of them are added to `kept` (zone, entry)
    until it holds `examples`."""
    found = int(np.count_nonzero(mask))
    if found and len(kept) < examples:
        for at in np.flatnonzero(mask)[:examples - len(kept)]:
            kept.append((first_index + int(at), int(entries[at])))
    return found


class Zone:
    """One zone's geometry and volatile condition. Mutated only by ZoneModel."""

    __slots__ = ("index", "start", "length", "capacity", "conventional", "state", "wp")

    def __init__(self, index: int, start: int, length: int, capacity: int, conventional: bool):
        self.index = index
        self.start = start
        self.length = length
        self.capacity = capacity
        self.conventional = conventional
        self.state = _NWP if conventional else _EMPTY
        self.wp = start


class ZoneInfo(NamedTuple):
    """A zone as a report shows it."""

    number: int
    start: int
    length: int
    capacity: int
    type: ZoneType
    state: ZoneState
    wp: int


class ZoneModel:
    """The reference zone state machine for one zoned device.

    Counters (open = implicit + explicit open, active = open + closed) are kept
    incrementally, so every operation is O(1) except round-robin victim choice,
    which is O(max_open_zones).
    """

    def __init__(
        self,
        config: ZoneConfig,
        policy: VictimPolicy | str = VictimPolicy.LRU,
        close_at_start: CloseAtStart | str = CloseAtStart.EMPTY,
    ) -> None:
        try:
            self.policy = VictimPolicy(policy)
        except ValueError:
            choices = ", ".join(p.value for p in VictimPolicy)
            raise ModelError(f"unknown victim policy {policy!r}; choose one of {choices}") from None
        try:
            self.close_at_start = CloseAtStart(close_at_start)
        except ValueError:
            choices = ", ".join(p.value for p in CloseAtStart)
            raise ModelError(
                f"unknown close-at-start rule {close_at_start!r}; choose one of {choices}"
            ) from None
        self.config = config
        self._size = config.size
        self._zone_shift = config.zone_size.bit_length() - 1
        self._max_open = config.max_open_zones
        self._max_active = config.max_active_zones
        # The active limit a plain write obeys; only a writer mutant lowers it to 0.
        self._write_active_limit = config.max_active_zones
        self._max_append = config.max_append_bytes
        self._lru = self.policy is VictimPolicy.LRU
        self._conventional_end = config.conventional_zones * config.zone_size
        zones = []
        for index in range(config.nr_zones):
            start = index << self._zone_shift
            length = min(config.zone_size, config.size - start)
            conventional = index < config.conventional_zones
            capacity = length if conventional else min(config.zone_capacity, length)
            zones.append(Zone(index, start, length, capacity, conventional))
        self._zones: list[Zone] = zones
        self._n_open = 0
        self._n_active = 0
        # IMPLICIT_OPEN zones in victim order (LRU: by last write; FIFO: by opening).
        self._implicit: dict[int, None] = {}
        self._rr_next = config.conventional_zones
        self._faulty_conventional = 0

    # ----- queries -----

    @property
    def nr_zones(self) -> int:
        return len(self._zones)

    @property
    def open_zones(self) -> int:
        return self._n_open

    @property
    def active_zones(self) -> int:
        return self._n_active

    def zone(self, index: int) -> ZoneInfo:
        z = self._zones[index]
        kind = ZoneType.CONVENTIONAL if z.conventional else ZoneType.SEQUENTIAL
        return ZoneInfo(z.index, z.start, z.length, z.capacity, kind, z.state, z.wp)

    def report(self) -> list[ZoneInfo]:
        return [self.zone(i) for i in range(len(self._zones))]

    def wps(self) -> list[int]:
        """Every zone's write pointer (conventional zones: their start)."""
        return [z.wp for z in self._zones]

    def zone_of(self, offset: int) -> int:
        """The index of the zone holding byte `offset`."""
        if not 0 <= offset < self._size:
            raise ModelError(f"offset {offset} is outside the device (size {self._size})")
        return offset >> self._zone_shift

    # ----- data ops -----

    def write(self, offset: int, length: int) -> OpResult:
        """A guest write of `length` bytes at `offset` (ZSM-3..ZSM-8)."""
        if length <= 0:
            raise ModelError(f"write length must be positive, got {length}")
        end = offset + length
        if offset < 0 or end > self._size:
            return _REFUSED[Refusal.OUT_OF_RANGE]
        zone = self._zones[offset >> self._zone_shift]
        if zone.conventional:
            if end > self._conventional_end:
                return _REFUSED[Refusal.EXCEEDS_CAPACITY]  # ZSM-4: spills into a sequential zone
            if self._faulty_conventional and self._span_has_fault(offset, end):
                return _REFUSED[Refusal.INVALID_TRANSITION]  # ZSM-1
            return OK
        state = zone.state
        if state is _FULL:
            return _REFUSED[Refusal.ZONE_FULL]  # ZSM-9
        if state is _RO or state is _OFFLINE:
            return _REFUSED[Refusal.INVALID_TRANSITION]  # ZSM-1
        if offset != zone.wp:
            return _REFUSED[Refusal.NOT_AT_WRITE_POINTER]  # ZSM-3
        if length % SECTOR:
            return _REFUSED[Refusal.UNALIGNED]  # WP-7: wps move in whole blocks
        return self._advance(zone, end, self._write_active_limit) or OK

    def append(self, zone_index: int, length: int) -> OpResult:
        """Zone append: write at the wp, answer where the data landed (ZSM-11)."""
        if length <= 0:
            raise ModelError(f"append length must be positive, got {length}")
        zone = self._get_zone(zone_index)
        if zone is None:
            return _REFUSED[Refusal.OUT_OF_RANGE]
        if zone.conventional:
            return _REFUSED[Refusal.CONVENTIONAL_ZONE]
        if length > self._max_append:
            return _REFUSED[Refusal.APPEND_TOO_LARGE]
        state = zone.state
        if state is _FULL:
            return _REFUSED[Refusal.ZONE_FULL]
        if state is _RO or state is _OFFLINE:
            return _REFUSED[Refusal.INVALID_TRANSITION]
        if length % SECTOR:
            return _REFUSED[Refusal.UNALIGNED]  # WP-7
        offset = zone.wp
        refused = self._advance(zone, offset + length, self._max_active)
        return refused or OpResult(offset=offset)

    def _advance(self, zone: Zone, end: int, active_limit: int) -> OpResult | None:
        """Move a writable sequential zone's wp to `end`; None on success."""
        limit = zone.start + zone.capacity
        if end > limit:
            return _REFUSED[Refusal.EXCEEDS_CAPACITY]  # ZSM-4
        state = zone.state
        if state is _EMPTY or state is _CLOSED:
            refused = self._make_room(state is _EMPTY, active_limit)
            if refused is not None:
                return refused
            self._set_state(zone, _IMP)
        elif self._lru and state is _IMP:
            self._implicit[zone.index] = self._implicit.pop(zone.index)  # most recent last
        zone.wp = end
        if end == limit:
            self._set_state(zone, _FULL)  # ZSM-8
        return None

    # ----- management ops -----

    def open(self, zone_index: int) -> OpResult:
        """Explicit open (ZSM-12)."""
        zone, refused = self._managed(zone_index)
        if zone is None:
            return refused
        state = zone.state
        if state is _EXP:
            return OK
        if state is _IMP:
            self._set_state(zone, _EXP)
            return OK
        if state is _EMPTY or state is _CLOSED:
            refused_room = self._make_room(state is _EMPTY, self._max_active)
            if refused_room is not None:
                return refused_room
            self._set_state(zone, _EXP)
            return OK
        return _REFUSED[Refusal.INVALID_TRANSITION]  # FULL, READ_ONLY, OFFLINE

    def close(self, zone_index: int) -> OpResult:
        """Close an open zone (ZSM-13); closing a CLOSED zone is a no-op."""
        zone, refused = self._managed(zone_index)
        if zone is None:
            return refused
        state = zone.state
        if state is _CLOSED:
            return OK
        if state is _IMP or state is _EXP:
            self._close_zone(zone)
            return OK
        return _REFUSED[Refusal.INVALID_TRANSITION]  # EMPTY, FULL, READ_ONLY, OFFLINE

    def finish(self, zone_index: int) -> OpResult:
        """Make the zone FULL, freeing its slots (ZSM-14)."""
        zone, refused = self._managed(zone_index)
        if zone is None:
            return refused
        state = zone.state
        if state is _FULL:
            return OK
        if state is _RO or state is _OFFLINE:
            return _REFUSED[Refusal.INVALID_TRANSITION]
        if state is _EMPTY and self._max_active and self._n_active >= self._max_active:
            return _REFUSED[Refusal.TOO_MANY_ACTIVE]
        zone.wp = zone.start + zone.capacity
        self._set_state(zone, _FULL)
        return OK

    def reset(self, zone_index: int) -> OpResult:
        """Make the zone EMPTY with wp at its start (ZSM-15)."""
        zone, refused = self._managed(zone_index)
        if zone is None:
            return refused
        if zone.state is _RO or zone.state is _OFFLINE:
            return _REFUSED[Refusal.INVALID_TRANSITION]
        zone.wp = zone.start
        self._set_state(zone, _EMPTY)
        return OK

    def reset_all(self) -> OpResult:
        """Reset every sequential zone; skip conventional and faulty ones (ZSM-15)."""
        for zone in self._zones:
            if zone.conventional or zone.state is _RO or zone.state is _OFFLINE:
                continue
            zone.wp = zone.start
            self._set_state(zone, _EMPTY)
        return OK

    def flush(self) -> OpResult:
        """Flush changes no zone condition; durability is persistence.py's business."""
        return OK

    def reopen(self) -> OpResult:
        """A clean power cycle: wps persist, open zones come back closed (ZSM-17)."""
        for zone in self._zones:
            state = zone.state
            if state is _IMP or state is _EXP or state is _CLOSED:
                self._set_state(zone, _EMPTY if zone.wp == zone.start else _CLOSED)
        self._rr_next = self.config.conventional_zones
        return OK

    def restore(self, wps: Sequence[int]) -> None:
        """Adopt persisted write pointers, as after a crash or an image open (WP-8).

        Each sequential zone becomes EMPTY (wp = start), FULL (wp >= start + capacity,
        normalised to start + capacity) or CLOSED. Faulty zones keep their condition.
        """
        if len(wps) != len(self._zones):
            raise ModelError(f"expected {len(self._zones)} write pointers, got {len(wps)}")
        for zone, wp in zip(self._zones, wps, strict=True):
            if zone.conventional or zone.state is _RO or zone.state is _OFFLINE:
                continue
            if not zone.start <= wp <= zone.start + zone.length:
                raise ModelError(
                    f"zone {zone.index}: wp {wp:#x} outside [{zone.start:#x}, "
                    f"{zone.start + zone.length:#x}]",
                    clause="WP-8",
                )
            state = persisted_state(zone.start, zone.capacity, wp)
            zone.wp = min(wp, zone.start + zone.capacity)
            self._set_state(zone, state)
        self._rr_next = self.config.conventional_zones

    # ----- fault injection -----

    def inject_fault(self, zone_index: int, state: ZoneState | str) -> None:
        """Put a zone in READ_ONLY or OFFLINE, as a failing device would (ZSM-1)."""
        try:
            fault = ZoneState(state)
        except ValueError:
            raise ModelError(f"unknown zone state {state!r}") from None
        if fault is not _RO and fault is not _OFFLINE:
            raise ModelError(f"a fault makes a zone read_only or offline, not {fault.value}")
        zone = self._get_zone(zone_index)
        if zone is None:
            raise ModelError(f"zone {zone_index} does not exist ({len(self._zones)} zones)")
        if zone.conventional and zone.state is _NWP:
            self._faulty_conventional += 1
        self._set_state(zone, fault)

    # ----- internals -----

    def _get_zone(self, zone_index: int) -> Zone | None:
        if not isinstance(zone_index, int) or isinstance(zone_index, bool):
            raise ModelError(f"zone index must be an integer, got {zone_index!r}")
        if 0 <= zone_index < len(self._zones):
            return self._zones[zone_index]
        return None

    def _managed(self, zone_index: int) -> tuple[Zone | None, OpResult]:
        """The zone a management op may act on, or None and the refusal (ZSM-10)."""
        zone = self._get_zone(zone_index)
        if zone is None:
            return None, _REFUSED[Refusal.OUT_OF_RANGE]
        if zone.conventional:
            return None, _REFUSED[Refusal.CONVENTIONAL_ZONE]
        return zone, OK

    def _span_has_fault(self, offset: int, end: int) -> bool:
        first = offset >> self._zone_shift
        last = (end - 1) >> self._zone_shift
        return any(self._zones[i].state is not _NWP for i in range(first, last + 1))

    def _make_room(self, needs_active: bool, active_limit: int) -> OpResult | None:
        """Check slots for a zone about to open (ZSM-5, ZSM-6); None if it may."""
        if needs_active and active_limit and self._n_active >= active_limit:
            return _REFUSED[Refusal.TOO_MANY_ACTIVE]
        if self._max_open and self._n_open >= self._max_open:
            victim = self._pick_victim()
            if victim is None:
                return _REFUSED[Refusal.TOO_MANY_OPEN]
            self._close_zone(victim)
        return None

    def _pick_victim(self) -> Zone | None:
        if not self._implicit:
            return None
        if self.policy is not VictimPolicy.ROUND_ROBIN:
            return self._zones[next(iter(self._implicit))]
        nr = len(self._zones)
        first = self._rr_next
        index = min(self._implicit, key=lambda i: (i - first) % nr)
        self._rr_next = (index + 1) % nr
        return self._zones[index]

    def _close_zone(self, zone: Zone) -> None:
        if zone.wp != zone.start:
            self._set_state(zone, _CLOSED)
        elif zone.state is _EXP and self.close_at_start is CloseAtStart.CLOSED:
            self._set_state(zone, _CLOSED)
        else:
            self._set_state(zone, _EMPTY)

    def _set_state(self, zone: Zone, new: ZoneState) -> None:
        """Change a zone's condition, keeping the open/active counters right."""
        old = zone.state
        if old is new:
            return
        was_open = old is _IMP or old is _EXP
        is_open = new is _IMP or new is _EXP
        self._n_open += is_open - was_open
        self._n_active += (is_open or new is _CLOSED) - (was_open or old is _CLOSED)
        if old is _IMP:
            del self._implicit[zone.index]
        if new is _IMP:
            self._implicit[zone.index] = None
        zone.state = new


__all__ = [
    "CONVENTIONAL_FLAG",
    "MODEL_MAX_ZONES",
    "CloseAtStart",
    "OK",
    "OP_CLAUSES",
    "REFUSAL_CLAUSES",
    "OpResult",
    "Refusal",
    "ZoneConfig",
    "ZoneInfo",
    "ZoneModel",
    "ZoneState",
    "ZoneType",
    "VictimPolicy",
]
