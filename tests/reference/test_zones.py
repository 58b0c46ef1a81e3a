"""The zone state machine: every condition x every op, limits, policies, reopen, config."""

from __future__ import annotations

import pytest
from qcow2harness.reference.zones import (
    CloseAtStart,
    Refusal,
    VictimPolicy,
    ZoneConfig,
    ZoneModel,
    ZoneState,
)

from qcow2harness.errors import ModelError

KIB = 1024
ZONE = 64 * KIB
CAPACITY = 48 * KIB

S = ZoneState
R = Refusal


def make(
    *,
    zones: int = 8,
    conventional: int = 1,
    max_open: int = 0,
    max_active: int = 0,
    max_append: int = 8 * KIB,
    policy: str = "lru",
    close_at_start: str = "empty",
) -> ZoneModel:
    config = ZoneConfig(
        size=zones * ZONE,
        zone_size=ZONE,
        zone_capacity=CAPACITY,
        conventional_zones=conventional,
        max_open_zones=max_open,
        max_active_zones=max_active,
        max_append_bytes=max_append,
    )
    return ZoneModel(config, policy, close_at_start)


def start(zone: int) -> int:
    return zone * ZONE


# ----- every condition x every op -----

TARGET = 2  # a sequential zone in make()'s default layout


def into(model: ZoneModel, condition: str) -> int:
    """Bring zone TARGET (or conventional zone 0) into `condition`; return its index."""
    if condition == "not_write_pointer":
        return 0
    if condition == "implicit_open":
        assert model.write(start(TARGET), 4 * KIB).ok
    elif condition == "explicit_open":
        assert model.write(start(TARGET), 4 * KIB).ok
        assert model.open(TARGET).ok
    elif condition == "explicit_open_at_start":
        assert model.open(TARGET).ok
    elif condition == "closed":
        assert model.write(start(TARGET), 4 * KIB).ok
        assert model.close(TARGET).ok
    elif condition == "full":
        assert model.finish(TARGET).ok
    elif condition in ("read_only", "offline"):
        model.inject_fault(TARGET, condition)
    return TARGET


def do(model: ZoneModel, op: str, zone: int) -> Refusal | None:
    if op == "write":
        return model.write(model.zone(zone).wp, 4 * KIB).error
    if op == "append":
        return model.append(zone, 4 * KIB).error
    return getattr(model, op)(zone).error


# condition -> op -> (refusal or None, condition afterwards)
TABLE: dict[str, dict[str, tuple[Refusal | None, ZoneState]]] = {
    "empty": {
        "write": (None, S.IMPLICIT_OPEN),
        "append": (None, S.IMPLICIT_OPEN),
        "open": (None, S.EXPLICIT_OPEN),
        "close": (R.INVALID_TRANSITION, S.EMPTY),
        "finish": (None, S.FULL),
        "reset": (None, S.EMPTY),
    },
    "implicit_open": {
        "write": (None, S.IMPLICIT_OPEN),
        "append": (None, S.IMPLICIT_OPEN),
        "open": (None, S.EXPLICIT_OPEN),
        "close": (None, S.CLOSED),
        "finish": (None, S.FULL),
        "reset": (None, S.EMPTY),
    },
    "explicit_open": {
        "write": (None, S.EXPLICIT_OPEN),
        "append": (None, S.EXPLICIT_OPEN),
        "open": (None, S.EXPLICIT_OPEN),
        "close": (None, S.CLOSED),
        "finish": (None, S.FULL),
        "reset": (None, S.EMPTY),
    },
    "explicit_open_at_start": {
        "write": (None, S.EXPLICIT_OPEN),
        "append": (None, S.EXPLICIT_OPEN),
        "open": (None, S.EXPLICIT_OPEN),
        "close": (None, S.EMPTY),
        "finish": (None, S.FULL),
        "reset": (None, S.EMPTY),
    },
    "closed": {
        "write": (None, S.IMPLICIT_OPEN),
        "append": (None, S.IMPLICIT_OPEN),
        "open": (None, S.EXPLICIT_OPEN),
        "close": (None, S.CLOSED),
        "finish": (None, S.FULL),
        "reset": (None, S.EMPTY),
    },
    "full": {
        "write": (R.ZONE_FULL, S.FULL),
        "append": (R.ZONE_FULL, S.FULL),
        "open": (R.INVALID_TRANSITION, S.FULL),
        "close": (R.INVALID_TRANSITION, S.FULL),
        "finish": (None, S.FULL),
        "reset": (None, S.EMPTY),
    },
    "read_only": {
        op: (R.INVALID_TRANSITION, S.READ_ONLY)
        for op in ("write", "append", "open", "close", "finish", "reset")
    },
    "offline": {
        op: (R.INVALID_TRANSITION, S.OFFLINE)
        for op in ("write", "append", "open", "close", "finish", "reset")
    },
    "not_write_pointer": {
        "write": (None, S.NOT_WRITE_POINTER),
        **{
            op: (R.CONVENTIONAL_ZONE, S.NOT_WRITE_POINTER)
            for op in ("append", "open", "close", "finish", "reset")
        },
    },
}

