"""Every image-checkable clause has an image that breaks it and one that passes it.

=== coverage ===   each clause enforced by a check_* function has a targeted corruption
                   (properties/corruptions.py), or a named exemption with its reason.
=== layout ===     the field tables the corruptions poke agree with the generated parser.
=== corruptions === each corruption changes its base image; when the checker exists,
                   check_image reports the clause on the broken image and not on the base,
                   no other clause but those its `also` lists, and (but for the clauses in
                   LOCATED_ELSEWHERE) at the bytes the corruption changed.

A base image that the image model cannot even open (bad magic, bad version, a truncated
header) is "reported" under the clause its ParseError names: check_image takes an Image,
and the model refuses to build one.
"""

from __future__ import annotations

import io
import pathlib
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from kaitaistruct import KaitaiStream
from qcow2harness.properties import corruptions as corr
from qcow2harness.properties.corruptions import CORRUPTIONS, Corruption, corruptions_for
from qcow2harness.properties.strategies import targeted_corruptions
from qcow2harness.spec.registry import load

from qcow2harness import qemu
from qcow2harness.corpus import recipe_unavailable
from qcow2harness.errors import ParseError
from qcow2harness.image import ExtensionType, Image
from qcow2harness.parser.qcow2 import Qcow2
from qcow2harness.parser.qcow2_bitmaps import Qcow2Bitmaps

SPEC = load()
CHECKABLE = [c for c in SPEC if c.enforced_by.startswith("check_")]

# Image-checkable clauses with no targeted corruption, and why.
EXEMPT: dict[str, str] = {
    "L2-6": "`map` (qcow2harness/map.py) derives the guest map, compared with qemu-img map; "
            "an entry's read semantics follow from its bits, so no image can break the clause "
            "on its own",
    "RC-3": "defines what the recount counts; a stored refcount that disagrees with it is "
            "reported as RC-4 (too low) or RC-5 (too high), each with its own corruption",
    "DATA-8": "defines the recount for images with a data file; refcounted guest clusters in "
              "the image file surface as leaks (RC-5)",
    "DATA-11": "needs the external data file beside the image; check_image over an image's "
               "bytes cannot open it",
    "CMP-5": "states what the checker leaves undecoded (past its per-image bound, or zstd "
             "without a decoder), not a property of the image: zstandard is a dependency and "
             "no corruption can hold 4096 compressed streams cheaply",
    "OVL-3": "states the general rule; every reference an image can make past the end of "
             "the file has the clause of the structure that makes it (HDR-15, L1-2, L2-2, "
             "SNAP-1, SNAP-3, SNAP-7, RC-2, CMP-2, BMP-5, BMP-11, BMP-12, CRYPT-3, ZONE-20), "
             "and the checker reports it there, so no image breaks OVL-3 alone",
    "WP-1": "defines the table layout; a broken layout shows as ZONE-18/ZONE-20 (size, "
            "placement), WP-2 (byte order) or WP-3..WP-7 (entry values)",
    "WP-8": "defines the state each stored wp means; every wp inside its zone maps to a state "
            "and open states have no encoding, so only WP-6/WP-7 values can be wrong",
}

# Clauses with a corruption whose enforcement lives outside check_image.
OUTSIDE_CHECK_IMAGE: dict[str, str] = {
    "ZONE-2": "check_zoned.old_reader runs a pre-zoned qemu-img against the image",
}

QEMU_TOOLS = ("qemu-img", "qemu-io")


# === coverage ===


def test_every_checkable_clause_has_a_corruption_or_an_exemption() -> None:
    covered = {c.clause for c in CORRUPTIONS}
    missing = [c.id for c in CHECKABLE if c.id not in covered and c.id not in EXEMPT]
    assert not missing, f"clauses with neither a corruption nor an exemption: {missing}"


def test_exemptions_are_needed_and_real() -> None:
    checkable = {c.id for c in CHECKABLE}
    for clause, reason in EXEMPT.items():
        assert clause in checkable, f"{clause} is not an image-checkable clause"
        assert not corruptions_for(clause), f"{clause} has a corruption; drop its exemption"
        assert reason
    assert set(OUTSIDE_CHECK_IMAGE) <= {c.clause for c in CORRUPTIONS}


