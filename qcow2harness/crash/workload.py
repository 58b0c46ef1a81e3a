"""Workloads: the guest operations a crash campaign runs through a writer.

An operation is one guest request (or a step between qemu-io sessions, such as an
internal snapshot). Every write gets its own fill byte, so the bytes of a crash state
name the write they came from. Named workloads exist for both writers; a JSON file
gives any other (see `load_workload`).

JSON form::

    {"name": "mine", "writer": "qemu", "size": "4M",
     "create": {"cluster_size": "4096"},          # qemu-img create -o defaults
     "backing": [[0, "1M", 241]],                 # optional: backing file extents
     "ops": [{"op": "write", "offset": "0", "length": "8k"}, {"op": "flush"}]}

QEMU ops: write, zero (write -z), zero_unmap (write -z -u), discard, compress
(write -c, whole clusters), flush, truncate (grow to `size`), snapshot / snapshot_delete
(`name`, run by qemu-img between qemu-io sessions). Reference-writer ops are the
trace protocol's (write, append, open, close, finish, reset, reset_all, flush, reopen)
and need "zoned": {zone fields} in the JSON form.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qcow2harness.errors import UsageError
from qcow2harness.reference.zones import ZoneConfig

KiB = 1024
MiB = 1 << 20

QEMU_OPS = {"write", "zero", "zero_unmap", "discard", "compress", "flush", "truncate",
            "snapshot", "snapshot_delete", "close"}
REFERENCE_OPS = {"write", "append", "open", "close", "finish", "reset", "reset_all", "flush",
                 "reopen"}
# Ops that store guest bytes (and so get a fill byte).
STORING = {"write", "compress", "append"}
# Reserved fill bytes for backing-file contents, so they never collide with a write's.
BACKING_FILLS = range(0xF0, 0x100)


def parse_size(value: int | str) -> int:
    """'64k', '4M', '1G' or a plain integer."""
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)\s*", str(value))
    if not match:
        raise UsageError(f"not a size: {value!r}")
    unit = {"": 1, "k": KiB, "m": MiB, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * unit


@dataclass(frozen=True)
class Op:
    """One guest operation. `fill` is the byte a storing op writes."""

    kind: str
    offset: int = 0
    length: int = 0
    zone: int = -1
    name: str = ""
    fill: int = 0

    def qemu_command(self) -> str:
        """The qemu-io command for this op (snapshot ops run through qemu-img instead)."""
        if self.kind == "write":
            return f"write -P {self.fill:#04x} {self.offset} {self.length}"
        if self.kind == "compress":
            return f"write -c -P {self.fill:#04x} {self.offset} {self.length}"
        if self.kind == "zero":
            return f"write -z {self.offset} {self.length}"
        if self.kind == "zero_unmap":
            return f"write -z -u {self.offset} {self.length}"
        if self.kind == "discard":
            return f"discard {self.offset} {self.length}"
        if self.kind == "flush":
            return "flush"
        if self.kind == "truncate":
            return f"truncate {self.length}"
        raise UsageError(f"op {self.kind!r} is not a qemu-io command")

    def trace(self) -> dict[str, Any]:
        """The reference writer's trace-protocol form."""
        if self.kind == "write":
            return {"op": "write", "offset": self.offset, "length": self.length}
        if self.kind == "append":
            return {"op": "append", "zone": self.zone, "length": self.length}
        if self.kind in ("open", "close", "finish", "reset"):
            return {"op": self.kind, "zone": self.zone}
        return {"op": self.kind}

    def describe(self) -> str:
        if self.kind in ("snapshot", "snapshot_delete"):
            flag = "-c" if self.kind == "snapshot" else "-d"
            return f"qemu-img snapshot {flag} {self.name}"
        if self.kind == "close":
            return "close (qemu-io quits: caches written back, file flushed)"
        if self.kind in QEMU_OPS and self.zone < 0:
            return self.qemu_command()
        parts = [self.kind]
        if self.zone >= 0:
            parts.append(f"zone={self.zone}")
        if self.kind == "write":
            parts.append(f"offset={self.offset:#x}")
        if self.length:
            parts.append(f"length={self.length}")
        if self.kind in STORING:
            parts.append(f"fill={self.fill:#04x}")
        return " ".join(parts)

    @property
    def is_flush(self) -> bool:
        """A guest-visible flush: what it acknowledges must survive a crash."""
        return self.kind in ("flush", "close", "reopen")


