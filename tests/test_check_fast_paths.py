"""The checker's fast paths give the same verdicts as the one home they stand in for.

- `walk_l1_tables` hands images with few L1 entries in all (`SMALL_L1_WALK`) to
  `walk_small_l1_tables`, which works on Python ints. The one home is the numpy walk:
  every image is checked with the threshold below zero (numpy only) and far above
  (Python only), on the whole committed corpus (corpus/**.qcow2), on every targeted
  corruption, on poked seeds and on the structure-aware mutator's chains.
- `check_metadata` hands small images with only standard L2 entries and the active L1
  table to `checker/small.py`, which walks them on Python ints without importing numpy.
  The one home is the numpy walk (`small.SMALL_WALK` off), compared on the same inputs.
- the image model parses through `FileStream` (the generated parser's sub-streams too),
  whose complete reads skip two runtime calls and whose size is measured once. The
  oracle is the runtime's own `KaitaiStream` everywhere.
- `Image` keeps its cluster size and the header extension list's ParseError once found.
  The oracle is an image that finds both again on every use.

Each property checks one image both ways and compares the whole report: findings in
order with their messages and offsets, suppressed counts, stats.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kaitaistruct import KaitaiStream
from qcow2harness.properties import corruptions as corr
from qcow2harness.properties.strategies import targeted_corruptions

from qcow2harness.checker import check_image, small
from qcow2harness.checker import metadata as md
from qcow2harness.errors import HarnessError
from qcow2harness.image import ExtensionType, Image

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "corpus"
SEEDS = sorted((CORPUS / "seeds").glob("*.qcow2"))
SEED_BYTES = [path.read_bytes() for path in SEEDS]
# Every committed image: the seeds, the regressions (and corpus/broken when built).
CORPUS_IMAGES = sorted(CORPUS.rglob("*.qcow2"))


def verdict(data: bytes) -> Any:
    """Everything the checker says about `data`, timing aside."""
    try:
        image = Image.from_bytes(data)
    except HarnessError as error:
        return ("refused", type(error).__name__, str(error), error.clause, error.offset)
    report = check_image(image)
    summary = report.to_json()
    summary["stats"].pop("seconds")
    return summary, [finding.one_line() for finding in report.findings]


_kept_cluster_size = Image.cluster_size.fget  # type: ignore[attr-defined]


def _cluster_size_every_time(image: Image) -> int:
    image._cluster_size = None
    return _kept_cluster_size(image)  # type: ignore[no-any-return]


def both_ways(data: bytes) -> None:
    fast = verdict(data)
    numpy_l1, python_l1, _ = walks(data)
    with mock.patch.object(Image, "extensions", Image._read_extensions), \
            mock.patch.object(Image, "cluster_size", property(_cluster_size_every_time)):
        uncached = verdict(data)
    with mock.patch("qcow2harness.image.FileStream", KaitaiStream), \
            mock.patch("qcow2harness.parser.qcow2.KaitaiStream", KaitaiStream), \
            mock.patch("qcow2harness.parser.qcow2_bitmaps.KaitaiStream", KaitaiStream):
        runtime_stream = verdict(data)
    assert numpy_l1 == python_l1 == fast, "numpy, Python-int L1 and small-image walks disagree"
    assert smallest_pieces(data) == in_pieces(fast), "the numpy walk cut small disagrees"
    assert fast == uncached, "Image's kept cluster size / extension error change a verdict"
    assert fast == runtime_stream, "FileStream and the runtime's KaitaiStream disagree"


# Offsets of the fields a poke goes to: header fields, the first L1 and refcount table
# entries, and the snapshot table (where many-snapshot images come from).
BOUNDARIES = (0, 1, 2, 0x200, 0x10000, 0x10001, 1 << 55, 1 << 62, 1 << 63,
              0x00FFFFFFFFFFFE00, 0x7F000000000001FF, 0xFFFFFFFFFFFFFFFF)


@st.composite
def poked_seeds(draw: st.DrawFn) -> bytes:
    """A committed seed with a few 8-byte pokes at table entries, maybe a snapshot count
    of up to a few hundred (zero-filled tables make many small snapshot L1 tables), maybe
    cut short."""
    data = bytearray(draw(st.sampled_from(SEED_BYTES)))
    try:
        image = Image.from_bytes(bytes(data))
        cluster_size = image.cluster_size
        targets = [int(image.header.ofs_l1_table), int(image.header.ofs_refcount_table),
                   int(image.header.ofs_snapshot_table), cluster_size, 2 * cluster_size]
    except HarnessError:
        targets = [0]
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.sampled_from(targets)) + 8 * draw(st.integers(0, 6))
        value = draw(st.sampled_from(BOUNDARIES) | st.integers(0, (1 << 64) - 1))
        if at + 8 <= len(data):
            data[at:at + 8] = struct.pack(">Q", value)
    if draw(st.booleans()) and len(data) >= 72:
        data[60:64] = struct.pack(">I", draw(st.integers(1, 400)))
        if draw(st.booleans()):
            data[64:72] = struct.pack(">Q", draw(st.sampled_from(targets)))
    if draw(st.integers(0, 9)) == 0:
        data = data[:draw(st.integers(0, len(data)))]
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=poked_seeds())
def test_fast_paths_agree_on_poked_seeds(data: bytes) -> None:
    both_ways(data)


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(drawn=targeted_corruptions())
def test_fast_paths_agree_on_targeted_corruptions(
    drawn: tuple[corr.Corruption, dict[str, Any]], base: Callable[[str], bytes]
) -> None:
    corruption, params = drawn
    both_ways(corruption.broken(base(corruption.base), **params))


def test_many_snapshot_tables_are_checked() -> None:
    """A snapshot table of 300 entries in the zeros past the data: the case that made a
    per-table walk slow. SNAP-5 is suppressed past 32; both L1 walks report the same."""
    data = bytearray(next(s for p, s in zip(SEEDS, SEED_BYTES, strict=True)
                          if p.name == "qemu-snapshot.qcow2"))
    image = Image.from_bytes(bytes(data))
    data[60:64] = struct.pack(">I", 300)
    data += bytes(300 * 40)
    data[64:72] = struct.pack(">Q", len(data) - 300 * 40)
    fast = verdict(bytes(data))
    assert fast[0]["suppressed"].get("SNAP-5", 0) > 0 or image.version < 3
    both_ways(bytes(data))


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], bytes]:
    from qcow2harness import qemu

    directory = tmp_path_factory.mktemp("fast-path-bases")

    def get(kind: str) -> bytes:
        if kind.startswith("qemu-"):
            for tool in ("qemu-img", "qemu-io"):
                if qemu.find_tool(tool) is None:
                    pytest.skip(f"not run: {tool} not found (base image {kind} is made by "
                                f"QEMU; install qemu-utils or set {qemu.TOOL_ENV[tool]})")
        return corr.base_image(kind, directory)

    return get


def test_empty_snapshot_l1_table_past_the_end_is_still_reported() -> None:
    """An empty snapshot L1 table is skipped only inside the file: one placed past the end
    is SNAP-3."""
    data = bytearray(next(s for p, s in zip(SEEDS, SEED_BYTES, strict=True)
                          if p.name == "qemu-snapshot.qcow2"))
    image = Image.from_bytes(bytes(data))
    table = int(image.header.ofs_snapshot_table)
    past_end = (-(-len(data) // image.cluster_size) + 4) * image.cluster_size
    data[table:table + 8] = struct.pack(">Q", past_end)
    data[table + 8:table + 12] = struct.pack(">I", 0)
    fast = verdict(bytes(data))
    assert any(finding["clause"] == "SNAP-3" for finding in fast[0]["violations"])
    both_ways(bytes(data))


# An L2 batch reports these once per batch, with that batch's count.
PER_BATCH = ("OVL-1", "L2-5")


def in_pieces(found: Any) -> Any:
    """What must not depend on how the numpy walk cuts its work: the clauses reported, the
    totals, and each finding but those reported PER_BATCH (an L2 batch reports clause by
    clause, so only their order may change)."""
    if found[0] == "refused":
        return found
    summary, lines = found
    return (sorted(summary["counts"]), summary["stats"], summary["exit_code"],
            sorted(line for line in lines if line.split()[1] not in PER_BATCH))


@contextlib.contextmanager
def numpy_walk_in_smallest_pieces() -> Iterator[None]:
    """The numpy walk alone, one L2 table per batch and refcounts compared 3 clusters at a
    time (L2_BATCH_BYTES, COMPARE_CHUNK: 4 MiB each by default)."""
    with mock.patch.object(small, "SMALL_WALK", False), \
            mock.patch.object(md, "L2_BATCH_BYTES", 1), \
            mock.patch.object(md, "COMPARE_CHUNK", 3):
        yield


def smallest_pieces(data: bytes) -> Any:
    """in_pieces of the numpy walk in its smallest pieces."""
    with numpy_walk_in_smallest_pieces():
        return in_pieces(verdict(data))


def walks(data: bytes) -> tuple[Any, Any, Any]:
    """The verdict of the numpy walk with the numpy L1 walk only, of the numpy walk with
    the Python-int L1 walk only, and the default one (small images: checker/small.py)."""
    with mock.patch.object(small, "SMALL_WALK", False):
        with mock.patch.object(md, "SMALL_L1_WALK", -1):
            numpy_l1 = verdict(data)
        with mock.patch.object(md, "SMALL_L1_WALK", 1 << 30):
            python_l1 = verdict(data)
    return numpy_l1, python_l1, verdict(data)


def l1_walks(data: bytes) -> tuple[Any, Any]:
    """The numpy-only verdict, and the verdict of the fast paths (Python-int L1 walk, and
    the small-image walk where it applies)."""
    numpy_l1, python_l1, default = walks(data)
    assert python_l1 == default, "the small-image walk and the numpy walk disagree"
    assert smallest_pieces(data) == in_pieces(default), "the numpy walk cut small disagrees"
    return numpy_l1, python_l1


CONFORMANT = [CORPUS / image["file"] for image in json.loads(
    (CORPUS / "manifest.json").read_text())["images"]
    if image["conformant"] and (CORPUS / image["file"]).is_file()]


def assert_clean_by_each_walk(data: bytes) -> None:
    """The same verdict, exit 0 and no finding, by the numpy walk, the Python-int L1 walk
    and the default."""
    numpy_walk, fast, default = walks(data)
    assert numpy_walk == fast == default
    summary, lines = default
    assert summary["exit_code"] == 0 and lines == [], lines


@pytest.mark.parametrize("path", CONFORMANT, ids=lambda p: p.name)
def test_every_image_the_manifest_calls_conformant_checks_clean(path: pathlib.Path) -> None:
    # Made by qemu-img or the reference writer (corpus/manifest.json): any finding on
    # them, by either walk, is the checker's error.
    assert_clean_by_each_walk(path.read_bytes())


@pytest.mark.parametrize("path", CORPUS_IMAGES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_l1_walks_agree_on_the_whole_corpus(path: pathlib.Path) -> None:
    numpy_l1, python_l1 = l1_walks(path.read_bytes())
    assert numpy_l1 == python_l1


@pytest.mark.parametrize("c", corr.CORRUPTIONS, ids=lambda c: c.id)
def test_l1_walks_agree_on_every_corruption(c: corr.Corruption,
                                            base: Callable[[str], bytes]) -> None:
    numpy_l1, python_l1 = l1_walks(c.broken(base(c.base)))
    assert numpy_l1 == python_l1


def test_l1_walks_agree_on_mutants() -> None:
    """The structure-aware mutator's chains from the seeds (it rewrites L1 entries: COPIED
    flipped, offsets at other tables, past the end, unaligned)."""
    from qcow2harness.fuzz.bench import mutated_mix

    for data in mutated_mix(800, seed=3):
        numpy_l1, python_l1 = l1_walks(data)
        assert numpy_l1 == python_l1


def _seed(name: str) -> bytearray:
    return bytearray(next(s for p, s in zip(SEEDS, SEED_BYTES, strict=True) if p.name == name))


def _put_l1_entries(data: bytearray, table: int, indices: Iterable[int], value: int) -> None:
    for index in indices:
        data[table + 8 * index:table + 8 * index + 8] = struct.pack(">Q", value)


@pytest.mark.parametrize("name", ["qemu-snapshot.qcow2", "qemu-data-file.qcow2"])
def test_l1_walks_agree_on_shared_l2_tables_and_stale_snapshots(name: str) -> None:
    """Active L1 entries sharing an L2 table (its weight, and the guest base of the first
    entry: DATA-5 compares guest and host offsets with an external data file), and a
    snapshot L1 table with several entries whose COPIED flag is stale (L1-4's count and
    first entry)."""
    data = _seed(name)
    image = Image.from_bytes(bytes(data))
    l1 = image.l1_entries()
    l2 = int(l1[l1 != 0][0]) & int(md.OFFSET_MASK)
    _put_l1_entries(data, int(image.header.ofs_l1_table), (2, 5), l2)
    if image.snapshots():  # COPIED clear, the table's stored refcount 1: stale
        _put_l1_entries(data, int(image.snapshots()[0].ofs_l1_table), (1, 3, 4), l2)
    numpy_l1, python_l1 = l1_walks(bytes(data))
    if image.snapshots():
        assert "L1-4" in {f["clause"] for f in numpy_l1[0]["violations"] + numpy_l1[0]["notes"]}
    assert numpy_l1 == python_l1


def test_one_line_pads_as_the_format_spec_did() -> None:
    """Finding.one_line pads with ljust; the oracle is the format spec it replaced, over
    every clause and level of the registry, with and without an offset."""
    from qcow2harness.spec.registry import load

    from qcow2harness.checker.report import Finding

    for clause, level in load().levels.items():
        for offset in (None, 0, 0x1234):
            finding = Finding(clause, level, "message", offset)
            where = f" (offset {offset:#x})" if offset is not None else ""
            assert finding.one_line() == f"{level:<6} {clause:<8} message{where}"


# === start-up: numpy is imported only where a table needs it (issue #19) ===

NUMPY_PROBE = """
import contextlib, io, sys
from qcow2harness import cli
if len(sys.argv) > 1:
    with contextlib.redirect_stdout(io.StringIO()):
        code = cli.run(sys.argv[1:])
