"""The differential target's map half: `map` vs `qemu-img map --output=json`."""

from __future__ import annotations

import pathlib
from typing import Any

import pytest
from qcow2harness.fuzz import targets
from qcow2harness.fuzz.targets import TARGETS, execute

import qcow2harness.map as map_module
from qcow2harness import qemu
from qcow2harness.image import Image

pytestmark = pytest.mark.qemu

COMPARED_SEEDS = ("qemu-extended-l2.qcow2", "qemu-compressed-zlib.qcow2",
                  "qemu-preallocation-metadata.qcow2")


def recording_map(monkeypatch: pytest.MonkeyPatch, change: Any = None) -> list[str]:
    """Record every path the target maps; `change` may alter our answer."""
    calls: list[str] = []
    real = map_module.map_json

    def wrapped(path: str) -> list[dict[str, Any]]:
        calls.append(path)
        result = real(path)
        return change(result) if change else result

    monkeypatch.setattr(map_module, "map_json", wrapped)
    return calls


@pytest.mark.parametrize("name", COMPARED_SEEDS)
def test_seeds_map_like_qemu(name: str, qemu_tools: None, monkeypatch: pytest.MonkeyPatch
                             ) -> None:
    data = (pathlib.Path(targets.__file__).resolve().parents[1] / "corpus" / "seeds"
            / name).read_bytes()
    calls = recording_map(monkeypatch)
    assert execute(TARGETS["differential"], data) is None
    assert len(calls) == 1  # the map half ran on this seed


def test_a_wrong_map_is_a_diff_finding(qemu_tools: None, monkeypatch: pytest.MonkeyPatch,
                                       seed_files: list[pathlib.Path]) -> None:
    data = next(p for p in seed_files if p.name == "qemu-v3.qcow2").read_bytes()

    def flip_last_extent(extents: list[dict[str, Any]]) -> list[dict[str, Any]]:
        changed = [dict(e) for e in extents]
        changed[-1]["zero"] = not changed[-1]["zero"]
        return changed

    recording_map(monkeypatch, flip_last_extent)
    finding = execute(TARGETS["differential"], data)
    assert finding is not None and finding.kind == "diff"
    assert "map differs from qemu-img map" in finding.summary


def test_qemu_refusing_is_not_a_finding(qemu_tools: None, monkeypatch: pytest.MonkeyPatch,
                                        seed_files: list[pathlib.Path]) -> None:
    # QEMU 7.2 and stock 10.2 refuse zoned images (incompatible bit 5); we map them.
    if qemu.supports_zoned_qcow2():
        pytest.skip(f"not run: {qemu.qemu_version()} knows zoned qcow2 and opens the zoned "
                    "seed (the zoned differential, qcow2harness.zoned_differential, judges it)")
    zoned = next(p for p in seed_files if p.name == "reference-zoned-partly-written.qcow2")
    calls = recording_map(monkeypatch)
    assert execute(TARGETS["differential"], zoned.read_bytes()) is None
    assert len(calls) == 1


def test_work_bound_skips_huge_maps(qemu_tools: None, monkeypatch: pytest.MonkeyPatch,
                                    seed_files: list[pathlib.Path]) -> None:
    data = next(p for p in seed_files if p.name == "qemu-v3.qcow2").read_bytes()
    with Image.from_bytes(data) as image:
        units = targets.map_work_units(image)
    assert units > 0
    monkeypatch.setattr(targets, "MAP_MAX_UNITS", units - 1)
    calls = recording_map(monkeypatch)
    assert execute(TARGETS["differential"], data) is None
    assert calls == []


def test_slow_qemu_open_skips_the_map(qemu_tools: None, monkeypatch: pytest.MonkeyPatch,
                                      seed_files: list[pathlib.Path]) -> None:
    # An image qemu-img check opened slowly is not opened a second time for the map.
    data = next(p for p in seed_files if p.name == "qemu-v3.qcow2").read_bytes()
    monkeypatch.setattr(targets, "MAP_AFTER_CHECK_SECONDS", 0.0)
    calls = recording_map(monkeypatch)
    assert execute(TARGETS["differential"], data) is None
    assert calls == []
