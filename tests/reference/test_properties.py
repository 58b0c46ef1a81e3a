"""Hypothesis properties: model invariants under any op sequence, and model vs writer."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qcow2harness.reference.persistence import PersistenceModel, pattern_byte
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import (
    VictimPolicy,
    ZoneConfig,
    ZoneModel,
    ZoneState,
    ZoneType,
)

ZONE = 4096
NR_ZONES = 6
CONFIG = ZoneConfig(
    size=NR_ZONES * ZONE,
    zone_size=ZONE,
    zone_capacity=3072,
    conventional_zones=1,
    max_open_zones=2,
    max_active_zones=3,
    max_append_bytes=1024,
)

# Mostly valid sequential zones, sometimes conventional or nonexistent ones.
zone_numbers = st.sampled_from([1, 2, 3, 4, 5] * 4 + [-1, 0, NR_ZONES])
lengths = st.sampled_from([512, 512, 1024, 1536])
writes = st.builds(
    lambda z, at_wp, n: {"op": "write", "zone": z, "at_wp": at_wp, "length": n},
    st.integers(0, NR_ZONES - 1),
    st.sampled_from([True, True, True, False]),
    lengths,
)
ops = st.one_of(
    writes,
    writes,
    writes,
    st.builds(lambda z, n: {"op": "append", "zone": z, "length": n}, zone_numbers, lengths),
    st.builds(
        lambda o, z: {"op": o, "zone": z},
        st.sampled_from(["open", "open", "close", "close", "finish", "reset"]),
        zone_numbers,
    ),
    st.builds(lambda z: {"op": "close", "zone": z}, zone_numbers),
    st.sampled_from([{"op": "reset_all"}, {"op": "flush"}, {"op": "reopen"}]),
)
histories = st.lists(ops, min_size=5, max_size=40)


def concrete(model: ZoneModel, op: dict[str, Any]) -> dict[str, Any]:
    """Turn a drawn write into offset form: at the wp, or 512 bytes past it."""
    if op["op"] != "write":
        return op
    info = model.zone(op["zone"])
    base = info.wp if info.type is ZoneType.SEQUENTIAL else info.start
    offset = base if op["at_wp"] else base + 512
    return {"op": "write", "offset": offset, "length": op["length"]}


def check_invariants(model: ZoneModel) -> None:
    report = model.report()
    open_zones = sum(i.state in (ZoneState.IMPLICIT_OPEN, ZoneState.EXPLICIT_OPEN) for i in report)
    active = open_zones + sum(i.state is ZoneState.CLOSED for i in report)
    assert (model.open_zones, model.active_zones) == (open_zones, active)
    assert open_zones <= CONFIG.max_open_zones and active <= CONFIG.max_active_zones
    for info in report:
        if info.type is ZoneType.CONVENTIONAL:
            assert info.state is ZoneState.NOT_WRITE_POINTER and info.wp == info.start
            continue
        assert info.start <= info.wp <= info.start + info.capacity
        assert (info.state is ZoneState.FULL) == (info.wp == info.start + info.capacity)
        if info.state is ZoneState.EMPTY:
            assert info.wp == info.start
        if info.state in (ZoneState.IMPLICIT_OPEN, ZoneState.CLOSED):
            assert info.wp > info.start


# Derandomized and without an example database: the same examples on every run.
@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(histories, st.sampled_from(list(VictimPolicy)))
def test_model_invariants_hold_after_every_op(history: list[dict[str, Any]], policy: str) -> None:
    model = PersistenceModel(CONFIG, policy)
    for op in history:
        before = model.zones.wps()
        result = model.apply(concrete(model.zones, op))
        if not result.ok:
            assert model.zones.wps() == before, "a refused op changes no wp"
        check_invariants(model.zones)
        answer = model.crash()
        for window in answer.windows:
            assert window.durable in window.allowed and window.volatile in window.allowed


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(histories)
def test_writer_matches_model_and_its_file(history: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "prop.qcow2"
        model = PersistenceModel(CONFIG)
        writer = ReferenceWriter.create(image, CONFIG.size, cluster_size=512, zoned=CONFIG,
                                        fsync=False)
        with writer:
            for drawn in history:
                op = concrete(model.zones, drawn)
                expected = model.apply(op)
                fill = bytes([pattern_byte(model.last_content) or 0])
                got = writer.apply(op, fill)
                assert got == expected, op
            with ReferenceWriter.open(image, fsync=False) as fresh:
                assert fresh.wps_on_disk()[1:] == model.zones.wps()[1:]
                whole = fresh.read(0, CONFIG.size)
            for extent in model._content.slice(0, CONFIG.size):
                fill_byte = pattern_byte(extent.content) or 0
                assert whole[extent.offset : extent.end] == bytes([fill_byte]) * extent.length
