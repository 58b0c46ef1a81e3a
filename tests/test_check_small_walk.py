"""The small-image walk (checker/small.py) on images with many tables, and at its limits.

The corpus images that test_check_fast_paths.py compares have one refcount block, one L2
table and an L1 table shorter than a cluster, so they never reach the small walk's code
for more of each (refcount blocks past the first, L1 tables over several clusters, table
overlaps, findings past the per-clause cap). Here a reference-writer image with 512-byte
clusters has all of them: an L1 table of 129 entries over three clusters, 129 L2 tables,
and three refcount blocks, the last one partial. Each poke below damages it in one way;
`both_ways` checks that the small walk and the numpy walk (its oracle) give the same
report, and each test checks that the poke produced the finding it aims at.

The dispatch tests check the size limits in `_small_l1`: an image at each limit takes
the small walk, one past it does not.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from poke import poke_bytes, poke_header
from qcow2harness.reference.writer import ReferenceWriter
from test_check_fast_paths import both_ways, numpy_walk_in_smallest_pieces

from qcow2harness.checker import check_image, small
from qcow2harness.checker.report import Findings, Report
from qcow2harness.image import OFFSET_MASK, Image

CLUSTER = 512
# 4 MiB + 32 KiB of guest space: 129 L2 tables of 64 entries (32 KiB each).
VIRTUAL_SIZE = (4 << 20) + (32 << 10)
# The small walk's documented limits: host clusters, refcount table entries, L2 entries.
LIMIT_CLUSTERS = 65536
LIMIT_REFTABLE_ENTRIES = 65536
LIMIT_L2_ENTRIES = 16384


@dataclass(frozen=True)
class Base:
    """The many-tables image and where the writer put its tables."""

    data: bytes
    l1_offset: int
    l1: list[int]  # the active L1 entries
    reftable_offset: int
    blocks: list[int]  # the refcount table's non-zero entries, in order
    l2_tables: list[int]  # L2 table offsets, in L1 order

    def l2_entry_at(self, table: int, index: int) -> int:
        """The byte offset of entry `index` of L2 table number `table`."""
        return self.l2_tables[table] + 8 * index

    def l2_entry(self, table: int, index: int) -> int:
        at = self.l2_entry_at(table, index)
        return int.from_bytes(self.data[at:at + 8], "big")


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    path = tmp_path_factory.mktemp("small-walk") / "many-tables.qcow2"
    writer = ReferenceWriter.create(path, VIRTUAL_SIZE, cluster_size=CLUSTER, fsync=False)
    # Four data clusters under every L2 table (entries 0, 5, 10, 15), each a byte value
    # below 0x40 so that no data cluster reads as a compressed L2 entry.
    for table in range(129):
        for k in range(4):
            writer.write(table * 32768 + k * 5 * CLUSTER, bytes([1 + table % 60]) * CLUSTER)
    writer.flush()
    writer.close()
    data = path.read_bytes()
    image = Image.from_bytes(data)
    header = image.header
    l1_offset, reftable_offset = int(header.ofs_l1_table), int(header.ofs_refcount_table)
    l1 = image.read_u64_values("L1 table", l1_offset, int(header.num_l1_entries), "HDR-15")
    reftable = image.read_u64_values("refcount table", reftable_offset,
                                     int(header.num_refcount_table_clusters) * CLUSTER // 8,
                                     "HDR-18")
    blocks = [entry for entry in reftable if entry]
    found = Base(data, l1_offset, l1, reftable_offset, blocks,
                 [entry & OFFSET_MASK for entry in l1])
    # The geometry the tests rely on; if the writer changes, fix the base, not the tests.
    clusters = len(data) // CLUSTER
    assert image.cluster_size == CLUSTER and image.version == 3 and image.refcount_order == 4
    assert len(data) % CLUSTER == 0 and clusters % 2 == 1  # an odd number of clusters
    assert 512 < clusters < 768  # refcount blocks 0 and 1 full, block 2 partial
    assert len(l1) == 129 and all(l1)  # an L1 table over three clusters, no entry unused
    assert len(set(found.l2_tables)) == 129
    assert int(header.num_refcount_table_clusters) == 1
    assert reftable[:3] == blocks and len(blocks) == 3  # entries 0-2 used, 3-63 free
    assert l1_offset == CLUSTER and reftable_offset == 4 * CLUSTER  # clusters 1-3, 4
    assert small.walk_small_image(image, Findings(Report(path="base"))) is not None
    return found


def report_of(data: bytes) -> Report:
    return check_image(Image.from_bytes(data))


def takes_small_walk(data: bytes) -> bool:
    image = Image.from_bytes(data)
    return small.walk_small_image(image, Findings(Report(path="poked"))) is not None


def put_u64(data: bytearray, offset: int, value: int) -> None:
    poke_bytes(data, offset, value, 8)


def test_the_base_image_is_checked_alike(base: Base) -> None:
    """Three refcount blocks (the second and third at clusters 256 and 512 on), and an
    L1 table over three clusters: no findings, and the same report both ways."""
    assert not report_of(base.data).findings
    both_ways(base.data)


# -- pokes: each damages the base one way -------------------------------------------

Poke = Callable[[bytearray, Base], None]


def refcount_block_at_the_end_of_the_file(data: bytearray, base: Base) -> None:
    # a free entry pointing exactly at the end of the file (an odd number of clusters)
    put_u64(data, base.reftable_offset + 3 * 8, len(data))


def reserved_bits_in_ten_refcount_table_entries(data: bytearray, base: Base) -> None:
    for index in range(10, 20):
        put_u64(data, base.reftable_offset + index * 8, 1)


def refcount_block_for_clusters_past_the_end(data: bytearray, base: Base) -> None:
    # entry 3 covers clusters 768 on, all past the end: block 0's counts go there too
    put_u64(data, base.reftable_offset + 3 * 8, base.blocks[0])


def two_refcount_blocks_for_clusters_past_the_end(data: bytearray, base: Base) -> None:
    # entries 3 and 4 (clusters 768 on) reuse blocks 0 and 1, full: the second one must
    # still be read and claimed after the first (256 + 256 counts, cluster 258 claimed twice)
    put_u64(data, base.reftable_offset + 3 * 8, base.blocks[0])
    put_u64(data, base.reftable_offset + 4 * 8, base.blocks[1])


def refcount_table_of_eight_clusters(data: bytearray, base: Base) -> None:
    # the table now also covers refcount block 0 and the L2 tables and data after it
    poke_header(data, "num_refcount_table_clusters", 8)


def two_data_clusters_on_metadata(data: bytearray, base: Base) -> None:
    # data clusters on the L1 table and on the refcount table
    put_u64(data, base.l2_entry_at(0, 0), base.l1_offset | 1 << 63)
    put_u64(data, base.l2_entry_at(0, 5), base.reftable_offset | 1 << 63)


def l2_table_and_data_cluster_on_a_refcount_block(data: bytearray, base: Base) -> None:
    # L1 entry 129 (one more entry, zero until now) and a free L2 entry both use the
    # last refcount block: the second clash still names the refcount block
    poke_header(data, "num_l1_entries", 130)
    put_u64(data, base.l1_offset + 129 * 8, base.blocks[2] | 1 << 63)
    put_u64(data, base.l2_entry_at(0, 1), base.blocks[2] | 1 << 63)


def l1_table_on_the_refcount_table(data: bytearray, base: Base) -> None:
    # both start at one offset: OVL-2 names the refcount table, offset and length
    poke_header(data, "ofs_l1_table", base.reftable_offset)


def l1_table_at_zero_reaching_the_refcount_table(data: bytearray, base: Base) -> None:
    # from offset 0 over the header and the L1 table into the refcount table's first entries
    poke_header(data, "ofs_l1_table", 0)
    poke_header(data, "num_l1_entries", base.reftable_offset // 8 + 4)


def l1_table_of_whole_clusters(data: bytearray, base: Base) -> None:
    # 128 entries fill clusters 1 and 2; cluster 3 (entry 128) is leaked
    poke_header(data, "num_l1_entries", 128)


def reserved_bits_in_two_l2_tables(data: bytearray, base: Base) -> None:
    # 128 L2-1 findings: 32 kept, 96 suppressed
    for table in (3, 4):
        for index in range(64):
            put_u64(data, base.l2_entry_at(table, index), base.l2_entry(table, index) | 2)


def zero_flag_on_two_allocated_entries(data: bytearray, base: Base) -> None:
    # one L2-5 finding for both, at the first (entry 5)
    for index in (5, 10):
        put_u64(data, base.l2_entry_at(7, index), base.l2_entry(7, index) | 1)


# (poke, clause it must produce, text in that finding's message)
POKES: list[tuple[Poke, str, str]] = [
    (refcount_block_at_the_end_of_the_file, "RC-2", "past the end of the file"),
    (reserved_bits_in_ten_refcount_table_entries, "RC-1", "reserved bits"),
    (refcount_block_for_clusters_past_the_end, "RC-5", "for clusters past the end"),
    (two_refcount_blocks_for_clusters_past_the_end, "RC-5", "512 refcount(s) above zero"),
    (refcount_table_of_eight_clusters, "OVL-1", "refcount table"),
    (two_data_clusters_on_metadata, "OVL-1", "2 data cluster(s)"),
    (l2_table_and_data_cluster_on_a_refcount_block, "OVL-1", "(refcount block)"),
    (l1_table_on_the_refcount_table, "OVL-2", "overlaps refcount table"),
    (l1_table_at_zero_reaching_the_refcount_table, "OVL-2", "overlaps active L1 table"),
    (l1_table_of_whole_clusters, "RC-5", "cluster 3 is leaked"),
    (reserved_bits_in_two_l2_tables, "L2-1", "reserved bits"),
    (zero_flag_on_two_allocated_entries, "L2-5", "2 preallocated"),
]


@pytest.mark.parametrize(("poke", "clause", "text"), POKES,
                         ids=[poke.__name__ for poke, _, _ in POKES])
def test_a_poked_base_is_checked_alike(base: Base, poke: Poke, clause: str, text: str) -> None:
    data = bytearray(base.data)
    poke(data, base)
    assert takes_small_walk(bytes(data))
    report = report_of(bytes(data))
    assert any(f.clause == clause and text in f.message for f in report.findings), \
        [f.one_line() for f in report.findings if f.clause == clause]
    both_ways(bytes(data))


def test_findings_past_the_cap_are_counted(base: Base) -> None:
    """The report keeps 32 findings a clause and counts the rest."""
    data = bytearray(base.data)
    reserved_bits_in_two_l2_tables(data, base)
    assert report_of(bytes(data)).suppressed["L2-1"] == 128 - 32


def test_refcount_findings_past_the_cap_are_counted(base: Base) -> None:
    """14 L1 entries cleared leak their L2 table and four data clusters each: 70 RC-5
    findings, 32 listed and 38 counted (70 has no bit in common with 32)."""
    data = bytearray(base.data)
    for index in range(14):
        put_u64(data, base.l1_offset + 8 * index, 0)
    report = report_of(bytes(data))
    assert [f.clause for f in report.findings] == ["RC-5"] * 32
    assert report.suppressed["RC-5"] == 70 - 32
    both_ways(bytes(data))


# -- 1024-byte clusters: offsets whose bit 9 is set are not cluster-aligned -----------


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """1024-byte clusters, 520 data clusters of 0x40 bytes (each 8 of them would be a
    compressed L2 entry), so two refcount blocks (512 clusters each)."""
    path = tmp_path_factory.mktemp("small-walk") / "wide.qcow2"
    writer = ReferenceWriter.create(path, 1 << 20, cluster_size=1024, fsync=False)
    writer.write(0, b"\x40" * (520 * 1024))
    writer.flush()
    writer.close()
    data = path.read_bytes()
    image = Image.from_bytes(data)
    reftable = image.read_u64_values("refcount table", int(image.header.ofs_refcount_table),
                                     2, "HDR-18")
    assert image.cluster_size == 1024 and all(reftable)  # two refcount blocks
    assert image.read_u64_values("L1 table", int(image.header.ofs_l1_table), 8,
                                 "HDR-15")[5:] == [0, 0, 0]
    return data


def test_an_unaligned_l2_table_is_not_read(wide: bytes) -> None:
    """An L1 entry half a cluster into a data cluster: not cluster-aligned (L1-2), so the
    small walk's dispatch does not read it (it would look compressed) and takes the image."""
    data = bytearray(wide)
    image = Image.from_bytes(wide)
    l1 = int(image.header.ofs_l1_table)
    first_l2 = image.read_u64_values("L1 table", l1, 1, "HDR-15")[0] & OFFSET_MASK
    first_data = image.read_u64_values("L2 table", first_l2, 1, "L1-2")[0] & OFFSET_MASK
    put_u64(data, l1 + 7 * 8, first_data + 512)
    assert takes_small_walk(bytes(data))
    assert "L1-2" in report_of(bytes(data)).clauses()
    both_ways(bytes(data))


