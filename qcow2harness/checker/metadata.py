"""The metadata walk: refcount recount, COPIED flags, entry bits, roles and overlaps.

Bulk tables are read as numpy arrays at the offsets the Kaitai parse located
(qcow2harness.image); nothing allocates per entry, and nothing is allocated
that the file cannot back: every array is sized by the file's cluster count.

Reference counting follows RC-3: one reference per use of a host cluster. L2
tables shared by several L1 tables (snapshots) are read once and weighted by
how many L1 entries point to them.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from qcow2harness.checker.report import Findings
from qcow2harness.errors import ParseError
from qcow2harness.image import (
    COPIED,
    LOW32,
    OFFSET_MASK,
    REFTABLE_OFFSET_MASK,
    Extension,
    ExtensionType,
    Image,
    decode_l2_entries,
    decode_refcounts,
    l2_subcluster_bitmaps,
)
from qcow2harness.structure import refcount_table_placement_problems

if TYPE_CHECKING:
    import numpy as np

    from qcow2harness.checker.zoned import Zones

try:
    import zstandard
except ImportError:  # pragma: no cover - a declared dependency; CMP-5 notes the gap
    zstandard = None  # type: ignore[assignment]

# Reserved-bit masks, as the ksy instances define them (the entry masks live in image.py).
L1_RESERVED = 0x7F000000000001FF
L2_RESERVED = 0x3F000000000001FE
L2_RESERVED_EXTENDED = 0x3F000000000001FF  # bit 0 is reserved too (EL2-2)
BITMAP_TABLE_RESERVED = 0xFF000000000001FE
REFTABLE_RESERVED = 0x1FF
SECTOR = 512

# L2 tables are read in batches of this many bytes, to bound memory.
L2_BATCH_BYTES = 4 * 1024 * 1024
COMPARE_CHUNK = 1 << 22
# CMP-4 decodes at most this many compressed streams, and at most this many bytes of
# output, per image; the rest are counted and noted under CMP-5.
MAX_DECODED_STREAMS = 4096
MAX_DECODED_BYTES = 256 * 1024 * 1024
# BMP-13 reads at most this many bytes of bitmap tails per image.
MAX_BITMAP_TAIL_BYTES = 64 * 1024 * 1024


class Role(IntEnum):
    """What a host cluster is used for (OVL-1)."""

    NONE = 0
    HEADER = 1
    L1 = 2
    SNAPSHOT_L1 = 3
    L2 = 4
    REFCOUNT_TABLE = 5
    REFCOUNT_BLOCK = 6
    SNAPSHOT_TABLE = 7
    BITMAP_DIRECTORY = 8
    BITMAP_TABLE = 9
    BITMAP_DATA = 10
    CRYPT_HEADER = 11
    ZONEDMETA = 12
    DATA = 13
    COMPRESSED = 14


NO_ROLE = int(Role.NONE)

# report(clause, mask over (table, entry), text, byte offset within the entry)
Reporter = Callable[..., None]
# progress(stage, units done, units in the stage): the long loops report through it
StageProgress = Callable[[str, int, int], None]

ROLE_NAMES = {role: role.name.lower().replace("_", " ") for role in Role}


@dataclass
class Walk:
    """State of one metadata walk over an image."""

    image: Image
    out: Findings
    cluster_size: int
    cluster_bits: int
    num_clusters: int  # clusters the file holds
    refs: np.ndarray
    roles: np.ndarray
    stored: np.ndarray | None = None
    stats: Counter[str] = field(default_factory=Counter)
    zones: Zones | None = None  # the zoned extension, for WP-10
    # Contiguous tables (offset, length, name) for OVL-2.
    tables: list[tuple[int, int, str]] = field(default_factory=list)
    # Byte ranges of the compressed clusters (CMP-3), one array per batch.
    compressed_starts: list[np.ndarray] = field(default_factory=list)
    compressed_ends: list[np.ndarray] = field(default_factory=list)
    streams_left: int = MAX_DECODED_STREAMS
    streams_unverified: int = 0
    # Kept only for cluster_kinds() (check_metadata(cluster_map=True)): host clusters an
    # L2 entry preallocates without data (L2-5, EL2-6), and clusters claimed twice (OVL-1).
    zero_marks: np.ndarray | None = None
    clash_marks: np.ndarray | None = None
    progress: StageProgress | None = None  # (stage, done, total), for the CLI's display

    def table(self, offset: int, length: int, name: str) -> None:
        """Record a contiguous table's byte range for the OVL-2 check."""
        if length > 0:
            self.tables.append((offset, length, name))

    # -- references --------------------------------------------------------

    def claim(self, offset: int, length: int, role: Role, clause_past_eof: str = "OVL-3",
              what: str | None = None, weight: int = 1) -> None:
        """Count one reference to each cluster of [offset, offset+length) and give it a role."""
        import numpy as np

        if length <= 0:
            return
        first = offset >> self.cluster_bits
        last = (offset + length - 1) >> self.cluster_bits
        name = what or ROLE_NAMES[role]
        if last >= self.num_clusters:
            self.out.add(clause_past_eof, f"{name} at {offset:#x} ({length} bytes) runs past "
                         f"the end of the file", offset)
            last = self.num_clusters - 1
            if first > last:
                return
        code = int(role)  # numpy compares an IntEnum member several times slower than an int
        if first == last:
            # One cluster (headers, L1 tables, refcount blocks): the same steps on scalars.
            self.refs[first] += weight
            held = int(self.roles[first])
            if held == NO_ROLE:
                self.roles[first] = code
            elif held != code:
                self.out.add("OVL-1", f"{name} at {offset:#x} overlaps "
                             f"{ROLE_NAMES[Role(held)]} in cluster {first}",
                             first << self.cluster_bits)
            return
        self.refs[first:last + 1] += weight
        current = self.roles[first:last + 1]
        clash = (current != NO_ROLE) & (current != code)
        if clash.any():
            if self.clash_marks is not None:
                self.clash_marks[first:last + 1] |= clash
            index = first + int(np.argmax(clash))
            self.out.add("OVL-1", f"{name} at {offset:#x} overlaps "
                         f"{ROLE_NAMES[Role(int(self.roles[index]))]} in cluster {index}",
                         index << self.cluster_bits)
        current[current == NO_ROLE] = code

    def claim_clusters(self, indices: np.ndarray, role: Role, weights: np.ndarray | int = 1,
                       clause_past_eof: str = "OVL-3", what: str = "") -> None:
        """Vectorised claim of whole clusters by index."""
        import numpy as np

        if indices.size == 0:
            return
        past = indices >= self.num_clusters
        if past.any():
            bad = indices[past]
            self.out.add(clause_past_eof, f"{int(bad.size)} {what or ROLE_NAMES[role]} "
                         f"cluster(s) past the end of the file, first at "
                         f"{int(bad[0]) << self.cluster_bits:#x}",
                         int(bad[0]) << self.cluster_bits)
            keep = ~past
            indices = indices[keep]
            if not isinstance(weights, int):
                weights = weights[keep]
        idx = indices.astype(np.intp, copy=False)
        add_references(self.refs, idx, weights)
        current = self.roles[idx]
        code = int(role)  # numpy compares an IntEnum member several times slower than an int
        # Same-role sharing (snapshots, CMP-3) shows in the refcounts, not as an overlap.
        clash = (current != NO_ROLE) & (current != code)
        if clash.any():
            if self.clash_marks is not None:
                self.clash_marks[idx[clash]] = True
            at = int(idx[np.argmax(clash)])
            self.out.add("OVL-1", f"{int(clash.sum())} {what or ROLE_NAMES[role]} cluster(s) "
                         f"overlap other metadata, first cluster {at} "
                         f"({ROLE_NAMES[Role(int(self.roles[at]))]})", at << self.cluster_bits)
        if role != Role.DATA:
            # Metadata is claimed before data, so data needs no role of its own to be
            # caught overlapping metadata; skipping the scatter keeps the walk linear.
            self.roles[idx[current == NO_ROLE]] = code

    def mark_zero(self, indices: np.ndarray) -> None:
        """Note host clusters that an L2 entry preallocates without data (for maps)."""
        if self.zero_marks is not None and indices.size:
            self.zero_marks[indices[indices < self.num_clusters]] = True

    # -- reading -------------------------------------------------------------

    def pread(self, offset: int, length: int) -> bytes:
        return self.image.pread(offset, length)