else:
    import qcow2harness.checker, qcow2harness.image, qcow2harness.info, qcow2harness.map
    import qcow2harness.structure
    code = 0
print(code, "numpy" in sys.modules)
"""


def numpy_loaded(*argv: str) -> tuple[int, bool]:
    """(exit code, whether numpy was imported) of cli.run(argv) in a fresh interpreter;
    without argv, of importing the image model, the checker, info, map and structure."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", NUMPY_PROBE, *argv], capture_output=True,
                          text=True, check=True)
    code, loaded = done.stdout.split()
    return int(code), loaded == "True"


def test_importing_the_image_model_and_the_commands_loads_no_numpy() -> None:
    assert numpy_loaded() == (0, False)


@pytest.mark.parametrize("name", ["qemu-v3-empty.qcow2", "qemu-v3.qcow2", "qemu-v2.qcow2"])
def test_checking_a_small_image_loads_no_numpy(name: str) -> None:
    image = next(path for path in SEEDS if path.name == name)
    assert numpy_loaded("check", str(image)) == (0, False)


def test_info_of_a_small_image_loads_no_numpy() -> None:
    image = next(path for path in SEEDS if path.name == "qemu-v3.qcow2")
    assert numpy_loaded("info", "--json", str(image)) == (0, False)


@pytest.mark.parametrize("path", CORPUS_IMAGES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_info_counts_tables_alike_with_and_without_numpy(path: pathlib.Path) -> None:
    from qcow2harness import info
    from qcow2harness.errors import ParseError

    plain: dict[str, int] | str | None
    with_numpy: dict[str, int] | str | None
    with Image.open(path) as image:
        try:
            plain = info.describe_clusters(image)
        except ParseError as error:
            plain = error.clause
        with mock.patch.object(info, "PLAIN_TABLE_ENTRIES", -1):
            try:
                with_numpy = info.describe_clusters(image)
            except ParseError as error:
                with_numpy = error.clause
    assert plain == with_numpy


def test_the_small_image_walk_is_taken() -> None:
    """The corpus comparisons above compare something: the small walk takes plain seeds
    and leaves the others (snapshots, compressed clusters, zones) to numpy."""
    from qcow2harness.checker.report import Findings, Report

    taken = set()
    for path in SEEDS:
        with Image.open(path) as image:
            if small.walk_small_image(image, Findings(Report(path=str(path)))) is not None:
                taken.add(path.name)
    assert {"qemu-v3-empty.qcow2", "qemu-v3.qcow2", "qemu-refcount-bits-1.qcow2"} <= taken
    assert not taken & {"qemu-snapshot.qcow2", "qemu-compressed-zlib.qcow2",
                        "reference-zoned-base.qcow2", "qemu-extended-l2.qcow2"}


@pytest.mark.parametrize("kind", corr.BASE_KINDS)
def test_every_corruption_base_checks_clean(kind: str, base: Callable[[str], bytes]) -> None:
    # Corruptions break one clause of a conformant image: among them, bitmap tables of
    # exactly one cluster and of two (qemu-bitmap-table-*).
    assert_clean_by_each_walk(base(kind))


@pytest.mark.parametrize("layout", ["three-clusters", "back-to-back"])
def test_compressed_ranges_of_two_clusters_worth_are_valid(layout: str,
                                                           base: Callable[[str], bytes]) -> None:
    # A range of the most sectors a descriptor holds (two clusters' worth) that starts 512
    # bytes before a cluster's end touches three clusters, each referenced once; one that
    # starts on a boundary touches two, and a range starting in the next cluster shares
    # none of them (CMP-3; corruption CMP-3/three-cluster-range-shared shares them).
    data = bytearray(base("qemu-compressed-4k"))
    image = Image.from_bytes(bytes(data))
    first = corr.append_clusters(data, image, 3)
    if layout == "three-clusters":
        corr.place_compressed_cluster(data, image, 0, first + image.cluster_size - 512)
    else:  # 100 bytes into its first sector: the sectors count from the sector's start
        corr.place_compressed_cluster(data, image, 0, first + 100)
        corr.place_compressed_cluster(data, image, 1, first + 2 * image.cluster_size, sectors=1)
    assert_clean_by_each_walk(bytes(data))


def test_the_cluster_map_calls_compressed_clusters_compressed(
        base: Callable[[str], bytes]) -> None:
    # The base holds compressed clusters only: none of its host clusters is plain data.
    from qcow2harness.checker import inspect_image

    inspection = inspect_image(Image.from_bytes(base("qemu-compressed-4k")), cluster_map=True)
    assert inspection.walk is not None
    kinds = set(md.cluster_kinds(inspection.walk).tolist())
    assert md.ClusterKind.COMPRESSED in kinds and md.ClusterKind.DATA not in kinds


def test_compressed_streams_past_the_bound_are_counted(base: Callable[[str], bytes],
                                                       tmp_path: pathlib.Path) -> None:
    # CMP-4 decodes at most MAX_DECODED_STREAMS streams per image; CMP-5 counts the rest.
    # The first L2 table maps 300 of them, so the numpy walk cut into single tables (512
    # entries each) reaches the bound inside a table, and must count the same.
    from qcow2harness import qemu

    base("qemu-compressed-4k")  # skips, saying why, without qemu-img
    path = tmp_path / "past-the-bound.qcow2"
    streams = md.MAX_DECODED_STREAMS + 304
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4k", str(path),
             "64M")
    qemu.run("qemu-io", "-c", f"write -c -q -P 0x11 {212 * 4}k {streams * 4}k", str(path))
    data = path.read_bytes()
    found = verdict(data)
    stats = found[0]["stats"]
    assert stats["compressed_clusters"] == streams
    assert stats["compressed_streams_decoded"] == md.MAX_DECODED_STREAMS
    assert stats["compressed_streams_unverified"] == 304
    # QEMU packs the streams, so host clusters hold several (CMP-3, a note).
    assert sorted({line.split()[1] for line in found[1]}) == ["CMP-3", "CMP-5"]
    assert smallest_pieces(data) == in_pieces(found)