def test_corruptions_name_checkable_clauses_and_are_unique() -> None:
    checkable = {c.id for c in CHECKABLE}
    ids = [c.id for c in CORRUPTIONS]
    assert len(ids) == len(set(ids)), "corruption ids (clause/name) must be unique"
    for c in CORRUPTIONS:
        assert c.clause in checkable, f"{c.id}: not an image-checkable clause"
        assert c.base in corr.BASE_KINDS, f"{c.id}: unknown base kind {c.base}"
        assert c.description, f"{c.id}: no description"
        assert c.clause not in c.also, f"{c.id}: lists its own clause in also"
        for other in c.also:
            assert other in SPEC, f"{c.id}: also names unknown clause {other}"
        for name, values in c.params.items():
            assert len(values) >= 1, f"{c.id}: parameter {name} has no values"


# === base images ===


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return tmp_path_factory.mktemp("corruption-bases")


@pytest.fixture(scope="session")
def base(base_dir: pathlib.Path) -> Callable[[str], bytes]:
    """base(kind) -> bytes, built once per session; QEMU kinds skip without qemu-img."""

    def get(kind: str) -> bytes:
        if kind.startswith("qemu-"):
            for tool in QEMU_TOOLS:
                if qemu.find_tool(tool) is None:
                    pytest.skip(f"not run: {tool} not found (base image {kind} is made by "
                                f"QEMU; install qemu-utils or set {qemu.TOOL_ENV[tool]})")
            why = recipe_unavailable(corr.QEMU_KINDS[kind][0]) if kind in corr.QEMU_KINDS \
                else None
            if why is not None:
                pytest.skip(f"not run: base image {kind}: {why}")
        return corr.base_image(kind, base_dir)

    return get


# === layout ===


def _check_table(data: bytes, start: int, table: dict[str, tuple[int, int]],
                 read: Callable[[Image], Any], small: tuple[str, ...] = ()) -> None:
    """Poke a distinct value into each field at `start` and read it back through the parser."""
    for number, (name, (offset, width)) in enumerate(sorted(table.items()), start=1):
        mutated = bytearray(data)
        if name in small or name.startswith(("len_", "num_")):
            value = number
        else:
            value = (0x0102030405060708 * number) & ((1 << (8 * width)) - 1)
        mutated[start + offset:start + offset + width] = value.to_bytes(width, "big")
        parsed = getattr(read(Image.from_bytes(bytes(mutated))), name)
        got = int.from_bytes(parsed, "big") if isinstance(parsed, bytes) else int(parsed)
        assert got == value, f"{name}: poked {value:#x} at +{offset}, parser read {got:#x}"


def test_header_tables_match_the_parser(base: Callable[[str], bytes]) -> None:
    data = base("reference-zoned")
    for name, (offset, width) in corr.ADDITIONAL_HEADER_FIELDS.items():
        assert name not in corr.HEADER_FIELDS
        mutated = bytearray(data)
        mutated[100:104] = (112).to_bytes(4, "big")  # header_length now covers byte 104
        mutated[offset:offset + width] = (1).to_bytes(width, "big")
        assert int(getattr(Image.from_bytes(bytes(mutated)).header, name)) == 1
    _check_table(data, 0, {k: v for k, v in corr.HEADER_FIELDS.items()
                           if k not in ("version", "len_header")},
                 lambda img: img.header, small=("cluster_bits", "refcount_order"))


def test_zoned_extension_table_matches_the_parser(base: Callable[[str], bytes]) -> None:
    data = base("reference-zoned")
    ext = Image.from_bytes(data).extension(ExtensionType.zoned)
    assert ext is not None
    _check_table(data, ext.offset + 8, corr.ZONED_FIELDS, lambda img: img.zoned)


