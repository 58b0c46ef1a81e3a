"""The image model: a read-only qcow2 file seen through the generated parser.

This is the one place where parser exceptions become `ParseError`s (with the
structure, the byte offset and the clause). Structures reached by offset are
parsed only when asked for, so opening any image reads only the header.

Bulk tables (L1, refcount table, zonedmeta) are also offered as numpy arrays
read straight from the offsets the Kaitai parse located; tests cross-check the
two views on the corpus so that ksy/ stays the single source of the layout.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from kaitaistruct import KaitaiStream, KaitaiStructError

from qcow2harness.errors import ParseError
from qcow2harness.filestream import FileStream
from qcow2harness.inputfile import open_image
from qcow2harness.parser import qcow2 as generated_qcow2
from qcow2harness.parser import qcow2_bitmaps as generated_bitmaps
from qcow2harness.parser.qcow2 import Qcow2
from qcow2harness.parser.qcow2_bitmaps import Qcow2Bitmaps
from qcow2harness.parser.qcow2_zoned import Qcow2Zoned
from qcow2harness.structure import MAX_SNAPSHOT_TABLE, cluster_bits_problems

if TYPE_CHECKING:
    import numpy as np

# The generated parser opens a sub-stream for each snapshot's extra data and each typed
# extension body through its module's name `KaitaiStream`: make those FileStreams too.
generated_qcow2.KaitaiStream = FileStream
generated_bitmaps.KaitaiStream = FileStream

ExtensionType = Qcow2.HeaderExtensionType

QCOW2_MAGIC = b"QFI\xfb"

# Entry bit masks, as the ksy instances define them (tests compare both views); shared by
# the checker and the map.
# Plain ints: numpy takes them as uint64 against uint64 arrays (and is imported only
# where a table is read).
OFFSET_MASK = 0x00FFFFFFFFFFFE00  # L1/L2/bitmap table offsets, bits 9-55
REFTABLE_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO_FLAG = 1
LOW32 = 0xFFFFFFFF


# The `valid:` checks of ksy/qcow2.ksy, by KSY path: field name, offset, clause.
HARD_INVARIANTS = {
    "/types/header/seq/0": ("magic", 0, "HDR-1"),
    "/types/header/seq/1": ("version", 4, "HDR-2"),
}


@contextlib.contextmanager
def parsing(
    structure: str, offset: int, clause: str, stream: KaitaiStream | None = None
) -> Iterator[None]:
    """Turn any failure inside the generated parser into one ParseError.

    `offset` is where the structure starts; when `stream` is the file itself,
    the offset reported for a truncation is where the read failed.
    """
    try:
        yield
    except ParseError:
        raise
    except KaitaiStructError as exc:
        invariant = HARD_INVARIANTS.get(getattr(exc, "src_path", None) or "")
        if invariant is not None:
            field, field_offset, field_clause = invariant
            raise ParseError(
                f"not a qcow2 image: {structure} {field}: {_describe(exc)}",
                structure=f"{structure}.{field}",
                offset=field_offset,
                clause=field_clause,
            ) from exc
        where = offset if stream is None else stream.pos()
        raise ParseError(
            f"{structure} does not parse: {_describe(exc)}",
            structure=structure,
            offset=where,
            clause=clause,
        ) from exc
    except (EOFError, ValueError, OverflowError, UnicodeDecodeError, IndexError) as exc:
        raise ParseError(
            f"{structure} does not parse: {_describe(exc)}",
            structure=structure,
            offset=offset,
            clause=clause,
        ) from exc


def _describe(exc: BaseException) -> str:
    needed = getattr(exc, "bytes_needed", None)
    available = getattr(exc, "bytes_available", None)
    if needed is not None and available is not None:
        return f"truncated: needs {needed} more bytes, {available} left"
    if hasattr(exc, "expected") and hasattr(exc, "actual"):
        return f"expected {exc.expected!r}, found {exc.actual!r}"
    if hasattr(exc, "actual"):
        return f"value {exc.actual!r} is not allowed"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]


@dataclass(frozen=True)
class Extension:
    """One header extension as found in the file."""

    index: int
    offset: int  # of its magic, in the image file
    magic: int
    length: int
    node: Any  # the generated Qcow2.HeaderExtension

    @property
    def name(self) -> str:
        try:
            return ExtensionType(self.magic).name
        except ValueError:
            return "unknown"

    @property
    def is_known(self) -> bool:
        return self.name != "unknown"

    @property
    def body(self) -> Any:
        return self.node.body

    @property
    def is_body_typed(self) -> bool:
        return bool(self.node.is_body_typed)


class Image:
    """A qcow2 image opened read-only."""

    def __init__(self, stream: BinaryIO, path: str = "<bytes>", *,
                 wp_byte_order: str = "big") -> None:
        self.path = path
        # The write-pointer table is big-endian (WP-1); "little" reads it as a writer with
        # the known host-endian deviation (WP-2) wrote it, so the rest can still be judged.
        if wp_byte_order not in ("big", "little"):
            raise ValueError(f"wp_byte_order must be 'big' or 'little', not {wp_byte_order!r}")
        self.wp_byte_order = wp_byte_order
        self._stream = stream
        stream.seek(0, os.SEEK_END)
        self.file_size = stream.tell()
        stream.seek(0)
        self._kaitai_io = FileStream(stream)
        # A file too short to hold the magic is not qcow2 at all (HDR-1); a wrong magic or
        # version is caught by the parser's valid: checks (HDR-1, HDR-2) as soon as it is
        # read; a header that is right so far but cut short is HDR-3.
        truncated_clause = "HDR-3" if self.file_size >= len(QCOW2_MAGIC) else "HDR-1"
        try:
            with parsing("qcow2 header", 0, truncated_clause, self._kaitai_io):
                self.root = Qcow2(self._kaitai_io)
        except ParseError as error:
            if error.clause != "HDR-3":
                raise
            raise ParseError(
                f"the file is {self.file_size} bytes long and ends inside the qcow2 header "
                f"({error.message})",
                structure="qcow2 header",
                offset=self.file_size,
                clause="HDR-3",
            ) from error
        self.header = self.root.header
        self._cluster_size: int | None = None
        # The extension list as parsed, or why it does not parse: each is found once (a
        # failed Kaitai instance is not kept, so asking again would parse again).
        self._extensions: list[Extension] | None = None
        self._extensions_error: ParseError | None = None

    # -- opening ---------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, wp_byte_order: str = "big") -> Image:
        # Read-only: the checker and info never change an image.
        stream = open_image(path)  # closed by Image.close; refuses FIFOs, devices
        try:
            return cls(stream, os.fspath(path), wp_byte_order=wp_byte_order)
        except BaseException:
            stream.close()
            raise

    @classmethod
    def from_bytes(cls, data: bytes) -> Image:
        return cls(io.BytesIO(data))

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> Image:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- header-derived values --------------------------------------------

    @property
    def version(self) -> int:
        return int(self.header.version)

    @property
    def cluster_bits(self) -> int:
        return int(self.header.cluster_bits)

    @property
    def cluster_size(self) -> int:
        """Cluster size; refuses to derive one from a cluster_bits out of range (HDR-4,
        HDR-5: qcow2harness.structure)."""
        if self._cluster_size is None:
            for problem in cluster_bits_problems(self.cluster_bits):
                raise problem.error()
            self._cluster_size = int(self.root.cluster_size)
        return self._cluster_size

    @property
    def len_header(self) -> int:
        return int(self.root.len_header)

    @property
    def refcount_order(self) -> int:
        return int(self.root.refcount_order)

    # -- header extensions --------------------------------------------------

    def extensions(self) -> list[Extension]:
        """All header extensions (the end marker excluded), parsed on first use; a list
        that does not parse raises the same ParseError each time."""
        if self._extensions is None:
            if self._extensions_error is not None:
                raise self._extensions_error
            try:
                self._extensions = self._read_extensions()
            except ParseError as error:
                self._extensions_error = error
                raise
        return self._extensions

    def _read_extensions(self) -> list[Extension]:
        self.cluster_size  # noqa: B018 - validates cluster_bits first
        if self.len_header > self.file_size:
            raise ParseError(
                f"header_length {self.len_header} runs past the end of the "
                f"{self.file_size}-byte file",
                structure="header",
                offset=100,
                clause="HDR-3",
            )
        try:
            with parsing("header extension list", self.len_header, "EXT-1"):
                entries = list(self.root.header_extensions.entries)
        except ParseError as error:
            raise self._extension_list_failure(error) from error
        found = []
        offset = self.len_header
        for index, node in enumerate(entries):
            magic = int(node.magic)
            length = int(node.len_body)
            if magic != ExtensionType.end:
                found.append(Extension(index, offset, magic, length, node))
            offset += 8 + length + (-length % 8)
        return found

    def _extension_list_failure(self, error: ParseError) -> ParseError:
        """Say why the extension list did not parse: a record that runs past the first
        cluster (EXT-2) or a list with no end marker inside it (EXT-1).

        Only the record headers are read again (8 bytes each, within one cluster); this
        runs on the failure path only.
        """
        start = self.len_header
        area = self.pread(start, max(min(self.cluster_size, self.file_size) - start, 0))
        at = 0
        while at + 8 <= len(area):
            magic, length = struct.unpack_from(">II", area, at)
            if magic == ExtensionType.end:
                return error  # the records fit: the failure is inside one of them
            if at + 8 + length + (-length % 8) > len(area):
                return ParseError(
                    f"header extension {magic:#010x} at {start + at:#x} declares {length} "
                    "bytes of data, which run past the end of the first cluster",
                    structure="header extension list",
                    offset=start + at + 4,
                    clause="EXT-2",
                )
            at += 8 + length + (-length % 8)
        return ParseError(
            "the header extension list has no end marker (type 0) inside the first cluster",
            structure="header extension list",
            offset=start + at,
            clause="EXT-1",
        )

    def extension(self, kind: int) -> Extension | None:
        """The first extension of a known kind, or None."""
        for ext in self.extensions():
            if ext.magic == kind:
                return ext
        return None

    def string_extension(self, kind: int) -> str | None:
        ext = self.extension(kind)
        if ext is None:
            return None
        return decode_name(ext.body.value)

    @property
    def backing_file_name(self) -> str | None:
        if self.header.ofs_backing_file_name == 0:
            return None
        offset = int(self.header.ofs_backing_file_name)
        with parsing("backing file name", offset, "HDR-24"):
            return decode_name(self.root.backing_file_name)

    @property
    def zoned(self) -> Qcow2Zoned | None:
        ext = self.extension(ExtensionType.zoned)
        if ext is None or not ext.is_body_typed:
            return None
        body: Qcow2Zoned = ext.body
        return body

    @property
    def bitmaps(self) -> Qcow2Bitmaps | None:
        ext = self.extension(ExtensionType.bitmaps)
        if ext is None or not ext.is_body_typed:
            return None
        body: Qcow2Bitmaps = ext.body
        return body

    def bitmap_directory(self) -> list[Any]:
        ext = self.extension(ExtensionType.bitmaps)
        if ext is None or not ext.is_body_typed:
            return []
        offset = int(ext.body.ofs_bitmap_directory)
        self._require_in_file("bitmap directory", offset, int(ext.body.len_bitmap_directory),
                              "BMP-4")
        with parsing("bitmap directory", offset, "BMP-5"):
            return list(ext.node.bitmap_directory.entries)

    def snapshots(self) -> list[Any]:
        count = int(self.header.num_snapshots)
        if count == 0:
            return []
        offset = int(self.header.ofs_snapshot_table)
        # Each entry is at least 40 bytes: refuse counts the file cannot back.
        self._require_in_file("snapshot table", offset, count * 40, "SNAP-1")
        try:
            with parsing("snapshot table", offset, "SNAP-1"):
                return list(self.root.snapshot_table)
        except ParseError:
            entries = self._snapshots_at_end_of_file(offset, count)
            if entries is None:
                raise
            return entries

    def _snapshots_at_end_of_file(self, offset: int, count: int) -> list[Any] | None:
        """The snapshot table when only the padding after its last entry is missing.

        QEMU pads before each entry, not after the last one, so a table that ends the
        file may end mid-padding (SNAP-1). The missing zeros are supplied here; any
        other shortfall is still an error.
        """
        missing = -self.file_size % 8
        if not missing or self.file_size - offset > MAX_SNAPSHOT_TABLE:
            return None
        data = self.pread(offset, self.file_size - offset) + bytes(missing)
        stream = KaitaiStream(io.BytesIO(data))
        try:
            with parsing("snapshot table", offset, "SNAP-1"):
                entries = [Qcow2.SnapshotTableEntry(stream, self.root, self.root)
                           for _ in range(count)]
        except ParseError:
            return None
        return entries if stream.pos() == len(data) else None

    # -- bulk tables as numpy arrays -----------------------------------------

    def _require_in_file(self, what: str, offset: int, length: int, clause: str) -> None:
        if offset < 0 or length < 0 or offset + length > self.file_size:
            raise ParseError(
                f"{what} at {offset:#x}, {length} bytes, runs past the end of the "
                f"{self.file_size}-byte file",
                structure=what,
                offset=offset,
                clause=clause,
            )

    def fileno(self) -> int:
        """The descriptor of the image file (io.UnsupportedOperation for in-memory bytes)."""
        return self._stream.fileno()

    def pread(self, offset: int, length: int) -> bytes:
        """Read without moving a shared position; short at the end of the file."""
        try:
            fd = self._stream.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._stream.seek(offset)
            return self._stream.read(length)
        return os.pread(fd, length, offset)

    def read_u64_table(self, what: str, offset: int, count: int, clause: str,
                       byte_order: str = "big") -> np.ndarray:
        """Read `count` u64 entries (big-endian as qcow2 stores them); never more than the
        file holds."""
        import numpy as np

        length = count * 8
        self._require_in_file(what, offset, length, clause)
        if not length:
            return np.zeros(0, dtype=np.uint64)
        data = self.pread(offset, length)
        return np.frombuffer(data, dtype=">u8" if byte_order == "big" else "<u8").astype(
            np.uint64)

    def read_u64_values(self, what: str, offset: int, count: int, clause: str) -> list[int]:
        """read_u64_table as Python ints, for small tables (no numpy)."""
        self._require_in_file(what, offset, count * 8, clause)
        return list(struct.unpack(f">{count}Q", self.pread(offset, count * 8)))

    def pread_padded(self, offset: int, length: int) -> bytes:
        """Read `length` bytes; what lies past the end of the file reads as zeros."""
        data = self.pread(offset, length) if offset < self.file_size else b""
        return data + bytes(length - len(data))

    def read_l2_tables(self, offsets: Iterable[int], padded: bool = False) -> np.ndarray:
        """The L2 tables at `offsets` as entry bytes [table, entry, byte], big-endian as
        stored (16 bytes an entry with extended L2 entries). With `padded`, bytes past the
        end of the file read as zeros; otherwise every table must lie inside the file."""
        import numpy as np

        cluster_size = self.cluster_size
        read = self.pread_padded if padded else self.pread
        raw = b"".join(read(int(offset), cluster_size) for offset in offsets)
        entry_size = 16 if self.header.is_extended_l2 else 8
        return np.frombuffer(raw, dtype=np.uint8).reshape(-1, cluster_size // entry_size,
                                                          entry_size)

    def l1_table(self) -> tuple[str, int, int, str]:
        """The active L1 table: (name, offset, entries, clause of its placement)."""
        return ("L1 table", int(self.header.ofs_l1_table), int(self.header.num_l1_entries),
                "HDR-15")

    def refcount_table(self) -> tuple[str, int, int, str]:
        """The refcount table: (name, offset, entries, clause of its placement)."""
        count = int(self.header.num_refcount_table_clusters) * self.cluster_size // 8
        return "refcount table", int(self.header.ofs_refcount_table), count, "HDR-18"

    def l1_entries(self) -> np.ndarray:
        return self.read_u64_table(*self.l1_table())

    def refcount_table_entries(self) -> np.ndarray:
        return self.read_u64_table(*self.refcount_table())

    def zonedmeta_entries(self) -> np.ndarray | None:
        zoned = self.zoned
        if zoned is None:
            return None
        return self.read_u64_table(
            "zonedmeta table", int(zoned.ofs_zonedmeta), int(zoned.num_zones), "ZONE-20",
            self.wp_byte_order,
        )


def l2_descriptors(entry_bytes: np.ndarray) -> np.ndarray:
    """The 64-bit cluster descriptors of read_l2_tables' entries, shape (tables, entries)."""
    import numpy as np

    first8 = np.ascontiguousarray(entry_bytes[:, :, :8])
    return first8.view(">u8")[:, :, 0].astype(np.uint64)


