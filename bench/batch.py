"""Start-up and batch sections of `make bench` (bench/run.py): one small image, and a
collection checked by one command, each beside qemu-img check from the same run.

Targets (issue #19): one small image checked in <= 0.1 s wall (median of 5); a
collection of 200 small images checked by one `qcow2-harness check DIR` in at most the
wall time of a shell loop of `qemu-img check` over the same files.
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import CLI, RUNS, median_run, run_measured  # noqa: E402

# 512 B to 2 MiB, the spec's whole range (HDR-4/HDR-5): every size the collection uses.
CLUSTER_SIZES = [512 << shift for shift in range(13)]
COLLECTIONS = [200, 1000]
PAIRS = 3  # alternating (ours, loop) pairs per collection


def small_image(workdir: str) -> str:
    path = os.path.join(workdir, "startup-64M.qcow2")
    if not os.path.exists(path):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, "64M"], check=True)
    return path


def collection(workdir: str, count: int) -> str:
    """`count` small images: varied cluster sizes, lazy refcounts on a third, one write
    each (qemu-io), built once and kept in the workdir."""
    folder = os.path.join(workdir, f"collection-{count}")
    stamp = os.path.join(folder, ".complete")
    if os.path.exists(stamp):
        return folder
    os.makedirs(folder, exist_ok=True)
    for index in range(count):
        path = os.path.join(folder, f"image-{index:04d}.qcow2")
        cluster_size = CLUSTER_SIZES[index % len(CLUSTER_SIZES)]
        lazy = "on" if index % 3 == 0 else "off"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                        f"cluster_size={cluster_size},lazy_refcounts={lazy}", path, "64M"],
                       check=True)
        subprocess.run(["qemu-io", "-c", f"write -P 0x{index % 256:02x} {index * 4096} 4k",
                        path], check=True, stdout=subprocess.DEVNULL)
    open(stamp, "w").close()
    return folder


def _wall(argv: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start, proc.returncode


def bench_startup(_sizes: list[str], workdir: str) -> dict[str, Any]:
    """One small image: our whole process vs qemu-img check's, and Python's own start."""
    path = small_image(workdir)
    commands = {
        "qcow2-harness check": [CLI, "check", path],
        "qemu-img check": ["qemu-img", "check", path],
        "python -c pass (interpreter start alone)": [sys.executable, "-c", "pass"],
    }
    rows = []
    for name, argv in commands.items():
        run_measured(argv)  # warm the page cache
        figures = median_run(argv, RUNS)
        rows.append({"command": name, "wall_s": figures["wall_s"],
                     "peak_rss_mib": figures["peak_rss_mib"], "exit": int(figures["exit"])})
    imports = subprocess.run([sys.executable, "-c",
                              "import sys, qcow2harness.cli as c; c.run(['check', "
                              f"{path!r}]); print('numpy' in sys.modules)"],
                             capture_output=True, text=True)
    numpy_loaded = imports.stdout.strip().splitlines()[-1] if imports.stdout else "?"
    return {"title": "start-up: one small image (64 MiB, empty)", "rows": rows,
            "notes": [f"Median of {RUNS} runs after a warm-up run each. Target: "
                      "qcow2-harness check <= 0.100 s wall. numpy imported by this check: "
                      f"{numpy_loaded}. The checkout's console script is an editable "
                      "install, whose import hook costs about 10 ms that an installed "
                      "wheel does not."]}


def bench_batch(_sizes: list[str], workdir: str) -> dict[str, Any]:
    """A collection by one command vs a shell loop of qemu-img check, side by side."""
    rows = []
    for count in COLLECTIONS:
        folder = collection(workdir, count)
        files = sorted(f for f in os.listdir(folder) if f.endswith(".qcow2"))
        loop = ["bash", "-c", "for f in " + " ".join(shlex.quote(os.path.join(folder, f))
                                                     for f in files)
                + '; do qemu-img check -q "$f" || echo "$f" >&2; done']
        ours = [CLI, "check", folder]
        ours_jobs = [CLI, "check", "--jobs", "2", folder]
        samples: dict[str, list[float]] = {"ours": [], "ours_jobs2": [], "loop": []}
        exits: dict[str, int] = {}
        _wall(ours), _wall(loop)  # warm the page cache
        for _ in range(PAIRS):
            for key, argv in (("ours", ours), ("loop", loop), ("ours_jobs2", ours_jobs)):
                seconds, code = _wall(argv)
                samples[key].append(seconds)
                exits[key] = code
        ours_s = statistics.median(samples["ours"])
        loop_s = statistics.median(samples["loop"])
        rows.append({
            "images": len(files),
            "ours_wall_s": ours_s,
            "ours_jobs2_wall_s": statistics.median(samples["ours_jobs2"]),
            "qemu_img_loop_wall_s": loop_s,
            "ratio_ours_to_loop": ours_s / loop_s,
            "ours_peak_rss_mib": run_measured(ours)[1] / 1024,
            "ours_exit": exits["ours"],
            "loop_failures": _loop_failures(loop),
        })
    return {"title": "a collection: one `check DIR` vs a shell loop of qemu-img check",
            "rows": rows,
            "notes": [f"Median of {PAIRS} alternating runs per command after a warm-up. "
                      "Images: 64 MiB, cluster sizes 512 B to 2 MiB in turn, lazy_refcounts "
                      "on every third, one 4 KiB qemu-io write each. Target: ours <= the "
                      "loop's wall time (ratio <= 1). loop_failures counts images qemu-img "
                      "check did not pass; ours_exit 0 means every image was conformant."]}


def _loop_failures(loop: list[str]) -> int:
    proc = subprocess.run(loop, capture_output=True, text=True)
    return len(proc.stderr.splitlines())


__all__ = ["bench_batch", "bench_startup", "collection", "small_image"]
