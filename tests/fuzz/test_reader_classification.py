"""How a reader's end is classified (fuzz/reader.py), and fields named from the parser
(fuzz/field_positions.py, fuzz/cause.py). No QEMU: synthetic outputs and readers."""

from __future__ import annotations

import pathlib
import signal
import sys
from io import BytesIO

import pytest
from kaitaistruct import KaitaiStream
from qcow2harness.fuzz import cause
from qcow2harness.fuzz.field_positions import zoned_field_positions, zonedmeta_entry_width
from qcow2harness.fuzz.reader import Ended, classify, crash_site, gdb_frames
from qcow2harness.fuzz.targets import execute, get_target

from qcow2harness.parser.qcow2_zoned import Qcow2Zoned

MB = 1 << 20


def ended(code: int, text: str = "", program: str = "/b/zoned/qemu-img") -> Ended:
    return Ended((program, "info", "x.qcow2"), code, text)


def test_an_abort_on_a_huge_allocation_is_a_crash_not_an_oom() -> None:
    text = "qemu-img: GLib: gmem.c:136: failed to allocate 34359738360 bytes\n"
    for code in (-signal.SIGABRT, -signal.SIGTRAP):
        failure = classify(ended(code, text), None, memory_mb=4096)
        assert failure is not None and failure.kind == "crash"
        assert failure.category == "UnboundedAllocation"
        assert "34359738360" in failure.detail


def test_a_small_failed_allocation_is_a_true_oom() -> None:
    text = "GLib: failed to allocate 4096 bytes\n"
    failure = classify(ended(-signal.SIGABRT, text), None, memory_mb=4096)
    assert failure is not None and (failure.kind, failure.category) == ("oom", "OutOfMemory")
    killed = classify(ended(-signal.SIGKILL), None, memory_mb=4096)
    assert killed is not None and killed.kind == "oom"


def test_the_threshold_is_half_the_memory_bound() -> None:
    text = f"failed to allocate {1024 * MB} bytes"
    assert classify(ended(-6, text), None, 2048).category == "UnboundedAllocation"  # type: ignore[union-attr]
    assert classify(ended(-6, text), None, 4096).category == "OutOfMemory"  # type: ignore[union-attr]


ASAN_TEXT = """\
==1==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602 at pc 0x7f bp 0x7f sp 0x7f
WRITE of size 64 at 0x602 thread T2
    #0 0x7f01 in __interceptor_pread64 ../../../../src/libsanitizer/x.inc:1078
    #1 0x5501 in handle_aiocb_rw_linear ../src/block/file-posix.c:1841
    #2 0x5502 in worker_thread ../src/util/thread-pool.c:111

allocated by thread T0 here:
    #0 0x7f02 in __interceptor_malloc ../../../../src/libsanitizer/asan/x.cpp:69
    #1 0x7f03 in g_malloc (/lib/x86_64-linux-gnu/libglib-2.0.so.0+0x5a658)
    #2 0x5503 in qcow2_refresh_zonedmeta ../src/block/qcow2.c:473
    #3 0x5504 in qcow2_do_open ../src/block/qcow2.c:2134

SUMMARY: AddressSanitizer: heap-buffer-overflow x.inc:1078 in __interceptor_pread64
"""


def test_asan_heap_error_site_names_access_and_buffer() -> None:
    failure = classify(ended(86, ASAN_TEXT), "zoned-asan", memory_mb=4096)
    assert failure is not None and failure.category == "ASan heap-buffer-overflow"
    assert failure.site == ("block/file-posix.c:1841 in handle_aiocb_rw_linear (buffer from "
                            "block/qcow2.c:473 in qcow2_refresh_zonedmeta)")
    assert "WRITE of size 64" in failure.detail
    # the ASan exit code alone (no report) is a finding too, with the ASan build only
    assert classify(ended(86), "zoned-asan", 4096) is not None
    assert classify(ended(86), None, 4096) is None


