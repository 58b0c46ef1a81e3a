"""Edges of the persistence model that the mutation campaign (qcow2harness/mutation.py)
found untested: each test here kills mutants of reference/persistence.py that survived
tests/reference/test_persistence.py and the crash tests."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qcow2harness.reference.persistence import (
    SECTOR,
    UNKNOWN,
    Extent,
    ExtentMap,
    PersistenceModel,
    Uncertain,
    WpWindow,
    _reads_as,
    pattern_byte,
    stage_order_problems,
)
from qcow2harness.reference.zones import ZoneConfig

from qcow2harness.errors import ModelError


def test_pattern_bytes_over_a_whole_cycle() -> None:
    # Spot checks at 1, 255 and 256 cannot tell `+ 1` from `| 1`: the whole cycle can.
    fills = [pattern_byte(content) for content in range(1, 256)]
    assert fills == list(range(1, 256))
    assert [pattern_byte(content) for content in range(256, 511)] == fills


def test_a_sector_is_the_unit_of_a_torn_write() -> None:
    assert SECTOR == 512
    old, new = pattern_byte(1), pattern_byte(2)
    assert old is not None and new is not None
    torn = bytes([old]) * SECTOR + bytes([new]) * SECTOR
    assert _reads_as(torn, {1, 2})
    assert not _reads_as(torn, {1})
    # A sector torn within itself is no value at all.
    assert not _reads_as(bytes([old]) * (SECTOR - 1) + bytes([new]) * (SECTOR + 1), {1, 2})


def test_extents_are_immutable_values() -> None:
    # ExtentMap.copy() shares Extent objects between copies: they must not change.
    extent = Extent(4096, 4096, 1)
    uncertain = Uncertain(4096, 4096, frozenset({0, 1}))
    assert (extent.end, uncertain.end) == (8192, 8192)
    for value in (extent, uncertain):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.offset = 0  # type: ignore[misc]


def test_stage_order_without_any_flush() -> None:
    assert stage_order_problems(["data", "wp"], 1) == [
        ("PERS-1", "wp issued before its data was flushed")]
    assert stage_order_problems(["data", "metadata", "wp"], 2) == [
        ("PERS-1", "wp issued before its data was flushed"),
        ("PERS-2", "wp issued before its metadata was flushed")]


def test_stage_order_judges_metadata_when_there_is_no_data() -> None:
    assert stage_order_problems(["wp", "metadata"], 0) == [
        ("PERS-2", "wp issued before its metadata")]
    assert stage_order_problems(["metadata", "flush", "wp"], 2) == []


def test_stage_order_looks_at_the_last_request_of_a_stage() -> None:
    # Data before the flush and more data after the wp: the later data is what counts.
    assert stage_order_problems(["data", "flush", "wp", "data"], 2) == [
        ("PERS-1", "wp issued before its data")]


def test_stage_order_with_events_read_from_a_log() -> None:
    # Events parsed from a log are equal to the literals but not the same objects.
    parsed = ["".join(["da", "ta"]), "".join(["fl", "ush"]), "".join(["w", "p"])]
    assert stage_order_problems(parsed, 2) == []
    assert stage_order_problems([parsed[0], parsed[2]], 1) == [
        ("PERS-1", "wp issued before its data was flushed")]


def _extents(extents: ExtentMap, offset: int, end: int) -> list[tuple[int, int, int]]:
    return [(e.offset, e.length, e.content) for e in extents.slice(offset, end)]


def test_extent_map_keeps_no_empty_extent() -> None:
    extents = ExtentMap()
    extents.set(0, 100, 1)
    extents.set(0, 50, 2)  # from the start of an extent
    extents.set(50, 100, 3)  # up to its end
    extents.set(70, 70, 4)  # an empty range
    extents.set(80, 60, 4)  # a reversed one
    assert _extents(extents, 0, 150) == [(0, 50, 2), (50, 50, 3), (100, 50, 0)]
    assert _extents(extents, 100, 150) == [(100, 50, 0)]  # starts where an extent ends


def test_extent_map_holds_unknown_content() -> None:
    extents = ExtentMap()
    extents.set(0, 100, UNKNOWN)
    assert _extents(extents, 0, 100) == [(0, 100, UNKNOWN)]


def test_extent_map_of_many_extents() -> None:
    # Past a few extents the bisection's neighbours are not the first ones; past 256
    # the indices are not small cached ints.
    extents = ExtentMap()
    for number in range(300):
        extents.set(10 * number, 10 * number + 5, number + 1)
    extents.set(2003, 2013, 999)
    got = _extents(extents, 1990, 2020)
    assert got == [(1990, 5, 200), (1995, 5, 0), (2000, 3, 201), (2003, 10, 999),
                   (2013, 2, 202), (2015, 5, 0)]
    assert _extents(extents, 2000, 2013) == [(2000, 3, 201), (2003, 10, 999)]
    # 300 extents and the 300 gaps after them, the new one in place of a gap.
    assert len(extents.slice(0, 3000)) == 600


ZONE = 8192
CONFIG = ZoneConfig(size=8 * ZONE, zone_size=ZONE, zone_capacity=6144, conventional_zones=1,
                    max_open_zones=3, max_active_zones=4, max_append_bytes=4096)


def test_bytes_that_hold_neither_old_nor_new_are_pers_5() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 1024)  # 1
    model.flush()
    model.reset(1)
    answer = model.crash()
    wps = model.zones.wps()
    fill = pattern_byte(7)
    assert fill is not None
    data = bytearray(CONFIG.size)
    data[ZONE:ZONE + 1024] = bytes([fill]) * 1024  # neither zeros nor write 1

    def read(offset: int, length: int) -> bytes:
        return bytes(data[offset:offset + length])

    problems = answer.violations(wps, read)
    # and PERS-4: the recovered wp says the reset is durable, so the zone reads zeros
    assert [p.split(":")[0] for p in problems] == ["PERS-5", "PERS-4"]
    assert "hold none of contents [0, 1]" in problems[0]


def test_each_sequential_zone_has_its_own_window() -> None:
    model = PersistenceModel(CONFIG)
    answer = model.crash()
    for zone in range(1, 8):
        window = answer.window(zone)
        assert (window.zone, window.start) == (zone, zone * ZONE)
        assert (window.writable_end, window.zone_end) == (zone * ZONE + 6144, (zone + 1) * ZONE)
    with pytest.raises(ModelError):
        answer.window(0)  # conventional


def test_a_wp_between_the_writable_end_and_the_zone_end_is_the_full_wp() -> None:
    window = WpWindow(zone=1, start=ZONE, durable=ZONE, volatile=ZONE + 1024,
                      allowed=(ZONE, ZONE + 1024), writable_end=ZONE + 6144,
                      zone_end=2 * ZONE)
    assert (window.lowest, window.highest) == (ZONE, ZONE + 1024)
    for wp, named in ((ZONE + 6143, ZONE + 6143), (ZONE + 6144, ZONE + 6144),
                      (ZONE + 7000, ZONE + 6144), (2 * ZONE, ZONE + 6144),
                      (2 * ZONE + 1, 2 * ZONE + 1)):
        assert window.canonical(wp) == named, hex(wp)


def test_a_crash_answer_is_immutable() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)
    answer = model.crash()
    point = answer.wp_points[1][0]
    for value, field in ((answer, "windows"), (answer.window(1), "zone"), (point, "wp")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(value, field, 0)


def test_pers_4_allows_what_later_operations_wrote_over_the_data() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 1024)  # 1: A
    model.flush()
    model.reset(1)  # zeros over the zone, after A
    model.write(ZONE, 512)  # 2: B over the first half
    answer = model.crash()
    a, b = pattern_byte(1), pattern_byte(2)
    assert a is not None and b is not None
    wps = model.zones.wps()

    def verdict(wp: int, first: int, second: int) -> list[str]:
        data = bytearray(CONFIG.size)
        data[ZONE:ZONE + 1024] = bytes([first]) * 512 + bytes([second]) * 512
        recovered = list(wps)
        recovered[1] = wp
        return [p.split(":")[0] for p in answer.violations(
            recovered, lambda offset, length: bytes(data[offset:offset + length]))]

    # The durable wp (A's): each half may since hold what the reset or B left there.
    assert verdict(ZONE + 1024, a, a) == []
    assert verdict(ZONE + 1024, b, a) == []
    assert verdict(ZONE + 1024, b, 0) == []
    assert verdict(ZONE + 1024, 0, a) == []
    # B never reached the second half.
    assert "PERS-4" in verdict(ZONE + 1024, b, b)
    # B's wp: B is durable below it and nothing came later.
    assert verdict(ZONE + 512, b, 0) == []
    assert "PERS-4" in verdict(ZONE + 512, a, 0)
    assert "PERS-4" in verdict(ZONE + 512, 0, 0)


def test_windows_of_zones_past_256() -> None:
    # Zone numbers past 256 are not cached small ints: they compare by value.
    many = ZoneConfig(size=300 * ZONE, zone_size=ZONE, zone_capacity=ZONE,
                      conventional_zones=0, max_open_zones=3, max_active_zones=4,
                      max_append_bytes=4096)
    model = PersistenceModel(many)
    answer = model.crash()
    zone = int("299")
    assert answer.window(zone).start == 299 * ZONE
    model.recover()  # 300 write pointers for 300 zones
    assert model.zones.wps()[zone] == 299 * ZONE


def test_a_content_without_a_pattern_matches_anything() -> None:
    assert _reads_as(bytes([7]) * SECTOR + bytes([9]) * SECTOR, {1, UNKNOWN})


def test_apply_takes_op_names_read_from_json_and_refuses_others() -> None:
    model = PersistenceModel(CONFIG)
    for op in ({"op": "write", "offset": ZONE, "length": 512},
               {"op": "append", "zone": 2, "length": 512},
               {"op": "flush"}, {"op": "reset_all"}, {"op": "reopen"}):
        parsed = json.loads(json.dumps(op))  # names not interned, as from a trace file
        assert model.apply(parsed).ok, op
    assert model.zones.wps()[1:3] == [ZONE, 2 * ZONE]  # reset_all applied
    assert [(e.offset, e.content) for e in model.content()] == [(0, 0)]
    for name in ("zzz", "xylophone", "aaa"):
        with pytest.raises(ModelError, match="unknown op"):
            model.apply({"op": name})


def test_recover_keeps_what_a_recovered_wp_proves_and_forgets_the_rest() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)  # 1
    model.flush()
    model.write(ZONE + 512, 512)  # 2: its wp is recovered, so its data is durable
    model.write(2 * ZONE, 512)  # 3: its wp is not, so its bytes are old or new
    with pytest.raises(ModelError, match="expected 8 write pointers"):
        model.recover([0] * 7)
    bad = model.zones.wps()
    bad[1] = ZONE + 4096
    with pytest.raises(ModelError, match="cannot be recovered"):
        model.recover(bad)
    wps = model.zones.wps()
    wps[2] = 2 * ZONE
    model.recover(wps)
    assert model.zones.wps() == wps
    assert [(e.offset, e.length, e.content) for e in model.content()] == [
        (0, ZONE, 0), (ZONE, 512, 1), (ZONE + 512, 512, 2), (ZONE + 1024, ZONE - 1024, 0),
        (2 * ZONE, 512, UNKNOWN), (2 * ZONE + 512, 6 * ZONE - 512, 0)]


# ----- the crash answer as a whole, over any history -----

_OPS = st.lists(st.tuples(st.sampled_from(["write", "append", "reset", "finish", "flush",
                                           "conventional", "reopen"]),
                          st.integers(1, 7), st.integers(1, 4)), max_size=14)


def _play(model: PersistenceModel, ops: list[tuple[str, int, int]]) -> None:
    for name, zone, blocks in ops:
        if name == "write":
            model.write(model.zones.wps()[zone], blocks * SECTOR)
        elif name == "append":
            # a fixed content, as qemu-io's append writes, read as from a trace: equal
            # ids that are other int objects
            model.append(zone, blocks * SECTOR, content=int("461") if blocks % 2 else None)
        elif name in ("reset", "finish"):
            getattr(model, name)(zone)
        elif name == "conventional":
            model.write(zone * SECTOR, blocks * SECTOR)
        else:
            getattr(model, name)()


@settings(max_examples=200, deadline=None)
@given(_OPS)
def test_a_crash_answer_tiles_the_device_in_maximal_extents(
        ops: list[tuple[str, int, int]]) -> None:
    """Exact and old-or-new ranges never overlap, cover every byte once, and two adjacent
    ranges of one kind never hold the same content (or candidates): merged whole."""
    model = PersistenceModel(CONFIG)
    _play(model, ops)
    answer = model.crash()
    ranges = sorted([(e.offset, e.end, ("exact", e.content)) for e in answer.exact]
                    + [(u.offset, u.end, ("old-or-new", u.candidates))
                       for u in answer.old_or_new])
    assert ranges[0][0] == 0 and ranges[-1][1] == CONFIG.size
    for (_, end, what), (offset, _, next_what) in zip(ranges, ranges[1:], strict=False):
        assert end == offset, "a gap or an overlap"
        assert what != next_what, f"not merged at {offset:#x}"
    assert all(offset < end for offset, end, _ in ranges)


# ----- recover: which data a recovered wp proves -----

def _contents(model: PersistenceModel, offset: int, end: int) -> list[tuple[int, int, int]]:
    """[offset, end) as (start, end, content) runs, adjacent equal contents joined."""
    runs: list[tuple[int, int, int]] = []
    for e in model.content():
        if e.offset < end and e.end > offset:
            run = (max(e.offset, offset), min(e.end, end), e.content)
            if runs and runs[-1][1] == run[0] and runs[-1][2] == run[2]:
                run = (runs.pop()[0], run[1], run[2])
            runs.append(run)
    return runs


def test_recover_at_a_wp_a_later_write_in_the_zone_overwrote_forgets_its_data() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)  # 1, then its wp ZONE + 512
    model.write(ZONE + 512, 512)  # 2, later, in the same (odd-numbered) zone
    wps = model.zones.wps()
    wps[1] = ZONE + 512
    model.recover(wps)
    assert _contents(model, ZONE, ZONE + 1024) == [(ZONE, ZONE + 1024, UNKNOWN)]


def test_recover_keeps_a_wps_data_when_later_writes_missed_the_zone() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)  # 1: zone 1's wp ZONE + 512
    model.write(ZONE - 512, 512)  # 2: conventional, ends where zone 1 starts
    model.write(0, 512)  # 3: conventional, far below
    model.write(2 * ZONE, 512)  # 4: zone 2, just past zone 1
    model.write(3 * ZONE, 512)  # 5: zone 3, further on
    model.recover(model.zones.wps())
    assert _contents(model, ZONE, ZONE + 512) == [(ZONE, ZONE + 512, 1)]


def test_recover_keeps_every_write_below_the_recovered_wp() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)  # 1
    model.write(ZONE + 512, 512)  # 2: earlier writes of the zone do not overwrite it
    model.recover(model.zones.wps())
    assert _contents(model, ZONE, ZONE + 1024) == [(ZONE, ZONE + 512, 1),
                                                   (ZONE + 512, ZONE + 1024, 2)]


def test_recover_at_the_durable_wp_forgets_what_the_first_op_wrote() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)  # the very first op (sequence 0)
    model.recover()  # back to the zone start
    assert _contents(model, ZONE, ZONE + 512) == [(ZONE, ZONE + 512, UNKNOWN)]


def test_a_finish_after_a_write_leaves_that_wp_one_point() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)  # 1
    model.finish(1)  # a new wp, and no data
    wps = model.zones.wps()
    wps[1] = ZONE + 512
    model.recover(wps)
    assert _contents(model, ZONE, ZONE + 512) == [(ZONE, ZONE + 512, 1)]


def test_a_zone_whose_wp_names_two_points_does_not_stop_the_next_zones() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)  # 1
    model.reset(1)  # back to the start: two points at ZONE now
    model.write(2 * ZONE, 512)  # 2: zone 2, after zone 1 in the window order
    wps = model.zones.wps()
    model.recover(wps)
    assert wps[1] == ZONE
    assert _contents(model, 2 * ZONE, 2 * ZONE + 512) == [(2 * ZONE, 2 * ZONE + 512, 2)]


def test_recover_at_the_zone_end_takes_the_full_wp() -> None:  # WP-9
    model = PersistenceModel(CONFIG)
    model.finish(1)
    model.flush()
    wps = model.zones.wps()
    wps[1] = 2 * ZONE  # the zone end, past the writable end ZONE + 6144
    model.recover(wps)
    assert model.zones.wps()[1] == ZONE + 6144


def test_a_refused_recover_changes_nothing() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)
    before = (model.content(), model.zones.wps())
    for count in (7, 9):
        with pytest.raises(ModelError, match=f"expected 8 write pointers, got {count}"):
            model.recover([0] + [z * ZONE for z in range(1, 8)] + [0] * (count - 8)
                          if count > 8 else [z * ZONE for z in range(count)])
        assert (model.content(), model.zones.wps()) == before


def test_write_pointers_read_back_from_json_compare_by_value() -> None:
    """Recovered wps come from an image or a trace: equal numbers, other objects."""
    model = PersistenceModel(CONFIG)
    model.flush()
    model.recover(json.loads(json.dumps(model.zones.wps())))
    model.reset(1)  # already at its start: no new wp
    assert len(model.crash().wp_points[1]) == 1
    model.reset_all()  # no zone moves: nothing more is zeroed
    assert [(t.offset, t.end) for t in model.crash().touches] == [(ZONE, 2 * ZONE)]


def test_pers_4_lets_no_other_write_stand_for_the_data() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(ZONE, 512)  # 1: A, the data the recovered wp proves
    model.write(0, 512)  # 2: X, conventional
    model.write(2 * ZONE, 512)  # 3: Y, zone 2
    model.write(ZONE + 512, 512)  # 4: B, zone 1 past A
    answer = model.crash()
    wps = model.zones.wps()
    wps[1] = ZONE + 512

    def pers_4(first_sector: bytes) -> bool:
        data = bytearray(CONFIG.size)
        data[0:512] = bytes([pattern_byte(2) or 0]) * 512
        data[2 * ZONE:2 * ZONE + 512] = bytes([pattern_byte(3) or 0]) * 512
        data[ZONE:ZONE + 512] = first_sector
        return any(p.startswith("PERS-4") for p in answer.violations(
            wps, lambda offset, length: bytes(data[offset:offset + length])))

    a = bytes([pattern_byte(1) or 0])
    assert not pers_4(a * 512)
    for other in (2, 3, 4):
        assert pers_4(bytes([pattern_byte(other) or 0]) * 512), other
    assert pers_4(a * 100 + b"\xee" + a * 411)  # one wrong byte past the first


def test_old_or_new_ranges_keep_their_own_candidates() -> None:
    model = PersistenceModel(CONFIG)
    model.flush()
    model.write(512, 512)  # 1, conventional
    model.write(0, 1024)  # 2, over it and the sector before
    assert [(u.offset, u.end, sorted(u.candidates)) for u in model.crash().old_or_new] == [
        (0, 512, [0, 2]), (512, 1024, [0, 1, 2])]
