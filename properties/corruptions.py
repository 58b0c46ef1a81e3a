"""Targeted corruptions: for each image-checkable spec clause, a way to break exactly it.

A `Corruption` names the clause it breaks, the base image it starts from and a
mutation of that image's bytes. Every structure is located through the image
model (`Image.from_bytes`), never through offsets written down here; only the
offsets of fields *inside* a structure come from the small tables below, which
tests/test_clause_coverage.py checks against the generated parser.

    from qcow2harness.properties.corruptions import CORRUPTIONS, base_image, corruptions_for

    data = bytearray(base_image("qemu-default", workdir))
    corruption = corruptions_for("L2-3")[0]
    corruption.apply(data)            # data now breaks L2-3 and nothing else

`also` lists the clauses a corruption may break as a documented consequence (a
wrong refcount after moving a reference, say); the checker must report no other
(tests/test_clause_coverage.py). For MAY clauses, and the SHOULD
clauses that describe a diagnosis, "breaking" means producing the image that
exercises the permission or earns the finding: the checker reports it at the
clause's level without counting it as a MUST violation.

Base images (`BASE_KINDS`): QEMU-made ones come from the corpus recipes
(qcow2harness.corpus) and need qemu-img and qemu-io; zoned ones come from the
reference writer. `base_image()` builds each kind once per work directory.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qcow2harness.errors import HarnessError, WriterError
from qcow2harness.image import OFFSET_MASK, ExtensionType, Image
from qcow2harness.image import REFTABLE_OFFSET_MASK as REFTABLE_ENTRY_MASK

Params = Mapping[str, Any]
Mutation = Callable[[bytearray, Image, Params], None]

__all__ = [
    "ADDITIONAL_HEADER_FIELDS",
    "BASE_KINDS",
    "BITMAP_ENTRY_FIELDS",
    "BITMAPS_EXTENSION_FIELDS",
    "CORRUPTIONS",
    "CRYPT_POINTER_FIELDS",
    "Corruption",
    "CorruptionError",
    "HEADER_FIELDS",
    "SNAPSHOT_FIELDS",
    "ZONED_FIELDS",
    "append_clusters",
    "base_image",
    "bitmap_entries",
    "bitmap_virtual_size",
    "corruptions_for",
    "extension_field",
    "filler_snapshots",
    "fill_bitmap",
    "place_compressed_cluster",
    "replace_snapshot_table",
    "set_refcount",
    "rewrite_bitmap_entries",
    "snapshot_entry",
    "snapshot_sizes_totalling",
]


class CorruptionError(HarnessError):
    """A corruption cannot be applied to the image it was given (wrong base kind)."""


# ---------------------------------------------------------------------------
# Field layout inside structures: (offset, width) in bytes, big-endian.
# The positions of the structures themselves always come from the parse.
# ---------------------------------------------------------------------------

HEADER_FIELDS: dict[str, tuple[int, int]] = {
    "version": (4, 4),
    "ofs_backing_file_name": (8, 8),
    "len_backing_file_name": (16, 4),
    "cluster_bits": (20, 4),
    "virtual_size": (24, 8),
    "crypt_method": (32, 4),
    "num_l1_entries": (36, 4),
    "ofs_l1_table": (40, 8),
    "ofs_refcount_table": (48, 8),
    "num_refcount_table_clusters": (56, 4),
    "num_snapshots": (60, 4),
    "ofs_snapshot_table": (64, 8),
    "incompatible_features": (72, 8),
    "compatible_features": (80, 8),
    "autoclear_features": (88, 8),
    "refcount_order": (96, 4),
    "len_header": (100, 4),
}

# Additional fields, present only when header_length covers them.
ADDITIONAL_HEADER_FIELDS: dict[str, tuple[int, int]] = {
    "compression_type": (104, 1),
}

# Inside the zoned extension's data (v10 layout, 56 bytes).
ZONED_FIELDS: dict[str, tuple[int, int]] = {
    "zoned_model": (0, 1),
    "reserved": (1, 3),
    "zone_size": (4, 8),
    "zone_capacity": (12, 8),
    "num_conventional_zones": (20, 4),
    "num_zones": (24, 4),
    "max_active_zones": (28, 4),
    "max_open_zones": (32, 4),
    "max_append_bytes": (36, 4),
    "len_zonedmeta": (40, 8),
    "ofs_zonedmeta": (48, 8),
}

# Inside the bitmaps extension's data (24 bytes).
BITMAPS_EXTENSION_FIELDS: dict[str, tuple[int, int]] = {
    "num_bitmaps": (0, 4),
    "reserved": (4, 4),
    "len_bitmap_directory": (8, 8),
    "ofs_bitmap_directory": (16, 8),
}

# Inside the full disk encryption header pointer's data (16 bytes).
CRYPT_POINTER_FIELDS: dict[str, tuple[int, int]] = {
    "ofs_crypt_header": (0, 8),
    "len_crypt_header": (8, 8),
}

# The fixed 40-byte part of a snapshot table entry.
SNAPSHOT_FIELDS: dict[str, tuple[int, int]] = {
    "ofs_l1_table": (0, 8),
    "num_l1_entries": (8, 4),
    "len_id_str": (12, 2),
    "len_name": (14, 2),
    "date_sec": (16, 4),
    "date_nsec": (20, 4),
    "vm_clock_nsec": (24, 8),
    "len_vm_state_32": (32, 4),
    "len_extra_data": (36, 4),
}
SNAPSHOT_FIXED = 40

# The fixed 24-byte part of a bitmap directory entry.
BITMAP_ENTRY_FIELDS: dict[str, tuple[int, int]] = {
    "ofs_bitmap_table": (0, 8),
    "num_bitmap_table_entries": (8, 4),
    "flags": (12, 4),
    "bitmap_type": (16, 1),
    "granularity_bits": (17, 1),
    "len_name": (18, 2),
    "len_extra_data": (20, 4),
}
BITMAP_ENTRY_FIXED = 24

COPIED = 1 << 63
COMPRESSED = 1 << 62
ENTRY_OFFSET_MASK = int(OFFSET_MASK)
REFTABLE_OFFSET_MASK = int(REFTABLE_ENTRY_MASK)
CONVENTIONAL = 1 << 59
UNKNOWN_EXTENSION = 0x7E57AB1E  # a type no specification defines


# ---------------------------------------------------------------------------
# The dataclass
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Corruption:
    """One way to break one clause.

    `params` maps each free parameter to the values it may take (the first is
    the default); `targeted_corruptions()` draws from them. Index parameters are
    taken modulo the number of candidates the image offers.
    """

    clause: str
    name: str
    description: str
    base: str
    mutate: Mutation = field(repr=False, compare=False)
    params: Mapping[str, Sequence[Any]] = field(default_factory=dict, compare=False)
    also: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.clause}/{self.name}"

    def defaults(self) -> dict[str, Any]:
        return {key: values[0] for key, values in self.params.items()}

    def apply(self, data: bytearray, **params: Any) -> None:
        """Mutate `data` (a base image of kind `self.base`) in place."""
        unknown = set(params) - set(self.params)
        if unknown:
            raise CorruptionError(f"{self.id}: unknown parameter(s) {sorted(unknown)}")
        chosen = {**self.defaults(), **params}
        self.mutate(data, Image.from_bytes(bytes(data)), chosen)

    def broken(self, base: bytes, **params: Any) -> bytes:
        """A broken copy of `base`."""
        data = bytearray(base)
        self.apply(data, **params)
        return bytes(data)


# ---------------------------------------------------------------------------
# Low-level helpers
# ---------------------------------------------------------------------------


def _get(data: bytearray, offset: int, width: int) -> int:
    return int.from_bytes(data[offset:offset + width], "big")


def _put(data: bytearray, offset: int, value: int, width: int) -> None:
    data[offset:offset + width] = value.to_bytes(width, "big")


def _header_field(name: str) -> tuple[int, int]:
    return HEADER_FIELDS.get(name) or ADDITIONAL_HEADER_FIELDS[name]


def _set_header(data: bytearray, name: str, value: int) -> None:
    offset, width = _header_field(name)
    _put(data, offset, value, width)


def _or_header(data: bytearray, name: str, bits: int) -> None:
    offset, width = _header_field(name)
    _put(data, offset, _get(data, offset, width) | bits, width)


def _clear_header(data: bytearray, name: str, bits: int) -> None:
    offset, width = _header_field(name)
    _put(data, offset, _get(data, offset, width) & ~bits, width)


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


def _pick(candidates: Sequence[Any], index: int, what: str) -> Any:
    if not candidates:
        raise CorruptionError(f"the base image has no {what}")
    return candidates[index % len(candidates)]


# -- refcounts -----------------------------------------------------------------


def _refcount_slot(img: Image, cluster: int) -> tuple[int, int, int]:
    """(byte offset, bit shift, width in bits) of the stored refcount of `cluster`."""
    bits = 1 << img.refcount_order
    per_block = img.cluster_size * 8 // bits
    index, within = divmod(cluster, per_block)
    table = img.refcount_table_entries()
    if index >= len(table) or not int(table[index]) & REFTABLE_OFFSET_MASK:
        raise CorruptionError(f"no refcount block covers cluster {cluster}")
    block = int(table[index]) & REFTABLE_OFFSET_MASK
    bit = within * bits
    return block + bit // 8, bit % 8, bits


def _get_refcount(data: bytearray, img: Image, cluster: int) -> int:
    offset, shift, bits = _refcount_slot(img, cluster)
    if bits >= 8:
        return _get(data, offset, bits // 8)
    return (data[offset] >> shift) & ((1 << bits) - 1)


def set_refcount(data: bytearray, img: Image, cluster: int, value: int) -> None:
    """Store `value` as the refcount of `cluster` (any refcount_order)."""
    offset, shift, bits = _refcount_slot(img, cluster)
    if bits >= 8:
        _put(data, offset, value, bits // 8)
        return
    mask = ((1 << bits) - 1) << shift
    data[offset] = (data[offset] & ~mask) | ((value << shift) & mask)


def _add_refcount(data: bytearray, img: Image, cluster: int, delta: int) -> None:
    set_refcount(data, img, cluster, _get_refcount(data, img, cluster) + delta)


def _append(data: bytearray, img: Image, content: bytes, refcount: int = 1) -> int:
    """Append `content` in fresh clusters at the end of the file; returns their offset."""
    size = img.cluster_size
    offset = _round_up(len(data), size)
    data.extend(bytes(offset - len(data)))
    data.extend(content.ljust(_round_up(max(len(content), 1), size), b"\0"))
    for cluster in range(offset // size, len(data) // size):
        set_refcount(data, img, cluster, refcount)
    return offset


def _beyond_eof(data: bytearray, img: Image, clusters: int = 4) -> int:
    """A cluster-aligned offset some clusters past the end of the file."""
    return _round_up(len(data), img.cluster_size) + clusters * img.cluster_size


# -- metadata clusters ---------------------------------------------------------


def _metadata_clusters(img: Image) -> dict[str, int]:
    """Host clusters that hold metadata with no COPIED flag pointing at them."""
    size = img.cluster_size
    table = img.refcount_table_entries()
    return {
        "header": 0,
        "l1": int(img.header.ofs_l1_table) // size,
        "refcount-table": int(img.header.ofs_refcount_table) // size,
        "refcount-block": (int(table[0]) & REFTABLE_OFFSET_MASK) // size,
    }


METADATA_KINDS = ("header", "l1", "refcount-table", "refcount-block")


# -- L1 and L2 -----------------------------------------------------------------


@dataclass(frozen=True)
class _L2Ref:
    offset: int  # of the entry in the file
    guest: int  # guest offset of the cluster it maps
    raw: int
    bitmap: int | None  # extended L2 subcluster bitmap


def _l2_refs(img: Image) -> Iterator[_L2Ref]:
    """Every entry of every L2 table reachable from the active L1 table."""
    root = img.root
    per_table = int(root.num_l2_entries)
    width = int(root.len_l2_entry)
    extended = bool(img.header.is_extended_l2)
    for i, l1 in enumerate(root.l1_table.entries):
        base = int(l1.ofs_l2_table)
        if not base:
            continue
        for j, entry in enumerate(l1.l2_table.entries):
            bitmap = int(entry.subcluster_bitmap) if extended else None
            yield _L2Ref(base + j * width, (i * per_table + j) * img.cluster_size,
                         int(entry.raw), bitmap)


def _allocated(img: Image) -> list[_L2Ref]:
    """Standard entries with a host offset (data or preallocated clusters)."""
    return [r for r in _l2_refs(img) if not r.raw & COMPRESSED and r.raw & ENTRY_OFFSET_MASK]


def _unallocated(img: Image) -> list[_L2Ref]:
    return [r for r in _l2_refs(img) if r.raw == 0 and not r.bitmap]


def _compressed(img: Image) -> list[_L2Ref]:
    return [r for r in _l2_refs(img) if r.raw & COMPRESSED]


def _compressed_descriptor(cluster_bits: int, offset: int, sectors: int) -> int:
    """A compressed descriptor for `sectors` 512-byte sectors (at least 1) at `offset`."""
    x = 62 - (cluster_bits - 8)
    return COMPRESSED | ((sectors - 1) << x) | offset


def _compressed_fields(img: Image, raw: int) -> tuple[int, int]:
    """(host offset, number of sectors) of a compressed descriptor."""
    x = 62 - (img.cluster_bits - 8)
    sectors = ((raw >> x) & ((1 << (img.cluster_bits - 8)) - 1)) + 1
    return raw & ((1 << x) - 1), sectors


def _l1_offset(img: Image, index: int = 0) -> int:
    return int(img.header.ofs_l1_table) + 8 * index


def _allocated_l1(img: Image) -> list[int]:
    return [i for i, raw in enumerate(img.l1_entries()) if int(raw) & ENTRY_OFFSET_MASK]


# -- header extensions ---------------------------------------------------------

Record = tuple[int, bytes] | tuple[int, bytes, int]


def _records(data: bytearray, img: Image) -> list[Record]:
    return [(e.magic, bytes(data[e.offset + 8:e.offset + 8 + e.length])) for e in img.extensions()]


def _extension_area_end(data: bytearray, img: Image) -> int:
    """End of the current extension list, its end marker included."""
    exts = img.extensions()
    if not exts:
        return img.len_header + 8
    last = exts[-1]
    return last.offset + 8 + _round_up(last.length, 8) + 8


def _write_extensions(
    data: bytearray, img: Image, records: Sequence[Record], *,
    start: int | None = None, end_marker: bool = True,
) -> int:
    """Rewrite the extension list inside cluster 0; returns where it ends.

    A record is (magic, body) or (magic, body, declared length).
    """
    start = img.len_header if start is None else start
    blob = bytearray()
    for record in records:
        magic, body = record[0], record[1]
        length = record[2] if len(record) == 3 else len(body)  # type: ignore[misc]
        blob += struct.pack(">II", magic, length) + body + bytes(-len(body) % 8)
    if end_marker:
        blob += bytes(8)
    limit = img.cluster_size
    if img.header.ofs_backing_file_name:
        limit = min(limit, int(img.header.ofs_backing_file_name))
    if start + len(blob) > limit:
        raise CorruptionError("the extensions do not fit in the header cluster")
    old_end = max(_extension_area_end(data, img), start + len(blob))
    data[start:old_end] = bytes(old_end - start)
    data[start:start + len(blob)] = blob
    return start + len(blob)


def _extension(img: Image, kind: ExtensionType) -> Any:
    ext = img.extension(kind)
    if ext is None:
        raise CorruptionError(f"the base image has no {kind.name} extension")
    return ext


def extension_field(img: Image, kind: ExtensionType, table: Mapping[str, tuple[int, int]],
                    name: str) -> tuple[int, int]:
    """(offset in the file, width) of a field of the image's extension of this kind."""
    offset, width = table[name]
    return _extension(img, kind).offset + 8 + offset, width