def test_assertion_site_skips_the_reporting_helpers() -> None:
    text = ("qemu-img: ../src/util/error.c:62: error_setv: Assertion `*errp == NULL' failed.\n"
            "==1==ERROR: AddressSanitizer: ABRT on unknown address 0x1\n"
            "    #0 0x7f in __pthread_kill_implementation nptl/pthread_kill.c:44\n"
            "    #1 0x7f in __GI_abort stdlib/abort.c:79\n"
            "    #2 0x55 in error_setv ../src/util/error.c:62\n"
            "    #3 0x55 in error_setg_internal ../src/util/error.c:100\n"
            "    #4 0x55 in qcow2_check_zone_options ../src/block/qcow2.c:540\n")
    failure = classify(ended(86, text), "zoned-asan", 4096)
    assert failure is not None and failure.category == "AssertionFailure"
    assert failure.site == "block/qcow2.c:540 in qcow2_check_zone_options"


def test_gdb_backtrace_gives_the_site_of_a_plain_signal() -> None:
    trace = ("#0  0x0000555 in qcow2_read_extensions (bs=0x1, errp=0x2) at "
             "../src/block/qcow2.c:836\n#1  0x0000556 in qcow2_do_open (bs=0x1) at "
             "../src/block/qcow2.c:2134\n")
    failure = classify(ended(-signal.SIGFPE), "zoned", 4096, stack=lambda: gdb_frames(trace))
    assert failure is not None and failure.category == "SIGFPE"
    assert failure.site == "block/qcow2.c:836 in qcow2_read_extensions"
    assert crash_site([]) == ""
    # without a stack: the program and the signal
    plain = classify(ended(-signal.SIGSEGV), None, 4096)
    assert plain is not None and plain.site == "qemu-img: SIGSEGV"


def test_clean_exits_and_refusals_are_no_finding() -> None:
    assert classify(ended(0, "image: x"), "zoned-asan", 4096) is None
    assert classify(ended(1, "Could not open: Unsupported qcow2 feature(s)"), None, 4096) is None


def test_external_target_records_category_and_site(seed_bytes: list[bytes]) -> None:
    script = "import os, signal; os.kill(os.getpid(), signal.SIGFPE)"
    target = get_target("external", reader=f"{sys.executable} -c \"{script}\" {{}}")
    finding = execute(target, seed_bytes[0])
    assert finding is not None and finding.kind == "crash"
    assert finding.summary.startswith("SIGFPE:") and finding.where.endswith("SIGFPE")
    assert finding.signature == finding.site_signature  # no field worked out here


def test_zoned_field_positions_agree_with_the_parse() -> None:
    positions = zoned_field_positions()
    body = bytearray(max(off + width for off, width in positions.values()))
    for index, (name, (off, width)) in enumerate(positions.items()):
        if name not in ("zoned_model", "reserved"):
            body[off:off + width] = (index + 1).to_bytes(width, "big")
    parsed = Qcow2Zoned(KaitaiStream(BytesIO(bytes(body))))
    for index, name in enumerate(positions):
        if name not in ("zoned_model", "reserved"):
            assert getattr(parsed, name) == index + 1, name
    assert zonedmeta_entry_width() == 8 and "num_zones" in positions


@pytest.fixture()
def zoned_seed(seed_files: list) -> bytes:
    path = next(p for p in seed_files if p.name == "reference-zoned-base.qcow2")
    return bytes(path.read_bytes())


def _set(data: bytes, unit_name: str, value: int) -> bytes:
    unit = next(u for u in cause.named_units(data) if u.name == unit_name)
    out = bytearray(data)
    out[unit.offset:unit.offset + unit.width] = value.to_bytes(unit.width, "big")
    return bytes(out)


