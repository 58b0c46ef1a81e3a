"""`qcow2-harness report IMAGE --html FILE [--png FILE]`: the check as one HTML page."""

from __future__ import annotations

import argparse

NAME = "report"
HELP = "write a self-contained HTML page: cluster map, zones, findings (exit code as check)"

EPILOG = """\
The page (inline CSS and SVG, nothing fetched) shows the image's facts, a map of its
host clusters by kind, for zoned images a strip and a table of the zones, and the
check findings linked to their clause text. An image the parser refuses still gets a
page, with that finding.

Exit codes mirror `check`, so the command can gate CI: 0 conformant, 2 a MUST clause
is violated (or the image is not readable as qcow2), 3 SHOULD-level findings only;
1 could not run (I/O error, or --png without a working headless Chromium; the HTML is
written first). --png runs Chromium (set CHROMIUM to choose the binary).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = HELP
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("image", help="qcow2 image (opened read-only, never modified)")
    parser.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    parser.add_argument("--png", metavar="FILE",
                        help="also a screenshot of the page, by headless Chromium")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.report_html import build_page, render_png

    page, report = build_page(args.image)
    with open(args.html, "w", encoding="utf-8") as out:
        out.write(page)
    if args.png:
        render_png(args.html, args.png)
    return report.exit_code
