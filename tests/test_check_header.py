"""The checker's feature-bit notes (HDR-10, HDR-11): a known bit is no finding, and
the finding names the unknown bits only. The corruption catalogue sets unknown bits on
an image with none known, where both would pass unnoticed (issue #20)."""

from __future__ import annotations

import pathlib

import pytest
from poke import HEADER_FIELDS, poke_header
from qcow2harness.reference.writer import ReferenceWriter

from qcow2harness.checker import check_path
from qcow2harness.checker.header import KNOWN_AUTOCLEAR_BITS, KNOWN_COMPATIBLE_BITS


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("header") / "plain.qcow2"
    ReferenceWriter.create(path, 1 << 20, fsync=False).close()
    return path.read_bytes()


def _feature_notes(plain: bytes, tmp_path: pathlib.Path,
                   **fields: int) -> list[tuple[str, str, int | None]]:
    """HDR-10 and HDR-11 on `plain` with header fields set (a known autoclear bit may
    bring findings of its own, such as BMP-1)."""
    data = bytearray(plain)
    for name, value in fields.items():
        poke_header(data, name, value)
    path = tmp_path / "poked.qcow2"
    path.write_bytes(data)
    return [(f.clause, f.message, f.offset) for f in check_path(path).findings
            if f.clause in ("HDR-10", "HDR-11")]


def test_known_feature_bits_are_no_finding(plain: bytes, tmp_path: pathlib.Path) -> None:
    assert _feature_notes(plain, tmp_path, compatible_features=KNOWN_COMPATIBLE_BITS,
                     autoclear_features=KNOWN_AUTOCLEAR_BITS) == []


@pytest.mark.parametrize(("field", "clause", "known"), [
    ("compatible_features", "HDR-10", KNOWN_COMPATIBLE_BITS),
    ("autoclear_features", "HDR-11", KNOWN_AUTOCLEAR_BITS)])
@pytest.mark.parametrize("unknown", [1 << 2, 1 << 63])
def test_only_the_unknown_bits_are_named(plain: bytes, tmp_path: pathlib.Path, field: str,
                                         clause: str, known: int, unknown: int) -> None:
    kind = field.split("_")[0]
    assert _feature_notes(plain, tmp_path, **{field: known | unknown}) == [
        (clause, f"unknown {kind} feature bits {unknown:#x}", HEADER_FIELDS[field][0])]
