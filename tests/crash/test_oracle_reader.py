"""QemuReader, the crash oracle's data judge, against images the real qemu-io wrote: each
way a range passes (one value, old and new side by side, zeros QEMU reports unallocated)
and each way it fails (a wrong value, a sector matching none, a wrong virtual size, a
state QEMU cannot open), with the message naming the first wrong byte (issue #20)."""

from __future__ import annotations

import pathlib

import pytest

from qcow2harness import qemu
from qcow2harness.crash.expect import Ranges
from qcow2harness.crash.oracle import PROCESS_THRESHOLD, QemuReader, _outside, mapped_ranges

KIB = 1024
MIB = 1024 * KIB
SIZE = 4 * MIB

# qemu-io's `map` of the image below, as QEMU 7.2 and 10.x print it.
MAP = """\
64 KiB (0x10000) bytes not allocated at offset 0 bytes (0x0)
64 KiB (0x10000) bytes     allocated at offset 64 KiB (0x10000)
896 KiB (0xe0000) bytes not allocated at offset 128 KiB (0x20000)
128 KiB (0x20000) bytes     allocated at offset 1 MiB (0x100000)
2.875 MiB (0x2e0000) bytes not allocated at offset 1.125 MiB (0x120000)
"""


def test_map_lines_by_allocation() -> None:
    assert mapped_ranges(MAP, allocated=True) == [(0x10000, 0x20000), (0x100000, 0x120000)]
    assert mapped_ranges(MAP, allocated=False) == [(0, 0x10000), (0x20000, 0x100000),
                                                   (0x120000, SIZE)]
    assert mapped_ranges("qemu-io: not a map\n", allocated=False) == []


def test_outside_the_holes() -> None:
    holes = [(0x1000, 0x2000), (0x3000, 0x4000)]
    assert _outside(0, 0x5000, holes) == [(0, 0x1000), (0x2000, 0x3000), (0x4000, 0x5000)]
    assert _outside(0x1800, 0x3800, holes) == [(0x2000, 0x3000)]
    assert _outside(0x1000, 0x2000, holes) == []
    assert _outside(0, 0x1000, holes) == [(0, 0x1000)]
    assert _outside(0x2000, 0x3000, holes) == [(0x2000, 0x3000)]
    assert _outside(0x4000, 0x5000, holes) == [(0x4000, 0x5000)]
    assert _outside(0, 0x4000, [(0x1000, 0x2000), (0x2000, 0x3000)]) == [(0, 0x1000),
                                                                          (0x3000, 0x4000)]
    assert _outside(0, 0x3000, [(0x1000, 0x4000), (0x5000, 0x6000)]) == [(0, 0x1000)]


@pytest.fixture
def image(qemu_tools: None, tmp_path: pathlib.Path) -> str:
    path = tmp_path / "state.qcow2"
    qemu.run("qemu-img", "create", "-q", "-f", "qcow2", str(path), str(SIZE))
    qemu.run("qemu-io", "-c", "write -P 0x11 64k 64k", "-c", "write -P 0x22 1M 64k",
             "-c", "write -P 0x55 1088k 64k", str(path))
    return str(path)


def _expect(*ranges: tuple[int, int, set[int]], size: int = SIZE) -> Ranges:
    expected = Ranges(size)
    for lo, hi, values in ranges:
        expected.update(lo, hi, lambda _old, new=frozenset(values): new)
    return expected


WRITTEN = ((64 * KIB, 128 * KIB, {0x11}), (MIB, MIB + 64 * KIB, {0x22}),
           (MIB + 64 * KIB, MIB + 128 * KIB, {0x55}))


def _verify(path: str, expected: Ranges, *, has_backing: bool = False,
            only: list[tuple[int, int]] | None = None) -> tuple[list[tuple[str, str]], QemuReader]:
    with QemuReader() as reader:
        problems = reader.verify(path, expected, has_backing=has_backing, only=only)
    return [(p.prop, p.message) for p in problems], reader


def test_what_was_written_reads_back(image: str) -> None:
    found, reader = _verify(image, _expect(*WRITTEN))
    assert found == [] and reader.fallbacks == 0
    found, backed = _verify(image, _expect(*WRITTEN), has_backing=True)
    assert found == [] and backed.reads > reader.reads  # unallocated zeros read too


def test_old_and_new_side_by_side_need_no_fallback(image: str) -> None:
    either = {0x22, 0x55}
    found, reader = _verify(image, _expect(WRITTEN[0], (MIB, MIB + 128 * KIB, either)))
    assert found == [] and reader.fallbacks == 0
    found, _ = _verify(image, _expect(WRITTEN[0], (MIB, MIB + 128 * KIB, {0x22, 0x66})))
    assert found == [("data", "guest bytes [0x100000, 0x120000) may hold only {0x22, 0x66}, "
                              "but 65536 byte(s) differ, first at 0x110000 (read {0x55})")]


def test_a_wrong_value_names_the_first_wrong_byte(image: str) -> None:
    found, reader = _verify(image, _expect((64 * KIB, 96 * KIB, {0x11}),
                                           (96 * KIB, 128 * KIB, {0x33}), *WRITTEN[1:]))
    assert found == [("data", "guest bytes [0x18000, 0x20000) may hold only {0x33}, but "
                              "32768 byte(s) differ, first at 0x18000 (read {0x11})")]
    assert reader.fallbacks == 1


def test_zeros_expected_over_written_data_are_read(image: str) -> None:
    found, _ = _verify(image, _expect(*WRITTEN[1:]))
    assert found == [("data", "guest bytes [0x10000, 0x20000) may hold only {0x00}, but "
                              "65536 byte(s) differ, first at 0x10000 (read {0x11})")]


def test_only_the_ranges_asked_for_are_read(image: str) -> None:
    wrong = _expect((64 * KIB, 128 * KIB, {0x33}), *WRITTEN[1:])
    assert _verify(image, wrong, only=[(MIB, 2 * MIB)])[0] == []
    assert [prop for prop, _ in _verify(image, wrong, only=[(0, 72 * KIB)])[0]] == ["data"]


def test_many_pieces_are_read_by_one_process_and_each_failure_placed(image: str) -> None:
    # Sectors of 0x11 told apart (so not merged) by what else each may hold.
    pieces = [(64 * KIB + n * 512, 64 * KIB + (n + 1) * 512, {0x11} | ({0x77} if n % 2 else set()))
              for n in range(PROCESS_THRESHOLD + 8)]
    pieces.append((pieces[-1][1], 128 * KIB, {0x11}))
    found, reader = _verify(image, _expect(*pieces, *WRITTEN[1:]))
    assert found == [] and reader.processes == 1
    pieces[20] = (pieces[20][0], pieces[20][1], {0x44})
    found, reader = _verify(image, _expect(*pieces, *WRITTEN[1:]))
    assert [message.split(" may")[0] for _, message in found] == [
        f"guest bytes [{pieces[20][0]:#x}, {pieces[20][1]:#x})"]


def test_a_virtual_size_the_disk_cannot_have(image: str) -> None:
    found, _ = _verify(image, _expect(*WRITTEN, size=2 * SIZE))
    assert found[0] == ("data", f"virtual size {SIZE} is none of the sizes the disk may have, "
                                f"[{2 * SIZE}]")


def test_a_state_qemu_cannot_open(qemu_tools: None, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "not-an-image.qcow2"
    path.write_bytes(b"QFI\xfb" + bytes(60))
    found, _ = _verify(str(path), _expect())
    assert [prop for prop, _ in found] == ["open"]