@dataclass(frozen=True)
class L2Entries:
    """L2 entries decoded (L2-1..L2-5, EL2-3), each array of shape (tables, entries)."""

    descriptors: np.ndarray  # the 64-bit cluster descriptors, native byte order
    compressed: np.ndarray  # bit 62
    host: np.ndarray  # the host offset bits of standard entries; 0 for compressed ones
    zero_flag: np.ndarray  # bit 0 of standard entries (never set for extended entries)
    any_compressed: bool


def decode_l2_entries(entry_bytes: np.ndarray) -> L2Entries:
    """Decode read_l2_tables' entries (8 or 16 bytes each): the one decoder of L2 entries
    that the checker and the map share."""
    import numpy as np

    descriptors = l2_descriptors(entry_bytes)
    compressed = (descriptors & COMPRESSED) != 0
    any_compressed = bool(compressed.any())
    host = descriptors & OFFSET_MASK
    if entry_bytes.shape[2] == 16:  # bit 0 is reserved in extended entries (EL2-2)
        zero_flag = np.zeros(descriptors.shape, dtype=bool)
    else:
        zero_flag = (descriptors & ZERO_FLAG) != 0
    if any_compressed:
        host[compressed] = 0
        zero_flag &= ~compressed
    return L2Entries(descriptors, compressed, host, zero_flag, any_compressed)


