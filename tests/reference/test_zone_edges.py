"""Every zone rule of reference/zones.py at its exact edges: the largest value a clause
accepts and the smallest it refuses, each message's figures, and the model's ops at
the first and last byte they may touch. Written from the mutation campaign's survivors
(issue #20): a bound off by one, or a message naming the wrong number, must fail here."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from qcow2harness.reference.trace import Session
from qcow2harness.reference.zones import (
    CONVENTIONAL_FLAG,
    MAX_NR_ZONES,
    MODEL_MAX_ZONES,
    ZONE_BATCH,
    Refusal,
    VictimPolicy,
    ZoneConfig,
    ZoneModel,
    ZoneState,
    ZoneType,
    config_problems,
    config_should_problems,
    dead_data_starts,
    entry_problems,
    header_notes,
    header_problems,
    readable_ranges,
)
from qcow2harness.spec.registry import load

from qcow2harness.errors import ModelError

KIB = 1024
ZONE = 64 * KIB
S = ZoneState
R = Refusal


def _spec_number(clause: str, pattern: str) -> int:
    """A figure the spec's own words give for `clause` (text and note), commas dropped."""
    found = load()[clause]
    text = f"{found.rule} {found.notes}"
    match = re.search(pattern, text)
    assert match, f"{clause} no longer says {pattern!r}: {text}"
    return int(match.group(1).replace(",", ""))


# ----- the figures the spec gives -----

def test_the_zone_count_bound_is_the_one_zone_10_states() -> None:
    stated = _spec_number("ZONE-10", r"at most (\d+)")
    assert MAX_NR_ZONES == stated
    assert not config_problems(stated * 512, 512, 512, 0, 0, 0, 0)
    assert [c for c, _, _ in config_problems((stated + 1) * 512, 512, 512, 0, 0, 0, 0)] == [
        "ZONE-10"]


def test_the_batch_and_model_bounds_are_the_ones_the_spec_note_gives() -> None:
    assert ZONE_BATCH == _spec_number("ZONE-10", r"batches of ([\d,]+) entries")
    assert MODEL_MAX_ZONES == _spec_number("ZONE-10", r"takes at most ([\d,]+) zones")


@pytest.mark.parametrize(("zones", "accepted"), [(MODEL_MAX_ZONES, True),
                                                 (MODEL_MAX_ZONES + 1, False)])
def test_the_model_service_takes_exactly_its_bound(zones: int, accepted: bool) -> None:
    created = Session().answer(json.dumps({
        "op": "create", "size": zones * 512, "zone_size": 512, "zone_capacity": 512,
        "conventional_zones": 0, "max_open_zones": 0, "max_active_zones": 0,
        "max_append_bytes": 0}))
    assert created["ok"] is accepted, created
    if not accepted:
        assert f"more than the {MODEL_MAX_ZONES}" in created["message"]


# ----- the geometry: each bound from both sides -----

def _clauses(size: int = 8 * ZONE, zone_size: int = ZONE, capacity: int = ZONE,
             conventional: int = 1, max_open: int = 0, max_active: int = 0,
             max_append: int = 0) -> list[str]:
    return [clause for clause, _, _ in config_problems(size, zone_size, capacity,
                                                       conventional, max_open, max_active,
                                                       max_append)]


def test_zone_size_from_512_and_a_power_of_two() -> None:  # ZONE-6
    assert _clauses(size=8 * 512, zone_size=512, capacity=512) == []
    for zone_size in (0, 256, 768, ZONE + 512):
        assert _clauses(zone_size=zone_size, capacity=512) == ["ZONE-6"]


def test_capacity_in_512_up_to_the_zone_size() -> None:  # ZONE-7
    assert _clauses(capacity=ZONE) == _clauses(capacity=512) == []
    for capacity in (0, ZONE + 512, 1000, 513):
        assert _clauses(capacity=capacity) == ["ZONE-7"]


def test_conventional_zones_below_the_zone_count() -> None:  # ZONE-11
    assert _clauses(conventional=7) == []
    assert _clauses(conventional=8) == _clauses(conventional=9) == ["ZONE-11"]
    assert _clauses(conventional=8, max_open=1) == ["ZONE-11", "ZONE-12"]


