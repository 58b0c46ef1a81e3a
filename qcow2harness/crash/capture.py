"""Capture: run a workload through a writer and keep the base image plus its write log.

**QEMU.** One qemu-io process runs the workload over the stack
`qcow2 -> blklogwrites -> file`, which logs every write, discard and flush that
qcow2 sends to the file. qemu-io cannot write a MARK entry, so operation boundaries
are measured instead: qemu-io reads commands from a pipe and prints its prompt only
once a command has completed, and blklogwrites has written an entry to the log
before the request it logs completes. After each prompt the adapter records the size
of the log; the entries below that size are exactly the ones the operation (and
those before it) issued. qcow2 metadata written back later (a cached L2 table at the
next flush) is attributed to the operation that wrote it back, which is when it
reached the file. When qemu-io quits, qcow2 writes its caches back and flushes: that
is the pseudo-op `close`.

A zoned workload (see zoned.py) runs on the zoned series build: its image is created
with the zone geometry, its ops are qemu-io zone commands run beside the persistence
model, and a `reopen` ends the session and starts one that appends to the log.

Internal snapshots cannot be taken from qemu-io, so a `snapshot` op ends the qemu-io
session, runs `qemu-img snapshot` through the same blklogwrites stack with
`log-append=on`, and starts a new session that appends too.

blklogwrites writes its superblock only on a flush; under cache=unsafe flushes never
reach it, so the adapter writes a superblock with a stale count (0) and the reader
scans to the end of the log, as the format allows.

**Reference writer.** ReferenceWriter records the same format itself, with one
MARK per acknowledged operation; the base is the image as created (everything
before the `create ok` mark). Every op also runs on the PersistenceModel, and a
result that differs from the model's is kept as a disagreement.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from typing import Any

from qcow2harness import qemu
from qcow2harness.dmlog import DISCARD as DISCARD_FLAG
from qcow2harness.dmlog import ENTRY, MAGIC, SUPERBLOCK, VERSION, LogEntry, LogReader, replay
from qcow2harness.dmlog import MARK as MARK_FLAG
from qcow2harness.errors import UsageError, WriterError

from .workload import Op, Workload

LOG_SECTOR = 512
PROMPT = b"qemu-io> "
# qemu-img create -o options; every other --qemu-opt goes to the qcow2 driver at run time.
CREATE_KEYS = {"cluster_size", "lazy_refcounts", "extended_l2", "refcount_bits", "compat",
               "compression_type", "preallocation"}
CAPTURE_FILE = "capture.json"
CACHE_MODES = {"writeback", "none", "writethrough", "directsync", "unsafe"}


@dataclass
class Capture:
    """A base image, the log of a workload run on it, and where each op ended."""

    writer: str
    version: str
    base: str
    log: str
    ops: list[Op]
    boundaries: list[int]  # ops[i] issued log entries [boundaries[i-1], boundaries[i])
    first_entry: int  # entries before it built the base (reference writer)
    options: dict[str, str] = field(default_factory=dict)
    backing: str | None = None
    disagreements: list[str] = field(default_factory=list)
    entries: list[LogEntry] = field(default_factory=list)
    sectorsize: int = LOG_SECTOR
    build: str | None = None  # the series build that wrote it (qemu.BUILDS); None: default
    append_fill: int | None = None  # the byte every append stores, when the writer fixes it
    diverged_at: int | None = None  # the first op the writer and the model disagreed on

    def model_op(self, op: Op) -> dict[str, Any]:
        """The op as the persistence model takes it (zoned workloads)."""
        from .zoned import model_trace

        return model_trace(op, self.append_fill)

    def save(self, path: str) -> None:
        """Keep what a later `--state` needs to rebuild states from this same log."""
        fields = {k: v for k, v in self.__dict__.items() if k not in ("entries", "ops")}
        fields["ops"] = [op.__dict__ for op in self.ops]
        with open(path, "w") as stream:
            json.dump(fields, stream, indent=1)

    @classmethod
    def restore(cls, path: str) -> Capture:
        with open(path) as stream:
            fields = json.load(stream)
        fields["ops"] = [Op(**op) for op in fields["ops"]]
        capture = cls(**fields)
        capture.load()
        return capture

    def load(self) -> None:
        reader = LogReader(self.log)
        self.sectorsize = reader.superblock.sectorsize
        self.entries = list(reader.entries())

    def op_of(self, index: int) -> int:
        """The op that issued log entry `index` (len(ops) past the last boundary)."""
        for number, end in enumerate(self.boundaries):
            if index < end:
                return number
        return len(self.ops)

    @property
    def writethrough(self) -> bool:
        """cache=writethrough/directsync: QEMU acknowledges a write only once durable."""
        return self.options.get("cache") in ("writethrough", "directsync")


def split_options(options: dict[str, str]) -> tuple[dict[str, str], dict[str, str], str]:
    """(qemu-img create -o options, qcow2 runtime options, cache mode)."""
    zone_keys = sorted(k for k in options if k.startswith("zone."))
    if zone_keys:
        raise UsageError(f"{', '.join(zone_keys)}: the zone geometry is the workload's "
                         "('zoned' in a JSON workload; --build zoned --workload zones)")
    create = {k: v for k, v in options.items() if k in CREATE_KEYS}
    runtime = {k: v for k, v in options.items() if k not in CREATE_KEYS and k != "cache"}
    cache = options.get("cache", "writeback")
    if cache not in CACHE_MODES:
        raise UsageError(f"cache={cache}: choose one of {', '.join(sorted(CACHE_MODES))}")
    return create, runtime, cache


class QemuIoSession:
    """One interactive qemu-io process; `command()` returns once the command completed."""

    def __init__(self, args: list[str], timeout: float = 120,
                 build: str | None = None) -> None:
        self.timeout = timeout
        self.proc = subprocess.Popen(
            [qemu.require_tool("qemu-io", build), *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
            env=qemu.tool_environment(build),
        )
        self._read_prompt("start")

    def _read_prompt(self, what: str) -> str:
        assert self.proc.stdout is not None
        out = b""
        fd = self.proc.stdout.fileno()
        while not out.endswith(PROMPT):
            ready, _, _ = select.select([fd], [], [], self.timeout)
            chunk = os.read(fd, 1 << 16) if ready else b""
            if not chunk:
                self.proc.kill()
                self.proc.wait()
                text = out.decode(errors="replace")
                raise WriterError(f"qemu-io stopped during {what!r}: {text}")
            out += chunk
        return out[: -len(PROMPT)].decode(errors="replace")

    def command(self, text: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text.encode() + b"\n")
        return self._read_prompt(text)

    def quit(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(b"quit\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


OP_ERRORS = ("error", "failed", "invalid", "cannot", "not supported", "Operation not")
SANITIZER_LINE = re.compile(r"^(SUMMARY: \w+Sanitizer: .*|==\d+==ERROR: \w+Sanitizer: .*)$", re.M)


def run_tool(tool: str, *args: str, build: str | None = None) -> None:
    """qemu.run, but a failure names what matters first: a sanitizer's summary (the
    ASan build prints warnings before it), else the tool's last lines."""
    proc = qemu.run(tool, *args, check=False, build=build)
    if proc.returncode == 0:
        return
    output = (proc.stderr + proc.stdout).strip()
    found = SANITIZER_LINE.findall(output)
    detail = found[-1] if found else " ".join(output.splitlines()[-3:])
    raise WriterError(f"{tool} {' '.join(args)} failed (exit {proc.returncode}): {detail[:400]}")


