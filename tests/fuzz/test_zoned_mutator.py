"""The crafted zoned mutations of fuzz/mutator.py: every field of the zoned extension
and the write-pointer table reached, at the edges the spec's rules draw."""

from __future__ import annotations

import collections
import pathlib
import random

import pytest
from qcow2harness.fuzz import cause
from qcow2harness.fuzz.field_positions import zoned_field_positions
from qcow2harness.fuzz.mutator import layout_of, mutate, zoned_mutate

from qcow2harness.image import Image

ROUNDS = 1500


@pytest.fixture(scope="module")
def zoned_seed(seed_files: list[pathlib.Path]) -> bytes:
    return next(p for p in seed_files if p.name == "reference-zoned-base.qcow2").read_bytes()


def mutants(seed: bytes) -> list[bytes]:
    layout = layout_of(seed)
    assert layout is not None and layout.zoned is not None
    out = []
    for index in range(ROUNDS):
        buf = bytearray(seed)
        zoned_mutate(buf, layout, random.Random(index))
        out.append(bytes(buf))
    return out


def test_layout_knows_the_geometry(zoned_seed: bytes) -> None:
    layout = layout_of(zoned_seed)
    zoned = Image.from_bytes(zoned_seed).zoned
    assert layout is not None and layout.zoned is not None and zoned is not None
    assert layout.zoned.zone_size == zoned.zone_size
    assert layout.zoned.entries == zoned.num_zones
    assert layout.zoned.table == zoned.ofs_zonedmeta


def test_every_zoned_field_and_wp_entry_is_reached(zoned_seed: bytes) -> None:
    touched: collections.Counter[str] = collections.Counter()
    for mutant in mutants(zoned_seed):
        changed = cause.changed_units(zoned_seed, mutant)
        assert changed, "a crafted mutation changes something"
        assert all(u.name.startswith(("zoned.", "zonedmeta[")) for u in changed), changed
        touched.update(u.name.split("[")[0] for u in changed)
    assert {f"zoned.{name}" for name in zoned_field_positions()} <= touched.keys()
    assert touched["zonedmeta"] > ROUNDS // 4


def test_wp_edges_and_byte_orders(zoned_seed: bytes) -> None:
    zoned = Image.from_bytes(zoned_seed).zoned
    assert zoned is not None
    size, cap, table = int(zoned.zone_size), int(zoned.zone_capacity), int(zoned.ofs_zonedmeta)
    seen = set()
    for mutant in mutants(zoned_seed):
        for unit in cause.changed_units(zoned_seed, mutant):
            if not unit.name.startswith("zonedmeta["):
                continue
            index = (unit.offset - table) // 8
            start = index * size
            raw = mutant[unit.offset:unit.offset + 8]
            for order in ("little", "big"):
                value = int.from_bytes(raw, order)
                if value == start + cap:
                    seen.add(f"full-{order}")
                if value == start:
                    seen.add(f"empty-{order}")
                if start + size < value <= start + size + 512:
                    seen.add("past-zone")
                if value >> 60:
                    seen.add("reserved-bits")
            if raw == zoned_seed[unit.offset:unit.offset + 8][::-1]:
                seen.add("byte-swapped")
    assert {"full-little", "full-big", "empty-little", "past-zone", "reserved-bits",
            "byte-swapped"} <= seen, seen


def test_coherent_geometry_keeps_count_and_table_size_in_step(zoned_seed: bytes) -> None:
    agree = 0
    for mutant in mutants(zoned_seed):
        names = {u.name for u in cause.changed_units(zoned_seed, mutant)}
        if "zoned.zone_size" in names and "zoned.num_zones" in names:
            zoned = Image.from_bytes(mutant).zoned
            assert zoned is not None
            assert zoned.len_zonedmeta == 8 * zoned.num_zones
            assert zoned.num_zones == -(-Image.from_bytes(mutant).header.virtual_size
                                        // zoned.zone_size)
            agree += 1
    assert agree > 10


def test_mutate_takes_the_zoned_path_on_zoned_images(zoned_seed: bytes) -> None:
    zoned_only = 0
    for seed in range(400):
        out = mutate(zoned_seed, 1 << 20, seed)
        names = [u.name for u in cause.changed_units(zoned_seed, out)]
        zoned_only += bool(names) and all(n.startswith(("zoned.", "zonedmeta[")) for n in names)
    assert 100 < zoned_only < 350  # about half, beside the generic mutations
