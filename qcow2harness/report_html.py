"""`report --html`: one self-contained HTML page about an image (no printing here).

The page shows the image's facts, a map of its host clusters by kind, a zone strip
for zoned images and the check findings with their clause text. Everything comes
from the checker (qcow2harness.checker: the recount's cluster_kinds(), the report),
the reference zone model (persisted_zone_report) and the clause registry; nothing
here decides what a cluster, a zone or a finding is.

The page fetches nothing: inline CSS and SVG, and one line of inline script that
records the page height (render_png() sizes its screenshot with it). Stable DOM for
tests and tools: sections have ids (facts, cluster-map, zones, findings, clauses);
map cells and legend rows carry data-kind (and data-count / data-first-cluster /
data-clusters); zones carry data-zone-index, data-zone-type, data-zone-state,
data-start, data-capacity, data-size and data-wp; findings carry data-clause,
data-level and data-offset, and link to #clause-ID.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qcow2harness.checker import Report, inspect_image, unreadable_report
from qcow2harness.checker.metadata import ClusterKind, cluster_kinds
from qcow2harness.checker.zoned import Zones
from qcow2harness.errors import HarnessError, ParseError
from qcow2harness.image import Image

# Bounds that keep the page small whatever the image (a 1 TiB image has 16 Mi clusters).
MAX_MAP_CELLS = 65536
MAX_ZONE_CELLS = 4096
MAX_ZONE_ROWS = 1024
MAP_WIDTH_PX = 1024
BINCOUNT_CHUNK = 1 << 20
PAGE_WIDTH_PX = 1120
MAX_SCREENSHOT_HEIGHT = 16000
CHROMIUM_ENV = "CHROMIUM"
CHROMIUM_TIMEOUT = 180

# Presentation only: a label and a colour per kind, most significant first. A map cell
# holding several kinds shows the first of them in this order.
KIND_STYLE: dict[ClusterKind, tuple[str, str]] = {
    ClusterKind.CORRUPT: ("corrupt (refcount below references, or two roles)", "#d32f2f"),
    ClusterKind.LEAKED: ("leaked (refcount above references)", "#f4c20d"),
    ClusterKind.HEADER: ("header", "#0d2b6b"),
    ClusterKind.L1: ("L1 table", "#1e50c8"),
    ClusterKind.SNAPSHOT_L1: ("snapshot L1 table", "#5b86e5"),
    ClusterKind.L2: ("L2 table", "#6a3fd0"),
    ClusterKind.REFCOUNT_TABLE: ("refcount table", "#8e24aa"),
    ClusterKind.REFCOUNT_BLOCK: ("refcount block", "#c072d6"),
    ClusterKind.SNAPSHOT_TABLE: ("snapshot table", "#1976a8"),
    ClusterKind.BITMAP_DIRECTORY: ("bitmap directory", "#00695c"),
    ClusterKind.BITMAP_TABLE: ("bitmap table", "#00a087"),
    ClusterKind.BITMAP_DATA: ("bitmap data", "#7fd6c2"),
    ClusterKind.CRYPT_HEADER: ("encryption header", "#37474f"),
    ClusterKind.ZONEDMETA: ("zoned metadata (write-pointer table)", "#00a3c4"),
    ClusterKind.COMPRESSED: ("compressed data", "#f57c00"),
    ClusterKind.ZERO: ("preallocated zero", "#b9e3b0"),
    ClusterKind.DATA: ("guest data", "#3f9b43"),
    ClusterKind.FREE: ("free (refcount 0, unreferenced)", "#e6e6e6"),
}
SIGNIFICANCE = np.array(list(KIND_STYLE), dtype=np.intp)

ZONE_STATE_COLOUR = {
    "empty": "#e6e6e6",
    "implicit_open": "#42a5f5",
    "explicit_open": "#1565c0",
    "closed": "#ffa726",
    "full": "#43a047",
    "not_write_pointer": "#90a4ae",
    "read_only": "#8d6e63",
    "offline": "#424242",
    "invalid": "#d32f2f",
}

VERDICT = {0: "conformant", 2: "a MUST clause is violated", 3: "SHOULD-level findings only"}
LEVEL_ORDER = {"MUST": 0, "SHOULD": 1, "MAY": 2}


def kind_name(kind: ClusterKind) -> str:
    """The data-kind value: 'refcount-block', 'snapshot-l1', ..."""
    return kind.name.lower().replace("_", "-")


# -- the cluster map ---------------------------------------------------------


@dataclass
class ClusterMap:
    """Host clusters bucketed into at most MAX_MAP_CELLS cells."""

    cluster_size: int
    num_clusters: int
    clusters_per_cell: int
    totals: np.ndarray  # clusters of each kind in the whole file, indexed by ClusterKind
    cell_counts: np.ndarray  # (cells, kinds)
    cell_kind: np.ndarray  # the most significant kind in each cell

    @property
    def cells(self) -> int:
        return int(self.cell_kind.size)


def build_cluster_map(kinds: np.ndarray, cluster_size: int,
                      max_cells: int = MAX_MAP_CELLS) -> ClusterMap:
    """Bucket per-cluster kinds (cluster_kinds()) into cells of a power-of-two size."""
    count = int(kinds.size)
    per_cell = 1
    while -(-count // per_cell) > max_cells:
        per_cell *= 2
    cells = -(-count // per_cell)
    nk = len(ClusterKind)
    totals = np.zeros(nk, dtype=np.int64)
    for start in range(0, count, BINCOUNT_CHUNK):  # bincount widens to intp: bound it
        totals += np.bincount(kinds[start:start + BINCOUNT_CHUNK], minlength=nk)[:nk]
    cell_counts = np.zeros((cells, nk), dtype=np.int64)
    whole = count // per_cell
    grid = kinds[:whole * per_cell].reshape(whole, per_cell)
    for kind in np.flatnonzero(totals):
        cell_counts[:whole, kind] = np.count_nonzero(grid == kind, axis=1)
    if whole < cells:
        cell_counts[whole] = np.bincount(kinds[whole * per_cell:], minlength=nk)[:nk]
    present = cell_counts[:, SIGNIFICANCE] > 0
    cell_kind = SIGNIFICANCE[np.argmax(present, axis=1)] if cells else np.zeros(0, np.intp)
    return ClusterMap(cluster_size, count, per_cell, totals, cell_counts, cell_kind)


# -- gathering -----------------------------------------------------------------


@dataclass
class ZoneView:
    """The zoned extension as the page shows it."""

    config: dict[str, int]
    rows: list[dict[str, int | str]]  # persisted_zone_report(), the first MAX_ZONE_CELLS
    nr_zones: int
    unreadable: bool = False  # the table's geometry is broken (see the findings)
    # Every zone of the table by stored state (count_persisted_states), streamed.
    state_counts: dict[str, int] = field(default_factory=dict)


@dataclass
class PageData:
    path: str
    report: Report
    facts: list[tuple[str, str, str]] = field(default_factory=list)  # (key, label, value)
    cluster_map: ClusterMap | None = None
    zones: ZoneView | None = None


def gather(path: str | os.PathLike[str]) -> PageData:
    """Check the image and collect what the page shows. OSError propagates (cannot run);
    an image the model refuses gives a page with that one finding."""
    name = os.fspath(path)
    file_size = os.path.getsize(name)
    try:
        image = Image.open(name)
    except ParseError as error:
        data = PageData(name, unreadable_report(name, error))
        data.facts = [("file", "file", name), ("file-size", "file size", _bytes(file_size)),
                      ("parse", "parse", f"refused: {error.one_line()}")]
        return data
    with image:
        inspection = inspect_image(image, cluster_map=True)
        data = PageData(name, inspection.report)
        data.facts = _facts(image)
        walk = inspection.walk
        if walk is not None and walk.zero_marks is not None:
            data.cluster_map = build_cluster_map(cluster_kinds(walk), walk.cluster_size)
        if inspection.zones is not None:
            data.zones = _zone_view(inspection.zones)
    return data


def _zone_view(zones: Zones) -> ZoneView:
    from qcow2harness.reference.zones import count_persisted_states, persisted_zone_report

    config = {key: int(value) for key, value in zones.fields.items()
              if isinstance(value, int)}
    if not zones.table_readable:
        return ZoneView(config, [], config["nr_zones"], unreadable=True)
    geometry = (config["zone_size"], config["zone_capacity"], config["conventional_zones"],
                config["virtual_size"])
    rows = persisted_zone_report(*geometry, zones.first_entries(MAX_ZONE_CELLS))
    states = count_persisted_states(*geometry, zones.batches())
    return ZoneView(config, rows, zones.nr_zones, state_counts=states)


def _bytes(value: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if value >= 1 << shift:
            scaled = value / (1 << shift)
            text = f"{scaled:.0f}" if value % (1 << shift) == 0 else f"{scaled:.2f}"
            return f"{text} {unit} ({value:,} bytes)"
    return f"{value:,} bytes"


def _facts(image: Image) -> list[tuple[str, str, str]]:
    """Header facts; each that cannot be read says why instead."""
    from qcow2harness.info import describe_features

    facts: list[tuple[str, str, str]] = []

    def fact(key: str, label: str, read: Callable[[], str]) -> None:
        try:
            facts.append((key, label, read()))
        except ParseError as error:
            facts.append((key, label, f"unreadable: {error.one_line()}"))

    header = image.header
    fact("file", "file", lambda: image.path)
    fact("file-size", "file size", lambda: _bytes(image.file_size))
    fact("version", "qcow2 version",
         lambda: f"{image.version} (compat {'0.10' if image.version == 2 else '1.1'})")
    fact("cluster-size", "cluster size", lambda: _bytes(image.cluster_size))
    fact("virtual-size", "virtual size", lambda: _bytes(int(header.virtual_size)))
    fact("refcount-bits", "refcount bits", lambda: str(1 << image.refcount_order))

    def features() -> str:
        described = describe_features(image)
        parts = []
        for kind in ("incompatible", "compatible", "autoclear"):
            names = described[kind] + [f"bit {b}" for b in described[f"unknown_{kind}_bits"]]
            parts.append(f"{kind}: {', '.join(names) or '-'}")
        return "; ".join(parts)

    fact("features", "features", features)
    fact("extensions", "header extensions",
         lambda: ", ".join(ext.name for ext in image.extensions()) or "-")
    fact("snapshots", "snapshots", lambda: str(int(header.num_snapshots)))
    fact("backing-file", "backing file", lambda: image.backing_file_name or "-")
    return facts


# -- rendering -------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
 margin:0 auto;padding:16px 24px;max-width:1072px;color:#1b1b1b;background:#fff}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:22px 0 6px;
 border-bottom:1px solid #ddd;padding-bottom:3px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:12.5px}
.verdict{display:inline-block;padding:3px 10px;border-radius:4px;color:#fff;font-weight:600}
.v0{background:#2e7d32}.v2{background:#c62828}.v3{background:#b26a00}
table{border-collapse:collapse;margin:4px 0}td,th{padding:2px 8px;text-align:left;
 vertical-align:top;border-bottom:1px solid #eee}th{font-weight:600;background:#f6f6f6}
table.facts td:first-child{color:#555;white-space:nowrap}
.note{color:#555;margin:4px 0}
.legend{display:flex;flex-wrap:wrap;gap:2px 14px;margin:6px 0}
.legend div{display:flex;align-items:center;gap:5px}.legend .none{display:none}
.sw{display:inline-block;width:12px;height:12px;border:1px solid #0003}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.lvl-MUST{color:#c62828;font-weight:600}.lvl-SHOULD{color:#b26a00;font-weight:600}
.lvl-MAY{color:#555}
dl.clauses dt{font-weight:600;margin-top:6px}dl.clauses dd{margin:0 0 0 18px}
svg text{font:10px system-ui,sans-serif}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(data: PageData, *, registry: Any = None) -> str:
    from qcow2harness.spec.registry import load

    registry = registry or load()
    report = data.report
    title = f"qcow2-harness report: {os.path.basename(data.path)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{CSS}{_kind_css()}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        _facts_section(data),
        _map_section(data.cluster_map),
    ]
    if data.zones is not None:
        parts.append(_zones_section(data.zones))
    parts.append(_findings_section(report))
    parts.append(_clauses_section(report, registry))
    parts.append("<script>document.documentElement.dataset.pageHeight="
                 "document.documentElement.scrollHeight</script>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _kind_css() -> str:
    return "".join(f".k-{kind_name(kind)}{{fill:{colour};background:{colour}}}"
                   for kind, (_label, colour) in KIND_STYLE.items())


def _facts_section(data: PageData) -> str:
    code = data.report.exit_code
    rows = "".join(f'<tr data-fact="{_esc(key)}"><td>{_esc(label)}</td><td>{_esc(value)}</td>'
                   f"</tr>" for key, label, value in data.facts)
    counts = data.report.level_counts
    return (f'<section id="facts"><p><span class="verdict v{code}" data-exit-code="{code}">'
            f"exit {code}: {_esc(VERDICT.get(code, ''))}</span> "
            f"{counts['MUST']} MUST, {counts['SHOULD']} SHOULD, {counts['MAY']} MAY "
            f'finding(s) (<a href="#findings">findings</a>)</p>'
            f'<table class="facts">{rows}</table></section>')


def _span(first: int, last: int, cluster_size: int) -> str:
    return (f"cluster {first}" if first == last else f"clusters {first}\u2013{last}") + (
        f" (bytes {first * cluster_size:#x}\u2013{(last + 1) * cluster_size - 1:#x})")


def _map_section(cmap: ClusterMap | None) -> str:
    head = '<section id="cluster-map"><h2>Host clusters by kind</h2>'
    if cmap is None:
        return head + ('<p class="note">No map: the header is too broken to locate the '
                       "metadata (see the findings).</p></section>")
    per = cmap.clusters_per_cell
    cells = cmap.cells
    cols = 64 if cells <= 1024 else 128 if cells <= 8192 else 256
    px = MAP_WIDTH_PX // cols
    rows = -(-cells // cols)
    note = (f"{cmap.num_clusters:,} clusters of {_bytes(cmap.cluster_size)} in the file; "
            + ("one cell per cluster." if per == 1 else
               f"{per} clusters per cell; a cell shows the most significant kind it holds "
               "(the order of the legend), its title lists them all."))
    legend = []
    for kind, (label, _colour) in KIND_STYLE.items():
        count = int(cmap.totals[kind])
        legend.append(f'<div data-kind="{kind_name(kind)}" data-count="{count}"'
                      f'{" class=none" if count == 0 else ""}><span class="sw k-'
                      f'{kind_name(kind)}"></span>{_esc(label)}: {count:,}</div>')
    # Runs of cells of one kind within a row become one rect (a bounded, small page).
    kinds = cmap.cell_kind
    index = np.arange(cells)
    starts_mask = (index % cols == 0)
    starts_mask[1:] |= kinds[1:] != kinds[:-1]
    starts = np.flatnonzero(starts_mask)
    ends = np.append(starts[1:], cells)
    running = np.vstack([np.zeros((1, cmap.cell_counts.shape[1]), np.int64),
                         np.cumsum(cmap.cell_counts, axis=0)])
    run_counts = running[ends] - running[starts]
    height = px - 1 if px >= 8 else px
    rects = []
    for start, end, counts in zip(starts.tolist(), ends.tolist(), run_counts, strict=True):
        row, col = divmod(start, cols)
        kind = ClusterKind(int(kinds[start]))
        first = start * per
        last = min(end * per, cmap.num_clusters) - 1
        content = ", ".join(f"{KIND_STYLE[ClusterKind(k)][0].split(' (')[0]} {int(counts[k]):,}"
                            for k in SIGNIFICANCE if counts[k])
        rects.append(f'<rect x="{col * px}" y="{row * px}" width="{(end - start) * px}" '
                     f'height="{height}" class="k-{kind_name(kind)}" '
                     f'data-kind="{kind_name(kind)}" data-first-cluster="{first}" '
                     f'data-clusters="{last - first + 1}"><title>'
                     f"{_esc(_span(first, last, cmap.cluster_size))}: {_esc(content)}"
                     "</title></rect>")
    svg = (f'<svg id="cluster-map-svg" xmlns="http://www.w3.org/2000/svg" '
           f'width="{cols * px}" height="{rows * px}" role="img" '
           f'aria-label="host cluster map">{"".join(rects)}</svg>')
    return (head + f'<p class="note">{_esc(note)} References past the end of the file have '
            "no cell; the findings list them.</p>"
            f'<div class="legend" id="cluster-legend">{"".join(legend)}</div>{svg}</section>')


def _zone_title(row: dict[str, int | str], zone_size: int) -> str:
    start, wp, capacity = int(row["start"]), int(row["wp"]), int(row["capacity"])
    text = (f"zone {row['index']} ({row['type']}, {row['state']}): start {start:#x}, "
            f"size {zone_size:,}, capacity {capacity:,}")
    if row["type"] == "sequential":
        written = wp - start
        share = f", {100 * written / capacity:.1f}% of capacity" if capacity else ""
        text += f", wp {wp:#x} (+{written:,} bytes{share})"
    return text


def _zones_section(view: ZoneView) -> str:
    config = view.config
    zone_size = config["zone_size"]
    head = ('<section id="zones"><h2>Zones</h2><p class="note">'
            f"{view.nr_zones:,} zones of {_bytes(zone_size)}, capacity "
            f"{_bytes(config['zone_capacity'])}, {config['conventional_zones']} conventional; "
            f"max open {config['max_open_zones'] or 'unlimited'}, max active "
            f"{config['max_active_zones'] or 'unlimited'}, max append "
            f"{config['max_append_bytes'] or 'unlimited'} bytes. States are what the stored "
            "write pointers say (open states are never stored).</p>")
    if view.unreadable:
        return head + ('<p class="note">The write-pointer table cannot be read: its geometry '
                       "breaks a clause (see the findings).</p></section>")
    rows = view.rows
    count = len(rows)
    per_row = min(count, 32 if count <= 256 else 64)
    cell_w = MAP_WIDTH_PX // max(per_row, 1)
    cell_h = 44 if count <= 256 else 18
    gap = 3 if cell_w >= 12 else 1
    width = cell_w - gap
    cells = []
    states = sorted({str(row["state"]) for row in rows})
    for row in rows:
        index = int(row["index"])
        r, c = divmod(index, per_row)
        x, y = c * cell_w, r * (cell_h + gap)
        start, wp, capacity = int(row["start"]), int(row["wp"]), int(row["capacity"])
        state, kind = str(row["state"]), str(row["type"])
        colour = ZONE_STATE_COLOUR.get(state, "#d32f2f")
        cap_w = width * min(capacity, zone_size) / zone_size
        parts = [f'<rect x="{x}" y="{y}" width="{width}" height="{cell_h}" fill="#fff" '
                 'stroke="#999"/>',
                 f'<rect x="{x}" y="{y}" width="{cap_w:.2f}" height="{cell_h}" '
                 'fill="#f4f4f4"/>']
        if cap_w < width:  # beyond the capacity: not writable
            parts.append(f'<rect x="{x + cap_w:.2f}" y="{y}" width="{width - cap_w:.2f}" '
                         f'height="{cell_h}" fill="url(#beyond-capacity)"/>')
        if kind == "conventional":
            fill_w = float(width)
        else:
            fill_w = width * min(max(wp - start, 0), zone_size) / zone_size
            if wp > start:
                fill_w = max(fill_w, 2.0)  # a few bytes written still show
        if fill_w > 0:
            parts.append(f'<rect class="zone-fill" x="{x}" y="{y}" width="{fill_w:.2f}" '
                         f'height="{cell_h}" fill="{colour}"/>')
        band = max(cell_h // 8, 2)  # the state's colour along the bottom, whatever the wp
        parts.append(f'<rect x="{x}" y="{y + cell_h - band}" width="{width}" height="{band}" '
                     f'fill="{colour}"/>')
        if cap_w < width:
            parts.append(f'<line x1="{x + cap_w:.2f}" x2="{x + cap_w:.2f}" y1="{y}" '
                         f'y2="{y + cell_h}" stroke="#333" stroke-dasharray="2,2"/>')
        if cell_h >= 40 and cell_w >= 24:
            parts.append(f'<text x="{x + 3}" y="{y + 12}">{index}</text>')
        cells.append(f'<g class="zone" data-zone-index="{index}" data-zone-type="{kind}" '
                     f'data-zone-state="{_esc(state)}" data-start="{start}" '
                     f'data-capacity="{capacity}" data-size="{zone_size}" data-wp="{wp}">'
                     f"<title>{_esc(_zone_title(row, zone_size))}</title>{''.join(parts)}</g>")
    strip_rows = -(-count // max(per_row, 1))
    pattern = ('<defs><pattern id="beyond-capacity" width="6" height="6" '
               'patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
               '<rect width="6" height="6" fill="#ddd"/><line x1="0" y1="0" x2="0" y2="6" '
               'stroke="#aaa" stroke-width="3"/></pattern></defs>')
    svg = (f'<svg id="zone-strip" xmlns="http://www.w3.org/2000/svg" width="{MAP_WIDTH_PX}" '
           f'height="{strip_rows * (cell_h + gap)}" role="img" aria-label="zones">'
           f"{pattern}{''.join(cells)}</svg>")
    legend = "".join(
        f'<div data-zone-state="{_esc(state)}"><span class="sw" style="background:'
        f'{ZONE_STATE_COLOUR.get(state, "#d32f2f")}"></span>{_esc(state.replace("_", " "))}: '
        f"{sum(1 for row in rows if row['state'] == state)}</div>" for state in states)
    legend += ('<div><span class="sw" style="background:repeating-linear-gradient(45deg,#aaa 0 '
               '2px,#ddd 2px 5px)"></span>beyond the zone capacity</div>'
               "<div>(a zone's fill runs from its start to its write pointer; the band "
               "along its bottom is its state)</div>")
    shown = "" if count == view.nr_zones else (
        f'<p class="note">The first {count:,} of {view.nr_zones:,} zones are shown; the '
        "state counts beside the colours are of those. All zones by stored state: "
        + _esc(", ".join(f"{state.replace('_', ' ')} {number:,}"
                         for state, number in view.state_counts.items()))
        + ".</p>")
    table_rows = []
    for row in rows[:MAX_ZONE_ROWS]:
        start, wp, capacity = int(row["start"]), int(row["wp"]), int(row["capacity"])
        sequential = row["type"] == "sequential"
        written = f"{wp - start:,}" if sequential else "-"
        share = (f"{100 * (wp - start) / capacity:.1f}%" if sequential and capacity else "-")
        table_rows.append(
            f'<tr data-zone-index="{row["index"]}" data-zone-type="{row["type"]}" '
            f'data-zone-state="{_esc(row["state"])}" data-wp="{wp}" '
            f'data-capacity="{capacity}"><td class="num">{row["index"]}</td>'
            f'<td data-field="type">{row["type"]}</td>'
            f'<td data-field="state">{_esc(str(row["state"]).replace("_", " "))}</td>'
            f'<td class="num mono">{start:#x}</td><td class="num">{capacity:,}</td>'
            f'<td class="num mono" data-field="wp">{wp:#x}</td><td class="num">{written}</td>'
            f'<td class="num">{share}</td></tr>')
    more = "" if count <= MAX_ZONE_ROWS else (
        f'<p class="note">The table lists the first {MAX_ZONE_ROWS:,} zones.</p>')
    table = ('<table id="zone-table"><thead><tr><th class="num">zone</th><th>type</th>'
             '<th>state</th><th class="num">start</th><th class="num">capacity</th>'
             '<th class="num">wp</th><th class="num">written</th><th class="num">of capacity'
             f'</th></tr></thead><tbody>{"".join(table_rows)}</tbody></table>')
    return (head + shown + f'<div class="legend" id="zone-legend">{legend}</div>{svg}'
            f"{table}{more}</section>")


def _findings_section(report: Report) -> str:
    findings = sorted(report.findings, key=lambda f: LEVEL_ORDER.get(f.level, 3))
    rows = []
    for finding in findings:
        offset = "" if finding.offset is None else f"{finding.offset:#x}"
        raw_offset = "" if finding.offset is None else str(finding.offset)
        rows.append(
            f'<tr class="finding" data-clause="{_esc(finding.clause)}" '
            f'data-level="{finding.level}" data-offset="{raw_offset}">'
            f'<td class="lvl-{finding.level}">{finding.level}</td>'
            f'<td><a class="clause" href="#clause-{_esc(finding.clause)}">'
            f"{_esc(finding.clause)}</a></td>"
            f'<td class="num mono">{offset}</td><td>{_esc(finding.message)}</td></tr>')
    for clause, count in sorted(report.suppressed.items()):
        rows.append(f'<tr class="suppressed" data-clause="{_esc(clause)}" data-count="{count}">'
                    f'<td></td><td><a class="clause" href="#clause-{_esc(clause)}">'
                    f"{_esc(clause)}</a></td><td></td><td>... and {count:,} more</td></tr>")
    body = ("<p>No findings: the image is conformant.</p>" if not rows else
            '<table id="findings-table"><thead><tr><th>level</th><th>clause</th>'
            '<th class="num">offset</th><th>finding</th></tr></thead><tbody>'
            f"{''.join(rows)}</tbody></table>")
    return f'<section id="findings"><h2>Check findings</h2>{body}</section>'


def _clauses_section(report: Report, registry: Any) -> str:
    items = []
    for clause_id in sorted(report.clauses(), key=_clause_sort_key):
        clause = registry[clause_id]
        items.append(f'<dt id="clause-{_esc(clause.id)}">{_esc(clause.id)} '
                     f'<span class="lvl-{clause.level}">{clause.level}</span> '
                     f"{_esc(clause.title)}</dt><dd>{_esc(clause.rule)} "
                     f'<span class="note">Source: {_esc(clause.source)}.</span></dd>')
    if not items:
        return ""
    return ('<section id="clauses"><h2>Clauses cited</h2><p class="note">From the spec '
            "registry (spec/clauses.toml; SPEC.md has them all).</p>"
            f'<dl class="clauses">{"".join(items)}</dl></section>')


def _clause_sort_key(clause_id: str) -> tuple[str, int]:
    family, _, number = clause_id.rpartition("-")
    return family, int(number) if number.isdigit() else 0


def build_page(path: str | os.PathLike[str]) -> tuple[str, Report]:
    """The page for one image and the check report behind it (its exit_code is the verdict)."""
    data = gather(path)
    return render_html(data), data.report


# -- headless Chromium -----------------------------------------------------------


class ChromiumError(HarnessError):
    """Headless Chromium is missing or failed."""


def find_chromium() -> str | None:
    """Chromium's path: $CHROMIUM, else chromium or chromium-browser on PATH."""
    override = os.environ.get(CHROMIUM_ENV, "")
    if override:
        return shutil.which(override)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _chromium(args: Sequence[str], url: str) -> subprocess.CompletedProcess[str]:
    binary = find_chromium()
    if binary is None:
        raise ChromiumError("headless Chromium not found: install Debian's chromium (or set "
                            f"{CHROMIUM_ENV} to its path)")
    with tempfile.TemporaryDirectory(prefix="qcow2-harness-chromium-") as profile:
        command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                   "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                   f"--user-data-dir={profile}", *args, url]
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=CHROMIUM_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ChromiumError(f"Chromium did not finish within {CHROMIUM_TIMEOUT} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ChromiumError(f"Chromium failed (exit {done.returncode}): {last}")
    return done


def dump_dom(html_path: str | os.PathLike[str], width: int = PAGE_WIDTH_PX) -> str:
    """The page's DOM after its scripts ran, as headless Chromium serialises it."""
    return _chromium(["--dump-dom", f"--window-size={width},800"],
                     Path(html_path).resolve().as_uri()).stdout


def render_png(html_path: str | os.PathLike[str], png_path: str | os.PathLike[str],
               width: int = PAGE_WIDTH_PX) -> None:
    """Screenshot the whole page: one run to measure its height, one to shoot."""
    dom = dump_dom(html_path, width)
    match = re.search(r'data-page-height="(\d+)"', dom)
    height = int(match.group(1)) if match else 2000
    height = max(200, min(height, MAX_SCREENSHOT_HEIGHT))
    target = Path(png_path).resolve()
    _chromium([f"--screenshot={target}", f"--window-size={width},{height}",
               "--force-device-scale-factor=1"], Path(html_path).resolve().as_uri())
    if not target.exists():
        raise ChromiumError(f"Chromium wrote no screenshot to {target}")