def _set_ext_field(data: bytearray, img: Image, kind: ExtensionType,
                   table: Mapping[str, tuple[int, int]], name: str, value: int) -> None:
    offset, width = extension_field(img, kind, table, name)
    _put(data, offset, value, width)


def _set_zoned(data: bytearray, img: Image, name: str, value: int) -> None:
    _set_ext_field(data, img, ExtensionType.zoned, ZONED_FIELDS, name, value)


def _place_backing_name(data: bytearray, img: Image, name: bytes) -> None:
    """Give the image a backing file name, placed after the extension area."""
    offset = _round_up(_extension_area_end(data, img), 8)
    if offset + len(name) > img.cluster_size:
        raise CorruptionError("no room for a backing file name in the header cluster")
    data[offset:offset + len(name)] = name
    _set_header(data, "ofs_backing_file_name", offset)
    _set_header(data, "len_backing_file_name", len(name))


# -- snapshots -----------------------------------------------------------------


def _snapshot_len(node: Any) -> int:
    raw = SNAPSHOT_FIXED + int(node.len_extra_data) + int(node.len_id_str) + int(node.len_name)
    return _round_up(raw, 8)


def _snapshots(img: Image) -> list[tuple[int, Any]]:
    """(offset, parsed entry) of each snapshot table entry."""
    offset = int(img.header.ofs_snapshot_table)
    out = []
    for node in img.snapshots():
        out.append((offset, node))
        offset += _snapshot_len(node)
    if not out:
        raise CorruptionError("the base image has no snapshot")
    return out


def _snapshot_bytes(
    *, ofs_l1_table: int, num_l1_entries: int, id_str: bytes, name: bytes, extra: bytes,
    date_sec: int = 0, date_nsec: int = 0, vm_clock_nsec: int = 0, len_vm_state_32: int = 0,
) -> bytes:
    fixed = struct.pack(">QIHHIIQII", ofs_l1_table, num_l1_entries, len(id_str), len(name),
                        date_sec, date_nsec, vm_clock_nsec, len_vm_state_32, len(extra))
    raw = fixed + extra + id_str + name
    return raw + bytes(-len(raw) % 8)


def _snapshot_copy(node: Any, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "ofs_l1_table": int(node.ofs_l1_table), "num_l1_entries": int(node.num_l1_entries),
        "id_str": bytes(node.id_str), "name": bytes(node.name),
        "extra": bytes(node._raw_extra_data), "date_sec": int(node.date_sec),
        "date_nsec": int(node.date_nsec), "vm_clock_nsec": int(node.vm_clock_nsec),
        "len_vm_state_32": int(node.len_vm_state_32),
    }
    fields.update(changes)
    return _snapshot_bytes(**fields)


def _rewrite_snapshot_table(data: bytearray, img: Image, entries: Sequence[bytes]) -> None:
    """Write a new snapshot table in place of the old one (it must fit in its clusters)."""
    start = int(img.header.ofs_snapshot_table)
    old = sum(_snapshot_len(node) for _, node in _snapshots(img))
    blob = b"".join(entries)
    room = _round_up(max(old, 1), img.cluster_size)
    if len(blob) > room:
        raise CorruptionError("the new snapshot table does not fit in the old one's clusters")
    data[start:start + room] = blob.ljust(room, b"\0")
    _set_header(data, "num_snapshots", len(entries))


def snapshot_entry(img: Image, number: int, **changes: Any) -> bytes:
    """Snapshot `number`'s table entry, with fields changed (the keywords of a snapshot
    entry: ofs_l1_table, num_l1_entries, id_str, name, extra, ...)."""
    return _snapshot_copy(_snapshots(img)[number][1], **changes)


MAX_SNAPSHOT_NAMES = 2 * 65535  # an id and a name of 65535 bytes each


def filler_snapshots(sizes: Sequence[int], extra: bytes = bytes(16),
                     first: int = 0) -> list[bytes]:
    """Snapshot entries of exactly these sizes (multiples of 8), with an empty L1 table,
    unique ids and names, and 1 to 7 bytes of padding each."""
    entries = []
    for number, size in enumerate(sizes, first):
        fixed = 40 + len(extra)
        padding = max(1, size - fixed - MAX_SNAPSHOT_NAMES)
        names = size - fixed - padding
        tag = f"{number}:".encode()
        id_length = min(65535, names - len(tag))
        if size % 8 or padding > 7 or id_length < len(tag):
            raise CorruptionError(f"no snapshot entry of {size} bytes")
        entry = _snapshot_bytes(ofs_l1_table=0, num_l1_entries=0,
                                id_str=(tag * id_length)[:id_length],
                                name=(tag * names)[:names - id_length], extra=extra)
        assert len(entry) == size
        entries.append(entry)
    return entries


def snapshot_sizes_totalling(total: int) -> list[int]:
    """Entry sizes for filler_snapshots that add up to `total` bytes (a multiple of 8)."""
    largest = _round_up(40 + 16 + MAX_SNAPSHOT_NAMES + 1, 8)
    sizes = []
    while total:
        size = total if total <= largest else min(largest, total - 64)
        sizes.append(size)
        total -= size
    return sizes


def replace_snapshot_table(data: bytearray, img: Image, entries: Sequence[bytes]) -> None:
    """Append a new snapshot table of these entries, refcounted, and free the old one's
    first cluster."""
    old = int(img.header.ofs_snapshot_table)
    _set_header(data, "ofs_snapshot_table", _append(data, img, b"".join(entries)))
    _set_header(data, "num_snapshots", len(entries))
    if old:
        set_refcount(data, img, old // img.cluster_size, 0)


# -- bitmaps -------------------------------------------------------------------


def _bitmap_entry_len(node: Any) -> int:
    return _round_up(BITMAP_ENTRY_FIXED + int(node.len_extra_data) + int(node.len_name), 8)


def bitmap_entries(img: Image) -> list[tuple[int, Any]]:
    """(offset, parsed entry) of each bitmap directory entry."""
    ext = _extension(img, ExtensionType.bitmaps)
    offset = int(ext.body.ofs_bitmap_directory)
    out = []
    for node in img.bitmap_directory():
        out.append((offset, node))
        offset += _bitmap_entry_len(node)
    return out


def _bitmap_entry_bytes(node: Any, *, name: bytes | None = None, extra: bytes | None = None,
                        padding: bytes | None = None, flags: int | None = None) -> bytes:
    name = bytes(node.name) if name is None else name
    extra = bytes(node.extra_data) if extra is None else extra
    flags = int(node.flags) if flags is None else flags
    fixed = struct.pack(">QIIBBHI", int(node.ofs_bitmap_table), int(node.num_bitmap_table_entries),
                        flags, int(node.bitmap_type), int(node.granularity_bits),
                        len(name), len(extra))
    raw = fixed + extra + name
    pad = bytes(-len(raw) % 8) if padding is None else padding
    return raw + pad


def _rewrite_bitmap_directory(data: bytearray, img: Image, entries: Sequence[bytes]) -> None:
    ext = _extension(img, ExtensionType.bitmaps)
    start = int(ext.body.ofs_bitmap_directory)
    old = int(ext.body.len_bitmap_directory)
    blob = b"".join(entries)
    end = start + max(old, len(blob))
    if end > len(data):
        data.extend(bytes(end - len(data)))
    data[start:start + old] = bytes(old)
    data[start:start + len(blob)] = blob
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS,
                   "len_bitmap_directory", len(blob))
    if (start + len(blob) - 1) // img.cluster_size != start // img.cluster_size:
        raise CorruptionError("the new bitmap directory leaves its cluster")


def rewrite_bitmap_entries(data: bytearray, img: Image,
                           changes: Mapping[int, Mapping[str, Any]]) -> None:
    """Rewrite the bitmap directory, giving entry number N the new name, extra data or
    flags in changes[N] (keys of those names); the directory's size follows."""
    entries = [_bitmap_entry_bytes(node, **changes.get(i, {}))
               for i, (_, node) in enumerate(bitmap_entries(img))]
    _rewrite_bitmap_directory(data, img, entries)


# -- zones ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Zones:
    size: int
    capacity: int
    conventional: int
    count: int
    table: int  # offset of the zonedmeta table
    entries: tuple[int, ...]

    def start(self, zone: int) -> int:
        return zone * self.size

    def wp(self, zone: int) -> int:
        return self.entries[zone] & ((1 << 59) - 1)

    def sequential(self, state: str) -> list[int]:
        out = []
        for zone in range(self.conventional, self.count):
            used = self.wp(zone) - self.start(zone)
            kind = "empty" if used == 0 else "full" if used >= self.capacity else "closed"
            if kind == state:
                out.append(zone)
        return out


def _zones(img: Image) -> _Zones:
    zoned = img.zoned
    entries = img.zonedmeta_entries()
    if zoned is None or entries is None:
        raise CorruptionError("the base image is not zoned")
    return _Zones(int(zoned.zone_size), int(zoned.zone_capacity),
                  int(zoned.num_conventional_zones), int(zoned.num_zones),
                  int(zoned.ofs_zonedmeta), tuple(int(e) for e in entries))


def _set_wp_entry(data: bytearray, zones: _Zones, zone: int, value: int) -> None:
    _put(data, zones.table + 8 * zone, value, 8)


def _zone(zones: _Zones, state: str, index: int = 0) -> int:
    if state == "conventional":
        return _pick(list(range(zones.conventional)), index, "conventional zone")
    return _pick(zones.sequential(state), index, f"{state} sequential zone")


# ---------------------------------------------------------------------------
# Corruptions, family by family
# ---------------------------------------------------------------------------

CORRUPTIONS: list[Corruption] = []

# A structure the checker cannot locate leaves the clusters it owns unreferenced, so
# they read as leaks: a documented consequence of the clauses that make one unreachable.
LEAKS_WHEN_UNREACHABLE = "RC-5"


def corruption(
    clause: str, name: str, base: str, *, params: Mapping[str, Sequence[Any]] | None = None,
    also: Sequence[str] = (),
) -> Callable[[Mutation], Mutation]:
    """Register the decorated mutation; its docstring is the description."""

    def register(fn: Mutation) -> Mutation:
        description = " ".join((fn.__doc__ or "").split())
        CORRUPTIONS.append(Corruption(clause, name, description, base, fn, dict(params or {}),
                                      tuple(also)))
        return fn

    return register


def corruptions_for(clause_id: str) -> list[Corruption]:
    """Every corruption that breaks `clause_id` (possibly none)."""
    return [c for c in CORRUPTIONS if c.clause == clause_id]


# -- HDR -----------------------------------------------------------------------


@corruption("HDR-1", "bad-magic", "qemu-default")
def _hdr1(data: bytearray, img: Image, p: Params) -> None:
    """The magic reads "QFI" 0x00 instead of "QFI" 0xfb."""
    data[3] = 0


@corruption("HDR-2", "version-4", "qemu-default", params={"version": (4, 1, 0, 0xFFFFFFFF)})
def _hdr2(data: bytearray, img: Image, p: Params) -> None:
    """The version field is neither 2 nor 3."""
    _set_header(data, "version", p["version"])


@corruption("HDR-3", "truncated-header", "qemu-default", params={"keep": (100, 72, 8, 108)})
def _hdr3(data: bytearray, img: Image, p: Params) -> None:
    """The file ends inside the header that header_length declares."""
    del data[p["keep"]:]


@corruption("HDR-4", "cluster-bits-small", "qemu-default", params={"bits": (8, 0, 1)})
def _hdr4(data: bytearray, img: Image, p: Params) -> None:
    """cluster_bits is below 9."""
    _set_header(data, "cluster_bits", p["bits"])


@corruption("HDR-5", "cluster-bits-large", "qemu-default", params={"bits": (22, 30, 63)})
def _hdr5(data: bytearray, img: Image, p: Params) -> None:
    """cluster_bits is above 21 (QEMU's limit)."""
    _set_header(data, "cluster_bits", p["bits"])


@corruption("HDR-6", "header-length-unaligned", "qemu-default")
def _hdr6(data: bytearray, img: Image, p: Params) -> None:
    """header_length is 108, not a multiple of 8; the extensions are moved to start there, so
    the list itself stays well formed."""
    records = _records(data, img)
    _set_header(data, "len_header", 108)
    data[104:112] = bytes(8)
    _write_extensions(data, img, records, start=108)


@corruption("HDR-6", "header-length-short", "qemu-default",
            also=("EXT-1", "EXT-2", "EXT-3", "EXT-4", "EXT-7", "HDR-23"))
def _hdr6_short(data: bytearray, img: Image, p: Params) -> None:
    """A version 3 header whose header_length is 96, below the 104-byte minimum (the
    extension walk then starts inside the header)."""
    _set_header(data, "len_header", 96)


@corruption("HDR-7", "header-past-cluster-0", "qemu-default", also=("EXT-1", "EXT-2"))
def _hdr7(data: bytearray, img: Image, p: Params) -> None:
    """header_length is one cluster plus 8 bytes: the header leaves cluster 0."""
    _set_header(data, "len_header", img.cluster_size + 8)


@corruption("HDR-8", "v3-features-as-v2", "qemu-extended-l2",
            also=("L2-1", "L2-2", "L2-4", "RC-4", "RC-5", "L2-3"))
def _hdr8(data: bytearray, img: Image, p: Params) -> None:
    """An extended-L2 image relabelled version 2: its 16-byte L2 entries need incompatible
    bit 4, which a version 2 image cannot carry."""
    _set_header(data, "version", 2)


@corruption("HDR-9", "unknown-incompatible-bit", "qemu-default", params={"bit": (6, 7, 40, 63)})
def _hdr9(data: bytearray, img: Image, p: Params) -> None:
    """An incompatible feature bit that no specification defines is set."""
    _or_header(data, "incompatible_features", 1 << p["bit"])


@corruption("HDR-10", "unknown-compatible-bit", "qemu-default", params={"bit": (1, 7, 63)})
def _hdr10(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) An unknown compatible feature bit is set; a note, not a violation."""
    _or_header(data, "compatible_features", 1 << p["bit"])


@corruption("HDR-11", "unknown-autoclear-bit", "qemu-default", params={"bit": (2, 7, 63)})
def _hdr11(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) An unknown autoclear feature bit is set; a note, not a violation."""
    _or_header(data, "autoclear_features", 1 << p["bit"])