def add_references(refs: np.ndarray, indices: np.ndarray, weights: np.ndarray | int) -> None:
    """refs[indices] += weights, counting repeated indices (two entries, one cluster)."""
    import numpy as np

    if indices.size == 0:
        return
    low, high = int(indices.min()), int(indices.max())
    if high - low < 4 * indices.size + 1024:
        # Dense (the usual layout): one bincount over the span is exact and fast.
        counts = np.bincount(indices - low, minlength=high - low + 1,
                             weights=None if isinstance(weights, int) else weights)
        if isinstance(weights, int):
            counts *= weights
        refs[low:high + 1] += counts.astype(refs.dtype)
    else:
        np.add.at(refs, indices, weights if isinstance(weights, int)
                  else weights.astype(refs.dtype))


STORED_DTYPE = {0: "uint8", 1: "uint8", 2: "uint8", 3: "uint8", 4: "uint16", 5: "uint32",
                6: "uint64"}


def read_stored_refcounts(walk: Walk) -> None:
    """Read every refcount block into walk.stored (RC-1, RC-2)."""
    import numpy as np

    image, out = walk.image, walk.out
    order = image.refcount_order
    if order not in STORED_DTYPE:
        return  # HDR-14 is reported by the header checks; no refcount can be read
    if refcount_table_placement_problems(image):
        return  # HDR-18, reported by the header checks: no stored refcount can be trusted
    ofs_table = int(image.header.ofs_refcount_table)
    table = image.refcount_table_entries()
    walk.claim(ofs_table, table.size * 8, Role.REFCOUNT_TABLE)
    walk.table(ofs_table, table.size * 8, "refcount table")
    stored = np.zeros(walk.num_clusters, dtype=STORED_DTYPE[order])
    per_block = walk.cluster_size * 8 >> order
    reserved = np.nonzero(table & REFTABLE_RESERVED)[0]
    for index in reserved[:8]:
        out.add("RC-1", f"refcount table entry {int(index)} has reserved bits set "
                f"({int(table[index]):#x})", ofs_table + int(index) * 8)
    blocks = table & REFTABLE_OFFSET_MASK
    past_eof_refs = 0
    for index in np.nonzero(blocks)[0]:
        offset = int(blocks[index])
        entry_at = ofs_table + int(index) * 8
        if offset % walk.cluster_size:
            out.add("RC-1", f"refcount block offset {offset:#x} is not cluster-aligned",
                    entry_at)
            continue
        if offset + walk.cluster_size > image.file_size:
            out.add("RC-2", f"refcount block at {offset:#x} is past the end of the file",
                    entry_at)
            continue
        walk.claim(offset, walk.cluster_size, Role.REFCOUNT_BLOCK)
        counts = decode_refcounts(walk.pread(offset, walk.cluster_size), order)
        first = int(index) * per_block
        if first >= walk.num_clusters:
            past_eof_refs += int(np.count_nonzero(counts))
            continue
        span = min(per_block, walk.num_clusters - first)
        stored[first:first + span] = counts[:span]
        past_eof_refs += int(np.count_nonzero(counts[span:]))
    walk.stored = stored
    walk.stats["refcount_blocks"] = int(np.count_nonzero(blocks))
    if past_eof_refs:
        out.add("RC-5", f"{past_eof_refs} refcount(s) above zero for clusters past the end of "
                "the file", None)


@dataclass
class L1Source:
    """One L1 table to walk: the active one or a snapshot's."""

    name: str
    offset: int
    entries: np.ndarray
    active: bool


def report_indices(out: Findings, clause: str, indices: Sequence[int] | np.ndarray,
                   describe: Callable[[int], tuple[str, int | None]]) -> None:
    """Report the first findings of `clause` one by one and count the rest in bulk."""
    count = len(indices)
    if not count:
        return
    keep = min(out.room(clause), count)
    for index in indices[:keep]:
        message, offset = describe(int(index))
        out.add(clause, message, offset)
    out.add_suppressed(clause, count - keep)


def _report_l1_entries(out: Findings, source: L1Source, reserved: Sequence[int] | np.ndarray,
                       misaligned: Sequence[int] | np.ndarray,
                       past: Sequence[int] | np.ndarray) -> None:
    """L1-1, L1-2 and SNAP-7 for one table, given the indices of its flagged entries."""
    def describe(index: int, text: str) -> tuple[str, int]:
        return (f"{source.name} L1 entry {index} ({int(source.entries[index]):#x}): {text}",
                source.offset + 8 * index)

    report_indices(out, "L1-1", reserved, lambda i: describe(i, "reserved bits set"))
    report_indices(out, "L1-2", misaligned,
                   lambda i: describe(i, "L2 table offset is not cluster-aligned"))
    # Past the end of the file: L1-2 for the active table; a snapshot's tree is SNAP-7.
    report_indices(out, "L1-2" if source.active else "SNAP-7", past,
                   lambda i: describe(i, "L2 table is past the end of the file"))


def _claim_l1_table(walk: Walk, source: L1Source) -> None:
    what = f"{source.name} L1 table"
    walk.claim(source.offset, source.entries.size * 8,
               Role.L1 if source.active else Role.SNAPSHOT_L1, what=what)
    walk.table(source.offset, source.entries.size * 8, what)


def _report_active_copied(walk: Walk, wrong: Sequence[int] | np.ndarray,
                          index: Sequence[int] | np.ndarray, offsets: Sequence[int] | np.ndarray,
                          copied: Sequence[bool] | np.ndarray) -> None:
    """L1-3 (HDR-12 when dirty) for the active entries at positions `wrong` of the lists
    of good active entries (L1 index, L2 table offset, COPIED flag)."""
    assert walk.stored is not None
    stored, image = walk.stored, walk.image
    ofs_l1 = int(image.header.ofs_l1_table)
    # A dirty image's stored refcounts may lag, and the COPIED flags with them.
    clause = "HDR-12" if image.header.is_dirty else "L1-3"
    report_indices(walk.out, clause, wrong, lambda i: (
        f"active L1 entry {int(index[i])} for L2 table {int(offsets[i]):#x} has "
        f"COPIED={int(copied[i])} but the table's refcount is "
        f"{int(stored[int(offsets[i]) >> walk.cluster_bits])}",
        ofs_l1 + 8 * int(index[i])))


def _report_stale_snapshot(out: Findings, source: L1Source, count: int, at: int) -> None:
    """L1-4: one finding per snapshot table, `count` stale entries from entry `at` on."""
    out.add("L1-4", f"{source.name} L1 table: {count} entr(y/ies) with a COPIED flag that "
            f"disagrees with the L2 table's refcount, first entry {at}; rebuilt when the "
            "snapshot is loaded", source.offset + 8 * at)