CASES = [(c, op, *outcome) for c, ops in TABLE.items() for op, outcome in ops.items()]


@pytest.mark.parametrize(("condition", "op", "refusal", "after"), CASES)
def test_every_condition_and_op(
    condition: str, op: str, refusal: Refusal | None, after: ZoneState
) -> None:
    model = make()
    zone = into(model, condition)
    before = model.zone(zone)
    assert do(model, op, zone) == refusal
    info = model.zone(zone)
    assert info.state is after
    if refusal is not None:
        assert info.wp == before.wp, "a refused op must not move the wp"
    if after is S.EMPTY:
        assert info.wp == info.start
    if after is S.FULL:
        assert info.wp == info.start + info.capacity


def test_close_at_start_zns_rule_keeps_explicit_zone_closed_and_active() -> None:
    model = make(close_at_start="closed")
    model.open(TARGET)
    assert model.close(TARGET).ok
    assert model.zone(TARGET).state is S.CLOSED
    assert model.active_zones == 1 and model.open_zones == 0
    assert make(close_at_start=CloseAtStart.EMPTY).close_at_start is CloseAtStart.EMPTY


def test_counters_follow_transitions() -> None:
    model = make()
    model.write(start(2), 512)
    model.open(3)
    model.write(start(4), 512)
    model.close(4)
    assert (model.open_zones, model.active_zones) == (2, 3)
    model.finish(2)
    model.reset(3)
    assert (model.open_zones, model.active_zones) == (0, 1)


# ----- writes and appends -----


def test_write_must_start_at_wp_and_stay_within_capacity() -> None:
    model = make()
    assert model.write(start(2) + 512, 512).error is R.NOT_AT_WRITE_POINTER
    assert model.write(start(2), CAPACITY + 512).error is R.EXCEEDS_CAPACITY
    assert model.write(start(2), CAPACITY).ok
    assert model.zone(2).state is S.FULL
    assert model.open_zones == 0, "reaching capacity frees the open slot"


def test_sequential_writes_move_the_wp_in_whole_blocks() -> None:
    model = make()
    assert model.write(start(2), 1000).error is R.UNALIGNED
    assert model.append(2, 100).error is R.UNALIGNED
    assert model.zone(2).wp == start(2) and model.zone(2).state is S.EMPTY
    assert model.write(0, 1000).ok, "conventional zones take any length"
    assert model.write(start(2), 1024).ok and model.zone(2).wp == start(2) + 1024


def test_write_spanning_zones() -> None:
    model = make(conventional=2)
    assert model.write(ZONE - 512, 1024).ok, "conventional zones may be spanned"
    assert model.write(2 * ZONE - 512, 1024).error is R.EXCEEDS_CAPACITY
    model_full_capacity = ZoneModel(
        ZoneConfig(size=4 * ZONE, zone_size=ZONE, zone_capacity=ZONE, conventional_zones=1)
    )
    assert model_full_capacity.write(ZONE, ZONE + 512).error is R.EXCEEDS_CAPACITY
    assert model_full_capacity.zone(1).wp == ZONE


def test_out_of_range_and_bad_lengths() -> None:
    model = make()
    assert model.write(8 * ZONE, 512).error is R.OUT_OF_RANGE
    assert model.write(-512, 512).error is R.OUT_OF_RANGE
    assert model.append(8, 512).error is R.OUT_OF_RANGE
    assert model.open(-1).error is R.OUT_OF_RANGE
    with pytest.raises(ModelError):
        model.write(0, 0)
    with pytest.raises(ModelError):
        model.append(2, -1)


def test_append_returns_offset_and_checks_size() -> None:
    model = make(max_append=8 * KIB)
    assert model.append(2, 4 * KIB).offset == start(2)
    assert model.append(2, 4 * KIB).offset == start(2) + 4 * KIB
    assert model.append(2, 8 * KIB + 512).error is R.APPEND_TOO_LARGE
    model.write(start(2) + 8 * KIB, CAPACITY - 12 * KIB)
    assert model.append(2, 8 * KIB).error is R.EXCEEDS_CAPACITY
    assert model.append(2, 4 * KIB).ok
    assert model.append(2, 512).error is R.ZONE_FULL
    assert make(max_append=0).append(2, 512).error is R.APPEND_TOO_LARGE