def test_open_limit_up_to_the_sequential_zones() -> None:  # ZONE-12, ZONE-13
    assert _clauses(max_open=7) == _clauses(max_open=7, max_active=7) == []
    assert _clauses(max_open=8) == ["ZONE-12"]
    assert _clauses(max_open=3, max_active=2) == ["ZONE-13"]
    assert _clauses(max_open=3, max_active=0) == []


def test_append_limit_below_the_capacity() -> None:  # ZONE-16
    assert _clauses(capacity=4096, max_append=4096 - 512) == []
    assert _clauses(capacity=4096, max_append=4096) == ["ZONE-16"]
    assert _clauses(capacity=4096, max_append=8192) == ["ZONE-16"]
    assert _clauses(max_append=256) == ["ZONE-16"]
    assert _clauses(capacity=1, max_append=512) == ["ZONE-7", "ZONE-16"]  # each rule alone


def test_should_rules_at_their_edges() -> None:  # ZONE-14, ZONE-17
    def should(max_active: int = 0, capacity: int = ZONE, max_append: int = 0) -> list[str]:
        return [c for c, _, _ in config_should_problems(8 * ZONE - 512, ZONE, capacity, 1,
                                                       max_active, max_append)]
    assert should(max_active=7) == []
    assert should(max_active=8) == ["ZONE-14"]
    assert should(capacity=4096, max_append=4096 - 1024) == []
    assert should(capacity=4096, max_append=4096 - 512) == ["ZONE-17"]
    assert should(capacity=512, max_append=0) == ["ZONE-17"]
    assert should(capacity=4096, max_append=4096) == []  # ZONE-16's to judge, not ZONE-17's
    assert should(capacity=4096, max_append=8192) == []
    assert should(capacity=1024, max_append=1000) == []
    assert should(capacity=4096 + 256, max_append=4096) == ["ZONE-17"]


def test_size_a_positive_multiple_of_512() -> None:
    assert ZoneConfig(size=3 * 512, zone_size=1024, zone_capacity=1024).nr_zones == 2
    for size in (0, 511, 1000, 1536 + 1):
        with pytest.raises(ModelError, match=f"got {size}$"):
            ZoneConfig(size=size, zone_size=1024, zone_capacity=1024)
    for bad in (True, -512, 1.5):
        with pytest.raises(ModelError, match="non-negative integer"):
            ZoneConfig(size=bad, zone_size=1024, zone_capacity=1024)  # type: ignore[arg-type]