def test_an_unaligned_refcount_block_does_not_end_the_refcount_table(wide: bytes) -> None:
    """Refcount table entry 0 not cluster-aligned (RC-1): entry 1 is still read."""
    data = bytearray(wide)
    reftable = int(Image.from_bytes(wide).header.ofs_refcount_table)
    block = int.from_bytes(data[reftable:reftable + 8], "big")
    put_u64(data, reftable, block + 512)
    report = report_of(bytes(data))
    assert any(f.clause == "RC-1" and "not cluster-aligned" in f.message
               for f in report.findings)
    assert takes_small_walk(bytes(data))
    both_ways(bytes(data))


# -- dispatch: the limits of a small image -------------------------------------------


def grown(base: Base, clusters: int) -> bytearray:
    """The base with zero clusters appended up to `clusters` clusters."""
    return bytearray(base.data) + bytes(clusters * CLUSTER - len(base.data))


def test_a_file_of_the_most_clusters_is_small(base: Base) -> None:
    data = grown(base, LIMIT_CLUSTERS)
    assert takes_small_walk(bytes(data))
    assert not takes_small_walk(bytes(data + b"\0"))


def test_a_refcount_table_of_the_most_entries_is_small(base: Base) -> None:
    data = bytearray(base.data)
    clusters = LIMIT_REFTABLE_ENTRIES * 8 // CLUSTER
    poke_header(data, "num_refcount_table_clusters", clusters)
    assert takes_small_walk(bytes(data))
    poke_header(data, "num_refcount_table_clusters", clusters + 1)
    assert not takes_small_walk(bytes(data))


