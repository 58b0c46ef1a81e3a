"""Back-compat: what a pre-zoned writer (QEMU 7.2) does with zoned images.

1. `old_writer_refuses()`: with incompatible bit 5 (the v10 design, ZONE-1/ZONE-2)
   every way QEMU 7.2 can open an image for writing must refuse, and leave the file
   byte for byte as it was.
2. `autoclear_simulation()`: the design v4 weighed and v10 rejected, an autoclear bit.
   The zoned image is rewritten to carry autoclear bit 5 instead of incompatible bit 5;
   QEMU 7.2 then opens it, writes guest data where the zones say nothing may be (above
   a write pointer, in a capacity gap) and clears the autoclear bit it does not know,
   as qcow2 asks old writers to. The zone information is now stale, and the checker
   must say so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
from dataclasses import dataclass, field

from qcow2harness import qemu

INCOMPAT_OFFSET = 72
AUTOCLEAR_OFFSET = 88
ZONED_BIT = 1 << 5


@dataclass
class Attempt:
    image: str
    action: str
    refused: bool
    unchanged: bool
    message: str

    @property
    def ok(self) -> bool:
        return self.refused and self.unchanged


def _digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def zoned_images(directory: str) -> dict[str, str]:
    """A few zoned images from the reference writer: fresh, written, full zones, odd limits."""
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig

    from .workload import ZONES

    os.makedirs(directory, exist_ok=True)
    out = {}
    configs = {
        "fresh": (ZONES, []),
        "written": (ZONES, [("write", 16384, 4096), ("append", 2, 2048), ("finish", 3, 0)]),
        "no-limits-512-clusters": (ZoneConfig(size=1 << 20, zone_size=1 << 16,
                                              zone_capacity=1 << 16), [("write", 0, 8192)]),
        "capacity-gap": (ZoneConfig(size=1 << 20, zone_size=1 << 17, zone_capacity=96 << 10,
                                    conventional_zones=2, max_open_zones=2,
                                    max_active_zones=4, max_append_bytes=8192),
                         [("write", 2 << 17, 4096)]),
    }
    for name, (config, ops) in configs.items():
        path = os.path.join(directory, f"zoned-{name}.qcow2")
        cluster = 512 if "512" in name else 4096
        with ReferenceWriter.create(path, config.size, cluster_size=cluster, zoned=config,
                                    fsync=False) as writer:
            for kind, where, length in ops:
                if kind == "write":
                    writer.write(where, b"\x5a" * length)
                elif kind == "append":
                    writer.append(where, b"\x5b" * length)
                else:
                    writer.finish_zone(where)
            writer.flush()
        out[name] = path
    return out


def _write_actions(path: str, scratch: str) -> list[tuple[str, list[str]]]:
    opts = f"driver=qcow2,file.filename={path}"
    return [
        ("qemu-io write", ["qemu-io", "-f", "qcow2", "-c", "write -P 0x77 0 4k", path]),
        ("qemu-io write (--image-opts)", ["qemu-io", "--image-opts", opts, "-c",
                                          "write -P 0x77 0 4k"]),
        ("qemu-img resize", ["qemu-img", "resize", "-f", "qcow2", path, "+1M"]),
        ("qemu-img snapshot -c", ["qemu-img", "snapshot", "-c", "s1", path]),
        ("qemu-img amend", ["qemu-img", "amend", "-f", "qcow2", "-o", "lazy_refcounts=on",
                            path]),
        ("qemu-img check -r all", ["qemu-img", "check", "-r", "all", path]),
        ("qemu-img commit", ["qemu-img", "commit", "-f", "qcow2", path]),
        ("qemu-img rebase -u", ["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "", path]),
        ("qemu-img convert (as source)", ["qemu-img", "convert", "-f", "qcow2", "-O", "raw",
                                          path, os.path.join(scratch, "out.raw")]),
        ("qemu-img info (read only)", ["qemu-img", "info", path]),
    ]


def old_writer_refuses(directory: str) -> list[Attempt]:
    """Try every write path of the installed QEMU on each zoned image."""
    import subprocess

    attempts = []
    for name, path in zoned_images(directory).items():
        for action, argv in _write_actions(path, directory):
            before = _digest(path)
            tool = qemu.require_tool(argv[0])
            proc = subprocess.run([tool, *argv[1:]], capture_output=True, text=True,
                                  timeout=60, check=False)
            text = (proc.stderr or proc.stdout).strip().splitlines()
            refused = proc.returncode != 0 or "failed" in (proc.stdout + proc.stderr)
            attempts.append(Attempt(name, action, refused, _digest(path) == before,
                                    text[0] if text else ""))
    return attempts


@dataclass
class AutoclearResult:
    image: str
    qemu_output: str
    autoclear_after: int
    incompat_after: int
    extension_kept: bool
    before: list[str] = field(default_factory=list)  # checker findings, "LEVEL CLAUSE msg"
    after: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> bool:
        return any(line.startswith("MUST") for line in self.after)


def _findings(path: str) -> list[str]:
    from qcow2harness.checker import check_path

    return [f"{f.level} {f.clause} {f.message}" for f in check_path(path).findings]


def autoclear_simulation(directory: str) -> AutoclearResult:
    """Run the real QEMU 7.2 as the old writer on an autoclear-bit zoned image."""
    from qcow2harness.reference.writer import ZONED_EXT_MAGIC

    images = zoned_images(os.path.join(directory, "images"))
    path = os.path.join(directory, "autoclear-zoned.qcow2")
    shutil.copyfile(images["capacity-gap"], path)
    with open(path, "r+b") as stream:
        stream.seek(INCOMPAT_OFFSET)
        incompat = struct.unpack(">Q", stream.read(8))[0]
        stream.seek(INCOMPAT_OFFSET)
        stream.write(struct.pack(">Q", incompat & ~ZONED_BIT))
        stream.seek(AUTOCLEAR_OFFSET)
        autoclear = struct.unpack(">Q", stream.read(8))[0]
        stream.seek(AUTOCLEAR_OFFSET)
        stream.write(struct.pack(">Q", autoclear | ZONED_BIT))
    before = _findings(path)
    # Zone 2 (the first sequential one) starts at 256 KiB with its wp 4 KiB in; zone 3's
    # capacity gap is [480 KiB, 512 KiB). The old writer knows none of this.
    proc = qemu.run("qemu-io", "-f", "qcow2", "-c", "write -P 0x66 272k 8k",
                    "-c", "write -P 0x67 490k 4k", "-c", "write -P 0x68 260k 4k", path)
    with open(path, "rb") as stream:
        raw = stream.read(1 << 16)
    incompat_after = struct.unpack_from(">Q", raw, INCOMPAT_OFFSET)[0]
    autoclear_after = struct.unpack_from(">Q", raw, AUTOCLEAR_OFFSET)[0]
    kept = struct.pack(">I", ZONED_EXT_MAGIC) in raw[104:4096]
    return AutoclearResult(path, proc.stdout.strip().replace("\n", " | "), autoclear_after,
                           incompat_after, kept, before, _findings(path))


__all__ = ["Attempt", "AutoclearResult", "autoclear_simulation", "old_writer_refuses",
           "zoned_images"]
