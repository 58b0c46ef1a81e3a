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

A QEMU workload with "zoned" is a zoned QEMU workload: it needs the zoned series build
(`--build zoned`), its image is created with the zone geometry, and its ops are the
trace protocol's, run as qemu-io zone commands (write at the wp, `zap -p` for an
append, `zo`/`zc`/`zf`/`zrs` over one zone, `zrs` over the disk for reset_all, and
`reopen` as a new qemu-io session).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from qcow2harness.errors import ModelError, UsageError
from qcow2harness.reference.zones import ZoneConfig

KiB = 1024
MiB = 1 << 20

QEMU_OPS = {"write", "zero", "zero_unmap", "discard", "compress", "flush", "truncate",
            "snapshot", "snapshot_delete", "close"}
REFERENCE_OPS = {"write", "append", "open", "close", "finish", "reset", "reset_all", "flush",
                 "reopen"}
ZONE_OPS = {"append", "open", "close", "finish", "reset"}  # these name a zone
# qemu-io's zone commands: the op's zone, whole (zrs over the disk for reset_all).
QEMU_ZONE_COMMANDS = {"open": "zo", "close": "zc", "finish": "zf", "reset": "zrs"}
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

    def qemu_command(self, zoned: ZoneConfig | None = None) -> str:
        """The qemu-io command for this op (snapshot ops run through qemu-img instead);
        zone ops need the geometry `zoned`."""
        if zoned is not None and (self.kind in ZONE_OPS or self.kind == "reset_all"):
            if self.kind == "reset_all":
                return f"zrs 0 {zoned.size}"
            start = self.zone * zoned.zone_size
            if self.kind == "append":  # zap takes no pattern: it writes 0xcd
                return f"zap -p {start} {self.length}"
            return f"{QEMU_ZONE_COMMANDS[self.kind]} {start} {zoned.zone_size}"
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
        if self.kind == "close" and self.zone < 0:
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
        return self.kind in ("flush", "reopen") or self.kind == "close" and self.zone < 0


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
# The zoned series' geometry: as ZONES, but the capacity is the zone size. The v9 code
# finds a zone FULL with a mask on the capacity, so it never fills a zone whose
# capacity is not a power of two, and its zone report gives the zone size as capacity:
# with 12 KiB every fill would be a writer/model disagreement before any crash.
ZONES_QEMU = replace(ZONES, zone_capacity=Z)