@corruption("HDR-12", "dirty-with-mismatch", "qemu-default", params={"cluster": METADATA_KINDS})
def _hdr12(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) The dirty bit is set and one stored refcount is one too high: a repair is
    needed, reported under HDR-12 instead of RC-5."""
    _or_header(data, "incompatible_features", 1)
    _add_refcount(data, img, _metadata_clusters(img)[p["cluster"]], 1)


@corruption("HDR-13", "corrupt-bit", "qemu-default")
def _hdr13(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) Incompatible bit 1 (corrupt) is set on an otherwise sound image."""
    _or_header(data, "incompatible_features", 2)


@corruption("HDR-14", "refcount-order-7", "qemu-default", params={"order": (7, 8, 63)},
            also=("RC-4", "RC-5"))
def _hdr14(data: bytearray, img: Image, p: Params) -> None:
    """refcount_order is above 6."""
    _set_header(data, "refcount_order", p["order"])


@corruption("HDR-15", "l1-unaligned", "qemu-default", also=("RC-5",))
def _hdr15(data: bytearray, img: Image, p: Params) -> None:
    """The active L1 table is copied 8 bytes further into its cluster and l1_table_offset
    points there: same cluster, not cluster-aligned."""
    start = int(img.header.ofs_l1_table)
    count = int(img.header.num_l1_entries)
    table = bytes(data[start:start + 8 * count])
    data[start:start + 8 * count] = bytes(8 * count)
    data[start + 8:start + 8 + 8 * count] = table
    _set_header(data, "ofs_l1_table", start + 8)


@corruption("HDR-15", "l1-past-eof", "qemu-default", also=("RC-5", "OVL-3"))
def _hdr15_eof(data: bytearray, img: Image, p: Params) -> None:
    """l1_table_offset is cluster-aligned but past the end of the file."""
    _set_header(data, "ofs_l1_table", _beyond_eof(data, img))


@corruption("HDR-16", "l1-too-small", "qemu-default")
def _hdr16(data: bytearray, img: Image, p: Params) -> None:
    """virtual_size grows so that it needs one more L1 entry than l1_size provides."""
    covered = int(img.header.num_l1_entries) * int(img.root.num_l2_entries) * img.cluster_size
    _set_header(data, "virtual_size", covered + img.cluster_size)


@corruption("HDR-17", "l1-over-32mib", "qemu-default", also=(LEAKS_WHEN_UNREACHABLE, "HDR-15",))
def _hdr17(data: bytearray, img: Image, p: Params) -> None:
    """l1_size is 4194305 entries, one more than QEMU's 32 MiB limit."""
    _set_header(data, "num_l1_entries", 4194305)


@corruption("HDR-18", "refcount-table-empty", "qemu-default", also=("RC-4",))
def _hdr18(data: bytearray, img: Image, p: Params) -> None:
    """refcount_table_clusters is 0."""
    _set_header(data, "num_refcount_table_clusters", 0)


@corruption("HDR-18", "refcount-table-unaligned", "qemu-default")
def _hdr18_unaligned(data: bytearray, img: Image, p: Params) -> None:
    """The refcount table is copied 8 bytes further into its cluster (its last entry, which is
    0, dropped) and refcount_table_offset points there."""
    start = int(img.header.ofs_refcount_table)
    length = int(img.header.num_refcount_table_clusters) * img.cluster_size
    table = bytes(data[start:start + length - 8])
    data[start:start + 8] = bytes(8)
    data[start + 8:start + length] = table
    _set_header(data, "ofs_refcount_table", start + 8)


