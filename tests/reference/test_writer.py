"""The reference writer: real QEMU on its non-zoned images, zoned layout, model agreement,
persistence order in its log, crash replay, and every mutant's deviation."""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qcow2harness.reference.persistence import PersistenceModel, pattern_byte
from qcow2harness.reference.writer import (
    INCOMPAT_ZONED,
    ZONED_EXT,
    ZONED_EXT_MAGIC,
    Mutant,
    ReferenceWriter,
)
from qcow2harness.reference.zones import CONVENTIONAL_FLAG, Refusal, ZoneConfig, ZoneState

from qcow2harness.dmlog import LogEntry, read_log, replay
from qcow2harness.errors import ModelError

KIB = 1024
ZONE = 16 * KIB
CONFIG = ZoneConfig(
    size=8 * ZONE,
    zone_size=ZONE,
    zone_capacity=12 * KIB,
    conventional_zones=1,
    max_open_zones=2,
    max_active_zones=3,
    max_append_bytes=4 * KIB,
)


def need_qemu() -> None:
    if shutil.which("qemu-img") is None or shutil.which("qemu-io") is None:
        pytest.skip("qemu-img/qemu-io not found: install Debian's qemu-utils to run this test")


def zoned_writer(path: Path, **kwargs: Any) -> ReferenceWriter:
    kwargs.setdefault("fsync", False)
    return ReferenceWriter.create(path, CONFIG.size, cluster_size=4096, zoned=CONFIG, **kwargs)


# ----- non-zoned images in real QEMU -----


@pytest.mark.qemu
@pytest.mark.parametrize("cluster_size", [512, 4096, 65536])
def test_plain_images_pass_qemu_img_check_and_read_back(tmp_path: Path, cluster_size: int) -> None:
    need_qemu()
    image = tmp_path / "plain.qcow2"
    writes = [(0, 70000, 0xAB), (100000, 1000, 0xCD), (3 << 20, 4096, 0x11), (600000, 900, 0x5A)]
    with ReferenceWriter.create(image, 4 << 20, cluster_size=cluster_size, fsync=False) as writer:
        for offset, length, fill in writes:
            assert writer.write(offset, bytes([fill]) * length).ok
        writer.write(100500, b"\x77" * 10)  # in place, inside an allocated cluster
        assert writer.write(4 << 20, b"x").error is Refusal.OUT_OF_RANGE
        writer.flush()
    check = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No errors were found on the image." in check.stdout
    commands = [f"read -P {fill:#x} {offset} {length}" for offset, length, fill in writes[:1]]
    commands += [
        "read -P 0xcd 100000 500",
        "read -P 0x77 100500 10",
        "read -P 0xcd 100510 490",
        "read -P 0x11 3M 4k",
        "read -P 0x5a 600000 900",
        "read -P 0 70000 30000",
        "read -P 0 2M 64k",
    ]
    args = ["qemu-io", "-f", "qcow2"]
    for command in commands:
        args += ["-c", command]
    io = subprocess.run([*args, str(image)], capture_output=True, text=True)
    assert io.returncode == 0 and "Pattern verification failed" not in io.stdout, io.stdout


@pytest.mark.qemu
def test_qemu_refuses_zoned_images(tmp_path: Path) -> None:
    need_qemu()
    image = tmp_path / "zoned.qcow2"
    zoned_writer(image).close()
    info = subprocess.run(["qemu-img", "info", str(image)], capture_output=True, text=True)
    assert info.returncode != 0
    assert "incompatible feature" in info.stderr.lower()


# ----- zoned layout, read with a small independent reader -----


