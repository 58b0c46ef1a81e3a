"""The batched (numpy) zone-table rules of reference/zones.py against the scalar rules
they vectorise: the same clauses per entry, the same WP-9 notes, dead-data starts,
persisted rows and whole-table verdicts, over small tables drawn by Hypothesis, read in
batches of every size so that batch edges are crossed."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from qcow2harness.reference.zones import (
    CONVENTIONAL_FLAG,
    MAX_NR_ZONES,
    PERSISTED_STATES,
    count_persisted_states,
    dead_data_starts,
    dead_data_starts_batch,
    entry_note,
    entry_note_mask,
    entry_problem_masks,
    entry_problems,
    judge_zonedmeta,
    judge_zonedmeta_plain,
    persisted_zone_batch,
    persisted_zone_report,
)

SECTOR = 512
INT64_MAX = 2**63 - 1  # dead-data starts are int64: the largest one shown
STAND_IN_START = 2**63  # zones starting at or past it show this start (reference.zones)


@st.composite
def tables(draw: st.DrawFn) -> tuple[dict[str, int | bytes], list[int]]:
    """A sound zone geometry (what the checker reads a table under) and a table mixing
    sound entries with every kind of broken one, sometimes far past 2^63 in start."""
    zone_bits = draw(st.integers(9, 62))
    zone_size = 1 << zone_bits
    nr_zones = draw(st.integers(1, 40))
    conventional = draw(st.integers(0, nr_zones))
    short_last = draw(st.integers(0, zone_size - 1)) // SECTOR * SECTOR
    virtual_size = nr_zones * zone_size - short_last
    capacity = draw(st.integers(1, zone_size // SECTOR)) * SECTOR
    fields: dict[str, int | bytes] = {
        "zone_size": zone_size, "zone_capacity": capacity, "conventional_zones": conventional,
        "virtual_size": virtual_size, "nr_zones": nr_zones,
    }
    entries = []
    for index in range(nr_zones):
        start = index * zone_size
        kind = draw(st.sampled_from(["sound", "edge", "random", "swapped"]))
        if kind == "random":
            entries.append(draw(st.integers(0, 2**64 - 1)))
            continue
        flag = CONVENTIONAL_FLAG if index < conventional else 0
        if kind == "edge":
            flag = draw(st.sampled_from([0, CONVENTIONAL_FLAG, 1 << 61]))
        offset = draw(st.sampled_from([0, SECTOR, capacity, zone_size, zone_size + SECTOR,
                                       7, -SECTOR, capacity - SECTOR]))
        wp = max(start + offset, 0) if flag != CONVENTIONAL_FLAG else start
        entry = (wp & (CONVENTIONAL_FLAG - 1)) | flag
        if kind == "swapped":
            entry = int.from_bytes(entry.to_bytes(8, "big"), "little")
        entries.append(entry)
    return fields, entries


def batches(entries: list[int], size: int) -> list[tuple[int, np.ndarray]]:
    return [(first, np.array(entries[first:first + size], dtype=np.uint64))
            for first in range(0, len(entries), size)]


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(1, 9))
def test_entry_masks_agree_with_entry_problems(table: tuple[dict[str, int | bytes],
                                                            list[int]], size: int) -> None:
    fields, entries = table
    for first, batch in batches(entries, size):
        masks = entry_problem_masks(fields, first, batch)
        notes = entry_note_mask(fields, first, batch)
        starts = dead_data_starts_batch(fields, first, batch)
        for offset, entry in enumerate(batch.tolist()):
            index = first + offset
            scalar = {clause for clause, _ in entry_problems(fields, index, entry)}
            assert {clause for clause, mask in masks.items() if mask[offset]} == scalar
            assert bool(notes[offset]) == (entry_note(fields, index, entry) is not None)
        expected = dead_data_starts(fields, entries)[first:first + batch.size]
        assert starts.tolist() == [min(start, INT64_MAX) for start in expected]


@settings(max_examples=300, deadline=None)
@given(tables(), st.integers(1, 9))
def test_table_verdict_batched_equals_plain(table: tuple[dict[str, int | bytes], list[int]],
                                           size: int) -> None:
    fields, entries = table
    assert judge_zonedmeta(fields, batches(entries, size)) == judge_zonedmeta_plain(
        fields, entries)


def test_little_endian_table_is_one_wp2_verdict() -> None:
    zone_size = 1 << 20
    fields: dict[str, int | bytes] = {"zone_size": zone_size, "zone_capacity": zone_size,
                                      "conventional_zones": 1, "virtual_size": 8 * zone_size}
    sound = [CONVENTIONAL_FLAG] + [i * zone_size + 4096 for i in range(1, 8)]
    swapped = [int.from_bytes(e.to_bytes(8, "big"), "little") for e in sound]
    plain = judge_zonedmeta_plain(fields, swapped)
    assert plain.little_endian and not plain.problems
    assert judge_zonedmeta(fields, batches(swapped, 3)) == plain
    assert not judge_zonedmeta(fields, batches(sound, 3)).little_endian


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 50),
       st.integers(0, 2**62), st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=30),
       st.integers(1, 9))
def test_persisted_rows_agree(zone_size: int, capacity: int, conventional: int,
                              virtual_size: int, raw: list[int], size: int) -> None:
    """Any geometry, even one the checker refuses (info shows every table)."""
    entries = [e if e % 3 else (i * zone_size + e % zone_size if zone_size else 0)
               | (CONVENTIONAL_FLAG if e % 5 == 0 else 0) for i, e in enumerate(raw)]
    scalar = persisted_zone_report(zone_size, capacity, conventional, virtual_size, entries)
    rows = []
    for first, batch in batches(entries, size):
        arrays = persisted_zone_batch(zone_size, capacity, conventional, virtual_size, first,
                                      batch)
        for at in range(batch.size):
            rows.append({
                "index": int(arrays["index"][at]), "start": int(arrays["start"][at]),
                "capacity": int(arrays["capacity"][at]),
                "type": "conventional" if arrays["conventional"][at] else "sequential",
                "state": PERSISTED_STATES[arrays["state"][at]], "wp": int(arrays["wp"][at])})
    assert rows == scalar
    counts = count_persisted_states(zone_size, capacity, conventional, virtual_size,
                                    batches(entries, size))
    assert counts == {state: n for state in PERSISTED_STATES
                      if (n := sum(row["state"] == state for row in scalar))}


# Zone sizes whose multiples land just below, on and just past 2^63: a power of two, a
# divisor of 2^63 - 1, of 2^63 + 1, and one whose 2^63 / size rounds up as a float.
ZONE_SIZES_NEAR_2_63 = [2**62, 2**63, 2**64 - 1, (2**63 - 1) // 7, (2**63 + 1) // 3,
                        2**62 + 1]


def _rows(arrays: dict[str, np.ndarray]) -> list[dict[str, int | str]]:
    return [{"index": int(arrays["index"][at]), "start": int(arrays["start"][at]),
             "capacity": int(arrays["capacity"][at]),
             "type": "conventional" if arrays["conventional"][at] else "sequential",
             "state": PERSISTED_STATES[arrays["state"][at]], "wp": int(arrays["wp"][at])}
            for at in range(arrays["index"].size)]


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(2**58, 2**64 - 1), st.sampled_from(ZONE_SIZES_NEAR_2_63)),
       st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([2**63, 2**64 - 1])),
       st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([2**63, 2**64 - 1])),
       st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=10), st.integers(1, 4))
def test_persisted_rows_of_u64_geometries(zone_size: int, capacity: int, virtual_size: int,
                                          raw: list[int], size: int) -> None:
    """zone_size, zone_capacity and the virtual size are u64: rows agree wherever a start
    fits below 2^63; past it the stand-in start is shown (its capacity is not compared)."""
    entries = [e if e % 3 else (e % 2**20) | (CONVENTIONAL_FLAG if e % 2 else 0) for e in raw]
    scalar = persisted_zone_report(zone_size, capacity, 0, virtual_size, entries)
    rows = [row for first, batch in batches(entries, size)
            for row in _rows(persisted_zone_batch(zone_size, capacity, 0, virtual_size, first,
                                                  batch))]
    for row, expected in zip(rows, scalar, strict=True):
        if int(expected["start"]) >= STAND_IN_START:
            assert row["start"] == STAND_IN_START
            row = {**row, "start": expected["start"], "capacity": expected["capacity"]}
        assert row == expected


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_batches_anywhere_in_the_longest_table(data: st.DataObject) -> None:
    """A window of a table of up to MAX_NR_ZONES zones (ZONE-10), around the end of its
    conventional zones and the first zone starting at or past 2^63."""
    zone_size = 1 << data.draw(st.integers(9, 63))
    nr_zones = data.draw(st.integers(1, MAX_NR_ZONES))
    conventional = data.draw(st.integers(0, nr_zones - 1))
    first_stand_in = -(-STAND_IN_START // zone_size)
    around = data.draw(st.sampled_from([conventional, first_stand_in, nr_zones, 0]))
    count = data.draw(st.integers(1, 8))
    first = min(max(around - data.draw(st.integers(0, count)), 0), max(nr_zones - count, 0))
    count = min(count, nr_zones - first)
    capacity = data.draw(st.integers(1, zone_size // SECTOR)) * SECTOR
    fields: dict[str, int | bytes] = {
        "zone_size": zone_size, "zone_capacity": capacity, "conventional_zones": conventional,
        "virtual_size": min(nr_zones * zone_size, 2**64 - 1), "nr_zones": nr_zones}
    entries = []
    for index in range(first, first + count):
        wp = (index * zone_size + data.draw(st.sampled_from([0, SECTOR, capacity, 7])))
        flag = data.draw(st.sampled_from([0, CONVENTIONAL_FLAG, 1 << 60]))
        entries.append((wp % CONVENTIONAL_FLAG) | flag)
    batch = np.array(entries, dtype=np.uint64)
    masks = entry_problem_masks(fields, first, batch)
    notes = entry_note_mask(fields, first, batch)
    for offset, entry in enumerate(entries):
        index = first + offset
        assert {c for c, mask in masks.items() if mask[offset]} == {
            c for c, _ in entry_problems(fields, index, entry)}, (index, hex(entry))
        assert bool(notes[offset]) == (entry_note(fields, index, entry) is not None)


def test_a_verdict_counts_every_zone_names_the_first_and_orders_by_first_zone() -> None:
    zone_size = 1 << 20
    fields: dict[str, int | bytes] = {"zone_size": zone_size, "zone_capacity": zone_size,
                                      "conventional_zones": 0, "virtual_size": 8 * zone_size}
    fields["virtual_size"] = 16 * zone_size
    # WP-7 (unaligned) at zones 2, 11, 12, 13 and 14; WP-6 (outside) at zone 10 only: by
    # first zone WP-7 comes first, though its last zone and "zone 2" sort after WP-6's.
    entries = [index * zone_size for index in range(16)]
    for index in (2, 11, 12, 13, 14):
        entries[index] += 7
    entries[10] = 12 * zone_size
    for verdict in (judge_zonedmeta_plain(fields, entries, examples=2),
                    judge_zonedmeta(fields, batches(entries, 3), examples=2)):
        assert [(t.clause, t.count, t.first) for t in verdict.problems] == [
            ("WP-7", 5, 2), ("WP-6", 1, 10)]
        assert [zone for zone, _ in verdict.problems[0].examples] == [2, 11]


def test_a_zone_starting_at_2_63_is_not_reached_by_a_wrapped_wp() -> None:
    """zone_size 2^63: zone 1 starts at 2^63, and a wp of 0 lies below it (WP-6), though
    0 - 2^63 wraps to 2^63 as a uint64, which is within a zone size."""
    fields: dict[str, int | bytes] = {"zone_size": 2**63, "zone_capacity": 2**63,
                                      "conventional_zones": 0, "virtual_size": 2**64 - 1}
    entries = [0, 0]
    assert {c for c, _ in entry_problems(fields, 1, 0)} == {"WP-6"}
    masks = entry_problem_masks(fields, 0, np.array(entries, dtype=np.uint64))
    assert [c for c, mask in masks.items() if mask[1]] == ["WP-6"]


def test_a_batch_adds_only_the_examples_still_wanted() -> None:
    zone_size = 1 << 20
    fields: dict[str, int | bytes] = {"zone_size": zone_size, "zone_capacity": zone_size,
                                      "conventional_zones": 0, "virtual_size": 12 * zone_size}
    entries = [index * zone_size + (7 if index in (2, 9, 10, 11) else 0)
               for index in range(12)]
    verdict = judge_zonedmeta(fields, batches(entries, 3), examples=2)
    assert [(t.clause, t.count, [z for z, _ in t.examples]) for t in verdict.problems] == [
        ("WP-7", 4, [2, 9])]
