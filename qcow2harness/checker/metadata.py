"""The metadata walk: refcount recount, COPIED flags, entry bits, roles and overlaps.

Bulk tables are read as numpy arrays at the offsets the Kaitai parse located
(qcow2harness.image); nothing allocates per entry, and nothing is allocated
that the file cannot back: every array is sized by the file's cluster count.

Reference counting follows RC-3: one reference per use of a host cluster. L2
tables shared by several L1 tables (snapshots) are read once and weighted by
how many L1 entries point to them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from qcow2harness.checker.report import Findings
from qcow2harness.errors import ParseError
from qcow2harness.image import ExtensionType, Image

# Entry bit masks, as the ksy instances define them (tests compare both views).
OFFSET_MASK = np.uint64(0x00FFFFFFFFFFFE00)  # L1/L2/bitmap table offsets, bits 9-55
L1_RESERVED = np.uint64(0x7F000000000001FF)
L2_RESERVED = np.uint64(0x3F000000000001FE)
L2_RESERVED_EXTENDED = np.uint64(0x3F000000000001FF)  # bit 0 is reserved too (EL2-2)
BITMAP_TABLE_RESERVED = np.uint64(0xFF000000000001FE)
REFTABLE_OFFSET_MASK = np.uint64(0xFFFFFFFFFFFFFE00)
REFTABLE_RESERVED = np.uint64(0x1FF)
COPIED = np.uint64(1 << 63)
COMPRESSED = np.uint64(1 << 62)
ZERO_FLAG = np.uint64(1)
LOW32 = np.uint64(0xFFFFFFFF)
SECTOR = 512

# L2 tables are read in batches of this many bytes, to bound memory.
L2_BATCH_BYTES = 4 * 1024 * 1024
COMPARE_CHUNK = 1 << 22


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


# report(clause, mask over (table, entry), text, byte offset within the entry)
Reporter = Callable[..., None]

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

    # -- references --------------------------------------------------------

    def claim(self, offset: int, length: int, role: Role, clause_past_eof: str = "OVL-3",
              what: str | None = None, weight: int = 1) -> None:
        """Count one reference to each cluster of [offset, offset+length) and give it a role."""
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
        self.refs[first:last + 1] += weight
        current = self.roles[first:last + 1]
        clash = (current != Role.NONE) & (current != role)
        if clash.any():
            index = first + int(np.argmax(clash))
            self.out.add("OVL-1", f"{name} at {offset:#x} overlaps "
                         f"{ROLE_NAMES[Role(int(self.roles[index]))]} in cluster {index}",
                         index << self.cluster_bits)
        current[current == Role.NONE] = role

    def claim_clusters(self, indices: np.ndarray, role: Role, weights: np.ndarray | int = 1,
                       clause_past_eof: str = "OVL-3", what: str = "") -> None:
        """Vectorised claim of whole clusters by index."""
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
        idx = indices.astype(np.intp)
        add_references(self.refs, idx, weights)
        current = self.roles[idx]
        # Same-role sharing (snapshots, CMP-3) shows in the refcounts, not as an overlap.
        clash = (current != Role.NONE) & (current != role)
        if clash.any():
            at = int(idx[np.argmax(clash)])
            self.out.add("OVL-1", f"{int(clash.sum())} {what or ROLE_NAMES[role]} cluster(s) "
                         f"overlap other metadata, first cluster {at} "
                         f"({ROLE_NAMES[Role(int(self.roles[at]))]})", at << self.cluster_bits)
        if role != Role.DATA:
            # Metadata is claimed before data, so data needs no role of its own to be
            # caught overlapping metadata; skipping the scatter keeps the walk linear.
            self.roles[idx[current == Role.NONE]] = role

    # -- reading -------------------------------------------------------------

    def pread(self, offset: int, length: int) -> bytes:
        return self.image.pread(offset, length)


def add_references(refs: np.ndarray, indices: np.ndarray, weights: np.ndarray | int) -> None:
    """refs[indices] += weights, counting repeated indices (two entries, one cluster)."""
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


def decode_refcounts(raw: bytes, refcount_order: int) -> np.ndarray:
    """Refcount block bytes as an array; sub-byte refcounts are LSB first (RC-1)."""
    if refcount_order <= 3:
        data = np.frombuffer(raw, dtype=np.uint8)
        if refcount_order == 3:
            return data
        bits = 1 << refcount_order
        shifts = (np.arange(8 // bits, dtype=np.uint8) * bits).astype(np.uint8)
        return ((data[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1).astype(np.uint8)
    dtype = {4: ">u2", 5: ">u4", 6: ">u8"}[refcount_order]
    return np.frombuffer(raw, dtype=dtype)


STORED_DTYPE = {0: np.uint8, 1: np.uint8, 2: np.uint8, 3: np.uint8, 4: np.uint16,
                5: np.uint32, 6: np.uint64}


def read_stored_refcounts(walk: Walk) -> None:
    """Read every refcount block into walk.stored (RC-1, RC-2)."""
    image, out = walk.image, walk.out
    order = image.refcount_order
    if order not in STORED_DTYPE:
        return  # HDR-14 is reported by the header checks; no refcount can be read
    try:
        table = image.refcount_table_entries()
    except ParseError as error:
        out.add("HDR-18", error.message, error.offset)
        return
    ofs_table = int(image.header.ofs_refcount_table)
    walk.claim(ofs_table, table.size * 8, Role.REFCOUNT_TABLE)
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


def walk_l1_tables(walk: Walk, sources: Iterable[L1Source]) -> None:
    """L1 entries: reserved bits, alignment, COPIED; collect L2 tables with multiplicity."""
    image, out = walk.image, walk.out
    multiplicity: Counter[int] = Counter()
    active_l2: dict[int, int] = {}  # L2 table offset -> guest offset it maps first
    guest_per_l2 = walk.cluster_size // (16 if image.header.is_extended_l2 else 8) * (
        walk.cluster_size)
    pending_copied: list[tuple[int, bool, int]] = []
    for source in sources:
        entries = source.entries
        role = Role.L1 if source.active else Role.SNAPSHOT_L1
        walk.claim(source.offset, entries.size * 8, role, what=f"{source.name} L1 table")
        reserved = np.nonzero(entries & L1_RESERVED)[0]
        for index in reserved:
            out.add("L1-1", f"{source.name} L1 entry {int(index)} has reserved bits set "
                    f"({int(entries[index]):#x})", source.offset + int(index) * 8)
        offsets = entries & OFFSET_MASK
        for index in np.nonzero(offsets)[0]:
            l2_offset = int(offsets[index])
            entry_at = source.offset + int(index) * 8
            if l2_offset % walk.cluster_size:
                out.add("L1-2", f"{source.name} L1 entry {int(index)}: L2 table offset "
                        f"{l2_offset:#x} is not cluster-aligned", entry_at)
                continue
            if l2_offset + walk.cluster_size > image.file_size:
                out.add("OVL-3", f"{source.name} L1 entry {int(index)}: L2 table at "
                        f"{l2_offset:#x} is past the end of the file", entry_at)
                continue
            multiplicity[l2_offset] += 1
            if source.active:
                active_l2.setdefault(l2_offset, int(index) * guest_per_l2)
                pending_copied.append((l2_offset, bool(entries[index] & COPIED), entry_at))
    for l2_offset, count in multiplicity.items():
        walk.claim(l2_offset, walk.cluster_size, Role.L2, weight=count)
    walk.stats["l2_tables"] = len(multiplicity)
    # L1 COPIED is checked against the stored refcount of the L2 table (L1-3).
    if walk.stored is not None:
        for l2_offset, copied, entry_at in pending_copied:
            refcount = int(walk.stored[l2_offset >> walk.cluster_bits])
            if copied != (refcount == 1):
                out.add("L1-3", f"active L1 entry for L2 table {l2_offset:#x} has COPIED="
                        f"{int(copied)} but the table's refcount is {refcount}", entry_at)
    walk_l2_tables(walk, multiplicity, active_l2)


def walk_l2_tables(walk: Walk, multiplicity: Counter[int], active_l2: dict[int, int]) -> None:
    """Read the L2 tables in batches and check each batch with whole-array operations."""
    extended = bool(walk.image.header.is_extended_l2)
    tables = sorted(multiplicity)
    per_batch = max(1, L2_BATCH_BYTES // walk.cluster_size)
    for start in range(0, len(tables), per_batch):
        offsets = tables[start:start + per_batch]
        raw = b"".join(walk.pread(offset, walk.cluster_size) for offset in offsets)
        batch = L2Batch(
            offsets=np.array(offsets, dtype=np.uint64),
            weights=np.array([multiplicity[o] for o in offsets], dtype=np.uint32),
            guest_bases=np.array([active_l2.get(o, -1) for o in offsets], dtype=np.int64),
            entry_bytes=np.frombuffer(raw, dtype=np.uint8).reshape(
                len(offsets), -1, 16 if extended else 8),
        )
        check_l2_batch(walk, batch)


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

    def descriptors(self) -> np.ndarray:
        """The 64-bit descriptors, native byte order, shape (tables, entries)."""
        first8 = np.ascontiguousarray(self.entry_bytes[:, :, :8])
        return first8.view(">u8")[:, :, 0].astype(np.uint64)

    def bitmaps(self) -> np.ndarray:
        last8 = np.ascontiguousarray(self.entry_bytes[:, :, 8:16])
        return last8.view(">u8")[:, :, 0].astype(np.uint64)

    def where(self, table: int, entry: int) -> tuple[int, int]:
        """(table offset, offset of the entry) for a finding."""
        offset = int(self.offsets[table])
        return offset, offset + entry * self.entry_size


def check_l2_batch(walk: Walk, batch: L2Batch) -> None:
    out, image = walk.out, walk.image
    extended = batch.entry_size == 16
    external = bool(image.header.has_external_data_file)
    # Flag bytes, read without building 64-bit arrays: byte 0 holds bits 56-63.
    top = batch.entry_bytes[:, :, 0]
    low = batch.entry_bytes[:, :, 7]
    compressed = (top & 0x40) != 0
    any_compressed = bool(compressed.any())
    descriptors = batch.descriptors()

    def report(clause: str, mask: np.ndarray, text: str, extra: int = 0) -> None:
        for table, entry in zip(*np.nonzero(mask), strict=True):
            l2_offset, at = batch.where(int(table), int(entry))
            value = int(descriptors[table, entry])
            out.add(clause, f"L2 table {l2_offset:#x} entry {int(entry)}: {text} "
                    f"({value:#x})", at + extra)

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
    if image.version < 3 and bool((low & 1).any()):
        report("L2-4", standard & ((low & 1) != 0), "zero flag in a version 2 image")

    host = descriptors & OFFSET_MASK
    if any_compressed:
        host[compressed] = 0
    host &= ~np.uint64(walk.cluster_size - 1)  # misaligned ones were reported above
    allocated = host != 0
    clusters = (host >> np.uint64(walk.cluster_bits)).astype(np.intp)
    if external:
        _check_external(walk, batch, host, allocated, compressed, report)
    else:
        _count_data(walk, batch, clusters, allocated)
    if any_compressed:
        report("L2-3", compressed & ((top & 0x80) != 0), "compressed cluster with COPIED set")
        if external:
            report("DATA-6", compressed, "compressed cluster with an external data file")
        else:
            _check_compressed(walk, batch, descriptors, compressed, report)
    if not external:
        _check_copied(walk, batch, clusters, allocated, top, report)
    if extended:
        _check_subclusters(batch, compressed, allocated, report)


def _count_data(walk: Walk, batch: L2Batch, clusters: np.ndarray,
                allocated: np.ndarray) -> None:
    """References to data clusters (RC-3), weighted by how many L1 entries share a table."""
    indices = clusters[allocated]
    if bool((batch.weights == 1).all()):
        weights: np.ndarray | int = 1
        walk.stats["data_clusters"] += int(indices.size)
    else:
        weights = np.broadcast_to(batch.weights[:, None], allocated.shape)[allocated]
        walk.stats["data_clusters"] += int(weights.sum())
    walk.claim_clusters(indices, Role.DATA, weights, what="data")


def _check_copied(walk: Walk, batch: L2Batch, clusters: np.ndarray, allocated: np.ndarray,
                  top: np.ndarray, report: Reporter) -> None:
    """L2-3: COPIED exactly when the data cluster's refcount is 1 (active tables only)."""
    if walk.stored is None:
        return
    active = (batch.guest_bases >= 0)[:, None] & allocated & (clusters < walk.num_clusters)
    if not active.any():
        return
    refcount_is_one = walk.stored[np.minimum(clusters, walk.num_clusters - 1)] == 1
    copied = (top & 0x80) != 0
    report("L2-3", active & (copied != refcount_is_one),
           "COPIED flag disagrees with the data cluster's refcount")


