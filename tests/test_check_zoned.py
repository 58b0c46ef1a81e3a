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
from qcow2harness.properties.corruptions import HEADER_FIELDS, ZONED_FIELDS, set_refcount
from qcow2harness.reference.writer import Mutant, ReferenceWriter
from qcow2harness.reference.zones import ZONE_BATCH, ZoneConfig, dead_data_starts

from qcow2harness.checker import check_path
from qcow2harness.checker.report import FINDINGS_PER_CLAUSE, Finding
from qcow2harness.checker.zoned import DeadFrom, plain_entries, read_zoned, table_batches
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


@pytest.fixture(scope="module")
def long_header(small: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """`small` with a 112-byte header: the extensions move 8 bytes on, so the extension's
    data starts at 0x78, and a field's offset shares bits with it."""
    data = bytearray(small.read_bytes())
    length = HEADER_FIELDS["len_header"]
    assert int.from_bytes(data[length[0]:sum(length)], "big") == 104
    assert data[CLUSTER - 8:CLUSTER] == bytes(8)  # room to move into
    data[104:CLUSTER] = bytes(8) + data[104:CLUSTER - 8]
    poke_header(data, "len_header", 112)
    path = tmp_path_factory.mktemp("zoned") / "long-header.qcow2"
    path.write_bytes(data)
    assert _layout(path)[0] == 0x78 and check_path(path).findings == check_path(small).findings
    return path


# One poke per field of the extension that breaks (or, for ZONE-8, exercises) a rule.
FIELD_POKES = [("zoned_model", 0), ("reserved", 1), ("zone_size", 0), ("zone_capacity", 0),
               ("zone_capacity", 48 * KiB), ("num_conventional_zones", 5), ("num_zones", 1),
               ("max_active_zones", 5), ("max_open_zones", 5), ("max_append_bytes", 1),
               ("len_zonedmeta", 0), ("ofs_zonedmeta", 1)]


@pytest.mark.parametrize("image", ["small", "long_header"])
@pytest.mark.parametrize(("field", "value"), FIELD_POKES)
def test_a_zoned_field_finding_points_at_its_field(image: str, tmp_path: pathlib.Path,
                                                    field: str, value: int,
                                                    request: pytest.FixtureRequest) -> None:
    original: pathlib.Path = request.getfixturevalue(image)
    base, _ = _layout(original)
    data = bytearray(original.read_bytes())
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
    # And zone ZONE_BATCH, the first of the second batch, has a wp off a sector boundary.
    poke_file(path, table + 8 * ZONE_BATCH, ZONE_BATCH * zone_size + 7, 8)
    findings = check_path(path).findings
    clusters = zone_size // CLUSTER
    assert [(f.message, f.offset) for f in _of(findings, "WP-10")] == [(
        f"2 zones hold {1 + clusters} guest cluster(s) of data that reads as zeros; "
        f"the first: zone 3: 1 guest cluster(s) at or above {3 * zone_size:#x} (its write "
        "pointer or capacity end) hold data that reads as zeros", table + 8 * 3)]
    others = [f for f in findings if f.clause != "WP-10"]
    assert [f.offset for f in others] == [table + 8 * ZONE_BATCH]
    assert f"zone {ZONE_BATCH}" in others[0].message


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



def _write_table(path: pathlib.Path, offset: int, entries: list[int]) -> None:
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"".join(entry.to_bytes(8, "big") for entry in entries))


def test_dead_from_reads_a_table_wherever_it_lies(tmp_path: pathlib.Path) -> None:
    """A copy of the table at an offset whose bits 19 and 20 are set, which the offset
    of the second and third batch (8 * ZONE_BATCH zones on) also set."""
    zones = 2 * ZONE_BATCH + 5
    path = _zoned_image(tmp_path / "copy.qcow2", zones)
    _, table = _layout(path)
    copy = 0x380008
    assert table + 8 * zones < copy
    rng = random.Random(21)
    entries = [zone * CLUSTER + rng.choice((0, 512, CLUSTER)) for zone in range(zones)]
    with open(path, "r+b") as handle:
        handle.truncate(copy + 8 * zones)
    _write_table(path, copy, entries)
    with Image.open(path) as image:
        found = read_zoned(image)
        assert found is not None
        dead_from = DeadFrom(image, found.fields, copy, zones, "big")
        assert dead_from[list(range(zones))].tolist() == dead_data_starts(found.fields, entries)


