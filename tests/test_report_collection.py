"""`report` over a collection: an index row per image linking its own page, the clause
links landing on the clause in that page, and the worst verdict as exit code."""

from __future__ import annotations

import html.parser
import os
import subprocess
import sys
from pathlib import Path

from qcow2harness.reference.writer import ReferenceWriter

from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID

CLI = [sys.executable, "-m", "qcow2harness.cli"]


class _Links(html.parser.HTMLParser):
    """Each index row's image link and clause links; every id of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))
        if tag == "tr" and attributes.get("class") == "image":
            self.rows.append([])
        elif tag == "a" and self.rows:
            self.rows[-1].append(str(attributes["href"]))


def _parse(path: Path) -> _Links:
    links = _Links()
    links.feed(path.read_text(encoding="utf-8"))
    return links


def test_an_index_links_a_page_per_image(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    for name in ("good.qcow2", "bad.qcow2"):
        ReferenceWriter.create(store / name, size=1 << 20).close()
    with open(store / "bad.qcow2", "r+b") as f:  # refcount table offset unaligned: HDR-18
        f.seek(48)
        f.write((0x10200).to_bytes(8, "big"))
    (store / "readme.txt").write_text("not an image")
    index = tmp_path / "out" / "index.html"
    result = subprocess.run([*CLI, "report", str(store), "--html", str(index)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == EXIT_INVALID, result.stderr
    rows = _parse(index).rows
    assert len(rows) == 2  # readme.txt is not qcow2 by its magic
    pages = [index.parent / row[0] for row in rows]
    assert all(page.is_file() for page in pages)
    bad_row = next(row for row in rows if "bad.qcow2" in row[0])
    assert bad_row[1:] == [f"{bad_row[0]}#clause-HDR-18"]
    assert "clause-HDR-18" in _parse(index.parent / bad_row[0]).ids
    good_row = next(row for row in rows if "good.qcow2" in row[0])
    assert good_row[1:] == []


def test_an_unreadable_image_is_a_row_and_the_rest_go_on(tmp_path: Path) -> None:
    ReferenceWriter.create(tmp_path / "one.qcow2", size=1 << 20).close()
    index = tmp_path / "index.html"
    result = subprocess.run([*CLI, "report", str(tmp_path / "one.qcow2"),
                             str(tmp_path / "missing.qcow2"), "--html", str(index)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == EXIT_CANNOT_RUN, result.stderr
    text = index.read_text(encoding="utf-8")
    assert text.count('<tr class="image"') == 2
    assert 'data-exit="1"' in text and "missing.qcow2" in text
    assert len(os.listdir(tmp_path / "index-pages")) == 1