def _check_external(walk: Walk, batch: L2Batch, host: np.ndarray, allocated: np.ndarray,
                    compressed: np.ndarray, report: Reporter) -> None:
    """DATA-5: with an external data file, host offset = guest offset."""
    active = batch.guest_bases >= 0
    if not active.any():
        return
    entries = host.shape[1]
    guest = (batch.guest_bases[:, None].astype(np.uint64)
             + np.arange(entries, dtype=np.uint64)[None, :] * np.uint64(walk.cluster_size))
    report("DATA-5", active[:, None] & allocated & (host != guest),
           "host offset differs from the guest offset")


def _check_compressed(walk: Walk, batch: L2Batch, descriptors: np.ndarray,
                      compressed: np.ndarray, report: Reporter) -> None:
    """CMP-1, CMP-2 and the references a compressed range makes (CMP-3)."""
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
    first = offsets[inside] >> np.uint64(walk.cluster_bits)
    last = (np.minimum(ends[inside], file_size) - np.uint64(1)) >> np.uint64(walk.cluster_bits)
    for extra in range(3):
        clusters = first + np.uint64(extra)
        spans = clusters <= last
        walk.claim_clusters(clusters[spans], Role.COMPRESSED, weights[spans],
                            clause_past_eof="CMP-2", what="compressed data")
    walk.stats["compressed_clusters"] += int(weights.sum())


