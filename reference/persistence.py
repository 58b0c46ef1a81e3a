"""The persistence and crash model: what a zoned qcow2 image may hold after a crash.

Every operation changes volatile state; a completed flush makes everything before it
durable (PERS-3, PERS-5). Inside one operation a correct writer persists in this order
(PERS-1, PERS-2, PERS-8):

    1. the guest data;
    2. the qcow2 metadata that makes it visible (refcounts, then L2/L1);
    3. the write pointer.

Guest contents are tracked as *content ids*: 0 is zeros, each write or append gets the
next id (1, 2, ...). A writer that fills write number k with `pattern_byte(k)` lets a
crash engine tell from the bytes which write a byte came from.

`crash()` answers, for a crash at the current point of the history:

- per sequential zone, the write pointers that may be recovered: every value the zone
  held since the last completed flush, the durable one included (PERS-3);
- the byte ranges that must read back exactly: those no operation touched since the
  last completed flush (PERS-5);
- the byte ranges that may read old or new, with the content ids each may hold (PERS-5);
- per recoverable wp, the data it implies: a recovered wp W that some operation j set
  means operation j's data is durable, so the zone reads as it did after j (below W
  its data, above W zeros; after a reset, zeros throughout), except where a later
  operation may have overwritten it (PERS-4).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qcow2harness.errors import ModelError

from .zones import (
    CloseAtStart,
    OpResult,
    VictimPolicy,
    ZoneConfig,
    ZoneModel,
    ZoneState,
    ZoneType,
)

ZEROS = 0
UNKNOWN = -1  # after a crash recovery the model no longer knows which of old/new survived

PERSISTENCE_ORDER = ("data", "metadata", "wp")  # PERS-1, PERS-2
STAGE_CLAUSES = {"data": "PERS-1", "metadata": "PERS-2"}  # what puts each stage first


def stage_order_problems(events: Sequence[str], wp_at: int) -> list[tuple[str, str]]:
    """PERS-1 and PERS-2 for one write-pointer update.

    `events` are the file requests of the operation that made the update, in issue
    order: "data", "metadata", "wp" or "flush" (a flush, completed before anything
    after it is issued); `events[wp_at]` is the update. Every stage that comes before
    "wp" in PERSISTENCE_ORDER must be wholly issued, and then flushed, before it.
    Returns (clause, what is wrong) pairs.
    """
    last_flush = max((i for i in range(wp_at) if events[i] == "flush"), default=-1)
    problems: list[tuple[str, str]] = []
    for stage in PERSISTENCE_ORDER[: PERSISTENCE_ORDER.index("wp")]:
        where = [i for i, event in enumerate(events) if event == stage]
        if not where:
            continue
        if where[-1] > wp_at:
            problems.append((STAGE_CLAUSES[stage], f"wp issued before its {stage}"))
        elif where[-1] > last_flush:
            problems.append((STAGE_CLAUSES[stage],
                             f"wp issued before its {stage} was flushed"))
    return problems


SECTOR = 512  # the unit a power cut cannot tear


def pattern_byte(content: int) -> int | None:
    """The fill byte a writer uses for content id `content` (None: anything goes)."""
    if content == UNKNOWN:
        return None
    if content == ZEROS:
        return 0
    return (content - 1) % 255 + 1


@dataclass(frozen=True, slots=True)
class Extent:
    """Guest bytes [offset, offset + length) hold content id `content`."""

    offset: int
    length: int
    content: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Uncertain:
    """Guest bytes [offset, offset + length) may hold any one of `candidates`."""

    offset: int
    length: int
    candidates: frozenset[int]

    @property
    def end(self) -> int:
        return self.offset + self.length


class ExtentMap:
    """Content ids over the guest address space; gaps hold zeros."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._extents: list[Extent] = []

    def copy(self) -> ExtentMap:
        other = ExtentMap()
        other._starts = list(self._starts)
        other._extents = list(self._extents)
        return other

    def set(self, offset: int, end: int, content: int) -> None:
        """Make [offset, end) hold `content` (ZEROS drops the range)."""
        if end <= offset:
            return
        starts, extents = self._starts, self._extents
        lo = bisect.bisect_right(starts, offset)
        if lo and extents[lo - 1].end > offset:
            lo -= 1
        hi = bisect.bisect_left(starts, end)
        keep: list[Extent] = []
        for old in extents[lo:hi]:
            if old.offset < offset:
                keep.append(Extent(old.offset, offset - old.offset, old.content))
            if old.end > end:
                keep.append(Extent(end, old.end - end, old.content))
        if content != ZEROS:
            keep.append(Extent(offset, end - offset, content))
        keep.sort(key=lambda e: e.offset)
        extents[lo:hi] = keep
        starts[lo:hi] = [e.offset for e in keep]

    def slice(self, offset: int, end: int) -> list[Extent]:
        """Extents covering exactly [offset, end), zero gaps included."""
        out: list[Extent] = []
        starts, extents = self._starts, self._extents
        index = bisect.bisect_right(starts, offset)
        if index and extents[index - 1].end > offset:
            index -= 1
        position = offset
        while index < len(extents) and extents[index].offset < end:
            extent = extents[index]
            if extent.offset > position:
                out.append(Extent(position, extent.offset - position, ZEROS))
            lo = max(extent.offset, position)
            hi = min(extent.end, end)
            out.append(Extent(lo, hi - lo, extent.content))
            position = hi
            index += 1
        if position < end:
            out.append(Extent(position, end - position, ZEROS))
        return out


