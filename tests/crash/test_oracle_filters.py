"""check_problems(), the crash oracle's first judge: which of the checker's findings a
crash may leave behind (CRASH_ALLOWED, stale refcounts under a dirty lazy_refcounts
image, the clauses the base image already broke) and which it must not. Built on the
real qemu-img's images with the corruption catalogue, so each filter is shown letting
through what it should and nothing more (issue #20)."""

from __future__ import annotations

import pathlib

import pytest
from qcow2harness.properties import corruptions

from qcow2harness.crash.oracle import CRASH_ALLOWED, check_problems

DIRTY = ("incompatible_features", 1)  # bit 0
LAZY = ("compatible_features", 1)  # bit 0


@pytest.fixture
def base(qemu_tools: None, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # built once per session: base_image() caches by directory
    return corruptions.base_image("qemu-default", tmp_path_factory.getbasetemp() / "oracle")


def _judge(tmp_path: pathlib.Path, data: bytes | bytearray, *bits: tuple[str, int],
           base_clauses: set[str] | None = None) -> list[tuple[str, str]]:
    image = bytearray(data)
    for field, bit in bits:  # where each header field lies: the catalogue's checked table
        offset, width = corruptions.HEADER_FIELDS[field]
        value = int.from_bytes(image[offset:offset + width], "big") | bit
        image[offset:offset + width] = value.to_bytes(width, "big")
    path = tmp_path / "state.qcow2"
    path.write_bytes(bytes(image))
    problems, _ = check_problems(str(path), base_clauses)
    return [(problem.prop, problem.message) for problem in problems]


def _broken(base: bytes, clause: str) -> bytearray:
    data = bytearray(base)
    corruptions.corruptions_for(clause)[0].apply(data)
    return data


def test_a_clean_image_has_no_problem(base: bytes, tmp_path: pathlib.Path) -> None:
    assert _judge(tmp_path, base) == []
    assert _judge(tmp_path, base, LAZY) == []


@pytest.mark.parametrize("clause", ["L1-3", "L2-3"])
def test_a_copied_flag_mismatch_is_excused_only_dirty_with_lazy_refcounts(
        base: bytes, tmp_path: pathlib.Path, clause: str) -> None:  # HDR-12, PERS-9
    data = _broken(base, clause)
    assert clause in [prop for prop, _ in _judge(tmp_path, data)]
    assert clause in [prop for prop, _ in _judge(tmp_path, data, LAZY)]
    # dirty, the checker files it under HDR-12, which only lazy_refcounts excuses
    assert [prop for prop, _ in _judge(tmp_path, data, DIRTY)] == ["HDR-12"] * 2
    assert _judge(tmp_path, data, DIRTY, LAZY) == []


def test_a_dirty_bit_without_lazy_refcounts_is_a_problem(base: bytes,
                                                         tmp_path: pathlib.Path) -> None:
    found = _judge(tmp_path, base, DIRTY)
    assert [prop for prop, _ in found] == ["HDR-12"]
    assert found[0][1].endswith(" (dirty bit without lazy_refcounts)")
    assert _judge(tmp_path, base, DIRTY, LAZY) == []


def test_should_findings_a_crash_may_leave_are_let_through(base: bytes,
                                                           tmp_path: pathlib.Path) -> None:
    assert "RC-5" in CRASH_ALLOWED
    leaked = _broken(base, "RC-5")
    assert "RC-5" not in [prop for prop, _ in _judge(tmp_path, leaked)]


@pytest.mark.parametrize("clause", ["DATA-1", "HDR-13"])  # sorting below and above HDR-12
def test_lazy_refcounts_excuses_no_other_should_finding(base: bytes, tmp_path: pathlib.Path,
                                                        clause: str) -> None:
    data = _broken(base, clause)
    for bits in ((), (LAZY,), (DIRTY, LAZY)):  # dirty: an excused HDR-12 comes first
        found = _judge(tmp_path, data, *bits)
        assert [prop for prop, _ in found] == [clause], bits
        assert not found[0][1].endswith("lazy_refcounts)")


def test_each_finding_after_an_allowed_one_is_judged(tmp_path: pathlib.Path) -> None:
    zoned = corruptions.corruptions_for("ZONE-14")[0]
    data = bytearray(corruptions.base_image(zoned.base, tmp_path / "zoned"))
    zoned.apply(data)
    corruptions.corruptions_for("RC-5")[0].apply(data)  # reported before ZONE-14
    assert [prop for prop, _ in _judge(tmp_path, data)] == ["ZONE-14"]


def test_what_the_base_already_broke_is_not_the_crashs(base: bytes,
                                                      tmp_path: pathlib.Path) -> None:
    data = _broken(base, "HDR-13")  # a SHOULD clause: the corrupt bit
    assert "HDR-13" in [prop for prop, _ in _judge(tmp_path, data)]
    assert "HDR-13" not in [prop for prop, _ in _judge(tmp_path, data,
                                                       base_clauses={"HDR-13"})]


def test_a_file_that_is_not_qcow2_is_one_problem(tmp_path: pathlib.Path) -> None:
    found = _judge(tmp_path, b"not an image at all")
    assert [prop for prop, _ in found] == ["HDR-1"]
