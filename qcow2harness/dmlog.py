"""The dm-log-writes log format: a record of every write, flush and mark a writer made.

Linux's dm-log-writes target and QEMU's blklogwrites driver both produce it, and the
reference writer does too, so the crash engine replays any of them alike.

Layout (all little-endian):

- sector 0: superblock `<QQQI` = magic, version (1), nr_entries, sectorsize;
- from sector 1: entries. Each entry is one header sector `<QQQQ` = sector,
  nr_sectors, flags, data_len, followed by its data, padded to whole sectors.
  A write carries nr_sectors * sectorsize bytes; a MARK carries data_len bytes of
  label; FLUSH and DISCARD carry none. `sector` and `nr_sectors` count in units of
  `sectorsize` (QEMU's log-sector-size; 512 matches Linux).

nr_entries may be stale (a writer that died before updating the superblock), so the
reader scans past it to the end of the file; past nr_entries an all-zero header
ends the log.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .errors import ParseError

MAGIC = 0x6A736677736872
VERSION = 1
FLUSH = 1
FUA = 2
DISCARD = 4
MARK = 8
KNOWN_FLAGS = FLUSH | FUA | DISCARD | MARK

SUPERBLOCK = struct.Struct("<QQQI")
ENTRY = struct.Struct("<QQQQ")
MIN_SECTOR_SIZE = 512
MAX_SECTOR_SIZE = 1 << 16
MAX_MARK_LEN = 4096  # a mark is a short label


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One logged request. `data` is the written bytes, or the mark's label."""

    index: int
    sector: int
    nr_sectors: int
    flags: int
    data: bytes
    log_offset: int  # where its header sits in the log file

    @property
    def is_flush(self) -> bool:
        return bool(self.flags & FLUSH)

    @property
    def is_fua(self) -> bool:
        return bool(self.flags & FUA)

    @property
    def is_discard(self) -> bool:
        return bool(self.flags & DISCARD)

    @property
    def is_mark(self) -> bool:
        return bool(self.flags & MARK)

    @property
    def is_write(self) -> bool:
        return self.nr_sectors > 0 and not self.flags & (DISCARD | MARK)

    @property
    def label(self) -> str:
        """A mark's text (empty for other entries)."""
        return self.data.decode("utf-8", "replace") if self.is_mark else ""


@dataclass(frozen=True, slots=True)
class Superblock:
    nr_entries: int
    sectorsize: int


