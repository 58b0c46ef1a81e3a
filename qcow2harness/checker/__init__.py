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
from dataclasses import dataclass

from qcow2harness.checker.header import check_extensions, check_header
from qcow2harness.checker.metadata import StageProgress, Walk, check_metadata
from qcow2harness.checker.report import Finding, Findings, Report
from qcow2harness.checker.zoned import Zones, check_zoned, read_zoned
from qcow2harness.errors import ParseError
from qcow2harness.image import Image

__all__ = ["Finding", "Inspection", "Report", "check_image", "check_path", "inspect_image",
           "unreadable_report"]


@dataclass
class Inspection:
    """A check's report and what the checks read on the way (None where they stopped)."""

    report: Report
    walk: Walk | None = None
    zones: Zones | None = None


def inspect_image(image: Image, progress: StageProgress | None = None, *,
                  cluster_map: bool = False) -> Inspection:
    """Check an image and keep the metadata walk and the zoned extension as read.
    `progress(stage, done, total)` hears about the long loops; `cluster_map` keeps
    what metadata.cluster_kinds() needs."""
    started = time.perf_counter()
    report = Report(path=image.path)
    inspection = Inspection(report)
    out = Findings(report)
    report.stats["file_size"] = image.file_size
    if check_header(image, out):
        extensions_ok = check_extensions(image, out)
        zones = read_zoned(image) if extensions_ok else None
        walk = check_metadata(image, out, zones, progress, cluster_map=cluster_map)
        if extensions_ok:
            check_zoned(image, out, walk, zones)
        if walk is not None:
            report.stats.update(walk.stats)
        inspection.walk, inspection.zones = walk, zones
    report.stats["seconds"] = round(time.perf_counter() - started, 6)
    return inspection


def check_image(image: Image, progress: StageProgress | None = None) -> Report:
    """Check an opened image; `progress(stage, done, total)` hears about the long loops."""
    return inspect_image(image, progress).report


def unreadable_report(path: str | os.PathLike[str], error: ParseError) -> Report:
    """The report on a file the image model refuses to open: one finding (HDR-1 at worst)."""
    report = Report(path=os.fspath(path))
    Findings(report).add(error.clause or "HDR-1", error.message, error.offset)
    return report


def check_path(path: str | os.PathLike[str],
               progress: StageProgress | None = None, *, wp_byte_order: str = "big") -> Report:
    """Check an image file; a file that is not qcow2 at all is one HDR finding.
    wp_byte_order="little" judges a write-pointer table as a writer with the known WP-2
    deviation wrote it (Image)."""
    try:
        image = Image.open(path, wp_byte_order=wp_byte_order)
    except ParseError as error:
        return unreadable_report(path, error)
    with image:
        return check_image(image, progress)
