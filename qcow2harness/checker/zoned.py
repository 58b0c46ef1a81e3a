"""Zoned checks (ZONE, WP). The zone rules themselves live in reference/zones.py.

The zoned extension is read before the metadata walk (`read_zoned`), so that the walk
can tell which guest clusters lie above a write pointer (WP-10) while it has each
batch of L2 entries in hand; `check_zoned` reports everything afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from qcow2harness.checker.report import Findings
from qcow2harness.image import Extension, ExtensionType, Image

if TYPE_CHECKING:
    from qcow2harness.checker.metadata import Walk
    from qcow2harness.reference.zones import Problem

INT64_MAX = int(np.iinfo(np.int64).max)
# Byte offset of each field inside the extension body (ksy/qcow2_zoned.ksy).
ZONED_FIELD_OFFSET = {
    "zoned_model": 0, "reserved": 1, "zone_size": 4, "zone_capacity": 12,
    "conventional_zones": 20, "nr_zones": 24, "max_active_zones": 28, "max_open_zones": 32,
    "max_append_bytes": 36, "zonedmeta_size": 40, "zonedmeta_offset": 48,
}
# Findings that make the wp table unreadable or meaningless.
BLOCKING_CLAUSES = {"ZONE-6", "ZONE-7", "ZONE-9", "ZONE-10", "ZONE-11", "ZONE-18", "ZONE-19",
                    "ZONE-20"}


@dataclass
class Zones:
    """The zoned extension as read before the walk."""

    ext: Extension
    fields: dict[str, int | bytes]
    problems: list[Problem]
    entries: list[int] | None = None  # the wp table, when its geometry is sound
    # Per zone, the guest offset from which data is dead (WP-10); None when the walk
    # cannot judge it (no sound table, or zones smaller than a cluster).
    dead_from: np.ndarray | None = None
    zone_bits: int = 0
    # Filled by the walk: zone -> number of data clusters found dead in it.
    dead_clusters: dict[int, int] = field(default_factory=dict)


def read_zoned(image: Image) -> Zones | None:
    """The zoned extension's fields and problems, and its wp table when it is readable."""
    ext = image.extension(ExtensionType.zoned)
    if ext is None or not ext.is_body_typed:
        return None
    from qcow2harness.reference.zones import dead_data_starts, header_problems

    body = ext.body
    fields: dict[str, int | bytes] = {
        "zoned_model": int(body.zoned_model),
        "reserved": bytes(body.reserved),
        "virtual_size": int(image.header.virtual_size),
        "cluster_size": image.cluster_size,
        "zone_size": int(body.zone_size),
        "zone_capacity": int(body.zone_capacity),
        "conventional_zones": int(body.num_conventional_zones),
        "nr_zones": int(body.num_zones),
        "max_active_zones": int(body.max_active_zones),
        "max_open_zones": int(body.max_open_zones),
        "max_append_bytes": int(body.max_append_bytes),
        "zonedmeta_size": int(body.len_zonedmeta),
        "zonedmeta_offset": int(body.ofs_zonedmeta),
        "file_size": image.file_size,
    }
    zones = Zones(ext, fields, header_problems(fields))
    if any(clause in BLOCKING_CLAUSES for clause, _, _ in zones.problems):
        return zones
    table = image.zonedmeta_entries()
    assert table is not None
    zones.entries = [int(e) for e in table]
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    # With zones at least a cluster long (both powers of two), each guest cluster lies in
    # exactly one zone, so "wholly above the wp" is one comparison per cluster.
    if zone_size >= image.cluster_size:
        # A start past every int64 guest offset (a huge zone size times a table longer
        # than ZONE-9 allows) marks nothing dead: clamp it.
        zones.dead_from = np.array([min(start, INT64_MAX) for start in
                                    dead_data_starts(fields, zones.entries)], dtype=np.int64)
        zones.zone_bits = zone_size.bit_length() - 1
    return zones


def check_zoned(image: Image, out: Findings, walk: Walk | None, zones: Zones | None) -> None:
    ext = image.extension(ExtensionType.zoned)
    if image.header.is_zoned != (ext is not None):
        out.add("ZONE-1", "incompatible bit 5 (zoned) is "
                f"{'set' if image.header.is_zoned else 'clear'} but the zoned extension is "
                f"{'present' if ext else 'absent'}", 72)
    if zones is None:
        return
    from qcow2harness.reference.zones import header_notes, zonedmeta_notes, zonedmeta_problems

    fields, base = zones.fields, zones.ext.offset + 8
    for clause, field_name, message in zones.problems:
        out.add(clause, message, base + ZONED_FIELD_OFFSET.get(field_name, 0))
    header = image.header
    if header.ofs_backing_file_name or header.has_external_data_file or header.num_snapshots:
        out.add("ZONE-23", "zoned image with a backing file, external data file or internal "
                "snapshots", 72)
    if walk is not None:
        _check_zonedmeta_refcount(walk, fields, out)
    if zones.entries is None:
        return  # the table is unreadable or meaningless: reported above
    for clause, field_name, message in header_notes(fields):
        out.add(clause, message, base + ZONED_FIELD_OFFSET.get(field_name, 0))
    table = int(fields["zonedmeta_offset"])  # type: ignore[arg-type]
    problems = zonedmeta_problems(fields, zones.entries)
    for clause, index, message in problems:
        out.add(clause, message, table + 8 * index if index is not None else table)
    if any(clause == "WP-2" for clause, _, _ in problems):
        return  # a byte-swapped table says nothing about the zones
    for clause, index, message in zonedmeta_notes(fields, zones.entries):
        out.add(clause, message, table + 8 * index if index is not None else table)
    for zone, count in sorted(zones.dead_clusters.items()):
        dead_from = int(zones.dead_from[zone]) if zones.dead_from is not None else 0
        out.add("WP-10", f"zone {zone}: {count} guest cluster(s) at or above {dead_from:#x} "
                "(its write pointer or capacity end) hold data that reads as zeros",
                table + 8 * zone)


def _check_zonedmeta_refcount(walk: Walk, fields: dict[str, int | bytes], out: Findings) -> None:
    offset = int(fields["zonedmeta_offset"])  # type: ignore[arg-type]
    length = 8 * int(fields["nr_zones"])  # type: ignore[arg-type]
    if walk.stored is None or length == 0 or offset % walk.cluster_size:
        return
    first = offset >> walk.cluster_bits
    last = min((offset + length - 1) >> walk.cluster_bits, walk.num_clusters - 1)
    if first > last:
        return
    stored = walk.stored[first:last + 1]
    if (stored == 0).any():
        out.add("ZONE-21", "zonedmeta clusters have refcount 0: the table is not refcounted",
                offset)
    if (walk.refs[first:last + 1] > 1).any():
        out.add("ZONE-22", "zonedmeta clusters are also used by another structure", offset)
