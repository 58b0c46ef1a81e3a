"""Crash-campaign throughput for bench/run.py: states checked per second (target >= 200/s).

The workload is a 64 MiB disk (64 KiB clusters, QEMU's defaults) with a seeded mix of
64-256 KiB writes, in-place rewrites, write-zeroes and discards, and a guest flush
every fourth op. The log grows with the number of ops; the table shows how the rate
and the state count follow it. Every state gets the full oracle: the checker, and
every guest byte confirmed through the real QEMU (qemu-io `map` + `read -P`).
The capture (running the workload in QEMU) is timed separately.

The repair rows run the same workloads with each state also repaired (crash/repair.py:
QEMU's repair on open, `qemu-img check -r all`) and judged again (check, data, a
write to every allocated cluster, at most WRITE_LIMIT of them); each has a no-repair
row over the same states to compare with. cpu_s counts this process and every QEMU
process it waited for.
"""

from __future__ import annotations

import json
import os
import random
import resource
from typing import Any

DISK = 64 << 20
OP_COUNTS = (16, 64, 256)
MAX_STATES = 2000
REPAIR_RUNS = [(16, MAX_STATES), (64, 300)]  # (guest ops, max states) for the repair rows
REPAIR_MODES: list[tuple[str, ...]] = [(), ("auto",), ("auto", "check-r-all")]


def bench_workload(ops: int, seed: int = 1) -> dict[str, Any]:
    """The JSON form of the bench workload with `ops` guest ops."""
    rng = random.Random(seed)
    items: list[dict[str, Any]] = []
    written: list[tuple[int, int]] = []
    for number in range(ops):
        kind = rng.choices(["write", "rewrite", "zero", "discard"], [6, 2, 1, 1])[0]
        if kind != "write" and written:
            offset, length = rng.choice(written)
            items.append({"op": "write" if kind == "rewrite" else kind, "offset": offset,
                          "length": length})
        else:
            length = rng.choice([64, 128, 256]) << 10
            offset = rng.randrange(0, DISK - length, 4096)
            written.append((offset, length))
            items.append({"op": "write", "offset": offset, "length": length})
        if number % 4 == 3:
            items.append({"op": "flush"})
    return {"name": f"bench-{ops}", "writer": "qemu", "size": DISK, "ops": items}


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bench_crash(_sizes: list[str], workdir: str) -> dict[str, Any]:
    from .campaign import CampaignSpec, run_campaign

    rows = []
    runs: list[tuple[int, bool, tuple[str, ...], int]] = [
        (ops, True, (), MAX_STATES) for ops in OP_COUNTS]
    runs.append((OP_COUNTS[-1], False, (), MAX_STATES))
    runs += [(ops, True, modes, bound) for ops, bound in REPAIR_RUNS for modes in REPAIR_MODES]
    for ops, data, modes, bound in runs:
        path = os.path.join(workdir, f"crash-bench-{ops}.json")
        with open(path, "w") as stream:
            json.dump(bench_workload(ops), stream)
        cpu = _cpu_seconds()
        result = run_campaign(CampaignSpec("qemu", path, max_states=bound, data=data,
                                           repair=modes))
        cpu = _cpu_seconds() - cpu
        repaired = result.repair
        rows.append({
            "guest_ops": ops,
            "oracle": "checker + QEMU data" if data else "checker only",
            "repair": "+".join(modes) or "none",
            "log_entries": result.log_entries,
            "epochs": result.epochs,
            "states_checked": result.states_checked,
            "exhaustive": str(result.exhaustive),
            "capture_s": result.capture_seconds,
            "judge_s": result.seconds - result.capture_seconds,
            "states_per_s": result.states_per_second,
            "cpu_s": cpu,
            "repair_writes": repaired.clusters_written if repaired is not None else 0,
            "repair_failing": sum(repaired.by_mode.values()) if repaired is not None else 0,
            "qemu_reads": result.qemu_reads,
            "raw_fallbacks": result.raw_fallbacks,
            "violations": len(result.violations),
        })
    notes = [f"64 MiB disk, 64 KiB clusters, cache=writeback; at most {MAX_STATES} states "
             "(seeded sample beyond that). states_per_s counts replay + checker + QEMU reads, "
             "not the capture. The rate falls with log length because later epochs hold "
             "more written data, each epoch's prefix is read in full through QEMU, and the "
             "longer workloads contain discards whose crash states QEMU gets wrong "
             "(violations), each of which costs a raw conversion for its message.",
             "Repair rows: every state is also copied, repaired by each listed path and "
             "judged again; repair_writes counts the guest clusters written and read back "
             "(at most 64 allocated + 4 unallocated per state and path, 64 KiB each), "
             "repair_failing the (state, path) pairs with a repair finding. cpu_s includes "
             "the QEMU processes."]
    return {"title": "crash states checked per second (64 MiB workload)", "rows": rows,
            "notes": notes}


__all__ = ["bench_crash", "bench_workload"]
