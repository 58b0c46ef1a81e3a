"""`report` over a collection: one page per image, and an index page with a table of
images, verdicts and clauses that links each image's page.

    exit_code = write_collection(["store/"], "index.html")
    # index.html, and index-pages/00001-disk.qcow2.html ... beside it

Images are found as `check` finds them (qcow2harness.batch). Rows are spooled to a
temporary file as pages are written, so the index costs bounded memory whatever the
number of images; the summary (images per verdict, the most frequent clauses) heads it.
"""

from __future__ import annotations

import html
import os
import re
import tempfile
from collections.abc import Callable, Iterable

from qcow2harness.batch import VERDICTS, Outcome, Summary, Unreadable, find_images
from qcow2harness.exitcodes import EXIT_CANNOT_RUN

PAGES_SUFFIX = "-pages"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def pages_dir(index_path: str) -> str:
    """Where the image pages of `index_path` go: INDEX-pages/ beside it."""
    return os.path.splitext(index_path)[0] + PAGES_SUFFIX


def page_name(number: int, image_path: str) -> str:
    """A page's file name: its place in the walk and the image's base name, made safe."""
    return f"{number:05d}-{_UNSAFE.sub('_', os.path.basename(image_path))[:80]}.html"


def write_collection(paths: Iterable[str], index_path: str, *,
                     on_page: Callable[[int], None] | None = None) -> int:
    """Write a page per image found under `paths` and the index; the worst verdict's
    exit code (batch.worst) is returned. `on_page(n)` hears about each page written."""
    from qcow2harness.report_html import CSS, build_page

    folder = pages_dir(index_path)
    os.makedirs(folder, exist_ok=True)
    summary = Summary()
    with tempfile.TemporaryFile("w+", encoding="utf-8") as rows:
        for number, found in enumerate(find_images(paths), start=1):
            image = found.path if isinstance(found, Unreadable) else found
            name = page_name(number, image)
            error = found.message if isinstance(found, Unreadable) else None
            record: dict[str, object] = {}
            exit_code = EXIT_CANNOT_RUN
            if error is None:
                try:
                    page, report = build_page(image)
                    with open(os.path.join(folder, name), "w", encoding="utf-8") as out:
                        out.write(page)
                    record, exit_code = report.to_json(), report.exit_code
                except Exception as exc:  # one image's failure never stops the rest
                    error = f"{type(exc).__name__}: {exc}"
            summary.add(Outcome(image, exit_code, record))
            rows.write(_row(folder, name, image, exit_code, record, error))
            if on_page:
                on_page(number)
        rows.seek(0)
        _write_index(index_path, CSS, summary, rows)
    return summary.exit_code


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _row(folder: str, name: str, image: str, exit_code: int,
         record: dict[str, object], error: str | None) -> str:
    link = os.path.join(os.path.basename(folder), name)
    if error is not None:
        return (f'<tr class="image" data-exit="{exit_code}"><td class="mono">{_esc(image)}'
                f'</td><td><span class="verdict v{exit_code}">{VERDICTS[exit_code]}</span></td>'
                f"<td></td><td></td><td>{_esc(error)}</td></tr>\n")
    counts = record["counts"]
    assert isinstance(counts, dict)
    violations = record.get("violations", [])
    assert isinstance(violations, list)
    suppressed = record.get("suppressed", {})
    assert isinstance(suppressed, dict)
    clauses = sorted({v["clause"] for v in violations} | set(suppressed))
    cited = " ".join(f'<a href="{_esc(link)}#clause-{_esc(c)}">{_esc(c)}</a>' for c in clauses)
    return (f'<tr class="image" data-exit="{exit_code}"><td class="mono">'
            f'<a href="{_esc(link)}">{_esc(image)}</a></td>'
            f'<td><span class="verdict v{exit_code}">{VERDICTS[exit_code]}</span></td>'
            f'<td class="num">{counts["MUST"]}</td><td class="num">{counts["SHOULD"]}</td>'
            f"<td>{cited}</td></tr>\n")


def _write_index(index_path: str, css: str, summary: Summary, rows: Iterable[str]) -> None:
    tmp = f"{index_path}.tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        out.write('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                  "<title>qcow2-harness report: a collection</title>"
                  f"<style>{css}.v1{{background:#555}}</style></head><body>\n"
                  "<h1>qcow2-harness report: a collection</h1>\n")
        out.write('<section id="summary"><h2>Summary</h2>'
                  + "".join(f"<p>{_esc(line)}</p>" for line in summary.lines()) + "</section>\n")
        out.write('<section id="images"><h2>Images</h2><table id="images-table"><thead><tr>'
                  '<th>image</th><th>verdict</th><th class="num">MUST</th>'
                  '<th class="num">SHOULD</th><th>clauses</th></tr></thead><tbody>\n')
        for row in rows:
            out.write(row)
        out.write("</tbody></table></section></body></html>\n")
    os.replace(tmp, index_path)


__all__ = ["PAGES_SUFFIX", "page_name", "pages_dir", "write_collection"]
