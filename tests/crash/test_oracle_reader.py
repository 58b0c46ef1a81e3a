"""QemuReader, the crash oracle's data judge, against images the real qemu-io wrote: each
way a range passes (one value, old and new side by side, zeros QEMU reports unallocated)
and each way it fails (a wrong value, a sector matching none, a wrong virtual size, a
state QEMU cannot open), with the message naming the first wrong byte (issue #20)."""

from __future__ import annotations

import dataclasses
import pathlib

import pytest
from qcow2harness.properties.corruptions import corruptions_for
from qcow2harness.reference.persistence import PersistenceModel
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig

from qcow2harness import qemu
from qcow2harness.crash import oracle
from qcow2harness.crash.expect import Ranges
from qcow2harness.crash.oracle import (
    PROCESS_THRESHOLD,
    READ_CHUNK,
    Problem,
    QemuReader,
    _chunks,
    _outside,
    mapped_ranges,
    zoned_problems,
)
from qcow2harness.errors import ParseError

KIB = 1024
MIB = 1024 * KIB
SIZE = 4 * MIB

# qemu-io's `map` of the image below (Debian's QEMU 7.2), before the sectors at 2 MiB.
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
    assert _outside(0x2800, 0x5000, holes) == [(0x2800, 0x3000), (0x4000, 0x5000)]
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
             "-c", "write -P 0x55 1088k 64k",
             *(arg for n in range(8) for arg in ("-c", f"write -P {0x61 + n:#x} "
                                                 f"{2 * MIB + n * 512} 512")), str(path))
    return str(path)


def _expect(*ranges: tuple[int, int, set[int]], size: int = SIZE) -> Ranges:
    expected = Ranges(size)
    for lo, hi, values in ranges:
        expected.update(lo, hi, lambda _old, new=frozenset(values): new)
    return expected


WRITTEN = ((64 * KIB, 128 * KIB, {0x11}), (MIB, MIB + 64 * KIB, {0x22}),
           (MIB + 64 * KIB, MIB + 128 * KIB, {0x55}),
           *((2 * MIB + n * 512, 2 * MIB + (n + 1) * 512, {0x61 + n}) for n in range(8)))
SECTORS_AT_2M = WRITTEN[3:]


def _verify(path: str, expected: Ranges, *, has_backing: bool = False,
            only: list[tuple[int, int]] | None = None) -> tuple[list[tuple[str, str]], QemuReader]:
    with QemuReader() as reader:
        problems = reader.verify(path, expected, has_backing=has_backing, only=only)
    return [(p.prop, p.message) for p in problems], reader


def test_what_was_written_reads_back(image: str) -> None:
    found, reader = _verify(image, _expect(*WRITTEN))
    # One read per range, and one for the zeros in the rest of the cluster at 2 MiB:
    # zeros QEMU maps unallocated are not read. No raw conversion.
    assert found == [] and (reader.reads, reader.fallbacks) == (len(WRITTEN) + 1, 0)
    either = _expect((64 * KIB, 128 * KIB, {0, 0x11}), *WRITTEN[1:])
    assert _verify(image, either)[1].reads == len(WRITTEN) + 1, "a value other than 0 first"
    found, backed = _verify(image, _expect(*WRITTEN), has_backing=True)
    assert found == [] and backed.reads > reader.reads  # unallocated zeros read too


def test_old_and_new_side_by_side_need_no_fallback(image: str) -> None:
    either = {0x22, 0x55}
    found, reader = _verify(image, _expect(WRITTEN[0], (MIB, MIB + 128 * KIB, either),
                                           *SECTORS_AT_2M))
    assert found == [] and reader.fallbacks == 0
    # One read each for the 0x11 range, the sectors at 2 MiB and the zeros beside them;
    # the mixed range: its first pass, both values over it, then its halves (the first
    # fits 0x22 at once, the second after a miss).
    assert reader.reads == (1 + len(SECTORS_AT_2M) + 1) + (1 + 2 + 1 + 2)
    found, _ = _verify(image, _expect(WRITTEN[0], (MIB, MIB + 128 * KIB, {0x22, 0x66}),
                                      *SECTORS_AT_2M))
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
    assert found == [] and (reader.processes, reader.fallbacks) == (1, 0)
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


