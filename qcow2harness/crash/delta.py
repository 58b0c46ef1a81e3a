"""Which guest ranges a crash state can read differently from its epoch's prefix.

Every state of epoch k is the prefix state (k, {}) plus some of the epoch's writes, so
it differs from the prefix only in the host bytes those writes cover, which the log
tells exactly. A guest cluster reads through the header, its L1 entry, its L2 entry
and its data (a compressed cluster's byte range); refcounts, snapshots and bitmaps do
not take part in a read. So when the prefix was read through QEMU in full and found
right, a later state of the same epoch needs QEMU to read only the guest ranges whose
L2 table or data lies in a changed host range; the rest reads as it did in the prefix.

Any change to the header cluster or the L1 table, an external data file, or anything
this map cannot parse means "read everything". The map is built once per epoch from
the prefix file, with plain struct/numpy reads of the standard layout.
"""

from __future__ import annotations

import bisect
import os
import struct
from collections.abc import Sequence

import numpy as np

from qcow2harness.image import COMPRESSED, OFFSET_MASK

EXTENDED_L2 = 1 << 4
EXTERNAL_DATA = 1 << 2


class HostMap:
    """Host byte ranges -> the guest ranges that read through them (prefix state)."""

    def __init__(self, path: str) -> None:
        self.whole = False  # True: cannot tell, read everything
        self._starts: list[int] = []
        self._items: list[tuple[int, int, int, int]] = []  # host lo, hi, guest lo, hi
        self._fixed: list[tuple[int, int]] = []  # header cluster, L1 table
        with open(path, "rb") as stream:
            try:
                self._build(stream.fileno(), os.fstat(stream.fileno()).st_size)
            except (struct.error, ValueError, OverflowError):
                self.whole = True

    def _build(self, fd: int, file_size: int) -> None:
        head = os.pread(fd, 104, 0)
        (magic, version, _, _, cluster_bits, size, _, l1_size, l1_offset) = struct.unpack_from(
            ">IIQIIQIIQ", head)
        incompat = struct.unpack_from(">Q", head, 72)[0] if version >= 3 else 0
        if magic != 0x514649FB or not 9 <= cluster_bits <= 21 or incompat & EXTERNAL_DATA:
            self.whole = True
            return
        cluster = 1 << cluster_bits
        extended = bool(incompat & EXTENDED_L2)
        entry_bytes = 16 if extended else 8
        per_l2 = cluster // entry_bytes
        self._fixed = [(0, cluster), (l1_offset, l1_offset + 8 * l1_size)]
        if l1_size * 8 > file_size:
            self.whole = True
            return
        l1 = np.frombuffer(os.pread(fd, 8 * l1_size, l1_offset), dtype=">u8")
        items: list[tuple[int, int, int, int]] = []
        x = 62 - (cluster_bits - 8)
        for index in np.nonzero(l1 & np.uint64(OFFSET_MASK))[0]:
            l2_offset = int(l1[index]) & OFFSET_MASK
            guest = int(index) * per_l2 * cluster
            items.append((l2_offset, l2_offset + cluster, guest,
                          min(size, guest + per_l2 * cluster)))
            raw = os.pread(fd, cluster, l2_offset)
            if len(raw) < cluster:
                raw = raw.ljust(cluster, b"\0")
            table = np.frombuffer(raw, dtype=">u8")[::2 if extended else 1]
            for slot in np.nonzero(table & np.uint64(OFFSET_MASK | COMPRESSED))[0]:
                entry = int(table[slot])
                start = guest + int(slot) * cluster
                if entry & COMPRESSED:
                    host = entry & ((1 << x) - 1)
                    sectors = ((entry >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1
                    end = (host & ~511) + sectors * 512
                else:
                    host = entry & OFFSET_MASK
                    end = host + cluster
                items.append((host, end, start, start + cluster))
        items.sort()
        self._items = items
        self._starts = [item[0] for item in items]
        self._longest = max((hi - lo for lo, hi, _, _ in items), default=0)

    def affected(self, changed: Sequence[tuple[int, int]]) -> list[tuple[int, int]] | None:
        """Guest ranges that may read differently after `changed` host ranges (offset,
        length) are rewritten; None when that cannot be bounded (read everything)."""
        if self.whole:
            return None
        out: list[tuple[int, int]] = []
        for offset, length in changed:
            end = offset + length
            for lo, hi in self._fixed:
                if lo < end and offset < hi:
                    return None
            first = bisect.bisect_left(self._starts, offset - self._longest)
            for index in range(first, len(self._items)):
                host_lo, host_hi, guest_lo, guest_hi = self._items[index]
                if host_lo >= end:
                    break
                if host_hi > offset:
                    out.append((guest_lo, guest_hi))
        return _merge(out)


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


__all__ = ["HostMap"]