def test_narrowing_names_the_field_that_matters(zoned_seed: bytes) -> None:
    mutant = _set(_set(_set(zoned_seed, "zoned.num_zones", 0xFFFFFFFF), "zonedmeta[3]", 7),
                  "header.num_snapshots", 0)  # unchanged: not listed
    mutant = _set(mutant, "header.compatible_features", 1) + b"tail"
    changed = cause.changed_units(zoned_seed, mutant)
    assert [u.name for u in changed] == ["zoned.num_zones", "zonedmeta[3]",
                                         "header.compatible_features", "file.length"]
    zones = next(u for u in changed if u.name == "zoned.num_zones")

    def reproduces(candidate: bytes) -> bool:  # "crashes" when num_zones is huge
        return candidate[zones.offset:zones.offset + zones.width] == b"\xff" * 4

    narrowed = cause.narrow(zoned_seed, mutant, changed, reproduces)
    assert narrowed is not None and [u.name for u in narrowed] == ["zoned.num_zones"]
    assert cause.apply_units(zoned_seed, mutant, narrowed) == _set(
        zoned_seed, "zoned.num_zones", 0xFFFFFFFF)
    assert cause.nearest_seed(mutant, [("other", b"QFI\xfb"), ("it", zoned_seed)])[0] == "it"
    assert "ZONE-9" in cause.clauses_broken(zoned_seed, cause.apply_units(
        zoned_seed, mutant, narrowed), narrowed)


def test_two_causes_need_both(zoned_seed: bytes) -> None:
    mutant = _set(_set(zoned_seed, "zoned.max_open_zones", 9), "zoned.max_active_zones", 1)
    changed = cause.changed_units(zoned_seed, mutant)

    def reproduces(candidate: bytes) -> bool:  # both fields must be the mutant's
        return all(candidate[u.offset:u.offset + u.width] == mutant[u.offset:u.offset + u.width]
                   for u in changed)

    narrowed = cause.narrow(zoned_seed, mutant, changed, reproduces)
    assert narrowed is not None and {u.name for u in narrowed} == {
        "zoned.max_open_zones", "zoned.max_active_zones"}
    assert cause.narrow(zoned_seed, mutant, changed, lambda _: False) is None


def test_a_report_cut_short_takes_its_stack_from_gdb() -> None:
    text = ("==1==ERROR: AddressSanitizer: SEGV on unknown address 0x6570\n"
            "AddressSanitizer: nested bug in the same thread, aborting.\n")
    trace = "#0  0x55 in bdrv_wakeup (bs=0x1) at ../src/block/io.c:774\n"
    failure = classify(ended(86, text), "zoned-asan", 4096, stack=lambda: gdb_frames(trace))
    assert failure is not None and failure.category == "SIGSEGV"
    assert failure.site == "block/io.c:774 in bdrv_wakeup"
    smashed = "#0  0x0000000000000000 in ?? ()\n#1  0x0000000000000000 in ?? ()\n"
    wild = classify(ended(-signal.SIGSEGV), "zoned", 4096, stack=lambda: gdb_frames(smashed))
    assert wild is not None and wild.site == "qemu-img: SIGSEGV"


def test_mutant_names_a_zoned_extension_the_seed_does_not_have(zoned_seed: bytes) -> None:
    from qcow2harness.image import ExtensionType, Image

    plain = Image.from_bytes(zoned_seed)
    zoned_ext = plain.extension(ExtensionType.zoned)
    assert zoned_ext is not None
    # the same image with the zoned record's magic blanked is the "seed"; the input has it
    record = next(u for u in cause.named_units(zoned_seed)
                  if u.name == f"extension[{zoned_ext.index}:zoned].magic")
    seed = bytearray(zoned_seed)
    seed[record.offset:record.offset + record.width] = (0x7E57AB1E).to_bytes(4, "big")
    mutant = _set(zoned_seed, "zoned.zone_size", 0)
    names = [u.name for u in cause.changed_units(bytes(seed), mutant)]
    assert names[0] == "zoned.zone_size" and f"extension[{zoned_ext.index}:zoned].magic" in names