def read_layout(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    assert raw[:4] == b"QFI\xfb"
    version = struct.unpack_from(">I", raw, 4)[0]
    cluster_bits = struct.unpack_from(">I", raw, 20)[0]
    incompat = struct.unpack_from(">Q", raw, 72)[0]
    reftable_offset = struct.unpack_from(">Q", raw, 48)[0]
    header_length = struct.unpack_from(">I", raw, 100)[0]
    extensions = {}
    position = header_length
    while True:
        magic, length = struct.unpack_from(">II", raw, position)
        if magic == 0:
            break
        extensions[magic] = raw[position + 8 : position + 8 + length]
        position += 8 + (length + 7) // 8 * 8
    cluster = 1 << cluster_bits

    def refcount(offset: int) -> int:
        index = offset // cluster
        per_block = cluster // 2
        block = struct.unpack_from(">Q", raw, reftable_offset + 8 * (index // per_block))[0]
        return int(struct.unpack_from(">H", raw, block + 2 * (index % per_block))[0])

    return {
        "version": version,
        "incompat": incompat,
        "extensions": extensions,
        "refcount": refcount,
        "raw": raw,
    }


def test_zoned_header_extension_and_wp_table(tmp_path: Path) -> None:
    image = tmp_path / "zoned.qcow2"
    with zoned_writer(image) as writer:
        writer.write(ZONE, b"\x01" * 5120)
        writer.flush()
    layout = read_layout(image)
    assert layout["version"] == 3
    assert layout["incompat"] == INCOMPAT_ZONED, "bit 5 and nothing else"
    body = layout["extensions"][ZONED_EXT_MAGIC]
    assert len(body) == 56
    fields = ZONED_EXT.unpack(body)
    meta_offset = fields[-1]
    assert fields[:-1] == (1, ZONE, 12 * KIB, 1, 8, 3, 2, 4 * KIB, 64)
    assert body[1:4] == b"\0\0\0"
    table = struct.unpack_from(">8Q", layout["raw"], meta_offset)
    assert table[0] == 0 | CONVENTIONAL_FLAG
    assert table[1] == ZONE + 5120
    assert table[2:] == tuple(z * ZONE for z in range(2, 8))
    assert layout["refcount"](meta_offset) == 1, "zonedmeta clusters are refcounted (ZONE-21)"


def test_plain_images_have_no_zoned_bit(tmp_path: Path) -> None:
    image = tmp_path / "plain.qcow2"
    ReferenceWriter.create(image, 1 << 20, fsync=False).close()
    layout = read_layout(image)
    assert layout["incompat"] == 0 and ZONED_EXT_MAGIC not in layout["extensions"]
    with ReferenceWriter.open(image) as writer:
        assert not writer.zoned
        with pytest.raises(ModelError):
            writer.reset_zone(1)


def test_reopen_reset_and_read_back(tmp_path: Path) -> None:
    image = tmp_path / "zoned.qcow2"
    with zoned_writer(image) as writer:
        writer.write(ZONE, b"\x01" * 5120)
        assert writer.append(2, b"\x02" * 512).offset == 2 * ZONE
        assert writer.finish_zone(4).ok
        assert writer.open_zone(3).ok
        writer.reopen()
        assert [writer.zones.zone(z).state for z in (1, 2, 3, 4)] == [  # type: ignore[union-attr]
            ZoneState.CLOSED,
            ZoneState.CLOSED,
            ZoneState.EMPTY,
            ZoneState.FULL,
        ]
        assert writer.read(ZONE, 5120) == b"\x01" * 5120
        writer.reset_zone(1)
        assert writer.read(ZONE, 5120) == bytes(5120)
        assert writer.wps_on_disk()[1] == ZONE
        writer.write(ZONE, b"\x03" * 512)
        assert writer.read(ZONE, 1024) == b"\x03" * 512 + bytes(512)
        writer.reset_all()
        assert writer.wps_on_disk()[1:3] == [ZONE, 2 * ZONE]
    with ReferenceWriter.open(image) as again:
        assert again.read(2 * ZONE, 512) == bytes(512)


def test_small_zones_inside_one_cluster_reset_by_writing_zeros(tmp_path: Path) -> None:
    config = ZoneConfig(size=64 * KIB, zone_size=4096, zone_capacity=4096, conventional_zones=1)
    image = tmp_path / "small.qcow2"
    with ReferenceWriter.create(image, config.size, zoned=config, fsync=False) as writer:
        writer.write(4096, b"\x01" * 4096)
        writer.write(8192, b"\x02" * 4096)
        writer.reset_zone(1)
        assert writer.read(4096, 8192) == bytes(4096) + b"\x02" * 4096


# ----- model vs writer, file re-read after every op -----


def script() -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = [
        {"op": "write", "offset": ZONE, "length": 3072},
        {"op": "write", "offset": 0, "length": 5000},
        {"op": "append", "zone": 2, "length": 2048},
        {"op": "flush"},
        {"op": "write", "offset": ZONE + 3072, "length": 1024},
        {"op": "write", "offset": 3 * ZONE, "length": 512},  # victim closes
        {"op": "write", "offset": 4 * ZONE, "length": 512},  # too many active
        {"op": "write", "offset": ZONE + 100, "length": 512},  # not at wp
        {"op": "finish", "zone": 2},
        {"op": "write", "offset": 4 * ZONE, "length": 12 * KIB},  # straight to FULL
        {"op": "reset", "zone": 1},
        {"op": "open", "zone": 5},
        {"op": "close", "zone": 5},
        {"op": "append", "zone": 3, "length": 4096},
        {"op": "flush"},
        {"op": "reopen"},
        {"op": "write", "offset": 2 * ZONE, "length": 512},
        {"op": "reset_all"},
        {"op": "write", "offset": 2000, "length": 100},
        {"op": "write", "offset": ZONE, "length": 4096},
    ]
    return ops


def apply_both(model: PersistenceModel, writer: ReferenceWriter, op: dict[str, Any]) -> None:
    """Apply `op` to the model, then to the writer with data the model can name."""
    expected = model.apply(op)
    got = writer.apply(op, bytes([pattern_byte(model.last_content) or 0]))
    assert got == expected, (op, got, expected)


def check_file_matches_model(path: Path, model: PersistenceModel) -> None:
    with ReferenceWriter.open(path, fsync=False) as fresh:
        assert fresh.wps_on_disk()[1:] == model.zones.wps()[1:]
        for extent in model._content.slice(0, CONFIG.size):
            want = bytes([pattern_byte(extent.content) or 0]) * extent.length
            assert fresh.read(extent.offset, extent.length) == want, extent


def test_writer_agrees_with_model_after_every_op(tmp_path: Path) -> None:
    image = tmp_path / "diff.qcow2"
    model = PersistenceModel(CONFIG)
    with zoned_writer(image) as writer:
        for op in script():
            apply_both(model, writer, op)
            check_file_matches_model(image, model)
        assert [i.state for i in writer.zones.report()] == [  # type: ignore[union-attr]
            i.state for i in model.zones.report()
        ]


# ----- the log: persistence order, crash replay -----


def op_entries(log: Path) -> Iterator[tuple[str, list[LogEntry]]]:
    """(mark label, the entries logged since the previous mark) per acknowledged op."""
    pending: list[LogEntry] = []
    for entry in read_log(log):
        if entry.is_mark:
            yield entry.label, pending
            pending = []
        else:
            pending.append(entry)


def stages(writer: ReferenceWriter, entries: list[LogEntry]) -> list[str]:
    """The file regions written, in log order, with "|" for each barrier."""
    out: list[str] = []
    for entry in entries:
        if entry.is_flush:
            out.append("|")
        elif entry.is_write:
            region = writer.region(entry.sector * 512)
            if not out or out[-1] != region:
                out.append(region)
    return out


def log_of(tmp_path: Path, ops: list[dict[str, Any]], mutants: tuple[str, ...] = ()) -> Any:
    image = tmp_path / "logged.qcow2"
    log = tmp_path / "log.bin"
    model = PersistenceModel(CONFIG)
    writer = zoned_writer(image, log=log, mutants=mutants)
    for op in ops:
        apply_both(model, writer, op)
    writer.close()
    return writer, dict(op_entries(log)), log


FIRST_WRITE = [{"op": "write", "offset": ZONE, "length": 5120}]


def test_correct_order_data_refcount_l2_l1_wp(tmp_path: Path) -> None:
    writer, ops, _ = log_of(tmp_path, [*FIRST_WRITE, {"op": "reset", "zone": 1}, {"op": "flush"}])
    assert stages(writer, ops["1 write ok"]) == [
        "data", "|", "refblock", "|", "l2", "|", "l1", "|", "zonedmeta",
    ]
    assert stages(writer, ops["2 reset ok"]) == ["l2", "|", "zonedmeta"]
    assert stages(writer, ops["3 flush ok"]) == ["|"]


MUTANT_ORDERS = {
    "wp-before-data": ["zonedmeta", "|", "data", "|", "refblock", "|", "l2", "|", "l1"],
    "l2-before-data": ["refblock", "|", "l2", "|", "l1", "|", "data", "|", "zonedmeta"],
    "refcount-after-l2": ["data", "|", "l2", "|", "l1", "|", "refblock", "|", "zonedmeta"],
    "skip-wp-update": ["data", "|", "refblock", "|", "l2", "|", "l1"],
}


@pytest.mark.parametrize("mutant", sorted(MUTANT_ORDERS))
def test_ordering_mutants_show_in_the_log(tmp_path: Path, mutant: str) -> None:
    writer, ops, _ = log_of(tmp_path, FIRST_WRITE, (mutant,))
    assert stages(writer, ops["1 write ok"]) == MUTANT_ORDERS[mutant]


def test_reset_wp_before_zero_mutant(tmp_path: Path) -> None:
    ops = [*FIRST_WRITE, {"op": "reset", "zone": 1}]
    writer, logged, _ = log_of(tmp_path, ops, ("reset-wp-before-zero",))
    assert stages(writer, logged["2 reset ok"]) == ["zonedmeta", "|", "l2"]
    assert stages(writer, logged["1 write ok"])[0] == "data", "writes keep the right order"


def test_no_flush_before_ack_mutant(tmp_path: Path) -> None:
    writer, logged, _ = log_of(tmp_path, [*FIRST_WRITE, {"op": "flush"}], ("no-flush-before-ack",))
    assert logged["2 flush ok"] == [], "the flush was acknowledged with nothing flushed"


def test_skip_wp_update_mutant_loses_writes_on_reopen(tmp_path: Path) -> None:
    image = tmp_path / "skip.qcow2"
    with zoned_writer(image, mutants=["skip-wp-update"]) as writer:
        writer.write(ZONE, b"\x01" * 512)
        assert writer.zones.zone(1).wp == ZONE + 512  # type: ignore[union-attr]
        assert writer.wps_on_disk()[1] == ZONE
        writer.reopen()
        assert writer.zones.zone(1).state is ZoneState.EMPTY  # type: ignore[union-attr]
        assert writer.write(ZONE + 512, b"\x02" * 512).error is Refusal.NOT_AT_WRITE_POINTER


def test_reopen_forgets_closed_mutant_overruns_active_limit(tmp_path: Path) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "write", "offset": ZONE, "length": 512},
        {"op": "write", "offset": 2 * ZONE, "length": 512},
        {"op": "write", "offset": 3 * ZONE, "length": 512},
        {"op": "reopen"},
    ]
    for mutants, accepted in (((), False), (("reopen-forgets-closed",), True)):
        image = tmp_path / f"forget{len(mutants)}.qcow2"
        model = PersistenceModel(CONFIG)
        with zoned_writer(image, mutants=mutants) as writer:
            for op in ops:
                apply_both(model, writer, op)
            assert model.write(4 * ZONE, 512).error is Refusal.TOO_MANY_ACTIVE
            assert writer.write(4 * ZONE, b"\x09" * 512).ok is accepted


def test_write_skips_active_limit_mutant(tmp_path: Path) -> None:
    ops: list[dict[str, Any]] = [
        {"op": "write", "offset": ZONE, "length": 512},
        {"op": "write", "offset": 2 * ZONE, "length": 512},
        {"op": "close", "zone": 1},
        {"op": "close", "zone": 2},
        {"op": "write", "offset": 3 * ZONE, "length": 512},
    ]
    for mutants, accepted in (((), False), (("write-skips-active-limit",), True)):
        image = tmp_path / f"active{len(mutants)}.qcow2"
        model = PersistenceModel(CONFIG)
        with zoned_writer(image, mutants=mutants) as writer:
            for op in ops:
                apply_both(model, writer, op)
            assert model.write(4 * ZONE, 512).error is Refusal.TOO_MANY_ACTIVE
            assert writer.write(4 * ZONE, b"\x09" * 512).ok is accepted
            assert writer.open_zone(5).error is Refusal.TOO_MANY_ACTIVE, "open still checks"


def test_zonedmeta_unrefcounted_mutant(tmp_path: Path) -> None:
    for mutants, expected in (((), 1), (("zonedmeta-unrefcounted",), 0)):
        image = tmp_path / f"meta{len(mutants)}.qcow2"
        with zoned_writer(image, mutants=mutants) as writer:
            meta = writer.zonedmeta_offset
        assert read_layout(image)["refcount"](meta) == expected


def test_every_mutant_is_documented_and_unknown_ones_refused(tmp_path: Path) -> None:
    assert len(Mutant) == 9
    with pytest.raises(ModelError):
        zoned_writer(tmp_path / "x.qcow2", mutants=["faster"])


def crash_violations(
    tmp_path: Path, ops: list[dict[str, Any]], mutants: tuple[str, ...]
) -> list[str]:
    """Replay every prefix of the writer's log and judge it with the crash model."""
    _, _, log = log_of(tmp_path, ops, mutants)
    entries = list(read_log(log))
    created = next(i for i, e in enumerate(entries) if e.is_mark and e.label == "create ok")
    problems = []
    for stop in range(created + 1, len(entries) + 1):
        acked = sum(1 for e in entries[created + 1 : stop] if e.is_mark)
        model = PersistenceModel(CONFIG)
        for op in ops[:acked]:
            model.apply(op)
        if acked < len(ops) and ops[acked]["op"] not in ("flush", "reopen"):
            model.apply(ops[acked])  # in flight: its effects may or may not be there
        answer = model.crash()
        image = tmp_path / "crashed.qcow2"
        image.write_bytes(b"")
        with open(image, "r+b") as stream:
            replay(entries, stream, 512, stop=stop)
        with ReferenceWriter.open(image, fsync=False) as recovered:
            found = answer.violations(recovered.wps_on_disk(), recovered.read)
        problems += [f"prefix {stop}: {p}" for p in found]
    return problems


CRASH_OPS: list[dict[str, Any]] = [
    {"op": "write", "offset": ZONE, "length": 5120},
    {"op": "flush"},
    {"op": "write", "offset": ZONE + 5120, "length": 3072},
    {"op": "append", "zone": 2, "length": 1024},
    {"op": "write", "offset": 100, "length": 9000},
    {"op": "reset", "zone": 1},
    {"op": "write", "offset": ZONE, "length": 512},
    {"op": "flush"},
    {"op": "finish", "zone": 2},
]


def test_every_crash_of_the_correct_writer_is_allowed(tmp_path: Path) -> None:
    assert crash_violations(tmp_path, CRASH_OPS, ()) == []


@pytest.mark.parametrize("mutant", ["wp-before-data", "reset-wp-before-zero"])
def test_crash_replay_catches_ordering_mutants(tmp_path: Path, mutant: str) -> None:
    problems = crash_violations(tmp_path, CRASH_OPS, (mutant,))
    assert problems and all("PERS-4" in p for p in problems), problems