def l2_subcluster_bitmaps(entry_bytes: np.ndarray) -> np.ndarray:
    """The subcluster bitmaps of extended L2 entries (EL2-3), shape (tables, entries)."""
    import numpy as np

    last8 = np.ascontiguousarray(entry_bytes[:, :, 8:16])
    return last8.view(">u8")[:, :, 0].astype(np.uint64)


def decode_refcounts(raw: bytes, refcount_order: int) -> np.ndarray:
    """Refcount block bytes as an array; sub-byte refcounts are LSB first (RC-1)."""
    import numpy as np

    if refcount_order <= 3:
        data = np.frombuffer(raw, dtype=np.uint8)
        if refcount_order == 3:
            return data
        bits = 1 << refcount_order
        shifts = (np.arange(8 // bits, dtype=np.uint8) * bits).astype(np.uint8)
        return ((data[:, None] >> shifts) & ((1 << bits) - 1)).reshape(-1).astype(np.uint8)
    dtype = {4: ">u2", 5: ">u4", 6: ">u8"}[refcount_order]
    return np.frombuffer(raw, dtype=dtype)


def decode_refcount_values(raw: bytes, refcount_order: int) -> list[int]:
    """decode_refcounts as Python ints, for small images (no numpy)."""
    if refcount_order <= 3:
        if refcount_order == 3:
            return list(raw)
        bits = 1 << refcount_order
        mask = (1 << bits) - 1
        return [byte >> shift & mask for byte in raw for shift in range(0, 8, bits)]
    width = 1 << (refcount_order - 3)
    return list(struct.unpack(f">{len(raw) // width}{'HIQ'[refcount_order - 4]}", raw))


def decode_name(raw: bytes) -> str:
    """Names in qcow2 are bytes; show them as UTF-8 without ever failing."""
    return raw.decode("utf-8", errors="backslashreplace")
