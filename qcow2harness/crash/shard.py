"""Which crash states a shard judges, and what makes shards comparable.

**One campaign, `--shard I/N`.** Every shard captures the workload itself and
enumerates the same state list (enumerate_states is deterministic for a given log,
seed, budget and --torn), then judges its contiguous, balanced part of it:
states[I*T//N : (I+1)*T//N]. A part that starts inside an epoch first replays that
epoch's prefix state (nothing of the epoch applied) as a warm-up, not reported, so
that QEMU reads stay as small as in an unsharded run (delta.py).

State ids name positions in one log, so they mean the same on every shard only when
the shards captured the same log. Each result records `capture_digest` (a hash of
every log entry and op boundary) and the merge refuses shards whose digests differ.
The reference writer's log is byte-for-byte reproducible. QEMU's is for some
workloads only: requests QEMU issues concurrently (a multi-cluster write, refcount
block allocation) reach the log in varying order, and a snapshot table entry holds
the time it was taken. For those, capture once and share it:
`--capture-only --workdir DIR`, then every shard with `--workdir DIR --reuse-capture`.

**The matrix, `--matrix --shard I/N`.** Most matrix rows capture a log that is not
reproducible, so the matrix is split by campaign (row x workload, in run order,
round-robin): campaign k belongs to shard k mod N, and runs whole there.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from qcow2harness.errors import UsageError
from qcow2harness.sharding import Shard, id_digest

from .capture import CAPTURE_FILE, Capture
from .states import CrashState
from .workload import Op, Workload


def capture_digest(capture: Capture) -> str:
    """SHA-256 over the log entries (position, sector, length, flags, bytes) and op
    boundaries: equal digests mean state ids name the same writes."""
    digest = hashlib.sha256()
    digest.update(f"{capture.writer} {capture.first_entry} {capture.boundaries}".encode())
    for entry in capture.entries:
        digest.update(f"{entry.index} {entry.sector} {entry.nr_sectors} {entry.flags} "
                      f"{len(entry.data)}|".encode())
        digest.update(entry.data)
    return digest.hexdigest()


def shard_states(states: Sequence[CrashState], shard: Shard,
                 ) -> tuple[list[CrashState], set[str], dict[str, Any]]:
    """(states to replay, ids of warm-up states among them, the shard's JSON fields)."""
    part = shard.contiguous(states)
    fields = {"shard": {**shard.to_json(), "by": "states"}, "states_total": len(states),
              "states_total_digest": id_digest(s.id for s in states),
              "states_digest": id_digest(s.id for s in part)}
    if shard.whole:
        return part, set(), fields
    warmups: set[str] = set()
    out: list[CrashState] = []
    mine = {s.id for s in part}
    for state in part:
        if not out or out[-1].epoch != state.epoch:
            prefix = CrashState(state.epoch, ())
            if state != prefix and prefix.id not in mine:
                out.append(prefix)
                warmups.add(prefix.id)
        out.append(state)
    return out, warmups, fields


def load_kept_capture(workdir: str, spec: Any, workload: Workload) -> Capture | None:
    """The capture kept in `workdir` (by --capture-only or an earlier run), or None.
    Refused when it is not a capture of this spec's writer, options and workload ops.
    Paths are taken relative to the directory, so it may have been moved or copied
    (a CI artifact). A backing file's path is inside the base image, so for a
    workload with a backing file the directory must keep its absolute path."""
    kept = os.path.join(workdir, CAPTURE_FILE)
    if not os.path.exists(kept):
        return None
    import json

    with open(kept) as stream:
        fields = json.load(stream)
    for key in ("base", "log", "backing"):
        if fields.get(key) and not os.path.exists(fields[key]):
            moved = os.path.join(workdir, os.path.basename(fields[key]))
            if key == "backing" or not os.path.exists(moved):
                raise UsageError(f"{kept}: {key} {fields[key]} is missing (a capture with a "
                                 "backing file cannot be moved)")
            fields[key] = moved
    fields["ops"] = [Op(**op) for op in fields["ops"]]
    capture = Capture(**fields)
    _same_workload(kept, capture, spec, workload)
    capture.load()
    return capture


def _same_workload(kept: str, capture: Capture, spec: Any, workload: Workload) -> None:
    def shape(ops: Sequence[Op]) -> list[tuple[str, int, int, int, str]]:
        return [(o.kind, o.offset, o.length, o.zone, o.name) for o in ops if o.kind != "close"]

    want_options = ({**workload.create, **spec.options} if spec.writer == "qemu"
                    else capture.options)
    mutants = f"(mutants: {', '.join(spec.mutants) or 'none'})"
    if (capture.writer != spec.writer or capture.options != want_options
            or capture.build != getattr(spec, "build", None)
            or shape(capture.ops) != shape(workload.ops)
            or spec.writer == "reference" and not capture.version.endswith(mutants)):
        raise UsageError(f"{kept} is not a capture of {spec.label()}: capture again with "
                         "--capture-only, or leave out --reuse-capture")


def keep_capture(spec: Any) -> tuple[Capture, str]:
    """--capture-only: capture into spec.workdir and keep it; (capture, its digest)."""
    from .campaign import _capture, _workdir
    from .workload import get_workload

    if not spec.workdir:
        raise UsageError("--capture-only needs --workdir (where the capture is kept)")
    with _workdir(spec) as workdir:
        capture = _capture(spec, get_workload(spec.workload, spec.writer), workdir)
    return capture, capture_digest(capture)


def matrix_shard_fields(shard: Shard, number: int, total: int,
                        expected_to_fail: str) -> dict[str, Any]:
    """Campaign `number` of `total`; `expected_to_fail` (a reason) keeps its violations
    out of the verdict (the cache=unsafe control row)."""
    return {"shard": {**shard.to_json(), "by": "campaign"},
            "matrix": {"campaign": number, "campaigns": total,
                       "expected_to_fail": expected_to_fail}}


def counts_against(result: dict[str, Any]) -> bool:
    """Whether a campaign result (JSON) makes the run exit 2."""
    return bool(result.get("violations")) and not result.get("matrix", {}).get(
        "expected_to_fail")


__all__ = ["capture_digest", "keep_capture", "load_kept_capture", "matrix_shard_fields",
           "shard_states", "counts_against"]
