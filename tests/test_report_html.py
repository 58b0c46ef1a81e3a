"""`qcow2-harness report --html/--png`: the page's DOM, as headless Chromium builds it,
against the reference zone model and the checker.

DOM tests load the page in Chromium (--dump-dom, after the page's script ran) and skip
with a reason when Chromium is missing; the rest parse the page as written.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import re
import struct
from html.parser import HTMLParser
from typing import Any

import numpy as np
import pytest
from qcow2harness.properties.corruptions import CORRUPTIONS, base_image, corruptions_for
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import WP_BITS, ZoneConfig, ZoneModel
from qcow2harness.spec.registry import load

from qcow2harness import cli
from qcow2harness.checker import check_path
from qcow2harness.checker.metadata import ClusterKind
from qcow2harness.image import Image
from qcow2harness.report_html import (
    CHROMIUM_ENV,
    PAGE_WIDTH_PX,
    build_cluster_map,
    build_page,
    dump_dom,
    find_chromium,
    kind_name,
)

MiB = 1 << 20

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="not run: headless Chromium not found (apt-get install chromium, or set CHROMIUM)")


class Element:
    def __init__(self, tag: str, attrs: dict[str, str]) -> None:
        self.tag, self.attrs, self.text, self.children = tag, attrs, "", []

    def find_all(self, predicate: Any) -> list[Element]:
        found = [self] if predicate(self) else []
        for child in self.children:
            found.extend(child.find_all(predicate))
        return found


class TreeBuilder(HTMLParser):
    """A small DOM: elements with attributes, their text and their children."""

    VOID = {"meta", "br", "img", "input", "hr", "link", "col", "area", "base", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in self.VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        for element in self.stack[1:]:
            element.text += data


def parse(markup: str) -> Element:
    builder = TreeBuilder()
    builder.feed(markup)
    builder.close()
    return builder.root


def by_attr(root: Element, name: str, tag: str | None = None) -> list[Element]:
    return root.find_all(lambda e: name in e.attrs and (tag is None or e.tag == tag))


def render(image: pathlib.Path, tmp_path: pathlib.Path) -> tuple[pathlib.Path, int]:
    page, report = build_page(image)
    out = tmp_path / (image.name + ".html")
    out.write_text(page, encoding="utf-8")
    return out, report.exit_code


def loaded_dom(html_file: pathlib.Path) -> Element:
    markup = dump_dom(html_file)
    root = parse(markup)
    pages = root.find_all(lambda e: e.tag == "html")
    assert pages and "data-page-height" in pages[0].attrs, "the page's script did not run"
    return root


# -- zoned images with known states ----------------------------------------------------


def history_image(path: pathlib.Path) -> list[Any]:
    """Conventional zones, capacity < size, and zones left empty, open, closed and full.
    Returns the writer's zone report after a clean reopen (the persisted view, ZSM-17)."""
    config = ZoneConfig(size=32 * MiB, zone_size=2 * MiB, zone_capacity=1536 * 1024,
                        conventional_zones=2, max_open_zones=3, max_active_zones=5,
                        max_append_bytes=128 * 1024)
    with ReferenceWriter.create(path, config.size, zoned=config, fsync=False) as writer:
        assert writer.write(0, b"\x01" * 65536).ok  # conventional zone 0
        assert writer.write(2 * config.zone_size, b"\x02" * 65536).ok  # implicitly open
        assert writer.append(3, b"\x03" * 4096).ok
        assert writer.close_zone(3).ok  # explicitly closed
        assert writer.finish_zone(4).ok  # full, nothing written
        assert writer.write(5 * config.zone_size, b"\x05" * config.zone_capacity).ok  # full
        assert writer.open_zone(6).ok  # explicitly open, nothing written
        assert writer.write(7 * config.zone_size, b"\x07" * 512).ok  # one sector
        assert writer.zones is not None
        live = {zone.number: zone.state.value for zone in writer.zones.report()}
        assert {"implicit_open", "explicit_open", "closed", "full"} <= set(live.values())
        writer.reopen()
        return writer.zones.report()


def model_view(image_path: pathlib.Path) -> list[Any]:
    """The reference model restored from the image's stored write pointers (WP-8)."""
    with Image.open(image_path) as image:
        zoned = image.zoned
        assert zoned is not None
        entries = image.zonedmeta_entries()
        assert entries is not None
        config = ZoneConfig(
            size=int(image.header.virtual_size), zone_size=int(zoned.zone_size),
            zone_capacity=int(zoned.zone_capacity),
            conventional_zones=int(zoned.num_conventional_zones),
            max_open_zones=int(zoned.max_open_zones),
            max_active_zones=int(zoned.max_active_zones),
            max_append_bytes=int(zoned.max_append_bytes))
        wps = [int(entry) & WP_BITS for entry in entries]
    model = ZoneModel(config)
    model.restore(wps)
    return model.report()


