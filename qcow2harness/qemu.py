"""Finding and running the real QEMU tools.

The default writer is Debian's qemu-utils; as qemu-iotests does, QEMU_IMG and QEMU_IO
override what is on PATH. The zoned series under test is a separate build, named by
QCOW2_HARNESS_ZONED_QEMU (see qcow2harness/qemu_build.py): its root holds one folder per
variant (`zoned`, `zoned-asan`, `stock`, the same 10.2 source without the series), or it
is itself a folder with a zoned-capable qemu-img and qemu-io. Every call below takes
`build=` to choose one of those; None is the default writer.
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
ZONED_ENV = "QCOW2_HARNESS_ZONED_QEMU"
BUILDS = ("zoned", "zoned-asan", "stock")


def build_root() -> str | None:
    """The series build named by QCOW2_HARNESS_ZONED_QEMU, or None."""
    return os.environ.get(ZONED_ENV) or None


def find_tool(name: str, build: str | None = None) -> str | None:
    """Path of qemu-img or qemu-io, or None when it is not there.

    build=None: the default writer (QEMU_IMG / QEMU_IO, else PATH); otherwise one
    variant of the series build (BUILDS)."""
    if build is None:
        override = os.environ.get(TOOL_ENV.get(name, ""), "")
        if override:
            return override if shutil.which(override) else None
        return shutil.which(name)
    if build not in BUILDS:
        raise ValueError(f"unknown build {build!r}; choose from {BUILDS}")
    root = build_root()
    if root is None:
        return None
    for folder in (os.path.join(root, build), root if build == "zoned" else None):
        if folder and os.access(os.path.join(folder, name), os.X_OK):
            return os.path.join(folder, name)
    return None


def build_unavailable(build: str) -> str | None:
    """Why a variant of the series build cannot be used (None: it can)."""
    root = build_root()
    if root is None:
        return (f"no zoned series build: set {ZONED_ENV} (make zoned-qemu "
                f"SERIES=../shared/zoned-series builds one)")
    missing = [name for name in TOOL_ENV if find_tool(name, build) is None]
    if missing:
        return f"{ZONED_ENV}={root} has no {build} {' or '.join(missing)}"
    return None


def require_tool(name: str, build: str | None = None) -> str:
    path = find_tool(name, build)
    if path is None:
        if build is not None:
            raise WriterError(build_unavailable(build) or f"{name} of {build} not found")
        raise WriterError(
            f"{name} not found: install Debian's qemu-utils or set {TOOL_ENV[name]}"
        )
    return path


def tool_environment(build: str | None) -> dict[str, str] | None:
    """The environment a variant runs in (None: inherit). ASan: leaks are no finding, a
    report exits with ASAN_EXIT_CODE."""
    if build != "zoned-asan":
        return None
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", f"detect_leaks=0:exitcode={ASAN_EXIT_CODE}:"
                                   "allocator_may_return_null=1:handle_abort=1:handle_sigtrap=1")
    return env


ASAN_EXIT_CODE = 86


@dataclass(frozen=True)
class QemuVersion:
    major: int
    minor: int
    micro: int
    text: str

    def __str__(self) -> str:
        return self.text


@cache
def qemu_version(tool: str = "qemu-img", build: str | None = None) -> QemuVersion:
    path = require_tool(tool, build)
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False,
                         env=tool_environment(build))
    first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
    match = re.search(r"version (\d+)\.(\d+)\.(\d+)", first)
    if not match:
        raise WriterError(f"cannot read the version of {path}: {first!r}")
    major, minor, micro = (int(g) for g in match.groups())
    return QemuVersion(major, minor, micro, first.strip())


def run(
    tool: str, *args: str, check: bool = True, timeout: float = 300, cwd: str | None = None,
    build: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run qemu-img / qemu-io; raise WriterError (with its stderr) on failure."""
    path = require_tool(tool, build)
    proc = subprocess.run(
        [path, *args], capture_output=True, text=True, check=False, timeout=timeout, cwd=cwd,
        env=tool_environment(build),
    )
    if check and proc.returncode != 0:
        raise WriterError(
            f"{tool} {' '.join(args)} failed (exit {proc.returncode}): "
            f"{(proc.stderr or proc.stdout).strip()[:500]}"
        )
    return proc


@cache
def supports_zoned_qcow2(build: str | None = None) -> bool:
    """True when this qemu-img knows the proposed zoned qcow2 create options."""
    proc = run("qemu-img", "create", "-f", "qcow2", "-o", "help", check=False, build=build)
    return "zone_size" in proc.stdout or "zone.size" in proc.stdout
