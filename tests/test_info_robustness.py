"""`info` survives any bytes: exit 0 or 2, one line on stderr, never a traceback."""

from __future__ import annotations

import contextlib
import io
import pathlib
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from poke import HEADER_FIELDS, poke_bytes, poke_header

from qcow2harness import cli
from qcow2harness.image import Image


def run_info(path: pathlib.Path) -> tuple[int, str]:
    out, err_stream = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err_stream):
        code = cli.run(["info", "--json", str(path)])
    err = err_stream.getvalue()
    assert code in (cli.EXIT_OK, cli.EXIT_INVALID), err
    if code == cli.EXIT_INVALID:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "byte offset" in lines[0] and "[" in lines[0], lines[0]
    assert "Traceback" not in err
    return code, err


@settings(max_examples=1000)
@given(data=st.binary(min_size=0, max_size=4096))
def test_random_bytes_never_traceback(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.getbasetemp() / "random.img"
    path.write_bytes(data)
    run_info(path)


@settings(max_examples=1000)
@given(data=st.binary(min_size=0, max_size=2048))
def test_random_bytes_behind_a_valid_magic(
    data: bytes, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.getbasetemp() / "magic.img"
    path.write_bytes(b"QFI\xfb\x00\x00\x00\x03" + data)
    run_info(path)


def test_truncations_of_every_corpus_image(
    qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]],
    tmp_path: pathlib.Path,
) -> None:
    directory, manifest = qemu_corpus
    failures = 0
    for entry in manifest:
        data = (directory / entry["file"]).read_bytes()
        # Every length inside the header cluster, then coarser steps.
        step = max(4093, len(data) // 64)
        cuts = sorted({*range(0, min(len(data), 1024), 7), *range(1024, len(data), step)})
        for cut in cuts:
            path = tmp_path / "cut.qcow2"
            path.write_bytes(data[:cut])
            code, _ = run_info(path)
            failures += code == cli.EXIT_INVALID
    assert failures > 0  # truncation is noticed, not silently accepted


HOSTILE = {
    "l1_size 0x7fffffff on a 1 KiB file": {"num_l1_entries": 0x7FFFFFFF},
    "refcount_table_clusters 0xffffff": {"num_refcount_table_clusters": 0xFFFFFF},
    "nb_snapshots 0xffffffff": {"num_snapshots": 0xFFFFFFFF, "ofs_snapshot_table": 0x200},
    "cluster_bits 0xffffffff": {"cluster_bits": 0xFFFFFFFF},
    "header_length 0xfffffff8": {"len_header": 0xFFFFFFF8},
    "backing name size 0xffffffff": {"ofs_backing_file_name": 0x100,
                                     "len_backing_file_name": 0xFFFFFFFF},
}


def minimal_header(cluster_bits: int = 9) -> bytearray:
    """A 1 KiB v3 image whose header points at nothing; fields are then poked."""
    data = bytearray(1024)
    data[0:4] = b"QFI\xfb"
    poke_header(data, "version", 3)
    poke_header(data, "cluster_bits", cluster_bits)
    poke_header(data, "virtual_size", 1 << 30)
    poke_header(data, "refcount_order", 4)
    poke_header(data, "len_header", 104)
    return data


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_stay_bounded(
    case: str, tmp_path: pathlib.Path
) -> None:
    data = minimal_header()
    for field, value in HOSTILE[case].items():
        poke_header(data, field, value)
    path = tmp_path / "hostile.qcow2"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        code, err = run_info(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == cli.EXIT_INVALID, case
    assert peak < 16 * 1024 * 1024, f"{case}: peak {peak} bytes"


def test_extension_length_0xfffffff0_is_refused(
    tmp_path: pathlib.Path
) -> None:
    data = minimal_header()
    # An otherwise sound header (no disk to map, a refcount table in cluster 1), so that
    # the extension list is the first thing wrong.
    poke_header(data, "virtual_size", 0)
    poke_header(data, "ofs_refcount_table", 512)
    poke_header(data, "num_refcount_table_clusters", 1)
    poke_bytes(data, 104, 0x12345678, 4)  # an unknown extension...
    poke_bytes(data, 108, 0xFFFFFFF0, 4)  # ...claiming almost 4 GiB
    path = tmp_path / "ext.qcow2"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        code, err = run_info(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == cli.EXIT_INVALID
    assert "EXT-" in err
    assert peak < 16 * 1024 * 1024


def test_poke_offsets_match_the_parser() -> None:
    for number, field in enumerate(sorted(HEADER_FIELDS), start=1):
        data = minimal_header()
        width = HEADER_FIELDS[field][1]
        value = (0x0102030405060708 + number) & ((1 << (8 * width)) - 1)
        if field == "version":
            value = 2 if number % 2 else 3
        if field == "len_header":
            value = 104
        poke_header(data, field, value)
        header = Image.from_bytes(bytes(data)).header
        assert int(getattr(header, field)) == value, field