@dataclass
class Workload:
    name: str
    writer: str  # "qemu" or "reference"
    size: int
    ops: list[Op]
    description: str = ""
    create: dict[str, str] = field(default_factory=dict)  # qemu-img create -o
    backing: list[tuple[int, int, int]] | None = None  # (offset, length, fill)
    zoned: ZoneConfig | None = None
    cluster_size: int = 4096  # reference writer

    def with_fills(self) -> Workload:
        """Give every storing op a distinct fill byte (1..0xEF, cycling)."""
        ops = []
        count = 0
        for op in self.ops:
            if op.kind in STORING:
                op = replace(op, fill=count % 0xEF + 1)
                count += 1
            ops.append(op)
        return replace(self, ops=ops)


def _q(kind: str, offset: int | str = 0, length: int | str = 0, name: str = "") -> Op:
    return Op(kind, parse_size(offset), parse_size(length), name=name)


def _z(kind: str, zone: int = -1, length: int | str = 0, offset: int | str = 0) -> Op:
    return Op(kind, parse_size(offset), parse_size(length), zone=zone)


def _qemu_workloads() -> dict[str, Workload]:
    flush = _q("flush")
    return {
        "allocation": Workload(
            "allocation", "qemu", 2 * MiB,
            [_q("write", 0, "8k"), flush, _q("write", "64k", "4k"), _q("write", "70k", "70k"),
             flush, _q("write", "4k", "4k"), _q("write", "1M", "64k"), _q("write", "1536k", "16k"),
             flush, _q("write", "1M", "4k")],
            "first allocations, partial and multi-cluster writes, in-place rewrites"),
        "cow": Workload(
            "cow", "qemu", 1 * MiB,
            [_q("write", "4k", "2k"), flush, _q("write", "70k", "1k"), _q("write", "200k", "64k"),
             flush, _q("write", "7k", "1k"), _q("zero", "300k", "64k")],
            "copy-on-write over a backing file: partial clusters keep the backing bytes",
            backing=[(0, MiB, 0xF1)]),
        "refcount-growth": Workload(
            "refcount-growth", "qemu", 4 * MiB,
            [_q("write", 0, "256k"), flush, _q("write", "512k", "512k"), flush,
             _q("write", "1536k", "512k"), _q("write", "2M", "768k"), flush,
             _q("write", "3M", "64k")],
            "512-byte clusters with 64-bit refcounts: new refcount blocks and a refcount "
            "table that has to grow and move",
            create={"cluster_size": "512", "refcount_bits": "64"}),
        "l1-growth": Workload(
            "l1-growth", "qemu", 1 * MiB,
            [_q("write", 0, "4k"), flush, _q("truncate", 0, "8M"), _q("write", "7M", "4k"),
             flush, _q("write", "6M", "2k")],
            "growing the disk past what the L1 table covers: the L1 table is reallocated",
            create={"cluster_size": "512"}),
        "discard": Workload(
            "discard", "qemu", 1 * MiB,
            [_q("write", 0, "256k"), flush, _q("discard", "64k", "128k"), flush,
             _q("write", "512k", "128k"), _q("zero_unmap", 0, "64k"), flush,
             _q("write", 0, "32k"), _q("write", "768k", "64k"), flush,
             _q("discard", "512k", "64k"), _q("write", "896k", "64k"), flush],
            "discard and write-zeroes with unmap free clusters that later writes reuse, "
            "with and without a flush in between"),
        "compressed": Workload(
            "compressed", "qemu", 1 * MiB,
            [_q("compress", 0, "64k"), _q("compress", "128k", "64k"), flush,
             _q("write", "4k", "4k"), flush, _q("compress", "256k", "64k")],
            "compressed clusters, then a partial overwrite that decompresses (COW); QEMU "
            "writes compressed clusters only where nothing is allocated yet"),
        "snapshots": Workload(
            "snapshots", "qemu", 1 * MiB,
            [_q("write", 0, "128k"), flush, _q("snapshot", name="s1"), _q("write", "4k", "4k"),
             _q("write", "64k", "64k"), flush, _q("snapshot", name="s2"),
             _q("snapshot_delete", name="s1"), _q("write", "8k", "4k")],
            "internal snapshots taken by qemu-img between qemu-io sessions; writes after "
            "them copy shared clusters (refcount > 1)"),
    }


