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
from collections.abc import Iterable
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
L2_BATCH_BYTES = 16 * 1024 * 1024


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
        np.add.at(self.refs, idx, weights if isinstance(weights, int) else
                  weights.astype(self.refs.dtype))
        current = self.roles[idx]
        clash = (current != Role.NONE) & (current != role)
        # Compressed clusters may share host clusters with each other (CMP-3).
        if clash.any():
            at = int(idx[np.argmax(clash)])
            self.out.add("OVL-1", f"{int(clash.sum())} {what or ROLE_NAMES[role]} cluster(s) "
                         f"overlap other metadata, first cluster {at} "
                         f"({ROLE_NAMES[Role(int(self.roles[at]))]})", at << self.cluster_bits)
        self.roles[idx[current == Role.NONE]] = role

    # -- reading -------------------------------------------------------------

    def pread(self, offset: int, length: int) -> bytes:
        stream = self.image._stream
        stream.seek(offset)
        return stream.read(length)


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
    image = walk.image
    extended = bool(image.header.is_extended_l2)
    external = bool(image.header.has_external_data_file)
    tables = sorted(multiplicity)
    per_batch = max(1, L2_BATCH_BYTES // walk.cluster_size)
    for start in range(0, len(tables), per_batch):
        batch = tables[start:start + per_batch]
        for l2_offset in batch:
            raw = np.frombuffer(walk.pread(l2_offset, walk.cluster_size), dtype=">u8")
            raw = raw.astype(np.uint64)
            if extended:
                descriptors, bitmaps = raw[0::2], raw[1::2]
            else:
                descriptors, bitmaps = raw, None
            check_l2_table(walk, l2_offset, descriptors, bitmaps, multiplicity[l2_offset],
                           active_l2.get(l2_offset), external)


def check_l2_table(walk: Walk, l2_offset: int, descriptors: np.ndarray,
                   bitmaps: np.ndarray | None, weight: int, guest_base: int | None,
                   external: bool) -> None:
    """One L2 table; `guest_base` is set when the active L1 maps it (COPIED is checked)."""
    active = guest_base is not None
    out, image = walk.out, walk.image
    entry_size = 16 if bitmaps is not None else 8
    compressed = (descriptors & COMPRESSED) != 0
    standard = ~compressed

    def at(index: int) -> int:
        return l2_offset + index * entry_size

    reserved_mask = L2_RESERVED_EXTENDED if bitmaps is not None else L2_RESERVED
    reserved = np.nonzero(standard & ((descriptors & reserved_mask) != 0))[0]
    for index in reserved:
        zero_bit_only = bitmaps is not None and int(descriptors[index]) & 0x3F000000000001FE == 0
        clause = "EL2-2" if zero_bit_only else "L2-1"
        out.add(clause, f"L2 table {l2_offset:#x} entry {int(index)} has reserved bits set "
                f"({int(descriptors[index]):#x})", at(int(index)))
    if image.version < 3:
        zero = np.nonzero(standard & ((descriptors & ZERO_FLAG) != 0))[0]
        for index in zero:
            out.add("L2-4", f"L2 table {l2_offset:#x} entry {int(index)} uses the zero flag "
                    "in a version 2 image", at(int(index)))

    host = np.where(standard, descriptors & OFFSET_MASK, np.uint64(0))
    allocated = host != 0
    misaligned = np.nonzero(allocated & ((host & np.uint64(walk.cluster_size - 1)) != 0))[0]
    for index in misaligned:
        out.add("L2-2", f"L2 table {l2_offset:#x} entry {int(index)}: data offset "
                f"{int(host[index]):#x} is not cluster-aligned", at(int(index)))
    aligned = allocated & ((host & np.uint64(walk.cluster_size - 1)) == 0)

    if external:
        _check_external_l2(walk, l2_offset, descriptors, host, compressed, at, guest_base)
    else:
        walk.claim_clusters(host[aligned] >> np.uint64(walk.cluster_bits), Role.DATA,
                            weight, what="data")
        walk.stats["data_clusters"] += int(np.count_nonzero(aligned)) * weight

    if compressed.any():
        _check_compressed(walk, l2_offset, descriptors[compressed],
                          np.nonzero(compressed)[0], weight, at, external)

    if active and walk.stored is not None and not external:
        copied = (descriptors & COPIED) != 0
        index_in_file = (host >> np.uint64(walk.cluster_bits)).astype(np.intp)
        inside = aligned & (index_in_file < walk.num_clusters)
        refcount = np.zeros(descriptors.size, dtype=np.uint64)
        refcount[inside] = walk.stored[index_in_file[inside]]
        wrong = np.nonzero(inside & (copied != (refcount == 1)))[0]
        for index in wrong:
            out.add("L2-3", f"L2 table {l2_offset:#x} entry {int(index)} has COPIED="
                    f"{int(copied[index])} but its cluster's refcount is {int(refcount[index])}",
                    at(int(index)))
        compressed_copied = np.nonzero(compressed & copied)[0]
        for index in compressed_copied:
            out.add("L2-3", f"L2 table {l2_offset:#x} entry {int(index)}: compressed cluster "
                    "with COPIED set", at(int(index)))

    if bitmaps is not None:
        _check_subclusters(walk, l2_offset, descriptors, bitmaps, compressed, allocated, at)


def _check_external_l2(walk: Walk, l2_offset: int, descriptors: np.ndarray, host: np.ndarray,
                       compressed: np.ndarray, at: object, guest_base: int | None) -> None:
    """DATA-5 (host offset = guest offset) and DATA-6 (no compressed clusters)."""
    out = walk.out
    assert callable(at)
    if guest_base is not None:
        guest = np.uint64(guest_base) + np.arange(descriptors.size, dtype=np.uint64) * np.uint64(
            walk.cluster_size)
        for index in np.nonzero((host != 0) & (host != guest))[0]:
            out.add("DATA-5", f"L2 table {l2_offset:#x} entry {int(index)}: host offset "
                    f"{int(host[index]):#x} is not the guest offset {int(guest[index]):#x}",
                    at(int(index)))
    for index in np.nonzero(compressed)[0]:
        out.add("DATA-6", f"L2 table {l2_offset:#x} entry {int(index)}: compressed cluster "
                "in an image with an external data file", at(int(index)))


def _check_compressed(walk: Walk, l2_offset: int, descriptors: np.ndarray,
                      indices: np.ndarray, weight: int, at: object, external: bool) -> None:
    """CMP-1/CMP-2 and the references a compressed range makes (CMP-3)."""
    assert callable(at)
    if external:
        return
    out, image = walk.out, walk.image
    offset_bits = 62 - (walk.cluster_bits - 8)
    offsets = descriptors & np.uint64((1 << offset_bits) - 1)
    sectors = ((descriptors >> np.uint64(offset_bits))
               & np.uint64((1 << (walk.cluster_bits - 8)) - 1)) + np.uint64(1)
    ends = (offsets & ~np.uint64(SECTOR - 1)) + sectors * np.uint64(SECTOR)
    for k in np.nonzero(offsets >= np.uint64(1 << 56))[0]:
        out.add("CMP-1", f"L2 table {l2_offset:#x} entry {int(indices[k])}: compressed offset "
                f"{int(offsets[k]):#x} sets bits at 56 or above", at(int(indices[k])))
    # The sector count is an upper bound: the data may end inside its last
    # sector, so only a last sector that starts past the end is an error.
    file_size = np.uint64(image.file_size)
    past = np.nonzero(ends - np.uint64(SECTOR) >= file_size)[0]
    for k in past:
        out.add("CMP-2", f"L2 table {l2_offset:#x} entry {int(indices[k])}: compressed data "
                f"{int(offsets[k]):#x}..{int(ends[k]):#x} runs past the end of the file",
                at(int(indices[k])))
    inside = ends - np.uint64(SECTOR) < file_size
    first = offsets[inside] >> np.uint64(walk.cluster_bits)
    last = (np.minimum(ends[inside], file_size) - np.uint64(1)) >> np.uint64(walk.cluster_bits)
    for extra in range(3):
        clusters = first + np.uint64(extra)
        clusters = clusters[clusters <= last]
        walk.claim_clusters(clusters, Role.COMPRESSED, weight, clause_past_eof="CMP-2",
                            what="compressed data")
    walk.stats["compressed_clusters"] += int(indices.size) * weight


def _check_subclusters(walk: Walk, l2_offset: int, descriptors: np.ndarray,
                       bitmaps: np.ndarray, compressed: np.ndarray, allocated: np.ndarray,
                       at: object) -> None:
    assert callable(at)
    out = walk.out
    alloc = bitmaps & LOW32
    zero = bitmaps >> np.uint64(32)
    for index in np.nonzero(~compressed & ((alloc & zero) != 0))[0]:
        out.add("EL2-3", f"L2 table {l2_offset:#x} entry {int(index)}: subclusters both "
                f"allocated and zero ({int(bitmaps[index]):#x})", at(int(index)) + 8)
    for index in np.nonzero(~compressed & ~allocated & (alloc != 0))[0]:
        out.add("EL2-4", f"L2 table {l2_offset:#x} entry {int(index)}: allocated subclusters "
                "without a host cluster", at(int(index)) + 8)
    for index in np.nonzero(compressed & (bitmaps != 0))[0]:
        out.add("EL2-5", f"L2 table {l2_offset:#x} entry {int(index)}: compressed cluster "
                f"with a non-zero subcluster bitmap", at(int(index)) + 8)


def compare_refcounts(walk: Walk) -> None:
    """RC-4 (stored < references) and RC-5 (stored > references); HDR-12 when dirty."""
    if walk.stored is None:
        return
    out = walk.out
    stored = walk.stored.astype(np.uint64)
    refs = walk.refs.astype(np.uint64)
    dirty = bool(walk.image.header.is_dirty)
    below = np.nonzero(stored < refs)[0]
    above = np.nonzero(stored > refs)[0]
    walk.stats["corrupt_refcounts"] = int(below.size)
    walk.stats["leaked_clusters"] = int(above.size)
    for index in below:
        clause = "HDR-12" if dirty else "RC-4"
        out.add(clause, f"cluster {int(index)} has refcount {int(stored[index])} but "
                f"{int(refs[index])} reference(s)", int(index) << walk.cluster_bits)
    for index in above:
        clause = "HDR-12" if dirty else "RC-5"
        out.add(clause, f"cluster {int(index)} is leaked: refcount {int(stored[index])}, "
                f"{int(refs[index])} reference(s)", int(index) << walk.cluster_bits)


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

