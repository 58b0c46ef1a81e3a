"""A zone-geometry mutator (`qcow2-harness fuzz check --mutator zoned`): each mutant of a
zoned image gets a new, mostly coherent zone geometry: zone size, capacity, zone count,
conventional zones, limits, the write-pointer table's offset and size, and a table
rewritten to match (grown up to libFuzzer's max_len), with a few entries broken. Zone
counts run from 1 to 2^32 - 1, so that a campaign on `check` meets tables of every
length the format allows and the checker's batch edges (reference.zones.ZONE_BATCH).

Inputs without a zoned extension get the structured mutator (fuzz/mutator.py).
"""

from __future__ import annotations

import random

from qcow2harness.fuzz.field_positions import zoned_field_positions
from qcow2harness.fuzz.mutator import (
    Layout,
    ZonedLayout,
    cached_layout,
    mutate,
    zoned_mutate,
)
from qcow2harness.reference.zones import CONVENTIONAL_FLAG, MAX_NR_ZONES, ZONE_BATCH

VIRTUAL_SIZE_OFFSET, L1_SIZE_OFFSET = 24, 36  # header fields (ksy/qcow2.ksy)
U32, U64 = (1 << 32) - 1, (1 << 64) - 1
GEOMETRY_PROBABILITY = 0.75  # else one crafted field or entry change (zoned_mutate)
BROKEN_ENTRY_PROBABILITY = 0.3  # a rewritten table gets a few broken entries


def _put(buf: bytearray, at: int, width: int, value: int) -> None:
    if 0 <= at and at + width <= len(buf):
        buf[at:at + width] = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big")


def _field(buf: bytearray, zoned: ZonedLayout, name: str, value: int) -> None:
    offset, width = zoned_field_positions()[name]
    _put(buf, zoned.body + offset, width, value)


def _zone_count(rng: random.Random, room: int) -> int:
    """Mostly a count whose table fits the input; else anything up to U32."""
    pick = rng.random()
    if pick < 0.6 and room > 0:
        return rng.randint(1, room)
    if pick < 0.75:
        edge = rng.choice([ZONE_BATCH - 1, ZONE_BATCH, ZONE_BATCH + 1, 2 * ZONE_BATCH])
        return min(edge, room) if rng.random() < 0.5 and room > 0 else edge
    return rng.choice([1 << rng.randint(12, 31), MAX_NR_ZONES, MAX_NR_ZONES + 1, U32,
                       rng.randint(1, U32)])


def _zone_size(rng: random.Random, cluster_size: int) -> int:
    if rng.random() < 0.85:
        return 1 << rng.choice([9, 12, 16, 20, cluster_size.bit_length() - 1,
                                rng.randint(9, 40)])
    return rng.choice([0, 1, 511, 1536, 3 << 20, 1 << 63, U64])