def _check_subclusters(batch: L2Batch, compressed: np.ndarray, allocated: np.ndarray,
                       report: Reporter) -> None:
    """EL2-3..5: the subcluster bitmap of extended L2 entries."""
    bitmaps = batch.bitmaps()
    alloc = bitmaps & LOW32
    zero = bitmaps >> np.uint64(32)
    report("EL2-3", ~compressed & ((alloc & zero) != 0),
           "subclusters both allocated and zero", 8)
    report("EL2-4", ~compressed & ~allocated & (alloc != 0),
           "allocated subclusters without a host cluster", 8)
    report("EL2-5", compressed & (bitmaps != 0), "compressed cluster with a subcluster bitmap", 8)


def compare_refcounts(walk: Walk) -> None:
    """RC-4 (stored < references) and RC-5 (stored > references); HDR-12 when dirty."""
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
        for index in below:
            cluster = start + int(index)
            out.add("HDR-12" if dirty else "RC-4", f"cluster {cluster} has refcount "
                    f"{int(stored[index])} but {int(refs[index])} reference(s)",
                    cluster << walk.cluster_bits)
        for index in above:
            cluster = start + int(index)
            out.add("HDR-12" if dirty else "RC-5", f"cluster {cluster} is leaked: refcount "
                    f"{int(stored[index])}, {int(refs[index])} reference(s)",
                    cluster << walk.cluster_bits)
    walk.stats["corrupt_refcounts"] = below_total
    walk.stats["leaked_clusters"] = above_total