# ----- 512-byte clusters: a table of many clusters, entries sharing bits with its offset -----

TINY = 512  # cluster and zone size
TINY_ZONES = 1024  # a table of 16 clusters


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return _zoned_image(tmp_path_factory.mktemp("zoned") / "tiny.qcow2", TINY_ZONES, TINY,
                        cluster_size=TINY, writes=((0, TINY), (700 * TINY, TINY)))


def test_table_batches_read_each_batch_where_it_lies(tiny: pathlib.Path) -> None:
    """From an offset inside the table, in batches of three: each batch holds the
    entries at its own offset, the last one only those left, as the plain reader gives."""
    _, table = _layout(tiny)
    with Image.open(tiny) as image:
        plain = plain_entries(image, table + 8, 5, "big")
        batches = list(table_batches(image, table + 8, 5, "big", batch=3))
    assert plain == [zone * TINY for zone in range(1, 6)]  # zones 1-5: empty
    assert [(first, entries.tolist()) for first, entries in batches] == [
        (0, plain[:3]), (3, plain[3:])]


def _tiny_copy(tiny: pathlib.Path, tmp_path: pathlib.Path) -> tuple[pathlib.Path, int]:
    path = tmp_path / "tiny.qcow2"
    path.write_bytes(tiny.read_bytes())
    return path, _layout(path)[1]


def test_entries_far_into_a_table_are_named_at_their_offset(tiny: pathlib.Path,
                                                            tmp_path: pathlib.Path) -> None:
    path, table = _tiny_copy(tiny, tmp_path)
    assert table & (8 * 200) and table & (8 * 700)  # + and | or ^ differ
    poke_file(path, table + 8 * 200, 200 * TINY + 7, 8)  # off a sector boundary
    _kill_data(path, [700])
    findings = [f for f in check_path(path).findings if f.clause.startswith("WP-")]
    assert [(f.clause, f.offset) for f in findings if f.clause != "WP-10"] != []
    assert {f.offset for f in findings if f.clause != "WP-10"} == {table + 8 * 200}
    assert [f.offset for f in _of(findings, "WP-10")] == [table + 8 * 700]


def test_past_the_cap_a_clause_counts_what_it_does_not_name(tiny: pathlib.Path,
                                                            tmp_path: pathlib.Path) -> None:
    path, table = _tiny_copy(tiny, tmp_path)
    bad = range(100, 170)  # 70 zones: 38 past the cap of 32 named findings
    for zone in bad:
        poke_file(path, table + 8 * zone, zone * TINY + 7, 8)
    report = check_path(path)
    named = [f for f in report.findings if f.clause.startswith("WP-")]
    assert len({f.clause for f in named}) == 1
    assert [f.offset for f in named] == [table + 8 * zone for zone in bad[:FINDINGS_PER_CLAUSE]]
    assert dict(report.suppressed) == {named[0].clause: len(bad) - FINDINGS_PER_CLAUSE}


def _refcount_zero(path: pathlib.Path, cluster: int) -> None:
    data = bytearray(path.read_bytes())
    with Image.open(path) as image:
        set_refcount(data, image, cluster, 0)
    path.write_bytes(data)


def test_zone_21_looks_at_every_table_cluster_and_no_other(tiny: pathlib.Path,
                                                          tmp_path: pathlib.Path) -> None:
    _, table = _layout(tiny)
    first, last = table // TINY, (table + 8 * TINY_ZONES - 1) // TINY
    assert last - first == 8 * TINY_ZONES // TINY - 1
    for cluster, is_table in ((first, True), (last, True), (first - 1, False),
                              (last + 1, False), (last + 2, False)):
        path, _ = _tiny_copy(tiny, tmp_path)
        _refcount_zero(path, cluster)
        found = {f.clause for f in check_path(path).findings}
        assert "RC-4" in found, cluster  # the cluster is in use: the zero is noticed
        assert ("ZONE-21" in found) == is_table, cluster