def zoned_images(directory: pathlib.Path) -> list[tuple[pathlib.Path, list[Any]]]:
    from qcow2harness.corpus import reference_zoned_images

    images = []
    path = directory / "history.qcow2"
    images.append((path, history_image(path)))
    for entry in reference_zoned_images(str(directory)):
        path = directory / entry["file"]
        images.append((path, model_view(path)))
    return images


@needs_chromium
def test_zone_strip_and_table_match_the_reference_model(tmp_path: pathlib.Path) -> None:
    states_seen: set[str] = set()
    capacity_below_size = False
    for image_path, expected in zoned_images(tmp_path):
        html_file, _ = render(image_path, tmp_path)
        dom = loaded_dom(html_file)
        strip = {int(e.attrs["data-zone-index"]): e for e in by_attr(dom, "data-zone-index", "g")}
        table = {int(e.attrs["data-zone-index"]): e
                 for e in by_attr(dom, "data-zone-index", "tr")}
        assert sorted(strip) == sorted(table) == [zone.number for zone in expected], image_path
        for zone in expected:
            state = zone.state.value
            for element in (strip[zone.number], table[zone.number]):
                assert element.attrs["data-zone-type"] == zone.type.value
                assert element.attrs["data-zone-state"] == state
                assert int(element.attrs["data-wp"]) == zone.wp
                assert int(element.attrs["data-capacity"]) == zone.capacity
            cells = {c.attrs["data-field"]: c.text for c in by_attr(table[zone.number],
                                                                    "data-field")}
            assert cells["state"] == state.replace("_", " ")
            assert int(cells["wp"], 16) == zone.wp
            size = int(strip[zone.number].attrs["data-size"])
            capacity_below_size |= zone.capacity < size
            assert state in strip[zone.number].find_all(lambda e: e.tag == "title")[0].text
            states_seen.add(state)
    # The images between them show every state a stored wp can give.
    assert states_seen == {"empty", "closed", "full", "not_write_pointer"}
    assert capacity_below_size


@needs_chromium
def test_history_image_has_the_live_models_write_pointers(tmp_path: pathlib.Path) -> None:
    """The zones the writer left open show as closed (or empty) with the wp it reached."""
    path = tmp_path / "history.qcow2"
    expected = history_image(path)
    dom = loaded_dom(render(path, tmp_path)[0])
    strip = {int(e.attrs["data-zone-index"]): e for e in by_attr(dom, "data-zone-index", "g")}
    assert strip[2].attrs["data-zone-state"] == "closed"  # was implicitly open
    assert strip[6].attrs["data-zone-state"] == "empty"  # was explicitly open, no data
    assert int(strip[7].attrs["data-wp"]) == expected[7].start + 512
    fill = strip[7].find_all(lambda e: e.attrs.get("class") == "zone-fill")
    assert fill, "a zone with one sector written shows a fill"


# -- the cluster map against the checker ---------------------------------------------------


def leak_and_overlap(base: bytes) -> bytes:
    """A leak (RC-5) and an overlap (OVL-1) from properties.corruptions."""
    leak = next(c for c in corruptions_for("RC-5") if c.name == "refcount-too-high")
    overlap = next(c for c in corruptions_for("OVL-1") if c.name == "data-in-metadata-cluster")
    data = bytearray(base)
    leak.apply(data, cluster="refcount-block")
    overlap.apply(data, cluster="l1")
    return bytes(data)


def check_map_against_checker(image_path: pathlib.Path, tmp_path: pathlib.Path) -> None:
    report = check_path(image_path)
    clauses = {f.clause for f in report.findings}
    assert {"RC-5", "OVL-1", "RC-4"} <= clauses, clauses
    with Image.open(image_path) as image:
        cluster_size = image.cluster_size
    leaked = {f.offset // cluster_size for f in report.findings
              if f.clause == "RC-5" and f.offset is not None}
    corrupt = {f.offset // cluster_size for f in report.findings
               if f.clause in ("RC-4", "OVL-1") and f.offset is not None}
    assert not report.suppressed
    dom = loaded_dom(render(image_path, tmp_path)[0])
    legend = {e.attrs["data-kind"]: int(e.attrs["data-count"])
              for e in by_attr(dom, "data-count", "div")}
    assert legend["leaked"] == report.stats["leaked_clusters"] == len(leaked)
    assert legend["corrupt"] == len(corrupt)
    assert report.stats["corrupt_refcounts"] <= legend["corrupt"]
    assert sum(legend.values()) == report.stats["clusters_in_file"]
    cells = by_attr(dom, "data-first-cluster", "rect")
    assert sum(int(c.attrs["data-clusters"]) for c in cells) == report.stats["clusters_in_file"]

    def kind_of(cluster: int) -> str:
        for cell in cells:
            first = int(cell.attrs["data-first-cluster"])
            if first <= cluster < first + int(cell.attrs["data-clusters"]):
                return cell.attrs["data-kind"]
        raise AssertionError(f"no cell holds cluster {cluster}")

    for cluster in leaked:
        assert kind_of(cluster) == "leaked"
    for cluster in corrupt:
        assert kind_of(cluster) == "corrupt"
    check_findings_link_to_clauses(dom, report)


