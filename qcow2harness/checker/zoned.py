"""Zoned checks (ZONE, WP). The zone rules themselves live in reference/zones.py.

The zoned extension is read before the metadata walk (`read_zoned`), so that the walk
can tell which guest clusters lie above a write pointer (WP-10) while it has each
batch of L2 entries in hand; `check_zoned` reports everything afterwards.

The write-pointer table may hold up to 536,870,911 entries (ZONE-10, 4 GiB). It is
never held whole: it is judged in batches of reference.zones.ZONE_BATCH zones, one
finding per clause with the count of zones and the first of them, and the walk looks
up a zone's dead-data start through a small cache of batches (DeadFrom). A table of at
most PLAIN_TABLE_ZONES entries is judged entry by entry, without numpy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qcow2harness.checker.report import FINDINGS_PER_CLAUSE, Findings
from qcow2harness.image import Extension, ExtensionType, Image

if TYPE_CHECKING:
    from qcow2harness.checker.metadata import Walk
    from qcow2harness.reference.zones import Problem

# Byte offset of each field inside the extension body (ksy/qcow2_zoned.ksy).
ZONED_FIELD_OFFSET = {
    "zoned_model": 0, "reserved": 1, "zone_size": 4, "zone_capacity": 12,
    "conventional_zones": 20, "nr_zones": 24, "max_active_zones": 28, "max_open_zones": 32,
    "max_append_bytes": 36, "zonedmeta_size": 40, "zonedmeta_offset": 48,
}
# Findings that make the wp table unreadable or meaningless.
BLOCKING_CLAUSES = {"ZONE-6", "ZONE-7", "ZONE-9", "ZONE-10", "ZONE-11", "ZONE-18", "ZONE-19",
                    "ZONE-20"}
PLAIN_TABLE_ZONES = 64  # a table this short is judged without numpy (tested against batches)
DEAD_FROM_CACHED_BATCHES = 16  # batches of dead-data starts kept for the walk (8 MiB)


def table_batches(image: Image, offset: int, count: int, byte_order: str,
                  batch: int | None = None) -> Iterator[tuple[int, Any]]:
    """(first zone, uint64 entries) for each batch of a write-pointer table; the table
    must lie inside the file (ZONE-20)."""
    from qcow2harness.reference.zones import ZONE_BATCH

    step = batch or ZONE_BATCH
    for first in range(0, count, step):
        yield first, image.read_u64_table("zonedmeta table", offset + 8 * first,
                                          min(step, count - first), "ZONE-20", byte_order)


def plain_entries(image: Image, offset: int, count: int, byte_order: str) -> list[int]:
    """A short table's entries as ints, without numpy."""
    data = image.pread(offset, 8 * count)
    little = byte_order == "little"
    return [int.from_bytes(data[at:at + 8], "little" if little else "big")
            for at in range(0, len(data) - 7, 8)]


class DeadFrom:
    """Per zone, the guest offset from which data is dead (WP-10), computed a batch of
    zones at a time from the table and cached; indexed by an array of zone numbers."""

    def __init__(self, image: Image, fields: dict[str, int | bytes], offset: int, count: int,
                 byte_order: str) -> None:
        self.size = count
        self._image, self._fields = image, fields
        self._offset, self._byte_order = offset, byte_order
        self._cache: OrderedDict[int, Any] = OrderedDict()

    def _batch(self, number: int) -> Any:
        from qcow2harness.reference.zones import ZONE_BATCH, dead_data_starts_batch

        starts = self._cache.get(number)
        if starts is None:
            first = number * ZONE_BATCH
            (_, entries), = table_batches(self._image, self._offset + 8 * first,
                                          min(ZONE_BATCH, self.size - first),
                                          self._byte_order)
            starts = dead_data_starts_batch(self._fields, first, entries)
            self._cache[number] = starts
            if len(self._cache) > DEAD_FROM_CACHED_BATCHES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(number)
        return starts

    def __getitem__(self, zones: Any) -> Any:
        import numpy as np

        from qcow2harness.reference.zones import ZONE_BATCH

        zones = np.asarray(zones, dtype=np.int64)
        out = np.empty(zones.shape, dtype=np.int64)
        numbers = zones // ZONE_BATCH
        for number in np.unique(numbers):
            chosen = numbers == number
            out[chosen] = self._batch(int(number))[zones[chosen] - int(number) * ZONE_BATCH]
        return out

    def at(self, zone: int) -> int:
        return int(self[[zone]][0])


@dataclass
class Zones:
    """The zoned extension as read before the walk."""

    ext: Extension
    fields: dict[str, int | bytes]
    problems: list[Problem]
    image: Image | None = None
    table_readable: bool = False  # the table's geometry is sound and it lies in the file
    byte_order: str = "big"
    # Per zone, the guest offset from which data is dead (WP-10); None when the walk
    # cannot judge it (no sound table, or zones smaller than a cluster).
    dead_from: DeadFrom | None = None
    zone_bits: int = 0
    # Filled by the walk: zone -> number of data clusters found dead in it.
    dead_clusters: dict[int, int] = field(default_factory=dict)

    @property
    def nr_zones(self) -> int:
        return int(self.fields["nr_zones"])  # type: ignore[arg-type]

    @property
    def table_offset(self) -> int:
        return int(self.fields["zonedmeta_offset"])  # type: ignore[arg-type]

    def batches(self) -> Iterator[tuple[int, Any]]:
        """The readable table, batch by batch."""
        assert self.image is not None and self.table_readable
        return table_batches(self.image, self.table_offset, self.nr_zones, self.byte_order)

    def first_entries(self, count: int) -> list[int]:
        """The first `count` entries of the readable table."""
        assert self.image is not None and self.table_readable
        return plain_entries(self.image, self.table_offset, min(count, self.nr_zones),
                             self.byte_order)