def _entry_parser(cls: Any, start: int) -> Callable[[Image], Any]:
    """Parse one table entry on its own at `start`, so that a poked length cannot make the
    entries after it unreadable."""

    def read(img: Image) -> Any:
        img._stream.seek(0)
        return cls(KaitaiStream(io.BytesIO(img._stream.read()[start:])))

    return read


def test_bitmap_tables_match_the_parser(base: Callable[[str], bytes]) -> None:
    data = base("qemu-bitmap")
    img = Image.from_bytes(data)
    ext = img.extension(ExtensionType.bitmaps)
    assert ext is not None
    _check_table(data, ext.offset + 8, corr.BITMAPS_EXTENSION_FIELDS, lambda i: i.bitmaps)
    directory = int(ext.body.ofs_bitmap_directory)
    _check_table(data, directory, corr.BITMAP_ENTRY_FIELDS,
                 _entry_parser(Qcow2Bitmaps.BitmapDirectoryEntry, directory))


def test_crypt_pointer_table_matches_the_parser(base: Callable[[str], bytes]) -> None:
    data = base("qemu-luks")
    ext = Image.from_bytes(data).extension(ExtensionType.full_disk_encryption)
    assert ext is not None
    _check_table(data, ext.offset + 8, corr.CRYPT_POINTER_FIELDS,
                 lambda img: img.root.header_extensions.entries[ext.index].body)


def test_snapshot_table_matches_the_parser(base: Callable[[str], bytes]) -> None:
    data = base("qemu-snapshot")
    start = int(Image.from_bytes(data).header.ofs_snapshot_table)
    _check_table(data, start, corr.SNAPSHOT_FIELDS,
                 _entry_parser(Qcow2.SnapshotTableEntry, start))


# === corruptions ===


def _all_params(c: Corruption) -> list[dict[str, Any]]:
    """The defaults, then every value of every parameter on its own."""
    out: list[dict[str, Any]] = [{}]
    for name, values in c.params.items():
        out.extend({name: value} for value in values[1:])
    return out


@pytest.mark.parametrize("c", CORRUPTIONS, ids=lambda c: c.id)
def test_corruption_changes_its_base(c: Corruption, base: Callable[[str], bytes]) -> None:
    original = base(c.base)
    for params in _all_params(c):
        broken = c.broken(original, **params)
        assert broken != original, f"{c.id} {params} left the image unchanged"


_base_findings: dict[str, set[str]] = {}


def _check_image() -> Callable[[Image], Any]:
    # Imported here, not skipped on ImportError: a checker that does not import fails.
    from qcow2harness.checker import check_image

    return check_image


# Where a finding inside the fixed header may point: the first byte of a field (the
# parser-checked tables above), offset 0 (cluster 0 as a whole), or, for HDR-23, the
# padding after the last additional field.
HEADER_FIELD_STARTS = ({0} | {start for start, _ in corr.HEADER_FIELDS.values()}
                       | {start for start, _ in corr.ADDITIONAL_HEADER_FIELDS.values()})
HEADER_PADDING = max(start + width for start, width in corr.ADDITIONAL_HEADER_FIELDS.values())


def _findings(data: bytes) -> tuple[set[str], int, dict[str, list[int | None]]]:
    """(clauses reported, exit code, offsets by clause) for an image's bytes; every
    finding inside the header points at the start of a field."""
    check_image = _check_image()
    try:
        image = Image.from_bytes(data)
    except ParseError as error:
        return ({error.clause} if error.clause else set()), 2, {}
    report = check_image(image)
    offsets: dict[str, list[int | None]] = {}
    for finding in report.findings:
        offsets.setdefault(finding.clause, []).append(finding.offset)
    misplaced = [(f.clause, f.offset) for f in report.findings
                 if f.offset is not None and f.offset < image.len_header
                 and f.offset not in HEADER_FIELD_STARTS
                 and (f.clause, f.offset) != ("HDR-23", HEADER_PADDING)]
    assert misplaced == [], "findings inside the header but not at a field's first byte"
    return set(offsets), int(report.exit_code), offsets


