"""`qcow2-harness info`: everything the header and its extensions say.

`describe()` returns a JSON-ready dict; `render()` turns it into text. Only the
header, the extensions, the small tables they point at (snapshot table, bitmap
directory, zonedmeta) and the L1 and refcount tables are read: never an L2
table or a refcount block, so the cost does not grow with the guest size.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

from qcow2harness.errors import ParseError
from qcow2harness.image import (
    OFFSET_MASK,
    REFTABLE_OFFSET_MASK,
    ExtensionType,
    Image,
    decode_name,
)
from qcow2harness.structure import require_sound

# Bit numbers of the named feature flags, from the ksy `is_*` / `has_*` instances.
INCOMPATIBLE_FLAGS = {
    0: ("dirty", "is_dirty"),
    1: ("corrupt", "is_corrupt"),
    2: ("external_data_file", "has_external_data_file"),
    3: ("compression_type", "has_compression_type"),
    4: ("extended_l2", "is_extended_l2"),
    5: ("zoned", "is_zoned"),
}
COMPATIBLE_FLAGS = {0: ("lazy_refcounts", "has_lazy_refcounts")}
AUTOCLEAR_FLAGS = {0: ("bitmaps", "has_bitmaps"), 1: ("data_file_raw", "is_data_file_raw")}

HEADER_FIELDS = (
    "version",
    "ofs_backing_file_name",
    "len_backing_file_name",
    "cluster_bits",
    "virtual_size",
    "crypt_method",
    "num_l1_entries",
    "ofs_l1_table",
    "ofs_refcount_table",
    "num_refcount_table_clusters",
    "num_snapshots",
    "ofs_snapshot_table",
    "incompatible_features",
    "compatible_features",
    "autoclear_features",
    "refcount_order",
    "len_header",
    "compression_type",
)

ZONED_FIELDS = (
    "zoned_model",
    "zone_size",
    "zone_capacity",
    "num_conventional_zones",
    "num_zones",
    "max_active_zones",
    "max_open_zones",
    "max_append_bytes",
    "len_zonedmeta",
    "ofs_zonedmeta",
)



def _plain(value: Any) -> Any:
    """Enums by name, bytes as text; everything else as is."""
    if value is None:
        return None
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes):
        return decode_name(value)
    return value


def _flags(header: Any, table: dict[int, tuple[str, str]]) -> list[str]:
    return [name for _bit, (name, attr) in sorted(table.items()) if getattr(header, attr)]


def _unknown_bits(mask: int | None, table: dict[int, tuple[str, str]]) -> list[int]:
    if not mask:
        return []
    return [bit for bit in range(64) if mask >> bit & 1 and bit not in table]


def describe_header(image: Image) -> dict[str, Any]:
    header = image.header
    fields = {name: _plain(getattr(header, name, None)) for name in HEADER_FIELDS}
    if image.version < 3:
        # v2 defaults (HDR-11, RC-1); reported so that v2 and v3 read alike.
        fields.update(
            incompatible_features=0,
            compatible_features=0,
            autoclear_features=0,
            refcount_order=image.refcount_order,
            len_header=image.len_header,
        )
    return fields


def describe_features(image: Image) -> dict[str, Any]:
    header = image.header
    return {
        "incompatible": _flags(header, INCOMPATIBLE_FLAGS),
        "compatible": _flags(header, COMPATIBLE_FLAGS),
        "autoclear": _flags(header, AUTOCLEAR_FLAGS),
        "unknown_incompatible_bits": _unknown_bits(
            getattr(header, "incompatible_features", 0), INCOMPATIBLE_FLAGS
        ),
        "unknown_compatible_bits": _unknown_bits(
            getattr(header, "compatible_features", 0), COMPATIBLE_FLAGS
        ),
        "unknown_autoclear_bits": _unknown_bits(
            getattr(header, "autoclear_features", 0), AUTOCLEAR_FLAGS
        ),
    }


def _decode_body(ext: Any) -> dict[str, Any] | str | None:
    if not ext.is_body_typed:
        return None
    body = ext.body
    if ext.magic in (ExtensionType.backing_file_format, ExtensionType.external_data_file):
        return decode_name(body.value)
    if ext.magic == ExtensionType.feature_name_table:
        return {
            "features": [
                {
                    "type": _plain(entry.feature_type),
                    "bit": entry.bit,
                    "name": decode_name(entry.name.rstrip(b"\0")),
                }
                for entry in body.entries
            ]
        }
    if ext.magic == ExtensionType.bitmaps:
        return {
            "num_bitmaps": body.num_bitmaps,
            "reserved": body.reserved,
            "len_bitmap_directory": body.len_bitmap_directory,
            "ofs_bitmap_directory": body.ofs_bitmap_directory,
        }
    if ext.magic == ExtensionType.full_disk_encryption:
        return {"ofs_crypt_header": body.ofs_crypt_header,
                "len_crypt_header": body.len_crypt_header}
    if ext.magic == ExtensionType.zoned:
        return {name: _plain(getattr(body, name)) for name in ZONED_FIELDS}
    return None


def describe_extensions(image: Image) -> list[dict[str, Any]]:
    return [
        {
            "magic": f"{ext.magic:#010x}",
            "name": ext.name,
            "offset": ext.offset,
            "length": ext.length,
            "decoded": _decode_body(ext),
        }
        for ext in image.extensions()
    ]


def describe_snapshots(image: Image) -> list[dict[str, Any]]:
    snapshots = []
    for entry in image.snapshots():
        extra = entry.extra_data
        snapshots.append(
            {
                "id": decode_name(entry.id_str),
                "name": decode_name(entry.name),
                "date_sec": entry.date_sec,
                "date_nsec": entry.date_nsec,
                "vm_clock_nsec": entry.vm_clock_nsec,
                "vm_state_size": getattr(extra, "len_vm_state_64", None) or entry.len_vm_state_32,
                "disk_size": getattr(extra, "disk_size", None),
                "icount": getattr(extra, "icount", None),
                "ofs_l1_table": entry.ofs_l1_table,
                "num_l1_entries": entry.num_l1_entries,
                "len_extra_data": entry.len_extra_data,
            }
        )
    return snapshots


def describe_bitmaps(image: Image) -> list[dict[str, Any]]:
    flag_names = {0: "in_use", 1: "auto", 2: "extra_data_compatible"}
    return [
        {
            "name": decode_name(entry.name),
            "flags": [name for bit, name in flag_names.items() if entry.flags >> bit & 1],
            "granularity": 1 << entry.granularity_bits if entry.granularity_bits < 64 else None,
            "granularity_bits": entry.granularity_bits,
            "type": entry.bitmap_type,
            "ofs_bitmap_table": entry.ofs_bitmap_table,
            "num_bitmap_table_entries": entry.num_bitmap_table_entries,
        }
        for entry in image.bitmap_directory()
    ]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# Tables up to this many entries are counted on Python ints, without importing numpy.
PLAIN_TABLE_ENTRIES = 1 << 16


def _entries_and_present(image: Image, table: tuple[str, int, int, str],
                         mask: int) -> tuple[int, int]:
    """(entries, entries with an offset under `mask`) of an L1 or refcount table."""
    if table[2] <= PLAIN_TABLE_ENTRIES:
        values = image.read_u64_values(*table)
        return len(values), sum(1 for value in values if value & mask)
    import numpy as np

    entries = image.read_u64_table(*table)
    return int(entries.size), int(np.count_nonzero(entries & mask))


def describe_clusters(image: Image) -> dict[str, int]:
    cluster_size = image.cluster_size
    l1_entries, l2_tables = _entries_and_present(image, image.l1_table(), OFFSET_MASK)
    reftable_entries, blocks = _entries_and_present(image, image.refcount_table(),
                                                    REFTABLE_OFFSET_MASK)
    return {
        "cluster_size": cluster_size,
        "virtual": _ceil_div(int(image.header.virtual_size), cluster_size),
        "file": _ceil_div(image.file_size, cluster_size),
        "l1_entries": l1_entries,
        "l2_tables": l2_tables,
        "refcount_table_entries": reftable_entries,
        "refcount_blocks": blocks,
    }


# How many zones info lists unless told (`--zones N|all`): every zone is counted by
# state whatever the table's length, streamed in batches.
ZONES_LISTED_TEXT = 32
ZONES_LISTED_JSON = 1024


class StreamedZoneRows(list):  # type: ignore[type-arg]
    """Every zone's row, made a batch at a time while it is iterated (json.dump and the
    text renderer iterate it), so that `info --zones all` never holds the table. The
    image must stay open until then."""

    def __init__(self, image: Image, geometry: tuple[int, int, int, int], offset: int,
                 count: int) -> None:
        super().__init__()
        self._image, self._geometry = image, geometry
        self._offset, self._count = offset, count

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self) -> Iterator[dict[str, int | str]]:  # type: ignore[override]
        from qcow2harness.checker.zoned import table_batches
        from qcow2harness.reference.zones import PERSISTED_STATES, persisted_zone_batch

        for first, entries in table_batches(self._image, self._offset, self._count,
                                            self._image.wp_byte_order):
            batch = persisted_zone_batch(*self._geometry, first, entries)
            for index, start, capacity, conventional, state, wp in zip(
                    batch["index"].tolist(), batch["start"].tolist(),
                    batch["capacity"].tolist(), batch["conventional"].tolist(),
                    batch["state"].tolist(), batch["wp"].tolist(), strict=True):
                yield {"index": index, "start": start, "capacity": capacity,
                       "type": "conventional" if conventional else "sequential",
                       "state": PERSISTED_STATES[state], "wp": wp}


def describe_zones(image: Image, limit: int | None = None) -> dict[str, Any] | None:
    """The zone configuration, every zone counted by persisted state, and the rows of
    the first `limit` zones (None: every zone, as a list: for small images; the CLI
    passes a limit or streams with zone_rows())."""
    zoned = image.zoned
    if zoned is None:
        return None
    from qcow2harness.checker.zoned import plain_entries, table_batches
    from qcow2harness.reference.zones import count_persisted_states, persisted_zone_report

    config = {name: _plain(getattr(zoned, name)) for name in ZONED_FIELDS}
    offset, count = int(zoned.ofs_zonedmeta), int(zoned.num_zones)
    if offset + 8 * count > image.file_size:
        raise ParseError(f"zonedmeta table at {offset:#x}, {8 * count} bytes, runs past the "
                         f"end of the {image.file_size}-byte file", structure="zonedmeta table",
                         offset=offset, clause="ZONE-20")
    geometry = (int(zoned.zone_size), int(zoned.zone_capacity),
                int(zoned.num_conventional_zones), int(image.header.virtual_size))
    listed = count if limit is None else min(limit, count)
    rows = persisted_zone_report(*geometry, plain_entries(image, offset, listed,
                                                          image.wp_byte_order))
    states = count_persisted_states(*geometry, table_batches(image, offset, count,
                                                             image.wp_byte_order))
    return {"config": config, "nr_zones": count, "states": states, "zones_listed": listed,
            "zones": rows}


def zone_rows(image: Image) -> StreamedZoneRows | None:
    """Every zone's row, streamed (`info --zones all`); describe_zones() checked the
    table lies in the file."""
    zoned = image.zoned
    if zoned is None:
        return None
    geometry = (int(zoned.zone_size), int(zoned.zone_capacity),
                int(zoned.num_conventional_zones), int(image.header.virtual_size))
    return StreamedZoneRows(image, geometry, int(zoned.ofs_zonedmeta), int(zoned.num_zones))


def describe(image: Image, zones: int | None = ZONES_LISTED_JSON) -> dict[str, Any]:
    """Everything info shows; an image whose header or table placement is broken is
    refused with the clause `check` names (qcow2harness.structure)."""
    require_sound(image)
    header = describe_header(image)
    return {
        "format": "qcow2",
        "path": image.path,
        "file_size": image.file_size,
        "compat": "0.10" if image.version == 2 else "1.1",
        "virtual_size": header["virtual_size"],
        "cluster_size": image.cluster_size,
        "refcount_bits": 1 << image.refcount_order,
        "compression_type": header["compression_type"] or "deflate",
        "header": header,
        "features": describe_features(image),
        "extensions": describe_extensions(image),
        "backing_file": image.backing_file_name,
        "backing_format": image.string_extension(ExtensionType.backing_file_format),
        "data_file": image.string_extension(ExtensionType.external_data_file),
        "snapshots": describe_snapshots(image),
        "bitmaps": describe_bitmaps(image),
        "clusters": describe_clusters(image),
        "zoned": describe_zones(image, zones),
    }


# -- text rendering ----------------------------------------------------------

def render_lines(info: dict[str, Any]) -> Iterator[str]:
    """The text report line by line (a zone list from zone_rows() is streamed)."""
    out: list[str] = []
    add = out.append
    add(f"image: {info['path']}")
    add(f"file format: qcow2 (compat {info['compat']})")
    add(f"virtual size: {info['virtual_size']} bytes")
    add(f"file size: {info['file_size']} bytes")
    add(f"cluster size: {info['cluster_size']}")
    add(f"refcount bits: {info['refcount_bits']}")
    add(f"compression type: {info['compression_type']}")
    for key in ("backing_file", "backing_format", "data_file"):
        if info[key] is not None:
            add(f"{key.replace('_', ' ')}: {info[key]}")
    features = info["features"]
    for kind in ("incompatible", "compatible", "autoclear"):
        names = features[kind] + [f"bit{b}" for b in features[f"unknown_{kind}_bits"]]
        add(f"{kind} features: {', '.join(names) if names else '-'}")
    add("header:")
    for name, value in info["header"].items():
        add(f"    {name:<28} {value:#x}" if isinstance(value, int) and name.startswith("ofs_")
            else f"    {name:<28} {value}")
    add(f"header extensions: {len(info['extensions'])}")
    for ext in info["extensions"]:
        add(f"    {ext['magic']} {ext['name']:<22} length {ext['length']} at {ext['offset']:#x}")
        decoded = ext["decoded"]
        if isinstance(decoded, dict) and ext["name"] not in ("zoned", "feature_name_table"):
            for key, value in decoded.items():
                add(f"        {key}: {value}")
    clusters = info["clusters"]
    add("clusters: " + ", ".join(f"{k} {v}" for k, v in clusters.items() if k != "cluster_size"))
    if info["snapshots"]:
        add(f"snapshots: {len(info['snapshots'])}")
        for snap in info["snapshots"]:
            add(f"    id {snap['id']} name {snap['name']!r} vm state {snap['vm_state_size']}"
                f" L1 {snap['num_l1_entries']} at {snap['ofs_l1_table']:#x}")
    if info["bitmaps"]:
        add(f"bitmaps: {len(info['bitmaps'])}")
        for bitmap in info["bitmaps"]:
            add(f"    {bitmap['name']} granularity {bitmap['granularity']}"
                f" flags {','.join(bitmap['flags']) or '-'}")
    zoned = info["zoned"]
    if zoned is not None:
        add("zoned:")
        for key, value in zoned["config"].items():
            add(f"    {key:<24} {value}")
    yield from out
    if zoned is not None:
        yield from _render_zones(zoned)


def _render_zones(zoned: dict[str, Any]) -> Iterator[str]:
    zones = zoned["zones"]
    yield f"zone report ({zoned['nr_zones']} zones):"
    if zoned["nr_zones"] > len(zones):
        yield ("    by state: " + ", ".join(f"{state} {count}"
                                          for state, count in zoned["states"].items()))
    yield f"    {'zone':>6} {'start':>14} {'capacity':>12} {'type':<12} {'state':<18} wp"
    for zone in zones:
        yield (f"    {zone['index']:>6} {zone['start']:>#14x} {zone['capacity']:>12}"
               f" {zone['type']:<12} {zone['state']:<18} {zone['wp']:#x}")
    if zoned["nr_zones"] > len(zones):
        yield (f"    ... {zoned['nr_zones'] - len(zones)} more (--zones N or --zones all "
               "to list them)")


def render(info: dict[str, Any]) -> str:
    return "\n".join(render_lines(info))
