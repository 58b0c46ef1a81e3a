"""The conformance checker: every finding names a clause of spec/.

    from qcow2harness.checker import check_path
    report = check_path("image.qcow2")
    report.exit_code      # 0 conformant, 2 MUST violated, 3 SHOULD findings only

MAY clauses that an image exercises are reported as notes: informational findings
that never change the exit code.

It reports all independent findings; only a structure too broken to read
stops the checks that depend on it. The image is opened read-only.
"""

from __future__ import annotations

import os
import time

from qcow2harness.checker.header import check_extensions, check_header
from qcow2harness.checker.metadata import StageProgress, check_metadata
from qcow2harness.checker.report import Finding, Findings, Report
from qcow2harness.checker.zoned import check_zoned, read_zoned
from qcow2harness.errors import ParseError
from qcow2harness.image import Image

__all__ = ["Finding", "Report", "check_image", "check_path"]


def check_image(image: Image, progress: StageProgress | None = None) -> Report:
    """Check an opened image; `progress(stage, done, total)` hears about the long loops."""
    started = time.perf_counter()
    report = Report(path=image.path)
    out = Findings(report)
    report.stats["file_size"] = image.file_size
    if check_header(image, out):
        extensions_ok = check_extensions(image, out)
        zones = read_zoned(image) if extensions_ok else None
        walk = check_metadata(image, out, zones, progress)
        if extensions_ok:
            check_zoned(image, out, walk, zones)
        if walk is not None:
            report.stats.update(walk.stats)
    report.stats["seconds"] = round(time.perf_counter() - started, 6)
    return report


def check_path(path: str | os.PathLike[str],
               progress: StageProgress | None = None) -> Report:
    """Check an image file; a file that is not qcow2 at all is one HDR finding."""
    try:
        image = Image.open(path)
    except ParseError as error:
        report = Report(path=os.fspath(path))
        Findings(report).add(error.clause or "HDR-1", error.message, error.offset)
        return report
    with image:
        return check_image(image, progress)
