"""The Kaitai stream the image model parses the file through.

The generated parser reads most fields one at a time (a snapshot table of a thousand
entries is over ten thousand calls), and the runtime's fixed-width reads take three
Python calls each (read_u4be -> read_bytes -> align_to_byte, _read_bytes_not_aligned).
`FileStream` does a complete read in one. A read the file cannot satisfy is rewound
and handed to the runtime, which raises its usual error: parse results, exceptions and
their messages are the runtime's own (tests/test_filestream.py compares both).

The fuzz worker leaves this module uninstrumented, like the runtime itself.
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO

from kaitaistruct import KaitaiStream

_U2BE, _U4BE, _U8BE = struct.Struct(">H"), struct.Struct(">I"), struct.Struct(">Q")
LARGE_READ = 8 * 1024 * 1024  # from here on the runtime checks the stream size first
_HERE = os.SEEK_CUR


class FileStream(KaitaiStream):
    """A KaitaiStream whose complete fixed-width and byte-string reads take one call,
    and whose size is measured once (the image model's streams are read-only)."""

    def __init__(self, io: BinaryIO) -> None:
        # The runtime's KaitaiStream.__init__ (kaitaistruct 0.11, pinned) for reading,
        # less its eager size(): the parser opens a sub-stream per snapshot and extension
        # and asks most of them nothing.
        self._io = io
        self.bits_left = self.bits = 0
        self.bits_le = self.bits_write_mode = False
        self.write_back_handler = None
        self.child_streams: list[KaitaiStream] = []
        self._fixed_size: int | None = None

    def size(self) -> int:
        # The runtime seeks to the end and back on every call; the generated parser
        # asks once per optional field (a snapshot's extra data: three times).
        if self._fixed_size is None:
            self._fixed_size = super().size()
        return self._fixed_size

    def read_bytes(self, n: int) -> bytes:
        if 0 <= n < LARGE_READ:
            self.bits_left = self.bits = 0  # the runtime's align_to_byte()
            data: bytes = self._io.read(n)
            if len(data) == n:
                return data
            self._io.seek(-len(data), _HERE)
        result: bytes = super().read_bytes(n)
        return result

    def read_u2be(self) -> int:
        self.bits_left = self.bits = 0
        data = self._io.read(2)
        if len(data) == 2:
            value: int = _U2BE.unpack(data)[0]
            return value
        self._io.seek(-len(data), _HERE)
        result: int = super().read_u2be()
        return result

    def read_u4be(self) -> int:
        self.bits_left = self.bits = 0
        data = self._io.read(4)
        if len(data) == 4:
            value: int = _U4BE.unpack(data)[0]
            return value
        self._io.seek(-len(data), _HERE)
        result: int = super().read_u4be()
        return result

    def read_u8be(self) -> int:
        self.bits_left = self.bits = 0
        data = self._io.read(8)
        if len(data) == 8:
            value: int = _U8BE.unpack(data)[0]
            return value
        self._io.seek(-len(data), _HERE)
        result: int = super().read_u8be()
        return result
