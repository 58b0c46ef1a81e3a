"""Maintenance tools on zoned images: what each step must do (TOOL-*), and the reference
writer's own tools, which give the expected result.

`TOOL_RULES` says, for every step a qemu-img-like tool offers, whether a zoned-capable
writer must accept it, must refuse it, or may do either, and what an accepted step
leaves behind (`Effect`). The stateful suite (properties/zoned_tools.py) holds any
writer's tools to it.

`ReferenceTools` runs the steps on images the reference writer made. It accepts what
the rules require and refuses the rest (one refcount width, no lazy refcounts, no
bitmaps, no backing files). `ToolMutant` names one-flag deviations the suite must catch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import Enum, StrEnum

from qcow2harness.errors import ModelError, WriterError

from .writer import HEADER, Mutant, ReferenceWriter
from .zones import OpResult, ZoneInfo, ZoneState, ZoneType, readable_ranges

COPY_CHUNK = 65536
INCOMPAT_DIRTY = 1  # incompatible feature bit 0 (HDR-12)
# Fields of the writer's HEADER struct that the mutants rewrite.
HEADER_SIZE_FIELD = 5
HEADER_INCOMPAT_FIELD = 13


class ToolStep(StrEnum):
    """One maintenance step on a zoned image (the qemu-img command it stands for)."""

    CHECK = "check"  # qemu-img check
    REPAIR_LEAKS = "repair-leaks"  # check -r leaks
    REPAIR_ALL = "repair-all"  # check -r all
    AMEND_COMPAT_V2 = "amend-compat-0.10"
    AMEND_REFCOUNT_BITS = "amend-refcount-bits"  # refcount_bits=64
    AMEND_LAZY_REFCOUNTS = "amend-lazy-refcounts"  # lazy_refcounts=on
    AMEND_ZONE_SIZE = "amend-zone-size"  # zone.size=2 * zone_size
    CONVERT_ZONED = "convert-zoned"  # convert -O qcow2 with the same zone settings
    CONVERT_QCOW2 = "convert-qcow2"  # convert -O qcow2 without zone settings
    CONVERT_RAW = "convert-raw"  # convert -O raw
    SNAPSHOT_CREATE = "snapshot-create"  # snapshot -c
    SNAPSHOT_LIST = "snapshot-list"  # snapshot -l
    OVERLAY = "overlay"  # create -b ZONED: a plain overlay over the zoned image
    COMMIT_INTO = "commit-into"  # commit an overlay into the zoned image
    REBASE_ONTO = "rebase-onto"  # rebase -u -b BASE ZONED: give it a backing file
    REBASE_NONE = "rebase-none"  # rebase -b '' ZONED: it has none already
    RESIZE_GROW = "resize-grow"  # resize +zone_size
    RESIZE_SHRINK = "resize-shrink"  # resize --shrink -zone_size
    BITMAP_ADD = "bitmap-add"  # bitmap --add
    BITMAP_REMOVE = "bitmap-remove"  # bitmap --remove (of a bitmap it has)
    BITMAP_CLEAR = "bitmap-clear"  # bitmap --clear (of a bitmap it has)
    BITMAP_DISABLE = "bitmap-disable"  # bitmap --disable (of a bitmap it has)
    BITMAP_ENABLE = "bitmap-enable"  # bitmap --enable (of a bitmap it has)


class Outcome(Enum):
    ACCEPT = "must accept"
    REFUSE = "must refuse"
    EITHER = "may refuse"


class Effect(Enum):
    """What an accepted step leaves."""

    UNCHANGED = "the file byte-identical"  # read-only steps
    KEEP = "the zones, the guest data and a clean image"  # TOOL-1
    ZONED_COPY = "a zoned copy with the same zones and guest data"  # TOOL-9
    PLAIN_COPY = "a plain copy of the guest view"  # TOOL-10
    OVERLAY = "a plain overlay that reads the guest view; the zoned file unchanged"  # TOOL-8


@dataclass(frozen=True)
class ToolRule:
    outcome: Outcome
    effect: Effect
    clause: str


TOOL_RULES: dict[ToolStep, ToolRule] = {
    ToolStep.CHECK: ToolRule(Outcome.ACCEPT, Effect.UNCHANGED, "TOOL-3"),
    ToolStep.REPAIR_LEAKS: ToolRule(Outcome.ACCEPT, Effect.KEEP, "TOOL-4"),
    ToolStep.REPAIR_ALL: ToolRule(Outcome.ACCEPT, Effect.KEEP, "TOOL-4"),
    ToolStep.AMEND_COMPAT_V2: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-5"),
    ToolStep.AMEND_REFCOUNT_BITS: ToolRule(Outcome.EITHER, Effect.KEEP, "TOOL-11"),
    ToolStep.AMEND_LAZY_REFCOUNTS: ToolRule(Outcome.EITHER, Effect.KEEP, "TOOL-11"),
    ToolStep.AMEND_ZONE_SIZE: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-6"),
    ToolStep.CONVERT_ZONED: ToolRule(Outcome.ACCEPT, Effect.ZONED_COPY, "TOOL-9"),
    ToolStep.CONVERT_QCOW2: ToolRule(Outcome.ACCEPT, Effect.PLAIN_COPY, "TOOL-10"),
    ToolStep.CONVERT_RAW: ToolRule(Outcome.ACCEPT, Effect.PLAIN_COPY, "TOOL-10"),
    ToolStep.SNAPSHOT_CREATE: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-7"),
    ToolStep.SNAPSHOT_LIST: ToolRule(Outcome.ACCEPT, Effect.UNCHANGED, "TOOL-3"),
    ToolStep.OVERLAY: ToolRule(Outcome.EITHER, Effect.OVERLAY, "TOOL-8"),
    ToolStep.COMMIT_INTO: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-7"),
    ToolStep.REBASE_ONTO: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-7"),
    ToolStep.REBASE_NONE: ToolRule(Outcome.EITHER, Effect.KEEP, "TOOL-1"),
    ToolStep.RESIZE_GROW: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-6"),
    ToolStep.RESIZE_SHRINK: ToolRule(Outcome.REFUSE, Effect.KEEP, "TOOL-6"),
    ToolStep.BITMAP_ADD: ToolRule(Outcome.EITHER, Effect.KEEP, "TOOL-11"),
    ToolStep.BITMAP_REMOVE: ToolRule(Outcome.ACCEPT, Effect.KEEP, "TOOL-11"),
    ToolStep.BITMAP_CLEAR: ToolRule(Outcome.ACCEPT, Effect.KEEP, "TOOL-11"),
    ToolStep.BITMAP_DISABLE: ToolRule(Outcome.ACCEPT, Effect.KEEP, "TOOL-11"),
    ToolStep.BITMAP_ENABLE: ToolRule(Outcome.ACCEPT, Effect.KEEP, "TOOL-11"),
}


# Steps on a bitmap the image already has (not drawn before a bitmap was added).
NEEDS_BITMAP = frozenset({ToolStep.BITMAP_REMOVE, ToolStep.BITMAP_CLEAR,
                          ToolStep.BITMAP_DISABLE, ToolStep.BITMAP_ENABLE})


class ToolMutant(StrEnum):
    """One-flag deviations of the reference tools, each a bug a real tool could have."""

    # A repair that does not know the zoned extension frees the write-pointer table.
    REPAIR_FREES_ZONEDMETA = "repair-frees-zonedmeta"
    # convert copies the data but never stores the target's write pointers.
    CONVERT_DROPS_WRITE_POINTERS = "convert-drops-write-pointers"
    # convert copies a FULL zone's data but does not finish the target zone.
    CONVERT_SKIPS_FINISH = "convert-skips-finish"
    # A refused step has already marked the image dirty (incompatible bit 0).
    REFUSAL_MARKS_DIRTY = "refusal-marks-dirty"
    # resize is accepted and changes only the virtual size: nr_zones is stale.
    RESIZE_CHANGES_SIZE_ONLY = "resize-changes-size-only"


@dataclass(frozen=True)
class ToolRun:
    exit_code: int
    message: str = ""


class ReferenceTools:
    """The reference writer's maintenance tools (with optional ToolMutants)."""

    name = "reference tools"

    def __init__(self, mutants: Iterable[ToolMutant | str] = ()) -> None:
        try:
            self.mutants = frozenset(ToolMutant(m) for m in mutants)
        except ValueError as error:
            raise ModelError(f"unknown tool mutant: {error}") from None

    def run(self, step: ToolStep, image: str, target: str) -> ToolRun:
        """Run one step on `image` (closed); copies and overlays go to `target`."""
        try:
            return self._run(step, image, target)
        except WriterError as error:
            return ToolRun(1, f"{step}: {error}")

    def _run(self, step: ToolStep, image: str, target: str) -> ToolRun:
        if step in (ToolStep.CHECK, ToolStep.SNAPSHOT_LIST):
            ReferenceWriter.open(image, fsync=False).close()  # it must parse
            return ToolRun(0)
        if step in (ToolStep.REPAIR_LEAKS, ToolStep.REPAIR_ALL):
            with ReferenceWriter.open(image, fsync=False) as writer:
                fixed = writer.repair(
                    forget_zonedmeta=ToolMutant.REPAIR_FREES_ZONEDMETA in self.mutants)
            return ToolRun(0, f"{fixed} refcounts repaired")
        if step is ToolStep.CONVERT_ZONED:
            self._convert_zoned(image, target)
            return ToolRun(0)
        if step is ToolStep.CONVERT_RAW:
            self._convert_plain(image, target, raw=True)
            return ToolRun(0)
        if step is ToolStep.CONVERT_QCOW2:
            self._convert_plain(image, target, raw=False)
            return ToolRun(0)
        if (step in (ToolStep.RESIZE_GROW, ToolStep.RESIZE_SHRINK)
                and ToolMutant.RESIZE_CHANGES_SIZE_ONLY in self.mutants):
            self._resize_header_only(image, grow=step is ToolStep.RESIZE_GROW)
            return ToolRun(0)
        if ToolMutant.REFUSAL_MARKS_DIRTY in self.mutants:
            self._mark_dirty(image)
        rule = TOOL_RULES[step]
        why = ("the reference writer does not offer it" if rule.outcome is Outcome.EITHER
               else f"refused on a zoned image ({rule.clause})")
        return ToolRun(1, f"{step}: {why}")

    # -- convert -------------------------------------------------------------------------

    def _convert_zoned(self, image: str, target: str) -> None:
        """Same geometry: FULL zones first (a FULL zone frees its slots), then the rest,
        each written from its start in order, so the target's wps are the source's."""
        mutants = ([Mutant.SKIP_WP_UPDATE]
                   if ToolMutant.CONVERT_DROPS_WRITE_POINTERS in self.mutants else [])
        with ReferenceWriter.open(image, fsync=False) as source:
            config = source.config
            if config is None or source.zones is None:
                raise WriterError("convert-zoned: the source is not zoned")
            report = source.zones.report()
            with ReferenceWriter.create(target, config.size, cluster_size=source.cluster_size,
                                        zoned=config, fsync=False, mutants=mutants) as copy:
                full = [z for z in report if z.state is ZoneState.FULL]
                rest = [z for z in report if z.state is not ZoneState.FULL]
                for zone in full + rest:
                    self._copy_zone(source, copy, zone)

    def _copy_zone(self, source: ReferenceWriter, copy: ReferenceWriter, zone: ZoneInfo) -> None:
        if zone.type is ZoneType.CONVENTIONAL:
            for offset, data in _nonzero_chunks(source, [(zone.start, zone.start + zone.length)]):
                _expect_ok(copy.write(offset, data), offset)
            return
        end = zone.wp
        if zone.state is ZoneState.FULL:  # up to the last block that holds data
            data = source.read(zone.start, zone.wp - zone.start)
            end = zone.start + -(-len(data.rstrip(b"\0")) // 512) * 512
        for offset in range(zone.start, end, COPY_CHUNK):
            chunk = source.read(offset, min(COPY_CHUNK, end - offset))
            _expect_ok(copy.write(offset, chunk), offset)
        if zone.state is ZoneState.FULL and ToolMutant.CONVERT_SKIPS_FINISH not in self.mutants:
            _expect_ok(copy.finish_zone(zone.number), zone.start)

    def _convert_plain(self, image: str, target: str, *, raw: bool) -> None:
        """The guest view (zeros at and past each wp, ZSM-16) into a plain image."""
        with ReferenceWriter.open(image, fsync=False) as source:
            if source.zones is None:
                raise WriterError("convert: the source is not zoned")
            ranges = list(readable_ranges(source.zones.report()))
            if raw:
                with open(target, "wb") as out:
                    out.truncate(source.size)
                    for offset, data in _nonzero_chunks(source, ranges):
                        out.seek(offset)
                        out.write(data)
                return
            with ReferenceWriter.create(target, source.size, cluster_size=source.cluster_size,
                                        fsync=False) as copy:
                for offset, data in _nonzero_chunks(source, ranges):
                    _expect_ok(copy.write(offset, data), offset)

    # -- mutants only --------------------------------------------------------------------

    @staticmethod
    def _mark_dirty(image: str) -> None:
        _rewrite_header_field(image, HEADER_INCOMPAT_FIELD, lambda bits: bits | INCOMPAT_DIRTY)

    @staticmethod
    def _resize_header_only(image: str, *, grow: bool) -> None:
        with ReferenceWriter.open(image, fsync=False) as writer:
            config = writer.config
            assert config is not None
            step = config.zone_size if grow else -config.zone_size
        _rewrite_header_field(image, HEADER_SIZE_FIELD, lambda size: size + step)


def _rewrite_header_field(image: str, field: int, change: Callable[[int], int]) -> None:
    with open(image, "r+b") as f:
        fields = list(HEADER.unpack(f.read(HEADER.size)))
        fields[field] = change(fields[field])
        f.seek(0)
        f.write(HEADER.pack(*fields))


def _nonzero_chunks(source: ReferenceWriter,
                    ranges: Iterable[tuple[int, int]]) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) of each chunk of the ranges that holds a non-zero byte."""
    for start, end in ranges:
        for offset in range(start, end, COPY_CHUNK):
            data = source.read(offset, min(COPY_CHUNK, end - offset))
            if any(data):
                yield offset, data


def _expect_ok(result: OpResult, offset: int) -> None:
    if result.error is not None:
        raise WriterError(f"the copy refused a write: {result.error}", offset=offset)


__all__ = ["NEEDS_BITMAP", "TOOL_RULES", "Effect", "Outcome", "ReferenceTools", "ToolMutant",
           "ToolRule", "ToolRun", "ToolStep"]
