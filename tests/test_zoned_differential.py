"""Map and check of the zoned series against ours (qcow2harness.zoned_differential)."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcow2harness import qemu
from qcow2harness.zoned_differential import (
    DECLARED,
    SCENARIOS,
    DifferentialResult,
    Observation,
    judge,
    run_differential,
)

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> DifferentialResult:
    why = qemu.build_unavailable("zoned")
    if why is not None:
        pytest.skip(f"not run: {why}")
    if not qemu.supports_zoned_qcow2("zoned"):
        pytest.skip(f"not run: {qemu.find_tool('qemu-img', 'zoned')} has no zoned create "
                    "options")
    return run_differential(str(tmp_path_factory.mktemp("zoned-differential")))


def test_every_image_is_mapped_and_checked_by_both(result: DifferentialResult) -> None:
    images = [o.image for o in result.observations]
    assert [i for i in images if i.startswith("series/")] == [
        f"series/{s.name}" for s in SCENARIOS]
    assert sum(i.startswith("corpus/") for i in images) >= 6
    for seen in result.observations:
        assert seen.error == "", (seen.image, seen.error)
        assert seen.theirs["exit"] in (0, 2, 3), (seen.image, seen.theirs)
        assert seen.table_clusters, seen.image  # the table was located in every image
        assert set(seen.repairs) == {"leaks", "all"}


def test_the_declared_deviation_is_still_there(result: DifferentialResult) -> None:
    # WP-2 is declared so that it does not hide the rest; a series that stops writing its
    # table little-endian makes the declaration stale, and this test says so.
    for clause in DECLARED:
        assert len(result.declared_seen[clause]) == len(SCENARIOS), clause


def test_findings_are_one_per_cause_with_a_reproducer(result: DifferentialResult) -> None:
    keys = [f.key for f in result.findings]
    assert len(keys) == len(set(keys))
    for finding in result.findings:
        assert finding.images and finding.reproduce and finding.stock
        assert not finding.clause.startswith("WP-2")  # declared, judged in the series' order


def observation(**changes: object) -> Observation:
    seen = Observation("x", "/nonexistent/x.qcow2", "little", theirs={"exit": 0},
                       table_clusters=(3,), repairs={"leaks": (), "all": ()})
    for key, value in changes.items():
        setattr(seen, key, value)
    return seen


def test_judge_names_each_difference_by_clause() -> None:
    """The judge has teeth, without QEMU: each kind of difference is its own finding."""
    table_leak = observation(image="a", theirs={"exit": 3, "leaks": 1}, leaked=(3,))
    other_leak = observation(image="b", theirs={"exit": 3, "leaks": 1}, leaked=(9,))
    map_diff = observation(image="c", map_difference="map differs from qemu-img map at 0")
    repaired = observation(image="d", repairs={"leaks": ("ZONE-21",), "all": ()})
    broken = observation(image="e", ours_must=("WP-6",), ours_exit=2)
    corrupt = observation(image="f", theirs={"exit": 2, "corruptions": 1})
    asan = observation(image="h", sanitizer={"create": "SUMMARY: AddressSanitizer: x"})
    clean = observation(image="g")
    findings = {f.key: f.images for f in judge([table_leak, other_leak, map_diff, repaired,
                                                broken, corrupt, asan, clean, table_leak])}
    assert findings == {
        ("TOOL-3", "qemu-img check reports the write-pointer table's clusters as leaked"): ["a"],
        ("TOOL-3", "qemu-img check reports leaks the image does not have"): ["b"],
        ("L2-6", "qemu-img map differs from the image's L2 tables"): ["c"],
        ("TOOL-4", "qemu-img check -r frees the write-pointer table"): ["d"],
        ("WP-6", "the series writes an image that breaks it"): ["e"],
        ("TOOL-3", "qemu-img check reports corruption on a conformant image"): ["f"],
        ("TOOL-12", "AddressSanitizer reports a memory error in the create step"): ["h"],
    }


def test_a_qemu_without_zones_is_refused_with_its_reason(tmp_path: Path) -> None:
    from qcow2harness.errors import WriterError

    if qemu.build_unavailable("stock") is not None:
        pytest.skip(f"not run: {qemu.build_unavailable('stock')}")
    with pytest.raises(WriterError, match="no zoned create options"):
        run_differential(str(tmp_path), build="stock")