def test_dedup_key_is_the_zoned_field_without_enablers_or_indices() -> None:
    from qcow2harness.fuzz.targets import Finding

    made_zoned = ("zoned.num_zones,extension[0:zoned].magic,extension[0:zoned].len_body,"
                  "header.len_header")
    assert cause.field_key(made_zoned) == cause.field_key("zoned.num_zones")
    assert cause.field_key("zonedmeta[3]") == cause.field_key("zonedmeta[5]") == "zonedmeta[*]"
    assert cause.field_key("extension[1:zoned].len_body,header.ofs_refcount_table") == \
        "extension[zoned].len_body"
    one = Finding("external", "crash", "SIGFPE: x", "block/qcow2.c:836 in f", fields=made_zoned)
    two = Finding("external", "crash", "SIGFPE: y", "block/qcow2.c:836 in f",
                  fields="zoned.num_zones")
    other = Finding("external", "crash", "SIGFPE: y", "block/qcow2.c:836 in f",
                    fields="zoned.zone_size")
    assert one.signature == two.signature != other.signature


def test_a_zoned_input_is_compared_with_zoned_seeds(zoned_seed: bytes) -> None:
    from qcow2harness.image import ExtensionType, Image

    mutant = _set(zoned_seed, "zoned.num_zones", 0xFFFFFFFF)
    # "plain": the mutant with its zoned record's magic blanked, 4 bytes away from it;
    # "zoned": a zoned seed 12 bytes away. The zoned one is the seed to compare with.
    index = Image.from_bytes(zoned_seed).extension(ExtensionType.zoned).index  # type: ignore[union-attr]
    plain = _set(mutant, f"extension[{index}:zoned].magic", 0x7E57AB1E)
    assert not cause.has_zoned_extension(plain)
    zoned = _set(zoned_seed, "zonedmeta[0]", 0x0102030405060708)
    chosen = cause.nearest_seed(mutant, [("plain", plain), ("zoned", zoned)])
    assert chosen is not None and chosen[0] == "zoned"
    unzoned = plain[:-1] + b"x"  # an input without a zoned extension: nearest in bytes
    chosen = cause.nearest_seed(unzoned, [("plain", plain), ("zoned", zoned)])
    assert chosen is not None and chosen[0] == "plain"


def test_the_seeds_zoned_names_win_over_a_moved_mutant_layout(zoned_seed: bytes) -> None:
    units = {u.name: u for u in cause.named_units(zoned_seed)}
    header_end = units["header.len_header"]
    length = int.from_bytes(zoned_seed[header_end.offset:header_end.offset + 4], "big")
    # The mutant's header is 8 bytes longer: its extensions (the zoned one too) sit 8
    # bytes later, so its own parse names the seed's zone_size bytes otherwise.
    mutant = bytearray(zoned_seed[:length] + bytes(8) + zoned_seed[length:])
    mutant[header_end.offset:header_end.offset + 4] = (length + 8).to_bytes(4, "big")
    moved = {u.name: u for u in cause.named_units(bytes(mutant))}
    assert moved["zoned.zone_size"].offset == units["zoned.zone_size"].offset + 8
    size = units["zoned.zone_size"]
    named = [u for u in cause.changed_units(zoned_seed, bytes(mutant))
             if u.offset <= size.offset < u.offset + u.width]
    assert [u.name for u in named] == ["zoned.zone_size"]


def test_a_verdict_leaves_the_reproducer_as_it_was(tmp_path: pathlib.Path) -> None:
    from qcow2harness.fuzz.reader import verdict

    path = tmp_path / "kept.qcow2"
    path.write_bytes(b"before")
    writer = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'wb').write(b'after')\" {{}}"
    result = verdict([writer], str(path), None, memory_mb=1024, seconds=10)
    assert not result.failed and str(path) in result.command
    assert path.read_bytes() == b"before"
