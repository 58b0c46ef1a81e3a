"""A structure-aware mutator for qcow2 images.

The input is parsed with our Kaitai parser (through `Image`) into a *layout*: the byte
position, width and role of every field worth mutating — header fields, extension
magics and lengths, the zoned extension's fields, L1 and L2 entries, refcount table
entries and refcounts, zoned write-pointer entries, the first snapshot entry. One to
three fields then get a value chosen for the role (a boundary, a flag toggled, an
offset pointing at another structure, past the end of the file, unaligned ...), or the
file is cut or grown at a cluster boundary. The magic and the version are put back
most of the time, so that mutants get past the first check and into the deep code.
Inputs that do not parse fall back to libFuzzer's byte mutation (`atheris.Mutate`),
which also uses the dictionary fuzz/qcow2.dict.

    mutate(data, max_size, seed) -> bytes   # deterministic in its arguments

Header, bitmaps and snapshot field widths and in-structure offsets come from
properties/corruptions.py (checked against the generated parser by
tests/test_clause_coverage.py); the zoned extension's fields and the write-pointer entry
width come from the generated parser itself (fuzz/field_positions.py); where each
structure lies comes from the parse.

Zoned images get crafted mutations too (`zoned_mutate`, about half their mutations):
each zoned field set to an edge of its rule relative to the image's own geometry (a zone
size of 0, 1 or not a power of two, the zone count off by one or past what a u32 table
size holds, limits at and past the sequential zone count, open above active, an append
limit at and past the capacity, the table moved onto other metadata, unaligned or past
the end), sometimes with the zone count and table size made to agree with the new zone
size so that a reader gets past its first check; write-pointer entries at the EMPTY and
FULL edges, past their zone, unaligned, with bit 59 or bits 60-63 set, in the other
byte order; and the whole table byte-swapped, all EMPTY, all FULL.
"""

from __future__ import annotations

import functools
import random
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from qcow2harness.fuzz.field_positions import (
    extension_record_positions,
    zoned_field_positions,
    zonedmeta_entry_width,
)
from qcow2harness.fuzz.targets import parsed_image
from qcow2harness.properties.corruptions import (
    BITMAPS_EXTENSION_FIELDS,
    HEADER_FIELDS,
    SNAPSHOT_FIELDS,
)

from qcow2harness.errors import HarnessError
from qcow2harness.image import COMPRESSED, COPIED, OFFSET_MASK, ZERO_FLAG, ExtensionType, Image

MAGIC = b"QFI\xfb"
FIX_MAGIC_PROBABILITY = 0.95  # keep magic and version valid this often
BYTE_FALLBACK_PROBABILITY = 0.10  # plain byte mutation even when the input parses
MAX_TABLE_ENTRIES = 512  # entries of one table taken into the layout
MAX_L2_TABLES = 8
MAX_GROWTH = 64 * 1024  # a mutant grows by at most this much (cluster_size may be huge)

CONVENTIONAL = 1 << 59


@dataclass(frozen=True)
class Field:
    """`count` consecutive fields of one role (a table), or one field (count 1)."""

    offset: int
    width: int  # bytes, big-endian; 0 < width <= 8
    role: str  # e.g. "header:cluster_bits", "l1", "l2", "refcount", "wp", "ext-length"
    count: int = 1

    def at(self, index: int) -> Field:
        return Field(self.offset + index * self.width, self.width, self.role)


@dataclass(frozen=True)
class ZonedLayout:
    """Where the zoned extension's fields and write-pointer table are, and the image's
    zone geometry as parsed (the values the crafted mutations are relative to)."""

    body: int  # file offset of the extension body
    virtual_size: int
    zone_size: int
    zone_capacity: int
    num_zones: int
    num_conventional_zones: int
    max_append_bytes: int
    table: int  # file offset of the write-pointer table
    entries: int  # entries of the table inside the file (at most MAX_TABLE_ENTRIES)


