"""QEMU's maintenance tools on zoned images (properties/tools.py ZONED_TOOL_STEPS).

QEMU 7.2 has no zoned qcow2: every tool must refuse a zoned image (incompatible bit 5,
ZONE-1) with a non-zero exit and leave the file byte-identical. With a zoned-capable QEMU
the tool rules would run on zoned images instead: not written yet, so that test fails
rather than pass silently.
"""

from __future__ import annotations

import pathlib

import pytest
from qcow2harness.properties.stateful import zoned_qemu_unavailable
from qcow2harness.properties.tools import (
    ZONED_STEPS_ACCEPTED,
    ZONED_TOOL_STEPS,
    zoned_tool_outcomes,
)
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig

from qcow2harness import qemu

CONFIG = ZoneConfig(size=16 * 65536, zone_size=65536, zone_capacity=49152, conventional_zones=1,
                    max_open_zones=2, max_active_zones=3, max_append_bytes=4096)


@pytest.fixture
def zoned_image(tmp_path: pathlib.Path) -> str:
    path = str(tmp_path / "zoned.qcow2")
    with ReferenceWriter.create(path, CONFIG.size, cluster_size=4096, zoned=CONFIG,
                                fsync=False) as writer:
        writer.apply({"op": "write", "offset": 0, "length": 8192})
        writer.apply({"op": "append", "zone": 2, "length": 4096})
        writer.apply({"op": "open", "zone": 3})
    return path


def test_every_tool_refuses_a_zoned_image_and_leaves_it_unchanged(
        qemu_tools: None, zoned_image: str, tmp_path: pathlib.Path) -> None:
    if zoned_qemu_unavailable() is None:
        pytest.skip("not run: this QEMU knows zoned qcow2; the refusal table is for one "
                    "that does not")
    outcomes = zoned_tool_outcomes(zoned_image, str(tmp_path))
    assert [o.step for o in outcomes] == [step for step, _ in ZONED_TOOL_STEPS]
    accepted = [f"{o.command}: exit {o.exit_code}" for o in outcomes
                if (o.exit_code == 0) != (o.step in ZONED_STEPS_ACCEPTED)]
    changed = [o.command for o in outcomes if not o.unchanged]
    assert not accepted, f"{qemu.qemu_version()}: unexpected outcome on a zoned image: {accepted}"
    assert not changed, f"refused, but the zoned file changed: {changed}"


def test_tool_rules_on_zoned_images_through_a_zoned_qemu(qemu_tools: None) -> None:
    reason = zoned_qemu_unavailable()
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    pytest.fail("a zoned-capable QEMU is present but the tool rules on zoned images are not "
                "written yet")