@dataclass(frozen=True, slots=True)
class WpPoint:
    """A wp a zone held since the last flush, the op that set it, and its data then."""

    wp: int
    sequence: int  # op number that set it; -1 for the durable value
    data: tuple[Extent, ...]  # the whole zone as it read right after that op


@dataclass(frozen=True, slots=True)
class WpWindow:
    """The write pointers one sequential zone may come back with after a crash."""

    zone: int
    start: int
    durable: int
    volatile: int
    allowed: tuple[int, ...]
    writable_end: int = 0  # start + capacity, within the virtual size (ZSM-4)
    zone_end: int = 0  # start + zone_size

    def canonical(self, wp: int) -> int:
        """A recovered wp as the model names it: anything from the writable end to the
        zone end is the FULL wp (WP-9)."""
        return self.writable_end if self.writable_end <= wp <= self.zone_end else wp

    @property
    def lowest(self) -> int:
        return self.allowed[0]

    @property
    def highest(self) -> int:
        return self.allowed[-1]


@dataclass(frozen=True, slots=True)
class _Touch:
    offset: int
    end: int
    content: int
    sequence: int


@dataclass(frozen=True)
class CrashAnswer:
    """Everything a crash at one point of the history allows (see module doc)."""

    windows: tuple[WpWindow, ...]
    exact: tuple[Extent, ...]
    old_or_new: tuple[Uncertain, ...]
    wp_points: Mapping[int, tuple[WpPoint, ...]]
    touches: tuple[_Touch, ...]

    def window(self, zone: int) -> WpWindow:
        for window in self.windows:
            if window.zone == zone:
                return window
        raise ModelError(f"zone {zone} is not a sequential zone")

    def violations(
        self, recovered_wps: Sequence[int], read: Callable[[int, int], bytes]
    ) -> list[str]:
        """Each way a recovered image (its wps and its guest bytes) breaks the model."""
        problems: list[str] = []
        for window in self.windows:
            wp = window.canonical(recovered_wps[window.zone])
            if wp not in window.allowed:
                problems.append(
                    f"PERS-3: zone {window.zone} recovered wp {wp:#x}, allowed "
                    f"{[hex(v) for v in window.allowed]}"
                )
        for extent in self.exact:
            if not _reads_as(read(extent.offset, extent.length), {extent.content}):
                problems.append(
                    f"PERS-5: bytes [{extent.offset:#x}, {extent.end:#x}) were durable as "
                    f"content {extent.content} and read back otherwise"
                )
        for uncertain in self.old_or_new:
            if not _reads_as(read(uncertain.offset, uncertain.length), uncertain.candidates):
                problems.append(
                    f"PERS-5: bytes [{uncertain.offset:#x}, {uncertain.end:#x}) hold none of "
                    f"contents {sorted(uncertain.candidates)}"
                )
        for window in self.windows:
            wp = window.canonical(recovered_wps[window.zone])
            points = [p for p in self.wp_points[window.zone] if p.wp == wp]
            if points and not any(self._data_matches(p, read) for p in points):
                problems.append(
                    f"PERS-4: zone {window.zone} recovered wp {wp:#x} but the data written "
                    f"below it is not all there"
                )
        return problems

    def _data_matches(self, point: WpPoint, read: Callable[[int, int], bytes]) -> bool:
        later = [t for t in self.touches if t.sequence > point.sequence]
        for extent in point.data:
            for offset, end in _split(extent.offset, extent.end, later):
                allowed = {extent.content}
                allowed.update(t.content for t in later if t.offset < end and t.end > offset)
                if not _reads_as(read(offset, end - offset), allowed):
                    return False
        return True


