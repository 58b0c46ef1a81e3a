"""`make bench`: measure the speed and memory targets, write the figures to a file.

Never a timed assertion in a test: the figures land in bench/results.md (and
bench/results.json) with the machine and QEMU version they were taken on.

  python bench/run.py [--out bench/results.md] [--only NAME] [--sizes 64G,256G,1T]

With --only, the other sections keep their figures from the last bench/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = os.path.join(os.path.dirname(sys.executable), "qcow2-harness")
RUNS = 5
GNU_TIME = "/usr/bin/time"


def run_measured(argv: list[str]) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in KiB, and exit code of one command.

    Peak RSS comes from GNU time (Debian package `time`), which waits for the
    command itself: a child started from Python would inherit Python's peak.
    """
    with tempfile.NamedTemporaryFile("r") as rss_file:
        start = time.perf_counter()
        proc = subprocess.run([GNU_TIME, "-q", "-f", "%M", "-o", rss_file.name, *argv],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        peak_kib = int(rss_file.read().strip().splitlines()[-1])
    return elapsed, peak_kib, proc.returncode


def median_run(argv: list[str], runs: int = RUNS) -> dict[str, float]:
    samples = [run_measured(argv) for _ in range(runs)]
    return {
        "wall_s": statistics.median(s[0] for s in samples),
        "peak_rss_mib": max(s[1] for s in samples) / 1024,
        "exit": samples[0][2],
    }


def bytes_read_by_info(path: str) -> int:
    """Bytes `info` reads from the image, counted in-process."""
    import io

    from qcow2harness.image import Image
    from qcow2harness.info import describe

    class Counting(io.FileIO):
        total = 0

        def readinto(self, buffer: Any) -> int | None:  # type: ignore[override]
            n = super().readinto(buffer)
            Counting.total += n or 0
            return n

    raw = Counting(path, "r")
    with Image(io.BufferedReader(raw), path) as image:
        describe(image)
    return Counting.total


def preallocated_image(directory: str, size: str) -> str:
    path = os.path.join(directory, f"prealloc-{size}.qcow2")
    if not os.path.exists(path):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                        "preallocation=metadata", path, size], check=True)
    return path


def bench_info(sizes: list[str], workdir: str) -> dict[str, Any]:
    """info on metadata-preallocated images: cost must not grow with the image."""
    rows = []
    for size in sizes:
        path = preallocated_image(workdir, size)
        figures = median_run([CLI, "info", "--json", path])
        figures.update(size=size, file_bytes=os.path.getsize(path),
                       bytes_read=bytes_read_by_info(path))
        rows.append(figures)
    return {"title": "info on metadata-preallocated images", "rows": rows}


def bench_check(sizes: list[str], workdir: str) -> dict[str, Any]:
    """check vs qemu-img check, side by side (targets at 1 TiB: <= 1.0x wall, <= 256 MB RSS)."""
    rows = []
    for size in sizes:
        path = preallocated_image(workdir, size)
        # One untimed run each, so both read from a warm page cache.
        run_measured([CLI, "check", path])
        run_measured(["qemu-img", "check", path])
        ours = median_run([CLI, "check", path])
        theirs = median_run(["qemu-img", "check", path])
        rows.append({
            "size": size,
            "ours_wall_s": ours["wall_s"],
            "qemu_wall_s": theirs["wall_s"],
            "wall_ratio": ours["wall_s"] / theirs["wall_s"],
            "ours_peak_rss_mib": ours["peak_rss_mib"],
            "qemu_peak_rss_mib": theirs["peak_rss_mib"],
            "ours_exit": int(ours["exit"]),
            "qemu_exit": int(theirs["exit"]),
        })
    notes = ["Median of 5 runs after one warm-up run each; page cache warm for both. "
             "Images: `qemu-img create -f qcow2 -o preallocation=metadata` (64 KiB clusters)."]
    return {"title": "check vs qemu-img check", "rows": rows, "notes": notes}