def _capacity(rng: random.Random, zone_size: int) -> int:
    pick = rng.random()
    if pick < 0.5 or zone_size < 1024:
        return zone_size
    if pick < 0.9:
        return rng.randint(1, zone_size // 512) * 512
    return rng.choice([0, 1, zone_size + 512, U64])


def _entries(rng: random.Random, count: int, zone_size: int, capacity: int,
             conventional: int) -> bytes:
    """A table for the geometry: conventional zones flagged, sequential zones EMPTY,
    CLOSED or FULL, and now and then a few entries broken (numpy: tables run to max_len)."""
    import numpy as np

    draw = np.random.default_rng(rng.getrandbits(64))
    index = np.arange(count, dtype=np.uint64)
    starts = index * np.uint64(zone_size & U64)  # wraps like the u64 it stands for
    sectors = max(capacity // 512, 0)
    kind = draw.random(count)
    written = np.where(kind < 0.5, 0, np.where(kind < 0.7, capacity & U64, draw.integers(
        0, sectors + 1, count, dtype=np.uint64) * np.uint64(512))).astype(np.uint64)
    table = starts + written
    flagged = index < np.uint64(min(conventional, U64))
    table[flagged] = starts[flagged] | np.uint64(CONVENTIONAL_FLAG)
    if count and rng.random() < BROKEN_ENTRY_PROBABILITY:
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(count)
            entry = int(table[at])
            entry = rng.choice([entry + 1, entry + zone_size + 512, entry ^ CONVENTIONAL_FLAG,
                                entry | 1 << rng.randint(60, 63), 0, U64,
                                max(entry - 512, 0)])
            table[at] = entry & U64
    byte_order = "<u8" if count and rng.random() < 0.05 else ">u8"  # the series' (WP-2)
    return table.astype(byte_order).tobytes()


def regeometry(buf: bytearray, layout: Layout, max_size: int, rng: random.Random) -> bytearray:
    """Give the image a new zone geometry, and a table to match where it fits."""
    zoned = layout.zoned
    assert zoned is not None
    cluster = layout.cluster_size
    table_at = zoned.table
    if rng.random() < 0.15:  # move the table: cluster-aligned past the end, or anywhere
        table_at = rng.choice([len(buf) + (-len(buf)) % cluster, table_at + 8, 0,
                               rng.randrange(max(len(buf), 1))])
    room = max((max_size - table_at) // 8, 0)
    count = _zone_count(rng, room)
    zone_size = _zone_size(rng, cluster)
    capacity = _capacity(rng, zone_size)
    conventional = rng.choice([0, 0, 1, min(count - 1, rng.randint(0, 8)), count, count + 1])
    short_tail = rng.randint(0, max(zone_size // 512 - 1, 0)) * 512 if rng.random() < 0.2 else 0
    virtual_size = max(count * zone_size - short_tail, 0)
    if rng.random() < 0.1:
        virtual_size = rng.choice([0, U64, virtual_size + 512, 1 << 63])
    sequential = max(count - conventional, 0)
    limit = rng.choice([0, 0, 1, sequential, sequential + 1, rng.randint(0, max(sequential, 1))])
    _put(buf, VIRTUAL_SIZE_OFFSET, 8, virtual_size)
    l2_span = cluster * (cluster // 8)
    l1_needed = -(-virtual_size // l2_span)
    if l1_needed * 8 <= cluster or rng.random() < 0.1:
        _put(buf, L1_SIZE_OFFSET, 4, min(l1_needed, U32))
    table_size = 8 * count if rng.random() < 0.9 else rng.choice([0, 8 * count + 8, U64])
    for name, value in (("zone_size", zone_size), ("zone_capacity", capacity),
                        ("num_conventional_zones", conventional), ("num_zones", count),
                        ("max_open_zones", limit), ("max_active_zones",
                                                    rng.choice([0, limit, limit + 1])),
                        ("max_append_bytes", rng.choice([0, 512, max(capacity - 512, 0)])),
                        ("len_zonedmeta", table_size), ("ofs_zonedmeta", table_at)):
        _field(buf, zoned, name, value)
    if count <= room and rng.random() < 0.9:
        end = table_at + 8 * count
        if end > len(buf):
            buf.extend(bytes(end - len(buf)))
        buf[table_at:end] = _entries(rng, count, zone_size, capacity, conventional)
    return buf


def geometry_mutate(data: bytes, max_size: int, seed: int) -> bytes:
    """The custom mutator for `--mutator zoned`; deterministic in its args."""
    rng = random.Random(seed)
    try:
        layout = cached_layout(data)
        if layout is None or layout.zoned is None:
            return mutate(data, max_size, seed)
        buf = bytearray(data)
        if rng.random() < GEOMETRY_PROBABILITY:
            buf = regeometry(buf, layout, max_size, rng)
        else:
            zoned_mutate(buf, layout, rng)
        return bytes(buf[:max_size])
    except Exception:  # noqa: BLE001 - a mutator must always return bytes
        return mutate(data, max_size, seed)


__all__ = ["geometry_mutate", "regeometry"]
