"""dm-log-writes: round trip, stale counts, malformed logs, and a real QEMU blklogwrites log."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from qcow2harness.dmlog import (
    DISCARD,
    FLUSH,
    FUA,
    MAGIC,
    MARK,
    LogReader,
    LogWriter,
    read_log,
    replay,
)
from qcow2harness.errors import ParseError


def sample_log(path: Path, *, finalize: bool = True) -> None:
    writer = LogWriter(path)
    writer.write(8, b"\x11" * 1024)
    writer.flush()
    writer.write(0, b"\x22" * 512, fua=True)
    writer.discard(16, 4)
    writer.mark("op 1 write ok")
    if finalize:
        writer.finalize()
    else:
        writer._file.flush()  # entries on disk, superblock still says 0


def test_round_trip(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_log(log)
    reader = LogReader(log)
    assert reader.superblock.nr_entries == 5 and reader.superblock.sectorsize == 512
    entries = list(reader)
    assert [(e.sector, e.nr_sectors, e.flags) for e in entries] == [
        (8, 2, 0),
        (0, 0, FLUSH),
        (0, 1, FUA),
        (16, 4, DISCARD),
        (0, 0, MARK),
    ]
    assert entries[0].data == b"\x11" * 1024 and entries[0].is_write
    assert entries[1].is_flush and not entries[1].is_write
    assert entries[2].is_fua and entries[2].data == b"\x22" * 512
    assert entries[3].is_discard and entries[3].data == b""
    assert entries[4].label == "op 1 write ok"
    assert [e.log_offset for e in entries] == [512, 2048, 2560, 3584, 4096]


def test_stale_entry_count_is_scanned_past(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_log(log, finalize=False)
    assert LogReader(log).superblock.nr_entries == 0
    assert len(list(read_log(log))) == 5
    with open(log, "ab") as stream:
        stream.write(b"\0" * 2048)  # a zeroed tail ends the scan
    assert len(list(read_log(log))) == 5


def test_replay_applies_writes_and_discards_up_to_stop(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_log(log)
    target = tmp_path / "disk"
    target.write_bytes(b"\xff" * 12 * 512)
    with open(target, "r+b") as stream:
        assert replay(read_log(log), stream, 512, stop=2) == 2
    data = target.read_bytes()
    assert data[:512] == b"\xff" * 512 and data[4096:5120] == b"\x11" * 1024
    with open(target, "r+b") as stream:
        replay(list(read_log(log)), stream, 512)
    data = target.read_bytes()
    assert data[:512] == b"\x22" * 512 and data[8192:10240] == bytes(2048)


def corrupt(path: Path, offset: int, fmt: str, value: int) -> None:
    raw = bytearray(path.read_bytes())
    struct.pack_into(fmt, raw, offset, value)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "match"),
    [
        (0, "<Q", 0x1234, "magic"),
        (8, "<Q", 2, "version"),
        (24, "<I", 1000, "sectorsize"),
        (16, "<Q", 1 << 40, "cannot fit"),
        (16, "<Q", 9, "counts 9"),
        (512 + 8, "<Q", 1 << 50, "sectors of data"),
        (512 + 16, "<Q", 0x40, "unknown flags"),
        (4096 + 24, "<Q", 100000, "mark of"),
    ],
)
def test_malformed_logs_raise_parse_error(
    tmp_path: Path, offset: int, fmt: str, value: int, match: str
) -> None:
    log = tmp_path / "log"
    sample_log(log)
    corrupt(log, offset, fmt, value)
    with pytest.raises(ParseError, match=match):
        list(read_log(log))


def test_truncated_logs(tmp_path: Path) -> None:
    log = tmp_path / "log"
    sample_log(log, finalize=False)
    raw = log.read_bytes()
    log.write_bytes(raw[:1024])  # header of the first write, half its data
    with pytest.raises(ParseError, match="sectors of data"):
        list(read_log(log))
    sample_log(log)
    raw = log.read_bytes()
    log.write_bytes(raw[:2560])  # a write and a flush; three counted entries missing
    with pytest.raises(ParseError, match="counts 5"):
        list(read_log(log))
    log.write_bytes(raw + b"\x01" * 100)
    with pytest.raises(ParseError):
        list(read_log(log))
    log.write_bytes(raw[:20])
    with pytest.raises(ParseError, match="superblock"):
        LogReader(log)
    log.write_bytes(struct.pack("<QQQI", MAGIC, 1, 0, 512))
    with pytest.raises(ParseError, match="one sector"):
        LogReader(log)


def test_writer_rejects_partial_sectors(tmp_path: Path) -> None:
    with LogWriter(tmp_path / "log") as writer:
        with pytest.raises(ValueError):
            writer.write(0, b"x" * 100)
        with pytest.raises(ValueError):
            writer.mark("x" * 5000)
    with pytest.raises(ValueError):
        LogWriter(tmp_path / "log2", sectorsize=1000)


def test_real_qemu_blklogwrites_log(tmp_path: Path) -> None:
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        pytest.skip("qemu-img/qemu-io not installed (Debian package qemu-utils)")
    image = tmp_path / "img.qcow2"
    log = tmp_path / "log.bin"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(image), "1M"], check=True,
                   capture_output=True)
    before = image.read_bytes()
    log.touch()
    options = (
        f"driver=qcow2,file.driver=blklogwrites,file.file.filename={image},"
        f"file.log.filename={log},file.log-sector-size=512"
    )
    subprocess.run(
        ["qemu-io", "--image-opts", options, "-c", "write -P 0xab 0 64k", "-c", "flush"],
        check=True,
        capture_output=True,
    )
    reader = LogReader(log)
    entries = list(reader)
    assert reader.superblock.sectorsize == 512
    assert len(entries) == reader.superblock.nr_entries
    assert any(e.is_flush for e in entries)
    data_writes = [e for e in entries if e.is_write and e.data == b"\xab" * 65536]
    assert len(data_writes) == 1, "the guest data appears once, as one 64 KiB write"
    assert entries[-1].is_flush, "the guest flush comes last"
    # Replaying the whole log onto the image as it was reproduces the final file.
    replayed = tmp_path / "replayed"
    replayed.write_bytes(before)
    with open(replayed, "r+b") as stream:
        replay(entries, stream, reader.superblock.sectorsize)
    final = image.read_bytes()
    assert replayed.read_bytes()[: len(final)] == final