# Clauses (or single corruptions) whose finding points somewhere other than the bytes a
# corruption changed, and where it points instead. Every other clause's finding must
# locate the damage (below).
LOCATED_ELSEWHERE: dict[str, str] = {
    "BMP-12/data-past-eof": "the first bitmap data cluster past the end of the file",
    "BMP-12/two-data-clusters-past-eof": "the first of the bitmap data clusters past the end "
                                         "of the file",
    "HDR-16": "l1_size, the field too small for the virtual size that was changed",
    "HDR-18": "the refcount table offset field, when the cluster count was changed",
    "HDR-22": "the compression type field, when the incompatible bit was changed",
    "HDR-24": "the backing name offset field, when its length was changed",
    "EXT-1": "the end of the header area, where the end marker is missing",
    "EXT-5": "the extension's data, whose NUL may sit anywhere in it",
    "EXT-6": "the backing format extension, when the backing name was removed",
    "L1-3": "the L1 entry with COPIED set, when the refcount it contradicts was changed",
    "RC-4": "the cluster whose refcount is wrong, not the refcount block entry",
    "RC-5": "the cluster whose refcount is wrong (or no offset: a count past the end)",
    "CMP-3": "the second host cluster reference, not the descriptor that was changed",
    "CMP-4": "the compressed descriptor, when the stream it names was garbled",
    "SNAP-3": "the snapshot L1 table, when the snapshot entry's offset was changed",
    "SNAP-4": "the snapshot entry's start, for a size field",
    "SNAP-5": "the snapshot entry's start, for its extra data",
    "SNAP-6": "the snapshot entry's start, for its extra data",
    "BMP-2": "the bitmaps extension, when the autoclear bit was cleared",
    "BMP-3/nb-bitmaps-above-the-directory": "the bitmap directory, which holds fewer entries",
    "BMP-4/directory-over-64-mib": "the bitmaps extension's nb_bitmaps field, for either "
                                   "of its bounds",
    "BMP-5": "the bitmap directory, when the extension's size field was changed",
    "BMP-6": "the bitmap directory entry's start, for a flag or type field",
    "BMP-7": "the bitmap directory entry's start, for its granularity",
    "BMP-8": "the first of the two entries with the one name",
    "BMP-10": "the bitmap directory entry's start, for its extra data",
    "CRYPT-2": "the encryption extension, when the crypt method was changed",
    "CRYPT-3": "the extension's offset field, when the length was changed",
    "DATA-2": "the data file name, whose NUL may sit anywhere in it",
    "DATA-4": "the raw-data-file bit, when a backing file was added",
    "OVL-1": "the metadata cluster that an entry's changed offset now points into",
    "OVL-2": "the table that another table's changed offset now overlaps",
    "ZONE-2": "no finding of check_image (an old qemu-img is run against the image)",
    "ZONE-21": "the zonedmeta table, when its refcount was changed",
    "ZONE-23": "the zoned extension, when a backing file or snapshot was added",
}


def _bitmap_entries_at(field: str | None = None) -> Callable[[Image], set[int]]:
    start = corr.BITMAP_ENTRY_FIELDS[field][0] if field else 0
    return lambda image: {offset + start for offset, _ in corr.bitmap_entries(image)}


def _bitmaps_extension_at(field: str) -> Callable[[Image], set[int]]:
    return lambda image: {corr.extension_field(image, ExtensionType.bitmaps,
                                               corr.BITMAPS_EXTENSION_FIELDS, field)[0]}


def _crypt_pointer_at(image: Image) -> set[int]:
    return {corr.extension_field(image, ExtensionType.full_disk_encryption,
                                 corr.CRYPT_POINTER_FIELDS, "ofs_crypt_header")[0]}


