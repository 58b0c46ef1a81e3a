"""Helpers for Python iotests (the runner puts this folder on PYTHONPATH).

A Python test reads like a bash one:

    #!/usr/bin/env python3
    # group: quick
    '''Purpose in one paragraph.'''
    import iotests

    iotests.require_qemu()
    with iotests.cleanup():
        iotests.section("a fresh image")
        iotests.qemu_img("create", "-f", "qcow2", iotests.TEST_IMG, "64M")
        iotests.check_test_img()
    iotests.done()

Everything printed goes to the golden file; `log()` filters paths and timings first.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

TEST_DIR = os.environ.get("TEST_DIR", "")
IOTESTS_DIR = os.environ.get("IOTESTS_DIR", os.path.dirname(os.path.abspath(__file__)))
TEST_IMG = os.path.join(TEST_DIR, "t.qcow2")
HARNESS = os.environ.get("QCOW2_HARNESS_PROG", "qcow2-harness")
PYTHON = os.environ.get("PYTHON", sys.executable)

if not TEST_DIR:
    sys.exit("iotests.py: run this test through iotests/check (TEST_DIR unset)")


def _tool(name: str, env: str) -> str | None:
    override = os.environ.get(env)
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which(name)


QEMU_IMG = _tool("qemu-img", "QEMU_IMG")
QEMU_IO = _tool("qemu-io", "QEMU_IO")


# ---- scope -----------------------------------------------------------------


def notrun(reason: str) -> None:
    """This test does not apply here: say why and stop (reported "not run")."""
    with open(os.environ["IOTESTS_NOTRUN_FILE"], "w", encoding="utf-8") as f:
        f.write(reason + "\n")
    sys.exit(0)


def require_qemu() -> None:
    for name, path, env in (("qemu-img", QEMU_IMG, "QEMU_IMG"), ("qemu-io", QEMU_IO, "QEMU_IO")):
        if path is None or subprocess.run([path, "--version"], capture_output=True,
                                          check=False).returncode != 0:
            notrun(f"{name} not found or not runnable (install qemu-utils or set {env})")


@contextlib.contextmanager
def cleanup() -> Iterator[None]:
    """The Python form of the cleanup trap: remove the images however the test ends."""
    try:
        yield
    finally:
        for path in glob.glob(os.path.join(TEST_DIR, "*")):
            if os.path.isfile(path):
                os.unlink(path)


# ---- output ----------------------------------------------------------------


def filter_test_dir(text: str) -> str:
    for variant in {TEST_DIR, os.path.realpath(TEST_DIR)}:
        text = text.replace(variant, "TEST_DIR")
    return text


def filter_qemu_io(text: str) -> str:
    return re.sub(r"(ops); [0-9:]+\.[0-9]+ sec \([^)]*\)$", r"\1; TIMING", text,
                  flags=re.MULTILINE)


def log(message: Any = "") -> None:
    """Print to the golden output, paths and timings filtered; dicts/lists as JSON."""
    text = message if isinstance(message, str) else json.dumps(message, sort_keys=True)
    print(filter_qemu_io(filter_test_dir(text)), flush=True)


def section(title: str) -> None:
    log()
    log(f"=== {title} ===")
    log()


def done() -> None:
    log("*** done")


# ---- tools -----------------------------------------------------------------


def _run(argv: list[str], **kwargs: Any) -> tuple[int, str]:
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, check=False, **kwargs)
    return proc.returncode, proc.stdout


def qemu_img(*args: str, quiet: bool = False) -> int:
    """Run qemu-img; its output is logged unless `quiet`."""
    assert QEMU_IMG is not None, "call require_qemu() first"
    rc, out = _run([QEMU_IMG, *args])
    if not quiet or rc:
        log(out.rstrip("\n")) if out else None
    if rc:
        log(f"qemu-img {args[0]}: exit {rc}")
    return rc


def qemu_io(*args: str, quiet: bool = False) -> int:
    assert QEMU_IO is not None, "call require_qemu() first"
    rc, out = _run([QEMU_IO, *args])
    if not quiet or rc:
        log(out.rstrip("\n")) if out else None
    if rc:
        log(f"qemu-io: exit {rc}")
    return rc


def harness(*args: str, quiet: bool = False) -> tuple[int, str]:
    """Run qcow2-harness; log its output (and a non-zero exit status)."""
    rc, out = _run([HARNESS, *args])
    if not quiet:
        if out:
            log(out.rstrip("\n"))
        if rc:
            log(f"qcow2-harness {args[0]}: exit {rc}")
    return rc, out


def check_test_img(image: str = TEST_IMG) -> int:
    return harness("check", image)[0]


def check_json(image: str = TEST_IMG) -> dict[str, Any]:
    """The checker's --json report, for tests that reason over findings."""
    _, out = harness("check", "--json", image, quiet=True)
    report: dict[str, Any] = json.loads(out)
    return report


def clauses(report: dict[str, Any]) -> list[str]:
    """Clause ids in the order reported, without repeats."""
    seen: list[str] = []
    for key in ("violations", "notes"):
        for finding in report.get(key, []):
            if finding["clause"] not in seen:
                seen.append(finding["clause"])
    return seen


def poke_file(path: str, offset: int, value: int, width: int) -> None:
    """Write `value` as a `width`-byte big-endian integer at `offset`."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(value.to_bytes(width, "big"))


def peek_file(path: str, offset: int, width: int) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        return int.from_bytes(f.read(width), "big")
