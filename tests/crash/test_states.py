"""Epochs, enumeration counts and incremental replay on small hand-made logs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from qcow2harness.crash.states import (
    CrashState,
    Replayer,
    enumerate_states,
    epochs_of,
    full_replay,
)
from qcow2harness.dmlog import LogEntry, LogWriter, read_log
from qcow2harness.errors import UsageError

S = 512


def make_log(path: Path) -> list[LogEntry]:
    """epoch 0: 2 writes | epoch 1: 3 writes (two overlap) + discard | epoch 2: 1 write."""
    with LogWriter(path, S) as log:
        log.write(0, b"\x01" * S)
        log.write(4, b"\x02" * 2 * S)
        log.flush()
        log.mark("op")
        log.write(2, b"\x03" * 4 * S)
        log.write(3, b"\x04" * S)
        log.discard(4, 1)
        log.write(20, b"\x05" * 3 * S)  # extends the file
        log.flush()
        log.write(1, b"\x06" * S)
    return list(read_log(path))


def test_epochs_split_at_flushes(tmp_path: Path) -> None:
    entries = make_log(tmp_path / "log")
    epochs = epochs_of(entries)
    assert [len(e.writes) for e in epochs] == [2, 4, 1]
    assert [entries[e.end].is_flush for e in epochs[:2]] == [True, True]
    assert epochs[2].end == len(entries)


def test_exhaustive_counts(tmp_path: Path) -> None:
    entries = make_log(tmp_path / "log")
    epochs = epochs_of(entries)
    states, exhaustive = enumerate_states(epochs, entries, max_states=100)
    assert exhaustive
    assert len(states) == 2**2 + 2**4 + 2**1
    assert len({s.id for s in states}) == len(states)
    torn, _ = enumerate_states(epochs, entries, max_states=100, torn=True)
    # tears: epoch 0 write 1 (2 sectors: keep 1), epoch 1 write 0 (4: 1, 2, 3) and
    # write 3 (3 sectors: 1, 2)
    assert len(torn) - len(states) == 1 + 3 + 2


def test_sampling_is_bounded_and_seeded(tmp_path: Path) -> None:
    entries = make_log(tmp_path / "log")
    epochs = epochs_of(entries)
    first, exhaustive = enumerate_states(epochs, entries, max_states=9, seed=7)
    again, _ = enumerate_states(epochs, entries, max_states=9, seed=7)
    other, _ = enumerate_states(epochs, entries, max_states=9, seed=8)
    assert not exhaustive and len(first) <= 9
    assert first == again
    assert first != other
    assert all(CrashState(e.index, ()) in first for e in epochs), "empty subsets come first"


def test_state_names_round_trip() -> None:
    for state in (CrashState(3, (0, 1, 2, 5)), CrashState(0, ()), CrashState(2, (0,), (1, 3))):
        assert CrashState.parse(state.id) == state
    assert CrashState(3, (0, 1, 2, 5)).id == "3:0-2,5"
    with pytest.raises(UsageError):
        CrashState.parse("nonsense")


def digest(path: str) -> str:
    with open(path, "rb") as stream:
        return hashlib.sha256(stream.read()).hexdigest()


def test_incremental_replay_equals_full_replay(tmp_path: Path) -> None:
    entries = make_log(tmp_path / "log")
    epochs = epochs_of(entries)
    base = tmp_path / "base"
    base.write_bytes(b"\xee" * 8 * S)
    states, _ = enumerate_states(epochs, entries, max_states=100, torn=True)
    with Replayer(str(base), entries, epochs, S, str(tmp_path / "work")) as replayer:
        for state in states:
            got = replayer.goto(state)
            want = full_replay(str(base), entries, epochs, S, state, str(tmp_path / "full"))
            assert os.path.getsize(got) == os.path.getsize(want), state.id
            assert digest(got) == digest(want), state.id
        written = replayer.bytes_written
    assert written < len(states) * os.path.getsize(tmp_path / "full"), "no full copies"
