"""`qcow2-harness demo` (what `make demo` runs): every section is there and says something."""

from __future__ import annotations

import pathlib

from qcow2harness.demo import run_demo
from qcow2harness.map import map_json


def test_demo_sections(tmp_path: pathlib.Path, qemu_tools: None) -> None:
    sections = dict(run_demo(str(tmp_path)))
    assert any(title.startswith("info ") for title in sections)
    verdicts = sections["check (0 conformant, 2 MUST violated, 3 SHOULD only)"]
    assert "reference-zoned.qcow2" in verdicts and "exit 2  WP-2" in verdicts

    # The map section is map's human table of the zoned image: one row per data extent.
    zoned = tmp_path / "reference-zoned.qcow2"
    rows = sections[f"map {zoned.name}"].splitlines()[1:]
    data_extents = [e for e in map_json(str(zoned)) if e["data"]]
    assert [int(row.split()[0], 0) for row in rows] == [e["start"] for e in data_extents]

    reports = sections["HTML reports (qcow2-harness report)"].splitlines()
    assert len(reports) == 2
    for line in reports:
        page = pathlib.Path(line.split()[0]).read_text()
        assert "data-zone-index" in page and "<section" in page
    assert "crash states checked" in sections["crash campaign (short)"]
