"""The guest-visible allocation map of an image and its backing chain (clause L2-6).

The extents have the shape of `qemu-img map --output=json` (QEMU 7.2) and are merged
the way it merges them: two neighbours become one when depth, present, zero and data
agree and, where they have a host offset, the offsets are contiguous.

Per layer, a guest range has one of three statuses (L2-6): data, reads as zeros, or
unallocated. An unallocated range reads from the next layer down: from the backing file
below its end, as zeros past it and at the bottom of the chain. Then:

- `depth` is the index of the layer that answered (0 = the image itself);
- `present` is false only for unallocated ranges no layer answered;
- `offset` is given where the layer names a host offset: standard clusters (data, zero
  flag with a preallocated cluster, and the unallocated subclusters of an allocated
  extended-L2 cluster), and every range of a raw file. Compressed clusters and encrypted
  images have none. With an external data file the offset is into the data file;
- raw files report their holes (SEEK_HOLE) as zero, their data as data;
- as qemu-img does, an image whose refcounts count noticeably more clusters than the
  file has blocks on disk (metadata preallocation) has its data ranges refined by the
  holes of the file holding them: a hole reads as zeros, so such ranges are data and zero.

Everything is computed from the L1/L2 tables with numpy in bounded batches and yielded
as a stream, so a 1 TiB image with a large L1 maps in bounded memory.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

from qcow2harness.errors import ParseError, ResourceLimitError, UsageError
from qcow2harness.image import (
    COPIED,
    LOW32,
    OFFSET_MASK,
    QCOW2_MAGIC,
    REFTABLE_OFFSET_MASK,
    ExtensionType,
    Image,
    decode_l2_entries,
    decode_refcounts,
    l2_subcluster_bitmaps,
)
from qcow2harness.inputfile import open_image, open_image_fd
from qcow2harness.structure import require_sound

# Backing chains deeper than this are refused (a loop is refused as soon as it closes).
MAX_CHAIN_LENGTH = 64
# Units (clusters or subclusters) decoded per batch of L2 tables: bounds memory.
UNITS_PER_BATCH = 1 << 20
SECTOR = 512
SUBCLUSTERS = 32
FORMATS = ("qcow2", "raw")

# Per-unit status codes inside a layer.
UNALLOCATED, DATA, ZERO = 0, 1, 2


@dataclass(frozen=True)
class Extent:
    """One extent of the map, as qemu-img map --output=json prints it."""

    start: int
    length: int
    depth: int
    present: bool
    zero: bool
    data: bool
    offset: int | None = None
    filename: str | None = None  # the file `offset` points into (human output only)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"start": self.start, "length": self.length,
                               "depth": self.depth, "present": self.present,
                               "zero": self.zero, "data": self.data}
        if self.offset is not None:
            out["offset"] = self.offset
        return out

    def continues(self, other: Extent) -> bool:
        """True when `other`, starting where this ends, merges into this extent."""
        if (self.depth, self.present, self.zero, self.data) != (
                other.depth, other.present, other.zero, other.data):
            return False
        if (self.offset is None) != (other.offset is None):
            return False
        if self.offset is not None and other.offset is not None:
            return (self.offset + self.length == other.offset
                    and self.filename == other.filename)
        return True


# A layer's answer for a guest range: (start, length, status, host offset or None).
Status = tuple[int, int, int, "int | None"]


class Layer(Protocol):
    name: str  # as qemu-img shows it: the path as given or as combined with its parent's
    size: int  # guest bytes this layer answers for
    offset_file: str  # the file host offsets point into

    def statuses(self, start: int, end: int) -> Iterator[Status]: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# Host files: holes and data
# ---------------------------------------------------------------------------


def file_ranges(fd: int, start: int, end: int, length: int) -> Iterator[tuple[int, int, bool]]:
    """(start, end, is_data) pieces of the file range [start, end). `length` is the file
    length as QEMU sees it (rounded up to a sector): past it everything reads as zeros.
    Where the file system cannot say, everything is data."""
    at = start
    while at < end:
        if at >= length:
            yield at, end, False
            return
        try:
            data = os.lseek(fd, at, os.SEEK_DATA)
        except OSError as error:
            if error.errno == errno.ENXIO:  # a hole up to the end of the file
                yield at, end, False
            else:
                yield at, end, True
            return
        if data > at:
            stop = min(data, end)
            yield at, stop, False
            at = stop
            continue
        try:
            hole = os.lseek(fd, at, os.SEEK_HOLE)
        except OSError:
            yield at, end, True
            return
        if hole <= at:
            yield at, end, True
            return
        stop = min(hole, end)
        yield at, stop, True
        at = stop


class RawLayer:
    """A raw file (a backing file or the bottom of a chain): data and holes, offset = guest."""

    def __init__(self, path: str, name: str) -> None:
        self.name = name
        self.offset_file = name
        self._fd = open_image_fd(path)
        length = os.fstat(self._fd).st_size
        self.size = -(-length // SECTOR) * SECTOR

    def statuses(self, start: int, end: int) -> Iterator[Status]:
        for piece_start, piece_end, is_data in file_ranges(self._fd, start, end, self.size):
            yield (piece_start, piece_end - piece_start, DATA if is_data else ZERO,
                   piece_start)

    def close(self) -> None:
        os.close(self._fd)


# ---------------------------------------------------------------------------
# qcow2 layers
# ---------------------------------------------------------------------------


class Qcow2Layer:
    """A qcow2 image: statuses from its L1/L2 tables (L2-6, EL2-3, DATA-5)."""

    def __init__(self, image: Image, name: str, data_file: str | None = None) -> None:
        import numpy as np

        self.image = image
        self.name = name
        header = image.header
        # The header and the tables the map walks are judged as `check` judges them.
        require_sound(image)
        self.cluster_bits = image.cluster_bits
        self.cluster_size = image.cluster_size
        self.extended = bool(header.is_extended_l2)
        self.unit_bits = self.cluster_bits - (5 if self.extended else 0)
        self.entries_per_table = self.cluster_size // (16 if self.extended else 8)
        self.table_bits = self.cluster_bits + (self.entries_per_table.bit_length() - 1)
        self.size = int(header.virtual_size) // SECTOR * SECTOR
        self.l1 = image.l1_entries()
        self.external = bool(header.has_external_data_file)
        self.encrypted = int(header.crypt_method) != 0
        self.offset_file = data_file or name
        self._data_fd: int | None = None
        self._wanted: np.ndarray = np.zeros((0, 0), dtype=bool)  # entries being read
        self._refine: tuple[int, int] | None = None  # (fd, length) when preallocated
        if data_file is not None:
            self._data_fd = open_image_fd(data_file)
        if metadata_preallocated(image):
            fd = self._data_fd if self._data_fd is not None else image.fileno()
            length = -(-os.fstat(fd).st_size // SECTOR) * SECTOR
            self._refine = (fd, length)

    def close(self) -> None:
        if self._data_fd is not None:
            os.close(self._data_fd)
        self.image.close()

    # -- statuses ----------------------------------------------------------

    def statuses(self, start: int, end: int) -> Iterator[Status]:
        for status in self._table_statuses(start, end):
            if self._refine is not None and status[2] == DATA and status[3] is not None:
                yield from self._refined(status)
            else:
                yield status

    def _refined(self, status: Status) -> Iterator[Status]:
        """A data range of a metadata-preallocated image: holes of the host file read as
        zeros, so they are data and zero (ZERO | DATA: code 3)."""
        assert self._refine is not None
        fd, length = self._refine
        start, size, _, offset = status
        assert offset is not None
        for piece_start, piece_end, is_data in file_ranges(fd, offset, offset + size, length):
            yield (start + piece_start - offset, piece_end - piece_start,
                   DATA if is_data else DATA | ZERO, piece_start)

    def _table_statuses(self, start: int, end: int) -> Iterator[Status]:
        span = 1 << self.table_bits
        first, last = start >> self.table_bits, (end - 1) >> self.table_bits
        tables_per_batch = max(1, UNITS_PER_BATCH // (
            self.entries_per_table * (SUBCLUSTERS if self.extended else 1)))
        index = first
        while index <= last:
            # An L1 entry past the table or without an L2 table: unallocated.
            l2 = int(self.l1[index]) & int(OFFSET_MASK) if index < self.l1.size else 0
            if not l2:
                stop = index + 1
                while stop <= last and stop < self.l1.size and not (
                        int(self.l1[stop]) & int(OFFSET_MASK)):
                    stop += 1
                if stop >= self.l1.size:
                    stop = last + 1
                lo, hi = max(start, index * span), min(end, stop * span)
                yield lo, hi - lo, UNALLOCATED, None
                index = stop
                continue
            stop = index
            while (stop <= last and stop - index < tables_per_batch and stop < self.l1.size
                   and int(self.l1[stop]) & int(OFFSET_MASK)):
                stop += 1
            yield from self._batch_statuses(index, stop, start, end)
            index = stop

    def _batch_statuses(self, first: int, stop: int, start: int, end: int) -> Iterator[Status]:
        """Statuses of the guest range covered by L1 entries [first, stop), all present."""
        import numpy as np

        entries = self.l1[first:stop]
        offsets = entries & OFFSET_MASK
        misaligned = np.nonzero(offsets & np.uint64(self.cluster_size - 1))[0]
        if misaligned.size:
            at = first + int(misaligned[0])
            raise ParseError(f"L1 entry {at}: L2 table offset {int(offsets[misaligned[0]]):#x} "
                             "is not cluster-aligned",
                             structure="L1 table", clause="L1-2",
                             offset=int(self.image.header.ofs_l1_table) + 8 * at)
        # QEMU reads a table past the end of the file as zeros: unallocated.
        entry_bytes = self.image.read_l2_tables(offsets, padded=True)
        unit_bits = self.unit_bits
        base = first << self.table_bits
        lo = max(start, base)
        hi = min(end, stop << self.table_bits)
        # Entries are judged only where they are read: QEMU never looks at the others.
        cluster = np.arange(entry_bytes.shape[0] * entry_bytes.shape[1], dtype=np.int64)
        wanted = ((cluster >= (lo - base) >> self.cluster_bits)
                  & (cluster <= (hi - 1 - base) >> self.cluster_bits))
        self._wanted = wanted.reshape(entry_bytes.shape[:2])
        kind, host, has_host = self._decode(entry_bytes, first)
        first_unit = (lo - base) >> unit_bits
        last_unit = (hi - 1 - base) >> unit_bits
        kind = kind[first_unit:last_unit + 1]
        host = host[first_unit:last_unit + 1]
        has_host = has_host[first_unit:last_unit + 1]
        unit = np.uint64(1 << unit_bits)
        change = np.ones(kind.size, dtype=bool)
        change[1:] = ((kind[1:] != kind[:-1]) | (has_host[1:] != has_host[:-1])
                      | (has_host[1:] & (host[1:] != host[:-1] + unit)))
        run_starts = np.nonzero(change)[0]
        run_stops = np.append(run_starts[1:], kind.size)
        unit_base = base + (first_unit << unit_bits)
        for run_start, run_stop in zip(run_starts.tolist(), run_stops.tolist(), strict=True):
            run_lo = max(lo, unit_base + (run_start << unit_bits))
            run_hi = min(hi, unit_base + (run_stop << unit_bits))
            skipped = run_lo - (unit_base + (run_start << unit_bits))
            offset = int(host[run_start]) + skipped if has_host[run_start] else None
            yield run_lo, run_hi - run_lo, int(kind[run_start]), offset

    def _decode(self, entry_bytes: np.ndarray, first: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per unit (cluster, or subcluster with extended L2): status code, host offset and
        whether the offset is reported, flattened in guest order."""
        import numpy as np

        decoded = decode_l2_entries(entry_bytes)
        descriptors, compressed, host = decoded.descriptors, decoded.compressed, decoded.host
        zero_flag = decoded.zero_flag
        has_cluster = ~compressed & (host != 0)
        if self.external:
            # Host offset 0 with bit 63 is offset 0 of the data file (DATA-10); a zero
            # cluster needs a non-zero offset to count as preallocated.
            has_cluster |= ~compressed & ~zero_flag & ((descriptors & COPIED) != 0)
        self._check_offsets(descriptors, compressed, host, has_cluster, first)
        if not self.extended:
            kind = np.full(descriptors.shape, UNALLOCATED, dtype=np.uint8)
            kind[has_cluster] = DATA
            kind[compressed] = DATA
            kind[zero_flag] = ZERO
            # Offsets: data clusters and zero clusters with a preallocated host cluster.
            has_host = has_cluster & ~np.bool_(self.encrypted)
            return kind.reshape(-1), host.reshape(-1), has_host.reshape(-1)
        bitmaps = l2_subcluster_bitmaps(entry_bytes)
        alloc = bitmaps & LOW32
        zeros = bitmaps >> np.uint64(32)
        self._check_bitmaps(compressed, has_cluster, alloc, zeros, first)
        bit = np.uint64(1) << np.arange(SUBCLUSTERS, dtype=np.uint64)
        sub_alloc = (alloc[..., None] & bit) != 0
        sub_zero = (zeros[..., None] & bit) != 0
        shape = (*descriptors.shape, SUBCLUSTERS)
        kind = np.full(shape, UNALLOCATED, dtype=np.uint8)
        kind[sub_alloc] = DATA
        kind[sub_zero] = ZERO  # EL2-3 guarantees no subcluster is both
        kind[compressed] = DATA
        sub_size = np.uint64(1 << self.unit_bits)
        sub_host = host[..., None] + np.arange(SUBCLUSTERS, dtype=np.uint64) * sub_size
        # Every subcluster of an allocated cluster names its host offset, even those that
        # read from the backing file (qemu-img shows it where nothing lies below).
        has_host = np.broadcast_to(has_cluster[..., None] & ~np.bool_(self.encrypted), shape)
        return kind.reshape(-1), sub_host.reshape(-1), has_host.reshape(-1)

    def _check_offsets(self, descriptors: np.ndarray, compressed: np.ndarray,
                       host: np.ndarray, has_cluster: np.ndarray, first: int) -> None:
        import numpy as np

        misaligned = ~compressed & (host & np.uint64(self.cluster_size - 1) != 0)
        self._refuse(misaligned, descriptors, first, "L2-2",
                     "host cluster offset is not cluster-aligned")
        if self.external:
            self._refuse(compressed, descriptors, first, "DATA-6",
                         "compressed cluster in an image with an external data file")
            guest = ((np.arange(descriptors.shape[0], dtype=np.uint64)[:, None]
                      + np.uint64(first)) << np.uint64(self.table_bits)) + (
                np.arange(descriptors.shape[1], dtype=np.uint64)[None, :]
                << np.uint64(self.cluster_bits))
            self._refuse(has_cluster & (host != guest), descriptors, first, "DATA-5",
                         "host offset differs from the guest offset")

    def _check_bitmaps(self, compressed: np.ndarray, has_cluster: np.ndarray,
                       alloc: np.ndarray, zeros: np.ndarray, first: int) -> None:
        self._refuse(~compressed & has_cluster & ((alloc & zeros) != 0), None, first,
                     "EL2-3", "subclusters both allocated and zero", 8)
        self._refuse(~compressed & ~has_cluster & (alloc != 0), None, first, "EL2-4",
                     "allocated subclusters without a host cluster", 8)

    def _refuse(self, mask: np.ndarray, descriptors: np.ndarray | None, first: int,
                clause: str, text: str, extra: int = 0) -> None:
        """Raise for the first entry of `mask` inside the range being read, if any."""
        import numpy as np

        mask = mask & self._wanted
        if not mask.any():
            return
        table, entry = (int(i[0]) for i in np.nonzero(mask))
        l2 = int(self.l1[first + table]) & int(OFFSET_MASK)
        value = f" ({int(descriptors[table, entry]):#x})" if descriptors is not None else ""
        raise ParseError(f"L2 table {l2:#x} entry {entry}: {text}{value}",
                         structure="L2 table", clause=clause,
                         offset=l2 + entry * (16 if self.extended else 8) + extra)


