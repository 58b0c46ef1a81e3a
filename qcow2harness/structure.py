"""The header and the placement of the tables it points to: one home for each limit.

`check` (checker/header.py), `info`, `map` and `report` judge the header fields, the
cluster size, the L1, refcount and snapshot tables' placement and size, the extension
area and the zoned write-pointer table's placement through these functions, so the
same damage gets the same clause from every command. Each function returns the
`Problem`s it finds; the checker reports them all, the other commands refuse the image
with the first one (`require_sound`).

Where the commands once disagreed, the clause is the one whose rule spec/ gives to the
damaged structure: a table placed past the end of the file is its placement clause
(the L1 table HDR-15, not L1-2, which is about an L1 entry's L2 offset; the refcount
table HDR-18, not RC-2, which is about refcount blocks; the wp table ZONE-20, not WP-3,
which is about an entry's reserved bits), and cluster_bits has HDR-5's one limit, 21.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qcow2harness.errors import ParseError

if TYPE_CHECKING:
    from qcow2harness.image import Image

MIN_CLUSTER_BITS = 9  # HDR-4
MAX_CLUSTER_BITS = 21  # HDR-5 (QEMU's limit, adopted by the registry)
MIN_LEN_V3_HEADER = 104  # HDR-6
MAX_L1_BYTES = 32 * 1024 * 1024  # HDR-17
MAX_REFTABLE_BYTES = 8 * 1024 * 1024  # HDR-19
MAX_SNAPSHOTS = 65536  # HDR-21
MAX_SNAPSHOT_TABLE = 64 * 1024 * 1024  # SNAP-2
MAX_REFCOUNT_ORDER = 6  # HDR-14
KNOWN_INCOMPATIBLE_BITS = 0x3F  # dirty .. zoned (HDR-9)
MAX_BACKING_NAME = 1023  # HDR-24

# The clauses judged here, besides the zoned table's (checker.zoned.BLOCKING_CLAUSES).
CLAUSES = frozenset({
    "HDR-3", "HDR-4", "HDR-5", "HDR-6", "HDR-7", "HDR-9", "HDR-14", "HDR-15", "HDR-16",
    "HDR-17", "HDR-18", "HDR-19", "HDR-20", "HDR-21", "HDR-24", "EXT-1", "EXT-2", "EXT-5",
    "DATA-2", "DATA-4",
})


@dataclass(frozen=True)
class Problem:
    """One broken rule: its clause, what is wrong, and the byte offset of the field."""

    clause: str
    message: str
    offset: int | None
    structure: str = "header"

    def error(self) -> ParseError:
        return ParseError(self.message, structure=self.structure, offset=self.offset,
                          clause=self.clause)


def cluster_bits_problems(cluster_bits: int) -> list[Problem]:
    """HDR-4, HDR-5: no structure can be located with any other cluster size."""
    if cluster_bits < MIN_CLUSTER_BITS:
        return [Problem("HDR-4", f"cluster_bits is {cluster_bits}, below {MIN_CLUSTER_BITS}",
                        20, "header.cluster_bits")]
    if cluster_bits > MAX_CLUSTER_BITS:
        return [Problem("HDR-5", f"cluster_bits is {cluster_bits}, above {MAX_CLUSTER_BITS}",
                        20, "header.cluster_bits")]
    return []


def header_length_problems(image: Image) -> list[Problem]:
    """HDR-6, HDR-7 (version 3), then HDR-3: the file holds the header it declares."""
    found = []
    len_header = image.len_header
    if image.version >= 3:
        if len_header < MIN_LEN_V3_HEADER or len_header % 8:
            found.append(Problem("HDR-6", f"header_length {len_header} is below 104 or not a "
                                 "multiple of 8", 100))
        if len_header > image.cluster_size:
            found.append(Problem("HDR-7", f"header_length {len_header} exceeds the cluster "
                                 f"size {image.cluster_size}", 100))
    if image.file_size < len_header:
        found.append(Problem("HDR-3", f"the file has {image.file_size} bytes, the header "
                             f"declares {len_header}", image.file_size))
    return found


def feature_problems(image: Image) -> list[Problem]:
    """HDR-9: an unknown incompatible feature bit makes every reader refuse the image."""
    unknown = int(image.header.unknown_incompatible_features or 0)
    if unknown:
        return [Problem("HDR-9", f"unknown incompatible feature bits {unknown:#x}: a reader "
                        "must refuse the image", 72, "header.incompatible_features")]
    return []


def refcount_order_problems(image: Image) -> list[Problem]:
    """HDR-14: no refcount can be read with a wider refcount_order."""
    if image.refcount_order > MAX_REFCOUNT_ORDER:
        return [Problem("HDR-14", f"refcount_order {image.refcount_order} is above "
                        f"{MAX_REFCOUNT_ORDER}", 96)]
    return []


def l1_table_problems(image: Image) -> list[Problem]:
    """HDR-16, HDR-17, HDR-15: the active L1 table maps the disk, within limits, inside
    the file."""
    header, cluster_size = image.header, image.cluster_size
    found = []
    virtual_size = int(header.virtual_size)
    entries_per_l2 = cluster_size // (16 if header.is_extended_l2 else 8)
    needed = -(-virtual_size // (cluster_size * entries_per_l2))
    count = int(header.num_l1_entries)
    if count < needed:
        found.append(Problem("HDR-16", f"l1_size {count} cannot map the virtual size "
                             f"{virtual_size} (needs {needed})", 36))
    if count * 8 > MAX_L1_BYTES:
        found.append(Problem("HDR-17", f"l1_size {count} makes the L1 table larger than "
                             "32 MiB", 36))
    offset = int(header.ofs_l1_table)
    if count and (offset % cluster_size or offset == 0 or offset + count * 8 > image.file_size):
        found.append(Problem("HDR-15", f"L1 table at {offset:#x} ({count} entries) is not "
                             "cluster-aligned or not inside the file", 40, "L1 table"))
    return found


def l1_table_placement_problems(image: Image) -> list[Problem]:
    """HDR-15 alone: what reading the active L1 table needs."""
    return [p for p in l1_table_problems(image) if p.clause == "HDR-15"]


def refcount_table_problems(image: Image) -> list[Problem]:
    """HDR-19, HDR-18: the refcount table is within the limit, not empty, inside the file."""
    header, cluster_size = image.header, image.cluster_size
    found = []
    length = int(header.num_refcount_table_clusters) * cluster_size
    offset = int(header.ofs_refcount_table)
    if length > MAX_REFTABLE_BYTES:
        found.append(Problem("HDR-19", f"refcount table of {length} bytes exceeds 8 MiB", 56))
    if offset % cluster_size or offset == 0 or length == 0 or offset + length > image.file_size:
        found.append(Problem("HDR-18", f"refcount table at {offset:#x} ({length} bytes) is "
                             "not cluster-aligned, empty, or not inside the file", 48,
                             "refcount table"))
    return found


def refcount_table_placement_problems(image: Image) -> list[Problem]:
    """HDR-18 alone: what reading the refcount table needs."""
    return [p for p in refcount_table_problems(image) if p.clause == "HDR-18"]


def snapshot_table_problems(image: Image) -> list[Problem]:
    """HDR-21, HDR-20: at most 65536 snapshots; snapshots_offset is cluster-aligned
    whatever nb_snapshots says, and the table starts inside the file when there is one."""
    header, cluster_size = image.header, image.cluster_size
    found = []
    count = int(header.num_snapshots)
    if count > MAX_SNAPSHOTS:
        found.append(Problem("HDR-21", f"nb_snapshots {count} exceeds {MAX_SNAPSHOTS}", 60))
    offset = int(header.ofs_snapshot_table)
    if offset % cluster_size or (count and (offset == 0 or offset >= image.file_size)):
        found.append(Problem("HDR-20", f"snapshot table at {offset:#x} is not cluster-aligned "
                             "or not inside the file", 64, "snapshot table"))
    return found


def extension_problems(image: Image) -> list[Problem]:
    """EXT-1, EXT-2 (and HDR-3 for a header_length past the file): the extension list
    can be walked."""
    try:
        image.extensions()
    except ParseError as error:
        return [Problem(error.clause or "EXT-1", f"header extension list: {error.message}",
                        error.offset, error.structure or "header extension list")]
    return []


def extension_area_end(image: Image) -> int:
    """Where the extension area ends, its end marker included (the list must walk)."""
    end = image.len_header
    for ext in image.extensions():
        end = ext.offset + 8 + ext.length + (-ext.length % 8)
    return end + 8


def chain_problems(image: Image) -> list[Problem]:
    """HDR-24, EXT-5, DATA-4, DATA-2: the names that lead to the backing and data files,
    and what may be combined with them. Needs a walkable extension list."""
    from qcow2harness.image import ExtensionType

    header = image.header
    found = []
    has_backing = header.ofs_backing_file_name != 0
    if has_backing:
        offset = int(header.ofs_backing_file_name)
        length = int(header.len_backing_file_name)
        if (length > MAX_BACKING_NAME or offset < extension_area_end(image)
                or offset + length > image.cluster_size or offset + length > image.file_size):
            found.append(Problem("HDR-24", f"backing file name at {offset:#x}, {length} bytes, "
                                 "is longer than 1023 bytes or not between the extensions and "
                                 "the end of cluster 0", 8, "backing file name"))
    backing_format = image.extension(ExtensionType.backing_file_format)
    if backing_format is not None:
        found += _name_problems("EXT-5", "backing format name", backing_format)
    if has_backing and header.is_data_file_raw:
        found.append(Problem("DATA-4", "data_file_raw set on an image with a backing file", 88))
    data_file = image.extension(ExtensionType.external_data_file)
    if data_file is not None:
        found += _name_problems("DATA-2", "external data file name", data_file)
    return found


def _name_problems(clause: str, what: str, ext: Any) -> list[Problem]:
    """A file or format name in an extension: not empty, no NUL inside its length."""
    if not ext.length:
        return [Problem(clause, f"{what} is empty", ext.offset, "header extension")]
    value = bytes(ext.body.value)
    if b"\0" in value:
        return [Problem(clause, f"{what} has a NUL byte inside its length",
                        ext.offset + 8 + value.index(b"\0"), "header extension")]
    return []


def zoned_table_problems(image: Image) -> list[Problem]:
    """The zoned extension's problems that make its write-pointer table unreadable
    (checker.zoned.BLOCKING_CLAUSES: geometry, ZONE-18..ZONE-20), by the rules of
    reference/zones.py. Needs a walkable extension list."""
    from qcow2harness.checker.zoned import BLOCKING_CLAUSES, ZONED_FIELD_OFFSET, read_zoned

    zones = read_zoned(image)
    if zones is None:
        return []
    base = zones.ext.offset + 8
    return [Problem(clause, message, base + ZONED_FIELD_OFFSET.get(field, 0), "zoned extension")
            for clause, field, message in zones.problems if clause in BLOCKING_CLAUSES]


def table_problems(image: Image) -> list[Problem]:
    """Every problem of the header and table placement, in the checker's order, assuming
    a usable cluster size and a complete header."""
    return [*feature_problems(image), *refcount_order_problems(image),
            *l1_table_problems(image), *refcount_table_problems(image),
            *snapshot_table_problems(image)]


def problems(image: Image) -> list[Problem]:
    """The header, the tables and the extension area; stops where nothing further can be
    located (a cluster size out of range, a file shorter than its header, an extension
    list that cannot be walked)."""
    found = cluster_bits_problems(image.cluster_bits)
    if found:
        return found
    found = header_length_problems(image)
    if any(p.clause == "HDR-3" for p in found):
        return found
    found += table_problems(image)
    extensions = extension_problems(image)
    if extensions:
        return found + extensions
    return found + chain_problems(image) + zoned_table_problems(image)


def require_sound(image: Image) -> None:
    """Refuse an image whose header or table placement is broken: a ParseError naming the
    clause and the offset of the first problem, as `check` reports it."""
    found = problems(image)
    if found:
        raise found[0].error()
