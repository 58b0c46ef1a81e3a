"""Where the generated parser's fields lie in the bytes it parsed.

The parser (qcow2harness/parser, generated from ksy/) reads the `seq` fields of a type
in order and assigns each one as an attribute. A throwaway subclass that notes the
stream position at each assignment gives every field's byte range, so the fuzzer names
and mutates fields without restating the layout:

    seq_positions(Qcow2Zoned, data, start)   -> {"zoned_model": (start, 1), ...}
    zoned_field_positions()                   -> the same, relative to the body (cached)

A field read into a sub-stream (`_raw_body`) is reported under its public name
(`body`); a field the parse skipped (a condition was false) is absent. A parse that
fails part-way returns the fields read until then.
"""

from __future__ import annotations

import functools
from io import BytesIO
from typing import Any

from kaitaistruct import KaitaiStream

from qcow2harness.parser.qcow2 import Qcow2
from qcow2harness.parser.qcow2_zoned import Qcow2Zoned

# Enough zero bytes for any fixed-size type below to parse in full.
_PROBE_BYTES = 4096


def seq_positions(cls: type, data: bytes, start: int = 0,
                  *args: Any) -> dict[str, tuple[int, int]]:
    """{field name: (offset, width)} of `cls` parsed from `data` at `start`. `args` are
    the type's parameters (ZonedmetaTable takes its entry count first)."""
    io = KaitaiStream(BytesIO(data))
    io.seek(start)
    positions: dict[str, tuple[int, int]] = {}
    mark = [start]

    def note(name: str) -> None:
        if name.startswith("_") and not name.startswith("_raw_"):
            return
        here = io.pos()
        if here > mark[0]:
            positions.setdefault(name.removeprefix("_raw_"), (mark[0], here - mark[0]))
            mark[0] = here

    class Probe(cls):  # type: ignore[misc, valid-type]
        def __setattr__(self, name: str, value: Any) -> None:
            object.__setattr__(self, name, value)
            if getattr(self, "_io", None) is io:
                note(name)

    try:
        Probe(*args, io)
    except Exception:  # noqa: BLE001, S110 - a partial parse still locates its first fields
        pass
    return positions


@functools.cache
def zoned_field_positions() -> dict[str, tuple[int, int]]:
    """The zoned extension body's fields, (offset in the body, width)."""
    return seq_positions(Qcow2Zoned, bytes(_PROBE_BYTES))


@functools.cache
def zonedmeta_entry_width() -> int:
    """Bytes per write-pointer table entry."""
    return sum(width for _, width in seq_positions(Qcow2Zoned.ZonedmetaEntry,
                                                   bytes(_PROBE_BYTES)).values())


def header_positions(data: bytes) -> dict[str, tuple[int, int]]:
    """The header fields this file holds (v2 or v3, its own header_length)."""
    return seq_positions(Qcow2.Header, data, 0)


def extension_record_positions(data: bytes, offset: int) -> dict[str, tuple[int, int]]:
    """magic, len_body, body, padding of the extension record at `offset`."""
    return seq_positions(Qcow2.HeaderExtension, data, offset)


__all__ = ["extension_record_positions", "header_positions", "seq_positions",
           "zoned_field_positions", "zonedmeta_entry_width"]