def test_an_l1_table_of_the_most_entries_is_small(base: Base) -> None:
    """The L1 table moved to zeros in the middle of a file of the most clusters, its
    entries copied and zeros after them."""
    data = grown(base, LIMIT_CLUSTERS)
    moved = len(data) // 2
    data[moved:moved + len(base.l1) * 8] = struct.pack(f">{len(base.l1)}Q", *base.l1)
    poke_header(data, "ofs_l1_table", moved)
    poke_header(data, "num_l1_entries", LIMIT_CLUSTERS)
    assert takes_small_walk(bytes(data))
    poke_header(data, "num_l1_entries", LIMIT_CLUSTERS + 1)
    assert not takes_small_walk(bytes(data))


def test_the_most_l2_tables_are_small(base: Base) -> None:
    """A new L1 table at the end of the file whose entries point at as many zero clusters
    (empty L2 tables) as the limit of L2 entries allows, then one more."""
    most = LIMIT_L2_ENTRIES * 8 // CLUSTER
    first = len(base.data) // CLUSTER
    data = grown(base, first + most + 1 + 5)  # the tables, then the L1 table
    moved = (first + most + 1) * CLUSTER
    for tables in (most, most + 1):
        entries = [(first + n) * CLUSTER for n in range(tables)]
        data[moved:moved + tables * 8] = struct.pack(f">{tables}Q", *entries)
        poke_header(data, "ofs_l1_table", moved)
        poke_header(data, "num_l1_entries", tables)
        assert takes_small_walk(bytes(data)) == (tables == most)