@dataclass
class Layout:
    fields: list[Field]
    cluster_size: int
    file_size: int
    structures: list[int]  # offsets of metadata structures (targets for overlaps)
    version: int
    zoned: ZonedLayout | None = None


# ---------------------------------------------------------------------------
# Reading the layout
# ---------------------------------------------------------------------------


def _u64_fields(image: Image, offset: int, count: int, role: str) -> list[Field]:
    count = max(0, min(count, MAX_TABLE_ENTRIES, (image.file_size - offset) // 8))
    return [Field(offset, 8, role, count)] if count else []


_HEADER_END = max(off + width for off, width in HEADER_FIELDS.values())


@functools.cache
def _header_fields(v3: bool, length: int) -> tuple[Field, ...]:
    """The header fields a file of `length` bytes (at most _HEADER_END) holds."""
    return tuple(Field(off, width, f"header:{name}") for name, (off, width)
                 in HEADER_FIELDS.items() if off + width <= length and (v3 or off < 72))


def layout_of(data: bytes) -> Layout | None:
    """The mutable fields of `data`, or None when not even the header parses."""
    image = parsed_image(data)  # the unit the check target has just run, usually
    if image is None:
        try:
            image = Image.from_bytes(data)
        except HarnessError:
            return None
    header = image.header
    version = int(header.version)
    fields = list(_header_fields(version >= 3, min(len(data), _HEADER_END)))
    structures = [0]
    cluster_size = 512
    try:
        cluster_size = image.cluster_size
    except HarnessError:
        return Layout(fields, cluster_size, len(data), structures, version)
    zoned_body = _add_extensions(image, data, fields)
    _add_tables(image, fields, structures, cluster_size)
    layout = Layout(fields, cluster_size, len(data), structures, version)
    if zoned_body is not None:
        layout.zoned = _zoned_layout(image, zoned_body, len(data))
    return layout


def _add_extensions(image: Image, data: bytes, fields: list[Field]) -> int | None:
    """Extension fields into `fields`; the zoned extension body's offset, if any."""
    if image.version < 3:
        return None
    try:
        extensions = image.extensions()
    except HarnessError:
        return None
    zoned_body = None
    for ext in extensions:
        fields.append(Field(ext.offset, 4, "ext-magic"))
        fields.append(Field(ext.offset + 4, 4, "ext-length"))
        body = ext.offset + 8
        if ext.magic == ExtensionType.zoned:
            body = extension_record_positions(data, ext.offset).get("body", (body, 0))[0]
            zoned_body = body
            fields.extend(Field(body + off, width, f"zoned:{name}")
                          for name, (off, width) in zoned_field_positions().items()
                          if off + width <= ext.length and name != "reserved")
        elif ext.magic == ExtensionType.bitmaps:
            fields.extend(Field(body + off, width, f"bitmaps:{name}")
                          for name, (off, width) in BITMAPS_EXTENSION_FIELDS.items()
                          if off + width <= ext.length and name != "reserved")
    return zoned_body


def _zoned_layout(image: Image, body: int, file_size: int) -> ZonedLayout | None:
    try:
        zoned = image.zoned
    except HarnessError:
        return None
    if zoned is None:
        return None
    table = int(zoned.ofs_zonedmeta)
    width = zonedmeta_entry_width()
    entries = max(0, min(int(zoned.num_zones), MAX_TABLE_ENTRIES, (file_size - table) // width))
    return ZonedLayout(body, int(image.header.virtual_size), int(zoned.zone_size),
                       int(zoned.zone_capacity), int(zoned.num_zones),
                       int(zoned.num_conventional_zones), int(zoned.max_append_bytes),
                       table, entries)


def _guarded(step: Callable[[], None]) -> None:
    try:
        step()
    except (HarnessError, ValueError, OverflowError, IndexError):
        pass


def _add_tables(image: Image, fields: list[Field], structures: list[int],
                cluster_size: int) -> None:
    header = image.header
    l1_offset = int(header.ofs_l1_table)
    reftable_offset = int(header.ofs_refcount_table)
    structures += [l1_offset, reftable_offset]

    def l1_and_l2() -> None:
        entries = image.l1_entries()
        fields.extend(_u64_fields(image, l1_offset, len(entries), "l1"))
        # The first MAX_L2_TABLES entries pointing at an L2 table inside the file.
        l2s = entries[:MAX_TABLE_ENTRIES] & np.uint64(OFFSET_MASK)
        inside = (l2s != 0) & (l2s <= np.uint64(max(image.file_size - cluster_size, 0)))
        for l2 in l2s[np.nonzero(inside)[0][:MAX_L2_TABLES]].tolist():
            structures.append(l2)
            fields.extend(_u64_fields(image, l2, cluster_size // 8, "l2"))

    def refcounts() -> None:
        entries = image.refcount_table_entries()
        fields.extend(_u64_fields(image, reftable_offset, len(entries), "reftable"))
        order = image.refcount_order
        width = max(1, (1 << order) // 8) if order <= 6 else 8
        for entry in entries[:4]:
            block = int(entry) & ~0x1FF
            if block and block + cluster_size <= image.file_size:
                structures.append(block)
                count = min(cluster_size // width, MAX_TABLE_ENTRIES)
                fields.append(Field(block, width, "refcount", count))

    def zones() -> None:
        zoned = image.zoned
        if zoned is None:
            return
        offset = int(zoned.ofs_zonedmeta)
        structures.append(offset)
        fields.extend(_u64_fields(image, offset, int(zoned.num_zones), "wp"))

    def snapshot() -> None:
        if int(header.num_snapshots) == 0:
            return
        offset = int(header.ofs_snapshot_table)
        structures.append(offset)
        fields.extend(Field(offset + off, width, f"snapshot:{name}")
                      for name, (off, width) in SNAPSHOT_FIELDS.items()
                      if offset + off + width <= image.file_size)

    for step in (l1_and_l2, refcounts, zones, snapshot):
        _guarded(step)


# ---------------------------------------------------------------------------
# Choosing values
# ---------------------------------------------------------------------------

HEADER_VALUES: dict[str, tuple[int, ...]] = {
    "version": (2, 3, 4, 1, 0),
    "cluster_bits": (8, 9, 12, 16, 20, 21, 22, 30, 31, 32, 63, 64),
    "crypt_method": (0, 1, 2, 3),
    "refcount_order": (0, 1, 3, 4, 5, 6, 7, 31),
    "len_header": (0, 72, 96, 100, 104, 105, 108, 112, 120, 4096),
    "incompatible_features": tuple([1 << b for b in range(7)] + [1 << 63, 0]),
    "compatible_features": (0, 1, 2, 1 << 63),
    "autoclear_features": (0, 1, 2, 3, 1 << 63),
    "num_snapshots": (0, 1, 2, 65536, 0xFFFFFFFF),
    "len_backing_file_name": (0, 1, 1023, 1024, 0xFFFFFFFF),
}
ZONED_VALUES: dict[str, tuple[int, ...]] = {
    "zoned_model": (0, 1, 2, 255),
    "num_conventional_zones": (0, 1, 2, 0xFFFFFFFF),
    "max_active_zones": (0, 1, 2, 0xFFFFFFFF),
    "max_open_zones": (0, 1, 2, 0xFFFFFFFF),
    "max_append_bytes": (0, 1, 512, 4096, 0xFFFFFFFF),
}


def _boundaries(width: int) -> tuple[int, ...]:
    top = (1 << (8 * width)) - 1
    return (0, 1, 2, top, top - 1, top >> 1, (top >> 1) + 1, 0x7F, 0x80, 0xFF, 0x100)


def _offset_values(rng: random.Random, layout: Layout) -> list[int]:
    cs = layout.cluster_size
    return [
        rng.choice(layout.structures),  # overlap another structure
        rng.choice(layout.structures) + 512,  # inside one, sector aligned
        layout.file_size,  # just past the end
        layout.file_size + cs * rng.randrange(1, 1 << 16),  # far past the end
        rng.randrange(0, max(1, layout.file_size // cs)) * cs,  # some cluster in the file
        rng.randrange(1, cs) if cs > 1 else 1,  # unaligned
        1 << 55, OFFSET_MASK, (1 << 63) - cs,
    ]


def _value_for(rng: random.Random, fld: Field, old: int, layout: Layout) -> int:
    role = fld.role
    top = (1 << (8 * fld.width)) - 1
    pick = rng.random()
    if pick < 0.15:  # generic: small arithmetic or a bit flip
        if rng.random() < 0.5:
            return (old + rng.choice((-8, -1, 1, 8, 512, -512))) & top
        return old ^ (1 << rng.randrange(8 * fld.width))
    if pick < 0.25:
        return rng.choice(_boundaries(fld.width))
    name = role.split(":", 1)[-1]
    if role.startswith("header:") and name in HEADER_VALUES:
        return rng.choice(HEADER_VALUES[name]) & top
    if role.startswith("zoned:") and name in ZONED_VALUES:
        return rng.choice(ZONED_VALUES[name]) & top
    if name.startswith(("ofs_", "len_")) and role.endswith(("zonedmeta", "bitmap_directory")):
        return rng.choice(_offset_values(rng, layout)) & top
    if role.startswith("header:ofs_") or role.startswith("snapshot:ofs_") or name.startswith(
            "ofs_"):
        return rng.choice(_offset_values(rng, layout)) & top
    if name in ("num_l1_entries", "num_refcount_table_clusters", "num_zones",
                "num_l1_entries", "num_bitmaps"):
        return rng.choice((0, 1, old + 1, old * 2, 1 << 20, 1 << 28, 0x7FFFFFFF, top)) & top
    if name in ("virtual_size", "zone_size", "zone_capacity"):
        cs = layout.cluster_size
        return rng.choice((0, 512, 511, cs, old - 512, old + 512, old * 2, old // 2,
                           1 << 40, 1 << 62, top)) & top
    if role in ("l1", "reftable", "l2"):
        return _table_entry(rng, role, old, layout) & top
    if role == "refcount":
        return rng.choice((0, 1, 2, old + 1, old - 1, top)) & top
    if role == "wp":
        return rng.choice((old + 512, old - 512, old + 1, old ^ CONVENTIONAL, old & ~0x1FF,
                           0, old + layout.cluster_size * 8, top)) & top
    if role == "ext-length":
        return rng.choice((0, 1, 4, old - 1, old + 1, old + 8, old - 8,
                           layout.file_size, 0x7FFFFFFF, top)) & top
    if role == "ext-magic":
        return rng.choice([int(t) for t in ExtensionType] + [0x7E57AB1E]) & top
    return rng.choice(_boundaries(fld.width))


def _table_entry(rng: random.Random, role: str, old: int, layout: Layout) -> int:
    choice = rng.randrange(8)
    if choice == 0:
        return old ^ COPIED
    if choice == 1 and role == "l2":
        return old ^ COMPRESSED
    if choice == 2 and role == "l2":
        return old ^ ZERO_FLAG
    if choice == 3:
        return 0
    flags = old & ~OFFSET_MASK if role != "reftable" else 0
    return flags | (rng.choice(_offset_values(rng, layout)) & OFFSET_MASK) | (
        rng.randrange(1, 512) if choice == 7 else 0)


# ---------------------------------------------------------------------------
# Crafted zoned headers and write-pointer tables
# ---------------------------------------------------------------------------

ZONED_MUTATION_PROBABILITY = 0.5  # of the mutations of an image with a zoned extension
COHERENT_PROBABILITY = 0.5  # a new zone size or count comes with a count/table size to match
LITTLE_ENDIAN_PROBABILITY = 0.7  # wp entries written as the series writes them (WP-2)
U32, U64 = (1 << 32) - 1, (1 << 64) - 1
TABLE_LIMIT = U32 // 8  # the most zones a u32 table size can hold (ZONE-10)


def _zone_count(virtual_size: int, zone_size: int) -> int:
    return -(-virtual_size // zone_size) if zone_size > 0 else 0


def _zoned_get(buf: bytearray, zoned: ZonedLayout, name: str) -> int:
    off, width = zoned_field_positions()[name]
    return int.from_bytes(buf[zoned.body + off:zoned.body + off + width], "big")


def _zoned_put(buf: bytearray, zoned: ZonedLayout, name: str, value: int) -> None:
    off, width = zoned_field_positions()[name]
    at = zoned.body + off
    if at + width <= len(buf):
        buf[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")


def _zoned_edges(buf: bytearray, name: str, zoned: ZonedLayout, layout: Layout,
                 rng: random.Random) -> list[int]:
    """Values at and past the edges of the field's rule, for this image's geometry."""
    size, cap, count = zoned.zone_size, zoned.zone_capacity, zoned.num_zones
    needed = _zone_count(zoned.virtual_size, size)
    sequential = max(count - zoned.num_conventional_zones, 0)
    not_power_of_two = max(size * 3 // 2 // 512 * 512, 1536)
    if name == "zone_size":
        return [0, 1, 511, 512, layout.cluster_size, size * 2, size // 2, not_power_of_two,
                zoned.virtual_size, zoned.virtual_size + 512, 1 << 32, 1 << 62, 1 << 63, U64]
    if name == "zone_capacity":
        return [0, 1, 512, cap - 512, size, size + 512, size - 1, size * 3 // 4 // 512 * 512,
                zoned.max_append_bytes, zoned.max_append_bytes + 512, U64]
    if name == "num_conventional_zones":
        return [0, 1, count - 1, count, count + 1, U32]
    if name == "num_zones":
        return [0, 1, needed - 1, needed, needed + 1, TABLE_LIMIT, TABLE_LIMIT + 1, 1 << 31,
                U32]
    if name in ("max_open_zones", "max_active_zones"):
        other = _zoned_get(buf, zoned, "max_active_zones" if name == "max_open_zones"
                           else "max_open_zones")
        return [0, 1, sequential, sequential + 1, other + 1, max(other - 1, 0), U32]
    if name == "max_append_bytes":
        return [0, 1, 511, 512, cap - 512, cap, cap + 512, size, U32]
    if name == "len_zonedmeta":
        return [0, 4, 8 * count - 8, 8 * count, 8 * count + 8, 8 * needed, 1 << 32, U64]
    if name == "ofs_zonedmeta":
        return [*_offset_values(rng, layout), 0, zoned.table + 1, zoned.table + 4,
                layout.file_size - 8]
    if name == "zoned_model":
        return [0, 2, 255]
    if name == "reserved":
        return [1, 0xFFFFFF]
    return list(_boundaries(zoned_field_positions()[name][1]))


def _zoned_field_edge(buf: bytearray, layout: Layout, rng: random.Random) -> None:
    zoned = layout.zoned
    assert zoned is not None
    name = rng.choice(list(zoned_field_positions()))
    value = rng.choice(_zoned_edges(buf, name, zoned, layout, rng))
    _zoned_put(buf, zoned, name, value)
    if rng.random() >= COHERENT_PROBABILITY:
        return
    # Keep the count and the table size in step with the change, so that a reader that
    # checks them first still reaches the field that was changed.
    if name == "zone_size" and 0 < value <= U64:
        count = _zone_count(zoned.virtual_size, value)
        if count <= U32:
            _zoned_put(buf, zoned, "num_zones", count)
            _zoned_put(buf, zoned, "len_zonedmeta", 8 * count)
            _zoned_put(buf, zoned, "zone_capacity", min(zoned.zone_capacity, value))
    elif name == "num_zones":
        _zoned_put(buf, zoned, "len_zonedmeta", 8 * (value & U32))


def _wp_values(zoned: ZonedLayout, index: int, old: int, rng: random.Random) -> list[int]:
    start, size, cap = index * zoned.zone_size, zoned.zone_size, zoned.zone_capacity
    swapped = int.from_bytes(old.to_bytes(8, "little"), "big")
    return [start, start + cap, start + size, start + size + 512, max(start - 512, 0),
            start + 1, start + cap - 512, start + rng.randrange(max(cap // 512, 1)) * 512,
            old ^ CONVENTIONAL, start | CONVENTIONAL, old | (1 << rng.randrange(60, 64)),
            swapped, (index + 1) * size, 0, U64, 1 << 58, zoned.virtual_size]


def _wp_entry(buf: bytearray, layout: Layout, rng: random.Random) -> None:
    """One write-pointer entry at an edge of its zone, in either byte order."""
    zoned = layout.zoned
    assert zoned is not None
    width = zonedmeta_entry_width()
    index = rng.randrange(zoned.entries)
    at = zoned.table + index * width
    order: Literal["little", "big"] = (
        "little" if rng.random() < LITTLE_ENDIAN_PROBABILITY else "big")
    old = int.from_bytes(buf[at:at + width], order)
    value = rng.choice(_wp_values(zoned, index, old, rng)) & U64
    buf[at:at + width] = value.to_bytes(width, order)


def _wp_table(buf: bytearray, layout: Layout, rng: random.Random) -> None:
    """The whole table at once: other byte order, all EMPTY, all FULL, rotated."""
    zoned = layout.zoned
    assert zoned is not None
    width = zonedmeta_entry_width()
    count = zoned.entries
    rows = [bytes(buf[zoned.table + i * width:zoned.table + (i + 1) * width])
            for i in range(count)]
    how = rng.randrange(5)
    order: Literal["little", "big"] = (
        "little" if rng.random() < LITTLE_ENDIAN_PROBABILITY else "big")
    if how == 0:
        rows = [row[::-1] for row in rows]
    elif how in (1, 2):
        edge = 0 if how == 1 else zoned.zone_capacity
        rows = [((i * zoned.zone_size + edge) & U64).to_bytes(width, order)
                for i in range(count)]
    elif how == 3:
        rows = rows[1:] + rows[:1]
    else:  # every entry marked conventional
        rows = [(int.from_bytes(row, order) | CONVENTIONAL).to_bytes(width, order)
                for row in rows]
    buf[zoned.table:zoned.table + count * width] = b"".join(rows)


def zoned_mutate(buf: bytearray, layout: Layout, rng: random.Random) -> None:
    """One crafted change of the zoned extension or its write-pointer table (a value
    that is already there is drawn again, a few times)."""
    zoned = layout.zoned
    assert zoned is not None
    before = bytes(buf)
    for _ in range(4):
        pick = rng.random()
        if pick < 0.45 or not zoned.entries:
            _zoned_field_edge(buf, layout, rng)
        elif pick < 0.85:
            _wp_entry(buf, layout, rng)
        else:
            _wp_table(buf, layout, rng)
        if buf != before:
            return


# ---------------------------------------------------------------------------
# The mutator
# ---------------------------------------------------------------------------

_LAYOUTS: OrderedDict[bytes, Layout | None] = OrderedDict()
_LAYOUT_CACHE = 256


def cached_layout(data: bytes) -> Layout | None:
    layout = _LAYOUTS.get(data)
    if layout is None and data not in _LAYOUTS:
        layout = layout_of(data)
        _LAYOUTS[data] = layout
        if len(_LAYOUTS) > _LAYOUT_CACHE:
            _LAYOUTS.popitem(last=False)
    else:
        _LAYOUTS.move_to_end(data)
    return layout


def _put(buf: bytearray, fld: Field, value: int) -> None:
    buf[fld.offset:fld.offset + fld.width] = value.to_bytes(fld.width, "big")


def _get(buf: bytes | bytearray, fld: Field) -> int:
    return int.from_bytes(buf[fld.offset:fld.offset + fld.width], "big")


# Set by the worker once atheris runs: atheris.Mutate may only be called inside Fuzz().
LIBFUZZER_MUTATE: Callable[[bytes, int], bytes] | None = None


def byte_mutate(data: bytes, max_size: int, rng: random.Random) -> bytes:
    """libFuzzer's own mutation under atheris; a simple stand-in in replay and tests."""
    if LIBFUZZER_MUTATE is not None:
        return bytes(LIBFUZZER_MUTATE(data, max_size))
    buf = bytearray(data or b"\0")
    for _ in range(rng.randrange(1, 4)):
        buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf[:max_size])


def structured_mutate(data: bytes, max_size: int, rng: random.Random) -> bytes | None:
    """One structure-aware mutation, or None when the input does not parse."""
    layout = cached_layout(data)
    if layout is None or not layout.fields:
        return None
    buf = bytearray(data)
    version_touched = False
    action = rng.random()
    if layout.zoned is not None and rng.random() < ZONED_MUTATION_PROBABILITY:
        zoned_mutate(buf, layout, rng)
    elif action < 0.05 and len(buf) > layout.cluster_size:  # cut at a cluster boundary
        clusters = len(buf) // layout.cluster_size
        del buf[rng.randrange(1, clusters + 1) * layout.cluster_size - rng.choice((0, 8)):]
    elif action < 0.08:  # grow by a cluster (of zeros or copied metadata), never past max_size
        grow = min(layout.cluster_size, max(0, max_size - len(buf)), MAX_GROWTH)
        source = rng.choice(layout.structures)
        chunk = bytes(buf[source:source + grow])
        buf += chunk if chunk and rng.random() < 0.5 else bytes(grow)
    else:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            fld = rng.choice(layout.fields)
            if fld.count > 1:
                fld = fld.at(rng.randrange(fld.count))
            if fld.offset + fld.width > len(buf):
                continue
            _put(buf, fld, _value_for(rng, fld, _get(buf, fld), layout))
            version_touched |= fld.role == "header:version"
    if rng.random() < FIX_MAGIC_PROBABILITY:
        _fix_magic(buf, None if version_touched else layout.version)
    return bytes(buf[:max_size])


def _fix_magic(buf: bytearray, version: int | None) -> None:
    if len(buf) < 8:
        buf.extend(bytes(8 - len(buf)))
    buf[0:4] = MAGIC
    if version is not None:
        buf[4:8] = struct.pack(">I", version if version in (2, 3) else 3)


def mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """The custom mutator (atheris.Setup(custom_mutator=...)); deterministic in its args."""
    rng = random.Random(seed)
    if rng.random() >= BYTE_FALLBACK_PROBABILITY:
        try:
            out = structured_mutate(data, max_size, rng)
        except Exception:  # noqa: BLE001 - a mutator must always return bytes
            out = None
        if out is not None:
            return out
    out = byte_mutate(data, max_size, rng)
    if len(out) >= 8 and rng.random() < FIX_MAGIC_PROBABILITY / 2:
        # Half the byte mutants keep a valid magic and version too.
        buf = bytearray(out)
        version = int.from_bytes(buf[4:8], "big")
        _fix_magic(buf, version if version in (2, 3) else 3)
        out = bytes(buf)
    return out[:max_size]


__all__ = ["Field", "Layout", "ZonedLayout", "cached_layout", "layout_of", "mutate",
           "structured_mutate", "zoned_mutate"]
