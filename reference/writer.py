"""A small pure-Python qcow2 v3 writer, zoned or not: the reference the harness trusts.

Layout it creates (one cluster each unless noted):

    header + extensions | L1 table (n) | refcount table (n) | refcount block 0 |
    zonedmeta (n, zoned only) | then L2 tables, data clusters and further refcount
    blocks, appended as they are needed.

Clusters are never freed: a zone reset marks its whole clusters "reads as zeros"
(the L2 zero flag) and writes zeros over partial ones, so refcounts only grow.

Every operation is checked by the zone model first; an accepted one reaches the
file in the order PERS-1, PERS-2 and PERS-8 prescribe, with a barrier (file flush) between stages:

    data -> refcount blocks -> refcount table -> L2 -> L1 -> write pointer

A guest flush fsyncs the file (PERS-3). With `log=` every file write, barrier and
flush is recorded in the dm-log-writes format, plus one MARK per acknowledged op
("<n> <op> ok|<refusal>"), so a crash engine can replay any prefix.

Mutants are one-flag deviations the harness must catch (see Mutant).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from qcow2harness.dmlog import LogWriter
from qcow2harness.errors import ModelError, WriterError

from .zones import (
    CONVENTIONAL_FLAG,
    CloseAtStart,
    OpResult,
    Refusal,
    VictimPolicy,
    ZoneConfig,
    ZoneModel,
    ZoneType,
)

QCOW_MAGIC = 0x514649FB
HEADER = struct.Struct(">IIQIIQIIQQIIQQQQII")  # the 104-byte v3 header
HEADER_LENGTH = 104
ZONED_EXT_MAGIC = 0x007A6264  # ZONE-1
ZONED_EXT = struct.Struct(">B3xQQIIIIIQQ")  # 56 bytes, v10 layout
INCOMPAT_ZONED = 1 << 5  # ZONE-1
REFCOUNT_ORDER = 4  # 16-bit refcounts
L1_COPIED = 1 << 63
L2_COPIED = 1 << 63
L2_ZERO = 1
OFFSET_MASK = 0x00FFFFFFFFFFFE00
LOG_SECTOR = 512


class Mutant(StrEnum):
    """One-flag deviations from the correct writer, each mirroring a real-world bug."""

    # The posted v9 code updates the wp before the data: a crash leaves a wp over garbage.
    WP_BEFORE_DATA = "wp-before-data"
    # A flush acknowledged without flushing the file (a lost bdrv_flush / fsync).
    NO_FLUSH_BEFORE_ACK = "no-flush-before-ack"
    # L2 points at a new cluster before its data is written: a crash exposes stale host bytes.
    L2_BEFORE_DATA = "l2-before-data"
    # A cluster is referenced before its refcount is stored: a crash leaves a used cluster free.
    REFCOUNT_AFTER_L2 = "refcount-after-l2"
    # The wp lives only in memory and the table is never written: reopen loses every write.
    SKIP_WP_UPDATE = "skip-wp-update"
    # v9 reset writes wp = start before zeroing: a crash shows an EMPTY zone full of old data.
    RESET_WP_BEFORE_ZERO = "reset-wp-before-zero"
    # After reopen closed zones are not counted active, so the active limit is overrun.
    REOPEN_FORGETS_CLOSED = "reopen-forgets-closed"
    # The write path checks only the open limit, letting a write open one zone too many.
    WRITE_SKIPS_ACTIVE_LIMIT = "write-skips-active-limit"
    # The zonedmeta clusters are left at refcount 0: a leak that lets allocation overwrite them.
    ZONEDMETA_UNREFCOUNTED = "zonedmeta-unrefcounted"


@dataclass
class _Stages:
    """File writes of one operation, grouped by persistence stage (PERS-1, PERS-2)."""

    data: list[tuple[int, bytes]]
    refblock: list[tuple[int, bytes]]
    reftable: list[tuple[int, bytes]]
    l2: list[tuple[int, bytes]]
    l1: list[tuple[int, bytes]]
    wp: list[tuple[int, bytes]]

    @classmethod
    def empty(cls) -> _Stages:
        return cls([], [], [], [], [], [])


class _WriterZones(ZoneModel):
    """The writer's own zone state: the reference model, with the zone-logic mutants."""

    def __init__(
        self,
        config: ZoneConfig,
        policy: VictimPolicy | str,
        close_at_start: CloseAtStart | str,
        mutants: frozenset[Mutant],
    ) -> None:
        super().__init__(config, policy, close_at_start)
        self.forget_closed = Mutant.REOPEN_FORGETS_CLOSED in mutants
        if Mutant.WRITE_SKIPS_ACTIVE_LIMIT in mutants:
            self._write_active_limit = 0

    def restore(self, wps: Sequence[int]) -> None:
        super().restore(wps)
        if self.forget_closed:
            self._n_active = self._n_open


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class ReferenceWriter:
    """Writes one qcow2 image file. Build it with `create()` or `open()`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        policy: VictimPolicy | str = VictimPolicy.LRU,
        close_at_start: CloseAtStart | str = CloseAtStart.EMPTY,
        log: str | os.PathLike[str] | None = None,
        mutants: Iterable[Mutant | str] = (),
        fsync: bool = True,
    ) -> None:
        """Settings only; `create()` and `open()` make a usable writer."""
        try:
            self.mutants = frozenset(Mutant(m) for m in mutants)
        except ValueError as error:
            raise ModelError(f"unknown mutant: {error}") from None
        self.path = os.fspath(path)
        self.policy = VictimPolicy(policy)
        self.close_at_start = CloseAtStart(close_at_start)
        self._fsync = fsync
        self._log = LogWriter(log, LOG_SECTOR) if log is not None else None
        self._ops = 0
        self._fd = -1
        self.zones: _WriterZones | None = None
        self.config: ZoneConfig | None = None
        self._refcounts: list[int] = []
        self._refblocks: dict[int, int] = {}
        self._l2: dict[int, list[int]] = {}
        self._l2_offsets: dict[int, int] = {}
        self._l1_offset = 0
        self._reftable_offset = 0
        self._zonedmeta_offset = 0
        self._zonedmeta_clusters = 0

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        size: int,
        *,
        cluster_size: int = 65536,
        zoned: ZoneConfig | None = None,
        policy: VictimPolicy | str = VictimPolicy.LRU,
        close_at_start: CloseAtStart | str = CloseAtStart.EMPTY,
        log: str | os.PathLike[str] | None = None,
        mutants: Iterable[Mutant | str] = (),
        fsync: bool = True,
    ) -> ReferenceWriter:
        """Create a new image of `size` guest bytes; zoned when `zoned` is given."""
        if cluster_size < 512 or cluster_size > 1 << 21 or cluster_size & (cluster_size - 1):
            raise ModelError(
                f"cluster_size must be a power of two in [512, 2 MiB], not {cluster_size}"
            )
        if size <= 0 or size % 512:
            raise ModelError(f"size must be a positive multiple of 512, not {size}")
        if zoned is not None and zoned.size != size:
            raise ModelError(f"zoned.size ({zoned.size}) differs from size ({size})")
        self = cls(
            path, policy=policy, close_at_start=close_at_start, log=log, mutants=mutants,
            fsync=fsync,
        )
        self._geometry(size, cluster_size)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.config = zoned
        self._claim(1)  # cluster 0: header and extensions
        self._l1_offset = self._claim(self._l1_clusters)
        self._reftable_offset = self._claim(self._reftable_clusters)
        if zoned is not None:
            self._zonedmeta_clusters = _round_up(8 * zoned.nr_zones, cluster_size) // cluster_size
            self._zonedmeta_offset = self._claim(self._zonedmeta_clusters)
            if Mutant.ZONEDMETA_UNREFCOUNTED in self.mutants:
                first = self._zonedmeta_offset // cluster_size
                for index in range(first, first + self._zonedmeta_clusters):
                    self._refcounts[index] = 0
            self.zones = _WriterZones(zoned, policy, close_at_start, self.mutants)
        self._write_initial_metadata()
        return self

    def _geometry(self, size: int, cluster_size: int) -> None:
        self.size = size
        self.cluster_size = cluster_size
        self.cluster_bits = cluster_size.bit_length() - 1
        self._l2_entries = cluster_size // 8
        self._l1_size = -(-size // (cluster_size * self._l2_entries))
        self._l1_clusters = _round_up(self._l1_size * 8, cluster_size) // cluster_size
        self._refblock_entries = cluster_size * 8 // (1 << REFCOUNT_ORDER)
        # Size the refcount table for the largest file this image can become.
        data_clusters = -(-size // cluster_size)
        zonedmeta = size // 64 // cluster_size + 1  # 8 bytes per zone, zones >= 512 bytes
        fixed = 1 + self._l1_clusters + self._l1_size + data_clusters + zonedmeta
        table = 1
        for _ in range(4):
            refblocks = -(-(fixed + table) // self._refblock_entries) + 1
            table = _round_up(refblocks * 8, cluster_size) // cluster_size
        self._reftable_clusters = table

    def _claim(self, count: int) -> int:
        """Take `count` clusters at the end of the file (refcount 1); their offset."""
        first = len(self._refcounts)
        self._refcounts.extend([1] * count)
        return first * self.cluster_size

    def _write_initial_metadata(self) -> None:
        """Header, zeroed tables, refcounts and wp table, then one barrier."""
        zoned = self.config
        self._ensure_refblocks()
        incompat = INCOMPAT_ZONED if zoned is not None else 0
        header = HEADER.pack(
            QCOW_MAGIC, 3, 0, 0, self.cluster_bits, self.size, 0, self._l1_size,
            self._l1_offset, self._reftable_offset, self._reftable_clusters, 0, 0,
            incompat, 0, 0, REFCOUNT_ORDER, HEADER_LENGTH,
        )
        extensions = b""
        if zoned is not None:
            body = ZONED_EXT.pack(
                1, zoned.zone_size, zoned.zone_capacity, zoned.conventional_zones,
                zoned.nr_zones, zoned.max_active_zones, zoned.max_open_zones,
                zoned.max_append_bytes, 8 * zoned.nr_zones, self._zonedmeta_offset,
            )
            extensions += struct.pack(">II", ZONED_EXT_MAGIC, len(body)) + body
        extensions += struct.pack(">II", 0, 0)
        writes = [(0, (header + extensions).ljust(self.cluster_size, b"\0"))]
        writes.append((self._l1_offset, bytes(self._l1_clusters * self.cluster_size)))
        writes.append((self._reftable_offset, self._reftable_bytes()))
        if zoned is not None and self.zones is not None:
            table = b"".join(struct.pack(">Q", self._wp_entry(i)) for i in range(zoned.nr_zones))
            table = table.ljust(self._zonedmeta_clusters * self.cluster_size, b"\0")
            writes.append((self._zonedmeta_offset, table))
        for index in sorted(self._refblocks):
            writes.append((self._refblocks[index], self._refblock_bytes(index)))
        for offset, data in writes:
            self._pwrite(offset, data)
        self._barrier()
        self._mark("create ok")

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        policy: VictimPolicy | str = VictimPolicy.LRU,
        close_at_start: CloseAtStart | str = CloseAtStart.EMPTY,
        log: str | os.PathLike[str] | None = None,
        mutants: Iterable[Mutant | str] = (),
        fsync: bool = True,
    ) -> ReferenceWriter:
        """Open an image this writer made (or any simple qcow2 v3 without snapshots)."""
        self = cls(
            path, policy=policy, close_at_start=close_at_start, log=log, mutants=mutants,
            fsync=fsync,
        )
        self._fd = os.open(self.path, os.O_RDWR)
        self._load()
        return self

    def _load(self) -> None:
        """Parse header, extensions, tables and wps from the file (used by reopen)."""
        raw = os.pread(self._fd, 4096, 0)
        if len(raw) < HEADER.size:
            raise WriterError("file too short for a qcow2 header", offset=0)
        fields = HEADER.unpack_from(raw)
        (magic, version, _, _, cluster_bits, size, _, l1_size, l1_offset, reftable_offset,
         reftable_clusters, snapshots, _, incompat, _, _, refcount_order, header_length) = fields
        if magic != QCOW_MAGIC or version != 3 or refcount_order != REFCOUNT_ORDER:
            raise WriterError("not a qcow2 v3 image with 16-bit refcounts", offset=0)
        if snapshots:
            raise WriterError("images with snapshots are not supported", offset=60)
        self._geometry(size, 1 << cluster_bits)
        self._l1_size = l1_size
        self._l1_offset = l1_offset
        self._reftable_offset = reftable_offset
        self._reftable_clusters = reftable_clusters
        self.config = None
        self._zonedmeta_offset = 0
        self._zonedmeta_clusters = 0
        position = header_length
        while position + 8 <= len(raw):
            ext_magic, length = struct.unpack_from(">II", raw, position)
            if ext_magic == 0:
                break
            body = raw[position + 8 : position + 8 + length]
            if ext_magic == ZONED_EXT_MAGIC and len(body) >= ZONED_EXT.size:
                self._load_zoned(body, size)
            position += 8 + _round_up(length, 8)
        if bool(incompat & INCOMPAT_ZONED) != (self.config is not None):
            raise WriterError(
                "incompatible bit 5 and the zoned extension disagree", clause="ZONE-1"
            )
        clusters = -(-os.fstat(self._fd).st_size // self.cluster_size)
        self._refcounts = [0] * clusters
        self._refblocks = {}
        table = os.pread(self._fd, reftable_clusters * self.cluster_size, reftable_offset)
        for index in range(len(table) // 8):
            (block_offset,) = struct.unpack_from(">Q", table, index * 8)
            if not block_offset:
                continue
            self._refblocks[index] = block_offset
            block = os.pread(self._fd, self.cluster_size, block_offset)
            first = index * self._refblock_entries
            for entry in range(min(self._refblock_entries, clusters - first)):
                (self._refcounts[first + entry],) = struct.unpack_from(">H", block, entry * 2)
        self._l2 = {}
        self._l2_offsets = {}
        l1 = os.pread(self._fd, l1_size * 8, l1_offset)
        for index in range(l1_size):
            (entry,) = struct.unpack_from(">Q", l1, index * 8)
            if entry & OFFSET_MASK:
                offset = entry & OFFSET_MASK
                raw_l2 = os.pread(self._fd, self.cluster_size, offset)
                self._l2_offsets[index] = offset
                self._l2[index] = list(struct.unpack(f">{self._l2_entries}Q", raw_l2))
        if self.config is not None:
            self.zones = _WriterZones(self.config, self.policy, self.close_at_start, self.mutants)
            self.zones.restore(self.wps_on_disk())

    def _load_zoned(self, body: bytes, size: int) -> None:
        (zoned, zone_size, zone_capacity, conventional, nr_zones, max_active, max_open,
         max_append, meta_size, meta_offset) = ZONED_EXT.unpack_from(body)
        if zoned != 1:
            return
        self.config = ZoneConfig(
            size=size, zone_size=zone_size, zone_capacity=zone_capacity,
            conventional_zones=conventional, max_open_zones=max_open,
            max_active_zones=max_active, max_append_bytes=max_append,
        )
        if nr_zones != self.config.nr_zones or meta_size != 8 * nr_zones:
            raise WriterError(
                "zoned extension: nr_zones or zonedmeta_size is wrong", clause="ZONE-18"
            )
        self._zonedmeta_offset = meta_offset
        self._zonedmeta_clusters = _round_up(meta_size, self.cluster_size) // self.cluster_size

    # ----- guest operations -----

    @property
    def zoned(self) -> bool:
        return self.zones is not None

    def write(self, offset: int, data: bytes) -> OpResult:
        """A guest write; refused (nothing reaches the file) when the zone model says so."""
        if not data:
            raise ModelError("write data must not be empty")
        if self.zones is not None:
            before = self.zones.wps()
            result = self.zones.write(offset, len(data))
        else:
            before = []
            inside = 0 <= offset and offset + len(data) <= self.size
            result = OpResult() if inside else OpResult(error=Refusal.OUT_OF_RANGE)
        if result.ok:
            stages = _Stages.empty()
            self._stage_data(stages, offset, data)
            self._stage_wps(stages, before)
            self._commit(stages, wp_first=Mutant.WP_BEFORE_DATA in self.mutants)
        return self._ack("write", result)

    def append(self, zone: int, data: bytes) -> OpResult:
        zones = self._zoned_only()
        if not data:
            raise ModelError("append data must not be empty")
        before = zones.wps()
        result = zones.append(zone, len(data))
        if result.ok and result.offset is not None:
            stages = _Stages.empty()
            self._stage_data(stages, result.offset, data)
            self._stage_wps(stages, before)
            self._commit(stages, wp_first=Mutant.WP_BEFORE_DATA in self.mutants)
        return self._ack("append", result)

    def open_zone(self, zone: int) -> OpResult:
        """Explicit open: memory only (open states are never persisted, WP-8)."""
        return self._ack("open", self._zoned_only().open(zone))

    def close_zone(self, zone: int) -> OpResult:
        return self._ack("close", self._zoned_only().close(zone))

    def finish_zone(self, zone: int) -> OpResult:
        zones = self._zoned_only()
        before = zones.wps()
        result = zones.finish(zone)
        if result.ok:
            stages = _Stages.empty()
            self._stage_wps(stages, before)
            self._commit(stages, wp_first=False)
        return self._ack("finish", result)

    def reset_zone(self, zone: int) -> OpResult:
        zones = self._zoned_only()
        before = zones.wps()
        result = zones.reset(zone)
        if result.ok:
            self._commit_reset(before, [zone])
        return self._ack("reset", result)

    def reset_all(self) -> OpResult:
        zones = self._zoned_only()
        before = zones.wps()
        result = zones.reset_all()
        after = zones.wps()
        changed = [i for i in range(len(before)) if before[i] != after[i]]
        self._commit_reset(before, changed)
        return self._ack("reset_all", result)

    def flush(self) -> OpResult:
        """Guest flush: everything acknowledged so far becomes durable (PERS-3)."""
        if Mutant.NO_FLUSH_BEFORE_ACK not in self.mutants:
            self._barrier()
        return self._ack("flush", OpResult())

    def reopen(self) -> OpResult:
        """Clean power cycle: flush, close, and parse the image again from disk (ZSM-17).

        One op, one MARK: the flush inside is not acknowledged as an op of its own.
        """
        if Mutant.NO_FLUSH_BEFORE_ACK not in self.mutants:
            self._barrier()
        os.close(self._fd)
        self._fd = os.open(self.path, os.O_RDWR)
        self._load()
        return self._ack("reopen", OpResult())

    def repair(self, *, forget_zonedmeta: bool = False) -> int:
        """Recount every cluster's references from the tables in memory and store each
        refcount that differs (RC-4, RC-5); returns how many it changed.

        forget_zonedmeta recounts as a repair that does not know the zoned extension
        would: the write-pointer table looks leaked and is freed (a tool mutant).
        """
        counts = [0] * len(self._refcounts)

        def count(offset: int, clusters: int = 1) -> None:
            first = offset // self.cluster_size
            for index in range(first, min(first + clusters, len(counts))):
                counts[index] += 1

        count(0)
        count(self._l1_offset, self._l1_clusters)
        count(self._reftable_offset, self._reftable_clusters)
        for block_offset in self._refblocks.values():
            count(block_offset)
        if self.config is not None and not forget_zonedmeta:
            count(self._zonedmeta_offset, self._zonedmeta_clusters)
        for l1_index, table in self._l2.items():
            count(self._l2_offsets[l1_index])
            for entry in table:
                if entry & OFFSET_MASK:
                    count(entry & OFFSET_MASK)
        changed = [i for i, (old, new) in enumerate(zip(self._refcounts, counts, strict=True))
                   if old != new]
        self._refcounts = counts
        for block in sorted({i // self._refblock_entries for i in changed}):
            if block in self._refblocks:
                self._pwrite(self._refblocks[block], self._refblock_bytes(block))
        if changed:
            self._barrier()
        return len(changed)

    def apply(self, op: Mapping[str, Any], fill: bytes = b"\x5a") -> OpResult:
        """Apply one op in the trace protocol's dict form; data ops write `fill` bytes.

        The writer's twin of PersistenceModel.apply, so both see the same op.
        """
        name = op["op"]
        if name == "write":
            return self.write(op["offset"], fill * op["length"])
        if name == "append":
            return self.append(op["zone"], fill * op["length"])
        if name in ("open", "close", "finish", "reset"):
            result: OpResult = getattr(self, f"{name}_zone")(op["zone"])
            return result
        if name in ("reset_all", "flush", "reopen"):
            result = getattr(self, name)()
            return result
        raise ModelError(f"the writer has no op {name!r}")

    def sync_log(self) -> None:
        """Make everything logged so far visible to a log reader (crash checks mid-run)."""
        if self._log is not None:
            self._log.sync()

    def close(self) -> None:
        """Flush (per the mutants), close the file and finalize the log."""
        if self._fd < 0:
            return
        if Mutant.NO_FLUSH_BEFORE_ACK not in self.mutants and self._fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        if self._log is not None:
            self._log.finalize()

    def __enter__(self) -> ReferenceWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- reading back -----

    def read(self, offset: int, length: int) -> bytes:
        """Guest bytes as the image holds them (unallocated and zero clusters read zeros)."""
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ModelError(f"read [{offset}, {offset + length}) is outside the disk")
        out = bytearray()
        position = offset
        end = offset + length
        while position < end:
            within = position % self.cluster_size
            chunk = min(end - position, self.cluster_size - within)
            entry = self._l2_entry(position // self.cluster_size)
            if entry & OFFSET_MASK and not entry & L2_ZERO:
                data = os.pread(self._fd, chunk, (entry & OFFSET_MASK) + within)
                out += data.ljust(chunk, b"\0")
            else:
                out += bytes(chunk)
            position += chunk
        return bytes(out)

    def wps_on_disk(self) -> list[int]:
        """The zonedmeta table as stored (big-endian, WP-1), conventional flag removed."""
        config = self._config_or_fail()
        raw = os.pread(self._fd, 8 * config.nr_zones, self._zonedmeta_offset)
        entries = struct.unpack(f">{config.nr_zones}Q", raw)
        return [entry & ~CONVENTIONAL_FLAG for entry in entries]

    @property
    def zonedmeta_offset(self) -> int:
        return self._zonedmeta_offset

    def region(self, host_offset: int) -> str:
        """What the file holds at `host_offset`: header, l1, reftable, refblock,
        zonedmeta, l2 or data (crash engines sort log entries with it)."""
        cluster = host_offset - host_offset % self.cluster_size
        if cluster == 0:
            return "header"
        if self._l1_offset <= host_offset < self._l1_offset + self._l1_clusters * self.cluster_size:
            return "l1"
        reftable_end = self._reftable_offset + self._reftable_clusters * self.cluster_size
        if self._reftable_offset <= host_offset < reftable_end:
            return "reftable"
        zonedmeta_end = self._zonedmeta_offset + self._zonedmeta_clusters * self.cluster_size
        if self._zonedmeta_clusters and self._zonedmeta_offset <= host_offset < zonedmeta_end:
            return "zonedmeta"
        if cluster in self._refblocks.values():
            return "refblock"
        if cluster in self._l2_offsets.values():
            return "l2"
        return "data"

    def refcount(self, host_offset: int) -> int:
        """The in-memory refcount of the cluster holding `host_offset`."""
        index = host_offset // self.cluster_size
        return self._refcounts[index] if index < len(self._refcounts) else 0

    # ----- staging -----

    def _stage_data(self, stages: _Stages, offset: int, data: bytes) -> None:
        """Plan the data writes and the L2/L1/refcount updates they need."""
        dirty_l2: dict[int, set[int]] = {}
        new_tables: set[int] = set()
        first_new = len(self._refcounts)
        position = 0
        while position < len(data):
            guest = offset + position
            within = guest % self.cluster_size
            chunk = data[position : position + self.cluster_size - within]
            guest_cluster = guest // self.cluster_size
            entry = self._l2_entry(guest_cluster)
            host = entry & OFFSET_MASK
            if host and not entry & L2_ZERO:
                stages.data.append((host + within, chunk))
            else:
                if not host:
                    host = self._claim(1)
                full = bytearray(self.cluster_size)
                full[within : within + len(chunk)] = chunk
                stages.data.append((host, bytes(full)))
                l1_index, l2_index = divmod(guest_cluster, self._l2_entries)
                if l1_index not in self._l2:
                    self._l2[l1_index] = [0] * self._l2_entries
                    self._l2_offsets[l1_index] = self._claim(1)
                    new_tables.add(l1_index)
                self._l2[l1_index][l2_index] = host | L2_COPIED
                dirty_l2.setdefault(l1_index, set()).add(l2_index)
            position += len(chunk)
        self._stage_refcounts(stages, first_new)
        self._stage_l2(stages, dirty_l2, new_tables)

    def _stage_refcounts(self, stages: _Stages, first_new: int) -> None:
        """Refcount writes for clusters claimed since index `first_new`."""
        if first_new == len(self._refcounts):
            return
        new_blocks = self._ensure_refblocks()
        for index in sorted(new_blocks):
            stages.refblock.append((self._refblocks[index], self._refblock_bytes(index)))
        sectors: set[tuple[int, int]] = set()
        for cluster in range(first_new, len(self._refcounts)):
            block = cluster // self._refblock_entries
            if block not in new_blocks:
                within = (cluster % self._refblock_entries) * 2
                sectors.add((block, within // LOG_SECTOR))
        for block, sector in sorted(sectors):
            raw = self._refblock_bytes(block)[sector * LOG_SECTOR : (sector + 1) * LOG_SECTOR]
            stages.refblock.append((self._refblocks[block] + sector * LOG_SECTOR, raw))
        table = self._reftable_bytes()
        for sector in sorted({(index * 8) // LOG_SECTOR for index in new_blocks}):
            raw = table[sector * LOG_SECTOR : (sector + 1) * LOG_SECTOR]
            stages.reftable.append((self._reftable_offset + sector * LOG_SECTOR, raw))

    def _stage_l2(self, stages: _Stages, dirty: dict[int, set[int]], new_tables: set[int]) -> None:
        for l1_index in sorted(dirty):
            table = struct.pack(f">{self._l2_entries}Q", *self._l2[l1_index])
            base = self._l2_offsets[l1_index]
            if l1_index in new_tables:
                stages.l2.append((base, table))
                continue
            for sector in sorted({(i * 8) // LOG_SECTOR for i in dirty[l1_index]}):
                raw = table[sector * LOG_SECTOR : (sector + 1) * LOG_SECTOR]
                stages.l2.append((base + sector * LOG_SECTOR, raw))
        for l1_index in sorted(new_tables):
            entry = struct.pack(">Q", self._l2_offsets[l1_index] | L1_COPIED)
            stages.l1.append((self._l1_offset + l1_index * 8, entry))

    def _stage_wps(self, stages: _Stages, before: Sequence[int]) -> None:
        """One 8-byte table write per zone whose wp moved (WP-1), unless a mutant skips it."""
        if self.zones is None or Mutant.SKIP_WP_UPDATE in self.mutants:
            return
        for zone, (old, new) in enumerate(zip(before, self.zones.wps(), strict=True)):
            if old != new:
                entry = struct.pack(">Q", self._wp_entry(zone))
                stages.wp.append((self._zonedmeta_offset + 8 * zone, entry))

    def _commit_reset(self, before: Sequence[int], zones_reset: Iterable[int]) -> None:
        """Zero the reset zones' data, then their wps (PERS-1, PERS-2), unless mutated."""
        stages = _Stages.empty()
        dirty: dict[int, set[int]] = {}
        for zone in zones_reset:
            info = self._zoned_only().zone(zone)
            end = info.start + info.length
            position = info.start
            while position < end:
                within = position % self.cluster_size
                chunk = min(end - position, self.cluster_size - within)
                guest_cluster = position // self.cluster_size
                entry = self._l2_entry(guest_cluster)
                host = entry & OFFSET_MASK
                if host and not entry & L2_ZERO:
                    if chunk == self.cluster_size:
                        l1_index, l2_index = divmod(guest_cluster, self._l2_entries)
                        self._l2[l1_index][l2_index] = host | L2_COPIED | L2_ZERO
                        dirty.setdefault(l1_index, set()).add(l2_index)
                    else:
                        stages.data.append((host + within, bytes(chunk)))
                position += chunk
        self._stage_l2(stages, dirty, set())
        self._stage_wps(stages, before)
        self._commit(stages, wp_first=Mutant.RESET_WP_BEFORE_ZERO in self.mutants)

    def _commit(self, stages: _Stages, *, wp_first: bool) -> None:
        """Write the stages in persistence order with a barrier between non-empty ones."""
        refcounts = [stages.refblock, stages.reftable]
        order = [stages.data, *refcounts, stages.l2, stages.l1]
        if Mutant.L2_BEFORE_DATA in self.mutants:
            order = [*refcounts, stages.l2, stages.l1, stages.data]
        if Mutant.REFCOUNT_AFTER_L2 in self.mutants:
            order = [stages.data, stages.l2, stages.l1, *refcounts]
        order = [stages.wp, *order] if wp_first else [*order, stages.wp]
        pending = False
        for stage in order:
            if not stage:
                continue
            if pending:
                self._barrier()
            for offset, data in stage:
                self._pwrite(offset, data)
            pending = True

    # ----- tables in memory -----

    def _l2_entry(self, guest_cluster: int) -> int:
        l1_index, l2_index = divmod(guest_cluster, self._l2_entries)
        table = self._l2.get(l1_index)
        return table[l2_index] if table is not None else 0

    def _ensure_refblocks(self) -> set[int]:
        """Claim refcount blocks until every cluster is covered; the new block indexes."""
        new: set[int] = set()
        while True:
            needed = (len(self._refcounts) - 1) // self._refblock_entries
            missing = [i for i in range(needed + 1) if i not in self._refblocks]
            if not missing:
                return new
            if max(missing) >= self._reftable_clusters * self.cluster_size // 8:
                raise WriterError("refcount table full: the image grew past its planned size")
            for index in missing:
                self._refblocks[index] = self._claim(1)
                new.add(index)

    def _refblock_bytes(self, index: int) -> bytes:
        first = index * self._refblock_entries
        counts = self._refcounts[first : first + self._refblock_entries]
        counts += [0] * (self._refblock_entries - len(counts))
        return struct.pack(f">{self._refblock_entries}H", *counts)

    def _reftable_bytes(self) -> bytes:
        entries = self._reftable_clusters * self.cluster_size // 8
        table = [self._refblocks.get(i, 0) for i in range(entries)]
        return struct.pack(f">{entries}Q", *table)

    def _wp_entry(self, zone: int) -> int:
        info = self._zoned_only().zone(zone)
        if info.type is ZoneType.CONVENTIONAL:
            return info.start | CONVENTIONAL_FLAG  # WP-1
        return info.wp

    # ----- file and log -----

    def _pwrite(self, offset: int, data: bytes) -> None:
        """Write to the file, logging whole sectors (read-modify-write at the edges)."""
        start = offset - offset % LOG_SECTOR
        end = _round_up(offset + len(data), LOG_SECTOR)
        if start != offset or end != offset + len(data):
            span = bytearray(os.pread(self._fd, end - start, start).ljust(end - start, b"\0"))
            span[offset - start : offset - start + len(data)] = data
            data, offset = bytes(span), start
        written = os.pwrite(self._fd, data, offset)
        if written != len(data):
            raise WriterError(f"short write: {written} of {len(data)} bytes", offset=offset)
        if self._log is not None:
            self._log.write(offset // LOG_SECTOR, data)

    def _barrier(self) -> None:
        if self._fsync:
            os.fsync(self._fd)
        if self._log is not None:
            self._log.flush()

    def _mark(self, text: str) -> None:
        if self._log is not None:
            self._log.mark(text)

    def _ack(self, name: str, result: OpResult) -> OpResult:
        self._ops += 1
        self._mark(f"{self._ops} {name} {result.error or 'ok'}")
        return result

    def _zoned_only(self) -> _WriterZones:
        if self.zones is None:
            raise ModelError("zone operations need a zoned image")
        return self.zones

    def _config_or_fail(self) -> ZoneConfig:
        if self.config is None:
            raise ModelError("this image is not zoned")
        return self.config


__all__ = ["HEADER", "Mutant", "ReferenceWriter", "ZONED_EXT", "ZONED_EXT_MAGIC", "INCOMPAT_ZONED"]