def test_64_bit_refcounts_are_small(base: Base) -> None:
    """refcount_order 6 is the widest: the small walk decodes it too."""
    data = bytearray(base.data)
    poke_header(data, "refcount_order", 6)
    assert takes_small_walk(bytes(data))
    both_ways(bytes(data))


def test_progress_reaches_the_end_of_each_stage(base: Base) -> None:
    calls: list[tuple[str, int, int]] = []
    image = Image.from_bytes(base.data)
    walk = small.walk_small_image(image, Findings(Report(path="base")),
                                  lambda stage, done, total: calls.append((stage, done, total)))
    assert walk is not None
    tables = len(set(base.l2_tables))
    clusters = len(base.data) // CLUSTER
    assert [call for call in calls if call[0] == "L2 tables"][-1] == ("L2 tables", tables, tables)
    assert [call for call in calls if call[0] == "refcounts"][-1] == ("refcounts", clusters,
                                                                     clusters)


def test_the_numpy_walk_in_small_pieces_reports_each_piece(base: Base) -> None:
    # One L2 table per batch and refcounts 3 clusters at a time: progress rises by one
    # piece per call up to the stage's total.
    calls: list[tuple[str, int, int]] = []
    with numpy_walk_in_smallest_pieces():
        check_image(Image.from_bytes(base.data),
                    lambda stage, done, total: calls.append((stage, done, total)))
    tables = len(set(base.l2_tables))
    clusters = len(base.data) // CLUSTER
    for stage, total, piece in (("L2 tables", tables, 1), ("refcounts", clusters, 3)):
        done = [call[1] for call in calls if call[0] == stage]
        assert {call[2] for call in calls if call[0] == stage} == {total}
        assert done == [min(step, total) for step in range(piece, total + piece, piece)], stage


