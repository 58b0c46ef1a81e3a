"""The checker's zoned findings (qcow2harness/checker/zoned.py): where each one points,
and WP-10 on tables of more than one batch, on zones of every size relative to a
cluster. Written from the mutation campaign's survivors (issue #20): the clause of
each finding was tested, its offset and the tables past the first batch were not.

Offsets are judged against the field tables of the corruption catalogue, which
test_iotests checks against the generated parser, and the table position read from
the parsed extension.
"""

from __future__ import annotations

import pathlib
import random

import pytest
from poke import poke_bytes, poke_file, poke_header
from qcow2harness.properties.corruptions import HEADER_FIELDS, ZONED_FIELDS
from qcow2harness.reference.writer import Mutant, ReferenceWriter
from qcow2harness.reference.zones import ZONE_BATCH, ZoneConfig, dead_data_starts

from qcow2harness.checker import check_path
from qcow2harness.checker.report import Finding
from qcow2harness.checker.zoned import read_zoned
from qcow2harness.image import Image

KiB = 1024
CLUSTER = 64 * KiB
FEATURE_BITS = HEADER_FIELDS["incompatible_features"][0]


def _zoned_image(path: pathlib.Path, zones: int, zone_size: int = CLUSTER, *,
                 cluster_size: int = CLUSTER, writes: tuple[tuple[int, int], ...] = (),
                 mutants: tuple[Mutant, ...] = ()) -> pathlib.Path:
    """A reference-written zoned image; `writes` are (guest offset, length) at wps."""
    size = zones * zone_size
    config = ZoneConfig(size=size, zone_size=zone_size, zone_capacity=zone_size)
    writer = ReferenceWriter.create(path, size, cluster_size=cluster_size, zoned=config,
                                    mutants=mutants, fsync=False)
    for offset, length in writes:
        assert writer.write(offset, b"\x5a" * length).ok
    writer.close()
    return path


def _layout(path: pathlib.Path) -> tuple[int, int]:
    """(where the extension's data starts, where the write-pointer table starts)."""
    with Image.open(path) as image:
        zones = read_zoned(image)
        assert zones is not None
        return zones.ext.offset + 8, zones.table_offset


def _of(findings: list[Finding], clause: str) -> list[Finding]:
    return [f for f in findings if f.clause == clause]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return _zoned_image(tmp_path_factory.mktemp("zoned") / "four.qcow2", 4)


# One poke per field of the extension that breaks (or, for ZONE-8, exercises) a rule.
FIELD_POKES = [("zoned_model", 0), ("reserved", 1), ("zone_size", 0), ("zone_capacity", 0),
               ("zone_capacity", 48 * KiB), ("num_conventional_zones", 5), ("num_zones", 1),
               ("max_active_zones", 5), ("max_open_zones", 5), ("max_append_bytes", 1),
               ("len_zonedmeta", 0), ("ofs_zonedmeta", 1)]


@pytest.mark.parametrize(("field", "value"), FIELD_POKES)
def test_a_zoned_field_finding_points_at_its_field(small: pathlib.Path, tmp_path: pathlib.Path,
                                                    field: str, value: int) -> None:
    base, _ = _layout(small)
    data = bytearray(small.read_bytes())
    offset, width = ZONED_FIELDS[field]
    poke_bytes(data, base + offset, value, width)
    path = tmp_path / "poked.qcow2"
    path.write_bytes(data)
    inside = [f for f in check_path(path).findings
              if f.offset is not None and base <= f.offset < base + 56]
    starts = {start for start, _ in ZONED_FIELDS.values()}
    assert inside and all(f.offset - base in starts for f in inside)  # type: ignore[operator]
    assert base + offset in {f.offset for f in inside}


def test_a_bad_write_pointer_is_named_at_its_table_entry(small: pathlib.Path,
                                                        tmp_path: pathlib.Path) -> None:
    _, table = _layout(small)
    path = tmp_path / "wp.qcow2"
    path.write_bytes(small.read_bytes())
    poke_file(path, table + 8 * 2, 7, 8)  # zone 2: a wp that is no sector boundary
    wrong = [f for f in check_path(path).findings if f.clause.startswith("WP-")]
    assert wrong and {f.offset for f in wrong} == {table + 16}


