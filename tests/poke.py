"""A small poke helper, like qemu-iotests' poke_file, for crafting damaged images.

HEADER_FIELDS gives each header field's offset and width; test_poke.py checks
every entry against the generated parser, so ksy/ stays the source of truth.
"""

from __future__ import annotations

import pathlib

HEADER_FIELDS: dict[str, tuple[int, int]] = {
    "version": (4, 4),
    "ofs_backing_file_name": (8, 8),
    "len_backing_file_name": (16, 4),
    "cluster_bits": (20, 4),
    "virtual_size": (24, 8),
    "crypt_method": (32, 4),
    "num_l1_entries": (36, 4),
    "ofs_l1_table": (40, 8),
    "ofs_refcount_table": (48, 8),
    "num_refcount_table_clusters": (56, 4),
    "num_snapshots": (60, 4),
    "ofs_snapshot_table": (64, 8),
    "incompatible_features": (72, 8),
    "compatible_features": (80, 8),
    "autoclear_features": (88, 8),
    "refcount_order": (96, 4),
    "len_header": (100, 4),
}


def poke_bytes(data: bytearray, offset: int, value: int, width: int) -> None:
    data[offset:offset + width] = value.to_bytes(width, "big")


def poke_header(data: bytearray, field: str, value: int) -> None:
    offset, width = HEADER_FIELDS[field]
    poke_bytes(data, offset, value, width)


def poke_file(path: pathlib.Path, offset: int, value: int, width: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(width, "big"))
