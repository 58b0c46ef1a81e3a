"""Zoned checks (ZONE, WP). The zone rules themselves live in reference/zones.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qcow2harness.checker.report import Findings
from qcow2harness.image import ExtensionType, Image

if TYPE_CHECKING:
    from qcow2harness.checker.metadata import Walk


def check_zoned(image: Image, out: Findings, walk: Walk | None) -> None:
    ext = image.extension(ExtensionType.zoned)
    if image.header.is_zoned != (ext is not None):
        out.add("ZONE-1", "incompatible bit 5 (zoned) is "
                f"{'set' if image.header.is_zoned else 'clear'} but the zoned extension is "
                f"{'present' if ext else 'absent'}", 72)
    if ext is None or not ext.is_body_typed:
        return
    from qcow2harness.reference.zones import header_problems, zonedmeta_problems

    body = ext.body
    fields = {
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
    problems = header_problems(fields)
    for clause, field_name, message in problems:
        out.add(clause, message, ext.offset + 8 + ZONED_FIELD_OFFSET.get(field_name, 0))
    header = image.header
    if header.ofs_backing_file_name or header.has_external_data_file or header.num_snapshots:
        out.add("ZONE-23", "zoned image with a backing file, external data file or internal "
                "snapshots", 72)
    if walk is not None:
        _check_zonedmeta_refcount(walk, fields, out)
    # The wp table is read only when its geometry is sound.
    if any(clause in BLOCKING_CLAUSES for clause, _, _ in problems):
        return
    entries = image.zonedmeta_entries()
    assert entries is not None
    for clause, index, message in zonedmeta_problems(fields, [int(e) for e in entries]):
        at = fields["zonedmeta_offset"] + 8 * index if index is not None else None
        out.add(clause, message, at)


# Byte offset of each field inside the extension body (ksy/qcow2_zoned.ksy).
ZONED_FIELD_OFFSET = {
    "zoned_model": 0, "reserved": 1, "zone_size": 4, "zone_capacity": 12,
    "conventional_zones": 20, "nr_zones": 24, "max_active_zones": 28, "max_open_zones": 32,
    "max_append_bytes": 36, "zonedmeta_size": 40, "zonedmeta_offset": 48,
}
# Findings that make the wp table unreadable or meaningless.
BLOCKING_CLAUSES = {"ZONE-6", "ZONE-7", "ZONE-9", "ZONE-10", "ZONE-11", "ZONE-18", "ZONE-19",
                    "ZONE-20"}


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