def test_fault_on_conventional_zone_blocks_writes() -> None:
    model = make(conventional=2)
    model.inject_fault(1, "offline")
    assert model.write(0, 512).ok
    assert model.write(ZONE - 512, 1024).error is R.INVALID_TRANSITION
    with pytest.raises(ModelError):
        model.inject_fault(1, "full")
    with pytest.raises(ModelError):
        model.inject_fault(99, "offline")


# ----- limits and victim policies -----


def test_open_limit_without_implicit_victim() -> None:
    model = make(max_open=2)
    assert model.open(2).ok and model.open(3).ok
    assert model.write(start(4), 512).error is R.TOO_MANY_OPEN
    assert model.open(4).error is R.TOO_MANY_OPEN
    assert model.zone(4).state is S.EMPTY


def test_explicit_open_may_close_an_implicit_victim() -> None:
    model = make(max_open=1)
    model.write(start(2), 512)
    assert model.open(3).ok
    assert model.zone(2).state is S.CLOSED


def test_lru_closes_least_recently_written() -> None:
    model = make(max_open=2)
    model.write(start(2), 512)
    model.write(start(3), 512)
    model.write(start(2) + 512, 512)
    assert model.write(start(4), 512).ok
    assert [model.zone(z).state for z in (2, 3, 4)] == [S.IMPLICIT_OPEN, S.CLOSED, S.IMPLICIT_OPEN]


def test_fifo_closes_oldest_opened() -> None:
    model = make(max_open=2, policy="fifo")
    model.write(start(2), 512)
    model.write(start(3), 512)
    model.write(start(2) + 512, 512)
    assert model.write(start(4), 512).ok
    assert [model.zone(z).state for z in (2, 3, 4)] == [S.CLOSED, S.IMPLICIT_OPEN, S.IMPLICIT_OPEN]


def test_round_robin_walks_zone_numbers() -> None:
    model = make(max_open=2, policy=VictimPolicy.ROUND_ROBIN)
    model.write(start(2), 512)
    model.write(start(1), 512)
    model.write(start(3), 512)  # cursor at zone 1: victim 1 (lru/fifo would pick 2)
    assert model.zone(1).state is S.CLOSED
    model.write(start(1) + 512, 512)  # cursor at 2: victim 2
    assert model.zone(2).state is S.CLOSED
    model.write(start(4), 512)  # cursor at 3: victim 3
    assert [model.zone(z).state for z in (1, 2, 3, 4)] == [
        S.IMPLICIT_OPEN,
        S.CLOSED,
        S.CLOSED,
        S.IMPLICIT_OPEN,
    ]


def test_policies_disagree_on_the_same_history() -> None:
    closed = {}
    for policy in VictimPolicy:
        model = make(max_open=2, policy=policy)
        for offset in (start(2), start(1), start(2) + 512, start(3)):
            assert model.write(offset, 512).ok
        closed[policy] = [z for z in range(8) if model.zone(z).state is S.CLOSED]
    assert closed == {
        VictimPolicy.LRU: [1],
        VictimPolicy.FIFO: [2],
        VictimPolicy.ROUND_ROBIN: [1],
    }


def test_active_limit() -> None:
    model = make(max_open=2, max_active=2)
    model.write(start(1), 512)
    model.write(start(2), 512)
    model.close(1)
    assert model.write(start(3), 512).error is R.TOO_MANY_ACTIVE
    assert model.open(3).error is R.TOO_MANY_ACTIVE
    assert model.finish(3).error is R.TOO_MANY_ACTIVE, "finishing EMPTY needs an active slot"
    assert model.write(start(1) + 512, 512).ok, "a CLOSED zone needs only an open slot"
    model.finish(1)
    assert model.write(start(3), 512).ok


def test_active_refusal_comes_before_open_victim() -> None:
    model = make(max_open=1, max_active=2)
    model.write(start(1), 512)
    model.write(start(2), 512)  # victim: zone 1 closes
    assert model.zone(1).state is S.CLOSED
    assert model.write(start(3), 512).error is R.TOO_MANY_ACTIVE
    assert model.zone(2).state is S.IMPLICIT_OPEN, "a refused write closes no victim"


def test_full_frees_slots() -> None:
    model = make(max_open=1, max_active=1)
    model.write(start(2), CAPACITY)
    assert model.zone(2).state is S.FULL
    assert (model.open_zones, model.active_zones) == (0, 0)
    assert model.write(start(3), 512).ok


# ----- reset_all and reopen -----


