"""The reference tools (reference/tools.py) on their own: repair, convert, refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from qcow2harness.reference.tools import (
    TOOL_RULES,
    Outcome,
    ReferenceTools,
    ToolStep,
)
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig, ZoneState, readable_ranges

from qcow2harness.checker import check_path

KIB = 1024
CONFIG = ZoneConfig(size=6 * 16 * KIB, zone_size=16 * KIB, zone_capacity=12 * KIB,
                    conventional_zones=1, max_open_zones=2, max_active_zones=3,
                    max_append_bytes=4 * KIB)


@pytest.fixture
def image(tmp_path: Path) -> str:
    path = str(tmp_path / "zoned.qcow2")
    with ReferenceWriter.create(path, CONFIG.size, cluster_size=4096, zoned=CONFIG,
                                fsync=False) as writer:
        writer.write(0, b"\x11" * 5000)  # conventional zone
        writer.write(16 * KIB, b"\x22" * 3 * 512)  # zone 1: CLOSED at 1.5 KiB
        writer.write(2 * 16 * KIB, b"\x33" * 512)
        writer.finish_zone(2)  # zone 2: FULL with data only in its first block
        writer.open_zone(3)  # open but empty: EMPTY after reopen
    return path


def reopened(path: str) -> list[tuple[ZoneState, int]]:
    with ReferenceWriter.open(path, fsync=False) as writer:
        assert writer.zones is not None
        return [(z.state, z.wp) for z in writer.zones.report()]


def violations(path: str) -> list[str]:
    return [f.one_line() for f in check_path(path).violations]


def test_repair_of_a_clean_image_changes_nothing(image: str) -> None:
    before = Path(image).read_bytes()
    assert ReferenceTools().run(ToolStep.REPAIR_ALL, image, "").exit_code == 0
    assert Path(image).read_bytes() == before


def test_repair_restores_the_refcounts_a_zone_unaware_repair_freed(image: str) -> None:
    with ReferenceWriter.open(image, fsync=False) as writer:
        assert writer.repair(forget_zonedmeta=True) == 1  # one zonedmeta cluster freed
    assert any("ZONE-21" in line for line in violations(image))
    with ReferenceWriter.open(image, fsync=False) as writer:
        assert writer.repair() == 1
    assert violations(image) == []


def test_convert_to_a_zoned_copy_keeps_every_zone(image: str, tmp_path: Path) -> None:
    copy = str(tmp_path / "copy.qcow2")
    assert ReferenceTools().run(ToolStep.CONVERT_ZONED, image, copy).exit_code == 0
    assert reopened(copy) == reopened(image)
    assert reopened(copy)[2][0] is ZoneState.FULL
    assert violations(copy) == []
    with ReferenceWriter.open(image, fsync=False) as a, ReferenceWriter.open(copy) as b:
        assert a.zones is not None
        for start, end in readable_ranges(a.zones.report()):
            assert a.read(start, end - start) == b.read(start, end - start)


def test_convert_to_raw_is_the_guest_view(image: str, tmp_path: Path) -> None:
    raw = tmp_path / "copy.raw"
    assert ReferenceTools().run(ToolStep.CONVERT_RAW, image, str(raw)).exit_code == 0
    data = raw.read_bytes()
    assert len(data) == CONFIG.size
    assert data[:5000] == b"\x11" * 5000
    assert data[16 * KIB:16 * KIB + 1536] == b"\x22" * 1536
    assert not any(data[16 * KIB + 1536:2 * 16 * KIB])


@pytest.mark.parametrize("step", [s for s, rule in TOOL_RULES.items()
                                  if rule.outcome is not Outcome.ACCEPT])
def test_steps_not_required_are_refused_without_a_change(image: str, tmp_path: Path,
                                                         step: ToolStep) -> None:
    before = Path(image).read_bytes()
    run = ReferenceTools().run(step, image, str(tmp_path / "out"))
    assert run.exit_code != 0 and str(step) in run.message
    assert Path(image).read_bytes() == before