def _fix_superblock(log: str, entries: int = 0) -> None:
    """Make the superblock count at least `entries`: a session that appends to the log
    (log-append=on) starts after the entries the superblock counts, and under
    cache=unsafe no flush ever writes that count."""
    with open(log, "r+b") as stream:
        head = stream.read(SUPERBLOCK.size)
        if len(head) == SUPERBLOCK.size and struct.unpack_from("<Q", head)[0] == MAGIC:
            if struct.unpack_from("<Q", head, 16)[0] >= entries:
                return
        stream.seek(0)
        stream.write(SUPERBLOCK.pack(MAGIC, VERSION, entries, LOG_SECTOR))


class EntryCounter:
    """Counts the entries present in a growing log, resuming where it stopped.

    The file size alone is not a boundary: under cache=none the log is written with
    O_DIRECT and its end is padded with zeros to the device alignment. An entry header
    is never all zeros, so the count stops at the first zero header or incomplete entry.
    """

    def __init__(self, log: str) -> None:
        self.log = log
        self.offset = LOG_SECTOR
        self.count = 0

    def advance(self) -> int:
        size = os.path.getsize(self.log)
        with open(self.log, "rb") as stream:
            while self.offset + LOG_SECTOR <= size:
                stream.seek(self.offset)
                header = stream.read(ENTRY.size)
                if not header.strip(b"\0"):
                    break
                _sector, nr_sectors, flags, data_len = ENTRY.unpack(header)
                if flags & MARK_FLAG:
                    payload = data_len
                elif flags & DISCARD_FLAG:
                    payload = 0
                else:
                    payload = nr_sectors * LOG_SECTOR
                end = self.offset + LOG_SECTOR + -(-payload // LOG_SECTOR) * LOG_SECTOR
                if end > size:
                    break
                self.offset = end
                self.count += 1
        return self.count


def capture_qemu(workload: Workload, options: dict[str, str], workdir: str,
                 build: str | None = None) -> Capture:
    """Create the image (and backing file), copy it as the base, run the workload, on
    the default QEMU or on a variant of the series build (qemu.BUILDS)."""
    from .zoned import ZonedRun, create_options, require_zoned_build

    if workload.zoned is not None:
        build = require_zoned_build(build, workload.name)
    os.makedirs(workdir, exist_ok=True)
    image = os.path.join(workdir, "image.qcow2")
    base = os.path.join(workdir, "base.qcow2")
    log = os.path.join(workdir, "writes.log")
    merged = {**workload.create, **options}
    create, runtime, cache = split_options(merged)
    backing = None
    create_args = ["create", "-q", "-f", "qcow2"]
    if workload.backing is not None:
        backing = os.path.join(workdir, "backing.qcow2")
        qemu.run("qemu-img", "create", "-q", "-f", "qcow2", backing, str(workload.size),
                 build=build)
        commands = [f"write -P {fill:#04x} {offset} {length}"
                    for offset, length, fill in workload.backing]
        args = ["-f", "qcow2"]
        for command in commands:
            args += ["-c", command]
        qemu.run("qemu-io", *args, backing, build=build)
        create_args += ["-b", os.path.abspath(backing), "-F", "qcow2"]
    zoned = ZonedRun(workload.zoned) if workload.zoned is not None else None
    if zoned is not None:
        create_args += ["-o", create_options(zoned.config, workload.cluster_size, create)]
    elif create:
        create_args += ["-o", ",".join(f"{k}={v}" for k, v in create.items())]
    run_tool("qemu-img", *create_args, image, str(workload.size), build=build)
    shutil.copyfile(image, base)
    with open(log, "wb"):
        pass
    stack = (f"driver=qcow2,file.driver=blklogwrites,file.file.filename={image},"
             f"file.log.filename={log}")
    extra = "".join(f",{k}={v}" for k, v in runtime.items())
    ops: list[Op] = []
    boundaries: list[int] = []
    appending = False

    def open_session() -> QemuIoSession:
        mode = "file.log-append=on" if appending else f"file.log-sector-size={LOG_SECTOR}"
        return QemuIoSession(["-t", cache, "--image-opts", f"{stack},{mode}{extra}"],
                             build=build)

    counter = EntryCounter(log)

    def close_session(session: QemuIoSession) -> None:
        session.quit()
        _fix_superblock(log, counter.advance())
        ops.append(Op("close"))
        boundaries.append(counter.advance())

    session = open_session()
    try:
        for number, op in enumerate(workload.ops):
            if zoned is not None and op.kind == "reopen":  # a clean power cycle (ZSM-17)
                session.quit()
                _fix_superblock(log, counter.advance())
                appending = True
                session = open_session()
                ops.append(op)
                boundaries.append(counter.advance())
                zoned.reopened(number, op, session)
                continue
            if zoned is not None:  # the model judges the answer (zoned.py)
                ops.append(zoned.run(number, op, session))
                boundaries.append(counter.advance())
                continue
            if op.kind in ("snapshot", "snapshot_delete"):
                close_session(session)
                appending = True
                flag = "-c" if op.kind == "snapshot" else "-d"
                qemu.run("qemu-img", "snapshot", "--image-opts",
                         f"{stack},file.log-append=on{extra}", flag, op.name, build=build)
                ops.append(op)
                boundaries.append(counter.advance())
                session = open_session()
                continue
            output = session.command(op.qemu_command())
            if any(word.lower() in output.lower() for word in OP_ERRORS):
                raise WriterError(f"qemu-io {op.qemu_command()!r} failed: {output.strip()}")
            ops.append(op)
            boundaries.append(counter.advance())
        close_session(session)
    finally:
        session.quit()
    _fix_superblock(log)
    capture = Capture("qemu", qemu.qemu_version("qemu-io", build).text, base, log, ops,
                      boundaries, 0, dict(merged), backing,
                      zoned.disagreements if zoned is not None else [], build=build,
                      append_fill=zoned.append_fill if zoned is not None else None,
                      diverged_at=zoned.diverged_at if zoned is not None else None)
    capture.load()
    capture.save(os.path.join(workdir, CAPTURE_FILE))
    return capture


def capture_reference(
    workload: Workload, mutants: list[str], workdir: str, policy: str = "lru"
) -> Capture:
    """Run the workload on the reference writer and on the model, side by side."""
    from qcow2harness.reference.persistence import PersistenceModel, pattern_byte
    from qcow2harness.reference.writer import ReferenceWriter

    if workload.zoned is None:
        raise UsageError("reference-writer workloads are zoned")
    os.makedirs(workdir, exist_ok=True)
    image = os.path.join(workdir, "image.qcow2")
    base = os.path.join(workdir, "base.qcow2")
    log = os.path.join(workdir, "writes.log")
    model = PersistenceModel(workload.zoned, policy)
    writer = ReferenceWriter.create(image, workload.size, cluster_size=workload.cluster_size,
                                    zoned=workload.zoned, policy=policy, log=log,
                                    mutants=mutants, fsync=False)
    disagreements: list[str] = []
    ops: list[Op] = []
    try:
        for number, op in enumerate(workload.ops):
            expected = model.apply(op.trace())
            fill = pattern_byte(model.last_content) or 0
            got = _reference_apply(writer, op, fill)
            # The fill the model expects is what the data oracle looks for.
            ops.append(Op(op.kind, op.offset, op.length, op.zone, op.name,
                          fill if op.kind in ("write", "append") else 0))
            if got != expected:
                disagreements.append(
                    f"op {number} ({op.describe()}): writer {_result(got)}, "
                    f"model {_result(expected)}")
    finally:
        writer.close()
    entries = list(LogReader(log).entries())
    created = next(e.index for e in entries if e.is_mark and e.label == "create ok")
    with open(base, "wb") as stream:
        replay(entries, stream, LOG_SECTOR, stop=created + 1)
    marks = [e.index for e in entries if e.is_mark and e.index > created]
    boundaries = [index + 1 for index in marks]
    capture = Capture("reference", "reference writer (mutants: "
                      f"{', '.join(mutants) or 'none'})", base, log, ops, boundaries,
                      created + 1, {"policy": policy}, None, disagreements)
    capture.load()
    capture.save(os.path.join(workdir, CAPTURE_FILE))
    return capture


def _result(result: Any) -> str:
    return "ok" if result.ok else f"refused ({result.error})"


def _reference_apply(writer: Any, op: Op, fill: int) -> Any:
    data = bytes([fill]) * op.length
    if op.kind == "write":
        return writer.write(op.offset, data)
    if op.kind == "append":
        return writer.append(op.zone, data)
    if op.kind in ("open", "close", "finish", "reset"):
        return getattr(writer, f"{op.kind}_zone")(op.zone)
    return getattr(writer, op.kind)()


__all__ = ["CACHE_MODES", "CREATE_KEYS", "Capture", "QemuIoSession", "capture_qemu",
           "capture_reference", "split_options"]