def test_reset_all_skips_conventional_and_faulty_zones() -> None:
    model = make(conventional=2)
    model.write(0, 512)
    model.write(start(2), 512)
    model.finish(3)
    model.write(start(4), 512)
    model.inject_fault(4, "read_only")
    assert model.reset_all().ok
    assert model.zone(0).state is S.NOT_WRITE_POINTER
    assert [model.zone(z).state for z in (2, 3, 4)] == [S.EMPTY, S.EMPTY, S.READ_ONLY]
    assert model.zone(4).wp == start(4) + 512
    assert (model.open_zones, model.active_zones) == (0, 0)


def test_reopen_closes_open_zones_and_counts_them_active() -> None:
    model = make(max_open=3, max_active=3)
    model.write(start(1), 512)
    model.open(2)
    model.write(start(3), 512)
    model.open(3)
    model.reopen()
    assert [model.zone(z).state for z in (1, 2, 3)] == [S.CLOSED, S.EMPTY, S.CLOSED]
    assert (model.open_zones, model.active_zones) == (0, 2)
    model.write(start(4), 512)
    assert model.write(start(5), 512).error is R.TOO_MANY_ACTIVE


def test_reopen_turns_closed_at_start_into_empty() -> None:
    model = make(close_at_start="closed")
    model.open(2)
    model.close(2)
    model.reopen()
    assert model.zone(2).state is S.EMPTY
    assert model.active_zones == 0


def test_restore_derives_conditions_from_wps() -> None:
    model = make()
    wps = model.wps()
    wps[2] = start(2) + 4 * KIB
    wps[3] = start(3) + ZONE  # past capacity: FULL, normalised
    model.restore(wps)
    assert [model.zone(z).state for z in (1, 2, 3)] == [S.EMPTY, S.CLOSED, S.FULL]
    assert model.zone(3).wp == start(3) + CAPACITY
    wps[4] = start(5) + 512  # beyond start + zone_size: WP-8
    with pytest.raises(ModelError):
        model.restore(wps)


# ----- configuration -----

GOOD = dict(
    size=8 * ZONE,
    zone_size=ZONE,
    zone_capacity=CAPACITY,
    conventional_zones=1,
    max_open_zones=2,
    max_active_zones=3,
    max_append_bytes=4096,
)


@pytest.mark.parametrize(
    ("change", "clause"),
    [
        ({"zone_size": 3 * 16384}, "ZONE-6"),
        ({"zone_size": 256}, "ZONE-6"),
        ({"zone_capacity": ZONE + 512}, "ZONE-7"),
        ({"zone_capacity": 0}, "ZONE-7"),
        ({"zone_capacity": 1000}, "ZONE-7"),
        ({"conventional_zones": 8}, "ZONE-11"),
        ({"max_open_zones": 4, "max_active_zones": 3}, "ZONE-13"),
        ({"max_open_zones": 8, "max_active_zones": 0}, "ZONE-12"),
        ({"max_append_bytes": 1000}, "ZONE-16"),
        ({"max_append_bytes": CAPACITY}, "ZONE-16"),
        ({"size": 1000}, None),
        ({"max_open_zones": -1}, None),
        ({"size": 1 << 62, "zone_size": 512, "zone_capacity": 512}, "ZONE-10"),
    ],
)
def test_bad_config_is_refused_with_clause(change: dict[str, int], clause: str | None) -> None:
    with pytest.raises(ModelError) as caught:
        ZoneConfig(**{**GOOD, **change})
    assert caught.value.clause == clause
    assert caught.value.message


def test_good_config_and_runt_last_zone() -> None:
    config = ZoneConfig(**{**GOOD, "size": 7 * ZONE + 16 * KIB})
    assert config.nr_zones == 8 and config.sequential_zones == 7
    model = ZoneModel(config)
    assert model.zone(7).length == 16 * KIB and model.zone(7).capacity == 16 * KIB
    assert model.zone(0).capacity == ZONE, "conventional zones are writable end to end"


def test_unknown_policy_names_are_refused() -> None:
    config = ZoneConfig(**GOOD)
    with pytest.raises(ModelError, match="round-robin"):
        ZoneModel(config, policy="random")
    with pytest.raises(ModelError, match="closed"):
        ZoneModel(config, close_at_start="never")


def test_refusal_names_are_exactly_the_protocol_names() -> None:
    assert {r.value for r in Refusal} == {
        "not-at-write-pointer",
        "exceeds-capacity",
        "zone-full",
        "too-many-open",
        "too-many-active",
        "append-too-large",
        "conventional-zone",
        "out-of-range",
        "invalid-transition",
        "unaligned",
    }
    assert [s.value for s in ZoneState] == [
        "empty",
        "implicit_open",
        "explicit_open",
        "closed",
        "full",
        "not_write_pointer",
        "read_only",
        "offline",
    ]
