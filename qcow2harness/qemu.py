"""Finding and running the real QEMU tools (Debian's qemu-utils).

As qemu-iotests does, QEMU_IMG and QEMU_IO override what is on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache

from qcow2harness.errors import WriterError

TOOL_ENV = {"qemu-img": "QEMU_IMG", "qemu-io": "QEMU_IO"}


def find_tool(name: str) -> str | None:
    """Path of qemu-img or qemu-io, or None when it is not installed."""
    override = os.environ.get(TOOL_ENV.get(name, ""), "")
    if override:
        return override if shutil.which(override) else None
    return shutil.which(name)


def require_tool(name: str) -> str:
    path = find_tool(name)
    if path is None:
        raise WriterError(
            f"{name} not found: install Debian's qemu-utils or set {TOOL_ENV[name]}"
        )
    return path


@dataclass(frozen=True)
class QemuVersion:
    major: int
    minor: int
    micro: int
    text: str

    def __str__(self) -> str:
        return self.text


@cache
def qemu_version(tool: str = "qemu-img") -> QemuVersion:
    path = require_tool(tool)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", first)
    if not match:
        raise WriterError(f"cannot read the version of {path}: {first!r}")
    major, minor, micro = (int(g) for g in match.groups())
    return QemuVersion(major, minor, micro, first.strip())


def run(
    tool: str, *args: str, check: bool = True, timeout: float = 300, cwd: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run qemu-img / qemu-io; raise WriterError (with its stderr) on failure."""
    path = require_tool(tool)
    proc = subprocess.run(
        [path, *args], capture_output=True, text=True, check=False, timeout=timeout, cwd=cwd
    )
    if check and proc.returncode != 0:
        raise WriterError(
            f"{tool} {' '.join(args)} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[:500]}"
        )
    return proc


@cache
def supports_zoned_qcow2() -> bool:
    """True when this qemu-img knows the proposed zoned qcow2 create options."""
    proc = run("qemu-img", "create", "-f", "qcow2", "-o", "help", check=False)
    return "zone_size" in proc.stdout or "zone.size" in proc.stdout