def test_the_first_wrong_byte_inside_a_range_and_at_most_six_values(image: str) -> None:
    found, _ = _verify(image, _expect(WRITTEN[0], (0xF0000, 0x110000, {0, 0x55}),
                                      WRITTEN[2], *SECTORS_AT_2M))
    assert found == [("data", "guest bytes [0xf0000, 0x110000) may hold only {0x00, 0x55}, "
                              "but 65536 byte(s) differ, first at 0x100000 (read {0x22})")]
    found, _ = _verify(image, _expect(*WRITTEN[:3]))
    assert found == [("data", "guest bytes [0x200000, 0x210000) may hold only {0x00}, but "
                              "4096 byte(s) differ, first at 0x200000 (read {0x61, 0x62, 0x63, "
                              "0x64, 0x65, 0x66})")]


def test_a_value_expected_where_qemu_maps_nothing_is_read(image: str) -> None:
    found, _ = _verify(image, _expect(*WRITTEN, (3 * MIB, 3 * MIB + 512, {0x11})))
    assert [message.split(" may")[0] for _, message in found] == [
        "guest bytes [0x300000, 0x300200)"]


def test_a_header_qemu_opens_but_ksy_does_not(image: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(path: str) -> int:
        raise ParseError("no", structure="qcow2 header", offset=0, clause="HDR-3")

    monkeypatch.setattr(oracle, "_virtual_size", refuse)
    found, _ = _verify(image, _expect(*WRITTEN))
    assert [prop for prop, _ in found] == ["open"]
    assert found[0][1].startswith("QEMU opens the state but its header does not parse")


def test_a_raw_conversion_that_fails_is_one_problem_with_the_end_of_its_error(
        qemu_tools: None, tmp_path: pathlib.Path) -> None:
    missing = tmp_path / ("x" * 200) / "gone.qcow2"
    with QemuReader() as reader:
        found = reader._bytewise(str(missing), [(0, 512, frozenset({0}))])
    assert [problem.prop for problem in found] == ["data"]
    prefix = "QEMU cannot read the guest data back: "
    assert found[0].message.startswith(prefix)
    assert len(found[0].message) == len(prefix) + 300


def test_chunks_tile_a_range_without_gap() -> None:
    lo, hi = 512, 512 + 3 * READ_CHUNK + 4096
    chunks = _chunks(lo, hi)
    assert chunks[0][0] == lo and chunks[-1][1] == hi and len(chunks) == 4
    assert all(end == start for (_, end), (start, _) in zip(chunks, chunks[1:], strict=False))
    assert _chunks(lo, lo) == []


def test_a_problem_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Problem("data", "x").message = "y"  # type: ignore[misc]


def test_zoned_problems_name_clause_and_message(tmp_path: pathlib.Path) -> None:
    zone = 65536
    config = ZoneConfig(size=4 * zone, zone_size=zone, zone_capacity=zone)
    model = PersistenceModel(config)
    model.write(zone, 512)
    answer = model.crash()  # zone 1's wp may be its start or start + 512
    path = tmp_path / "zoned.qcow2"
    writer = ReferenceWriter.create(path, config.size, zoned=config, fsync=False)
    assert writer.write(zone, bytes(1024)).ok  # but the image holds start + 1024
    writer.flush()
    writer.close()
    found = zoned_problems(str(path), answer)
    with ReferenceWriter.open(path, fsync=False) as recovered:
        said = answer.violations(recovered.wps_on_disk(), recovered.read)
    assert [p.prop for p in found] == ["PERS-3"] and said[0].startswith("PERS-3: ")
    assert found[0].message == said[0][len("PERS-3: "):]
    garbage = tmp_path / "garbage.qcow2"
    garbage.write_bytes(b"not qcow2" * 100)
    assert [p.prop for p in zoned_problems(str(garbage), answer)] == ["open"]


def _unreadable_first_cluster(image: str, tmp_path: pathlib.Path) -> str:
    """The image with the L2 entry of its first data cluster (the 0x11 at 64 KiB)
    unaligned: QEMU fails that read with an I/O error (L2-2)."""
    data = bytearray(pathlib.Path(image).read_bytes())
    next(c for c in corruptions_for("L2-2") if c.id.endswith("data-offset-unaligned")).apply(
        data, entry=0)
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(bytes(data))
    return str(broken)


def test_a_read_error_is_a_problem_and_the_rest_is_still_read(image: str,
                                                              tmp_path: pathlib.Path) -> None:
    broken = _unreadable_first_cluster(image, tmp_path)
    later_wrong = _expect(WRITTEN[0], (MIB, MIB + 64 * KIB, {0x33}), *WRITTEN[2:])
    found, _ = _verify(broken, later_wrong)
    assert found[0] == ("data", "QEMU read [0x10000, 0x20000) failed: read failed: "
                                "Input/output error")
    assert len(found) == 2 and found[1][0] == "data"  # the 0x33 range: judged after


def test_a_read_error_in_one_process_is_read_again_piece_by_piece(
        image: str, tmp_path: pathlib.Path) -> None:
    broken = _unreadable_first_cluster(image, tmp_path)
    pieces = [(64 * KIB + n * 512, 64 * KIB + (n + 1) * 512, {0x11} | ({0x77} if n % 2 else set()))
              for n in range(PROCESS_THRESHOLD + 8)]
    pieces.append((pieces[-1][1], 128 * KIB, {0x11}))
    found, reader = _verify(broken, _expect(*pieces, *WRITTEN[1:]))
    assert reader.processes == 1
    # Read again one by one, a piece of two values shows its read error; the rest fall to
    # the raw conversion, which fails on the same cluster.
    assert [message for _, message in found[:-1]] == [
        f"QEMU read [{lo:#x}, {hi:#x}) failed: read failed: Input/output error"
        for lo, hi, values in pieces if len(values) == 2]
    assert found[-1][1].startswith("QEMU cannot read the guest data back: ")


def test_a_half_no_value_covers_fails_the_range_whatever_the_other_half(image: str) -> None:
    # [0xf0000, 0x108000) holds zeros then 0x22; [0x108000, 0x120000) 0x22 then 0x55
    found, _ = _verify(image, _expect(WRITTEN[0], (0xF0000, 0x120000, {0x22, 0x55}),
                                      *SECTORS_AT_2M))
    assert found == [("data", "guest bytes [0xf0000, 0x120000) may hold only {0x22, 0x55}, "
                              "but 65536 byte(s) differ, first at 0xf0000 (read {0x00})")]


def test_a_first_half_no_value_covers_is_not_saved_by_the_second(image: str) -> None:
    found, _ = _verify(image, _expect(WRITTEN[0], (0xFFE00, 0x100200, {0x22, 0x55}),
                                      (0x100200, 0x110000, {0x22}), WRITTEN[2],
                                      *SECTORS_AT_2M))
    assert found == [("data", "guest bytes [0xffe00, 0x100200) may hold only {0x22, 0x55}, "
                              "but 512 byte(s) differ, first at 0xffe00 (read {0x00})")]


def test_halves_split_inside_the_range_wherever_it_starts(image: str) -> None:
    found, reader = _verify(image, _expect(WRITTEN[0], (0xF0000, 0x110000, {0, 0x22}),
                                           WRITTEN[2], *SECTORS_AT_2M))
    assert found == [] and reader.fallbacks == 0


def test_many_pieces_from_the_first_byte(image: str) -> None:
    pieces = [(n * 512, (n + 1) * 512, {0, 0x77 + n % 2}) for n in range(PROCESS_THRESHOLD + 8)]
    found, reader = _verify(image, _expect(*pieces, *WRITTEN))
    assert found == [] and (reader.processes, reader.fallbacks) == (1, 0)
