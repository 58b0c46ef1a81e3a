"""Persistence and crash model: durable wps, exact vs old-or-new bytes, PERS-4 implications."""

from __future__ import annotations

import pytest
from qcow2harness.reference.persistence import (
    UNKNOWN,
    ZEROS,
    ExtentMap,
    PersistenceModel,
    crash_at,
    pattern_byte,
)
from qcow2harness.reference.zones import ZoneConfig, ZoneState

from qcow2harness.errors import ModelError

ZONE = 8192
CONFIG = ZoneConfig(
    size=8 * ZONE,
    zone_size=ZONE,
    zone_capacity=ZONE,
    conventional_zones=1,
    max_open_zones=3,
    max_active_zones=4,
    max_append_bytes=4096,
)


class Disk:
    """A guest image filled the way a writer would: write k holds pattern_byte(k)."""

    def __init__(self) -> None:
        self.data = bytearray(CONFIG.size)

    def fill(self, offset: int, length: int, content: int) -> None:
        self.data[offset : offset + length] = bytes([pattern_byte(content) or 0]) * length

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset : offset + length])


def test_pattern_bytes() -> None:
    assert pattern_byte(ZEROS) == 0 and pattern_byte(UNKNOWN) is None
    assert pattern_byte(1) == 1 and pattern_byte(255) == 255 and pattern_byte(256) == 1


def test_extent_map_overwrites_and_slices() -> None:
    extents = ExtentMap()
    extents.set(0, 100, 1)
    extents.set(50, 150, 2)
    extents.set(60, 70, ZEROS)
    got = [(e.offset, e.length, e.content) for e in extents.slice(0, 200)]
    assert got == [(0, 50, 1), (50, 10, 2), (60, 10, 0), (70, 80, 2), (150, 50, 0)]
    copy = extents.copy()
    extents.set(0, 200, 3)
    assert [e.content for e in copy.slice(0, 50)] == [1]


def test_flush_makes_wps_durable() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)
    model.write(ZONE + 512, 512)
    window = model.crash().window(1)
    assert window.allowed == (ZONE, ZONE + 512, ZONE + 1024)
    assert (window.durable, window.volatile) == (ZONE, ZONE + 1024)
    model.flush()
    window = model.crash().window(1)
    assert window.allowed == (ZONE + 1024,) and window.lowest == window.highest


def test_reset_after_flush_allows_old_and_new() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 1024)
    model.flush()
    model.reset(1)
    answer = model.crash()
    assert answer.window(1).allowed == (ZONE, ZONE + 1024)
    assert [(u.offset, u.length, set(u.candidates)) for u in answer.old_or_new] == [
        (ZONE, 1024, {0, 1})
    ]


def test_exact_and_old_or_new_ranges() -> None:
    model = PersistenceModel(CONFIG)
    model.write(0, 1024)  # conventional, content 1
    model.write(ZONE, 512)  # content 2
    model.flush()
    model.write(512, 1024)  # content 3 overlaps content 1
    answer = model.crash()
    exact = {(e.offset, e.length, e.content) for e in answer.exact}
    assert (0, 512, 1) in exact and (ZONE, 512, 2) in exact
    uncertain = {(u.offset, u.length, u.candidates) for u in answer.old_or_new}
    assert uncertain == {(512, 512, frozenset({1, 3})), (1024, 512, frozenset({0, 3}))}
    covered = sum(e.length for e in answer.exact) + sum(u.length for u in answer.old_or_new)
    assert covered == CONFIG.size, "every byte is either exact or old-or-new"


def test_violations_accept_a_good_recovery_and_name_bad_ones() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)  # 1
    model.flush()
    model.write(ZONE + 512, 512)  # 2
    model.write(ZONE + 1024, 512)  # 3
    answer = model.crash()
    wps = model.zones.wps()
    disk = Disk()
    disk.fill(ZONE, 512, 1)
    durable = list(wps)
    durable[1] = ZONE + 512
    assert answer.violations(durable, disk.read) == []
    disk.fill(ZONE + 512, 512, 2)
    middle = list(wps)
    middle[1] = ZONE + 1024
    assert answer.violations(middle, disk.read) == []
    # wp says write 3 is durable but its data never arrived: PERS-4
    problems = answer.violations(wps, disk.read)
    assert len(problems) == 1 and problems[0].startswith("PERS-4")
    # a wp nobody ever held: PERS-3
    bogus = list(wps)
    bogus[1] = ZONE + 4096
    assert any(p.startswith("PERS-3") for p in answer.violations(bogus, disk.read))
    # flushed data lost: PERS-5
    disk.fill(ZONE, 512, ZEROS)
    assert any(p.startswith("PERS-5") for p in answer.violations(durable, disk.read))


def test_reset_zeroes_before_its_wp() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 1024)
    model.flush()
    model.reset(1)
    answer = model.crash()
    old_wp = model.zones.wps()
    old_wp[1] = ZONE + 1024
    disk = Disk()  # zeroing reached the disk, the wp update did not
    assert answer.violations(old_wp, disk.read) == []
    disk.fill(ZONE, 1024, 1)  # nothing of the reset reached the disk
    assert answer.violations(old_wp, disk.read) == []
    problems = answer.violations(model.zones.wps(), disk.read)
    assert len(problems) == 1 and problems[0].startswith("PERS-4"), "wp=start over old data"


def test_reopen_is_a_clean_power_cycle() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)
    model.open(2)
    model.reopen()
    assert model.zones.zone(1).state is ZoneState.CLOSED
    assert model.zones.zone(2).state is ZoneState.EMPTY
    assert model.zones.active_zones == 1
    assert model.crash().window(1).allowed == (ZONE + 512,), "reopen flushed"


def test_recover_adopts_durable_or_chosen_wps() -> None:
    model = PersistenceModel(CONFIG)
    model.write(ZONE, 512)
    model.flush()
    model.write(ZONE + 512, 512)
    model.write(2 * ZONE, 512)
    model.recover()
    assert model.zones.wps()[1:3] == [ZONE + 512, 2 * ZONE]
    assert model.zones.zone(2).state is ZoneState.EMPTY
    model.write(ZONE + 512, 1024)
    chosen = model.zones.wps()
    chosen[1] = ZONE + 1536
    model.recover(chosen)
    assert model.zones.zone(1).state is ZoneState.CLOSED
    exact = {(e.offset, e.length, e.content) for e in model.crash().exact}
    assert (ZONE + 512, 1024, 4) in exact, "data below an adopted wp is known"
    bad = model.zones.wps()
    bad[1] = ZONE + 100
    with pytest.raises(ModelError):
        model.recover(bad)


def test_crash_at_replays_a_prefix() -> None:
    history = [
        {"op": "write", "offset": ZONE, "length": 512},
        {"op": "flush"},
        {"op": "write", "offset": ZONE + 512, "length": 512},
        {"op": "finish", "zone": 1},
    ]
    assert crash_at(CONFIG, history, 2).window(1).allowed == (ZONE + 512,)
    assert crash_at(CONFIG, history, 4).window(1).allowed == (ZONE + 512, ZONE + 1024, 2 * ZONE)
    with pytest.raises(ModelError):
        PersistenceModel(CONFIG).apply({"op": "dance"})