@pytest.mark.parametrize("extra", [b"", bytes(8)])
def test_a_version_2_snapshot_needs_no_extra_data(extra: bytes,
                                                  base: Callable[[str], bytes]) -> None:
    # SNAP-5 asks version 3 snapshots for 16 bytes of extra data; version 2 ones need none.
    data = bytearray(base("qemu-v2-snapshot"))
    image = Image.from_bytes(bytes(data))
    corr.replace_snapshot_table(data, image, [corr.snapshot_entry(image, 0, extra=extra)])
    assert_clean_by_each_walk(bytes(data))


def test_snapshot_extra_data_findings_past_the_cap_are_counted(
        base: Callable[[str], bytes]) -> None:
    # 40 version 3 snapshots with 8 bytes of extra data: SNAP-5 lists some, counts the rest.
    data = bytearray(base("qemu-snapshot"))
    image = Image.from_bytes(bytes(data))
    fillers = corr.filler_snapshots([64] * 40, extra=bytes(8), first=1)
    corr.replace_snapshot_table(data, image, [corr.snapshot_entry(image, 0), *fillers])
    report = check_image(Image.from_bytes(bytes(data)))
    listed = sum(f.clause == "SNAP-5" for f in report.findings)
    assert 0 < listed < 40
    assert listed + report.suppressed["SNAP-5"] == 40
    assert report.clauses() == {"SNAP-5"}