def _zone_histories() -> dict[str, list[Op]]:
    """Zone histories both writers run (zones 1.. are sequential in both geometries)."""
    flush = _z("flush")
    return {
        "zones": [
            _z("write", offset=Z, length=5000 // 512 * 512), _z("write", offset=0, length="8k"),
            flush,
            _z("append", 2, "2k"), _z("write", offset=Z + 4608, length="3k"), flush,
            _z("finish", 2), _z("reset", 1), flush,
            _z("write", offset=Z, length="8k"), flush,
            _z("write", offset=3 * Z, length=512), _z("close", 1), _z("close", 3),
            _z("write", offset=4 * Z, length=512), _z("write", offset=5 * Z, length=512),
            flush,
            _z("reopen"), _z("write", offset=6 * Z, length=512), _z("reset_all"), flush,
        ],
        "zones-small": [
            _z("write", offset=Z, length="4k"), flush, _z("reset", 1), flush,
            _z("write", offset=Z, length="4k"), flush,
        ],
    }


def _reference_workloads() -> dict[str, Workload]:
    histories = _zone_histories()
    return {
        "zones": Workload(
            "zones", "reference", ZONES.size, histories["zones"],
            "zone writes, appends, finish, reset and rewrite, the active limit before and "
            "after a reopen", zoned=ZONES),
        "zones-small": Workload(
            "zones-small", "reference", ZONES.size, histories["zones-small"],
            "write, reset, rewrite: the smallest history that shows most ordering bugs",
            zoned=ZONES),
    }


def _zoned_qemu_workloads() -> dict[str, Workload]:
    """Zoned QEMU workloads: they need the zoned series build (--build zoned)."""
    histories = _zone_histories()
    flush = _z("flush")
    # The reference history, but writing on in zone 4 after the reopen instead of
    # opening a fourth active zone.
    zones = [*histories["zones"][:14], _z("write", offset=4 * Z, length=512), flush,
             _z("reopen"), _z("write", offset=4 * Z + 512, length=512), _z("reset_all"), flush]
    # One append per zone while it is empty, so every crash state is judged; a second
    # append into a zone that holds data comes last (see zoned.py on disagreements).
    appends = [
        _z("append", 1, "2k"), flush, _z("append", 2, "4k"), _z("finish", 1), _z("open", 3),
        _z("append", 3, 512), _z("close", 3), flush, _z("reopen"), _z("append", 4, "1k"),
        _z("reset", 2), _z("append", 2, 512), flush, _z("reset_all"), _z("append", 1, "1k"),
        flush, _z("append", 1, 512), flush,
    ]
    return {
        "zones": Workload(
            "zones", "qemu", ZONES_QEMU.size, zones,
            "the zones history on the zoned series: writes at the wp, an append, finish, "
            "reset and rewrite, explicit close, a reopen and reset-all, with and without a "
            "flush; it stays within the active limit, which the v9 code does not enforce "
            "(a disagreement would leave every later crash state unjudged)",
            zoned=ZONES_QEMU),
        "zones-small": Workload(
            "zones-small", "qemu", ZONES_QEMU.size, histories["zones-small"],
            "write, reset, rewrite on the zoned series", zoned=ZONES_QEMU),
        "zones-append": Workload(
            "zones-append", "qemu", ZONES_QEMU.size, appends,
            "zone appends (qemu-io zap -p) into empty zones, finish, an explicit open and "
            "close, a reopen, reset and reset-all and appends after them, with and without "
            "a flush; last, a second append into a zone that holds data",
            zoned=ZONES_QEMU),
    }


def named_workloads(writer: str) -> dict[str, Workload]:
    if writer == "qemu":
        return {**_qemu_workloads(), **_zoned_qemu_workloads()}
    return _reference_workloads()


def plain_qemu_workloads() -> list[str]:
    """The QEMU workloads any QEMU runs (the zoned ones need the series build)."""
    return sorted(_qemu_workloads())


def zoned_qemu_workloads() -> list[str]:
    return sorted(_zoned_qemu_workloads())


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
    zoned = None
    if "zoned" in raw:
        if not isinstance(raw["zoned"], Mapping):
            raise UsageError("'zoned' must be an object of zone fields")
        fields = {k: parse_size(v) for k, v in raw["zoned"].items()}
        try:
            zoned = ZoneConfig(**fields)
        except (TypeError, ModelError) as error:
            raise UsageError(f"'zoned': {error}") from None
    # A zoned QEMU workload runs the trace protocol's ops as qemu-io zone commands.
    allowed = REFERENCE_OPS if writer == "reference" or zoned is not None else QEMU_OPS
    ops = []
    for number, item in enumerate(raw.get("ops", [])):
        kind = str(item.get("op", ""))
        if kind not in allowed or kind == "close" and allowed is QEMU_OPS:
            raise UsageError(f"op {number}: {kind!r} is not a {writer}"
                             f"{' zoned' if zoned is not None else ''} workload op")
        try:
            zone = int(item.get("zone", -1))
        except (TypeError, ValueError):
            raise UsageError(f"op {number}: zone must be an integer") from None
        if kind in ZONE_OPS and zoned is not None and not 0 <= zone < zoned.nr_zones:
            raise UsageError(f"op {number}: {kind} needs a zone in 0..{zoned.nr_zones - 1}")
        ops.append(Op(kind, parse_size(item.get("offset", 0)), parse_size(item.get("length", 0)),
                      zone=zone, name=str(item.get("name", ""))))
    if writer == "reference" and zoned is None:
        raise UsageError("reference workloads need a 'zoned' object (the zone geometry)")
    backing = None
    if raw.get("backing"):
        backing = [(parse_size(o), parse_size(n), int(f)) for o, n, f in raw["backing"]]
    size = parse_size(raw.get("size", zoned.size if zoned else MiB))
    if zoned is not None and (backing or size != zoned.size):
        raise UsageError("a zoned workload has no backing file (ZONE-23), and its size is "
                         "the zone geometry's ('zoned': {\"size\": ...})")
    return Workload(
        str(raw.get("name", default_name)), writer, size, ops,
        str(raw.get("description", "")),
        create={str(k): str(v) for k, v in raw.get("create", {}).items()},
        backing=backing, zoned=zoned, cluster_size=parse_size(raw.get("cluster_size", 4096)),
    )


__all__ = ["Op", "Workload", "get_workload", "load_workload", "named_workloads", "parse_size",
           "plain_qemu_workloads", "workload_from_json", "zoned_qemu_workloads", "ZONES",
           "ZONES_QEMU"]