def _guest_per_l2(walk: Walk) -> int:
    """Guest bytes one L2 table maps."""
    entry_size = 16 if walk.image.header.is_extended_l2 else 8
    return walk.cluster_size // entry_size * walk.cluster_size


# Up to this many L1 entries in all (the active table and the snapshots'), the L1 walk
# runs on Python ints: for a few entries, each numpy call costs more than the entries.
SMALL_L1_WALK = 64


def walk_l1_tables(walk: Walk, sources: Iterable[L1Source]) -> None:
    """L1 entries: reserved bits, alignment, bounds, COPIED; collect L2 tables with
    multiplicity. The entry checks run once over all tables together: an image may
    hold thousands of snapshot L1 tables of a few entries each, and per-table array
    operations would cost more than the entries. Few entries in all take
    walk_small_l1_tables (the same findings, on Python ints)."""
    import numpy as np

    sources = list(sources)
    if sum(int(source.entries.size) for source in sources) <= SMALL_L1_WALK:
        walk_small_l1_tables(walk, sources)
        return
    image, out = walk.image, walk.out
    cluster_size = np.uint64(walk.cluster_size)
    guest_per_l2 = _guest_per_l2(walk)
    # Entry i of the concatenation belongs to the source n with starts[n] <= i < starts[n+1].
    sizes = [int(source.entries.size) for source in sources]
    starts = [0]
    for size in sizes:
        starts.append(starts[-1] + size)
    all_entries = (sources[0].entries if len(sources) == 1
                   else np.concatenate([source.entries for source in sources]) if sources
                   else np.zeros(0, dtype=np.uint64))
    reserved = (all_entries & L1_RESERVED) != 0
    all_offsets = all_entries & OFFSET_MASK
    present = all_offsets != 0
    misaligned = present & ((all_offsets & (cluster_size - np.uint64(1))) != 0)
    past = present & ~misaligned & (all_offsets + cluster_size > np.uint64(image.file_size))
    good = present & ~misaligned & ~past
    # The sources holding an entry to report (most hold none: skip their array calls).
    flagged = np.nonzero(reserved | misaligned | past)[0]
    to_report = (set(np.searchsorted(starts, flagged, side="right").tolist())
                 if flagged.size else set())
    for number, source in enumerate(sources):
        if not source.entries.size:
            continue  # nothing to claim, list or report
        _claim_l1_table(walk, source)
        if number + 1 in to_report:
            span = slice(starts[number], starts[number + 1])
            _report_l1_entries(out, source, np.nonzero(reserved[span])[0],
                               np.nonzero(misaligned[span])[0], np.nonzero(past[span])[0])

    active: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # index, offset, entry
    for number, source in enumerate(sources):
        if source.active:
            index = np.nonzero(good[starts[number]:starts[number + 1]])[0]
            active = (index, all_offsets[starts[number] + index], source.entries[index])
    tables, weights = np.unique(all_offsets[good], return_counts=True)
    walk.claim_clusters(tables >> np.uint64(walk.cluster_bits), Role.L2,
                        weights.astype(np.uint32), what="L2 table")
    walk.stats["l2_tables"] = int(tables.size)
    guest_bases = np.full(tables.size, -1, dtype=np.int64)
    if active is not None and active[1].size:
        first_offsets, first = np.unique(active[1], return_index=True)
        guest_bases[np.searchsorted(tables, first_offsets)] = (
            active[0][first].astype(np.int64) * guest_per_l2)
    stored = walk.stored
    if stored is not None:
        def stored_is_one(offsets: np.ndarray) -> np.ndarray:
            return stored[(offsets >> np.uint64(walk.cluster_bits)).astype(np.intp)] == 1

        if active is not None:
            index, offsets, entries = active
            copied = (entries & COPIED) != 0
            wrong = np.nonzero(copied != stored_is_one(offsets))[0]
            _report_active_copied(walk, wrong, index, offsets, copied)
        # L1-4, one finding per snapshot table, in table order.
        if any(not source.active and source.entries.size for source in sources):
            snapshot = np.repeat(np.array([not source.active for source in sources],
                                          dtype=bool), sizes) & good
            where = np.nonzero(snapshot)[0]
            stale = where[((all_entries[where] & COPIED) != 0)
                          != stored_is_one(all_offsets[where])]
        else:
            stale = np.zeros(0, dtype=np.intp)
        if stale.size:
            owner = np.searchsorted(np.array(starts), stale, side="right") - 1
            tables_hit, first, counts = np.unique(owner, return_index=True,
                                                  return_counts=True)
            for owned, position, count in zip(tables_hit, first, counts, strict=True):
                at = int(stale[position]) - int(starts[owned])
                _report_stale_snapshot(out, sources[int(owned)], int(count), at)
    walk_l2_tables(walk, tables, weights, guest_bases)


@dataclass
class L1Scan:
    """What the L1 entries of all tables say, on Python ints."""

    weights: dict[int, int] = field(default_factory=dict)  # L2 table -> L1 entries at it
    guest_base: dict[int, int] = field(default_factory=dict)  # L2 table -> 1st active index
    # Good entries (index, L2 table offset, COPIED) of the active table, and per snapshot.
    active: list[tuple[int, int, bool]] = field(default_factory=list)
    snapshots: list[tuple[L1Source, list[tuple[int, int, bool]]]] = field(default_factory=list)


def scan_l1_tables(walk: Walk, sources: list[L1Source],
                   claim_table: Callable[[Walk, L1Source], None] | None = None) -> L1Scan:
    """Claim each L1 table (`claim_table`, _claim_l1_table by default) and report its
    entries (L1-1, L1-2, SNAP-7), on Python ints; the good entries are returned."""
    out, file_size = walk.out, walk.image.file_size
    cluster_size = walk.cluster_size
    scan = L1Scan()
    for source in sources:
        entries = source.entries
        values: list[int] = entries if isinstance(entries, list) else entries.tolist()
        if not values:
            continue  # nothing to claim, list or report
        (claim_table or _claim_l1_table)(walk, source)
        reserved: list[int] = []
        misaligned: list[int] = []
        past: list[int] = []
        good: list[tuple[int, int, bool]] = []
        for index, entry in enumerate(values):
            if entry & L1_RESERVED:
                reserved.append(index)
            offset = entry & OFFSET_MASK
            if not offset:
                continue
            if offset & (cluster_size - 1):
                misaligned.append(index)
            elif offset + cluster_size > file_size:
                past.append(index)
            else:
                good.append((index, offset, bool(entry & COPIED)))
                scan.weights[offset] = scan.weights.get(offset, 0) + 1
                if source.active:
                    scan.guest_base.setdefault(offset, index)
        if reserved or misaligned or past:
            _report_l1_entries(out, source, reserved, misaligned, past)
        if source.active:
            scan.active = good
        else:
            scan.snapshots.append((source, good))
    return scan


def report_l1_copied(walk: Walk, scan: L1Scan) -> None:
    """L1-3 for the active table, L1-4 per snapshot table (HDR-12 when dirty)."""
    stored = walk.stored
    if stored is None:
        return
    bits = walk.cluster_bits

    def stored_is_one(offset: int) -> bool:
        return bool(stored[offset >> bits] == 1)

    wrong = [position for position, (_, offset, copied) in enumerate(scan.active)
             if copied != stored_is_one(offset)]
    if wrong:
        indices, offsets, flags = zip(*scan.active, strict=True)
        _report_active_copied(walk, wrong, indices, offsets, flags)
    for source, good in scan.snapshots:
        stale = [index for index, offset, copied in good if copied != stored_is_one(offset)]
        if stale:
            _report_stale_snapshot(walk.out, source, len(stale), stale[0])