def test_table_overlaps_past_the_cap_are_counted(base: Callable[[str], bytes]) -> None:
    # 70 snapshots whose L1 table is the active one: each overlaps it (OVL-2), 32 are
    # listed and 38 counted, by the numpy walk as in its smallest pieces.
    data = bytearray(base("qemu-snapshot"))
    image = Image.from_bytes(bytes(data))
    l1 = int(image.header.ofs_l1_table)
    entries = [corr.snapshot_entry(image, 0, ofs_l1_table=l1, id_str=f"{n}".encode(),
                                   name=f"overlap-{n}".encode()) for n in range(70)]
    corr.replace_snapshot_table(data, image, entries)
    found = verdict(bytes(data))
    listed = sum(line.split()[1] == "OVL-2" for line in found[1])
    assert (listed, found[0]["suppressed"]["OVL-2"]) == (32, 38)
    assert smallest_pieces(bytes(data)) == in_pieces(found)


def test_a_32_mib_snapshot_l1_table_is_within_snap4(base: Callable[[str], bytes]) -> None:
    # SNAP-4 allows an L1 table of up to 32 MiB (corruption SNAP-4/snapshot-l1-over-32mib
    # has one entry more); this one runs past the end of the file, which is SNAP-3.
    data = bytearray(base("qemu-snapshot"))
    image = Image.from_bytes(bytes(data))
    corr.replace_snapshot_table(data, image, [corr.snapshot_entry(
        image, 0, num_l1_entries=32 * 1024 * 1024 // 8)])
    clauses = {finding["clause"] for finding in verdict(bytes(data))[0]["violations"]}
    assert "SNAP-3" in clauses and "SNAP-4" not in clauses


def test_a_64_mib_snapshot_table_is_within_snap2(base: Callable[[str], bytes]) -> None:
    # SNAP-2 allows a table of up to 64 MiB (corruption SNAP-2/snapshot-table-over-64mib
    # makes one 8 bytes longer); every filler entry is padded.
    data = bytearray(base("qemu-snapshot"))
    image = Image.from_bytes(bytes(data))
    first = corr.snapshot_entry(image, 0)
    disk = struct.pack(">QQ", 0, int(image.header.virtual_size))
    sizes = corr.snapshot_sizes_totalling(64 * 1024 * 1024 - len(first))
    corr.replace_snapshot_table(data, image, [first, *corr.filler_snapshots(sizes, disk, 1)])
    assert_clean_by_each_walk(bytes(data))


@pytest.mark.parametrize("layout", ["ends-the-file", "refcount-table-next"])
def test_luks_header_layouts_are_valid(layout: str, base: Callable[[str], bytes]) -> None:
    # The encryption header may end the file (CRYPT-3: inside it, not past), and only the
    # rest of its last cluster must be zero (CRYPT-5): here the refcount table, non-zero,
    # moves to the cluster right after it.
    data = bytearray(base("qemu-luks"))
    image = Image.from_bytes(bytes(data))
    ext = image.extension(ExtensionType.full_disk_encryption)
    assert ext is not None
    end = int(ext.body.ofs_crypt_header) + int(ext.body.len_crypt_header)
    size = image.cluster_size
    assert end % size and -(-end // size) * size == len(data), "the header is not last"
    if layout == "ends-the-file":
        del data[end:]
    else:
        table = int(image.header.ofs_refcount_table)
        moved = corr.append_clusters(data, image, 1)
        data[moved:moved + size] = data[table:table + size]
        offset, width = corr.HEADER_FIELDS["ofs_refcount_table"]
        data[offset:offset + width] = moved.to_bytes(width, "big")
        corr.set_refcount(data, image, table // size, 0)
    assert_clean_by_each_walk(bytes(data))


def test_an_empty_active_l1_table_before_a_snapshot(base: Callable[[str], bytes]) -> None:
    # A virtual size of 0 needs no active L1 entries (HDR-16); the snapshot's tree is
    # still walked, by the Python-int L1 walk as by the numpy one.
    data = bytearray(base("qemu-snapshot"))
    for field in ("virtual_size", "num_l1_entries"):
        offset, width = corr.HEADER_FIELDS[field]
        data[offset:offset + width] = bytes(width)
    numpy_l1, python_l1 = l1_walks(bytes(data))
    assert numpy_l1 == python_l1
    assert numpy_l1[0]["stats"]["l2_tables"] > 0


def test_data_past_the_last_zone_is_not_dead_data(base: Callable[[str], bytes]) -> None:
    # An L2 entry past the virtual disk (the last L2 table maps beyond it) lies in no zone:
    # WP-10 judges data against its zone's wp only inside the zones.
    data = bytearray(base("reference-zoned"))
    image = Image.from_bytes(bytes(data))
    root = image.root
    table = int(root.l1_table.entries[0].ofs_l2_table)
    entry = int(image.header.virtual_size) // image.cluster_size + 10
    assert entry < int(root.num_l2_entries), "the first L2 table ends at the disk's end"
    cluster = corr.append_clusters(data, image, 1)
    data[table + 8 * entry:table + 8 * entry + 8] = ((1 << 63) | cluster).to_bytes(8, "big")
    clauses = {finding["clause"] for finding in verdict(bytes(data))[0]["violations"]}
    assert "WP-10" not in clauses, clauses


def test_an_all_ones_bitmap_table_entry_is_valid() -> None:
    # Bit 0 of a bitmap table entry with no cluster offset means "all ones" (BMP-12 allows
    # it; with an offset it is a finding, corruption BMP-12/table-entry-all-ones-with-offset).
    data = bytearray((CORPUS / "seeds" / "qemu-bitmap.qcow2").read_bytes())
    table = int(Image.from_bytes(bytes(data)).bitmap_directory()[0].ofs_bitmap_table)
    data[table:table + 8] = (1).to_bytes(8, "big")
    assert_clean_by_each_walk(bytes(data))


def two_bitmaps(base: Callable[[str], bytes]) -> tuple[bytearray, Image]:
    """The corruptions' base image with two bitmaps, and its parse."""
    data = bytearray(base("qemu-bitmap"))
    return data, Image.from_bytes(bytes(data))


# Bitmap 0's granularity and the image's virtual size (None: the base's 4 MiB), chosen so
# the bitmap ends on a byte (64, 1024 bits), inside one (4, 67 bits), at the end of its
# data cluster, or in a second one.
BITMAP_LAYOUTS: dict[str, tuple[int, Callable[[Image], int | None]]] = {
    "64-bits": (16, lambda image: None),
    "1024-bits": (12, lambda image: None),
    "4-bits": (20, lambda image: None),
    "67-bits": (16, lambda image: int(image.header.virtual_size) + 3 * image.cluster_size),
    "one-full-cluster": (9, lambda image: corr.bitmap_virtual_size(8 * image.cluster_size)),
    "two-clusters": (9, lambda image: corr.bitmap_virtual_size(8 * image.cluster_size + 1029)),
}


@pytest.mark.parametrize("layout", BITMAP_LAYOUTS)
def test_a_full_bitmap_has_no_tail_bits(layout: str, base: Callable[[str], bytes]) -> None:
    # Every bit of bitmap 0 set is no BMP-13 finding (corruptions BMP-13/one-bit-past-the-end
    # and past-a-two-cluster-bitmap set one more). Bitmap 1's full first cluster comes right
    # after bitmap 0's last: a tail read from the wrong place, too far or masked wrong
    # reads ones.
    granularity, virtual_size = BITMAP_LAYOUTS[layout]
    data, image = two_bitmaps(base)
    corr.fill_bitmap(data, image, 0, granularity, virtual_size=virtual_size(image))
    corr.fill_bitmap(data, image, 1, 17, virtual_size=virtual_size(image))
    assert_clean_by_each_walk(bytes(data))


def test_bitmap_tails_are_read_within_the_budget(base: Callable[[str], bytes]) -> None:
    # BMP-13 reads at most MAX_BITMAP_TAIL_BYTES of tails per image, and skips a tail that
    # does not fit in what is left. Bitmap 0's tail (32 bits used) is longer than bitmap
    # 1's (64 bits used); each ends at the end of its cluster.
    data, image = two_bitmaps(base)
    corr.fill_bitmap(data, image, 0, 17, past_the_end=0)
    corr.fill_bitmap(data, image, 1, 16, past_the_end=0)

    def tails_reported(budget: int) -> list[int]:
        with mock.patch.object(md, "MAX_BITMAP_TAIL_BYTES", budget):
            report = check_image(Image.from_bytes(bytes(data)))
        return [f.offset or 0 for f in report.findings if f.clause == "BMP-13"]

    first, second = tails_reported(md.MAX_BITMAP_TAIL_BYTES)
    assert first < second
    tail_bytes = [image.cluster_size - offset % image.cluster_size for offset in (first, second)]
    assert tail_bytes[0] > tail_bytes[1]
    assert tails_reported(sum(tail_bytes)) == [first, second]
    assert tails_reported(sum(tail_bytes) - 1) == [first]
    assert tails_reported(tail_bytes[1]) == [second]
    assert tails_reported(tail_bytes[1] - 1) == []


@pytest.mark.parametrize("change", [{"name": b"n" * 1023}, {"extra": bytes(8), "flags": 4}],
                         ids=["name-of-1023-bytes", "extra-data-compatible"])
@pytest.mark.parametrize("bitmap", [0, 1])
def test_bitmap_entries_at_their_bounds_are_valid(change: dict[str, Any], bitmap: int,
                                                  base: Callable[[str], bytes]) -> None:
    # BMP-4 allows names up to 1023 bytes, BMP-10 extra data with extra_data_compatible
    # (corruptions BMP-4/name-over-1023, BMP-10/extra-data go past them).
    data, image = two_bitmaps(base)
    corr.rewrite_bitmap_entries(data, image, {bitmap: change})
    assert_clean_by_each_walk(bytes(data))


def test_a_64_mib_bitmap_directory_is_within_bmp4(base: Callable[[str], bytes]) -> None:
    # BMP-4 allows a directory of up to 64 MiB (corruption BMP-4/directory-over-64-mib);
    # this one is then larger than its entries, which is BMP-5.
    data, image = two_bitmaps(base)
    offset, width = corr.extension_field(image, ExtensionType.bitmaps,
                                         corr.BITMAPS_EXTENSION_FIELDS, "len_bitmap_directory")
    data[offset:offset + width] = (64 * 1024 * 1024).to_bytes(width, "big")
    clauses = {finding["clause"] for finding in verdict(bytes(data))[0]["violations"]}
    assert "BMP-5" in clauses and "BMP-4" not in clauses


@pytest.mark.parametrize("granularity", [9, 31])
def test_bitmap_granularity_at_each_bound_is_valid(granularity: int) -> None:
    # BMP-7 allows granularity_bits 9 to 31; corruption BMP-7/granularity-8 goes past them.
    data = bytearray((CORPUS / "seeds" / "qemu-bitmap.qcow2").read_bytes())
    entry, _ = corr.bitmap_entries(Image.from_bytes(bytes(data)))[0]
    data[entry + corr.BITMAP_ENTRY_FIELDS["granularity_bits"][0]] = granularity
    assert_clean_by_each_walk(bytes(data))