def metadata_preallocated(image: Image) -> bool:
    """Whether qemu-img treats the image as metadata-preallocated: at least
    max(10/9 of, 2 more than) as many clusters with a non-zero refcount as the file
    occupies on disk (st_blocks).

    A refcount block at an unaligned offset makes QEMU stop with an I/O error (unless the
    image is already marked corrupt); the walk stops as soon as the answer is known.
    """
    import numpy as np

    try:
        stat = os.fstat(image.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
    cluster_size = image.cluster_size
    on_disk = stat.st_blocks * 512 // cluster_size
    threshold = max(on_disk * 10 // 9, on_disk + 2)
    clusters = -(-image.file_size // cluster_size)
    order = image.refcount_order
    if order > 6:
        return False
    per_block = cluster_size * 8 >> order
    try:
        table = image.refcount_table_entries()
    except ParseError:
        return False
    counted = 0
    for index in range(min(int(table.size), -(-clusters // per_block))):
        block = int(table[index]) & int(REFTABLE_OFFSET_MASK)
        if counted >= threshold:
            return True
        if not block:
            continue
        if block % cluster_size:
            if image.header.is_corrupt:
                return False
            raise ParseError(f"refcount table entry {index}: refcount block offset {block:#x} "
                             "is not cluster-aligned", structure="refcount table",
                             clause="RC-1",
                             offset=int(image.header.ofs_refcount_table) + 8 * index)
        counts = decode_refcounts(image.pread_padded(block, cluster_size), order)
        counted += int(np.count_nonzero(counts[:clusters - index * per_block]))
    return counted >= threshold


# ---------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------


def combine(parent: str, name: str) -> str:
    """A backing or data file name as QEMU resolves it: relative to the directory of the
    image that names it, without normalising."""
    if os.path.isabs(name):
        return name
    return os.path.join(os.path.dirname(parent), name)


def probe_format(path: str) -> str:
    with open_image(path) as f:
        return "qcow2" if f.read(4) == QCOW2_MAGIC else "raw"


class Chain:
    """An image and its backing files, opened read-only: layers[0] is the image."""

    def __init__(self, path: str, max_length: int = MAX_CHAIN_LENGTH) -> None:
        self.layers: list[Layer] = []
        try:
            self._open(path, max_length)
        except BaseException:
            self.close()
            raise

    def _open(self, path: str, max_length: int) -> None:
        seen: dict[tuple[int, int], str] = {}
        name, fmt = path, "qcow2"
        named_by: tuple[str, int] | None = None  # (image, offset of the backing name)
        while True:
            stat = os.stat(name)
            key = (stat.st_dev, stat.st_ino)
            if key in seen:
                assert named_by is not None
                raise ParseError(f"backing chain loops: {named_by[0]} names {name}, which is "
                                 f"{seen[key]} again", structure="backing file name",
                                 offset=named_by[1], clause="L2-6")
            if len(self.layers) >= max_length:
                raise ResourceLimitError(f"backing chain longer than {max_length} images "
                                         f"(at {name})")
            seen[key] = name
            if fmt == "raw":
                self.layers.append(RawLayer(name, name))
                return
            image = Image.open(name)
            try:
                data_file = image.string_extension(ExtensionType.external_data_file) \
                    if image.header.has_external_data_file else None
                layer = Qcow2Layer(image, name, combine(name, data_file) if data_file else None)
            except BaseException:
                image.close()
                raise
            self.layers.append(layer)
            backing = image.backing_file_name
            if not backing:
                return  # none, or an empty name, which QEMU reads as none
            if ":" in backing.split("/")[0]:
                raise UsageError(f"{name}: backing file {backing!r} names a protocol or JSON "
                                 "description; only plain file names are supported")
            backing_format = image.string_extension(ExtensionType.backing_file_format)
            named_by = (name, int(image.header.ofs_backing_file_name))
            name = combine(name, backing)
            fmt = backing_format if backing_format is not None else probe_format(name)
            if fmt not in FORMATS:
                raise UsageError(f"{named_by[0]}: backing format {fmt!r} is not supported "
                                 f"(only {', '.join(FORMATS)})")

    def close(self) -> None:
        for layer in self.layers:
            with contextlib.suppress(OSError):
                layer.close()
        self.layers = []

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the map -----------------------------------------------------------

    def extents(self) -> Iterator[Extent]:
        """The merged map of the whole virtual disk, as a stream."""
        size = self.layers[0].size
        if size == 0:
            yield Extent(0, 0, 0, False, False, False)
            return
        current: Extent | None = None
        for extent in self._resolve(0, 0, size):
            if current is None:
                current = extent
            elif current.continues(extent):
                current = Extent(current.start, current.length + extent.length, current.depth,
                                 current.present, current.zero, current.data, current.offset,
                                 current.filename)
            else:
                yield current
                current = extent
        if current is not None:
            yield current

    def _resolve(self, depth: int, start: int, end: int) -> Iterator[Extent]:
        layer = self.layers[depth]
        below = self.layers[depth + 1] if depth + 1 < len(self.layers) else None
        for at, length, status, offset in layer.statuses(start, end):
            filename = layer.offset_file if offset is not None else None
            if status != UNALLOCATED:
                yield Extent(at, length, depth, True, bool(status & ZERO), bool(status & DATA),
                             offset, filename)
                continue
            stop = at + length
            handed_down = at
            if below is not None and at < below.size:
                handed_down = min(stop, below.size)
                yield from self._resolve(depth + 1, at, handed_down)
            if handed_down < stop:
                # No layer below (or past its end): reads as zeros, nothing allocated.
                yield Extent(handed_down, stop - handed_down, depth, False, True, False,
                             None if offset is None else offset + handed_down - at, filename)


def map_image(path: str, max_chain: int = MAX_CHAIN_LENGTH) -> list[Extent]:
    """The whole map as a list (small images; the CLI streams Chain.extents())."""
    with Chain(path, max_chain) as chain:
        return list(chain.extents())


def map_json(path: str) -> list[dict[str, Any]]:
    """The map in qemu-img map --output=json's parsed form."""
    return [extent.to_json() for extent in map_image(path)]


def hex_c(value: int) -> str:
    """printf's %#x: 0 has no prefix."""
    return f"{value:#x}" if value else "0"


HUMAN_HEADER = f"{'Offset':<16}{'Length':<16}{'Mapped to':<16}File"


def human_line(extent: Extent) -> str | None:
    """qemu-img map's default format lists only data that is not known to be zero. Data
    without a host offset (compressed, encrypted), which qemu-img refuses to list, is
    shown with '-'."""
    if not extent.data or extent.zero:
        return None
    if extent.offset is None:
        return (f"{hex_c(extent.start):<16}{hex_c(extent.length):<16}{'-':<16}"
                "(compressed or encrypted: no host offset)")
    return (f"{hex_c(extent.start):<16}{hex_c(extent.length):<16}"
            f"{hex_c(extent.offset):<16}{extent.filename or ''}")


def json_lines(extents: Iterator[Extent]) -> Iterator[str]:
    """The JSON array in qemu-img's layout: one object a line."""
    import json

    previous: str | None = None
    for extent in extents:
        text = "{ " + json.dumps(extent.to_json())[1:]
        if previous is not None:
            yield previous + ","
        else:
            text = "[" + text
        previous = text
    if previous is None:
        yield "[]"
    else:
        yield previous + "]"
