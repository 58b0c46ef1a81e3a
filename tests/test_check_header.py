"""checker/header.py clause by clause, each with the field it depends on varied to both
sides of its bound, and the offset each finding names (issue #20: one corruption per
clause was blind to off-by-one bounds and offsets). First the feature-bit notes (HDR-10,
HDR-11): a known bit is no finding, and the finding names the unknown bits only."""

from __future__ import annotations

import pathlib

import pytest
from poke import HEADER_FIELDS, poke_header
from qcow2harness.reference.writer import ReferenceWriter

from qcow2harness.checker import check_path
from qcow2harness.image import ExtensionType

# Stated here, not imported from the checker, so a wrong constant there fails a test:
# compatible bit 0 lazy refcounts; autoclear bit 0 bitmaps, bit 1 raw external data.
KNOWN_COMPATIBLE_BITS = 0x1
KNOWN_AUTOCLEAR_BITS = 0x3


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("header") / "plain.qcow2"
    ReferenceWriter.create(path, 1 << 20, fsync=False).close()
    return path.read_bytes()


def _findings(data: bytes | bytearray, tmp_path: pathlib.Path,
              *clauses: str) -> list[tuple[str, str, int | None]]:
    path = tmp_path / "image.qcow2"
    path.write_bytes(data)
    return [(f.clause, f.message, f.offset) for f in check_path(path).findings
            if f.clause in clauses]


def _poked(plain: bytes, **fields: int) -> bytearray:
    data = bytearray(plain)
    for name, value in fields.items():
        poke_header(data, name, value)
    return data


def _clauses(data: bytes | bytearray, tmp_path: pathlib.Path, *clauses: str) -> list[str]:
    return [clause for clause, _, _ in _findings(data, tmp_path, *clauses)]


def _feature_notes(plain: bytes, tmp_path: pathlib.Path,
                   **fields: int) -> list[tuple[str, str, int | None]]:
    """HDR-10 and HDR-11 on `plain` with header fields set (a known autoclear bit may
    bring findings of its own, such as BMP-1)."""
    return _findings(_poked(plain, **fields), tmp_path, "HDR-10", "HDR-11")


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


# -- the rest of checker/header.py ---------------------------------------------------

# HDR-8: version 2 with bytes 72-103 that read as version 3 fields. Each row varies one
# of the things that make them "look like version 3" (checker/header.py docstring).
V2_TAILS = [
    ("no v3 feature", {}, False),
    ("lazy refcounts", {"compatible_features": 1}, True),
    ("bitmaps", {"autoclear_features": 1}, True),
    ("raw data file", {"autoclear_features": 2}, True),
    ("dirty", {"incompatible_features": 1}, True),
    ("unknown incompatible bit", {"incompatible_features": 1 << 20}, False),
    ("unknown compatible bit", {"compatible_features": 1 << 5}, False),
    ("unknown autoclear bit", {"autoclear_features": 1 << 7}, False),
    ("refcount_order 3", {"refcount_order": 3}, True),
    ("refcount_order 5", {"refcount_order": 5}, True),
    ("refcount_order 6", {"refcount_order": 6}, True),
    ("refcount_order 7", {"refcount_order": 7}, False),
    ("header_length 96", {"len_header": 96, "compatible_features": 1}, False),
    ("header_length 108", {"len_header": 108, "compatible_features": 1}, False),
    ("header_length 264", {"len_header": 264, "compatible_features": 1}, True),
    ("header_length = cluster", {"len_header": 1 << 16, "compatible_features": 1}, True),
    ("header_length > cluster", {"len_header": (1 << 16) + 8, "compatible_features": 1},
     False),
]


@pytest.mark.parametrize(("fields", "v3"), [row[1:] for row in V2_TAILS],
                         ids=[row[0] for row in V2_TAILS])
def test_a_version_2_header_followed_by_version_3_fields(
        plain: bytes, tmp_path: pathlib.Path, fields: dict[str, int], v3: bool) -> None:
    assert (1 << 16) == 1 << plain[23]  # the base has 64 KiB clusters
    data = _poked(plain, version=2, **fields)
    found = _findings(data, tmp_path, "HDR-8")
    assert [(clause, offset) for clause, _, offset in found] == ([("HDR-8", 4)] if v3 else [])