def test_an_unaligned_table_is_not_judged_for_refcounts(tmp_path: pathlib.Path) -> None:
    """ZONE-19 says the table is misplaced; its clusters are then no one's."""
    path = _zoned_image(tmp_path / "leak.qcow2", 4, mutants=(Mutant.ZONEDMETA_UNREFCOUNTED,))
    base, table = _layout(path)
    poke_file(path, base + ZONED_FIELDS["ofs_zonedmeta"][0], table + 8, 8)
    found = {f.clause for f in check_path(path).findings}
    assert "ZONE-19" in found and "ZONE-21" not in found


def test_a_table_running_past_the_end_of_the_file_shares_no_cluster(
        tiny: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """Pointed at a cluster appended to the file, the table runs past its end (ZONE-20):
    the walk claims none of it, and a cluster no one uses is not shared."""
    path, _ = _tiny_copy(tiny, tmp_path)
    base, _ = _layout(path)
    end = path.stat().st_size
    with open(path, "ab") as handle:
        handle.write(bytes(TINY))
    poke_file(path, base + ZONED_FIELDS["ofs_zonedmeta"][0], end, 8)
    found = {f.clause for f in check_path(path).findings}
    assert {"ZONE-20", "ZONE-21"} <= found and "ZONE-22" not in found


@pytest.mark.parametrize("bitmap, dead", [(1, True), (1 << 32, False), (3 << 32, False)],
                         ids=["subcluster-0-allocated", "subcluster-0-zero", "two-zero"])
def test_dead_data_in_extended_l2_entries(bitmap: int, dead: bool,
                                          tmp_path: pathlib.Path) -> None:
    """WP-10 with extended L2 entries, in an image the series wrote (extended_l2=on with a
    zoned extension; the reference writer writes no extended entries): zone 0 holds 64 KiB,
    its wp is there, and the entry for the next cluster gets a new host cluster with this
    subcluster bitmap. Data only if a subcluster is allocated."""
    from qcow2harness.properties.corruptions import append_clusters

    from qcow2harness import qemu

    reason = qemu.build_unavailable("zoned")
    if reason:
        pytest.skip(f"not run: {reason}")
    path = tmp_path / "extended-zoned.qcow2"
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o",
             "extended_l2=on,cluster_size=64k,zone.mode=host-managed,zone.size=1M,"
             "zone.capacity=1M,zone.conventional_zones=0,zone.max_open_zones=4,"
             "zone.max_active_zones=4,zone.max_append_bytes=64k", str(path), "16M",
             build="zoned")
    qemu.run("qemu-io", "-c", "write -q -P 0x61 0 64k", str(path), build="zoned")
    data = bytearray(path.read_bytes())
    image = Image.from_bytes(bytes(data))
    assert image.header.is_extended_l2
    table = int(image.root.l1_table.entries[0].ofs_l2_table)
    cluster = append_clusters(data, image, 1)
    poke_bytes(data, table + 16, (1 << 63) | cluster, 8)
    poke_bytes(data, table + 24, bitmap, 8)
    path.write_bytes(bytes(data))
    # The series stores write pointers little-endian (its known WP-2 finding).
    clauses = check_path(str(path), wp_byte_order="little").clauses()
    assert ("WP-10" in clauses) == dead, clauses


def test_a_write_pointer_table_ending_past_the_file_is_not_claimed(
        tmp_path: pathlib.Path) -> None:
    """1024 zones of 4 KiB: an 8 KiB table. Moved to the file's last cluster, at an offset
    with bit 13 set (so offset | length is the offset, inside the file), it runs 4 KiB past
    the end: ZONE-20, and the walk claims none of it (no OVL-3)."""
    cluster = 4 * KiB
    path = _zoned_image(tmp_path / "many.qcow2", 1024, cluster, cluster_size=cluster)
    base, table = _layout(path)
    data = bytearray(path.read_bytes())
    moved = -(-len(data) // cluster) * cluster
    while not moved & 8 * KiB:
        moved += cluster
    data[len(data):] = bytes(moved + cluster - len(data))
    data[moved:moved + cluster] = data[table:table + cluster]
    poke_bytes(data, base + ZONED_FIELDS["ofs_zonedmeta"][0], moved, 8)
    path.write_bytes(bytes(data))
    clauses = check_path(str(path)).clauses()
    assert "ZONE-20" in clauses and "OVL-3" not in clauses, clauses
