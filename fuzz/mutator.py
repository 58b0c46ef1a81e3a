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

Field widths and in-structure offsets come from properties/corruptions.py (checked
against the generated parser by tests/test_clause_coverage.py); where each structure
lies comes from the parse.
"""

from __future__ import annotations

import functools
import random
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from qcow2harness.fuzz.targets import parsed_image
from qcow2harness.properties.corruptions import (
    BITMAPS_EXTENSION_FIELDS,
    HEADER_FIELDS,
    SNAPSHOT_FIELDS,
    ZONED_FIELDS,
)

from qcow2harness.errors import HarnessError
from qcow2harness.image import ExtensionType, Image

MAGIC = b"QFI\xfb"
FIX_MAGIC_PROBABILITY = 0.95  # keep magic and version valid this often
BYTE_FALLBACK_PROBABILITY = 0.10  # plain byte mutation even when the input parses
MAX_TABLE_ENTRIES = 512  # entries of one table taken into the layout
MAX_L2_TABLES = 8
MAX_GROWTH = 64 * 1024  # a mutant grows by at most this much (cluster_size may be huge)

COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO_FLAG = 1
CONVENTIONAL = 1 << 59
OFFSET_MASK = 0x00FFFFFFFFFFFE00


@dataclass(frozen=True)
class Field:
    """`count` consecutive fields of one role (a table), or one field (count 1)."""

    offset: int
    width: int  # bytes, big-endian; 0 < width <= 8
    role: str  # e.g. "header:cluster_bits", "l1", "l2", "refcount", "wp", "ext-length"
    count: int = 1

    def at(self, index: int) -> Field:
        return Field(self.offset + index * self.width, self.width, self.role)


@dataclass
class Layout:
    fields: list[Field]
    cluster_size: int
    file_size: int
    structures: list[int]  # offsets of metadata structures (targets for overlaps)
    version: int


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
    _add_extensions(image, fields)
    _add_tables(image, fields, structures, cluster_size)
    return Layout(fields, cluster_size, len(data), structures, version)


def _add_extensions(image: Image, fields: list[Field]) -> None:
    if image.version < 3:
        return
    try:
        extensions = image.extensions()
    except HarnessError:
        return
    for ext in extensions:
        fields.append(Field(ext.offset, 4, "ext-magic"))
        fields.append(Field(ext.offset + 4, 4, "ext-length"))
        body = ext.offset + 8
        table = {ExtensionType.zoned: ZONED_FIELDS,
                 ExtensionType.bitmaps: BITMAPS_EXTENSION_FIELDS}.get(ext.magic)
        if table is not None:
            prefix = "zoned" if ext.magic == ExtensionType.zoned else "bitmaps"
            fields.extend(Field(body + off, width, f"{prefix}:{name}")
                          for name, (off, width) in table.items()
                          if off + width <= ext.length and name != "reserved")


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
    if action < 0.05 and len(buf) > layout.cluster_size:  # cut at a cluster boundary
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


__all__ = ["Field", "Layout", "cached_layout", "layout_of", "mutate", "structured_mutate"]