def test_a_version_2_file_ending_inside_the_v3_fields(plain: bytes,
                                                       tmp_path: pathlib.Path) -> None:
    data = _poked(plain, version=2, compatible_features=1)[:96]
    assert _clauses(data, tmp_path, "HDR-8", "HDR-15") == ["HDR-15"]


# CRYPT-1, CRYPT-2 and CRYPT-6 by version and crypt_method (32).
CRYPT_ROWS = [
    (2, 0, []),
    (2, 1, [("CRYPT-6", 32)]),
    (2, 2, [("CRYPT-1", 32), ("CRYPT-2", 32)]),
    (3, 1, [("CRYPT-6", 32)]),
    (3, 2, [("CRYPT-2", 32)]),
    (3, 3, [("CRYPT-1", 32)]),
]


@pytest.mark.parametrize(("version", "crypt_method", "expected"), CRYPT_ROWS)
def test_crypt_method_by_version(plain: bytes, tmp_path: pathlib.Path, version: int,
                                 crypt_method: int, expected: list[tuple[str, int]]) -> None:
    data = _poked(plain, version=version, crypt_method=crypt_method)
    found = _findings(data, tmp_path, "CRYPT-1", "CRYPT-2", "CRYPT-6")
    assert [(clause, offset) for clause, _, offset in found] == expected
    if version == 2 and crypt_method == 2:
        assert "not valid in version 2" in found[0][1]
    if crypt_method == 2:
        assert found[-1][1].endswith("crypt_method 2, extension absent")


@pytest.mark.parametrize(("cluster_bits", "reported"), [(13, True), (14, False)])
def test_extended_l2_needs_16_kib_clusters(tmp_path: pathlib.Path, cluster_bits: int,
                                           reported: bool) -> None:
    path = tmp_path / "el2.qcow2"
    ReferenceWriter.create(path, 1 << 20, cluster_size=1 << cluster_bits, fsync=False).close()
    data = _poked(path.read_bytes(), incompatible_features=1 << 4)
    assert _findings(data, tmp_path, "EL2-1") == ([
        ("EL2-1", f"extended L2 entries need cluster_bits >= 14, not {cluster_bits}", 20)]
        if reported else [])


# HDR-23: header bytes 105-111 (after compression_type, before 112) are padding.
PADDING_ROWS = [
    (112, 105, True),
    (112, 111, True),
    (106, 105, True),
    (120, 112, False),  # past 112: an unknown field, not padding
    (112, 104, False),  # compression_type itself
]


@pytest.mark.parametrize(("len_header", "nonzero", "reported"), PADDING_ROWS)
def test_header_padding(plain: bytes, tmp_path: pathlib.Path, len_header: int,
                        nonzero: int, reported: bool) -> None:
    data = _poked(plain, len_header=len_header)
    data[nonzero] = 1
    found = _findings(data, tmp_path, "HDR-23")
    assert [(clause, offset) for clause, _, offset in found] == (
        [("HDR-23", 105)] if reported else [])


# -- the header extension list --------------------------------------------------------

def _with_extensions(plain: bytes, *records: tuple[int, bytes]) -> bytearray:
    """`plain` with these (magic, body) records at header_length, each padded to 8
    bytes, then the end marker."""
    data = bytearray(plain)
    at = int.from_bytes(data[100:104], "big")
    for magic, body in records:
        padded = body + bytes(-len(body) % 8)
        data[at:at + 8 + len(padded)] = (magic.to_bytes(4, "big") + len(body).to_bytes(4, "big")
                                         + padded)
        at += 8 + len(padded)
    data[at:at + 8] = bytes(8)
    return data


UNKNOWN_MAGIC = 0x12345678