def walk_small_l1_tables(walk: Walk, sources: list[L1Source]) -> None:
    """walk_l1_tables for few entries in all: the same checks and findings in the same
    order, the entries on Python ints (tests/test_check_fast_paths.py compares both)."""
    import numpy as np

    scan = scan_l1_tables(walk, sources)
    order = sorted(scan.weights)  # np.unique's order
    tables = np.array(order, dtype=np.uint64)
    counts = np.array([scan.weights[offset] for offset in order], dtype=np.intp)
    walk.claim_clusters(tables >> np.uint64(walk.cluster_bits), Role.L2,
                        counts.astype(np.uint32), what="L2 table")
    walk.stats["l2_tables"] = len(order)
    guest_per_l2 = _guest_per_l2(walk)
    guest_bases = np.array([scan.guest_base[offset] * guest_per_l2
                            if offset in scan.guest_base else -1 for offset in order],
                           dtype=np.int64)
    report_l1_copied(walk, scan)
    walk_l2_tables(walk, tables, counts, guest_bases)


def walk_l2_tables(walk: Walk, tables: np.ndarray, weights: np.ndarray,
                   guest_bases: np.ndarray) -> None:
    """Read the L2 tables in batches and check each batch with whole-array operations."""
    import numpy as np

    per_batch = max(1, L2_BATCH_BYTES // walk.cluster_size)
    for start in range(0, int(tables.size), per_batch):
        offsets = tables[start:start + per_batch]
        batch = L2Batch(
            offsets=offsets,
            weights=weights[start:start + per_batch].astype(np.uint32),
            guest_bases=guest_bases[start:start + per_batch],
            entry_bytes=walk.image.read_l2_tables(offsets),
        )
        check_l2_batch(walk, batch)
        if walk.progress is not None:
            walk.progress("L2 tables", min(start + per_batch, int(tables.size)),
                          int(tables.size))


@dataclass
class L2Batch:
    """Several L2 tables, entry_bytes[table, entry, byte] as stored (big-endian)."""

    offsets: np.ndarray  # file offset of each table
    weights: np.ndarray  # L1 entries pointing at each table
    guest_bases: np.ndarray  # guest offset mapped by entry 0, or -1 when not active
    entry_bytes: np.ndarray

    @property
    def entry_size(self) -> int:
        return int(self.entry_bytes.shape[2])

    def bitmaps(self) -> np.ndarray:
        return l2_subcluster_bitmaps(self.entry_bytes)

    def where(self, table: int, entry: int) -> tuple[int, int]:
        """(table offset, offset of the entry) for a finding."""
        offset = int(self.offsets[table])
        return offset, offset + entry * self.entry_size

    def guest_offsets(self, cluster_size: int) -> np.ndarray:
        """Guest offset of each entry (meaningful for active tables only)."""
        import numpy as np

        entries = self.entry_bytes.shape[1]
        return (self.guest_bases[:, None]
                + np.arange(entries, dtype=np.int64)[None, :] * cluster_size)


def check_l2_batch(walk: Walk, batch: L2Batch) -> None:
    import numpy as np

    out, image = walk.out, walk.image
    extended = batch.entry_size == 16
    external = bool(image.header.has_external_data_file)
    decoded = decode_l2_entries(batch.entry_bytes)
    descriptors, compressed = decoded.descriptors, decoded.compressed
    any_compressed = decoded.any_compressed
    active_rows = batch.guest_bases >= 0

    def report(clause: str, mask: np.ndarray, text: str, extra: int = 0) -> None:
        if not mask.any():
            return
        tables, entries = np.nonzero(mask)
        keep = min(out.room(clause), int(tables.size))
        kept_tables, kept_entries = tables[:keep], entries[:keep]
        values = descriptors[kept_tables, kept_entries].tolist()  # one gather, not one each
        for table, entry, value in zip(kept_tables.tolist(), kept_entries.tolist(), values,
                                       strict=True):
            l2_offset, at = batch.where(table, entry)
            out.add(clause, f"L2 table {l2_offset:#x} entry {entry}: {text} "
                    f"({value:#x})", at + extra)
        out.add_suppressed(clause, int(tables.size) - keep)

    standard = ~compressed if any_compressed else np.ones(compressed.shape, dtype=bool)
    reserved_mask = L2_RESERVED_EXTENDED if extended else L2_RESERVED
    bad_bits = reserved_mask | (np.uint64(walk.cluster_size - 1) & OFFSET_MASK)
    if bool(((descriptors & bad_bits) != 0).any()):
        reserved = standard & ((descriptors & reserved_mask) != 0)
        if extended:
            zero_flag_only = reserved & ((descriptors & L2_RESERVED) == 0)
            report("EL2-2", zero_flag_only, "zero flag set in an extended L2 entry")
            reserved &= ~zero_flag_only
        report("L2-1", reserved, "reserved bits set")
        misaligned = standard & ((descriptors & np.uint64(walk.cluster_size - 1)
                                  & OFFSET_MASK) != 0)
        report("L2-2", misaligned, "data offset is not cluster-aligned")
    zero_flag = decoded.zero_flag
    any_zero_flag = bool(zero_flag.any())
    if image.version < 3 and any_zero_flag:
        report("L2-4", zero_flag, "zero flag in a version 2 image")

    host = decoded.host & ~np.uint64(walk.cluster_size - 1)  # misaligned: reported above
    allocated = host != 0
    clusters = (host >> np.uint64(walk.cluster_bits)).astype(np.intp)
    copied = descriptors >= COPIED
    if external:
        _check_external(walk, batch, host, allocated, compressed, copied, report)
    else:
        _count_data(walk, batch, clusters, allocated, report)
        # DATA-10: host offset 0 with bit 63 means "offset 0 in the data file", which
        # needs a data file; without one the entry is unallocated and bit 63 is wrong.
        report("DATA-10", standard & ~allocated & copied,
               "bit 63 set with host offset 0 in an image without an external data file")
    if any_zero_flag and image.version >= 3:
        preallocated = standard & zero_flag & allocated
        if not external:  # with a data file, host offsets are not clusters of this file
            walk.mark_zero(clusters[preallocated])
        if preallocated.any():
            table, entry = (int(i[0]) for i in np.nonzero(preallocated))
            out.add("L2-5", f"L2 table {int(batch.offsets[table]):#x}: "
                    f"{int(preallocated.sum())} preallocated zero cluster(s) (zero flag with "
                    "a host cluster), first at entry "
                    f"{entry}", batch.where(table, entry)[1])
    if any_compressed:
        report("L2-3", compressed & copied, "compressed cluster with COPIED set")
        if external:
            report("DATA-6", compressed, "compressed cluster with an external data file")
        else:
            _check_compressed(walk, batch, descriptors, compressed, report)
    if not external:
        _check_copied(walk, batch, clusters, allocated, copied, report)
    if extended:
        idle = _check_subclusters(batch, compressed, allocated, report, out)
        if not external:
            walk.mark_zero(clusters[idle])
    if walk.zones is not None and walk.zones.dead_from is not None and active_rows.any():
        holds_data = compressed | allocated
        if extended:
            holds_data &= compressed | ((batch.bitmaps() & LOW32) != 0)
        else:
            holds_data &= ~zero_flag
        _find_dead_data(walk, batch, holds_data & active_rows[:, None])


def _find_dead_data(walk: Walk, batch: L2Batch, holds_data: np.ndarray) -> None:
    """WP-10: data clusters of the active map that lie at or above their zone's wp."""
    import numpy as np

    zones = walk.zones
    assert zones is not None and zones.dead_from is not None
    if not holds_data.any():
        return
    guest = batch.guest_offsets(walk.cluster_size)[holds_data]
    zone = guest >> zones.zone_bits
    inside = zone < zones.dead_from.size
    guest, zone = guest[inside], zone[inside]
    dead_zones = zone[guest >= zones.dead_from[zone]]
    if dead_zones.size:
        numbers, counts = np.unique(dead_zones, return_counts=True)
        for number, count in zip(numbers, counts, strict=True):
            key = int(number)
            zones.dead_clusters[key] = zones.dead_clusters.get(key, 0) + int(count)


def _count_data(walk: Walk, batch: L2Batch, clusters: np.ndarray,
                allocated: np.ndarray, report: Reporter) -> None:
    """References to data clusters (RC-3), weighted by how many L1 entries share a table.

    A data cluster past the end of the file is L2-2 in a table the active L1 reaches and
    SNAP-7 in one only snapshots reach; it counts no reference.
    """
    import numpy as np

    indices = clusters[allocated]
    past = indices >= walk.num_clusters
    if past.any():
        beyond = allocated & (clusters >= walk.num_clusters)
        active = (batch.guest_bases >= 0)[:, None]
        report("L2-2", beyond & active, "data cluster is past the end of the file")
        report("SNAP-7", beyond & ~active, "data cluster (snapshot only) is past the end "
               "of the file")
        allocated = allocated & ~beyond
        indices = indices[~past]
    if bool((batch.weights == 1).all()):
        walk.stats["data_clusters"] += int(indices.size)
        walk.claim_clusters(indices, Role.DATA, 1, what="data")
    else:
        weights = np.broadcast_to(batch.weights[:, None], allocated.shape)[allocated]
        walk.stats["data_clusters"] += int(weights.sum())
        walk.claim_clusters(indices, Role.DATA, weights, what="data")


def _check_copied(walk: Walk, batch: L2Batch, clusters: np.ndarray, allocated: np.ndarray,
                  copied: np.ndarray, report: Reporter) -> None:
    """L2-3: COPIED exactly when the data cluster's refcount is 1 (active tables only)."""
    import numpy as np

    if walk.stored is None:
        return
    active = (batch.guest_bases >= 0)[:, None] & allocated & (clusters < walk.num_clusters)
    if not active.any():
        return
    # Clusters past the end of the file were reported already; clip keeps the gather safe.
    refcount_is_one = np.take(walk.stored, clusters, mode="clip") == 1
    # A dirty image's stored refcounts may lag, and the COPIED flags with them (HDR-12).
    clause = "HDR-12" if walk.image.header.is_dirty else "L2-3"
    report(clause, active & (copied != refcount_is_one),
           "COPIED flag disagrees with the data cluster's refcount")


def _check_external(walk: Walk, batch: L2Batch, host: np.ndarray, allocated: np.ndarray,
                    compressed: np.ndarray, copied: np.ndarray, report: Reporter) -> None:
    """DATA-5: with an external data file, host offset = guest offset; DATA-9: COPIED on
    every allocated standard entry (each guest cluster has an implied refcount of 1)."""
    import numpy as np

    report("DATA-9", allocated & ~compressed & ~copied,
           "allocated cluster without bit 63 in an image with an external data file")
    active = batch.guest_bases >= 0
    if not active.any():
        return
    guest = batch.guest_offsets(walk.cluster_size).astype(np.uint64)
    report("DATA-5", active[:, None] & allocated & (host != guest),
           "host offset differs from the guest offset")


def _check_compressed(walk: Walk, batch: L2Batch, descriptors: np.ndarray,
                      compressed: np.ndarray, report: Reporter) -> None:
    """CMP-1, CMP-2, the references a compressed range makes (CMP-3) and CMP-4."""
    import numpy as np

    file_size = np.uint64(walk.image.file_size)
    offset_bits = 62 - (walk.cluster_bits - 8)
    offsets = np.where(compressed, descriptors & np.uint64((1 << offset_bits) - 1), 0)
    sectors = ((descriptors >> np.uint64(offset_bits))
               & np.uint64((1 << (walk.cluster_bits - 8)) - 1)) + np.uint64(1)
    ends = (offsets & ~np.uint64(SECTOR - 1)) + sectors * np.uint64(SECTOR)
    report("CMP-1", compressed & (offsets >= np.uint64(1 << 56)),
           "compressed offset sets bits at 56 or above")
    # The sector count is an upper bound: the data may end inside its last
    # sector, so only a last sector that starts past the end is an error.
    past = compressed & (ends - np.uint64(SECTOR) >= file_size)
    report("CMP-2", past, "compressed data runs past the end of the file")
    inside = compressed & ~past
    weights = np.broadcast_to(batch.weights[:, None], compressed.shape)[inside]
    starts, stops = offsets[inside], np.minimum(ends[inside], file_size)
    first = starts >> np.uint64(walk.cluster_bits)
    last = (stops - np.uint64(1)) >> np.uint64(walk.cluster_bits)
    for extra in range(3):
        clusters = first + np.uint64(extra)
        spans = clusters <= last
        walk.claim_clusters(clusters[spans], Role.COMPRESSED, weights[spans],
                            clause_past_eof="CMP-2", what="compressed data")
    walk.stats["compressed_clusters"] += int(weights.sum())
    walk.compressed_starts.append(starts)
    walk.compressed_ends.append(stops)
    _decode_streams(walk, batch, inside, starts, stops)


def _decode_streams(walk: Walk, batch: L2Batch, inside: np.ndarray, starts: np.ndarray,
                    stops: np.ndarray) -> None:
    """CMP-4: decode compressed streams, up to the per-image bound (the rest: CMP-5)."""
    import numpy as np

    kind = compression_type(walk.image)
    if kind not in (0, 1):
        return  # an unknown compression type is HDR-22; nothing can decode it
    count = int(starts.size)
    budget = walk.streams_left if kind == 0 or zstandard is not None else 0
    decode = min(budget, count)
    walk.streams_left -= decode
    walk.streams_unverified += count - decode
    if not decode:
        return
    where = np.nonzero(inside)
    for number in range(decode):
        start, stop = int(starts[number]), int(stops[number])
        problem = decode_stream(kind, walk.pread(start, stop - start), walk.cluster_size)
        if problem:
            table, entry = int(where[0][number]), int(where[1][number])
            l2_offset, at = batch.where(table, entry)
            walk.out.add("CMP-4", f"L2 table {l2_offset:#x} entry {entry}: compressed "
                         f"data at {start:#x}: {problem}", at)
    walk.stats["compressed_streams_decoded"] += decode


def decode_stream(kind: int, data: bytes, cluster_size: int) -> str | None:
    """Why `data` does not decode to exactly one cluster, or None when it does."""
    if kind == 0:
        decoder = zlib.decompressobj(-15)  # raw deflate, no zlib header
        try:
            output = decoder.decompress(data, cluster_size)
            more = b"" if decoder.eof else decoder.decompress(decoder.unconsumed_tail, 1)
        except zlib.error as error:
            return f"not a raw deflate stream ({error})"
        name = "deflate"
    else:
        assert zstandard is not None
        try:
            # One read: it stops at the end of the frame (trailing bytes of the last
            # sector are not parsed) and never returns more than asked for.
            output = zstandard.ZstdDecompressor().stream_reader(data).read(cluster_size + 1)
        except zstandard.ZstdError as error:
            return f"not a zstd stream ({error})"
        more, output = output[cluster_size:], output[:cluster_size]
        name = "zstd"
    if len(output) < cluster_size:
        return f"{name} stream decodes to {len(output)} bytes, not one cluster ({cluster_size})"
    if more:
        return f"{name} stream decodes to more than one cluster ({cluster_size} bytes)"
    return None


def check_compressed_sharing(walk: Walk) -> None:
    """CMP-3 (a note): host clusters holding parts of more than one compressed range;
    CMP-5 (a note): compressed clusters CMP-4 did not decode."""
    import numpy as np

    if walk.streams_unverified:
        reason = ("no zstd decoder is installed (the zstandard module)"
                  if zstandard is None and compression_type(walk.image) == 1
                  else f"past the bound of {MAX_DECODED_STREAMS} streams per image")
        walk.out.add("CMP-5", f"{walk.streams_unverified} compressed cluster(s) were not "
                     f"decoded: {reason}; CMP-4 is unverified for them")
        walk.stats["compressed_streams_unverified"] = walk.streams_unverified
    if not walk.compressed_starts:
        return
    # One range per distinct start: a descriptor repeated in snapshot copies of an L2
    # table is one compressed cluster, not sharing.
    starts, first = np.unique(np.concatenate(walk.compressed_starts), return_index=True)
    stops = np.concatenate(walk.compressed_ends)[first]
    if starts.size < 2:
        return
    bits = np.uint64(walk.cluster_bits)
    low, high = starts >> bits, (stops - np.uint64(1)) >> bits
    # A range is at most two clusters long, so it touches at most three host clusters.
    touched = np.concatenate([(low + np.uint64(k))[low + np.uint64(k) <= high]
                              for k in range(3)])
    clusters, uses = np.unique(touched, return_counts=True)
    shared = clusters[uses > 1]
    if shared.size:
        walk.out.add("CMP-3", f"{int(shared.size)} host cluster(s) hold data of more than one "
                     f"compressed cluster, first cluster {int(shared[0])}",
                     int(shared[0]) << walk.cluster_bits)


def compression_type(image: Image) -> int:
    """The compression type (HDR-22): 0 when the field is absent."""
    value = getattr(image.header, "compression_type", None)
    return int(value) if value is not None else 0


def _check_subclusters(batch: L2Batch, compressed: np.ndarray, allocated: np.ndarray,
                       report: Reporter, out: Findings) -> np.ndarray:
    """EL2-3..6: the subcluster bitmap of extended L2 entries. Returns the mask of host
    clusters with no allocated subcluster (EL2-6)."""
    import numpy as np

    bitmaps = batch.bitmaps()
    alloc = bitmaps & LOW32
    zero = bitmaps >> np.uint64(32)
    report("EL2-3", ~compressed & ((alloc & zero) != 0),
           "subclusters both allocated and zero", 8)
    report("EL2-4", ~compressed & ~allocated & (alloc != 0),
           "allocated subclusters without a host cluster", 8)
    report("EL2-5", compressed & (bitmaps != 0), "compressed cluster with a subcluster bitmap", 8)
    idle = ~compressed & allocated & (alloc == 0)
    if idle.any():
        table, entry = (int(i[0]) for i in np.nonzero(idle))
        out.add("EL2-6", f"L2 table {int(batch.offsets[table]):#x}: {int(idle.sum())} "
                "host cluster(s) with no allocated subcluster (preallocated), first at entry "
                f"{entry}", batch.where(table, entry)[1] + 8)
    return idle


def check_table_overlaps(walk: Walk) -> None:
    """OVL-2: the byte ranges of the contiguous tables are pairwise disjoint."""
    import numpy as np

    if len(walk.tables) < 2:
        return
    starts = np.array([t[0] for t in walk.tables], dtype=np.uint64)
    ends = starts + np.array([t[1] for t in walk.tables], dtype=np.uint64)
    order = np.argsort(starts, kind="stable")
    reach = np.maximum.accumulate(ends[order])
    # Range order[i] overlaps an earlier one when it starts before the furthest end so far.
    overlapping = np.nonzero(starts[order][1:] < reach[:-1])[0] + 1
    keep = min(walk.out.room("OVL-2"), int(overlapping.size))
    for position in overlapping[:keep]:
        index = int(order[position])
        offset, length, name = walk.tables[index]
        other = next(walk.tables[int(j)] for j in order[:position]
                     if int(ends[int(j)]) > offset)
        walk.out.add("OVL-2", f"{name} at {offset:#x} ({length} bytes) overlaps {other[2]} "
                     f"at {other[0]:#x} ({other[1]} bytes)", offset)
    walk.out.add_suppressed("OVL-2", int(overlapping.size) - keep)


def compare_refcounts(walk: Walk) -> None:
    """RC-4 (stored < references) and RC-5 (stored > references); HDR-12 when dirty."""
    import numpy as np

    if walk.stored is None:
        return
    out = walk.out
    dirty = bool(walk.image.header.is_dirty)
    below_total = above_total = 0
    for start in range(0, walk.num_clusters, COMPARE_CHUNK):
        stored = walk.stored[start:start + COMPARE_CHUNK]
        refs = walk.refs[start:start + COMPARE_CHUNK]
        if stored.dtype == np.uint64:
            refs = refs.astype(np.uint64)
        below = np.nonzero(stored < refs)[0]
        above = np.nonzero(stored > refs)[0]
        below_total += int(below.size)
        above_total += int(above.size)

        def describe(index: int, leaked: bool, first: int = start,
                     stored: np.ndarray = stored, refs: np.ndarray = refs
                     ) -> tuple[str, int]:
            cluster = first + index
            if leaked:
                text = (f"cluster {cluster} is leaked: refcount {int(stored[index])}, "
                        f"{int(refs[index])} reference(s)")
            else:
                text = (f"cluster {cluster} has refcount {int(stored[index])} but "
                        f"{int(refs[index])} reference(s)")
            return text, cluster << walk.cluster_bits

        report_indices(out, "HDR-12" if dirty else "RC-4", below,
                       lambda i: describe(i, False))
        report_indices(out, "HDR-12" if dirty else "RC-5", above,
                       lambda i: describe(i, True))
        if walk.progress is not None:
            walk.progress("refcounts", min(start + COMPARE_CHUNK, walk.num_clusters),
                          walk.num_clusters)
    walk.stats["corrupt_refcounts"] = below_total
    walk.stats["leaked_clusters"] = above_total


def new_walk(image: Image, out: Findings) -> Walk:
    import numpy as np

    cluster_size = image.cluster_size
    num_clusters = -(-image.file_size // cluster_size)
    return Walk(
        image=image,
        out=out,
        cluster_size=cluster_size,
        cluster_bits=image.cluster_bits,
        num_clusters=num_clusters,
        refs=np.zeros(num_clusters, dtype=np.uint32),
        roles=np.zeros(num_clusters, dtype=np.uint8),
    )


def check_metadata(image: Image, out: Findings, zones: Zones | None = None,
                   progress: StageProgress | None = None, *,
                   cluster_map: bool = False) -> Walk | None:
    """The whole metadata walk. Returns the walk (for stats and zoned checks).

    With `zones` (the zoned extension, read first), the walk also finds data clusters
    above a write pointer (WP-10) in the active map. `progress` is told how far the
    L2 walk and the refcount comparison are. With `cluster_map`, the walk also keeps
    what cluster_kinds() needs (two more bytes per host cluster). A small image without
    zones walks on Python ints (checker/small.py), so that numpy is not imported.
    """
    if zones is None and not cluster_map:
        from qcow2harness.checker.small import walk_small_image

        small = walk_small_image(image, out, progress)
        if small is not None:
            return small
    import numpy as np

    walk = new_walk(image, out)
    walk.zones = zones
    walk.progress = progress
    if cluster_map:
        walk.zero_marks = np.zeros(walk.num_clusters, dtype=bool)
        walk.clash_marks = np.zeros(walk.num_clusters, dtype=bool)
    # Cluster 0 only: a header_length past it is HDR-7, not an overlap.
    walk.claim(0, min(max(image.len_header, 1), walk.cluster_size), Role.HEADER)
    read_stored_refcounts(walk)

    sources: list[L1Source] = []
    try:
        sources.append(L1Source("active", int(image.header.ofs_l1_table), image.l1_entries(),
                                True))
    except ParseError:
        pass  # reported by the header checks (HDR-15)
    sources.extend(snapshot_sources(walk))
    claim_feature_metadata(walk)
    walk_l1_tables(walk, sources)
    check_compressed_sharing(walk)
    check_table_overlaps(walk)
    compare_refcounts(walk)
    walk.stats["clusters_in_file"] = walk.num_clusters
    return walk


class ClusterKind(IntEnum):
    """What a host cluster is, for maps: its role (OVL-1), or what the recount found."""

    FREE = Role.NONE
    HEADER = Role.HEADER
    L1 = Role.L1
    SNAPSHOT_L1 = Role.SNAPSHOT_L1
    L2 = Role.L2
    REFCOUNT_TABLE = Role.REFCOUNT_TABLE
    REFCOUNT_BLOCK = Role.REFCOUNT_BLOCK
    SNAPSHOT_TABLE = Role.SNAPSHOT_TABLE
    BITMAP_DIRECTORY = Role.BITMAP_DIRECTORY
    BITMAP_TABLE = Role.BITMAP_TABLE
    BITMAP_DATA = Role.BITMAP_DATA
    CRYPT_HEADER = Role.CRYPT_HEADER
    ZONEDMETA = Role.ZONEDMETA
    DATA = Role.DATA
    COMPRESSED = Role.COMPRESSED
    ZERO = 15  # preallocated by an L2 entry that reads no data from it (L2-5, EL2-6)
    LEAKED = 16  # stored refcount above the references counted (RC-5)
    CORRUPT = 17  # stored refcount below the references (RC-4), or two roles (OVL-1)


def cluster_kinds(walk: Walk) -> np.ndarray:
    """The ClusterKind of every host cluster of the file, as uint8, from the walk's recount.

    Leaked and corrupt are the clusters compare_refcounts() counts (stats leaked_clusters
    and corrupt_refcounts), plus OVL-1 clashes; they win over the role. The walk must come
    from check_metadata(..., cluster_map=True).
    """
    import numpy as np

    if walk.zero_marks is None or walk.clash_marks is None:
        raise ValueError("cluster_kinds() needs a walk made with cluster_map=True")
    kinds = walk.roles.copy()
    for start in range(0, walk.num_clusters, COMPARE_CHUNK):  # bounded temporaries
        part = slice(start, start + COMPARE_CHUNK)
        chunk, refs = kinds[part], walk.refs[part]
        # Data claims give no role (claim_clusters), so data is "referenced, no role".
        data = (chunk == Role.NONE) & (refs > 0)
        chunk[data] = ClusterKind.DATA
        chunk[data & walk.zero_marks[part]] = ClusterKind.ZERO
        if walk.stored is not None:
            stored = walk.stored[part]
            if stored.dtype == np.uint64:
                refs = refs.astype(np.uint64)
            chunk[stored > refs] = ClusterKind.LEAKED
            chunk[stored < refs] = ClusterKind.CORRUPT
        chunk[walk.clash_marks[part]] = ClusterKind.CORRUPT
    return kinds


def snapshot_sources(walk: Walk) -> list[L1Source]:
    image, out = walk.image, walk.out
    try:
        snapshots = image.snapshots()
    except ParseError as error:
        out.add("SNAP-1", error.message, error.offset)
        return []
    sources = []
    offset = int(image.header.ofs_snapshot_table)
    table_length = 0
    v3 = image.version >= 3
    cluster_size, file_size = walk.cluster_size, image.file_size
    # SNAP-5 past the kept ones: counted here, added in one go after the loop (the clause
    # is already among the suppressed then, so the report's order is the same).
    snap5_more = 0
    for number, entry in enumerate(snapshots):
        extra = entry.len_extra_data
        length = 40 + extra + entry.len_id_str + entry.len_name
        length += -length % 8
        table_length += length
        if v3 and extra < 16:
            if snap5_more:
                snap5_more += 1
            elif out.room("SNAP-5"):  # tables of thousands of empty entries are common
                out.add("SNAP-5", f"snapshot {number} has {extra} bytes of "
                        "extra data; version 3 needs at least 16", offset)
            else:
                out.add_suppressed("SNAP-5", 1)
                snap5_more = 1
        if extra > 1024:
            out.add("SNAP-6", f"snapshot {number} has {extra} bytes of extra "
                    "data", offset)
        ofs_l1 = int(entry.ofs_l1_table)
        num_l1 = int(entry.num_l1_entries)
        if num_l1 * 8 > 32 * 1024 * 1024:
            out.add("SNAP-4", f"snapshot {number} L1 table has {num_l1} entries", offset)
        elif ofs_l1 % cluster_size or (num_l1 and ofs_l1 == 0):
            out.add("SNAP-3", f"snapshot {number} L1 table offset {ofs_l1:#x} is not "
                    "cluster-aligned", offset)
        elif num_l1 == 0 and ofs_l1 <= file_size:
            pass  # an empty table inside the file: nothing to read, claim or report
        else:
            try:
                entries = image.read_u64_table(f"snapshot {number} L1 table", ofs_l1, num_l1,
                                               "SNAP-3")
            except ParseError as error:
                out.add("SNAP-3", error.message, error.offset)
            else:
                sources.append(L1Source(f"snapshot {number}", ofs_l1, entries, False))
        offset += length
    out.add_suppressed("SNAP-5", snap5_more - 1)
    if snapshots:
        if table_length > 64 * 1024 * 1024:
            out.add("SNAP-2", f"snapshot table is {table_length} bytes, above 64 MiB",
                    int(image.header.ofs_snapshot_table))
        walk.claim(int(image.header.ofs_snapshot_table), table_length, Role.SNAPSHOT_TABLE,
                   clause_past_eof="SNAP-1")
        walk.table(int(image.header.ofs_snapshot_table), table_length, "snapshot table")
    return sources


def claim_feature_metadata(walk: Walk) -> None:
    """References from the bitmaps, encryption and zoned extensions (RC-3)."""
    image = walk.image
    try:
        extensions = image.extensions()
    except ParseError:
        return
    for ext in extensions:
        if not ext.is_body_typed:
            continue
        if ext.magic == ExtensionType.full_disk_encryption:
            claim_crypt_header(walk, ext)
        elif ext.magic == ExtensionType.bitmaps:
            # BMP-2: with autoclear bit 0 clear the bitmaps must not be used, so their
            # clusters are not references and show up as leaks, as in qemu-img check.
            if image.header.has_bitmaps:
                claim_bitmaps(walk, ext)
        elif ext.magic == ExtensionType.zoned:
            body = ext.body
            offset = int(body.ofs_zonedmeta)
            length = int(body.num_zones) * 8
            if offset and offset % walk.cluster_size == 0 and offset + length <= image.file_size:
                walk.claim(offset, length, Role.ZONEDMETA)
                walk.table(offset, length, "zonedmeta table")


def claim_crypt_header(walk: Walk, ext: Extension) -> None:
    """CRYPT-3..5: the encryption header region, its LUKS magic and its zeroed slack."""
    image, out = walk.image, walk.out
    offset, length = int(ext.body.ofs_crypt_header), int(ext.body.len_crypt_header)
    if offset % walk.cluster_size or offset == 0 or offset + length > image.file_size:
        out.add("CRYPT-3", f"encryption header at {offset:#x} ({length} bytes) is not "
                "cluster-aligned or not inside the file", ext.offset + 8)
        return
    walk.claim(offset, length, Role.CRYPT_HEADER)
    walk.table(offset, length, "encryption header")
    if walk.pread(offset, 6) != b"LUKS\xba\xbe":
        out.add("CRYPT-4", "encryption header does not start with the LUKS magic", offset)
    end = offset + length
    slack = walk.pread(end, -end % walk.cluster_size)
    if slack.count(0) != len(slack):
        first = next(i for i, byte in enumerate(slack) if byte)
        out.add("CRYPT-5", f"the encryption header's last cluster is not zero after its "
                f"{length} bytes (first non-zero byte at {end + first:#x})", end + first)


def bitmap_table_entries(virtual_size: int, granularity_bits: int, cluster_size: int) -> int:
    """BMP-11: bitmap table entries a bitmap of the virtual disk needs."""
    bits = -(-virtual_size >> granularity_bits) if granularity_bits < 64 else 1
    return -(-bits // (8 * cluster_size))


def claim_bitmaps(walk: Walk, ext: Extension) -> None:
    image, out = walk.image, walk.out
    body = ext.body
    if body.num_bitmaps < 1 or body.reserved:
        out.add("BMP-3", f"bitmaps extension: nb_bitmaps {body.num_bitmaps}, reserved "
                f"{body.reserved}", ext.offset + 8)
    if body.num_bitmaps > 65535 or body.len_bitmap_directory > 64 * 1024 * 1024:
        out.add("BMP-4", f"bitmaps extension: nb_bitmaps {body.num_bitmaps}, directory "
                f"{body.len_bitmap_directory} bytes", ext.offset + 8)
        return
    dir_offset = int(body.ofs_bitmap_directory)
    if dir_offset % walk.cluster_size or dir_offset == 0:
        out.add("BMP-5", f"bitmap directory offset {dir_offset:#x} is not cluster-aligned",
                ext.offset + 24)
        return
    try:
        entries = image.bitmap_directory()
    except ParseError as error:
        out.add("BMP-5", error.message, error.offset)
        return
    walk.claim(dir_offset, int(body.len_bitmap_directory), Role.BITMAP_DIRECTORY)
    walk.table(dir_offset, int(body.len_bitmap_directory), "bitmap directory")
    if len(entries) != body.num_bitmaps:
        out.add("BMP-3", f"bitmap directory holds {len(entries)} entries, nb_bitmaps says "
                f"{body.num_bitmaps}", dir_offset)
    names: set[bytes] = set()
    tail_budget = MAX_BITMAP_TAIL_BYTES
    at = dir_offset
    for number, entry in enumerate(entries):
        entry_at = at
        at += 24 + int(entry.len_extra_data) + int(entry.len_name) + len(entry.padding)
        if entry.reserved_flags or entry.bitmap_type != 1:
            out.add("BMP-6", f"bitmap {number}: flags {entry.flags:#x}, type "
                    f"{entry.bitmap_type}", entry_at)
        if not 9 <= entry.granularity_bits <= 31:
            out.add("BMP-7", f"bitmap {number}: granularity_bits {entry.granularity_bits}",
                    entry_at)
        if entry.len_name > 1023:
            out.add("BMP-4", f"bitmap {number}: name is {entry.len_name} bytes, above 1023",
                    entry_at + 18)
        if not entry.len_name or entry.name in names:
            out.add("BMP-8", f"bitmap {number}: name empty or repeated", entry_at + 18)
        names.add(entry.name)
        if any(entry.padding):
            out.add("BMP-9", f"bitmap {number}: entry padding is not zero",
                    at - len(entry.padding))
        if entry.len_extra_data and not entry.flags & 4:
            out.add("BMP-10", f"bitmap {number}: extra data without extra_data_compatible",
                    entry_at)
        tail_budget -= claim_bitmap_table(walk, number, entry, entry_at, tail_budget)


def claim_bitmap_table(walk: Walk, number: int, entry: Any, entry_at: int,
                       tail_budget: int) -> int:
    """BMP-11..13 for one bitmap; returns the bytes of bitmap tail it read."""
    import numpy as np

    image, out = walk.image, walk.out
    table_offset = int(entry.ofs_bitmap_table)
    count = int(entry.num_bitmap_table_entries)
    if table_offset % walk.cluster_size or table_offset == 0:
        out.add("BMP-11", f"bitmap {number}: table offset {table_offset:#x} is not "
                "cluster-aligned", entry_at)
        return 0
    try:
        table = image.read_u64_table(f"bitmap {number} table", table_offset, count, "BMP-11")
    except ParseError as error:
        out.add("BMP-11", error.message, error.offset)
        return 0
    walk.claim(table_offset, count * 8, Role.BITMAP_TABLE)
    walk.table(table_offset, count * 8, f"bitmap {number} table")
    granularity_bits = int(entry.granularity_bits)
    virtual_size = int(image.header.virtual_size)
    expected = bitmap_table_entries(virtual_size, granularity_bits, walk.cluster_size)
    if count != expected:
        out.add("BMP-11", f"bitmap {number}: table has {count} entries, the bitmap of "
                f"{virtual_size} bytes at granularity 2^{granularity_bits} needs {expected}",
                entry_at + 8)

    def describe(index: int, text: str) -> tuple[str, int]:
        return (f"bitmap {number} table entry {index} ({int(table[index]):#x}): {text}",
                table_offset + 8 * index)

    report_indices(out, "BMP-12", np.nonzero(table & BITMAP_TABLE_RESERVED)[0],
                   lambda i: describe(i, "reserved bits set"))
    data = table & OFFSET_MASK
    present = data != 0
    report_indices(out, "BMP-12", np.nonzero(present & ((table & np.uint64(1)) != 0))[0],
                   lambda i: describe(i, "bit 0 (all ones) set with a data cluster offset"))
    misaligned = present & ((data & np.uint64(walk.cluster_size - 1)) != 0)
    report_indices(out, "BMP-12", np.nonzero(misaligned)[0],
                   lambda i: describe(i, "data offset is not cluster-aligned"))
    walk.claim_clusters(data[present & ~misaligned] >> np.uint64(walk.cluster_bits),
                        Role.BITMAP_DATA, clause_past_eof="BMP-12", what="bitmap data")
    if count != expected or not count or misaligned[-1] or not present[-1]:
        return 0
    # BMP-13: bits of the last data cluster past the end of the bitmap are zero.
    bits = -(-virtual_size >> granularity_bits)
    used = bits - (count - 1) * 8 * walk.cluster_size
    tail_offset = int(data[-1]) + used // 8
    tail_length = walk.cluster_size - used // 8
    if used % (8 * walk.cluster_size) == 0 or tail_length > tail_budget:
        return 0
    tail = bytearray(walk.pread(tail_offset, tail_length))
    if tail and used % 8:
        tail[0] &= 0xFF ^ ((1 << used % 8) - 1)  # bit 0 of a byte is its first bit
    if tail.count(0) != len(tail):
        out.add("BMP-13", f"bitmap {number}: bits past the end of the bitmap ({bits} bits) "
                f"are set in its last data cluster", tail_offset)
    return tail_length