def check_findings_link_to_clauses(dom: Element, report: Any) -> None:
    registry = load()
    anchors = {e.attrs["id"]: e for e in by_attr(dom, "id")}
    rows = dom.find_all(lambda e: e.tag == "tr" and e.attrs.get("class") == "finding")
    assert len(rows) == len(report.findings)
    for row in rows:
        links = row.find_all(lambda e: e.tag == "a")
        assert len(links) == 1
        target = links[0].attrs["href"]
        clause = row.attrs["data-clause"]
        assert target == f"#clause-{clause}"
        assert registry[clause].title in anchors[target[1:]].text
        assert row.attrs["data-level"] == registry[clause].level
    offsets = sorted(int(r.attrs["data-offset"]) for r in rows if r.attrs["data-offset"])
    assert offsets == sorted(f.offset for f in report.findings if f.offset is not None)


@needs_chromium
def test_cluster_map_counts_match_the_checker_zoned(tmp_path: pathlib.Path) -> None:
    base = base_image("reference-zoned", tmp_path / "bases")
    path = tmp_path / "zoned-leak-overlap.qcow2"
    path.write_bytes(leak_and_overlap(base))
    check_map_against_checker(path, tmp_path)


@needs_chromium
def test_cluster_map_counts_match_the_checker_qemu(tmp_path: pathlib.Path,
                                                   qemu_tools: None) -> None:
    base = base_image("qemu-default", tmp_path / "bases")
    path = tmp_path / "qemu-leak-overlap.qcow2"
    path.write_bytes(leak_and_overlap(base))
    check_map_against_checker(path, tmp_path)