@pytest.mark.parametrize(("room", "reported"), [(0, False), (8, True)])
def test_the_end_marker_must_fit_in_cluster_0(plain: bytes, tmp_path: pathlib.Path,
                                              room: int, reported: bool) -> None:
    """An unknown record of odd length (padded by 3) ends 8 bytes before the end of the
    cluster, leaving room for the end marker, or exactly at its end (EXT-1, named where
    the marker should be)."""
    body = bytes(65536 - 104 - 8 - 3 - 8 + room)
    assert (104 + 8 + len(body) + 3) % 8 == 0
    data = _with_extensions(plain, (UNKNOWN_MAGIC, body))
    found = _findings(data, tmp_path, "EXT-1", "EXT-2")
    assert [(clause, offset) for clause, _, offset in found] == (
        [("EXT-1", 65536)] if reported else [])


@pytest.mark.parametrize(("magic", "clause", "length"), [
    (ExtensionType.bitmaps, "BMP-3", 16), (ExtensionType.bitmaps, "BMP-3", 32),
    (ExtensionType.full_disk_encryption, "CRYPT-3", 8),
    (ExtensionType.zoned, "ZONE-3", 48)])
def test_a_fixed_size_extension_of_another_length_is_named_at_its_length(
        plain: bytes, tmp_path: pathlib.Path, magic: int, clause: str, length: int) -> None:
    # Second, after a 4-byte record, so its length field is at an odd multiple of 4.
    data = _with_extensions(_poked(plain, len_header=108), (UNKNOWN_MAGIC, bytes(4)),
                            (magic, bytes(length)))
    found = [(c, offset) for c, message, offset in _findings(data, tmp_path, clause)
             if f"is {length} bytes" in message]
    assert found == [(clause, 108 + 16 + 4)]


def test_feature_name_table_entries_are_named_where_they_are(plain: bytes,
                                                              tmp_path: pathlib.Path) -> None:
    def entry(feature_type: int, bit: int) -> bytes:
        return bytes([feature_type, bit]) + b"name".ljust(46, b"\0")

    table = entry(0, 0) + entry(1, 63) + entry(3, 1) + entry(2, 64)
    data = _with_extensions(_poked(plain, len_header=108), (UNKNOWN_MAGIC, bytes(4)),
                            (ExtensionType.feature_name_table, table + bytes(8)))
    at = 108 + 16
    assert [(clause, offset) for clause, _, offset in _findings(data, tmp_path, "EXT-7")] == [
        ("EXT-7", at + 4), ("EXT-7", at + 8 + 2 * 48), ("EXT-7", at + 8 + 3 * 48)]


def test_a_known_extension_three_times_is_one_ext_3(plain: bytes,
                                                    tmp_path: pathlib.Path) -> None:
    name = (ExtensionType.backing_file_format, b"raw")
    data = _with_extensions(plain, name, name, name)
    assert _clauses(data, tmp_path, "EXT-3") == ["EXT-3"]


def test_an_encryption_extension_without_luks(plain: bytes, tmp_path: pathlib.Path) -> None:
    data = _with_extensions(plain, (ExtensionType.full_disk_encryption, bytes(16)))
    assert _findings(data, tmp_path, "CRYPT-2") == [
        ("CRYPT-2", "full disk encryption extension present iff crypt_method is LUKS: "
         "crypt_method 0, extension present", 104)]


def test_each_backing_and_data_file_finding_once(plain: bytes,
                                                 tmp_path: pathlib.Path) -> None:
    """HDR-24, EXT-5, DATA-4 and DATA-2 come from one shared list; each is reported once,
    in that order."""
    data = _with_extensions(
        _poked(plain, ofs_backing_file_name=16, len_backing_file_name=4,
               incompatible_features=1 << 2, autoclear_features=1 << 1),
        (ExtensionType.backing_file_format, b""), (ExtensionType.external_data_file, b""))
    assert _clauses(data, tmp_path, "HDR-24", "EXT-5", "DATA-4", "DATA-2") == [
        "HDR-24", "EXT-5", "DATA-4", "DATA-2"]


@pytest.mark.parametrize(("len_header", "clause"), [(100, "HDR-6"), ((1 << 16) + 8, "HDR-7")])
def test_a_bad_header_length_does_not_stop_the_header_checks(
        plain: bytes, tmp_path: pathlib.Path, len_header: int, clause: str) -> None:
    data = _poked(plain, len_header=len_header, incompatible_features=1)
    assert _clauses(data, tmp_path, "HDR-6", "HDR-7", "HDR-12") == [clause, "HDR-12"]