# For these clauses (or corruption ids) a finding must point exactly at one of the places
# the broken image's parse names: for a LOCATED_ELSEWHERE key, the place it describes.
EXACTLY_AT: dict[str, Callable[[Image], set[int]]] = {
    "OVL-1/bitmap-table-runs-into-the-directory": lambda image: {int(
        image.extension(ExtensionType.bitmaps).body.ofs_bitmap_directory)},
    "CRYPT-3/header-past-eof": _crypt_pointer_at,
    "CRYPT-3/header-unaligned": _crypt_pointer_at,
    # The first shared cluster: the second of the three the corruption appends.
    "CMP-3/three-cluster-range-shared": lambda image: {
        image.file_size - 2 * image.cluster_size},
    "BMP-3/nb-bitmaps-above-the-directory": lambda image: {
        int(corr.bitmap_entries(image)[0][0])},
    "BMP-4/directory-over-64-mib": _bitmaps_extension_at("num_bitmaps"),
    "BMP-4/name-over-1023": _bitmap_entries_at("len_name"),
    "BMP-5/directory-unaligned": _bitmaps_extension_at("ofs_bitmap_directory"),
    "BMP-6": _bitmap_entries_at(),
    "BMP-7": _bitmap_entries_at(),
    "BMP-8": _bitmap_entries_at("len_name"),
    "BMP-10": _bitmap_entries_at(),
}


def test_located_elsewhere_names_clauses_and_corruptions() -> None:
    corruption_ids = {c.id for c in CORRUPTIONS}
    assert [key for key in LOCATED_ELSEWHERE | EXACTLY_AT
            if key not in SPEC.levels and key not in corruption_ids] == []


def _changed_runs(original: bytes, broken: bytes) -> list[tuple[int, int]]:
    """[first, last] byte ranges where `broken` differs from `original` (a length change
    is one range from the shorter end)."""
    runs: list[tuple[int, int]] = []
    common = min(len(original), len(broken))
    for start in range(0, common, 4096):
        if original[start:start + 4096] == broken[start:start + 4096]:
            continue
        for at in range(start, min(start + 4096, common)):
            if original[at] != broken[at]:
                if runs and runs[-1][1] == at - 1:
                    runs[-1] = (runs[-1][0], at)
                else:
                    runs.append((at, at))
    if len(original) != len(broken):
        runs.append((common, max(len(original), len(broken)) - 1))
    return runs


def _locates_the_change(offset: int | None, runs: list[tuple[int, int]]) -> bool:
    # At a changed byte, or at the start of the entry (up to 8 bytes) holding one.
    return offset is not None and any(first - 7 <= offset <= last for first, last in runs)


@pytest.mark.parametrize("c", CORRUPTIONS, ids=lambda c: c.id)
def test_checker_reports_the_broken_clause(c: Corruption, base: Callable[[str], bytes]) -> None:
    _check_image()
    if c.clause in OUTSIDE_CHECK_IMAGE:
        pytest.skip(f"not run: {OUTSIDE_CHECK_IMAGE[c.clause]}")
    original = base(c.base)
    if c.base not in _base_findings:
        _base_findings[c.base] = _findings(original)[0]
    assert c.clause not in _base_findings[c.base], f"the {c.base} base already breaks {c.clause}"
    level = SPEC[c.clause].level
    for params in _all_params(c):
        broken = c.broken(original, **params)
        found, exit_code, offsets = _findings(broken)
        assert c.clause in found, f"{c.id} {params}: {c.clause} not reported; found {sorted(found)}"
        # The corruption breaks its clause and what `also` documents, nothing else.
        unexpected = found - _base_findings[c.base] - {c.clause} - set(c.also)
        assert not unexpected, f"{c.id} {params}: also reported {sorted(unexpected)}"
        if not {c.clause, c.id} & set(LOCATED_ELSEWHERE) and offsets:
            runs = _changed_runs(original, broken)
            assert any(_locates_the_change(o, runs) for o in offsets[c.clause]), \
                f"{c.id} {params}: no {c.clause} finding points at the bytes it changed " \
                f"({[hex(first) for first, _ in runs[:4]]}): {offsets[c.clause][:4]}"
        for key in {c.clause, c.id} & set(EXACTLY_AT):
            places = EXACTLY_AT[key](Image.from_bytes(broken))
            assert set(offsets[c.clause]) & places, \
                f"{c.id} {params}: no {c.clause} finding points at {sorted(places)}: " \
                f"{offsets[c.clause][:4]}"
        if level == "MUST":
            assert exit_code == 2, f"{c.id} {params}: a MUST violation must exit 2, not {exit_code}"
        elif not any(SPEC[other].level == "MUST" for other in c.also):
            assert exit_code != 2, f"{c.id} {params}: a {level} finding alone must not exit 2"