def test_the_cluster_map_marks_exactly_the_clusters_the_refcount_findings_name(
        base: Base) -> None:
    """One data cluster's stored refcount raised to 2, another's lowered to 0: the map
    calls the first leaked and the second corrupt, and no other cluster either."""
    from qcow2harness.checker import inspect_image
    from qcow2harness.checker.metadata import ClusterKind, cluster_kinds

    data = bytearray(base.data)
    leaked, corrupt = ((base.l2_entry(0, k) & OFFSET_MASK) // CLUSTER for k in (0, 5))
    for cluster, refcount in ((leaked, 2), (corrupt, 0)):  # 16-bit refcounts, block 0
        poke_bytes(data, base.blocks[0] + 2 * cluster, refcount, 2)
    inspection = inspect_image(Image.from_bytes(bytes(data)), cluster_map=True)
    assert inspection.walk is not None
    # (and COPIED no longer matches either refcount: L2-3)
    assert {f.clause for f in inspection.report.findings} == {"L2-3", "RC-4", "RC-5"}
    kinds = cluster_kinds(inspection.walk).tolist()
    assert [i for i, kind in enumerate(kinds) if kind == ClusterKind.LEAKED] == [leaked]
    assert [i for i, kind in enumerate(kinds) if kind == ClusterKind.CORRUPT] == [corrupt]
    assert kinds.count(ClusterKind.DATA) == 129 * 4 - 2  # four data clusters per L2 table


def test_the_cluster_map_marks_zero_and_free_clusters(base: Base) -> None:
    """Entry 5 of L2 table 0 gets the zero flag and keeps its cluster (preallocated: ZERO);
    entries 10 and 15 get the zero flag and the first and second cluster past the end of
    the file (L2-2, and their old clusters leak); a free cluster (refcount 0, no
    reference) is appended."""
    from qcow2harness.checker import inspect_image
    from qcow2harness.checker.metadata import ClusterKind, cluster_kinds

    data = bytearray(base.data)
    zero = (base.l2_entry(0, 5) & OFFSET_MASK) // CLUSTER
    moved = [(base.l2_entry(0, k) & OFFSET_MASK) // CLUSTER for k in (10, 15)]
    data.extend(bytes(CLUSTER))
    poke_bytes(data, base.l2_entry_at(0, 5), base.l2_entry(0, 5) | 1, 8)
    for past, k in enumerate((10, 15)):
        poke_bytes(data, base.l2_entry_at(0, k), (len(data) + past * CLUSTER) | 1, 8)
    inspection = inspect_image(Image.from_bytes(bytes(data)), cluster_map=True)
    assert inspection.walk is not None
    # (L2-5 notes both zero entries with a host cluster)
    assert {f.clause for f in inspection.report.findings} == {"L2-2", "L2-5", "RC-5"}
    kinds = cluster_kinds(inspection.walk).tolist()
    assert [i for i, kind in enumerate(kinds) if kind == ClusterKind.ZERO] == [zero]
    assert [i for i, kind in enumerate(kinds) if kind == ClusterKind.LEAKED] == moved
    assert [i for i, kind in enumerate(kinds) if kind == ClusterKind.FREE] == [len(kinds) - 1]
    assert kinds[0] == ClusterKind.HEADER