def _split(offset: int, end: int, touches: Iterable[_Touch]) -> list[tuple[int, int]]:
    cuts = {offset, end}
    for touch in touches:
        if offset < touch.offset < end:
            cuts.add(touch.offset)
        if offset < touch.end < end:
            cuts.add(touch.end)
    ordered = sorted(cuts)
    return list(zip(ordered, ordered[1:], strict=False))


def _reads_as(data: bytes, contents: Iterable[int]) -> bool:
    """Every 512-byte sector of `data` holds one of `contents` (PERS-5).

    A write that was not flushed may reach the disk in part: sectors are the unit a
    power cut cannot tear, so each sector, not the whole range, is old or new.
    """
    fills = []
    for content in contents:
        fill = pattern_byte(content)
        if fill is None:
            return True  # a content with no fixed pattern matches anything
        fills.append(bytes([fill]))
    for start in range(0, len(data), SECTOR):
        sector = data[start:start + SECTOR]
        if not any(sector == fill * len(sector) for fill in fills):
            return False
    return True


class PersistenceModel:
    """A ZoneModel plus what is durable: the oracle for crash states."""

    def __init__(
        self,
        config: ZoneConfig,
        policy: VictimPolicy | str = VictimPolicy.LRU,
        close_at_start: CloseAtStart | str = CloseAtStart.EMPTY,
    ) -> None:
        self.zones = ZoneModel(config, policy, close_at_start)
        self.config = config
        self._content = ExtentMap()
        self._sequence = 0  # ops applied so far
        self.last_content = ZEROS  # content id of the latest successful write/append
        self._next_content = 1
        self._mark_durable()

    # ----- operations -----

    def write(self, offset: int, length: int, content: int | None = None) -> OpResult:
        """A guest write of a new content id, or of `content` when the writer cannot
        choose its data (qemu-io's zone append always writes 0xcd: content 0xcd)."""
        result = self.zones.write(offset, length)
        if result.ok:
            self._store(offset, offset + length, content)
        return self._done(result)

    def append(self, zone: int, length: int, content: int | None = None) -> OpResult:
        result = self.zones.append(zone, length)
        if result.ok and result.offset is not None:
            self._store(result.offset, result.offset + length, content)
        return self._done(result)

    def open(self, zone: int) -> OpResult:
        return self._done(self.zones.open(zone))

    def close(self, zone: int) -> OpResult:
        return self._done(self.zones.close(zone))

    def finish(self, zone: int) -> OpResult:
        return self._done(self.zones.finish(zone))

    def reset(self, zone: int) -> OpResult:
        result = self.zones.reset(zone)
        if result.ok:
            self._zero_zone(zone)
        return self._done(result)

    def reset_all(self) -> OpResult:
        before = self.zones.wps()
        result = self.zones.reset_all()
        for index, (old, new) in enumerate(zip(before, self.zones.wps(), strict=True)):
            if old != new:
                self._zero_zone(index)
        return self._done(result)

    def flush(self) -> OpResult:
        result = self._done(self.zones.flush())
        self._mark_durable()
        return result

    def reopen(self) -> OpResult:
        """A clean power cycle: flush, then reopen (ZSM-17). One op: one sequence number."""
        self.zones.flush()
        self._mark_durable()
        return self._done(self.zones.reopen())

    def inject_fault(self, zone: int, state: ZoneState | str) -> None:
        self.zones.inject_fault(zone, state)

    def content(self) -> list[Extent]:
        """What every guest byte holds now, as extents of content ids (see pattern_byte)."""
        return self._content.slice(0, self.config.size)

    def apply(self, op: Mapping[str, Any]) -> OpResult:
        """Apply one op in the trace protocol's dict form (crash/report excluded)."""
        name = op.get("op")
        if name == "write":
            return self.write(op["offset"], op["length"], op.get("content"))
        if name == "append":
            return self.append(op["zone"], op["length"], op.get("content"))
        if name in ("open", "close", "finish", "reset"):
            method: Callable[[int], OpResult] = getattr(self, str(name))
            return method(op["zone"])
        if name == "reset_all":
            return self.reset_all()
        if name == "flush":
            return self.flush()
        if name == "reopen":
            return self.reopen()
        raise ModelError(f"unknown op {name!r}")

    # ----- crash -----

    def crash(self) -> CrashAnswer:
        """What may be recovered if power fails now. The model's state does not change."""
        windows = []
        points: dict[int, tuple[WpPoint, ...]] = {}
        volatile = self.zones.wps()
        for info in self.zones.report():
            if info.type is ZoneType.CONVENTIONAL:
                continue
            zone = info.number
            zone_points = tuple(self._points[zone])
            points[zone] = zone_points
            allowed = tuple(sorted({p.wp for p in zone_points}))
            windows.append(
                WpWindow(zone, info.start, self._durable_wps[zone], volatile[zone], allowed,
                         info.start + info.capacity, info.start + self.config.zone_size)
            )
        exact, uncertain = self._classify()
        return CrashAnswer(tuple(windows), exact, uncertain, points, tuple(self._touches))

    def recover(self, wps: Sequence[int] | None = None) -> None:
        """Continue after a crash with the recovered wps (default: the durable ones).

        Bytes that may hold old or new content become UNKNOWN, except below a
        recovered wp that an op since the flush set, whose data is then known.
        """
        answer = self.crash()
        chosen = list(self._durable_wps if wps is None else wps)
        if len(chosen) != self.zones.nr_zones:
            raise ModelError(f"expected {self.zones.nr_zones} write pointers, got {len(chosen)}")
        for window in answer.windows:
            chosen[window.zone] = window.canonical(chosen[window.zone])
        for window in answer.windows:
            if chosen[window.zone] not in window.allowed:
                raise ModelError(
                    f"zone {window.zone}: wp {chosen[window.zone]:#x} cannot be recovered",
                    clause="PERS-3",
                )
        content = self._durable_content.copy()
        for uncertain in answer.old_or_new:
            content.set(uncertain.offset, uncertain.end, UNKNOWN)
        for window in answer.windows:
            wp = chosen[window.zone]
            matches = [p for p in answer.wp_points[window.zone] if p.wp == wp]
            if len(matches) != 1:
                continue
            point = matches[0]
            zone_end = window.start + self.config.zone_size
            overwritten = any(
                t.sequence > point.sequence and t.offset < zone_end and t.end > window.start
                for t in answer.touches
            )
            if not overwritten:  # PERS-4: that op's data is durable and nothing came after
                for extent in point.data:
                    content.set(extent.offset, extent.end, extent.content)
        self._content = content
        self.zones.restore(chosen)
        self._mark_durable()

    # ----- internals -----

    def _done(self, result: OpResult) -> OpResult:
        if result.ok:
            self._note_wps()  # points and touches of one op share its sequence number
        self._sequence += 1
        return result

    def _store(self, offset: int, end: int, content: int | None) -> None:
        if content is None:
            content = self._next_content
            self._next_content += 1
        self.last_content = content
        self._content.set(offset, end, content)
        self._touches.append(_Touch(offset, end, content, self._sequence))

    def _zero_zone(self, zone: int) -> None:
        info = self.zones.zone(zone)
        end = info.start + info.length
        self._content.set(info.start, end, ZEROS)
        self._touches.append(_Touch(info.start, end, ZEROS, self._sequence))

    def _note_wps(self) -> None:
        """Record each sequential zone whose wp the op just changed."""
        for zone, wp in enumerate(self.zones.wps()):
            points = self._points.get(zone)
            if points is not None and points[-1].wp != wp:
                info = self.zones.zone(zone)
                data = tuple(self._content.slice(info.start, info.start + info.length))
                points.append(WpPoint(wp, self._sequence, data))

    def _mark_durable(self) -> None:
        self._durable_content = self._content.copy()
        self._durable_wps = self.zones.wps()
        self._touches: list[_Touch] = []
        self._points: dict[int, list[WpPoint]] = {}
        for info in self.zones.report():
            if info.type is ZoneType.SEQUENTIAL:
                data = tuple(self._content.slice(info.start, info.start + info.length))
                self._points[info.number] = [WpPoint(info.wp, -1, data)]

    def _classify(self) -> tuple[tuple[Extent, ...], tuple[Uncertain, ...]]:
        """Split the device into exact (untouched since flush) and old-or-new ranges."""
        size = self.config.size
        cuts = {0, size}
        for touch in self._touches:
            cuts.add(touch.offset)
            cuts.add(touch.end)
        ordered = sorted(cuts)
        exact: list[Extent] = []
        uncertain: list[Uncertain] = []
        for lo, hi in zip(ordered, ordered[1:], strict=False):
            writers = {t.content for t in self._touches if t.offset < hi and t.end > lo}
            if not writers:
                for extent in self._durable_content.slice(lo, hi):
                    _merge_exact(exact, extent)
                continue
            for extent in self._durable_content.slice(lo, hi):
                candidates = frozenset(writers | {extent.content})
                if len(candidates) == 1:  # rewritten with what it held: still exact
                    _merge_exact(exact, extent)
                else:
                    item = Uncertain(extent.offset, extent.length, candidates)
                    _merge_uncertain(uncertain, item)
        return tuple(exact), tuple(uncertain)