def new_walk(image: Image, out: Findings) -> Walk:
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


def check_metadata(image: Image, out: Findings) -> Walk | None:
    """The whole metadata walk. Returns the walk (for stats and zoned checks)."""
    walk = new_walk(image, out)
    walk.claim(0, max(image.len_header, 1), Role.HEADER)
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
    compare_refcounts(walk)
    walk.stats["clusters_in_file"] = walk.num_clusters
    return walk


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
    for number, entry in enumerate(snapshots):
        length = 40 + entry.len_extra_data + entry.len_id_str + entry.len_name
        length += -length % 8
        table_length += length
        if image.version >= 3 and entry.len_extra_data < 16:
            out.add("SNAP-5", f"snapshot {number} has {entry.len_extra_data} bytes of extra "
                    "data; version 3 needs at least 16", offset)
        if entry.len_extra_data > 1024:
            out.add("SNAP-6", f"snapshot {number} has {entry.len_extra_data} bytes of extra "
                    "data", offset)
        ofs_l1 = int(entry.ofs_l1_table)
        num_l1 = int(entry.num_l1_entries)
        if num_l1 * 8 > 32 * 1024 * 1024:
            out.add("SNAP-4", f"snapshot {number} L1 table has {num_l1} entries", offset)
        elif ofs_l1 % walk.cluster_size or (num_l1 and ofs_l1 == 0):
            out.add("SNAP-3", f"snapshot {number} L1 table offset {ofs_l1:#x} is not "
                    "cluster-aligned", offset)
        else:
            try:
                entries = image.read_u64_table(f"snapshot {number} L1 table", ofs_l1, num_l1,
                                               "SNAP-3")
            except ParseError as error:
                out.add("SNAP-3", error.message, error.offset)
            else:
                sources.append(L1Source(f"snapshot {number}", ofs_l1, entries, False))
        offset += length
    if snapshots:
        if table_length > 64 * 1024 * 1024:
            out.add("SNAP-2", f"snapshot table is {table_length} bytes, above 64 MiB",
                    int(image.header.ofs_snapshot_table))
        walk.claim(int(image.header.ofs_snapshot_table), table_length, Role.SNAPSHOT_TABLE,
                   clause_past_eof="SNAP-1")
    return sources