def bench_model(_sizes: list[str], _workdir: str) -> dict[str, Any]:
    """Reference zone model throughput (target >= 100,000 ops/s)."""
    from qcow2harness.reference.zones import ZoneConfig, ZoneModel

    config = ZoneConfig(size=1 << 36, zone_size=1 << 20, zone_capacity=1 << 20,
                        conventional_zones=4, max_open_zones=16, max_active_zones=32,
                        max_append_bytes=1 << 16)
    rows = []
    for name, ops in (("sequential 4 KiB writes", 400_000), ("mixed write/open/close/finish/reset",
                                                              400_000)):
        model = ZoneModel(config)
        nr_zones = model.nr_zones
        wps = [z.wp for z in model.report()]
        start = time.perf_counter()
        if name.startswith("sequential"):
            zone = config.conventional_zones
            for _ in range(ops):
                if not model.write(wps[zone], 4096).ok:
                    model.reset(zone)
                    wps[zone] = zone * config.zone_size
                    continue
                wps[zone] += 4096
                zone = zone + 1 if zone + 1 < nr_zones else config.conventional_zones
        else:
            for i in range(ops):
                zone = config.conventional_zones + (i * 7919) % (nr_zones - 4)
                kind = i % 8
                if kind < 4:
                    model.append(zone, 4096)
                elif kind == 4:
                    model.open(zone)
                elif kind == 5:
                    model.close(zone)
                elif kind == 6:
                    model.finish(zone)
                else:
                    model.reset(zone)
        elapsed = time.perf_counter() - start
        rows.append({"workload": name, "ops": ops, "seconds": elapsed,
                     "ops_per_s": ops / elapsed})
    return {"title": "reference zone model throughput", "rows": rows}


def bench_crash(sizes: list[str], workdir: str) -> dict[str, Any]:
    from qcow2harness.crash.bench import bench_crash as run

    return run(sizes, workdir)


def bench_fuzz(sizes: list[str], workdir: str) -> dict[str, Any]:
    from qcow2harness.fuzz.bench import bench_fuzz as run

    return run(sizes, workdir)


def bench_startup(sizes: list[str], workdir: str) -> dict[str, Any]:
    from batch import bench_startup as run

    return run(sizes, workdir)


def bench_batch(sizes: list[str], workdir: str) -> dict[str, Any]:
    from batch import bench_batch as run

    return run(sizes, workdir)


def bench_zones(sizes: list[str], workdir: str) -> dict[str, Any]:
    from zone_scale import bench_zones as run

    return run(sizes, workdir)


BENCHMARKS: dict[str, Callable[[list[str], str], dict[str, Any]]] = {
    "info": bench_info,
    "check": bench_check,
    "crash": bench_crash,
    "fuzz": bench_fuzz,
    "model": bench_model,
    "zones": bench_zones,
    "startup": bench_startup,
    "batch": bench_batch,
}


def environment() -> dict[str, str]:
    qemu = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "qemu": qemu.stdout.splitlines()[0] if qemu.stdout else "not found",
    }


def render(env: dict[str, str], results: dict[str, dict[str, Any]]) -> str:
    lines = ["# Benchmark figures", "",
             "Written by `make bench` (bench/run.py); do not edit by hand.", ""]
    lines += [f"- {key}: {value}" for key, value in env.items()]
    for name, result in results.items():
        lines += ["", f"## {name}: {result['title']}", ""]
        rows = result["rows"]
        if not rows:
            continue
        keys = list(dict.fromkeys(key for row in rows for key in row))  # rows may differ
        lines.append("| " + " | ".join(keys) + " |")
        lines.append("|" + "---|" * len(keys))
        for row in rows:
            values = [row.get(key, "") for key in keys]
            cells = [f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int)
                     else "" if v is None else str(v) for v in values]
            lines.append("| " + " | ".join(cells) + " |")
        for note in result.get("notes", []):
            lines += ["", note]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default=os.path.join(REPO, "bench", "results.md"))
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS))
    parser.add_argument("--sizes", default="64G,256G,1T")
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(),
                                                          "qcow2-harness-bench"))
    args = parser.parse_args()
    # Figures are taken as users run the tool: with Python's bytecode cache. Without it
    # every command compiles the package first (about 50 ms of a small check).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.makedirs(args.workdir, exist_ok=True)
    sizes = args.sizes.split(",")
    results: dict[str, dict[str, Any]] = {}
    json_path = os.path.splitext(args.out)[0] + ".json"
    if args.only and os.path.exists(json_path):
        # A partial run (--only) keeps the other sections' last figures.
        with open(json_path) as previous:
            results = json.load(previous).get("results", {})
    for name in args.only or BENCHMARKS:
        print(f"bench: {name} ...", flush=True)
        results[name] = BENCHMARKS[name](sizes, args.workdir)
    env = environment()
    if args.only:
        env["sections measured in this run"] = ", ".join(args.only)
    with open(args.out, "w") as out:
        out.write(render(env, results))
    with open(json_path, "w") as out:
        json.dump({"environment": env, "results": results}, out, indent=2)
    print(open(args.out).read())
    return 0


if __name__ == "__main__":
    sys.exit(main())
