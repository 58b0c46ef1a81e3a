"""QEMU 7.2 refuses zoned images for writing; the rejected autoclear design is flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from qcow2harness.crash.backcompat import autoclear_simulation, old_writer_refuses

pytestmark = pytest.mark.qemu


def test_old_qemu_refuses_every_zoned_image(qemu_tools: None, tmp_path: Path) -> None:
    attempts = old_writer_refuses(str(tmp_path))
    assert len(attempts) >= 30
    bad = [a for a in attempts if not a.ok]
    assert bad == []
    assert all("incompatible feature" in a.message for a in attempts)


def test_autoclear_design_leaves_stale_zones_the_checker_flags(qemu_tools: None,
                                                               tmp_path: Path) -> None:
    result = autoclear_simulation(str(tmp_path))
    assert result.autoclear_after & (1 << 5) == 0, "the old writer clears the unknown bit"
    assert result.extension_kept
    assert result.flagged
    assert any(" ZONE-1 " in line for line in result.after)
    assert any(" WP-10 " in line for line in result.after), "the stale wps under new data"
