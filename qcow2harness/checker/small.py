"""The metadata walk of a small image on Python ints, without numpy (issue #19).

A check of a small image spent most of its time importing numpy. Images with few host
clusters and few L2 entries, and only what this walk knows (the active L1 table, standard
L2 entries without compressed clusters, no snapshots, no bitmaps, encryption, zones or
data file, not dirty), are walked here; every other image takes the numpy walk of
checker/metadata.py, the one home of these rules. This walk gives the same findings in
the same order, messages, offsets and stats: tests/test_check_fast_paths.py compares the
two on the whole committed corpus, every targeted corruption, poked seeds and mutants.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any, Literal, cast

from qcow2harness.checker.metadata import (
    L2_BATCH_BYTES,
    L2_RESERVED,
    NO_ROLE,
    REFTABLE_RESERVED,
    ROLE_NAMES,
    L1Source,
    Role,
    StageProgress,
    Walk,
    report_indices,
    report_l1_copied,
    scan_l1_tables,
)
from qcow2harness.checker.report import Findings
from qcow2harness.errors import ParseError
from qcow2harness.image import (
    COMPRESSED,
    COPIED,
    OFFSET_MASK,
    REFTABLE_OFFSET_MASK,
    ExtensionType,
    Image,
    decode_refcount_values,
)
from qcow2harness.structure import refcount_table_placement_problems

# Limits of a small image: host clusters (the per-cluster lists), L2 entries read, and
# refcount table entries. Tests set SMALL_WALK to False to get the numpy walk alone.
SMALL_WALK = True
MAX_CLUSTERS = 1 << 16
MAX_L2_ENTRIES = 1 << 14
MAX_REFTABLE_ENTRIES = 1 << 16
UNKNOWN_TO_THIS_WALK = (ExtensionType.bitmaps, ExtensionType.full_disk_encryption,
                        ExtensionType.zoned)


def walk_small_image(image: Image, out: Findings,
                     progress: StageProgress | None = None) -> Walk | None:
    """The walk of check_metadata for a small image, or None when it needs numpy.
    The returned Walk holds lists where the numpy walk holds arrays."""
    l1 = _small_l1(image) if SMALL_WALK else None
    if l1 is None:
        return None
    cluster_size = image.cluster_size
    num_clusters = -(-image.file_size // cluster_size)
    walk = Walk(image=image, out=out, cluster_size=cluster_size,
                cluster_bits=image.cluster_bits, num_clusters=num_clusters,
                refs=cast(Any, [0] * num_clusters), roles=cast(Any, [NO_ROLE] * num_clusters))
    walk.progress = progress
    # Cluster 0 only: a header_length past it is HDR-7, not an overlap.
    _claim(walk, 0, min(max(image.len_header, 1), cluster_size), Role.HEADER)
    _read_stored_refcounts(walk)
    sources = [] if l1 is False else [L1Source("active", int(image.header.ofs_l1_table),
                                                cast(Any, l1), True)]
    _walk_l1_table(walk, sources)
    _check_table_overlaps(walk)
    _compare_refcounts(walk)
    walk.stats["clusters_in_file"] = num_clusters
    return walk


def _small_l1(image: Image) -> list[int] | Literal[False] | None:
    """The active L1 entries (False: the table is unreadable, HDR-15) when the image is
    one this walk takes; None otherwise."""
    header = image.header
    if (int(header.num_snapshots) or header.is_extended_l2 or header.has_external_data_file
            or header.is_dirty or int(header.crypt_method) or image.refcount_order > 6):
        return None
    if -(-image.file_size // image.cluster_size) > MAX_CLUSTERS:
        return None
    if int(header.num_refcount_table_clusters) * image.cluster_size // 8 > MAX_REFTABLE_ENTRIES:
        return None
    try:
        if any(ext.magic in UNKNOWN_TO_THIS_WALK for ext in image.extensions()):
            return None
    except ParseError:
        pass  # the numpy walk claims no extension metadata then either
    count = int(header.num_l1_entries)
    if count > MAX_CLUSTERS:
        return None
    try:
        entries = image.read_u64_values("L1 table", int(header.ofs_l1_table), count, "HDR-15")
    except ParseError:
        return False
    cluster_size = image.cluster_size
    tables = {entry & OFFSET_MASK for entry in entries} - {0}
    readable = [t for t in tables if not t % cluster_size and t + cluster_size
                <= image.file_size]
    if len(readable) * cluster_size // 8 > MAX_L2_ENTRIES:
        return None
    for table in readable:
        raw = image.pread(table, cluster_size)
        if any(entry & COMPRESSED for entry in struct.unpack(f">{cluster_size // 8}Q", raw)):
            return None
    return entries


# -- references (Walk.claim and Walk.claim_clusters on lists) ----------------------


def _claim(walk: Walk, offset: int, length: int, role: Role, what: str | None = None) -> None:
    if length <= 0:
        return
    refs, roles, bits = cast(list[int], walk.refs), cast(list[int], walk.roles), walk.cluster_bits
    first, last = offset >> bits, (offset + length - 1) >> bits
    name = what or ROLE_NAMES[role]
    if last >= walk.num_clusters:
        walk.out.add("OVL-3", f"{name} at {offset:#x} ({length} bytes) runs past the end of "
                     "the file", offset)
        last = walk.num_clusters - 1
        if first > last:
            return
    code = int(role)
    clash = None
    for cluster in range(first, last + 1):
        refs[cluster] += 1
        held = roles[cluster]
        if held == NO_ROLE:
            roles[cluster] = code
        elif held != code and clash is None:
            clash = cluster
    if clash is not None:
        walk.out.add("OVL-1", f"{name} at {offset:#x} overlaps "
                     f"{ROLE_NAMES[Role(roles[clash])]} in cluster {clash}", clash << bits)


def _claim_clusters(walk: Walk, indices: Sequence[int], role: Role,
                    weights: Sequence[int] | int, what: str) -> None:
    if not indices:
        return
    refs, roles = cast(list[int], walk.refs), cast(list[int], walk.roles)
    code = int(role)
    current = [roles[index] for index in indices]
    clashes = [index for index, held in zip(indices, current, strict=True)
               if held not in (NO_ROLE, code)]
    for number, index in enumerate(indices):
        refs[index] += weights if isinstance(weights, int) else weights[number]
    if clashes:
        at = clashes[0]
        walk.out.add("OVL-1", f"{len(clashes)} {what} cluster(s) overlap other metadata, "
                     f"first cluster {at} ({ROLE_NAMES[Role(roles[at])]})",
                     at << walk.cluster_bits)
    if role != Role.DATA:
        for index, held in zip(indices, current, strict=True):
            if held == NO_ROLE:
                roles[index] = code


# -- refcounts ---------------------------------------------------------------------


def _read_stored_refcounts(walk: Walk) -> None:
    """read_stored_refcounts on lists (RC-1, RC-2, RC-5)."""
    image, out = walk.image, walk.out
    if refcount_table_placement_problems(image):
        return  # HDR-18, reported by the header checks
    order = image.refcount_order
    ofs_table = int(image.header.ofs_refcount_table)
    count = int(image.header.num_refcount_table_clusters) * walk.cluster_size // 8
    table = image.read_u64_values("refcount table", ofs_table, count, "HDR-18")
    _claim(walk, ofs_table, count * 8, Role.REFCOUNT_TABLE)
    walk.table(ofs_table, count * 8, "refcount table")
    stored = [0] * walk.num_clusters
    per_block = walk.cluster_size * 8 >> order
    reserved = [index for index, entry in enumerate(table) if entry & REFTABLE_RESERVED]
    for index in reserved[:8]:
        out.add("RC-1", f"refcount table entry {index} has reserved bits set "
                f"({table[index]:#x})", ofs_table + index * 8)
    blocks = [entry & REFTABLE_OFFSET_MASK for entry in table]
    past_eof_refs = 0
    for index, offset in enumerate(blocks):
        if not offset:
            continue
        entry_at = ofs_table + index * 8
        if offset % walk.cluster_size:
            out.add("RC-1", f"refcount block offset {offset:#x} is not cluster-aligned",
                    entry_at)
            continue
        if offset + walk.cluster_size > image.file_size:
            out.add("RC-2", f"refcount block at {offset:#x} is past the end of the file",
                    entry_at)
            continue
        _claim(walk, offset, walk.cluster_size, Role.REFCOUNT_BLOCK)
        counts = decode_refcount_values(walk.pread(offset, walk.cluster_size), order)
        first = index * per_block
        if first >= walk.num_clusters:
            past_eof_refs += sum(1 for value in counts if value)
            continue
        span = min(per_block, walk.num_clusters - first)
        stored[first:first + span] = counts[:span]
        past_eof_refs += sum(1 for value in counts[span:] if value)
    walk.stored = cast(Any, stored)
    walk.stats["refcount_blocks"] = sum(1 for offset in blocks if offset)
    if past_eof_refs:
        out.add("RC-5", f"{past_eof_refs} refcount(s) above zero for clusters past the end of "
                "the file", None)


def _compare_refcounts(walk: Walk) -> None:
    """compare_refcounts on lists (RC-4, RC-5)."""
    if walk.stored is None:
        return
    stored, refs = cast(list[int], walk.stored), cast(list[int], walk.refs)
    below = [i for i, (s, r) in enumerate(zip(stored, refs, strict=True)) if s < r]
    above = [i for i, (s, r) in enumerate(zip(stored, refs, strict=True)) if s > r]

    def describe(index: int, leaked: bool) -> tuple[str, int]:
        if leaked:
            text = (f"cluster {index} is leaked: refcount {stored[index]}, "
                    f"{refs[index]} reference(s)")
        else:
            text = f"cluster {index} has refcount {stored[index]} but {refs[index]} reference(s)"
        return text, index << walk.cluster_bits

    report_indices(walk.out, "RC-4", below, lambda i: describe(i, False))
    report_indices(walk.out, "RC-5", above, lambda i: describe(i, True))
    if walk.progress is not None:
        walk.progress("refcounts", walk.num_clusters, walk.num_clusters)
    walk.stats["corrupt_refcounts"] = len(below)
    walk.stats["leaked_clusters"] = len(above)


def _check_table_overlaps(walk: Walk) -> None:
    """check_table_overlaps on ints (OVL-2)."""
    tables = walk.tables
    if len(tables) < 2:
        return
    order = sorted(range(len(tables)), key=lambda i: tables[i][0])
    overlapping = []
    reach = 0
    for position, index in enumerate(order):
        if position and tables[index][0] < reach:
            overlapping.append(position)
        reach = max(reach, tables[index][0] + tables[index][1])
    keep = min(walk.out.room("OVL-2"), len(overlapping))
    for position in overlapping[:keep]:
        offset, length, name = tables[order[position]]
        other = next(tables[j] for j in order[:position] if tables[j][0] + tables[j][1] > offset)
        walk.out.add("OVL-2", f"{name} at {offset:#x} ({length} bytes) overlaps {other[2]} "
                     f"at {other[0]:#x} ({other[1]} bytes)", offset)
    walk.out.add_suppressed("OVL-2", len(overlapping) - keep)


# -- L1 and L2 ---------------------------------------------------------------------


def _claim_l1_table(walk: Walk, source: L1Source) -> None:
    what = f"{source.name} L1 table"
    _claim(walk, source.offset, len(source.entries) * 8, Role.L1, what=what)
    walk.table(source.offset, len(source.entries) * 8, what)


def _walk_l1_table(walk: Walk, sources: list[L1Source]) -> None:
    """walk_small_l1_tables on lists: the entries through the same scan_l1_tables."""
    scan = scan_l1_tables(walk, sources, _claim_l1_table)
    order = sorted(scan.weights)
    _claim_clusters(walk, [offset >> walk.cluster_bits for offset in order], Role.L2,
                    [scan.weights[offset] for offset in order], "L2 table")
    walk.stats["l2_tables"] = len(order)
    report_l1_copied(walk, scan)
    per_batch = max(1, L2_BATCH_BYTES // walk.cluster_size)
    for start in range(0, len(order), per_batch):
        batch = order[start:start + per_batch]
        _check_l2_batch(walk, batch, [scan.weights[offset] for offset in batch])
        if walk.progress is not None:
            walk.progress("L2 tables", min(start + per_batch, len(order)), len(order))


def _check_l2_batch(walk: Walk, tables: list[int], weights: list[int]) -> None:
    """check_l2_batch for standard entries of active tables without compressed clusters:
    the same clauses in the same order (L2-1, L2-2, L2-4, L2-2 past the end, the data
    references, DATA-10, L2-5, L2-3)."""
    out, image = walk.out, walk.image
    cluster_size, bits, num_clusters = walk.cluster_size, walk.cluster_bits, walk.num_clusters
    per_table = cluster_size // 8
    # (table number, entry number, descriptor) of every entry, in table order.
    entries = [(number, index, value) for number, table in enumerate(tables)
               for index, value in enumerate(struct.unpack(f">{per_table}Q",
                                                           image.pread(table, cluster_size)))]

    def report(clause: str, flagged: list[tuple[int, int, int]], text: str) -> None:
        keep = min(out.room(clause), len(flagged))
        for number, index, value in flagged[:keep]:
            out.add(clause, f"L2 table {tables[number]:#x} entry {index}: {text} "
                    f"({value:#x})", tables[number] + index * 8)
        out.add_suppressed(clause, len(flagged) - keep)

    unaligned = (cluster_size - 1) & OFFSET_MASK
    report("L2-1", [e for e in entries if e[2] & L2_RESERVED], "reserved bits set")
    report("L2-2", [e for e in entries if e[2] & unaligned], "data offset is not cluster-aligned")
    zero_flagged = [e for e in entries if e[2] & 1]
    if image.version < 3 and zero_flagged:
        report("L2-4", zero_flagged, "zero flag in a version 2 image")
    host = {(e[0], e[1]): e[2] & OFFSET_MASK & ~(cluster_size - 1) for e in entries}
    allocated = [e for e in entries if host[e[0], e[1]]]
    beyond = [e for e in allocated if host[e[0], e[1]] >> bits >= num_clusters]
    if beyond:
        report("L2-2", beyond, "data cluster is past the end of the file")
        allocated = [e for e in allocated if host[e[0], e[1]] >> bits < num_clusters]
    indices = [host[e[0], e[1]] >> bits for e in allocated]
    if all(weight == 1 for weight in weights):
        walk.stats["data_clusters"] += len(indices)
        _claim_clusters(walk, indices, Role.DATA, 1, "data")
    else:
        data_weights = [weights[e[0]] for e in allocated]
        walk.stats["data_clusters"] += sum(data_weights)
        _claim_clusters(walk, indices, Role.DATA, data_weights, "data")
    report("DATA-10", [e for e in entries if not host[e[0], e[1]] and e[2] & COPIED],
           "bit 63 set with host offset 0 in an image without an external data file")
    if zero_flagged and image.version >= 3:
        preallocated = [e for e in zero_flagged if host[e[0], e[1]]]
        if preallocated:
            number, index, _ = preallocated[0]
            out.add("L2-5", f"L2 table {tables[number]:#x}: {len(preallocated)} preallocated "
                    "zero cluster(s) (zero flag with a host cluster), first at entry "
                    f"{index}", tables[number] + index * 8)
    stored = cast("list[int] | None", walk.stored)
    if stored is not None and allocated:
        report("L2-3", [e for e in allocated if bool(e[2] & COPIED)
                        != (stored[host[e[0], e[1]] >> bits] == 1)],
               "COPIED flag disagrees with the data cluster's refcount")