def test_cluster_map_buckets_keep_the_most_significant_kind() -> None:
    kinds = np.full(200_003, ClusterKind.DATA, dtype=np.uint8)
    kinds[:3] = [ClusterKind.HEADER, ClusterKind.L1, ClusterKind.REFCOUNT_TABLE]
    kinds[70_000] = ClusterKind.LEAKED
    kinds[70_001] = ClusterKind.CORRUPT
    kinds[150_000:150_010] = ClusterKind.FREE
    kinds[-1] = ClusterKind.ZERO
    cmap = build_cluster_map(kinds, 65536, max_cells=1000)
    assert cmap.cells <= 1000
    assert cmap.clusters_per_cell * cmap.cells >= kinds.size
    assert cmap.cell_counts.sum() == kinds.size
    assert (cmap.totals == np.bincount(kinds, minlength=len(ClusterKind))).all()
    per = cmap.clusters_per_cell
    assert cmap.cell_kind[0] == ClusterKind.HEADER
    assert cmap.cell_kind[70_000 // per] == ClusterKind.CORRUPT
    assert cmap.cell_kind[150_000 // per] == ClusterKind.DATA  # free is least significant
    assert cmap.cell_kind[-1] == ClusterKind.ZERO
    assert cmap.cell_counts[70_000 // per, ClusterKind.LEAKED] == 1


# -- bad input and exit codes (the page as written; no Chromium needed) ------------------


def run_cli(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = cli.run(list(argv))
    assert "Traceback" not in err.getvalue()
    return code, err.getvalue()


@pytest.mark.parametrize("content", [b"", b"QFI\xfb\x00\x00\x00\x03", b"not qcow2" * 100],
                         ids=["empty", "truncated", "not-qcow2"])
def test_unreadable_image_still_gets_a_page(tmp_path: pathlib.Path, content: bytes) -> None:
    image = tmp_path / "bad.qcow2"
    image.write_bytes(content)
    html_file = tmp_path / "bad.html"
    code, _ = run_cli("report", str(image), "--html", str(html_file))
    report = check_path(image)
    assert code == report.exit_code == 2
    dom = parse(html_file.read_text())
    (row,) = dom.find_all(lambda e: e.attrs.get("class") == "finding")
    assert row.attrs["data-clause"] == report.findings[0].clause
    assert row.attrs["data-offset"] == str(report.findings[0].offset)
    assert by_attr(dom, "id") and any(e.attrs["id"] == f"clause-{row.attrs['data-clause']}"
                                      for e in by_attr(dom, "id"))


ZONED_CORRUPTIONS = [c for c in CORRUPTIONS if c.base == "reference-zoned"]


@pytest.mark.parametrize("corruption", ZONED_CORRUPTIONS, ids=[c.id for c in ZONED_CORRUPTIONS])
def test_broken_zoned_images_exit_as_check_does(tmp_path: pathlib.Path, corruption: Any) -> None:
    image = tmp_path / "broken.qcow2"
    image.write_bytes(corruption.broken(base_image("reference-zoned", tmp_path / "bases")))
    html_file = tmp_path / "broken.html"
    code, _ = run_cli("report", str(image), "--html", str(html_file))
    report = check_path(image)
    assert code == report.exit_code
    dom = parse(html_file.read_text())
    ids = {e.attrs["id"] for e in by_attr(dom, "id")}
    assert {"facts", "cluster-map", "findings"} <= ids
    cited = {e.attrs["data-clause"] for e in by_attr(dom, "data-clause")}
    assert cited == report.clauses()
    assert {f"clause-{clause}" for clause in cited} <= ids
    exit_badge = by_attr(dom, "data-exit-code")
    assert int(exit_badge[0].attrs["data-exit-code"]) == report.exit_code


def test_leak_only_exits_3(tmp_path: pathlib.Path) -> None:
    leak = next(c for c in corruptions_for("RC-5") if c.name == "refcount-too-high")
    image = tmp_path / "leak.qcow2"
    image.write_bytes(leak.broken(base_image("reference-zoned", tmp_path / "bases")))
    code, _ = run_cli("report", str(image), "--html", str(tmp_path / "leak.html"))
    assert code == 3


def test_png_without_chromium_exits_1_after_writing_the_page(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CHROMIUM_ENV, str(tmp_path / "no-such-chromium"))
    image = tmp_path / "zoned.qcow2"
    image.write_bytes(base_image("reference-zoned", tmp_path / "bases"))
    html_file = tmp_path / "page.html"
    code, err = run_cli("report", str(image), "--html", str(html_file),
                        "--png", str(tmp_path / "page.png"))
    assert code == 1
    assert "Chromium not found" in err
    assert html_file.stat().st_size > 0
    assert not (tmp_path / "page.png").exists()


@needs_chromium
def test_png_is_a_plausible_screenshot(tmp_path: pathlib.Path) -> None:
    image = tmp_path / "history.qcow2"
    history_image(image)
    png = tmp_path / "page.png"
    code, _ = run_cli("report", str(image), "--html", str(tmp_path / "page.html"),
                      "--png", str(png))
    assert code == check_path(image).exit_code
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width == PAGE_WIDTH_PX
    assert 600 <= height <= 16000  # facts, map, 16 zones and their table
    assert len(data) > 20_000  # not a blank page


def test_every_kind_has_a_legend_entry(tmp_path: pathlib.Path) -> None:
    image = tmp_path / "zoned.qcow2"
    image.write_bytes(base_image("reference-zoned", tmp_path / "bases"))
    dom = parse(build_page(image)[0])
    legend = {e.attrs["data-kind"] for e in by_attr(dom, "data-count", "div")}
    assert legend == {kind_name(kind) for kind in ClusterKind}


@pytest.mark.parametrize("options,clause", [("", "L2-5"), ("extended_l2=on", "EL2-6")])
def test_preallocated_zero_clusters_counted_as_the_checker_notes(
        tmp_path: pathlib.Path, qemu_tools: None, options: str, clause: str) -> None:
    """`write -z` over allocated clusters keeps them allocated and reading zeros."""
    from qcow2harness import qemu

    image = tmp_path / "zero.qcow2"
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", *(["-o", options] if options else []),
             str(image), "4M")
    qemu.run("qemu-io", "-c", "write -P 1 0 256k", "-c", "write -z 0 128k", str(image))
    report = check_path(image)
    noted = sum(int(re.match(r".*: (\d+) ", f.message).group(1))  # type: ignore[union-attr]
                for f in report.findings if f.clause == clause)
    dom = parse(build_page(image)[0])
    legend = {e.attrs["data-kind"]: int(e.attrs["data-count"])
              for e in by_attr(dom, "data-count", "div")}
    assert noted > 0
    assert legend["zero"] == noted