def read_zoned(image: Image) -> Zones | None:
    """The zoned extension's fields and problems, and whether its wp table is readable."""
    ext = image.extension(ExtensionType.zoned)
    if ext is None or not ext.is_body_typed:
        return None
    from qcow2harness.reference.zones import header_problems

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
    zones = Zones(ext, fields, header_problems(fields), image=image,
                  byte_order=image.wp_byte_order)
    if any(clause in BLOCKING_CLAUSES for clause, _, _ in zones.problems):
        return zones
    zones.table_readable = True
    zone_size = int(fields["zone_size"])  # type: ignore[arg-type]
    # With zones at least a cluster long (both powers of two), each guest cluster lies in
    # exactly one zone, so "wholly above the wp" is one comparison per cluster.
    if zone_size >= image.cluster_size:
        zones.dead_from = DeadFrom(image, fields, zones.table_offset, zones.nr_zones,
                                   zones.byte_order)
        zones.zone_bits = zone_size.bit_length() - 1
    return zones


def judge_table(zones: Zones) -> Any:
    """The reference verdict on the readable table: entry by entry when it is short,
    in numpy batches otherwise."""
    from qcow2harness.reference.zones import judge_zonedmeta, judge_zonedmeta_plain

    if zones.nr_zones <= PLAIN_TABLE_ZONES:
        return judge_zonedmeta_plain(zones.fields, zones.first_entries(zones.nr_zones),
                                     FINDINGS_PER_CLAUSE)
    return judge_zonedmeta(zones.fields, zones.batches(), FINDINGS_PER_CLAUSE)


def check_zoned(image: Image, out: Findings, walk: Walk | None, zones: Zones | None) -> None:
    ext = image.extension(ExtensionType.zoned)
    if image.header.is_zoned != (ext is not None):
        out.add("ZONE-1", "incompatible bit 5 (zoned) is "
                f"{'set' if image.header.is_zoned else 'clear'} but the zoned extension is "
                f"{'present' if ext else 'absent'}", 72)
    if zones is None:
        return
    from qcow2harness.reference.zones import header_notes

    fields, base = zones.fields, zones.ext.offset + 8
    for clause, field_name, message in zones.problems:
        out.add(clause, message, base + ZONED_FIELD_OFFSET[field_name])
    header = image.header
    if header.ofs_backing_file_name or header.has_external_data_file or header.num_snapshots:
        out.add("ZONE-23", "zoned image with a backing file, external data file or internal "
                "snapshots", 72)
    if walk is not None:
        _check_zonedmeta_refcount(walk, fields, out)
    if not zones.table_readable:
        return  # the table is unreadable or meaningless: reported above
    for clause, field_name, message in header_notes(fields):
        out.add(clause, message, base + ZONED_FIELD_OFFSET[field_name])
    table = zones.table_offset
    verdict = judge_table(zones)
    if verdict.little_endian:
        out.add("WP-2", "the write-pointer table is little-endian (host byte order, as the "
                "posted v10 code writes it); qcow2 numbers are big-endian", table)
        return  # a byte-swapped table says nothing about the zones
    for tally in verdict.problems + verdict.notes:
        # The first zones by name, as every clause is reported; the rest are counted.
        for zone, message in tally.examples:
            out.add(tally.clause, message, table + 8 * zone)
        out.add_suppressed(tally.clause, tally.count - len(tally.examples))
    _report_dead_data(zones, out, table)


def _report_dead_data(zones: Zones, out: Findings, table: int) -> None:
    """WP-10, one finding: how many zones hold dead data, and the first of them."""
    if not zones.dead_clusters:
        return
    assert zones.dead_from is not None  # the walk counts dead clusters only through it
    zone = min(zones.dead_clusters)
    dead_from = zones.dead_from.at(zone)
    message = (f"zone {zone}: {zones.dead_clusters[zone]} guest cluster(s) at or above "
               f"{dead_from:#x} (its write pointer or capacity end) hold data that reads "
               "as zeros")
    if len(zones.dead_clusters) > 1:
        message = (f"{len(zones.dead_clusters):,} zones hold "
                   f"{sum(zones.dead_clusters.values()):,} guest cluster(s) of data that "
                   f"reads as zeros; the first: {message}")
    out.add("WP-10", message, table + 8 * zone)


def _check_zonedmeta_refcount(walk: Walk, fields: dict[str, int | bytes], out: Findings) -> None:
    offset = int(fields["zonedmeta_offset"])  # type: ignore[arg-type]
    length = 8 * int(fields["nr_zones"])  # type: ignore[arg-type]
    if walk.stored is None or offset % walk.cluster_size:
        return
    # The table's clusters; slices stop at the end of the file (ZONE-20 says the rest).
    first = offset >> walk.cluster_bits
    end = (offset + length + walk.cluster_size - 1) >> walk.cluster_bits
    if (walk.stored[first:end] == 0).any():
        out.add("ZONE-21", "zonedmeta clusters have refcount 0: the table is not refcounted",
                offset)
    if (walk.refs[first:end] > 1).any():
        out.add("ZONE-22", "zonedmeta clusters are also used by another structure", offset)