def _round_up(value: int, unit: int) -> int:
    return -(-value // unit) * unit


class LogWriter:
    """Appends entries to a dm-log-writes log; `finalize()` writes the superblock."""

    def __init__(self, path: str | os.PathLike[str], sectorsize: int = 512) -> None:
        if sectorsize < MIN_SECTOR_SIZE or sectorsize & (sectorsize - 1):
            raise ValueError(f"sectorsize must be a power of two >= 512, got {sectorsize}")
        self.sectorsize = sectorsize
        self.nr_entries = 0
        self._file: BinaryIO = open(path, "wb")  # closed by finalize()
        self._file.write(b"\0" * sectorsize)
        self._write_superblock()

    def write(self, sector: int, data: bytes, *, fua: bool = False) -> None:
        """Log a write of `data` (a whole number of sectors) at `sector`."""
        if not data or len(data) % self.sectorsize:
            raise ValueError(f"write data must be whole {self.sectorsize}-byte sectors")
        self._entry(sector, len(data) // self.sectorsize, FUA if fua else 0, 0, data)

    def flush(self) -> None:
        self._entry(0, 0, FLUSH, 0, b"")

    def discard(self, sector: int, nr_sectors: int) -> None:
        self._entry(sector, nr_sectors, DISCARD, 0, b"")

    def mark(self, label: str) -> None:
        text = label.encode()
        if len(text) > MAX_MARK_LEN:
            raise ValueError(f"mark label longer than {MAX_MARK_LEN} bytes")
        self._entry(0, 0, MARK, len(text), text)

    def sync(self) -> None:
        """Push buffered entries to the file so that a reader sees them (no fsync)."""
        self._file.flush()

    def finalize(self) -> None:
        """Write the final entry count and close the log."""
        if self._file.closed:
            return
        self._write_superblock()
        self._file.close()

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.finalize()

    def _entry(self, sector: int, nr_sectors: int, flags: int, data_len: int, data: bytes) -> None:
        header = ENTRY.pack(sector, nr_sectors, flags, data_len)
        self._file.write(header.ljust(self.sectorsize, b"\0"))
        if data:
            self._file.write(data.ljust(_round_up(len(data), self.sectorsize), b"\0"))
        self.nr_entries += 1

    def _write_superblock(self) -> None:
        position = self._file.tell()
        self._file.seek(0)
        self._file.write(SUPERBLOCK.pack(MAGIC, VERSION, self.nr_entries, self.sectorsize))
        self._file.seek(position)
        self._file.flush()


class LogReader:
    """Reads a log lazily, checking every length against what the file holds."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.file_size = os.path.getsize(self.path)
        with open(self.path, "rb") as stream:
            self.superblock = self._read_superblock(stream)

    def _read_superblock(self, stream: BinaryIO) -> Superblock:
        raw = stream.read(SUPERBLOCK.size)
        if len(raw) < SUPERBLOCK.size:
            raise ParseError("log shorter than its superblock", structure="superblock", offset=0)
        magic, version, nr_entries, sectorsize = SUPERBLOCK.unpack(raw)
        if magic != MAGIC:
            raise ParseError(f"bad log magic {magic:#x}", structure="superblock", offset=0)
        if version != VERSION:
            raise ParseError(f"unknown log version {version}", structure="superblock", offset=8)
        if (
            sectorsize < MIN_SECTOR_SIZE
            or sectorsize > MAX_SECTOR_SIZE
            or sectorsize & (sectorsize - 1)
        ):
            raise ParseError(
                f"sectorsize {sectorsize} is not a power of two in [512, 64 KiB]",
                structure="superblock",
                offset=24,
            )
        if self.file_size < sectorsize:
            raise ParseError("log shorter than one sector", structure="superblock", offset=0)
        # Each entry takes at least one sector, which bounds a sane entry count.
        if nr_entries > self.file_size // sectorsize:
            raise ParseError(
                f"nr_entries {nr_entries} cannot fit in a {self.file_size}-byte log",
                structure="superblock",
                offset=16,
            )
        return Superblock(nr_entries, sectorsize)

    def __iter__(self) -> Iterator[LogEntry]:
        return self.entries()

    def entries(self) -> Iterator[LogEntry]:
        """Yield entries in log order, one read per entry."""
        sectorsize = self.superblock.sectorsize
        counted = self.superblock.nr_entries
        with open(self.path, "rb") as stream:
            offset = sectorsize
            index = 0
            while offset + sectorsize <= self.file_size:
                stream.seek(offset)
                header = stream.read(sectorsize)
                if index >= counted and not header.strip(b"\0"):
                    return  # stale tail: zeros after the last entry
                sector, nr_sectors, flags, data_len = ENTRY.unpack_from(header)
                if flags & ~KNOWN_FLAGS:
                    raise ParseError(
                        f"entry {index}: unknown flags {flags:#x}", structure="entry", offset=offset
                    )
                payload = self._payload_length(index, offset, nr_sectors, flags, data_len)
                data_offset = offset + sectorsize
                padded = _round_up(payload, sectorsize)
                if data_offset + padded > self.file_size:
                    raise ParseError(
                        f"entry {index}: {padded} data bytes run past the end of the log",
                        structure="entry",
                        offset=offset,
                    )
                data = stream.read(payload) if payload else b""
                if flags & MARK:
                    data = data[:data_len]
                yield LogEntry(index, sector, nr_sectors, flags, data, offset)
                offset = data_offset + padded
                index += 1
            if index < counted:
                raise ParseError(
                    f"log ends after {index} entries but the superblock counts {counted}",
                    structure="superblock",
                    offset=16,
                )
            if offset < self.file_size:
                raise ParseError("log ends in a partial sector", structure="entry", offset=offset)

    def _payload_length(
        self, index: int, offset: int, nr_sectors: int, flags: int, data_len: int
    ) -> int:
        sectorsize = self.superblock.sectorsize
        if flags & MARK:
            if data_len > MAX_MARK_LEN:
                raise ParseError(
                    f"entry {index}: mark of {data_len} bytes", structure="entry", offset=offset
                )
            return data_len
        if flags & DISCARD or nr_sectors == 0:
            return 0
        remaining = self.file_size - offset - sectorsize
        if nr_sectors > remaining // sectorsize:
            raise ParseError(
                f"entry {index}: {nr_sectors} sectors of data but only {remaining} bytes remain",
                structure="entry",
                offset=offset,
            )
        return nr_sectors * sectorsize


def read_log(path: str | os.PathLike[str]) -> Iterator[LogEntry]:
    """Entries of the log at `path`, lazily."""
    return LogReader(path).entries()


def replay(
    entries: Iterator[LogEntry] | list[LogEntry],
    target: BinaryIO,
    sectorsize: int,
    stop: int | None = None,
) -> int:
    """Apply the writes (and discards, as zeros) of entries before index `stop` to `target`.

    Returns how many entries were applied. Flushes and marks change nothing here; the
    crash engine picks `stop` (for instance, just after a FLUSH or a MARK).
    """
    applied = 0
    for entry in entries:
        if stop is not None and entry.index >= stop:
            break
        if entry.is_write:
            target.seek(entry.sector * sectorsize)
            target.write(entry.data)
        elif entry.is_discard:
            target.seek(entry.sector * sectorsize)
            remaining = entry.nr_sectors * sectorsize
            while remaining:  # in chunks: a discard's length is not backed by the log
                chunk = min(remaining, 1 << 20)
                target.write(b"\0" * chunk)
                remaining -= chunk
        applied += 1
    return applied


__all__ = [
    "DISCARD",
    "FLUSH",
    "FUA",
    "MAGIC",
    "MARK",
    "LogEntry",
    "LogReader",
    "LogWriter",
    "Superblock",
    "read_log",
    "replay",
]