def _merge_exact(out: list[Extent], extent: Extent) -> None:
    if out and out[-1].end == extent.offset and out[-1].content == extent.content:
        last = out.pop()
        extent = Extent(last.offset, last.length + extent.length, extent.content)
    out.append(extent)


def _merge_uncertain(out: list[Uncertain], item: Uncertain) -> None:
    if out and out[-1].end == item.offset and out[-1].candidates == item.candidates:
        last = out.pop()
        item = Uncertain(last.offset, last.length + item.length, item.candidates)
    out.append(item)


def crash_at(
    config: ZoneConfig,
    history: Iterable[Mapping[str, Any]],
    crash_point: int,
    policy: VictimPolicy | str = VictimPolicy.LRU,
    close_at_start: CloseAtStart | str = CloseAtStart.EMPTY,
) -> CrashAnswer:
    """Replay the first `crash_point` ops of `history`, then crash."""
    model = PersistenceModel(config, policy, close_at_start)
    for number, op in enumerate(history):
        if number >= crash_point:
            break
        model.apply(op)
    return model.crash()


__all__ = [
    "PERSISTENCE_ORDER",
    "STAGE_CLAUSES",
    "UNKNOWN",
    "ZEROS",
    "CrashAnswer",
    "Extent",
    "ExtentMap",
    "PersistenceModel",
    "Uncertain",
    "WpPoint",
    "WpWindow",
    "crash_at",
    "pattern_byte",
    "stage_order_problems",
]
