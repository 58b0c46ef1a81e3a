"""`map` on damaged and extreme images: a clause-naming error or a bounded stream."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
from poke import poke_file
from qcow2harness.reference.writer import ReferenceWriter

from qcow2harness import qemu
from qcow2harness.cli import run as cli_run
from qcow2harness.errors import ParseError
from qcow2harness.image import OFFSET_MASK, Image
from qcow2harness.map import Chain, map_json
from qcow2harness.qemu_json import map_difference

MiB = 1 << 20


def written_image(path: pathlib.Path, cluster_size: int = 65536) -> pathlib.Path:
    with ReferenceWriter.create(path, 16 * MiB, cluster_size=cluster_size,
                                fsync=False) as writer:
        writer.write(0, b"\x11" * 65536)
        writer.write(5 * MiB, b"\x22" * 4096)
    return path


def l2_entry_offset(path: pathlib.Path, guest: int) -> int:
    with Image.open(path) as image:
        bits = image.cluster_bits
        per_table = image.cluster_size // 8
        l1 = image.l1_entries()
        table = int(l1[guest >> (bits + per_table.bit_length() - 1)]) & int(OFFSET_MASK)
        return table + 8 * ((guest >> bits) % per_table)


def test_reference_image_maps_its_writes(tmp_path: pathlib.Path) -> None:
    extents = map_json(str(written_image(tmp_path / "w.qcow2")))
    assert [(e["start"], e["data"]) for e in extents if e["data"]] == [(0, True), (5 * MiB, True)]
    assert sum(e["length"] for e in extents) == 16 * MiB
    assert all(e["depth"] == 0 for e in extents)
    assert all(("offset" in e) == e["data"] for e in extents)


def test_misaligned_data_offset_is_l2_2(tmp_path: pathlib.Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = written_image(tmp_path / "w.qcow2")
    entry = l2_entry_offset(path, 5 * MiB)
    with open(path, "rb") as f:
        f.seek(entry)
        value = int.from_bytes(f.read(8), "big")
    poke_file(path, entry, value + 4096, 8)
    with pytest.raises(ParseError) as raised:
        map_json(str(path))
    assert raised.value.clause == "L2-2" and raised.value.offset == entry
    assert cli_run(["map", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "[L2-2]" in err


def test_misaligned_l2_table_is_l1_2(tmp_path: pathlib.Path) -> None:
    path = written_image(tmp_path / "w.qcow2")
    with Image.open(path) as image:
        l1_offset = int(image.header.ofs_l1_table)
        first = int(image.l1_entries()[0])
    poke_file(path, l1_offset, first + 512, 8)
    with pytest.raises(ParseError, match="L2 table offset") as raised:
        map_json(str(path))
    assert raised.value.clause == "L1-2"


def test_unknown_incompatible_bit_is_refused(tmp_path: pathlib.Path) -> None:
    path = written_image(tmp_path / "w.qcow2")
    poke_file(path, 72, 1 << 40, 8)
    with pytest.raises(ParseError) as raised:
        map_json(str(path))
    assert raised.value.clause == "HDR-9"


def test_huge_virtual_size_stays_one_extent_past_the_tables(tmp_path: pathlib.Path) -> None:
    # 2^50 bytes of guest disk, 16 MiB of it with data: the rest is one unallocated
    # extent, not a walk over 2^34 clusters. The L1 table grows to the 2^21 entries such
    # a disk needs (HDR-16), in a sparse tail of the file.
    path = written_image(tmp_path / "w.qcow2")
    with Image.open(path) as image:
        first = image.l1_entries()[:1].tobytes()
        cluster_size = image.cluster_size
    table = -(-path.stat().st_size // cluster_size) * cluster_size
    with open(path, "r+b") as f:
        f.truncate(table + 8 * (1 << 21))
        f.seek(table)
        f.write(np.frombuffer(first, dtype=np.uint64).astype(">u8").tobytes())
    poke_file(path, 36, 1 << 21, 4)
    poke_file(path, 40, table, 8)
    poke_file(path, 24, 1 << 50, 8)
    extents = map_json(str(path))
    assert extents[-1]["start"] + extents[-1]["length"] == 1 << 50
    assert extents[-1]["length"] > (1 << 50) - 16 * MiB
    assert len(extents) <= 5


@pytest.mark.parametrize(("offset", "value", "width", "clause"), [
    (24, (1 << 64) - 1, 8, "HDR-16"),  # virtual size 2^64-1: no L1 table can map it
    (56, 1 << 32 - 1, 4, "HDR-19"),  # a refcount table of 2^31 clusters (128 TiB)
    (20, 56, 4, "HDR-5"),  # cluster_bits 56
])
def test_invalid_structures_are_refused_with_checks_clause(
        tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], offset: int, value: int,
        width: int, clause: str) -> None:
    """map exits 2 naming the clause check names; it never prints a length past int64."""
    path = written_image(tmp_path / "w.qcow2")
    poke_file(path, offset, value, width)
    assert cli_run(["map", "--output", "json", str(path)]) == 2
    captured = capsys.readouterr()
    assert f"[{clause}]" in captured.err and not captured.out
    assert cli_run(["check", str(path)]) == 2
    assert clause in capsys.readouterr().out


def test_extents_stream_one_batch_at_a_time(tmp_path: pathlib.Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # 512-byte clusters: one L2 table maps 32 KiB; a write every 32 KiB of the first
    # 4 MiB fills 128 consecutive L1 entries, read 16 tables a batch here.
    path = tmp_path / "small-clusters.qcow2"
    with ReferenceWriter.create(path, 8 * MiB, cluster_size=512, fsync=False) as writer:
        for at in range(0, 4 * MiB, 32 * 1024):
            writer.write(at, b"\x33" * 512)
    monkeypatch.setattr("qcow2harness.map.UNITS_PER_BATCH", 64 * 16)
    tables_read: list[int] = []
    real = Image.read_l2_tables

    def counting(self: Image, offsets: np.ndarray, padded: bool = False) -> np.ndarray:
        tables_read.append(len(offsets))
        return real(self, offsets, padded)

    monkeypatch.setattr(Image, "read_l2_tables", counting)
    with Chain(str(path)) as chain:
        stream = chain.extents()
        first = next(stream)
        assert first.data and first.start == 0
        assert sum(tables_read) <= 32  # two batches of 16, not all 128 tables
        rest = list(stream)
    assert sum(tables_read) == 128
    assert sum(e.data for e in [first, *rest]) == 128


def test_invalid_subcluster_bitmap_is_el2_3(qemu_tools: None, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "ext.qcow2"
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", str(path), "4M")
    qemu.run("qemu-io", "-c", "write -P 1 0 4k", str(path))
    with Image.open(path) as image:
        table = int(image.l1_entries()[0]) & int(OFFSET_MASK)
    poke_file(path, table + 8, (1 << 32) | 1, 8)  # subcluster 0 allocated and zero
    with pytest.raises(ParseError) as raised:
        map_json(str(path))
    assert raised.value.clause == "EL2-3"
    # QEMU refuses the entry too.
    proc = qemu.run("qemu-img", "map", "--output=json", str(path), check=False)
    assert proc.returncode != 0


def test_a_bad_entry_hidden_by_the_overlay_is_never_read(qemu_tools: None,
                                                         tmp_path: pathlib.Path) -> None:
    # The base's entry for cluster 1 is misaligned (L2-2), but the top allocates cluster 1,
    # so neither QEMU nor we read it; reading it directly is refused.
    base, top = tmp_path / "base.qcow2", tmp_path / "top.qcow2"
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", str(base), "1M")
    qemu.run("qemu-io", "-c", "write -P 1 0 128k", str(base))
    entry = l2_entry_offset(base, 65536)
    with open(base, "rb") as f:
        f.seek(entry)
        value = int.from_bytes(f.read(8), "big")
    poke_file(base, entry, value + 512 * 8, 8)
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
             str(top), cwd=str(tmp_path))
    qemu.run("qemu-io", "-c", "write -P 2 64k 64k", str(top))
    theirs = qemu.run("qemu-img", "map", "--output=json", str(top))
    difference = map_difference(map_json(str(top)), json.loads(theirs.stdout))
    assert difference is None, difference
    with pytest.raises(ParseError) as raised:
        map_json(str(base))
    assert raised.value.clause == "L2-2"