def test_zone_1_both_ways(small: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data = bytearray(small.read_bytes())
    poke_header(data, "incompatible_features", 0)
    path = tmp_path / "bit-clear.qcow2"
    path.write_bytes(data)
    found = _of(check_path(path).findings, "ZONE-1")
    assert [(f.message, f.offset) for f in found] == [(
        "incompatible bit 5 (zoned) is clear but the zoned extension is present",
        FEATURE_BITS)]
    plain = tmp_path / "plain.qcow2"
    ReferenceWriter.create(plain, 1 << 20, fsync=False).close()
    data = bytearray(plain.read_bytes())
    poke_header(data, "incompatible_features", 1 << 5)
    plain.write_bytes(data)
    found = _of(check_path(plain).findings, "ZONE-1")
    assert [(f.message, f.offset) for f in found] == [(
        "incompatible bit 5 (zoned) is set but the zoned extension is absent", FEATURE_BITS)]


def test_zone_23_points_at_the_feature_bits(small: pathlib.Path, tmp_path: pathlib.Path) -> None:
    data = bytearray(small.read_bytes())
    poke_header(data, "num_snapshots", 1)
    path = tmp_path / "snapshots.qcow2"
    path.write_bytes(data)
    assert [f.offset for f in _of(check_path(path).findings, "ZONE-23")] == [FEATURE_BITS]


def test_an_unrefcounted_table_is_zone_21_at_the_table(tmp_path: pathlib.Path) -> None:
    path = _zoned_image(tmp_path / "leak.qcow2", 4, mutants=(Mutant.ZONEDMETA_UNREFCOUNTED,))
    _, table = _layout(path)
    assert [f.offset for f in _of(check_path(path).findings, "ZONE-21")] == [table]


def test_a_table_sharing_a_cluster_is_zone_22(small: pathlib.Path, tmp_path: pathlib.Path) -> None:
    base, _ = _layout(small)
    data = bytearray(small.read_bytes())
    with Image.open(small) as image:
        l1_table = int(image.header.ofs_l1_table)
    poke_bytes(data, base + ZONED_FIELDS["ofs_zonedmeta"][0], l1_table, 8)
    path = tmp_path / "shared.qcow2"
    path.write_bytes(data)
    assert [f.offset for f in _of(check_path(path).findings, "ZONE-22")] == [l1_table]


# ----- WP-10: data above a write pointer -----

def _kill_data(path: pathlib.Path, zones: list[int]) -> None:
    """Move each zone's write pointer back to the zone start: its data is dead."""
    with Image.open(path) as image:
        found = read_zoned(image)
        assert found is not None
        zone_size, table = int(found.fields["zone_size"]), found.table_offset  # type: ignore[arg-type]
    for zone in zones:
        poke_file(path, table + 8 * zone, zone * zone_size, 8)


@pytest.mark.parametrize("zone_size", [CLUSTER, 2 * CLUSTER])
def test_dead_data_past_the_first_batch(tmp_path: pathlib.Path, zone_size: int) -> None:
    zones = ZONE_BATCH + 2  # the last batch holds two zones
    last = zones - 1
    path = _zoned_image(tmp_path / "big.qcow2", zones, zone_size,
                        writes=((3 * zone_size, CLUSTER), (last * zone_size, zone_size)))
    _kill_data(path, [3, last])
    _, table = _layout(path)
    wp_10 = _of(check_path(path).findings, "WP-10")
    clusters = zone_size // CLUSTER
    assert [(f.message, f.offset) for f in wp_10] == [(
        f"2 zones hold {1 + clusters} guest cluster(s) of data that reads as zeros; "
        f"the first: zone 3: 1 guest cluster(s) at or above {3 * zone_size:#x} (its write "
        "pointer or capacity end) hold data that reads as zeros", table + 8 * 3)]


def test_dead_data_in_one_zone(tmp_path: pathlib.Path) -> None:
    path = _zoned_image(tmp_path / "one.qcow2", 4, writes=((2 * CLUSTER, CLUSTER),))
    _kill_data(path, [2])
    _, table = _layout(path)
    assert [(f.message, f.offset) for f in _of(check_path(path).findings, "WP-10")] == [(
        f"zone 2: 1 guest cluster(s) at or above {2 * CLUSTER:#x} (its write pointer or "
        "capacity end) hold data that reads as zeros", table + 16)]


def test_zones_smaller_than_a_cluster_are_not_judged_for_dead_data(
        tmp_path: pathlib.Path) -> None:
    # Zone 0 empty, zone 1 full: their shared cluster holds zone 1's live data.
    zone_size = CLUSTER // 2
    path = _zoned_image(tmp_path / "small-zones.qcow2", 4, zone_size,
                        writes=((zone_size, zone_size),))
    report = check_path(path)
    assert report.findings == [] and report.stats["data_clusters"] == 1


def test_dead_from_agrees_with_the_reference_on_every_zone(tmp_path: pathlib.Path) -> None:
    """Across batches, in any order: DeadFrom's cached batches give the plain
    reference's dead_data_starts()."""
    zones = 2 * ZONE_BATCH + 5
    path = _zoned_image(tmp_path / "random.qcow2", zones)
    _, table = _layout(path)
    rng = random.Random(20)
    entries = [zone * CLUSTER + rng.choice((0, 512, CLUSTER, CLUSTER + 512, 7))
               for zone in range(zones)]
    with open(path, "r+b") as handle:
        handle.seek(table)
        handle.write(b"".join(entry.to_bytes(8, "big") for entry in entries))
    with Image.open(path) as image:
        found = read_zoned(image)
        assert found is not None and found.dead_from is not None
        expected = dead_data_starts(found.fields, entries)
        order = list(range(zones))
        rng.shuffle(order)
        for start in range(0, zones, 40_000):  # mixed batches in one lookup
            chosen = order[start:start + 40_000]
            assert found.dead_from[chosen].tolist() == [expected[z] for z in chosen]
        assert found.dead_from.at(zones - 1) == expected[-1]


def test_a_little_endian_table_is_read_as_such_by_name(small: pathlib.Path,
                                                       tmp_path: pathlib.Path) -> None:
    _, table = _layout(small)
    path = tmp_path / "little.qcow2"
    path.write_bytes(small.read_bytes())
    for zone in range(4):
        poke_file(path, table + 8 * zone, int.from_bytes((zone * CLUSTER).to_bytes(8, "big"),
                                                          "little"), 8)
    order = "".join(["lit", "tle"])  # not the interned literal: compared by value
    assert check_path(path, wp_byte_order=order).findings == []
    assert [f.clause for f in check_path(path).findings] == ["WP-2"]


def test_the_last_entry_of_a_short_table_is_judged(small: pathlib.Path,
                                                   tmp_path: pathlib.Path) -> None:
    _, table = _layout(small)
    path = tmp_path / "last.qcow2"
    path.write_bytes(small.read_bytes())
    poke_file(path, table + 8 * 3, 7, 8)
    assert {f.offset for f in check_path(path).findings} == {table + 24}

