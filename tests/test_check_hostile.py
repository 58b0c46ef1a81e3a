"""The CVE-2014 header family (qemu-iotests 080) and other hostile headers.

Each case maps to a clause and gets exit 2, within bounded memory and time,
never a traceback. Images are made by the real qemu-img, then poked.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import shutil
import tracemalloc
from typing import Any

import pytest
from poke import poke_bytes, poke_header

from qcow2harness import cli
from qcow2harness.checker import check_path

PEAK_LIMIT = 64 * 1024 * 1024

# name -> (header fields to poke, clause that must be reported)
HEADER_CASES: dict[str, tuple[dict[str, int], str]] = {
    "header_length above the cluster size": ({"len_header": 0x10008}, "HDR-7"),
    "header_length not a multiple of 8": ({"len_header": 105}, "HDR-6"),
    "huge refcount table": ({"num_refcount_table_clusters": 0xFFFFFF}, "HDR-19"),
    "refcount table offset unaligned": ({"ofs_refcount_table": 0x10001}, "HDR-18"),
    "refcount table past the end": ({"ofs_refcount_table": 1 << 40}, "HDR-18"),
    "huge l1_size": ({"num_l1_entries": 0x7FFFFFFF}, "HDR-17"),
    "l1_size too small for the virtual size": ({"num_l1_entries": 0,
                                                "virtual_size": 1 << 40}, "HDR-16"),
    "L1 table offset unaligned": ({"ofs_l1_table": 0x30001}, "HDR-15"),
    "L1 table past the end": ({"ofs_l1_table": 1 << 40}, "HDR-15"),
    "huge nb_snapshots": ({"num_snapshots": 0xFFFFFFFF, "ofs_snapshot_table": 0x10000},
                          "HDR-21"),
    "snapshot table offset unaligned": ({"num_snapshots": 1, "ofs_snapshot_table": 0x10001},
                                        "HDR-20"),
    "backing name longer than 1023": ({"ofs_backing_file_name": 0x1000,
                                       "len_backing_file_name": 1024}, "HDR-24"),
    "cluster_bits 8": ({"cluster_bits": 8}, "HDR-4"),
    "cluster_bits 22": ({"cluster_bits": 22}, "HDR-5"),
    "cluster_bits 0xffffffff": ({"cluster_bits": 0xFFFFFFFF}, "HDR-5"),
    "refcount_order 7": ({"refcount_order": 7}, "HDR-14"),
    "unknown incompatible bits": ({"incompatible_features": 1 << 40}, "HDR-9"),
}


def run_bounded(path: pathlib.Path) -> tuple[int, str, int]:
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(["check", "--json", str(path)])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), peak


@pytest.fixture
def base(tmp_path: pathlib.Path,
         qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]]) -> pathlib.Path:
    directory, _ = qemu_corpus
    path = tmp_path / "hostile.qcow2"
    shutil.copy(directory / "qemu-compat-1.1.qcow2", path)
    return path


@pytest.mark.parametrize("name", sorted(HEADER_CASES))
def test_hostile_header(name: str, base: pathlib.Path) -> None:
    fields, clause = HEADER_CASES[name]
    data = bytearray(base.read_bytes())
    for field, value in fields.items():
        poke_header(data, field, value)
    base.write_bytes(bytes(data))
    code, output, peak = run_bounded(base)
    assert code == cli.EXIT_INVALID, output
    assert f'"clause": "{clause}"' in output, output
    assert peak < PEAK_LIMIT, f"{name}: peak {peak} bytes"


def test_extension_length_0xfffffff0(base: pathlib.Path) -> None:
    data = bytearray(base.read_bytes())
    with_ext = 112  # first extension after the 112-byte header qemu-img writes
    poke_bytes(data, with_ext + 4, 0xFFFFFFF0, 4)
    base.write_bytes(bytes(data))
    code, output, peak = run_bounded(base)
    assert code == cli.EXIT_INVALID
    assert '"clause": "EXT-2"' in output, output
    assert peak < PEAK_LIMIT


def test_l1_size_0x7fffffff_on_a_1k_file(tmp_path: pathlib.Path) -> None:
    data = bytearray(1024)
    data[0:4] = b"QFI\xfb"
    for field, value in {"version": 3, "cluster_bits": 16, "virtual_size": 1 << 30,
                         "refcount_order": 4, "len_header": 104,
                         "num_l1_entries": 0x7FFFFFFF, "ofs_l1_table": 0x10000}.items():
        poke_header(data, field, value)
    path = tmp_path / "tiny.qcow2"
    path.write_bytes(bytes(data))
    code, output, peak = run_bounded(path)
    assert code == cli.EXIT_INVALID
    assert '"clause": "HDR-17"' in output
    assert peak < PEAK_LIMIT


def test_every_finding_names_a_known_clause(base: pathlib.Path) -> None:
    from qcow2harness.spec.registry import load

    registry = load()
    for fields, _ in HEADER_CASES.values():
        data = bytearray(base.read_bytes())
        for field, value in fields.items():
            poke_header(data, field, value)
        damaged = base.with_suffix(".damaged")
        damaged.write_bytes(bytes(data))
        for finding in check_path(damaged).findings:
            assert finding.clause in registry