@corruption("HDR-19", "refcount-table-over-8mib", "qemu-default", also=("HDR-18",))
def _hdr19(data: bytearray, img: Image, p: Params) -> None:
    """refcount_table_clusters makes the table one cluster larger than 8 MiB."""
    _set_header(data, "num_refcount_table_clusters", 8388608 // img.cluster_size + 1)


@corruption("HDR-20", "snapshot-table-unaligned", "qemu-snapshot")
def _hdr20(data: bytearray, img: Image, p: Params) -> None:
    """The snapshot table is moved 8 bytes further into its cluster: same cluster, not
    cluster-aligned."""
    start = int(img.header.ofs_snapshot_table)
    length = sum(_snapshot_len(node) for _, node in _snapshots(img))
    table = bytes(data[start:start + length])
    data[start:start + 8] = bytes(8)
    data[start + 8:start + 8 + length] = table
    _set_header(data, "ofs_snapshot_table", start + 8)


@corruption("HDR-20", "snapshot-table-past-eof", "qemu-default", also=("SNAP-1", "OVL-3"))
def _hdr20_eof(data: bytearray, img: Image, p: Params) -> None:
    """nb_snapshots is 1 and snapshots_offset is aligned but past the end of the file."""
    _set_header(data, "num_snapshots", 1)
    _set_header(data, "ofs_snapshot_table", _beyond_eof(data, img))


@corruption("HDR-20", "snapshot-offset-unaligned-no-snapshots", "qemu-default")
def _hdr20_no_snapshots(data: bytearray, img: Image, p: Params) -> None:
    """nb_snapshots is 0 and snapshots_offset is half a cluster: not cluster-aligned, which
    the clause forbids whatever the count (QEMU refuses such an image)."""
    _set_header(data, "ofs_snapshot_table", img.cluster_size // 2)


@corruption("HDR-21", "too-many-snapshots", "qemu-snapshot",
            also=(LEAKS_WHEN_UNREACHABLE, "SNAP-1", "SNAP-2"))
def _hdr21(data: bytearray, img: Image, p: Params) -> None:
    """nb_snapshots is 65537, above QEMU's limit (the table then also runs past the file)."""
    _set_header(data, "num_snapshots", 65537)


@corruption("HDR-22", "compression-type-without-bit", "qemu-default")
def _hdr22(data: bytearray, img: Image, p: Params) -> None:
    """compression_type is 1 (zstd) but incompatible bit 3 is clear."""
    _set_header(data, "compression_type", 1)


@corruption("HDR-22", "bit-without-compression-type", "qemu-default")
def _hdr22_bit(data: bytearray, img: Image, p: Params) -> None:
    """Incompatible bit 3 is set but compression_type is 0."""
    _or_header(data, "incompatible_features", 8)


@corruption("HDR-22", "unknown-compression-type", "qemu-compressed-zstd",
            params={"type": (2, 7, 255)}, also=("CMP-4",))
def _hdr22_unknown(data: bytearray, img: Image, p: Params) -> None:
    """compression_type is neither 0 nor 1 (bit 3 set)."""
    _set_header(data, "compression_type", p["type"])


@corruption("HDR-23", "padding-not-zero", "qemu-default", params={"byte": (105, 106, 111)})
def _hdr23(data: bytearray, img: Image, p: Params) -> None:
    """A header padding byte (105-111) is not zero."""
    if img.len_header <= p["byte"]:
        raise CorruptionError("header_length does not cover the padding")
    data[p["byte"]] = 0x5A


@corruption("HDR-24", "backing-name-too-long", "qemu-backing-overlay")
def _hdr24(data: bytearray, img: Image, p: Params) -> None:
    """backing_file_size is 1024, above the 1023-byte limit (the name still ends inside
    cluster 0)."""
    _set_header(data, "len_backing_file_name", 1024)


@corruption("HDR-24", "backing-name-over-extensions", "qemu-backing-overlay")
def _hdr24_overlap(data: bytearray, img: Image, p: Params) -> None:
    """backing_file_offset points into the extension area, so the name overlaps an
    extension."""
    _set_header(data, "ofs_backing_file_name", img.len_header + 8)


# -- EXT -----------------------------------------------------------------------


@corruption("EXT-1", "no-end-marker", "qemu-default")
def _ext1(data: bytearray, img: Image, p: Params) -> None:
    """The end marker is replaced by an unknown extension that fills cluster 0 exactly, so the
    list has no type-0 record."""
    records = _records(data, img)
    used = img.len_header + sum(8 + _round_up(len(r[1]), 8) for r in records)
    filler = bytes(img.cluster_size - used - 8)
    _write_extensions(data, img, [*records, (UNKNOWN_EXTENSION, filler)], end_marker=False)


@corruption("EXT-2", "length-past-cluster", "qemu-default",
            params={"length": (0xFFFFFFF0, 0x10000, 0x7FFFFFFF)}, also=("EXT-1",))
def _ext2(data: bytearray, img: Image, p: Params) -> None:
    """An unknown extension whose length runs past the end of cluster 0."""
    records = _records(data, img)
    _write_extensions(data, img, [*records, (UNKNOWN_EXTENSION, b"", p["length"])],
                      end_marker=False)


@corruption("EXT-3", "duplicate-feature-table", "qemu-default")
def _ext3(data: bytearray, img: Image, p: Params) -> None:
    """The feature name table extension appears twice."""
    records = _records(data, img)
    table = [r for r in records if r[0] == ExtensionType.feature_name_table]
    _write_extensions(data, img, [*records, _pick(table, 0, "feature name table")])


@corruption("EXT-4", "unknown-extension", "qemu-default", params={"length": (8, 0, 13)})
def _ext4(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) An extension of unknown type is added; readers skip it."""
    records = _records(data, img)
    _write_extensions(data, img, [*records, (UNKNOWN_EXTENSION, b"\xa5" * p["length"])])


@corruption("EXT-5", "backing-format-with-nul", "qemu-backing-overlay")
def _ext5(data: bytearray, img: Image, p: Params) -> None:
    """The backing format extension's length covers one NUL byte after the name."""
    records = [r if r[0] != ExtensionType.backing_file_format else (r[0], r[1] + b"\0")
               for r in _records(data, img)]
    _write_extensions(data, img, records)


@corruption("EXT-6", "backing-format-without-backing", "qemu-backing-overlay")
def _ext6(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) The backing file is removed but the backing format extension stays."""
    start, length = int(img.header.ofs_backing_file_name), int(img.header.len_backing_file_name)
    data[start:start + length] = bytes(length)
    _set_header(data, "ofs_backing_file_name", 0)
    _set_header(data, "len_backing_file_name", 0)


@corruption("EXT-7", "feature-type-3", "qemu-default", params={"entry": tuple(range(8))})
def _ext7(data: bytearray, img: Image, p: Params) -> None:
    """One feature name table entry has type 3 (only 0, 1 and 2 exist)."""
    ext = _extension(img, ExtensionType.feature_name_table)
    index = p["entry"] % (ext.length // 48)
    data[ext.offset + 8 + 48 * index] = 3


@corruption("EXT-7", "feature-bit-64", "qemu-default", params={"entry": tuple(range(8))})
def _ext7_bit(data: bytearray, img: Image, p: Params) -> None:
    """One feature name table entry names bit 64."""
    ext = _extension(img, ExtensionType.feature_name_table)
    index = p["entry"] % (ext.length // 48)
    data[ext.offset + 8 + 48 * index + 1] = 64


@corruption("EXT-7", "feature-table-length", "qemu-default")
def _ext7_length(data: bytearray, img: Image, p: Params) -> None:
    """The feature name table's length is 8 bytes more than a multiple of 48."""
    records = [r if r[0] != ExtensionType.feature_name_table else (r[0], r[1] + bytes(8))
               for r in _records(data, img)]
    _write_extensions(data, img, records)


# -- L1 ----------------------------------------------------------------------------

L1_RESERVED_BITS = (*range(0, 9), *range(56, 63))


@corruption("L1-1", "l1-reserved-bit", "qemu-default", params={"bit": L1_RESERVED_BITS})
def _l11(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit (0-8 or 56-62) of an allocated active L1 entry is set."""
    offset = _l1_offset(img, _pick(_allocated_l1(img), 0, "allocated L1 entry"))
    _put(data, offset, _get(data, offset, 8) | 1 << p["bit"], 8)


@corruption("L1-1", "snapshot-l1-reserved-bit", "qemu-snapshot",
            params={"bit": L1_RESERVED_BITS})
def _l11_snapshot(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit of a snapshot's L1 entry is set."""
    _, node = _snapshots(img)[0]
    offset = int(node.ofs_l1_table)
    _put(data, offset, _get(data, offset, 8) | 1 << p["bit"], 8)


@corruption("L1-1", "reserved-bit-in-a-later-entry", "qemu-two-l2-tables")
def _l11_later(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit of active L1 entry 1 is set."""
    offset = _l1_offset(img, _pick(_allocated_l1(img), 1, "allocated L1 entry"))
    _put(data, offset, _get(data, offset, 8) | 1 << 1, 8)


@corruption("L1-2", "l2-offset-unaligned", "qemu-default", also=("RC-4", "RC-5", "L2-1"))
def _l12(data: bytearray, img: Image, p: Params) -> None:
    """An active L1 entry's L2 offset is moved 512 bytes into its cluster."""
    offset = _l1_offset(img, _pick(_allocated_l1(img), 0, "allocated L1 entry"))
    _put(data, offset, _get(data, offset, 8) + 512, 8)


@corruption("L1-2", "l2-offset-past-eof", "qemu-default", also=("RC-4", "RC-5", "OVL-3"))
def _l12_eof(data: bytearray, img: Image, p: Params) -> None:
    """An active L1 entry points at an aligned L2 offset past the end of the file."""
    offset = _l1_offset(img, _pick(_allocated_l1(img), 0, "allocated L1 entry"))
    _put(data, offset, COPIED | _beyond_eof(data, img), 8)


@corruption("L1-3", "l1-copied-clear", "qemu-default")
def _l13(data: bytearray, img: Image, p: Params) -> None:
    """Bit 63 of an active L1 entry is clear though its L2 table's refcount is 1."""
    offset = _l1_offset(img, _pick(_allocated_l1(img), 0, "allocated L1 entry"))
    _put(data, offset, _get(data, offset, 8) & ~COPIED, 8)


@corruption("L1-3", "l1-copied-on-shared", "qemu-default", also=("RC-5",))
def _l13_shared(data: bytearray, img: Image, p: Params) -> None:
    """An L2 table's refcount is 2 (the cluster is counted twice) while its active L1 entry
    keeps bit 63 set; the recount finding it too high is RC-5, the flag is L1-3."""
    raw = int(img.l1_entries()[_pick(_allocated_l1(img), 0, "allocated L1 entry")])
    _add_refcount(data, img, (raw & ENTRY_OFFSET_MASK) // img.cluster_size, 1)


@corruption("L1-3", "copied-clear-in-a-later-entry", "qemu-two-l2-tables")
def _l13_later(data: bytearray, img: Image, p: Params) -> None:
    """Bit 63 of active L1 entry 1 is clear though its L2 table's refcount is 1."""
    offset = _l1_offset(img, _pick(_allocated_l1(img), 1, "allocated L1 entry"))
    _put(data, offset, _get(data, offset, 8) & ~COPIED, 8)


@corruption("L1-4", "snapshot-l1-copied-stale", "qemu-snapshot")
def _l14(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) A snapshot L1 entry's bit 63 disagrees with the refcount of its L2
    table; allowed, since snapshot flags are rebuilt on load."""
    _, node = _snapshots(img)[0]
    offset = int(node.ofs_l1_table)
    raw = _get(data, offset, 8)
    accurate = _get_refcount(data, img, (raw & ENTRY_OFFSET_MASK) // img.cluster_size) == 1
    _put(data, offset, (raw & ~COPIED) if accurate else (raw | COPIED), 8)


@corruption("L1-4", "stale-flag-in-a-later-entry", "qemu-two-l2-tables")
def _l14_later(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) Bit 63 of the snapshot's L1 entry 1 is flipped."""
    _, node = _snapshots(img)[0]
    offset = int(node.ofs_l1_table) + 8
    _put(data, offset, _get(data, offset, 8) ^ COPIED, 8)


# -- L2 --------------------------------------------------------------------------------

L2_RESERVED_BITS = (*range(1, 9), *range(56, 62))


@corruption("L2-1", "l2-reserved-bit", "qemu-default",
            params={"bit": L2_RESERVED_BITS, "entry": tuple(range(4))})
def _l21(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit (1-8 or 56-61) of an allocated standard L2 entry is set."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, ref.raw | 1 << p["bit"], 8)


@corruption("L2-1", "reserved-bit-in-extended-entry", "qemu-extended-l2",
            params={"bit": (1, 8, 56, 61)})
def _l21_extended(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit of an extended entry's standard descriptor is set: L2-1, where bit 0
    alone would be EL2-2."""
    ref = _pick(_allocated(img), 0, "allocated L2 entry")
    _put(data, ref.offset, ref.raw | 1 << p["bit"], 8)


@corruption("L2-2", "data-offset-unaligned", "qemu-default", params={"entry": tuple(range(4))},
            also=("L2-1", "RC-4", "RC-5", "L2-3"))
def _l22(data: bytearray, img: Image, p: Params) -> None:
    """An allocated L2 entry's host offset is moved 512 bytes into its cluster."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, ref.raw + 512, 8)


@corruption("L2-2", "data-offset-past-eof", "qemu-default", params={"entry": tuple(range(4))},
            also=("RC-4", "RC-5", "L2-3", "OVL-3"))
def _l22_eof(data: bytearray, img: Image, p: Params) -> None:
    """An allocated L2 entry points at an aligned host cluster past the end of the file."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, COPIED | _beyond_eof(data, img), 8)


@corruption("L2-2", "only-entry-in-the-header-cluster", "qemu-default")
def _l22_header(data: bytearray, img: Image, p: Params) -> None:
    """Every L2 entry is dropped (clusters freed) but one, which points 512 bytes into the
    header cluster: the table's only non-zero entry, with a host offset below one
    cluster."""
    refs = [ref for ref in _l2_refs(img) if ref.raw]
    for ref in refs:
        _put(data, ref.offset, 0, 8)
        if ref.raw & ENTRY_OFFSET_MASK:
            set_refcount(data, img, (ref.raw & ENTRY_OFFSET_MASK) // img.cluster_size, 0)
    _put(data, _pick(_allocated(img), 0, "allocated L2 entry").offset, 512, 8)


@corruption("L2-2", "unallocated-entry-past-eof", "qemu-default", also=("L2-3", "RC-4"))
def _l22_unallocated_eof(data: bytearray, img: Image, p: Params) -> None:
    """An unallocated L2 entry points at an aligned host cluster past the end of the file
    (bit 63 clear). OVL-3 states the general rule; the finding names the L2 entry."""
    ref = _pick(_unallocated(img), 0, "unallocated L2 entry")
    _put(data, ref.offset, _beyond_eof(data, img), 8)


@corruption("L2-3", "l2-copied-clear", "qemu-default", params={"entry": tuple(range(4))})
def _l23(data: bytearray, img: Image, p: Params) -> None:
    """Bit 63 of an allocated L2 entry is clear though its host cluster's refcount is 1."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, ref.raw & ~COPIED, 8)


@corruption("L2-3", "l2-copied-on-compressed", "qemu-compressed-zstd",
            params={"entry": tuple(range(2))})
def _l23_compressed(data: bytearray, img: Image, p: Params) -> None:
    """Bit 63 is set on a compressed cluster entry."""
    ref = _pick(_compressed(img), p["entry"], "compressed L2 entry")
    _put(data, ref.offset, ref.raw | COPIED, 8)


@corruption("L2-4", "zero-flag-in-v2", "qemu-v2", params={"entry": tuple(range(4))})
def _l24(data: bytearray, img: Image, p: Params) -> None:
    """Bit 0 (reads as zeros) is set on an allocated entry of a version 2 image."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, ref.raw | 1, 8)


@corruption("L2-5", "preallocated-zero", "qemu-default", params={"entry": tuple(range(4))})
def _l25(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) An allocated entry gets the zero flag and keeps its host cluster."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, ref.raw | 1, 8)


# -- EL2 ---------------------------------------------------------------------------------


@corruption("EL2-1", "extended-l2-small-clusters", "qemu-extended-l2",
            also=("RC-4", "RC-5", "OVL-1", "EL2-3", "EL2-4", "L2-1", "L1-3", "L2-3"))
def _el21(data: bytearray, img: Image, p: Params) -> None:
    """cluster_bits drops to 13 (8 KiB clusters) while incompatible bit 4 stays set; every
    table offset stays aligned, but refcounts now describe other clusters."""
    _set_header(data, "cluster_bits", 13)


@corruption("EL2-2", "zero-flag-in-extended-entry", "qemu-extended-l2")
def _el22(data: bytearray, img: Image, p: Params) -> None:
    """Bit 0 of an extended entry's standard descriptor is set."""
    ref = _pick(_allocated(img), 0, "allocated L2 entry")
    _put(data, ref.offset, ref.raw | 1, 8)


@corruption("EL2-3", "allocated-and-zero", "qemu-extended-l2", params={"sub": tuple(range(32))})
def _el23(data: bytearray, img: Image, p: Params) -> None:
    """A subcluster is marked both allocated (bit x) and zero (bit 32+x)."""
    ref = _pick(_allocated(img), 0, "allocated L2 entry")
    bit = p["sub"]
    _put(data, ref.offset + 8, (ref.bitmap or 0) | 1 << bit | 1 << (32 + bit), 8)


@corruption("EL2-4", "allocated-without-host", "qemu-extended-l2", params={"sub": tuple(range(32))})
def _el24(data: bytearray, img: Image, p: Params) -> None:
    """An entry with host offset 0 marks a subcluster allocated."""
    ref = _pick([r for r in _l2_refs(img) if r.raw == 0], 0, "entry with host offset 0")
    _put(data, ref.offset + 8, (1 << p["sub"]), 8)


def _deflate(payload: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(payload) + compressor.flush()


@corruption("EL2-5", "compressed-with-bitmap", "qemu-extended-l2",
            params={"bitmap": (0x3, 1 << 32, 1 << 63)})
def _el25(data: bytearray, img: Image, p: Params) -> None:
    """An allocated extended entry becomes a valid compressed cluster (raw deflate written into
    its own host cluster) whose subcluster bitmap is not zero."""
    ref = _pick(_allocated(img), 0, "allocated L2 entry")
    host = ref.raw & ENTRY_OFFSET_MASK
    stream = _deflate(bytes(data[host:host + img.cluster_size]).ljust(img.cluster_size, b"\0"))
    data[host:host + len(stream)] = stream
    descriptor = _compressed_descriptor(img.cluster_bits, host, _round_up(len(stream), 512) // 512)
    _put(data, ref.offset, descriptor, 8)
    _put(data, ref.offset + 8, p["bitmap"], 8)


@corruption("EL2-6", "host-cluster-no-allocated-subclusters", "qemu-extended-l2")
def _el26(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) An entry keeps its host cluster but no allocation bit is set."""
    ref = _pick(_allocated(img), 0, "allocated L2 entry")
    _put(data, ref.offset + 8, (ref.bitmap or 0) & ~0xFFFFFFFF, 8)


# -- CMP -----------------------------------------------------------------------


def place_compressed_cluster(data: bytearray, img: Image, entry: int, host: int,
                             sectors: int | None = None) -> None:
    """Point unallocated L2 entry number `entry` at a raw-deflate stream of one cluster
    written at `host`, over `sectors` 512-byte sectors (by default the most a descriptor
    holds: two clusters); the range may reach past the stream, which is allowed."""
    ref = _pick(_unallocated(img), entry, "unallocated L2 entry")
    sectors = sectors or 1 << (img.cluster_bits - 8)
    stream = _deflate(bytes([0x40 + entry]) * img.cluster_size)
    if host + len(stream) > len(data):
        raise CorruptionError("the stream does not fit in the file")
    data[host:host + len(stream)] = stream
    _put(data, ref.offset, _compressed_descriptor(img.cluster_bits, host, sectors), 8)


def append_clusters(data: bytearray, img: Image, count: int, refcount: int = 1) -> int:
    """Append `count` zeroed clusters with this refcount; returns the first one's offset."""
    return _append(data, img, bytes(count * img.cluster_size), refcount)


@corruption("CMP-1", "offset-bit-56", "qemu-compressed-4k", params={"bit": (56, 57)},
            also=("CMP-2", "CMP-4", "OVL-3", "RC-5"))
def _cmp1(data: bytearray, img: Image, p: Params) -> None:
    """With 4 KiB clusters the offset field of a compressed descriptor reaches bit 57; bit
    56 (or 57) of it is set."""
    ref = _pick(_compressed(img), 0, "compressed L2 entry")
    _put(data, ref.offset, ref.raw | 1 << p["bit"], 8)


@corruption("CMP-2", "last-sector-past-eof", "qemu-compressed-zstd",
            also=(LEAKS_WHEN_UNREACHABLE, "RC-4", "OVL-3"))
def _cmp2(data: bytearray, img: Image, p: Params) -> None:
    """The sector count of the compressed range nearest the end of the file grows so that its
    last sector starts past the end (the stream itself still decodes)."""
    ref = max(_compressed(img), key=lambda r: _compressed_fields(img, r.raw)[0], default=None)
    if ref is None:
        raise CorruptionError("the base image has no compressed L2 entry")
    offset, _ = _compressed_fields(img, ref.raw)
    sectors = (len(data) - (offset & ~511)) // 512 + 2
    if sectors > 1 << (img.cluster_bits - 8):
        raise CorruptionError("the sector count cannot reach past the end of the file")
    _put(data, ref.offset, _compressed_descriptor(img.cluster_bits, offset, sectors), 8)


@corruption("CMP-2", "offset-past-eof", "qemu-compressed-zstd", params={"entry": (0, 1)},
            also=("RC-5", "OVL-3", "CMP-4"))
def _cmp2_start(data: bytearray, img: Image, p: Params) -> None:
    """A compressed descriptor's host offset lies past the end of the file."""
    ref = _pick(_compressed(img), p["entry"], "compressed L2 entry")
    descriptor = _compressed_descriptor(img.cluster_bits, _beyond_eof(data, img) + 1024, 1)
    _put(data, ref.offset, descriptor, 8)


@corruption("CMP-3", "shared-host-cluster", "qemu-compressed-zstd")
def _cmp3(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) The second compressed cluster's data moves into the first one's host
    cluster, right after it; refcounts are adjusted (2 and 0), so the image stays sound."""
    refs = sorted(_compressed(img), key=lambda r: _compressed_fields(img, r.raw)[0])
    if len(refs) < 2:
        raise CorruptionError("the base image needs two compressed clusters")
    first, second = refs[0], refs[1]
    off1, sec1 = _compressed_fields(img, first.raw)
    off2, sec2 = _compressed_fields(img, second.raw)
    size = img.cluster_size
    target = (off1 & ~511) + 512 * sec1
    if target // size != off1 // size or (target + 512 * sec2 - 1) // size != off1 // size:
        raise CorruptionError("the compressed data does not fit after the first range")
    payload = bytes(data[off2:off2 + 512 * sec2])
    data[target:target + len(payload)] = payload
    _put(data, second.offset, _compressed_descriptor(img.cluster_bits, target, sec2), 8)
    _add_refcount(data, img, off1 // size, 1)
    _add_refcount(data, img, off2 // size, -1)


@corruption("CMP-3", "three-cluster-range-shared", "qemu-compressed-4k")
def _cmp3_three(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) A compressed range starts 512 bytes before the end of a new
    cluster and spans two clusters' worth of sectors, so it touches three; two more
    ranges start in its second and third clusters (refcounts 1, 2, 2: sound)."""
    size = img.cluster_size
    first = append_clusters(data, img, 3)
    place_compressed_cluster(data, img, 0, first + size - 512)
    place_compressed_cluster(data, img, 1, first + size, sectors=1)
    place_compressed_cluster(data, img, 2, first + 2 * size, sectors=1)
    for cluster in (first // size + 1, first // size + 2):
        set_refcount(data, img, cluster, 2)


@corruption("CMP-4", "garbage-stream", "qemu-compressed-zstd", params={"entry": (0, 1)})
def _cmp4(data: bytearray, img: Image, p: Params) -> None:
    """The bytes at a compressed range are replaced by garbage that no decoder accepts."""
    ref = _pick(_compressed(img), p["entry"], "compressed L2 entry")
    offset, _ = _compressed_fields(img, ref.raw)
    end = min(len(data), (offset & ~511) + 512)
    data[offset:end] = b"\xff" * (end - offset)


@corruption("CMP-4", "deflate-short-output", "qemu-compressed-4k")
def _cmp4_short(data: bytearray, img: Image, p: Params) -> None:
    """A valid raw-deflate stream that decodes to half a cluster replaces a compressed
    cluster's data."""
    _replace_stream(data, img, _deflate(b"\x42" * (img.cluster_size // 2)))


@corruption("CMP-4", "deflate-short-output-in-version-2", "qemu-v2-compressed")
def _cmp4_short_v2(data: bytearray, img: Image, p: Params) -> None:
    """As deflate-short-output, in a version 2 image, whose header has no compression type
    (deflate, HDR-22)."""
    _replace_stream(data, img, _deflate(b"\x42" * (img.cluster_size // 2)))


@corruption("CMP-4", "deflate-long-output", "qemu-compressed-4k")
def _cmp4_long(data: bytearray, img: Image, p: Params) -> None:
    """A valid raw-deflate stream that decodes to one byte more than a cluster replaces a
    compressed cluster's data."""
    _replace_stream(data, img, _deflate(b"\x42" * (img.cluster_size + 1)))


@corruption("CMP-4", "zstd-long-output", "qemu-compressed-zstd")
def _cmp4_long_zstd(data: bytearray, img: Image, p: Params) -> None:
    """A valid zstd frame that decodes to one byte more than a cluster replaces a
    compressed cluster's data."""
    import zstandard

    _replace_stream(data, img, zstandard.ZstdCompressor().compress(
        b"\x42" * (img.cluster_size + 1)))


def _replace_stream(data: bytearray, img: Image, stream: bytes) -> None:
    ref = _pick(_compressed(img), 0, "compressed L2 entry")
    offset, sectors = _compressed_fields(img, ref.raw)
    if len(stream) > (offset & ~511) + 512 * sectors - offset:
        raise CorruptionError("the stream does not fit the range")
    data[offset:offset + len(stream)] = stream


# -- RC ------------------------------------------------------------------------


@corruption("RC-1", "reftable-reserved-bit", "qemu-default", params={"bit": tuple(range(9))})
def _rc1(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit (0-8) of a refcount table entry is set."""
    offset = int(img.header.ofs_refcount_table)
    _put(data, offset, _get(data, offset, 8) | 1 << p["bit"], 8)


@corruption("RC-2", "refblock-past-eof", "qemu-default", also=("OVL-3", "RC-4"))
def _rc2(data: bytearray, img: Image, p: Params) -> None:
    """The next free refcount table entry points at an aligned block past the end of the
    file."""
    table = img.refcount_table_entries()
    free = [i for i, raw in enumerate(table) if not int(raw)]
    index = _pick(free, 0, "free refcount table entry")
    _put(data, int(img.header.ofs_refcount_table) + 8 * index, _beyond_eof(data, img), 8)


@corruption("RC-4", "refcount-too-low", "qemu-default", params={"cluster": METADATA_KINDS})
def _rc4(data: bytearray, img: Image, p: Params) -> None:
    """A metadata cluster (no COPIED flag points at it) has a stored refcount of 0."""
    set_refcount(data, img, _metadata_clusters(img)[p["cluster"]], 0)


@corruption("RC-5", "refcount-too-high", "qemu-default", params={"cluster": METADATA_KINDS})
def _rc5(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) A metadata cluster's stored refcount is one too high: a leak."""
    _add_refcount(data, img, _metadata_clusters(img)[p["cluster"]], 1)


@corruption("RC-5", "refcount-past-eof", "qemu-default")
def _rc5_eof(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) A cluster past the end of the file has refcount 1: a leak."""
    set_refcount(data, img, _round_up(len(data), img.cluster_size) // img.cluster_size + 1, 1)


# -- SNAP ----------------------------------------------------------------------


@corruption("SNAP-1", "snapshot-table-truncated", "qemu-snapshot", also=("RC-5",))
def _snap1(data: bytearray, img: Image, p: Params) -> None:
    """The snapshot table moves to a new last cluster and the file ends 16 bytes into it: the
    entry starts inside the file and runs past its end. Refcounts follow the move."""
    (_, node), = _snapshots(img)[:1]
    old = int(img.header.ofs_snapshot_table)
    entry = _snapshot_copy(node)
    new = _append(data, img, entry)
    del data[new + 16:]
    _set_header(data, "ofs_snapshot_table", new)
    set_refcount(data, img, old // img.cluster_size, 0)


@corruption("SNAP-2", "snapshot-table-over-64mib", "qemu-snapshot")
def _snap2(data: bytearray, img: Image, p: Params) -> None:
    """Some 500 more snapshots, each with an id and a name of up to 65535 bytes and an empty
    L1 table, make a table of 64 MiB and 8 bytes (each entry within every other limit).
    The table is appended at the end of the file and refcounted."""
    first = snapshot_entry(img, 0)
    fillers = filler_snapshots(snapshot_sizes_totalling(64 * 1024 * 1024 + 8 - len(first)),
                               extra=struct.pack(">QQ", 0, int(img.header.virtual_size)),
                               first=1)
    replace_snapshot_table(data, img, [first, *fillers])


@corruption("SNAP-3", "snapshot-l1-unaligned", "qemu-snapshot", also=(LEAKS_WHEN_UNREACHABLE,))
def _snap3(data: bytearray, img: Image, p: Params) -> None:
    """A snapshot's L1 table moves 8 bytes further into its cluster."""
    offset, node = _snapshots(img)[0]
    start, count = int(node.ofs_l1_table), int(node.num_l1_entries)
    table = bytes(data[start:start + 8 * count])
    data[start:start + 8] = bytes(8)
    data[start + 8:start + 8 + 8 * count] = table
    _put(data, offset + SNAPSHOT_FIELDS["ofs_l1_table"][0], start + 8, 8)


@corruption("SNAP-3", "snapshot-l1-past-eof", "qemu-snapshot", also=("RC-5", "OVL-3"))
def _snap3_eof(data: bytearray, img: Image, p: Params) -> None:
    """A snapshot's L1 table offset is aligned but past the end of the file."""
    offset, _ = _snapshots(img)[0]
    _put(data, offset + SNAPSHOT_FIELDS["ofs_l1_table"][0], _beyond_eof(data, img), 8)


@corruption("SNAP-4", "snapshot-l1-over-32mib", "qemu-snapshot",
            also=(LEAKS_WHEN_UNREACHABLE, "SNAP-3",))
def _snap4(data: bytearray, img: Image, p: Params) -> None:
    """A snapshot's l1_size is 4194305 entries, above QEMU's 32 MiB limit."""
    offset, _ = _snapshots(img)[0]
    start, width = SNAPSHOT_FIELDS["num_l1_entries"]
    _put(data, offset + start, 4194305, width)


@corruption("SNAP-5", "extra-data-8-bytes", "qemu-snapshot")
def _snap5(data: bytearray, img: Image, p: Params) -> None:
    """A version 3 snapshot entry keeps only 8 bytes of extra data (no disk size)."""
    entries = [_snapshot_copy(node, extra=bytes(node._raw_extra_data)[:8])
               for _, node in _snapshots(img)]
    _rewrite_snapshot_table(data, img, entries)


@corruption("SNAP-6", "extra-data-over-1024", "qemu-snapshot")
def _snap6(data: bytearray, img: Image, p: Params) -> None:
    """A snapshot entry carries 1032 bytes of extra data."""
    entries = [_snapshot_copy(node, extra=bytes(node._raw_extra_data).ljust(1032, b"\0"))
               for _, node in _snapshots(img)]
    _rewrite_snapshot_table(data, img, entries)


@corruption("SNAP-7", "snapshot-l2-past-eof", "qemu-snapshot", also=("L1-2", "OVL-3", "RC-5"))
def _snap7(data: bytearray, img: Image, p: Params) -> None:
    """A snapshot's L1 entry points at an L2 table past the end of the file, so the snapshot's
    tree breaks the L1 rules."""
    _, node = _snapshots(img)[0]
    _put(data, int(node.ofs_l1_table), COPIED | _beyond_eof(data, img), 8)


@corruption("SNAP-7", "snapshot-only-data-past-eof", "qemu-two-l2-tables", also=("RC-5",))
def _snap7_data(data: bytearray, img: Image, p: Params) -> None:
    """An entry of an L2 table only the snapshot reaches points at a data cluster past the
    end of the file (its old cluster leaks)."""
    _, node = _snapshots(img)[0]
    active = {int(raw) & ENTRY_OFFSET_MASK for raw in img.l1_entries()}
    tables = [raw & ENTRY_OFFSET_MASK for raw in (_get(data, int(node.ofs_l1_table) + 8 * i, 8)
                                                   for i in range(int(node.num_l1_entries)))]
    table = _pick([t for t in tables if t and t not in active], 0, "snapshot-only L2 table")
    _put(data, table, _beyond_eof(data, img), 8)


# -- BMP -----------------------------------------------------------------------


@corruption("BMP-1", "bitmaps-bit-without-extension", "qemu-default")
def _bmp1(data: bytearray, img: Image, p: Params) -> None:
    """Autoclear bit 0 (bitmaps) is set but there is no bitmaps extension."""
    _or_header(data, "autoclear_features", 1)


@corruption("BMP-2", "extension-without-bit", "qemu-bitmap", also=("RC-5",))
def _bmp2(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) Autoclear bit 0 is cleared, as a writer that does not know bitmaps
    would; the bitmap clusters then show up as leaks (RC-5)."""
    _clear_header(data, "autoclear_features", 1)


@corruption("BMP-3", "extension-reserved", "qemu-bitmap")
def _bmp3(data: bytearray, img: Image, p: Params) -> None:
    """Bytes 4-7 of the bitmaps extension are not zero."""
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS, "reserved", 1)


@corruption("BMP-3", "extension-length-32", "qemu-bitmap")
def _bmp3_length(data: bytearray, img: Image, p: Params) -> None:
    """The bitmaps extension's data is 32 bytes instead of 24."""
    records = [r if r[0] != ExtensionType.bitmaps else (r[0], r[1] + bytes(8))
               for r in _records(data, img)]
    _write_extensions(data, img, records)


@corruption("BMP-3", "nb-bitmaps-zero", "qemu-bitmap")
def _bmp3_zero(data: bytearray, img: Image, p: Params) -> None:
    """nb_bitmaps is 0 (the directory still holds its entries)."""
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS, "num_bitmaps", 0)


@corruption("BMP-3", "nb-bitmaps-above-the-directory", "qemu-bitmap")
def _bmp3_above(data: bytearray, img: Image, p: Params) -> None:
    """nb_bitmaps is one more than the directory holds."""
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS, "num_bitmaps",
                   len(bitmap_entries(img)) + 1)


@corruption("BMP-4", "name-over-1023", "qemu-bitmap", params={"bitmap": (0, 1)})
def _bmp4(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap's name is 1024 bytes long (the directory grows to match). For bitmap 1,
    bitmap 0's name is 23 bytes, so that entry 1 starts 48 bytes in, off a 32-byte
    boundary."""
    changes: dict[int, dict[str, Any]] = {p["bitmap"]: {"name": b"long" * 256}}
    if p["bitmap"]:
        changes[0] = {"name": b"n" * 23}
    rewrite_bitmap_entries(data, img, changes)


@corruption("BMP-4", "directory-over-64-mib", "qemu-bitmap",
            params={"size": (64 * 1024 * 1024 + 1, (1 << 64) - 1)},
            also=(LEAKS_WHEN_UNREACHABLE,))
def _bmp4_directory(data: bytearray, img: Image, p: Params) -> None:
    """bitmap_directory_size is above QEMU's 64 MiB."""
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS,
                   "len_bitmap_directory", p["size"])


@corruption("BMP-5", "directory-unaligned", "qemu-bitmap", also=(LEAKS_WHEN_UNREACHABLE,))
def _bmp5(data: bytearray, img: Image, p: Params) -> None:
    """The bitmap directory moves 8 bytes further into its cluster."""
    ext = _extension(img, ExtensionType.bitmaps)
    start, length = int(ext.body.ofs_bitmap_directory), int(ext.body.len_bitmap_directory)
    blob = bytes(data[start:start + length])
    if start + 8 + length > len(data):
        data.extend(bytes(start + 8 + length - len(data)))
    data[start:start + 8] = bytes(8)
    data[start + 8:start + 8 + length] = blob
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS,
                   "ofs_bitmap_directory", start + 8)


@corruption("BMP-5", "directory-size-mismatch", "qemu-bitmap", also=(LEAKS_WHEN_UNREACHABLE,))
def _bmp5_size(data: bytearray, img: Image, p: Params) -> None:
    """bitmap_directory_size is 8 bytes less than its entries add up to."""
    ext = _extension(img, ExtensionType.bitmaps)
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS,
                   "len_bitmap_directory", int(ext.body.len_bitmap_directory) - 8)


@corruption("BMP-6", "reserved-flag", "qemu-bitmap",
            params={"bit": (3, 4, 31), "bitmap": (0, 1)})
def _bmp6(data: bytearray, img: Image, p: Params) -> None:
    """A reserved flag bit (3-31) of a bitmap directory entry is set."""
    offset, node = bitmap_entries(img)[p["bitmap"]]
    start, width = BITMAP_ENTRY_FIELDS["flags"]
    _put(data, offset + start, int(node.flags) | 1 << p["bit"], width)


@corruption("BMP-6", "bitmap-type-2", "qemu-bitmap",
            params={"type": (2, 0, 255), "bitmap": (0, 1)})
def _bmp6_type(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap's type is not 1."""
    offset, _ = bitmap_entries(img)[p["bitmap"]]
    data[offset + BITMAP_ENTRY_FIELDS["bitmap_type"][0]] = p["type"]


@corruption("BMP-7", "granularity-8", "qemu-bitmap",
            params={"bits": (8, 32, 64), "bitmap": (0, 1)}, also=("BMP-11",))
def _bmp7(data: bytearray, img: Image, p: Params) -> None:
    """granularity_bits is outside QEMU's 9-31."""
    offset, _ = bitmap_entries(img)[p["bitmap"]]
    data[offset + BITMAP_ENTRY_FIELDS["granularity_bits"][0]] = p["bits"]


@corruption("BMP-8", "duplicate-name", "qemu-bitmap", params={"name": ("first's", "23-bytes")})
def _bmp8(data: bytearray, img: Image, p: Params) -> None:
    """Two bitmaps have the same name: the first's, or one of 23 bytes (which starts the
    second entry 48 bytes in, off a 32-byte boundary)."""
    entries = bitmap_entries(img)
    if len(entries) < 2:
        raise CorruptionError("the base image needs two bitmaps")
    name = bytes(entries[0][1].name) if p["name"] == "first's" else b"n" * 23
    rebuilt = [_bitmap_entry_bytes(node, name=name) for _, node in entries]
    _rewrite_bitmap_directory(data, img, rebuilt)


@corruption("BMP-8", "empty-name", "qemu-bitmap", params={"bitmap": (0, 1)})
def _bmp8_empty(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap's name_size is 0."""
    rewrite_bitmap_entries(data, img, {p["bitmap"]: {"name": b""}})


@corruption("BMP-9", "padding-not-zero", "qemu-bitmap")
def _bmp9(data: bytearray, img: Image, p: Params) -> None:
    """The padding after a bitmap's name is not zero."""
    rebuilt = []
    for _, node in bitmap_entries(img):
        raw_len = BITMAP_ENTRY_FIXED + int(node.len_extra_data) + int(node.len_name)
        pad = -raw_len % 8
        rebuilt.append(_bitmap_entry_bytes(node, padding=b"\xee" * pad if pad else None))
    if all(len(e) % 8 == 0 and not e.endswith(b"\xee") for e in rebuilt):
        raise CorruptionError("no bitmap entry has padding")
    _rewrite_bitmap_directory(data, img, rebuilt)


@corruption("BMP-10", "extra-data", "qemu-bitmap",
            params={"bitmap": (0, 1), "flags": ("kept", "in_use")})
def _bmp10(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) A bitmap entry carries 8 bytes of extra data without the
    extra_data_compatible flag (its flags kept, or in_use alone). For bitmap 1, bitmap 0
    carries 8 bytes too, with the flag, so that entry 1 starts after them."""
    changes: dict[int, dict[str, Any]] = {p["bitmap"]: {
        "extra": bytes(8), "flags": None if p["flags"] == "kept" else 1}}
    if p["bitmap"]:
        changes[0] = {"extra": bytes(8), "flags": 4}
    rewrite_bitmap_entries(data, img, changes)


@corruption("BMP-11", "table-size-plus-one", "qemu-bitmap", params={"filled": (False, True)})
def _bmp11(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap table has one entry more than the bitmap needs (when `filled`, the bitmap's
    data cluster has all its bits set, and the extra entry points at a full cluster)."""
    offset, node = bitmap_entries(img)[0]
    count = int(node.num_bitmap_table_entries)
    if p["filled"]:
        fill_bitmap(data, img, 0, int(node.granularity_bits))
        extra = _append(data, img, b"\xff" * img.cluster_size)
        _put(data, int(node.ofs_bitmap_table) + 8 * count, extra, 8)
    start, width = BITMAP_ENTRY_FIELDS["num_bitmap_table_entries"]
    _put(data, offset + start, count + 1, width)


@corruption("BMP-11", "table-offset-zero", "qemu-bitmap", also=(LEAKS_WHEN_UNREACHABLE,))
def _bmp11_zero(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap's table offset is 0."""
    offset, _ = bitmap_entries(img)[0]
    _put(data, offset + BITMAP_ENTRY_FIELDS["ofs_bitmap_table"][0], 0, 8)


@corruption("BMP-11", "empty-table-inside-another", "qemu-bitmap-table-2-clusters",
            also=(LEAKS_WHEN_UNREACHABLE,))
def _bmp11_empty(data: bytearray, img: Image, p: Params) -> None:
    """Bitmap 1's table has no entries and starts at the second cluster of bitmap 0's: it
    claims and overlaps nothing, so it is only the wrong size."""
    (_, first), (second, _) = bitmap_entries(img)[:2]
    start, width = BITMAP_ENTRY_FIELDS["num_bitmap_table_entries"]
    _put(data, second + start, 0, width)
    _put(data, second + BITMAP_ENTRY_FIELDS["ofs_bitmap_table"][0],
         int(first.ofs_bitmap_table) + img.cluster_size, 8)


@corruption("BMP-11", "table-unaligned", "qemu-bitmap", also=(LEAKS_WHEN_UNREACHABLE,))
def _bmp11_unaligned(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap table moves 8 bytes further into its cluster."""
    offset, node = bitmap_entries(img)[0]
    table, count = int(node.ofs_bitmap_table), int(node.num_bitmap_table_entries)
    blob = bytes(data[table:table + 8 * count])
    data[table:table + 8] = bytes(8)
    data[table + 8:table + 8 + 8 * count] = blob
    _put(data, offset, table + 8, 8)


@corruption("BMP-12", "table-entry-reserved", "qemu-bitmap", params={"bit": (1, 8, 56, 63)})
def _bmp12(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit (1-8, 56-63) of a bitmap table entry is set."""
    _, node = bitmap_entries(img)[0]
    table = int(node.ofs_bitmap_table)
    _put(data, table, _get(data, table, 8) | 1 << p["bit"], 8)


@corruption("BMP-12", "reserved-bit-in-a-later-entry", "qemu-bitmap-table-2-clusters",
            params={"entry": (64, 1)})
def _bmp12_later(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit of a later entry of a two-cluster bitmap table is set (entry 64 is
    the first of its second cluster)."""
    _, node = bitmap_entries(img)[0]
    at = int(node.ofs_bitmap_table) + 8 * p["entry"]
    _put(data, at, _get(data, at, 8) | 1 << 8, 8)


@corruption("BMP-12", "table-entry-all-ones-with-offset", "qemu-bitmap")
def _bmp12_ones(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap table entry points at a new, refcounted, zeroed cluster and also sets bit 0
    (all ones), which is only allowed with offset 0."""
    _, node = bitmap_entries(img)[0]
    cluster = _append(data, img, bytes(img.cluster_size))
    _put(data, int(node.ofs_bitmap_table), cluster | 1, 8)


@corruption("BMP-12", "table-entry-unaligned", "qemu-bitmap", also=("RC-5",))
def _bmp12_unaligned(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap table entry points 512 bytes into a new, refcounted cluster (which leaks,
    RC-5: an unaligned entry claims nothing)."""
    _, node = bitmap_entries(img)[0]
    cluster = _append(data, img, bytes(img.cluster_size))
    _put(data, int(node.ofs_bitmap_table), cluster + 512, 8)


@corruption("BMP-12", "data-past-eof", "qemu-bitmap")
def _bmp12_past_eof(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap table entry points at a cluster past the end of the file."""
    _, node = bitmap_entries(img)[0]
    _put(data, int(node.ofs_bitmap_table), _beyond_eof(data, img), 8)


@corruption("BMP-12", "two-data-clusters-past-eof", "qemu-bitmap-table-2-clusters")
def _bmp12_two_past_eof(data: bytearray, img: Image, p: Params) -> None:
    """Bitmap 0's first two table entries point at two clusters past the end of the file."""
    _, node = bitmap_entries(img)[0]
    beyond = _beyond_eof(data, img)
    _put(data, int(node.ofs_bitmap_table), beyond, 8)
    _put(data, int(node.ofs_bitmap_table) + 8, beyond + img.cluster_size, 8)


@corruption("BMP-13", "tail-bits-set", "qemu-bitmap")
def _bmp13(data: bytearray, img: Image, p: Params) -> None:
    """A bitmap's data cluster (new, refcounted) is all ones, including the bits past the
    end of the bitmap."""
    _, node = bitmap_entries(img)[0]
    cluster = _append(data, img, b"\xff" * img.cluster_size)
    table = int(node.ofs_bitmap_table)
    _put(data, table + 8 * (int(node.num_bitmap_table_entries) - 1), cluster, 8)


def fill_bitmap(data: bytearray, img: Image, number: int, granularity_bits: int, *,
                virtual_size: int | None = None, past_the_end: int | None = None) -> None:
    """Give bitmap `number` this granularity (and the image this virtual size), the table
    entries that needs, and new, refcounted data clusters with every bit of the bitmap set;
    with `past_the_end`, also the one bit that many bits after its last. Bit 0 of each
    byte comes first (BMP-13)."""
    if virtual_size is None:
        virtual_size = int(img.header.virtual_size)
    else:
        _set_header(data, "virtual_size", virtual_size)
    offset, node = bitmap_entries(img)[number]
    bits = -(-virtual_size >> granularity_bits)
    bits_per_cluster = 8 * img.cluster_size
    entries = -(-bits // bits_per_cluster)
    table = int(node.ofs_bitmap_table)
    if not table or table % img.cluster_size or 8 * entries > img.cluster_size:
        raise CorruptionError(f"bitmap {number}'s table cannot hold {entries} entries")
    used = bits - (entries - 1) * bits_per_cluster
    last = bytearray(b"\xff" * (used // 8) + (bytes([(1 << used % 8) - 1]) if used % 8 else b""))
    if past_the_end is not None:
        position = used + past_the_end
        if not used <= position < bits_per_cluster:
            raise CorruptionError(f"bit {position} is outside the last cluster")
        last.extend(bytes(position // 8 + 1 - len(last)))
        last[position // 8] |= 1 << position % 8
    for index in range(entries):
        content = bytes(last) if index == entries - 1 else b"\xff" * img.cluster_size
        _put(data, table + 8 * index, _append(data, img, content), 8)
    data[offset + BITMAP_ENTRY_FIELDS["granularity_bits"][0]] = granularity_bits
    _put(data, offset + BITMAP_ENTRY_FIELDS["num_bitmap_table_entries"][0], entries,
         BITMAP_ENTRY_FIELDS["num_bitmap_table_entries"][1])


def bitmap_virtual_size(bits: int, granularity_bits: int = 9) -> int:
    """The virtual size whose bitmap at this granularity has exactly `bits` bits."""
    return bits << granularity_bits


@corruption("BMP-13", "one-bit-past-the-end", "qemu-bitmap",
            params={"granularity": (16, 12, 20), "past": (0, 1, 8), "grow": (0, 3)})
def _bmp13_one_bit(data: bytearray, img: Image, p: Params) -> None:
    """Bitmap 0 has every bit set, and one more just past its end (at a granularity that
    ends it inside a byte or on a byte boundary; `grow` adds clusters to the virtual size
    so that 64 + 3 bits end it inside a byte)."""
    fill_bitmap(data, img, 0, p["granularity"], past_the_end=p["past"],
                virtual_size=int(img.header.virtual_size) + p["grow"] * img.cluster_size)


@corruption("BMP-13", "past-a-two-cluster-bitmap", "qemu-bitmap",
            params={"past": (0, 3, 7), "second_cluster_bits": (1029, 65544),
                    "first_entry": ("data", "zeros")})
def _bmp13_two_clusters(data: bytearray, img: Image, p: Params) -> None:
    """Bitmap 0 spans two data clusters (its table has two entries) and has every bit set,
    and one more just past its end in the second. The first entry may instead read as all
    zeros (offset 0)."""
    fill_bitmap(data, img, 0, 9, past_the_end=p["past"],
                virtual_size=bitmap_virtual_size(8 * img.cluster_size + p["second_cluster_bits"]))
    if p["first_entry"] == "zeros":
        table = int(bitmap_entries(img)[0][1].ofs_bitmap_table)
        set_refcount(data, img, _get(data, table, 8) // img.cluster_size, 0)
        _put(data, table, 0, 8)


# -- CRYPT ---------------------------------------------------------------------


@corruption("CRYPT-1", "crypt-method-3", "qemu-default", params={"method": (3, 0xFFFFFFFF)})
def _crypt1(data: bytearray, img: Image, p: Params) -> None:
    """crypt_method is not 0, 1 or 2."""
    _set_header(data, "crypt_method", p["method"])


@corruption("CRYPT-2", "luks-without-extension", "qemu-default")
def _crypt2(data: bytearray, img: Image, p: Params) -> None:
    """crypt_method is 2 (LUKS) but there is no encryption header pointer extension."""
    _set_header(data, "crypt_method", 2)


@corruption("CRYPT-2", "extension-without-luks", "qemu-luks", also=("RC-5",))
def _crypt2_ext(data: bytearray, img: Image, p: Params) -> None:
    """The encryption header pointer extension is present but crypt_method is 0."""
    _set_header(data, "crypt_method", 0)


@corruption("CRYPT-3", "pointer-length-24", "qemu-luks")
def _crypt3(data: bytearray, img: Image, p: Params) -> None:
    """The encryption header pointer extension's data is 24 bytes instead of 16."""
    records = [r if r[0] != ExtensionType.full_disk_encryption else (r[0], r[1] + bytes(8))
               for r in _records(data, img)]
    _write_extensions(data, img, records)


@corruption("CRYPT-3", "header-past-eof", "qemu-luks",
            also=(LEAKS_WHEN_UNREACHABLE, "RC-4", "OVL-3"))
def _crypt3_eof(data: bytearray, img: Image, p: Params) -> None:
    """The stated encryption header length runs past the end of the file."""
    ext = _extension(img, ExtensionType.full_disk_encryption)
    start = int(ext.body.ofs_crypt_header)
    _set_ext_field(data, img, ExtensionType.full_disk_encryption, CRYPT_POINTER_FIELDS,
                   "len_crypt_header", len(data) - start + 4 * img.cluster_size)


@corruption("CRYPT-3", "header-unaligned", "qemu-luks",
            also=(LEAKS_WHEN_UNREACHABLE, "CRYPT-4", "CRYPT-5"))
def _crypt3_unaligned(data: bytearray, img: Image, p: Params) -> None:
    """The encryption header is moved 512 bytes further into its clusters (its last 512
    bytes, slack, dropped) and the pointer follows: same clusters, not cluster-aligned."""
    ext = _extension(img, ExtensionType.full_disk_encryption)
    start, length = int(ext.body.ofs_crypt_header), int(ext.body.len_crypt_header)
    end = _round_up(start + length, img.cluster_size)
    if start + 512 + length > end:
        raise CorruptionError("no slack after the encryption header")
    blob = bytes(data[start:start + length])
    data[start:start + 512] = bytes(512)
    data[start + 512:start + 512 + length] = blob
    _set_ext_field(data, img, ExtensionType.full_disk_encryption, CRYPT_POINTER_FIELDS,
                   "ofs_crypt_header", start + 512)


@corruption("CRYPT-4", "luks-magic-zeroed", "qemu-luks")
def _crypt4(data: bytearray, img: Image, p: Params) -> None:
    """The encryption header region does not begin with the LUKS magic."""
    ext = _extension(img, ExtensionType.full_disk_encryption)
    start = int(ext.body.ofs_crypt_header)
    data[start:start + 6] = bytes(6)


@corruption("CRYPT-5", "slack-not-zero", "qemu-luks", params={"at": (0, 4096)})
def _crypt5(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) A byte of the encryption header's last cluster past its stated length (the
    first, or the one `at` bytes after it) is not zero."""
    ext = _extension(img, ExtensionType.full_disk_encryption)
    end = int(ext.body.ofs_crypt_header) + int(ext.body.len_crypt_header)
    size = img.cluster_size
    if end % size == 0 or (end + p["at"]) // size != end // size:
        raise CorruptionError("the encryption header leaves no such slack byte")
    data[end + p["at"]] = 0xA5


@corruption("CRYPT-6", "legacy-aes", "qemu-default")
def _crypt6(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) crypt_method is 1 (legacy AES-CBC); a note, not a violation."""
    _set_header(data, "crypt_method", 1)


# -- DATA ----------------------------------------------------------------------


@corruption("DATA-1", "name-without-bit", "qemu-default")
def _data1(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) An external data file name extension appears without incompatible bit 2."""
    records = _records(data, img)
    _write_extensions(data, img, [(ExtensionType.external_data_file, b"disk.raw"), *records])


@corruption("DATA-2", "name-with-nul", "qemu-data-file")
def _data2(data: bytearray, img: Image, p: Params) -> None:
    """The data file name extension's length covers a NUL byte after the name."""
    records = [r if r[0] != ExtensionType.external_data_file else (r[0], r[1] + b"\0")
               for r in _records(data, img)]
    _write_extensions(data, img, records)


@corruption("DATA-3", "raw-bit-without-data-file", "qemu-default")
def _data3(data: bytearray, img: Image, p: Params) -> None:
    """Autoclear bit 1 (data file is raw) is set without incompatible bit 2."""
    _or_header(data, "autoclear_features", 2)


@corruption("DATA-4", "raw-data-file-with-backing", "qemu-data-file-raw")
def _data4(data: bytearray, img: Image, p: Params) -> None:
    """An image with a raw external data file also names a backing file."""
    _place_backing_name(data, img, b"base.qcow2")


@corruption("DATA-5", "not-identity", "qemu-data-file", params={"shift": (1, 2, 7)})
def _data5(data: bytearray, img: Image, p: Params) -> None:
    """An allocated entry maps its guest cluster to another cluster of the data file."""
    ref = _pick(_allocated(img) or [r for r in _l2_refs(img) if r.raw & COPIED], 0,
                "allocated L2 entry")
    host = (ref.raw & ENTRY_OFFSET_MASK) + p["shift"] * img.cluster_size
    _put(data, ref.offset, (ref.raw & ~ENTRY_OFFSET_MASK) | host, 8)


@corruption("DATA-5", "not-identity-in-a-later-table", "qemu-data-file-two-l2-tables")
def _data5_later(data: bytearray, img: Image, p: Params) -> None:
    """An allocated entry of the second L2 table maps its guest cluster to the next cluster
    of the data file."""
    ref = [r for r in _l2_refs(img) if r.raw & COPIED][-1]
    _put(data, ref.offset, ref.raw + img.cluster_size, 8)


@corruption("DATA-6", "compressed-with-data-file", "qemu-data-file", also=("CMP-2", "CMP-4"))
def _data6(data: bytearray, img: Image, p: Params) -> None:
    """An unallocated entry becomes a compressed descriptor in an image with a data file."""
    ref = _pick(_unallocated(img), 0, "unallocated L2 entry")
    descriptor = _compressed_descriptor(img.cluster_bits, ref.guest, 1)
    _put(data, ref.offset, descriptor, 8)


@corruption("DATA-7", "snapshot-with-data-file", "qemu-data-file")
def _data7(data: bytearray, img: Image, p: Params) -> None:
    """An image with a data file gets one internal snapshot (a refcounted snapshot table whose
    entry has an empty L1 table)."""
    extra = struct.pack(">QQ", 0, int(img.header.virtual_size))
    entry = _snapshot_bytes(ofs_l1_table=0, num_l1_entries=0, id_str=b"1", name=b"snap0",
                            extra=extra)
    _set_header(data, "ofs_snapshot_table", _append(data, img, entry))
    _set_header(data, "num_snapshots", 1)


@corruption("DATA-9", "copied-clear-with-data-file", "qemu-data-file-raw",
            params={"entry": tuple(range(4))})
def _data9(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) Bit 63 is clear on an allocated entry (non-zero host offset, so it stays
    allocated) of an image with a data file."""
    ref = _pick(_allocated(img), p["entry"], "allocated L2 entry")
    _put(data, ref.offset, ref.raw & ~COPIED, 8)


@corruption("DATA-10", "offset-zero-copied-without-data-file", "qemu-default",
            params={"entry": tuple(range(4))}, also=("L2-3",))
def _data10(data: bytearray, img: Image, p: Params) -> None:
    """An unallocated entry gets bit 63 with host offset 0, in an image without a data
    file."""
    ref = _pick(_unallocated(img), p["entry"], "unallocated L2 entry")
    _put(data, ref.offset, COPIED, 8)


# -- OVL -----------------------------------------------------------------------


@corruption("OVL-1", "data-in-metadata-cluster", "qemu-default",
            params={"cluster": ("l1", "refcount-table", "refcount-block")}, also=("RC-4",))
def _ovl1(data: bytearray, img: Image, p: Params) -> None:
    """An unallocated L2 entry is pointed at a metadata cluster, which then also serves as
    guest data."""
    ref = _pick(_unallocated(img), 0, "unallocated L2 entry")
    cluster = _metadata_clusters(img)[p["cluster"]]
    _put(data, ref.offset, COPIED | cluster * img.cluster_size, 8)


@corruption("OVL-1", "l2-table-is-data", "qemu-default", also=("RC-4",))
def _ovl1_l2(data: bytearray, img: Image, p: Params) -> None:
    """An unallocated L2 entry is pointed at the L2 table that holds it."""
    ref = _pick(_unallocated(img), 0, "unallocated L2 entry")
    table = ref.offset - ref.offset % img.cluster_size
    _put(data, ref.offset, COPIED | table, 8)


@corruption("OVL-1", "bitmap-table-runs-into-the-directory", "qemu-bitmap-table-2-clusters",
            also=("OVL-2", "RC-5"))
def _ovl1_bitmap_table(data: bytearray, img: Image, p: Params) -> None:
    """The bitmap directory moves to a free cluster, and bitmap 0's two-cluster table to
    the free one before it, so the table's second cluster is the directory (its refcount
    counts both; the old clusters leak). The directory's first bytes, read as table
    entry 64, then name the table's own first cluster as bitmap data."""
    size = img.cluster_size
    ext = _extension(img, ExtensionType.bitmaps)
    old_directory = int(ext.body.ofs_bitmap_directory)
    length = int(ext.body.len_bitmap_directory)
    free = [c for c in range(1, len(data) // size - 1)
            if _get_refcount(data, img, c) == 0 == _get_refcount(data, img, c + 1)
            and c % 2]
    table = _pick(free, 0, "odd free cluster followed by a free one") * size
    directory = table + size
    data[directory:directory + length] = data[old_directory:old_directory + length]
    _set_ext_field(data, img, ExtensionType.bitmaps, BITMAPS_EXTENSION_FIELDS,
                   "ofs_bitmap_directory", directory)
    entry, _ = bitmap_entries(img)[0]
    _put(data, directory + (entry - old_directory), table, 8)
    set_refcount(data, img, table // size, 2)  # the table, and the data entry 64 names
    set_refcount(data, img, directory // size, 2)


@corruption("OVL-2", "snapshot-l1-is-active-l1", "qemu-snapshot",
            also=("OVL-1", "RC-4", "RC-5", "L1-3", "L2-3"))
def _ovl2(data: bytearray, img: Image, p: Params) -> None:
    """A snapshot's L1 table offset is set to the active L1 table's offset."""
    offset, _ = _snapshots(img)[0]
    _put(data, offset + SNAPSHOT_FIELDS["ofs_l1_table"][0], int(img.header.ofs_l1_table), 8)


@corruption("OVL-2", "bitmap-tables-overlap", "qemu-bitmap-table-2-clusters",
            also=("RC-4", "RC-5"))
def _ovl2_bitmap_tables(data: bytearray, img: Image, p: Params) -> None:
    """Bitmap 1's table starts in the second cluster of bitmap 0's two-cluster table."""
    (first, first_node), (second, _) = bitmap_entries(img)[:2]
    _put(data, second + BITMAP_ENTRY_FIELDS["ofs_bitmap_table"][0],
         int(first_node.ofs_bitmap_table) + img.cluster_size, 8)


# -- ZONE ----------------------------------------------------------------------


@corruption("ZONE-1", "extension-without-bit", "reference-zoned", also=("ZONE-2",))
def _zone1(data: bytearray, img: Image, p: Params) -> None:
    """Incompatible bit 5 is cleared while the zoned extension stays."""
    _clear_header(data, "incompatible_features", 1 << 5)


@corruption("ZONE-1", "bit-without-extension", "qemu-default")
def _zone1_bit(data: bytearray, img: Image, p: Params) -> None:
    """Incompatible bit 5 is set on an image without the zoned extension."""
    _or_header(data, "incompatible_features", 1 << 5)


@corruption("ZONE-2", "readable-by-old-qemu", "reference-zoned", also=("ZONE-1",))
def _zone2(data: bytearray, img: Image, p: Params) -> None:
    """Without incompatible bit 5 a pre-zoned QEMU opens the zoned image and ignores its write
    pointers."""
    _clear_header(data, "incompatible_features", 1 << 5)


@corruption("ZONE-3", "length-64", "reference-zoned")
def _zone3(data: bytearray, img: Image, p: Params) -> None:
    """The zoned extension's data is 64 bytes instead of 56."""
    records = [r if r[0] != ExtensionType.zoned else (r[0], r[1] + bytes(8))
               for r in _records(data, img)]
    _write_extensions(data, img, records)


@corruption("ZONE-4", "model-not-host-managed", "reference-zoned", params={"model": (0, 2, 255)})
def _zone4(data: bytearray, img: Image, p: Params) -> None:
    """The zoned byte is not 1."""
    _set_zoned(data, img, "zoned_model", p["model"])


@corruption("ZONE-5", "reserved-bytes", "reference-zoned", params={"byte": (1, 2, 3)})
def _zone5(data: bytearray, img: Image, p: Params) -> None:
    """A reserved byte (1-3) of the zoned extension is not zero."""
    ext = _extension(img, ExtensionType.zoned)
    data[ext.offset + 8 + p["byte"]] = 1


def _regeometry(data: bytearray, img: Image, zone_size: int) -> None:
    """Give the zoned image a new zone_size, each wp at the same distance from its zone's
    start (clamped to the new size)."""
    zones = _zones(img)
    _set_zoned(data, img, "zone_size", zone_size)
    for zone in range(zones.count):
        used = min(zones.wp(zone) - zones.start(zone), zone_size)
        flag = zones.entries[zone] & CONVENTIONAL
        _set_wp_entry(data, zones, zone, zone * zone_size + used | flag)


@corruption("ZONE-6", "zone-size-not-power-of-two", "reference-zoned", also=("WP-10",))
def _zone6(data: bytearray, img: Image, p: Params) -> None:
    """zone_size grows by 512 bytes, keeping nr_zones right, and every wp keeps its distance
    from its zone's new start."""
    zones = _zones(img)
    size = int(img.header.virtual_size)
    new = zones.size + 512
    if -(-size // new) != zones.count:
        raise CorruptionError("nr_zones would change")
    _regeometry(data, img, new)


@corruption("ZONE-7", "capacity-over-size", "reference-zoned")
def _zone7(data: bytearray, img: Image, p: Params) -> None:
    """zone_capacity is 512 bytes more than zone_size."""
    _set_zoned(data, img, "zone_capacity", _zones(img).size + 512)


@corruption("ZONE-7", "capacity-unaligned", "reference-zoned")
def _zone7_unaligned(data: bytearray, img: Image, p: Params) -> None:
    """zone_capacity grows by 256 bytes: not a multiple of 512."""
    _set_zoned(data, img, "zone_capacity", _zones(img).capacity + 256)


@corruption("ZONE-7", "capacity-zero", "reference-zoned", also=("ZONE-16", "ZONE-17", "WP-10"))
def _zone7_zero(data: bytearray, img: Image, p: Params) -> None:
    """zone_capacity is 0."""
    _set_zoned(data, img, "zone_capacity", 0)


@corruption("ZONE-8", "capacity-not-power-of-two", "reference-zoned")
def _zone8(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) zone_capacity grows to 1.5 times its value, not a power of two (FULL
    zones then read as CLOSED: still sound)."""
    zones = _zones(img)
    new = zones.capacity * 3 // 2
    if new > zones.size or new & (new - 1) == 0:
        raise CorruptionError("the base capacity does not allow a non-power-of-two value")
    _set_zoned(data, img, "zone_capacity", new)


@corruption("ZONE-9", "one-zone-too-many", "reference-zoned")
def _zone9(data: bytearray, img: Image, p: Params) -> None:
    """nr_zones is one more than the virtual size needs; zonedmeta_size and the table grow
    with it (an EMPTY wp for the extra zone), so only the count is wrong."""
    zones = _zones(img)
    _set_zoned(data, img, "num_zones", zones.count + 1)
    _set_zoned(data, img, "len_zonedmeta", 8 * (zones.count + 1))
    _set_wp_entry(data, zones, zones.count, zones.start(zones.count))
    if (zones.table + 8 * zones.count) // img.cluster_size != zones.table // img.cluster_size:
        raise CorruptionError("the zonedmeta table has no room for one more entry")


@corruption("ZONE-10", "nr-zones-over-limit", "reference-zoned",
            also=(LEAKS_WHEN_UNREACHABLE, "ZONE-9", "ZONE-18", "ZONE-20", "ZONE-11"))
def _zone10(data: bytearray, img: Image, p: Params) -> None:
    """nr_zones is 536870912, above (2^32 - 1) / 8."""
    _set_zoned(data, img, "num_zones", 536870912)


@corruption("ZONE-11", "all-zones-conventional", "reference-zoned")
def _zone11(data: bytearray, img: Image, p: Params) -> None:
    """conventional_zones equals nr_zones; every entry is made conventional and the limits 0,
    so only the count is wrong."""
    zones = _zones(img)
    _set_zoned(data, img, "num_conventional_zones", zones.count)
    _set_zoned(data, img, "max_open_zones", 0)
    _set_zoned(data, img, "max_active_zones", 0)
    for zone in range(zones.count):
        _set_wp_entry(data, zones, zone, zones.start(zone) | CONVENTIONAL)


@corruption("ZONE-12", "open-limit-over-sequential", "reference-zoned")
def _zone12(data: bytearray, img: Image, p: Params) -> None:
    """max_open_zones is one more than the number of sequential zones (active limit 0)."""
    zones = _zones(img)
    _set_zoned(data, img, "max_active_zones", 0)
    _set_zoned(data, img, "max_open_zones", zones.count - zones.conventional + 1)


@corruption("ZONE-13", "open-limit-over-active-limit", "reference-zoned")
def _zone13(data: bytearray, img: Image, p: Params) -> None:
    """Both limits are set and max_open_zones is one more than max_active_zones (which still
    covers every CLOSED zone)."""
    zones = _zones(img)
    active = max(2, len(zones.sequential("closed")))
    _set_zoned(data, img, "max_active_zones", active)
    _set_zoned(data, img, "max_open_zones", active + 1)


@corruption("ZONE-14", "active-limit-over-sequential", "reference-zoned")
def _zone14(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) max_active_zones is one more than the number of sequential zones."""
    zones = _zones(img)
    _set_zoned(data, img, "max_active_zones", zones.count - zones.conventional + 1)


@corruption("ZONE-15", "limit-equals-sequential", "reference-zoned",
            params={"limit": ("max_active_zones", "max_open_zones")})
def _zone15(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) A limit equals the number of sequential zones, meaning no limit."""
    zones = _zones(img)
    sequential = zones.count - zones.conventional
    _set_zoned(data, img, "max_active_zones", sequential)
    if p["limit"] == "max_open_zones":
        _set_zoned(data, img, "max_open_zones", sequential)


@corruption("ZONE-16", "append-unaligned", "reference-zoned")
def _zone16(data: bytearray, img: Image, p: Params) -> None:
    """max_append_bytes is not a multiple of 512."""
    _set_zoned(data, img, "max_append_bytes", 1000)


@corruption("ZONE-16", "append-equals-capacity", "reference-zoned", also=("ZONE-17",))
def _zone16_capacity(data: bytearray, img: Image, p: Params) -> None:
    """max_append_bytes equals zone_capacity."""
    _set_zoned(data, img, "max_append_bytes", _zones(img).capacity)


@corruption("ZONE-17", "append-capacity-minus-512", "reference-zoned")
def _zone17(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) max_append_bytes is zone_capacity - 512: within the text's bound, refused by
    the posted code."""
    _set_zoned(data, img, "max_append_bytes", _zones(img).capacity - 512)


@corruption("ZONE-18", "zonedmeta-size", "reference-zoned", params={"delta": (8, -8, 1)})
def _zone18(data: bytearray, img: Image, p: Params) -> None:
    """zonedmeta_size differs from 8 * nr_zones."""
    _set_zoned(data, img, "len_zonedmeta", 8 * _zones(img).count + p["delta"])


@corruption("ZONE-19", "zonedmeta-unaligned", "reference-zoned", also=(LEAKS_WHEN_UNREACHABLE,))
def _zone19(data: bytearray, img: Image, p: Params) -> None:
    """The write-pointer table moves 8 bytes further into its cluster."""
    zones = _zones(img)
    blob = bytes(data[zones.table:zones.table + 8 * zones.count])
    if (zones.table + 8 + len(blob) - 1) // img.cluster_size != zones.table // img.cluster_size:
        raise CorruptionError("no room to move the zonedmeta table")
    data[zones.table:zones.table + 8] = bytes(8)
    data[zones.table + 8:zones.table + 8 + len(blob)] = blob
    _set_zoned(data, img, "ofs_zonedmeta", zones.table + 8)


@corruption("ZONE-19", "zonedmeta-offset-zero", "reference-zoned",
            also=("OVL-1", "OVL-2", "ZONE-22", "WP-2", "WP-3", "WP-4", "WP-5", "WP-6", "WP-7",
                  "RC-4", "RC-5"))
def _zone19_zero(data: bytearray, img: Image, p: Params) -> None:
    """zonedmeta_offset is 0."""
    _set_zoned(data, img, "ofs_zonedmeta", 0)


@corruption("ZONE-20", "zonedmeta-past-eof", "reference-zoned",
            also=("ZONE-21", "RC-4", "OVL-3"))
def _zone20(data: bytearray, img: Image, p: Params) -> None:
    """zonedmeta_offset is aligned but past the end of the file (the old table's cluster is
    freed)."""
    zones = _zones(img)
    _set_zoned(data, img, "ofs_zonedmeta", _beyond_eof(data, img))
    set_refcount(data, img, zones.table // img.cluster_size, 0)


@corruption("ZONE-21", "zonedmeta-refcount-zero", "reference-zoned", also=("RC-4",))
def _zone21(data: bytearray, img: Image, p: Params) -> None:
    """The zonedmeta table's cluster has a stored refcount of 0."""
    set_refcount(data, img, _zones(img).table // img.cluster_size, 0)


@corruption("ZONE-22", "zonedmeta-in-data-cluster", "reference-zoned", also=("OVL-1", "OVL-2"))
def _zone22(data: bytearray, img: Image, p: Params) -> None:
    """The write-pointer table is copied into a conventional zone's data cluster and pointed
    at there. Refcounts and COPIED follow (old cluster 0, shared cluster 2, flag cleared), so
    only the overlap is wrong."""
    zones = _zones(img)
    size = img.cluster_size
    conventional_end = zones.conventional * zones.size
    ref = _pick([r for r in _allocated(img) if r.guest < conventional_end], 0,
                "data cluster in a conventional zone")
    host = ref.raw & ENTRY_OFFSET_MASK
    blob = bytes(data[zones.table:zones.table + 8 * zones.count])
    data[host:host + len(blob)] = blob
    _set_zoned(data, img, "ofs_zonedmeta", host)
    set_refcount(data, img, zones.table // size, 0)
    set_refcount(data, img, host // size, 2)
    _put(data, ref.offset, ref.raw & ~COPIED, 8)


@corruption("ZONE-23", "zoned-with-backing", "reference-zoned")
def _zone23(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) The zoned image names a backing file."""
    _place_backing_name(data, img, b"base.qcow2")


@corruption("ZONE-23", "zoned-with-snapshot", "reference-zoned")
def _zone23_snapshot(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) The zoned image has an internal snapshot (refcounted table, empty L1)."""
    extra = struct.pack(">QQ", 0, int(img.header.virtual_size))
    entry = _snapshot_bytes(ofs_l1_table=0, num_l1_entries=0, id_str=b"1", name=b"snap0",
                            extra=extra)
    _set_header(data, "ofs_snapshot_table", _append(data, img, entry))
    _set_header(data, "num_snapshots", 1)


# -- WP ------------------------------------------------------------------------


@corruption("WP-2", "host-endian-table", "reference-zoned")
def _wp2(data: bytearray, img: Image, p: Params) -> None:
    """Every write-pointer entry is stored little-endian, as the posted code does."""
    zones = _zones(img)
    for zone, raw in enumerate(zones.entries):
        data[zones.table + 8 * zone:zones.table + 8 * zone + 8] = raw.to_bytes(8, "little")


@corruption("WP-3", "reserved-entry-bit", "reference-zoned",
            params={"bit": (60, 61, 62, 63), "state": ("closed", "empty", "full")})
def _wp3(data: bytearray, img: Image, p: Params) -> None:
    """A reserved bit (60-63) of a sequential zone's entry is set."""
    zones = _zones(img)
    zone = _zone(zones, p["state"])
    _set_wp_entry(data, zones, zone, zones.entries[zone] | 1 << p["bit"])


@corruption("WP-4", "conventional-bit-on-sequential", "reference-zoned")
def _wp4(data: bytearray, img: Image, p: Params) -> None:
    """Bit 59 is set on an EMPTY sequential zone's entry (its value is otherwise what a
    conventional entry would hold)."""
    zones = _zones(img)
    zone = _zone(zones, "empty")
    _set_wp_entry(data, zones, zone, zones.entries[zone] | CONVENTIONAL)


@corruption("WP-4", "conventional-bit-missing", "reference-zoned", also=("WP-10",))
def _wp4_missing(data: bytearray, img: Image, p: Params) -> None:
    """Bit 59 is cleared on a conventional zone's entry."""
    zones = _zones(img)
    zone = _zone(zones, "conventional", zones.conventional - 1)
    _set_wp_entry(data, zones, zone, zones.entries[zone] & ~CONVENTIONAL)


@corruption("WP-5", "conventional-entry-value", "reference-zoned", params={"delta": (512, 4096)})
def _wp5(data: bytearray, img: Image, p: Params) -> None:
    """A conventional zone's entry is not its zone start (it carries a write pointer)."""
    zones = _zones(img)
    zone = _zone(zones, "conventional")
    _set_wp_entry(data, zones, zone, (zones.start(zone) + p["delta"]) | CONVENTIONAL)


@corruption("WP-6", "wp-past-zone", "reference-zoned",
            params={"state": ("full", "closed", "empty")})
def _wp6(data: bytearray, img: Image, p: Params) -> None:
    """A sequential zone's wp is 512 bytes past zone_start + zone_size."""
    zones = _zones(img)
    zone = _zone(zones, p["state"])
    _set_wp_entry(data, zones, zone, zones.start(zone) + zones.size + 512)


@corruption("WP-6", "wp-before-zone", "reference-zoned")
def _wp6_before(data: bytearray, img: Image, p: Params) -> None:
    """A sequential zone's wp is 512 bytes below its zone start."""
    zones = _zones(img)
    zone = _zone(zones, "empty")
    _set_wp_entry(data, zones, zone, zones.start(zone) - 512)


@corruption("WP-7", "wp-unaligned", "reference-zoned", params={"delta": (100, 1, 511)})
def _wp7(data: bytearray, img: Image, p: Params) -> None:
    """A CLOSED zone's wp moves a few bytes forward: not a multiple of 512 from its start."""
    zones = _zones(img)
    zone = _zone(zones, "closed")
    _set_wp_entry(data, zones, zone, zones.entries[zone] + p["delta"])


@corruption("WP-9", "full-wp-at-zone-end", "reference-zoned")
def _wp9(data: bytearray, img: Image, p: Params) -> None:
    """(MAY, exercised) A FULL zone's wp is stored as zone_start + zone_size rather than at
    its writable end."""
    zones = _zones(img)
    zone = _zone(zones, "full")
    _set_wp_entry(data, zones, zone, zones.start(zone) + zones.size)


@corruption("WP-10", "data-above-wp", "reference-zoned", params={"state": ("closed", "full")})
def _wp10(data: bytearray, img: Image, p: Params) -> None:
    """(SHOULD) A written zone's wp is moved back to its start, so its data lies above the
    wp."""
    zones = _zones(img)
    zone = _zone(zones, p["state"])
    _set_wp_entry(data, zones, zone, zones.start(zone))


# ---------------------------------------------------------------------------
# Base images
# ---------------------------------------------------------------------------

K = 1024

# kind -> (corpus recipe whose image is the base, substrings to pass to build_corpus(only=))
QEMU_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "qemu-default": ("qemu-compat-1.1", ("qemu-compat-1.1",)),
    "qemu-v2": ("qemu-compat-0.10", ("qemu-compat-0.10",)),
    "qemu-snapshot": ("qemu-snapshot", ("qemu-snapshot",)),
    "qemu-bitmap": ("qemu-bitmap", ("qemu-bitmap",)),
    "qemu-extended-l2": ("qemu-extended-l2", ("qemu-extended-l2",)),
    "qemu-compressed-zstd": ("qemu-compressed-zstd", ("qemu-compressed-zstd",)),
    "qemu-data-file": ("qemu-data-file", ("qemu-data-file",)),
    "qemu-data-file-raw": ("qemu-data-file-raw", ("qemu-data-file-raw",)),
    "qemu-luks": ("qemu-luks", ("qemu-luks",)),
    "qemu-backing-overlay": ("qemu-backing-overlay", ("qemu-backing",)),
}

@dataclass(frozen=True)
class _ExtraKind:
    """A base image made here by qemu-img create (size None: the corpus's virtual size),
    then qemu-io commands (strings) and qemu-img commands (tuples, "{img}" for the image),
    in order."""

    options: str
    steps: tuple[str | tuple[str, ...], ...] = ()
    size: str | None = None


def _two_bitmaps(granularity: str) -> tuple[tuple[str, ...], ...]:
    return tuple(("bitmap", "--add", "-g", granularity, "{img}", name)
                 for name in ("bitmap0", "bitmap1"))


# Kinds made here by qemu-img directly, because no corpus recipe fits.
QEMU_EXTRA_KINDS: dict[str, _ExtraKind] = {
    # Compressed clusters with 4 KiB clusters, where descriptor offset bits 56-57 exist (CMP-1).
    "qemu-compressed-4k": _ExtraKind("cluster_size=4k,compression_type=zlib",
                                     ("write -c -q -P 0x5a 0 4k", "write -c -q -P 0x6b 8k 4k")),
    # A version 2 image (no compression type field: deflate) with a compressed cluster.
    "qemu-v2-compressed": _ExtraKind("compat=0.10", ("write -c -q -P 0x5c 0 64k",)),
    # A version 2 image with an internal snapshot, then a write (as qemu-snapshot).
    "qemu-v2-snapshot": _ExtraKind("compat=0.10", ("write -q -P 0x31 0 64k",
                                                   ("snapshot", "-c", "snap0", "{img}"),
                                                   "write -q -P 0x32 0 4k")),
    # Two L2 tables (guest 0 and 512 MiB), a snapshot, then a write under each table, so
    # that the active and the snapshot L1 tables each use entries 0 and 1.
    "qemu-two-l2-tables": _ExtraKind("cluster_size=64k",
                                     ("write -q -P 0x41 0 64k", "write -q -P 0x42 512M 64k",
                                      ("snapshot", "-c", "snap0", "{img}"),
                                      "write -q -P 0x43 0 4k", "write -q -P 0x44 512M 4k"),
                                     size="1G"),
    # An external data file, and data under two L2 tables (guest 0 and 512 MiB).
    "qemu-data-file-two-l2-tables": _ExtraKind(
        "data_file=qemu-data-file-two-l2-tables.data",
        ("write -q -P 0x51 0 64k", "write -q -P 0x52 512M 64k"), size="1G"),
    # Bitmap tables of 64 entries, exactly one 512-byte cluster, and of 65, two clusters.
    "qemu-bitmap-table-1-cluster": _ExtraKind("cluster_size=512", _two_bitmaps("512"),
                                              size="128M"),
    "qemu-bitmap-table-2-clusters": _ExtraKind("cluster_size=512", _two_bitmaps("512"),
                                               size="129M"),
}

ZONED_KINDS = ("reference-zoned",)

BASE_KINDS: tuple[str, ...] = (*QEMU_KINDS, *QEMU_EXTRA_KINDS, *ZONED_KINDS)

_CACHE: dict[tuple[str, str], bytes] = {}
BUILD_ATTEMPTS = 3


def base_image(kind: str, workdir: str | os.PathLike[str]) -> bytes:
    """The bytes of a conformant base image of `kind`, built in `workdir` once and cached.

    QEMU kinds need qemu-img and qemu-io (they raise WriterError from
    qcow2harness.qemu when the tools are missing).
    """
    directory = os.path.abspath(os.fspath(workdir))
    key = (kind, directory)
    if key not in _CACHE:
        os.makedirs(directory, exist_ok=True)
        _CACHE[key] = _build(kind, directory)
    return _CACHE[key]


def _build(kind: str, directory: str) -> bytes:
    if kind in QEMU_KINDS:
        from qcow2harness.corpus import build_corpus

        recipe, only = QEMU_KINDS[kind]
        path = os.path.join(directory, recipe + ".qcow2")
        for attempt in range(BUILD_ATTEMPTS):
            if os.path.exists(path):
                break
            try:
                build_corpus(directory, only=list(only))
            except WriterError:
                # LUKS creation benchmarks the CPU and now and then fails with "Unable to get
                # accurate CPU usage"; anything else fails again on the next attempt.
                if attempt == BUILD_ATTEMPTS - 1:
                    raise
        if not os.path.exists(path):  # a QEMU built without the feature (no zstd, no crypto)
            from qcow2harness.corpus import skipped_recipes

            why = skipped_recipes(directory).get(recipe, "qemu-img did not make it")
            raise WriterError(f"base image {kind} not built: {why}")
        with open(path, "rb") as f:
            return f.read()
    if kind in QEMU_EXTRA_KINDS:
        return _build_qemu_extra(kind, directory)
    if kind == "reference-zoned":
        return _build_zoned(os.path.join(directory, "reference-zoned.qcow2"))
    raise CorruptionError(f"unknown base image kind {kind!r}; known: {', '.join(BASE_KINDS)}")


def _build_qemu_extra(kind: str, directory: str) -> bytes:
    from qcow2harness import qemu
    from qcow2harness.corpus import VIRTUAL_SIZE

    extra = QEMU_EXTRA_KINDS[kind]
    path = os.path.join(directory, kind + ".qcow2")
    if os.path.exists(path):
        os.unlink(path)
    # In the image's directory: a data file option names a file beside it.
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", extra.options, path,
             extra.size or VIRTUAL_SIZE, cwd=directory)
    for step in extra.steps:
        if isinstance(step, str):
            qemu.run("qemu-io", "-c", step, path, cwd=directory)
        else:
            qemu.run("qemu-img", *(path if argument == "{img}" else argument
                                   for argument in step), cwd=directory)
    with open(path, "rb") as f:
        return f.read()


# The zoned base: 8 zones of 64 KiB with 32 KiB capacity (a power of two, so ZONE-8 can be
# exercised), 4 KiB clusters, 2 conventional zones, limits open 2 / active 3, append 8 KiB.
ZONED_BASE_CONFIG = {
    "size": 512 * K, "zone_size": 64 * K, "zone_capacity": 32 * K, "conventional_zones": 2,
    "max_open_zones": 2, "max_active_zones": 3, "max_append_bytes": 8 * K,
}
ZONED_BASE_CLUSTER = 4 * K


def _build_zoned(path: str) -> bytes:
    """Conventional data in zones 0 and 1; zone 2 CLOSED (8 KiB written), zone 3 FULL, zone 4
    CLOSED at a 512-byte but not cluster boundary, zones 5-7 EMPTY."""
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    config = ZoneConfig(**ZONED_BASE_CONFIG)
    writes = [(0, 0x11, 4 * K), (64 * K + 8 * K, 0x12, 4 * K), (128 * K, 0x22, 8 * K),
              (192 * K, 0x33, 32 * K), (256 * K, 0x44, 4 * K + 512)]
    writer = ReferenceWriter.create(path, config.size, cluster_size=ZONED_BASE_CLUSTER,
                                    zoned=config, fsync=False)
    try:
        for offset, pattern, length in writes:
            result = writer.write(offset, bytes([pattern]) * length)
            if not result.ok:
                raise CorruptionError(f"reference writer refused a base write: {result}")
    finally:
        writer.close()
    with open(path, "rb") as f:
        return f.read()