ZONES = ZoneConfig(size=8 * 16 * KiB, zone_size=16 * KiB, zone_capacity=12 * KiB,
                   conventional_zones=1, max_open_zones=2, max_active_zones=3,
                   max_append_bytes=4 * KiB)
Z = 16 * KiB


def _reference_workloads() -> dict[str, Workload]:
    flush = _z("flush")
    zones = [
        _z("write", offset=Z, length=5000 // 512 * 512), _z("write", offset=0, length="8k"),
        flush,
        _z("append", 2, "2k"), _z("write", offset=Z + 4608, length="3k"), flush,
        _z("finish", 2), _z("reset", 1), flush,
        _z("write", offset=Z, length="8k"), flush,
        _z("write", offset=3 * Z, length=512), _z("close", 1), _z("close", 3),
        _z("write", offset=4 * Z, length=512), _z("write", offset=5 * Z, length=512), flush,
        _z("reopen"), _z("write", offset=6 * Z, length=512), _z("reset_all"), flush,
    ]
    return {
        "zones": Workload(
            "zones", "reference", ZONES.size, zones,
            "zone writes, appends, finish, reset and rewrite, the active limit before and "
            "after a reopen", zoned=ZONES),
        "zones-small": Workload(
            "zones-small", "reference", ZONES.size,
            [_z("write", offset=Z, length="4k"), flush, _z("reset", 1), flush,
             _z("write", offset=Z, length="4k"), flush],
            "write, reset, rewrite: the smallest history that shows most ordering bugs",
            zoned=ZONES),
    }


def named_workloads(writer: str) -> dict[str, Workload]:
    return _qemu_workloads() if writer == "qemu" else _reference_workloads()


def get_workload(name_or_path: str, writer: str) -> Workload:
    """A named workload for `writer`, or one loaded from a JSON file."""
    named = named_workloads(writer)
    if name_or_path in named:
        return named[name_or_path].with_fills()
    if os.path.exists(name_or_path):
        workload = load_workload(name_or_path)
        if workload.writer != writer:
            raise UsageError(f"{name_or_path} is a {workload.writer} workload, not {writer}")
        return workload.with_fills()
    raise UsageError(f"unknown {writer} workload {name_or_path!r}: choose one of "
                     f"{', '.join(sorted(named))} or give a JSON file")


def load_workload(path: str) -> Workload:
    with open(path) as stream:
        try:
            raw = json.load(stream)
        except json.JSONDecodeError as error:
            raise UsageError(f"{path}: not JSON: {error}") from None
    return workload_from_json(raw, os.path.splitext(os.path.basename(path))[0])


def workload_from_json(raw: Mapping[str, Any], default_name: str = "json") -> Workload:
    writer = str(raw.get("writer", "qemu"))
    if writer not in ("qemu", "reference"):
        raise UsageError(f"workload writer must be qemu or reference, not {writer!r}")
    allowed = QEMU_OPS if writer == "qemu" else REFERENCE_OPS
    ops = []
    for number, item in enumerate(raw.get("ops", [])):
        kind = str(item.get("op", ""))
        if kind not in allowed or kind == "close" and writer == "qemu":
            raise UsageError(f"op {number}: {kind!r} is not a {writer} workload op")
        ops.append(Op(kind, parse_size(item.get("offset", 0)), parse_size(item.get("length", 0)),
                      zone=int(item.get("zone", -1)), name=str(item.get("name", ""))))
    zoned = None
    if "zoned" in raw:
        fields = {k: parse_size(v) for k, v in raw["zoned"].items()}
        zoned = ZoneConfig(**fields)
    if writer == "reference" and zoned is None:
        raise UsageError("reference workloads need a 'zoned' object (the zone geometry)")
    backing = None
    if raw.get("backing"):
        backing = [(parse_size(o), parse_size(n), int(f)) for o, n, f in raw["backing"]]
    size = parse_size(raw.get("size", zoned.size if zoned else MiB))
    return Workload(
        str(raw.get("name", default_name)), writer, size, ops,
        str(raw.get("description", "")),
        create={str(k): str(v) for k, v in raw.get("create", {}).items()},
        backing=backing, zoned=zoned, cluster_size=parse_size(raw.get("cluster_size", 4096)),
    )


__all__ = ["Op", "Workload", "get_workload", "load_workload", "named_workloads", "parse_size",
           "workload_from_json", "ZONES"]