def test_a_config_is_frozen_and_defaults_to_no_conventional_zones_and_no_limits() -> None:
    config = ZoneConfig(size=4 * ZONE, zone_size=ZONE, zone_capacity=ZONE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.size = 8 * ZONE  # type: ignore[misc]
    model = ZoneModel(config)
    assert model.zone(0).type is ZoneType.SEQUENTIAL
    for zone in range(4):
        assert model.open(zone).ok
    assert model.open_zones == model.active_zones == 4


def test_messages_name_the_figures() -> None:
    def message(clause: str, problems: list[tuple[str, str, str]]) -> str:
        return next(text for found, _, text in problems if found == clause)
    assert message("ZONE-7", config_problems(8 * ZONE, ZONE, 1000, 1, 0, 0, 0)) == (
        f"zone_capacity must be a multiple of 512 in (0, zone_size={ZONE}], got 1000")
    assert message("ZONE-10", config_problems((MAX_NR_ZONES + 2) * 512, 512, 512, 0, 0, 0,
                                              0)).startswith(f"{MAX_NR_ZONES + 2} zones ")
    assert "(8) must be less than nr_zones (8)" in message(
        "ZONE-11", config_problems(8 * ZONE, ZONE, ZONE, 8, 0, 0, 0))
    assert "(8) exceeds the number of sequential zones (7)" in message(
        "ZONE-12", config_problems(8 * ZONE, ZONE, ZONE, 1, 8, 0, 0))
    assert message("ZONE-14", config_should_problems(8 * ZONE, ZONE, ZONE, 1, 9, 0)) == (
        "max_active_zones (9) exceeds the 7 sequential zones; store 0 for no limit")
    assert message("ZONE-17", config_should_problems(8 * ZONE, ZONE, 4096, 1, 0, 3584)) == (
        "max_append_bytes + 512 (4096) is not below zone_capacity (4096)")


# ----- the header extension -----

def _fields(**change: int | bytes) -> dict[str, int | bytes]:
    fields: dict[str, int | bytes] = {
        "zoned_model": 1, "reserved": b"\0\0\0", "zone_size": ZONE, "zone_capacity": ZONE,
        "conventional_zones": 1, "max_open_zones": 0, "max_active_zones": 0,
        "max_append_bytes": 0, "nr_zones": 8, "zonedmeta_size": 64,
        "zonedmeta_offset": 0x30000, "virtual_size": 8 * ZONE, "cluster_size": 0x10000,
        "file_size": 0x30000 + 64}
    return {**fields, **change}


def _header(**change: int | bytes) -> list[str]:
    return [clause for clause, _, _ in header_problems(_fields(**change))]


def test_a_sound_extension_has_no_problem() -> None:
    assert header_problems(_fields()) == []


@pytest.mark.parametrize(("change", "clauses"), [
    ({"zoned_model": 0}, ["ZONE-4"]),
    ({"zoned_model": 2}, ["ZONE-4"]),
    ({"reserved": b"\0\0\1"}, ["ZONE-5"]),
    ({"nr_zones": 7, "zonedmeta_size": 56}, ["ZONE-9"]),
    ({"nr_zones": 9, "zonedmeta_size": 72, "file_size": 0x30000 + 72}, ["ZONE-9"]),
    ({"zonedmeta_size": 56}, ["ZONE-18"]),
    ({"zonedmeta_size": 72}, ["ZONE-18"]),
    ({"zonedmeta_offset": 0}, ["ZONE-19"]),
    ({"zonedmeta_offset": 0x30200}, ["ZONE-19"]),
    ({"file_size": 0x30000 + 63}, ["ZONE-20"]),
    ({"file_size": 0x30000 + 64 + 0x10000}, []),
    ({"zone_size": 3 * 512, "zone_capacity": 512}, ["ZONE-6"]),  # no ZONE-9 without a size
    ({"zone_capacity": 1000, "nr_zones": 9, "zonedmeta_size": 72, "file_size": 0x40000},
     ["ZONE-7", "ZONE-9"]),
    ({"conventional_zones": 8, "nr_zones": 9, "zonedmeta_size": 72, "file_size": 0x40000},
     ["ZONE-11", "ZONE-9"]),
    ({"conventional_zones": 8, "max_active_zones": 1}, ["ZONE-11", "ZONE-14"]),
    ({"conventional_zones": 9}, ["ZONE-11"]),
    ({"nr_zones": 8192, "zonedmeta_size": 0x10000, "virtual_size": 8192 * ZONE,
      "file_size": 0x40000 - 8}, ["ZONE-20"]),
    ({"nr_zones": MAX_NR_ZONES, "zonedmeta_size": 8 * MAX_NR_ZONES,
      "file_size": 0x30000 + 8 * MAX_NR_ZONES}, ["ZONE-9"]),
    ({"nr_zones": MAX_NR_ZONES + 1, "zonedmeta_size": 8 * (MAX_NR_ZONES + 1),
      "file_size": 0x30000 + 8 * (MAX_NR_ZONES + 1), "zone_capacity": 1000},
     ["ZONE-7", "ZONE-10", "ZONE-9"]),
    ({"nr_zones": MAX_NR_ZONES + 1, "zonedmeta_size": 8 * (MAX_NR_ZONES + 1),
      "file_size": 0x30000 + 8 * (MAX_NR_ZONES + 1)}, ["ZONE-10", "ZONE-9"]),
    ({"virtual_size": (MAX_NR_ZONES + 1) * 1024, "zone_size": 1024, "zone_capacity": 1024,
      "nr_zones": MAX_NR_ZONES + 1, "zonedmeta_size": 8 * (MAX_NR_ZONES + 1),
      "file_size": 0x30000 + 8 * (MAX_NR_ZONES + 1)}, ["ZONE-10"]),
])
def test_each_header_clause_at_its_edge(change: dict[str, int | bytes],
                                        clauses: list[str]) -> None:
    assert _header(**change) == clauses


def test_header_messages_name_the_figures() -> None:
    found = dict((c, m) for c, _, m in header_problems(_fields(
        zonedmeta_size=72, zoned_model=2, file_size=0x30000 + 40)))
    assert found["ZONE-4"].startswith("zoned byte is 2;")
    assert found["ZONE-18"] == "zonedmeta_size is 72, not 8 * nr_zones = 64"
    assert found["ZONE-20"] == ("the write-pointer table at 0x30000 (64 bytes) runs past "
                                "the end of the file")
    assert dict((c, m) for c, _, m in header_problems(_fields(nr_zones=9, zonedmeta_size=72,
                                                               file_size=0x40000)))[
        "ZONE-9"] == f"nr_zones is 9, but the virtual size needs 8 zones of {ZONE} bytes"


def test_a_limit_equal_to_the_sequential_zones_is_noted() -> None:  # ZONE-15, ZONE-8
    assert header_notes(_fields()) == []
    notes = header_notes(_fields(max_open_zones=7, max_active_zones=6))
    assert [(c, f) for c, f, _ in notes] == [("ZONE-15", "max_open_zones")]
    assert "equals the 7 sequential zones" in notes[0][2]
    assert [c for c, _, _ in header_notes(_fields(zone_capacity=ZONE - 512))] == ["ZONE-8"]
    one = _fields(nr_zones=2, virtual_size=2 * ZONE, zonedmeta_size=16, max_open_zones=1)
    assert [c for c, _, _ in header_notes(one)] == ["ZONE-15"]
    assert header_notes(_fields(max_active_zones=9)) == []  # past the count: ZONE-14's


# ----- one table entry -----

BASE = {"zone_size": ZONE, "zone_capacity": ZONE // 2, "conventional_zones": 1,
        "virtual_size": 3 * ZONE + 4 * KIB}


def _entry(index: int, entry: int) -> list[str]:
    return [clause for clause, _ in entry_problems(BASE, index, entry)]


def test_entry_bits_reserved_flag_and_write_pointer() -> None:  # WP-1, WP-3..WP-7
    assert _entry(0, CONVENTIONAL_FLAG) == []
    assert _entry(1, ZONE) == _entry(1, 2 * ZONE) == []  # empty; full to the zone end
    assert _entry(3, 4 * ZONE) == []  # the runt last zone's wp may reach its zone_size
    assert _entry(1, ZONE | 1 << 60) == ["WP-3"]
    assert _entry(1, ZONE | 1 << 63) == ["WP-3"]
    assert _entry(1, ZONE | CONVENTIONAL_FLAG) == ["WP-4"]
    assert _entry(0, 0) == ["WP-4"]
    assert _entry(0, CONVENTIONAL_FLAG | 512) == ["WP-5"]
    assert _entry(1, ZONE - 512) == _entry(1, 2 * ZONE + 512) == ["WP-6"]
    assert _entry(1, ZONE | 1 << 58) == ["WP-6"]
    assert _entry(1, ZONE + 1) == _entry(1, ZONE + 7) == ["WP-7"]


def test_entry_messages_name_the_figures() -> None:
    def message(index: int, entry: int) -> str:
        return entry_problems(BASE, index, entry)[0][1]
    assert message(1, ZONE | CONVENTIONAL_FLAG) == (
        "zone 1: conventional bit set, but the zone is sequential")
    assert message(0, 0) == "zone 0: conventional bit clear, but the zone is conventional"
    assert message(2, 2 * ZONE | CONVENTIONAL_FLAG) == (
        "zone 2: conventional bit set, but the zone is sequential")
    assert message(1, 3 * ZONE) == (
        f"zone 1: write pointer {3 * ZONE:#x} is outside the zone [{ZONE:#x}, {2 * ZONE:#x}]")


def test_dead_data_starts_at_the_wp_capped_at_the_capacity() -> None:  # WP-10, ZSM-16
    entries = [CONVENTIONAL_FLAG, ZONE + 4096, 2 * ZONE + ZONE, 3 * ZONE | 1 << 60]
    assert dead_data_starts(BASE, entries) == [ZONE, ZONE + 4096, 2 * ZONE + ZONE // 2,
                                               4 * ZONE]
    all_sequential = {**BASE, "conventional_zones": 0}
    assert dead_data_starts(all_sequential, [CONVENTIONAL_FLAG - 1]) == [ZONE]  # WP-6: none


def test_readable_ranges_are_conventional_zones_and_below_each_wp() -> None:  # ZSM-16
    model = ZoneModel(ZoneConfig(size=5 * ZONE, zone_size=ZONE, zone_capacity=ZONE,
                                 conventional_zones=2))
    model.restore([0, ZONE, int(str(2 * ZONE)), int(str(3 * ZONE)), int(str(4 * ZONE))])
    assert model.write(2 * ZONE, 4096).ok
    assert model.finish(4).ok
    assert list(readable_ranges(model.report())) == [
        (0, ZONE), (ZONE, 2 * ZONE), (2 * ZONE, 2 * ZONE + 4096), (4 * ZONE, 5 * ZONE)]


# ----- the model's ops at their first and last byte -----

def _model(zones: int = 7, conventional: int = 2, max_open: int = 0,
           policy: VictimPolicy = VictimPolicy.LRU) -> ZoneModel:
    return ZoneModel(ZoneConfig(size=zones * ZONE, zone_size=ZONE, zone_capacity=ZONE,
                                conventional_zones=conventional, max_open_zones=max_open,
                                max_append_bytes=4096), policy)


def test_zone_of_every_byte_and_none_outside() -> None:
    model = _model()
    assert [model.zone_of(o) for o in (0, ZONE - 1, ZONE, 7 * ZONE - 1)] == [0, 0, 1, 6]
    for outside in (-1, 7 * ZONE, 8 * ZONE):
        with pytest.raises(ModelError, match="outside the device"):
            model.zone_of(outside)


def test_writes_from_the_first_to_the_last_byte() -> None:
    model = _model()
    assert model.write(0, 512).ok
    assert model.write(ZONE, ZONE).ok, "a conventional write may end at the last one's end"
    assert model.write(ZONE, ZONE + 512).error is R.EXCEEDS_CAPACITY
    assert model.write(6 * ZONE, ZONE).ok and model.zone(6).state is S.FULL
    assert model.write(6 * ZONE, ZONE + 512).error is R.OUT_OF_RANGE
    assert model.write(3 * ZONE, 1).error is R.UNALIGNED
    assert model.append(3, 1).error is R.UNALIGNED
    assert model.write(-1, 512).error is R.OUT_OF_RANGE
    assert model.write(3 * ZONE, 4096).ok
    assert model.write(3 * ZONE, 512).error is R.NOT_AT_WRITE_POINTER  # below the wp
    for length in (0, -512):
        with pytest.raises(ModelError, match="must be positive"):
            model.write(3 * ZONE + 4096, length)
        with pytest.raises(ModelError, match="must be positive"):
            model.append(3, length)


def test_a_fault_in_a_conventional_zone_blocks_only_writes_reaching_it() -> None:  # ZSM-1
    model = ZoneModel(ZoneConfig(size=6 * ZONE, zone_size=ZONE, zone_capacity=ZONE,
                                 conventional_zones=3))
    model.inject_fault(1, "offline")
    assert model.write(0, ZONE).ok
    assert model.write(ZONE - 512, 512).ok
    assert model.write(ZONE - 512, 1024).error is R.INVALID_TRANSITION
    assert model.write(ZONE - 512, 513).error is R.INVALID_TRANSITION  # its first byte
    assert model.write(2 * ZONE - 512, 1024).error is R.INVALID_TRANSITION
    assert model.write(2 * ZONE, ZONE).ok
    with pytest.raises(ModelError, match="unknown zone state"):
        model.inject_fault(2, "smoking")
    with pytest.raises(ModelError, match="not full"):
        model.inject_fault(2, "full")


def test_zone_indexes_are_integers_not_booleans() -> None:
    with pytest.raises(ModelError, match="must be an integer"):
        _model().open(True)  # type: ignore[arg-type]


def test_round_robin_cursor_moves_past_its_victim() -> None:  # ZSM-6
    model = _model(zones=7, max_open=2, policy=VictimPolicy.ROUND_ROBIN)
    for zone in (3, 4):
        assert model.write(zone * ZONE, 512).ok
    assert model.write(5 * ZONE, 512).ok  # cursor at 2: victim 3, cursor now 4
    assert model.close(4).ok  # a slot frees without a victim
    assert model.write(3 * ZONE + 512, 512).ok  # zone 3 open again, cursor still 4
    assert model.write(6 * ZONE, 512).ok  # from 4: victim 5, not 3; cursor 6
    assert model.write(2 * ZONE, 512).ok  # from 6: victim 6 itself; cursor wraps to 0
    assert model.write(4 * ZONE + 512, 512).ok  # from 0: victim 2 (before 3)
    assert [model.zone(z).state for z in range(2, 7)] == [
        S.CLOSED, S.IMPLICIT_OPEN, S.IMPLICIT_OPEN, S.CLOSED, S.CLOSED]


def test_restore_counts_wps_and_skips_conventional_and_faulty_zones() -> None:  # WP-8
    model = _model(zones=4, conventional=1)
    model.inject_fault(3, "read_only")
    for wrong in ([0, ZONE, 2 * ZONE], [0, ZONE, 2 * ZONE, 3 * ZONE, 4 * ZONE]):
        with pytest.raises(ModelError, match=f"expected 4 write pointers, got {len(wrong)}"):
            model.restore(wrong)
    model.restore([12345, ZONE, 3 * ZONE, 99])
    assert [model.zone(z).state for z in range(4)] == [S.NOT_WRITE_POINTER, S.EMPTY, S.FULL,
                                                       S.READ_ONLY]
    with pytest.raises(ModelError, match=f"wp {3 * ZONE:#x} outside \\[{ZONE:#x}, "
                       f"{2 * ZONE:#x}\\]"):
        model.restore([0, 3 * ZONE, 2 * ZONE, 0])


def test_equal_write_pointers_are_compared_by_value() -> None:
    """A wp restored as another int object equal to the start is still at the start."""
    model = _model(zones=4, conventional=1)
    model.restore([0, int(str(ZONE)), int(str(2 * ZONE)), int(str(3 * ZONE))])
    assert model.open(1).ok and model.close(1).ok
    assert model.zone(1).state is S.EMPTY  # closed at its start: EMPTY (CloseAtStart.EMPTY)
    assert model.write(2 * ZONE, 512).ok
    model.reopen()
    assert model.zone(2).state is S.CLOSED
    model.restore([0, int(str(ZONE)), int(str(2 * ZONE)), 3 * ZONE])
    assert model.open(2).ok
    model.reopen()
    assert model.zone(2).state is S.EMPTY


def test_large_counts_compare_by_value() -> None:
    """Counts past 256 are distinct int objects when equal: every rule compares values."""
    zones = 1000
    fields = _fields(nr_zones=zones, zonedmeta_size=8 * zones, virtual_size=zones * ZONE,
                     file_size=0x30000 + 8 * zones, max_open_zones=zones - 1)
    assert header_problems(fields) == []
    assert [c for c, _, _ in header_notes(fields)] == ["ZONE-15"]
    model = _model(zones=300, conventional=1)
    model.restore([int(str(z * ZONE)) for z in range(300)])
    assert model.zone(299).state is S.EMPTY
    limited = _model(zones=300, conventional=1, max_open=280)
    for zone in range(1, 282):
        assert limited.write(zone * ZONE, 512).ok
    assert limited.open_zones == 280 and limited.zone(1).state is S.CLOSED


def test_finish_refuses_an_empty_zone_even_past_the_active_limit() -> None:  # ZSM-5
    """A writer that skips the active limit on writes leaves more zones active than the
    device allows; finishing an EMPTY zone must still be refused, not only at the limit."""
    from qcow2harness.reference.writer import Mutant, _WriterZones

    config = ZoneConfig(size=6 * ZONE, zone_size=ZONE, zone_capacity=ZONE, max_active_zones=2)
    zones = _WriterZones(config, "lru", "empty", frozenset({Mutant.WRITE_SKIPS_ACTIVE_LIMIT}))
    for zone in range(3):
        assert zones.write(zone * ZONE, 512).ok
    assert zones.active_zones == 3
    assert zones.finish(4).error is R.TOO_MANY_ACTIVE
