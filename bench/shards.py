"""One crash campaign unsharded and as N shards: CPU and wall time, and the merge check.

    python bench/shards.py [--shards 3] [--out bench/shards.md]

Each run is a separate `qcow2-harness crash` process, started one after the other (so
the wall figures do not compete with each other); CPU time is the children's user+sys
from getrusage. The shards of a QEMU workload share one capture (--capture-only, then
--reuse-capture), as the unsharded run does, so that the merge can be compared with it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

CLI = os.path.join(os.path.dirname(sys.executable), "qcow2-harness")
CAMPAIGNS = [
    ("reference", "zones", ["--mutant", "wp-before-data"]),
    ("qemu", "allocation", []),
    ("qemu", "discard", []),
    ("qemu", "refcount-growth", ["--max-states", "2000"]),
]
NOT_COMPARED = {"seconds", "wall_seconds", "states_per_second", "qemu_reads", "raw_fallbacks",
                "shard"}


def timed(argv: list[str]) -> tuple[float, float, int]:
    """(wall s, CPU s of the process and its children, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    code = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, code


def canonical(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in NOT_COMPARED}
    out["violations"] = sorted(out["violations"], key=lambda v: json.dumps(v, sort_keys=True))
    return out


def measure(writer: str, workload: str, extra: list[str], shards: int,
            work: str) -> dict[str, Any]:
    capture = os.path.join(work, f"{writer}-{workload}")
    base = [CLI, "crash", "--writer", writer, "--workload", workload, *extra, "--jobs", "1"]
    if writer == "qemu":
        base += ["--workdir", capture]
        subprocess.run([*base, "--capture-only"], check=True, stdout=subprocess.DEVNULL)
        base.append("--reuse-capture")
    whole_json = os.path.join(work, f"{writer}-{workload}-whole.json")
    wall, cpu, code = timed([*base, "--json", whole_json])
    parts = []
    for index in range(shards):
        out = os.path.join(work, f"{writer}-{workload}-{index}.json")
        parts.append((out, *timed([*base, "--shard", f"{index}/{shards}", "--json", out])))
    merged_json = os.path.join(work, f"{writer}-{workload}-merged.json")
    merge_code = subprocess.run([CLI, "merge", *(p[0] for p in parts), "--json", merged_json],
                                stdout=subprocess.DEVNULL).returncode
    with open(whole_json) as a, open(merged_json) as b:
        whole, merged = json.load(a), json.load(b)["results"][0]
    return {"campaign": f"{writer}/{workload} {' '.join(extra)}".strip(),
            "states": whole["states_checked"], "violations": len(whole["violations"]),
            "whole_wall": wall, "whole_cpu": cpu,
            "shard_wall": [p[1] for p in parts], "shard_cpu": [p[2] for p in parts],
            "exit_whole": code, "exit_merged": merge_code,
            "equal": canonical(whole) == canonical(merged)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "shards.md"))
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="qcow2-shards-") as work:
        for writer, workload, extra in CAMPAIGNS:
            rows.append(measure(writer, workload, extra, args.shards, work))
            print(rows[-1], flush=True)
    n = args.shards
    lines = [f"# Crash campaigns: unsharded vs {n} shards", "",
             f"{time.strftime('%Y-%m-%d')}, {platform.node()}, {os.cpu_count()} CPUs (shared "
             "with other jobs); `python bench/shards.py`. One process at a time, --jobs 1; "
             "CPU = user+sys of the process and its children (QEMU included).", "",
             f"| campaign | states | violations | unsharded wall / CPU | {n} shards: slowest "
             "wall | sum of CPU | CPU overhead | merged == unsharded | exit (whole, merged) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        total = sum(row["shard_cpu"])
        lines.append(
            f"| {row['campaign']} | {row['states']} | {row['violations']} | "
            f"{row['whole_wall']:.2f} s / {row['whole_cpu']:.2f} s | "
            f"{max(row['shard_wall']):.2f} s | {total:.2f} s | "
            f"{total / row['whole_cpu']:.2f}x | {'yes' if row['equal'] else 'NO'} | "
            f"{row['exit_whole']}, {row['exit_merged']} |")
    with open(args.out, "w") as stream:
        stream.write("\n".join(lines) + "\n")
    print(f"written to {args.out}")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
