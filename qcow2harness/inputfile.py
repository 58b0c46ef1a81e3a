"""Opening a file the user named: a regular file (or, for images, a block device) only.

A FIFO would block open() until a writer comes, and a character device such as
/dev/zero reads without end, so both are refused, as are directories and sockets.
The file is opened with O_NONBLOCK and judged by fstat on the opened descriptor (no
stat-then-open race); O_NONBLOCK is cleared again before anything is read.

    with open_image(path) as stream:   # BinaryIO, buffered, read-only
        ...
    fd = open_image_fd(path)           # the same check, a raw descriptor

Refusals are UsageError (exit 1), one line naming the path and what it is.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

from qcow2harness.errors import UsageError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str:
    """What a st_mode says the file is, as a noun phrase."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "a regular file" if stat.S_ISREG(mode) else "not a regular file"


def _refusal(path: str | os.PathLike[str], kind: str, wanted: str) -> UsageError:
    return UsageError(f"{os.fspath(path)}: is {kind}, not {wanted}")


def open_input_fd(path: str | os.PathLike[str], *, block_devices: bool) -> int:
    """A read-only descriptor of `path`, which must be a regular file (or a block
    device when `block_devices`). OSError for what open() itself refuses."""
    wanted = "a regular file or block device" if block_devices else "a regular file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as error:
        if error.errno == errno.ENXIO:  # a socket (or a device without its driver)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                raise error from None
            raise _refusal(path, file_kind(mode), wanted) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or (block_devices and stat.S_ISBLK(mode))):
            raise _refusal(path, file_kind(mode), wanted)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_image_fd(path: str | os.PathLike[str]) -> int:
    """A read-only descriptor of an image: a regular file or a block device."""
    return open_input_fd(path, block_devices=True)


def open_image(path: str | os.PathLike[str]) -> BinaryIO:
    """An image opened read-only as a buffered binary stream (what open(path, "rb")
    gives), refusing what is neither a regular file nor a block device."""
    return os.fdopen(open_image_fd(path), "rb")


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes; a larger one is refused
    before it is read, and at most limit + 1 bytes are ever read."""
    fd = open_input_fd(path, block_devices=False)
    with os.fdopen(fd, "rb") as stream:
        data = b""
        size = os.fstat(fd).st_size
        if size <= limit:
            data = stream.read(limit + 1)
            size = len(data)  # it may have grown since fstat
    if size > limit:
        raise UsageError(f"{os.fspath(path)}: {size} bytes, more than the {_bytes(limit)} "
                         "read")
    return data


def _bytes(count: int) -> str:
    return f"{count >> 20} MiB" if count and count % (1 << 20) == 0 else f"{count} bytes"


__all__ = ["file_kind", "open_image", "open_image_fd", "open_input_fd", "read_bounded"]