# A finding whose message names a cluster, an offset or an active L1 entry points there,
# and a refcount it quotes is the stored one; the cluster map calls a cluster that an
# overlap or a refcount finding names corrupt or leaked.
NAMED_CLUSTER = re.compile(r"(?:first cluster|in cluster|^cluster) (\d+)\b")
NAMED_OFFSET = re.compile(r"(?:past the end of the file, first at|first non-zero byte at) "
                          r"(0x[0-9a-f]+)")
ACTIVE_L1_ENTRY = re.compile(r"^active L1 entry (\d+)")
L2_TABLE_REFCOUNT = re.compile(r"for L2 table (0x[0-9a-f]+) has COPIED=\d but the table's "
                               r"refcount is (\d+)")
MAP_KIND_OF = {"OVL-1": ("CORRUPT",), "RC-4": ("CORRUPT",), "RC-5": ("LEAKED", "CORRUPT")}


def test_findings_point_where_their_message_says(base: Callable[[str], bytes]) -> None:
    from qcow2harness.checker import inspect_image
    from qcow2harness.checker.metadata import ClusterKind, cluster_kinds

    named, wrong = 0, []
    for c in CORRUPTIONS:
        for params in _all_params(c):
            try:
                image = Image.from_bytes(c.broken(base(c.base), **params))
            except ParseError:
                continue
            inspection = inspect_image(image, cluster_map=True)
            kinds = cluster_kinds(inspection.walk) if inspection.walk is not None else None
            for finding in inspection.report.findings:
                cluster = NAMED_CLUSTER.search(finding.message)
                offset = NAMED_OFFSET.search(finding.message)
                l1_entry = ACTIVE_L1_ENTRY.search(finding.message)
                places = ([int(cluster[1]) * image.cluster_size] if cluster else []) + \
                    ([int(offset[1], 16)] if offset else []) + \
                    ([int(image.header.ofs_l1_table) + 8 * int(l1_entry[1])] if l1_entry else [])
                refcount = L2_TABLE_REFCOUNT.search(finding.message)
                if refcount and inspection.walk is not None and inspection.walk.stored is not None:
                    named += 1
                    stored = inspection.walk.stored[int(refcount[1], 16) // image.cluster_size]
                    if int(stored) != int(refcount[2]):
                        wrong.append(f"{c.id} {params}: refcount {stored}: {finding.one_line()}")
                named += len(places)
                if any(finding.offset != place for place in places):
                    wrong.append(f"{c.id} {params}: {finding.one_line()}")
                if cluster and kinds is not None and finding.clause in MAP_KIND_OF:
                    kind = ClusterKind(int(kinds[int(cluster[1])])).name
                    if kind not in MAP_KIND_OF[finding.clause]:
                        wrong.append(f"{c.id} {params}: mapped {kind}: {finding.one_line()}")
    assert wrong == []
    assert named > 100, "the corruptions no longer give findings that name a place"


# === the strategy ===


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=targeted_corruptions())
def test_targeted_corruptions_apply(
    drawn: tuple[Corruption, dict[str, Any]], base: Callable[[str], bytes]
) -> None:
    c, params = drawn
    assert set(params) == set(c.params)
    original = base(c.base)
    assert c.broken(original, **params) != original


@settings(max_examples=10, deadline=None)
@given(drawn=targeted_corruptions(clauses=["WP-6", "WP-7"], bases=["reference-zoned"]))
def test_strategy_filters(drawn: tuple[Corruption, dict[str, Any]]) -> None:
    assert drawn[0].clause in ("WP-6", "WP-7")
    assert drawn[0].base == "reference-zoned"


def test_strategy_refuses_an_empty_selection() -> None:
    with pytest.raises(ValueError, match="no corruption matches"):
        targeted_corruptions(clauses=["ZSM-1"])
