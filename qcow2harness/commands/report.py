"""`qcow2-harness report IMAGE|DIR [...] --html FILE [--png FILE]`: the check as one HTML
page, or for a collection an index page linking a page per image."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "write a self-contained HTML page: cluster map, zones, findings (exit code as check)"

EPILOG = """\
For several images or a directory (images found by their magic, as check finds them),
FILE is an index: a table of the images, their verdicts and the clauses they break,
each linking the image's own page in FILE-pages/.

The page (inline CSS and SVG, nothing fetched) shows the image's facts, a map of its
host clusters by kind, for zoned images a strip and a table of the zones, and the
check findings linked to their clause text. An image the parser refuses still gets a
page, with that finding.

Exit codes mirror `check`, so the command can gate CI: 0 conformant, 2 a MUST clause
is violated (or the image is not readable as qcow2), 3 SHOULD-level findings only;
for a collection the worst image's (1 if one could not be read); 1 could not run
(I/O error, or --png without a working headless Chromium; the HTML is written first).
--png runs Chromium (set CHROMIUM to choose the binary).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = HELP
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("images", nargs="+", metavar="IMAGE|DIR",
                        help="qcow2 image, or several images or directories (opened "
                        "read-only, never modified)")
    parser.add_argument("--html", required=True, metavar="FILE",
                        help="the page to write; for a collection the index, with a page "
                        "per image in FILE-pages/ beside it")
    parser.add_argument("--png", metavar="FILE",
                        help="also a screenshot of the page (the index for a collection), "
                        "by headless Chromium")


def run(args: argparse.Namespace) -> int:
    import os

    from qcow2harness.report_html import build_page, render_png

    if len(args.images) == 1 and not os.path.isdir(args.images[0]):
        page, report = build_page(args.images[0])
        with open(args.html, "w", encoding="utf-8") as out:
            out.write(page)
        exit_code = report.exit_code
    else:
        from qcow2harness.progress import Progress
        from qcow2harness.report_index import write_collection

        with Progress.for_cli("report") as progress:
            exit_code = write_collection(
                args.images, args.html,
                on_page=lambda done: progress.count(done, None, "pages"))
    if args.png:
        render_png(args.html, args.png)
    return exit_code
