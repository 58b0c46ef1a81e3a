"""`bench/run.py --only zones`: check, info, map and report on zoned images of 2^12 to
2^24 zones and the spec's maximum, 536,870,911 (ZONE-10). Targets: every command at most
256 MB RSS at any zone count, check at 2^22 zones within 2 s.

Images come from bench/zone_images.py (the reference writer holds a model object per
zone, so it cannot make them): every zone EMPTY up to 2^24 zones; at the maximum the
4 GiB table is a hole (sparse, no disk), which reads as zeros, so every zone but the
first breaks WP-6 and check exits 2 with one tallied finding.
"""

from __future__ import annotations

import os
from typing import Any

from run import CLI, run_measured
from zone_images import build_zoned_image

MAX_ZONES = (2**32 - 1) // 8
COUNTS = [1 << bits for bits in range(12, 25, 2)] + [MAX_ZONES]
RSS_TARGET_MIB = 256


def _image(workdir: str, count: int) -> str:
    path = os.path.join(workdir, f"zones-{count}.qcow2")
    if not os.path.exists(path):
        table = "hole" if count > 1 << 24 else "empty"
        build_zoned_image(path + ".part", count, conventional_zones=2, table=table)
        os.rename(path + ".part", path)
    return path


def bench_zones(_sizes: list[str], workdir: str) -> dict[str, Any]:
    rows = []
    for count in COUNTS:
        path = _image(workdir, count)
        html = os.path.join(workdir, "zones.html")
        commands = {"check": [CLI, "check", path], "info": [CLI, "info", path],
                    "map": [CLI, "map", path], "report": [CLI, "report", path, "--html", html]}
        run_measured(commands["check"])  # warm the page cache
        row: dict[str, Any] = {"zones": count, "file_mib": os.path.getsize(path) / 2**20,
                               "disk_mib": os.stat(path).st_blocks * 512 / 2**20}
        for name, argv in commands.items():
            wall, peak_kib, code = run_measured(argv)
            row[f"{name}_s"] = wall
            row[f"{name}_rss_mib"] = peak_kib / 1024
            row[f"{name}_exit"] = code
        rows.append(row)
    return {"title": "zone tables at any zone count", "rows": rows, "notes": _notes(rows)}


def _notes(rows: list[dict[str, Any]]) -> list[str]:
    commands = ("check", "info", "map", "report")
    peak = max(row[f"{name}_rss_mib"] for row in rows for name in commands)
    big = [row for row in rows if row["zones"] >= 1 << 20]
    # The cost of each further zone between successive counts: constant means linear
    # (below 2^20 zones start-up dominates).
    per_zone = {name: [(b[f"{name}_s"] - a[f"{name}_s"]) / (b["zones"] - a["zones"]) * 1e9
                       for a, b in zip(big, big[1:], strict=False)]
                for name in ("check", "info", "report")}
    at_22 = next(row for row in rows if row["zones"] == 1 << 22)
    notes = [
        "One run each after a warm-up check; wall seconds and peak RSS from GNU time. "
        f"Images: bench/zone_images.py, 64 KiB zones and clusters, 2 conventional zones; "
        f"all zones EMPTY up to 2^24, a sparse all-zero table at {MAX_ZONES:,} (exit 2: "
        "WP-6, one finding).",
        f"Memory: peak RSS {peak:.0f} MiB over every command and count (target "
        f"{RSS_TARGET_MIB} MiB): {'flat' if peak <= RSS_TARGET_MIB else 'OVER TARGET'}.",
        "Time per further zone from 2^20 zones up, in ns, between successive counts "
        "(about constant: time is linear in the zone count): " + "; ".join(
            f"{name} " + ", ".join(f"{value:.0f}" for value in values)
            for name, values in per_zone.items()) + ".",
        f"check at 2^22 zones: {at_22['check_s']:.2f} s (target 2 s).",
    ]
    return notes
