"""The main job on built-in defaults, as `make demo` runs it.

Makes a few images with the real qemu-img and a zoned one with the reference
writer, then describes each. Returns what to show; the CLI prints it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from qcow2harness.checker import check_path
from qcow2harness.corpus import build_corpus
from qcow2harness.image import Image
from qcow2harness.info import describe, render

DEMO_QEMU_IMAGES = ("qemu-compat-1.1", "qemu-extended-l2", "qemu-snapshot", "qemu-bitmap")

MiB = 1 << 20


def make_zoned_image(path: str) -> str:
    """A zoned image with a little history: conventional, written, full and empty zones."""
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    config = ZoneConfig(size=64 * MiB, zone_size=4 * MiB, zone_capacity=3 * MiB,
                        conventional_zones=2, max_open_zones=4, max_active_zones=6,
                        max_append_bytes=256 * 1024)
    with ReferenceWriter.create(path, config.size, zoned=config) as writer:
        writer.write(0, b"\x11" * 65536)  # conventional zone 0
        writer.write(2 * config.zone_size, b"\x22" * 65536)  # zone 2: closed after reopen
        writer.append(3, b"\x33" * 4096)
        writer.finish_zone(4)
        writer.write(5 * config.zone_size, b"\x55" * config.zone_capacity)  # fills zone 5
        writer.flush()
    return path


# Non-conformant images to show verdicts on: (clause, corruption name).
DEMO_CORRUPTIONS = (("WP-2", "host-endian-table"), ("ZONE-13", "open-limit-over-active-limit"))


def broken_images(directory: str, zoned_image: str) -> list[str]:
    """Copies of the zoned image, each broken in one clause (properties.corruptions)."""
    from qcow2harness.properties.corruptions import corruptions_for

    with open(zoned_image, "rb") as base_file:
        base = base_file.read()
    paths = []
    for clause, name in DEMO_CORRUPTIONS:
        corruption = next(c for c in corruptions_for(clause) if c.name == name)
        path = os.path.join(directory, f"broken-{clause}-{name}.qcow2")
        with open(path, "wb") as out:
            out.write(corruption.broken(base))
        paths.append(path)
    return paths


def map_text(path: str) -> str:
    """`qcow2-harness map` in its human form (qemu-img map's table)."""
    from qcow2harness.map import HUMAN_HEADER, Chain, human_line

    with Chain(path) as chain:
        rows = [row for extent in chain.extents() if (row := human_line(extent))]
    return "\n".join([HUMAN_HEADER, *rows])


def write_report(path: str) -> str:
    """Write IMAGE.html beside the image; one line saying where."""
    from qcow2harness.report_html import build_page

    page, report = build_page(path)
    html_path = os.path.splitext(path)[0] + ".html"
    with open(html_path, "w") as stream:
        stream.write(page)
    return f"{html_path}  (check exit {report.exit_code})"


def run_demo(directory: str) -> Iterator[tuple[str, str]]:
    """Yield (title, text) sections."""
    os.makedirs(directory, exist_ok=True)
    manifest = build_corpus(directory, only=DEMO_QEMU_IMAGES)
    paths = [os.path.join(directory, entry["file"]) for entry in manifest]
    zoned = make_zoned_image(os.path.join(directory, "reference-zoned.qcow2"))
    paths.append(zoned)
    paths.extend(broken_images(directory, zoned))
    for path in paths:
        with Image.open(path) as image:
            yield f"info {os.path.basename(path)}", render(describe(image))
    verdicts = []
    for path in paths:
        report = check_path(path)
        clauses = ", ".join(sorted({f.clause for f in report.violations})) or "-"
        verdicts.append(f"{os.path.basename(path):<52} exit {report.exit_code}  {clauses}")
    yield "check (0 conformant, 2 MUST violated, 3 SHOULD only)", "\n".join(verdicts)
    yield f"map {os.path.basename(zoned)}", map_text(zoned)
    yield "HTML reports (qcow2-harness report)", "\n".join(
        write_report(path) for path in (zoned, paths[-1]))

    from qcow2harness.crash.campaign import short_campaign

    yield "crash campaign (short)", short_campaign()
