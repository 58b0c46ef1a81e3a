"""A long-running qemu-io process, driven one command at a time.

qemu-io reads commands from a pipe, but prints through stdio and wakes up once
per line it is sent. So it runs under `stdbuf -o0 -e0` (unbuffered output), each
command goes alone, and its output ends at the next "qemu-io> " prompt. Every
command sent is kept, so a failing sequence can be replayed as a qemu-io script.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time

from qcow2harness import qemu
from qcow2harness.errors import WriterError

PROMPT = b"qemu-io> "
TIMEOUT = 60.0


class QemuIO:
    """One qemu-io process on one image (`open` and `close` reopen it in place)."""

    def __init__(self, image: str, *, fmt: str = "qcow2", cache: str = "writeback",
                 build: str | None = None) -> None:
        qemu_io = qemu.require_tool("qemu-io", build)
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None:
            raise WriterError("stdbuf (coreutils) not found: needed to drive qemu-io")
        self.image = image
        self.fmt = fmt
        self.cache = cache
        self.script: list[str] = []
        self._proc = subprocess.Popen(
            [stdbuf, "-o0", "-e0", qemu_io, "-t", cache, "-f", fmt, image],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
            env=qemu.tool_environment(build),
        )
        self._read_until_prompt()

    def command(self, line: str) -> str:
        """Run one qemu-io command; return its output (prompt excluded)."""
        assert self._proc.stdin is not None
        self.script.append(line)
        self._proc.stdin.write(line.encode() + b"\n")
        return self._read_until_prompt()

    def verify(self, offset: int, length: int, pattern: int) -> bool:
        """True when [offset, offset+length) reads back as `pattern` bytes."""
        out = self.command(f"read -P {pattern:#x} {offset} {length}")
        if "Pattern verification failed" in out:
            return False
        if f"read {length}/{length} bytes" not in out:
            raise WriterError(f"qemu-io read failed: {out.strip()}")
        return True

    def reopen(self) -> None:
        self.command("close")
        out = self.command(f"open -t {self.cache} -o driver={self.fmt} {self.image}")
        if out.strip():
            raise WriterError(f"qemu-io could not reopen {self.image}: {out.strip()}")

    def kill(self) -> None:
        """SIGKILL, as a crashing QEMU process: caches never reach the file."""
        self.script.append("# qemu-io killed (SIGKILL)")
        self._proc.kill()
        self._proc.wait(timeout=TIMEOUT)
        for pipe in (self._proc.stdin, self._proc.stdout):
            if pipe is not None:
                pipe.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.write(b"quit\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=TIMEOUT)
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> QemuIO:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def as_script(self) -> str:
        """The commands sent so far, as a script for `qemu-io -f qcow2 IMG < script`."""
        return "\n".join(self.script) + "\n"

    def _read_until_prompt(self) -> str:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        out = b""
        deadline = time.monotonic() + TIMEOUT
        while not out.endswith(PROMPT):
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(remaining, 0))
            if not ready:
                raise WriterError(f"qemu-io did not answer within {TIMEOUT} s: {out!r}")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise WriterError(f"qemu-io exited: {out.decode(errors='replace').strip()}")
            out += chunk
        return out[: -len(PROMPT)].decode(errors="replace")