def claim_feature_metadata(walk: Walk) -> None:
    """References from the bitmaps, encryption and zoned extensions (RC-3)."""
    image, out = walk.image, walk.out
    try:
        extensions = image.extensions()
    except ParseError:
        return
    for ext in extensions:
        if not ext.is_body_typed:
            continue
        if ext.magic == ExtensionType.full_disk_encryption:
            body = ext.body
            offset, length = int(body.ofs_crypt_header), int(body.len_crypt_header)
            if offset % walk.cluster_size or offset == 0 or offset + length > image.file_size:
                out.add("CRYPT-3", f"encryption header at {offset:#x} ({length} bytes) is not "
                        "cluster-aligned or not inside the file", ext.offset + 8)
            else:
                walk.claim(offset, length, Role.CRYPT_HEADER)
                if walk.pread(offset, 6) != b"LUKS\xba\xbe":
                    out.add("CRYPT-4", "encryption header does not start with the LUKS magic",
                            offset)
        elif ext.magic == ExtensionType.bitmaps:
            claim_bitmaps(walk, ext)
        elif ext.magic == ExtensionType.zoned:
            body = ext.body
            offset = int(body.ofs_zonedmeta)
            length = int(body.num_zones) * 8
            if offset and offset % walk.cluster_size == 0 and offset + length <= image.file_size:
                walk.claim(offset, length, Role.ZONEDMETA)


def claim_bitmaps(walk: Walk, ext: object) -> None:
    image, out = walk.image, walk.out
    body = ext.body  # type: ignore[attr-defined]
    ext_offset = ext.offset  # type: ignore[attr-defined]
    if body.num_bitmaps < 1 or body.reserved:
        out.add("BMP-3", f"bitmaps extension: nb_bitmaps {body.num_bitmaps}, reserved "
                f"{body.reserved}", ext_offset + 8)
    if body.num_bitmaps > 65535 or body.len_bitmap_directory > 64 * 1024 * 1024:
        out.add("BMP-4", f"bitmaps extension: nb_bitmaps {body.num_bitmaps}, directory "
                f"{body.len_bitmap_directory} bytes", ext_offset + 8)
        return
    dir_offset = int(body.ofs_bitmap_directory)
    if dir_offset % walk.cluster_size or dir_offset == 0:
        out.add("BMP-5", f"bitmap directory offset {dir_offset:#x} is not cluster-aligned",
                ext_offset + 24)
        return
    try:
        entries = image.bitmap_directory()
    except ParseError as error:
        out.add("BMP-5", error.message, error.offset)
        return
    walk.claim(dir_offset, int(body.len_bitmap_directory), Role.BITMAP_DIRECTORY)
    if len(entries) != body.num_bitmaps:
        out.add("BMP-3", f"bitmap directory holds {len(entries)} entries, nb_bitmaps says "
                f"{body.num_bitmaps}", dir_offset)
    names: set[bytes] = set()
    for number, entry in enumerate(entries):
        if entry.reserved_flags or entry.bitmap_type != 1:
            out.add("BMP-6", f"bitmap {number}: flags {entry.flags:#x}, type "
                    f"{entry.bitmap_type}", dir_offset)
        if not 9 <= entry.granularity_bits <= 31:
            out.add("BMP-7", f"bitmap {number}: granularity_bits {entry.granularity_bits}",
                    dir_offset)
        if not entry.len_name or entry.len_name > 1023 or entry.name in names:
            out.add("BMP-8", f"bitmap {number}: name empty, too long or repeated", dir_offset)
        names.add(entry.name)
        if entry.len_extra_data and not entry.flags & 4:
            out.add("BMP-10", f"bitmap {number}: extra data without extra_data_compatible",
                    dir_offset)
        table_offset = int(entry.ofs_bitmap_table)
        count = int(entry.num_bitmap_table_entries)
        if table_offset % walk.cluster_size or table_offset == 0:
            out.add("BMP-11", f"bitmap {number}: table offset {table_offset:#x} is not "
                    "cluster-aligned", dir_offset)
            continue
        try:
            table = image.read_u64_table(f"bitmap {number} table", table_offset, count,
                                         "BMP-11")
        except ParseError as error:
            out.add("BMP-11", error.message, error.offset)
            continue
        walk.claim(table_offset, count * 8, Role.BITMAP_TABLE)
        for index in np.nonzero(table & BITMAP_TABLE_RESERVED)[0][:8]:
            out.add("BMP-12", f"bitmap {number} table entry {int(index)} has reserved bits "
                    "set", table_offset + int(index) * 8)
        data = table & OFFSET_MASK
        walk.claim_clusters(data[data != 0] >> np.uint64(walk.cluster_bits), Role.BITMAP_DATA,
                            what="bitmap data")

