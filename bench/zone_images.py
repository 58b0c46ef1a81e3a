"""Zoned images of any zone count, for the zone-scaling bench and tests/hostile.

The reference writer (reference/writer.py) keeps a model object per zone, so it cannot
make an image of millions of zones in bounded time; this builder lays the same file
out with the writer's own header and extension structs (HEADER, ZONED_EXT) and writes
the write-pointer table in numpy chunks, or leaves it a hole (sparse, costing no disk).

Layout, cluster by cluster: header and extensions, L1 table (all zero: no data), refcount
table, refcount blocks, write-pointer table.
"""

from __future__ import annotations

import os
import struct

import numpy as np
from qcow2harness.reference.writer import (
    HEADER,
    HEADER_LENGTH,
    INCOMPAT_ZONED,
    QCOW_MAGIC,
    REFCOUNT_ORDER,
    ZONED_EXT,
    ZONED_EXT_MAGIC,
)
from qcow2harness.reference.zones import CONVENTIONAL_FLAG

CHUNK = 1 << 20  # table entries written per pwrite
L1_CAP = 1 << 20


def _clusters(length: int, cluster_size: int) -> int:
    return -(-length // cluster_size)


def build_zoned_image(path: str, nr_zones: int, *, zone_size: int = 1 << 16,
                      cluster_size: int = 1 << 16, conventional_zones: int = 0,
                      table: str = "empty", nr_zones_field: int | None = None,
                      virtual_size: int | None = None) -> str:
    """Write a zoned image of `nr_zones` zones of `zone_size` bytes at `path`.

    table: "empty" (every sequential zone EMPTY: wp = its start; conventional zones
    flagged), "hole" (never written: reads as zeros, so every zone but zone 0 has its wp
    outside it, WP-6) or "none" (the file ends before the table: ZONE-20).
    nr_zones_field and virtual_size override the header (a hostile geometry); the table
    still holds nr_zones entries.
    """
    size = nr_zones * zone_size if virtual_size is None else virtual_size
    l2_span = cluster_size * (cluster_size // 8)
    # A hostile virtual size may need more L1 entries than a u32 holds: then the header
    # keeps at most L1_CAP of them (HDR-16 says so).
    l1_size = min(-(-size // l2_span), L1_CAP)
    l1_clusters = max(_clusters(8 * l1_size, cluster_size), 1)
    table_clusters = _clusters(8 * nr_zones, cluster_size)
    per_refblock = cluster_size * 8 // (1 << REFCOUNT_ORDER)
    refblocks, reftable_clusters = 1, 1
    for _ in range(4):
        total = 1 + l1_clusters + reftable_clusters + refblocks + table_clusters
        refblocks = -(-total // per_refblock)
        reftable_clusters = _clusters(8 * refblocks, cluster_size)
    l1_offset = cluster_size
    reftable_offset = l1_offset + l1_clusters * cluster_size
    refblocks_offset = reftable_offset + reftable_clusters * cluster_size
    table_offset = refblocks_offset + refblocks * cluster_size
    total = table_offset // cluster_size + table_clusters
    header = HEADER.pack(QCOW_MAGIC, 3, 0, 0, cluster_size.bit_length() - 1, size, 0,
                         l1_size, l1_offset, reftable_offset, reftable_clusters, 0, 0,
                         INCOMPAT_ZONED, 0, 0, REFCOUNT_ORDER, HEADER_LENGTH)
    count_field = nr_zones if nr_zones_field is None else nr_zones_field
    body = ZONED_EXT.pack(1, zone_size, zone_size, conventional_zones, count_field & 0xFFFFFFFF,
                          0, 0, 0, 8 * count_field, table_offset)
    extensions = struct.pack(">II", ZONED_EXT_MAGIC, len(body)) + body + bytes(8)
    reftable = np.zeros(reftable_clusters * cluster_size // 8, dtype=">u8")
    reftable[:refblocks] = refblocks_offset + cluster_size * np.arange(refblocks, dtype=np.uint64)
    counts = np.zeros(refblocks * per_refblock, dtype=">u2")
    counts[:total] = 1
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.pwrite(fd, (header + extensions).ljust(cluster_size, b"\0"), 0)
        os.pwrite(fd, reftable.tobytes(), reftable_offset)
        os.pwrite(fd, counts.tobytes(), refblocks_offset)
        if table == "none":
            os.ftruncate(fd, table_offset)
            return path
        os.ftruncate(fd, total * cluster_size)  # the L1 table and a hole table read as 0
        if table == "empty":
            for first in range(0, nr_zones, CHUNK):
                index = np.arange(first, min(first + CHUNK, nr_zones), dtype=np.uint64)
                entries = index * np.uint64(zone_size)
                entries[index < conventional_zones] |= np.uint64(CONVENTIONAL_FLAG)
                os.pwrite(fd, entries.astype(">u8").tobytes(), table_offset + 8 * first)
        elif table != "hole":
            raise ValueError(f"table must be empty, hole or none, not {table!r}")
    finally:
        os.close(fd)
    return path
