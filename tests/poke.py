"""A small poke helper, like qemu-iotests' poke_file, for crafting damaged images.

HEADER_FIELDS gives each header field's offset and width. It lives in
qcow2harness.properties.corruptions (the targeted corruptions need it too);
test_info_robustness.py checks every entry against the generated parser, so
ksy/ stays the source of truth.
"""

from __future__ import annotations

import pathlib

from qcow2harness.properties.corruptions import HEADER_FIELDS

__all__ = ["HEADER_FIELDS", "poke_bytes", "poke_file", "poke_header"]


def poke_bytes(data: bytearray, offset: int, value: int, width: int) -> None:
    data[offset:offset + width] = value.to_bytes(width, "big")


def poke_header(data: bytearray, field: str, value: int) -> None:
    offset, width = HEADER_FIELDS[field]
    poke_bytes(data, offset, value, width)


def poke_file(path: pathlib.Path, offset: int, value: int, width: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(width, "big"))
