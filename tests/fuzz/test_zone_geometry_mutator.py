"""fuzz/zone_geometry.py (`fuzz check --mutator zoned`): deterministic, bounded by
max_size, and exploring zone geometries: many zone counts and sizes, tables rewritten
to match, counts past the format's bound, and no crash of check on what it makes."""

from __future__ import annotations

import pathlib

import pytest
from qcow2harness.fuzz import targets
from qcow2harness.fuzz.zone_geometry import geometry_mutate
from qcow2harness.reference.zones import MAX_NR_ZONES

from qcow2harness.image import Image

MAX_SIZE = 65536
ROUNDS = 300


@pytest.fixture(scope="module")
def zoned_seed(seed_files: list[pathlib.Path]) -> bytes:
    return next(p for p in seed_files if p.name == "reference-zoned-base.qcow2").read_bytes()


def _geometry(data: bytes) -> tuple[int, int, int] | None:
    try:
        zoned = Image.from_bytes(data).zoned
    except Exception:  # noqa: BLE001 - a mutant the model refuses has no geometry
        return None
    if zoned is None:
        return None
    return int(zoned.num_zones), int(zoned.zone_size), int(zoned.len_zonedmeta)


def test_deterministic_and_bounded(zoned_seed: bytes) -> None:
    for seed in range(50):
        out = geometry_mutate(zoned_seed, MAX_SIZE, seed)
        assert out == geometry_mutate(zoned_seed, MAX_SIZE, seed)
        assert len(out) <= MAX_SIZE


def test_explores_zone_geometries(zoned_seed: bytes) -> None:
    geometries = [g for seed in range(ROUNDS)
                  if (g := _geometry(geometry_mutate(zoned_seed, MAX_SIZE, seed)))]
    counts = {count for count, _, _ in geometries}
    sizes = {size for _, size, _ in geometries}
    assert len(geometries) > ROUNDS // 2
    assert len(counts) > 50 and len(sizes) > 8
    assert any(count > MAX_NR_ZONES for count in counts)
    # Tables rewritten to match a new count that fits the input.
    assert sum(1 for count, _, table in geometries
               if table == 8 * count and 100 < count <= MAX_SIZE // 8) > 10


def test_check_survives_its_mutants(zoned_seed: bytes) -> None:
    target = targets.get_target("check")
    for seed in range(100):
        data = geometry_mutate(zoned_seed, MAX_SIZE, seed)
        finding = targets.execute(target, data)
        assert finding is None, (seed, finding.summary if finding else None)
