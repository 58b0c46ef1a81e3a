"""Crash states from a dm-log-writes log (the CrashMonkey/B3 and ALICE model).

- An **epoch** is the run of writes (and discards) between two FLUSH entries; the
  last epoch runs to the end of the log.
- A **crash state** in epoch k holds every write of epochs 0..k-1 and any subset of
  epoch k's writes: a flush orders nothing inside an epoch, so a power cut may keep
  any of them. With `torn=True` a write may also be cut short: its first s sectors
  reach the file and the rest do not (ALICE's prefix tear), for s = 1, n/2 and n-1.
- FUA writes are treated as ordinary writes of their epoch. That admits more states
  than a device would (a completed FUA write cannot be lost), so it can only add
  false alarms, never hide a bug; QEMU 7.2's qcow2 issues none in these workloads.

States are named `E:LIST[+P/S]`: epoch E, the positions (within the epoch, in log
order) of the writes applied as ranges like `0-3,5`, and optionally write P torn to
its first S sectors. `--state` takes this name back.

Enumeration is exhaustive while the total stays under `max_states`; otherwise each
epoch gets a share of the budget (its empty and full subsets first, then subsets
drawn from a `random.Random(seed)`), so the same seed gives the same states.

`Replayer` derives each state from the previous one: whole epochs are written once,
and moving between subsets of the current epoch restores only the ranges the
previous subset touched (from pre-images taken when the epoch was entered) and
writes the new subset's entries.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from qcow2harness.dmlog import LogEntry
from qcow2harness.errors import UsageError

EXHAUSTIVE_BITS = 16  # epochs with more writes are always sampled


@dataclass(frozen=True)
class Epoch:
    index: int
    start: int  # log index of its first entry
    end: int  # log index of the FLUSH that closes it (len(entries) for the last one)
    writes: tuple[int, ...]  # log indexes of its writes and discards


def epochs_of(entries: Sequence[LogEntry], first: int = 0) -> list[Epoch]:
    """Split entries[first:] at FLUSH entries."""
    out: list[Epoch] = []
    start = first
    writes: list[int] = []
    for entry in entries[first:]:
        if entry.is_write or entry.is_discard:
            writes.append(entry.index)
        if entry.is_flush:
            out.append(Epoch(len(out), start, entry.index, tuple(writes)))
            start, writes = entry.index + 1, []
    out.append(Epoch(len(out), start, len(entries), tuple(writes)))
    return out


@dataclass(frozen=True, order=True)
class CrashState:
    epoch: int
    applied: tuple[int, ...]  # positions in the epoch's writes
    torn: tuple[int, int] | None = None  # (position, sectors kept)

    @property
    def id(self) -> str:
        text = f"{self.epoch}:{_ranges(self.applied)}"
        if self.torn is not None:
            text += f"+{self.torn[0]}/{self.torn[1]}"
        return text

    @classmethod
    def parse(cls, text: str) -> CrashState:
        try:
            epoch, rest = text.split(":", 1)
            torn = None
            if "+" in rest:
                rest, tear = rest.split("+", 1)
                position, sectors = tear.split("/")
                torn = (int(position), int(sectors))
            applied: list[int] = []
            for part in filter(None, rest.split(",")):
                lo, _, hi = part.partition("-")
                applied.extend(range(int(lo), int(hi or lo) + 1))
            return cls(int(epoch), tuple(sorted(set(applied))), torn)
        except ValueError:
            raise UsageError(f"not a crash state name: {text!r} (want E:LIST[+P/S])") from None


def _ranges(values: Sequence[int]) -> str:
    parts: list[str] = []
    index = 0
    while index < len(values):
        run = index
        while run + 1 < len(values) and values[run + 1] == values[run] + 1:
            run += 1
        lo, hi = values[index], values[run]
        parts.append(str(lo) if lo == hi else f"{lo}-{hi}")
        index = run + 1
    return ",".join(parts)


def _gray(n: int) -> Iterator[tuple[int, ...]]:
    """All subsets of range(n), each differing from the previous by one element."""
    for i in range(1 << n):
        code = i ^ (i >> 1)
        yield tuple(b for b in range(n) if code >> b & 1)


def _tears(epoch: Epoch, entries: Sequence[LogEntry]) -> Iterator[CrashState]:
    for position, index in enumerate(epoch.writes):
        entry = entries[index]
        n = entry.nr_sectors
        if not entry.is_write or n < 2:
            continue
        for kept in sorted({1, n // 2, n - 1}):
            yield CrashState(epoch.index, tuple(range(position)), (position, kept))


def enumerate_states(
    epochs: Sequence[Epoch],
    entries: Sequence[LogEntry],
    *,
    max_states: int,
    seed: int = 0,
    torn: bool = False,
) -> tuple[list[CrashState], bool]:
    """The states to check, and whether they are all the states there are."""
    sizes = [len(e.writes) for e in epochs]
    tears = [list(_tears(e, entries)) if torn else [] for e in epochs]
    total = sum((1 << n if n <= 62 else 1 << 62) + len(t)
                for n, t in zip(sizes, tears, strict=True))
    if total <= max_states and max(sizes, default=0) <= EXHAUSTIVE_BITS:
        states = [CrashState(e.index, subset) for e in epochs for subset in _gray(len(e.writes))]
        states += [t for group in tears for t in group]
        return sorted(states, key=lambda s: (s.epoch, s.torn is not None)), True
    rng = random.Random(seed)
    weights = [min(1 << min(n, 20), 1 << 20) + len(t) for n, t in zip(sizes, tears, strict=True)]
    budget_left = max_states
    sampled: list[CrashState] = []
    for epoch, n, weight, tear in zip(epochs, sizes, weights, tears, strict=True):
        share = max(2, max_states * weight // sum(weights))
        share = min(share, budget_left)
        chosen: dict[tuple[int, ...], None] = {}
        for subset in ((), tuple(range(n))):
            if len(chosen) < share:
                chosen[subset] = None
        possible = (1 << n) if n <= 62 else 1 << 62
        while len(chosen) < min(share, possible):
            chosen[tuple(i for i in range(n) if rng.random() < 0.5)] = None
        picked = [CrashState(epoch.index, subset) for subset in chosen]
        room = share - len(picked)
        if room > 0 and tear:
            picked += tear if len(tear) <= room else rng.sample(tear, room)
        sampled += sorted(picked, key=lambda s: (s.torn is not None, s.applied))
        budget_left -= len(picked)
        if budget_left <= 0:
            break
    return sampled, False


class Replayer:
    """Rebuilds crash states in one working file, each from the previous one."""

    def __init__(
        self, base: str, entries: Sequence[LogEntry], epochs: Sequence[Epoch],
        sectorsize: int, work: str,
    ) -> None:
        self.entries = entries
        self.epochs = epochs
        self.sectorsize = sectorsize
        self.path = work
        shutil.copyfile(base, work)
        self._fd = os.open(work, os.O_RDWR)
        self._done = 0  # epochs [0, _done) are fully in the file
        self._prefix_size = os.fstat(self._fd).st_size
        self._pre: dict[int, bytes] = {}  # epoch write position -> bytes under it
        self._current: list[tuple[int, int]] = []  # (position, sectors) now applied
        self.bytes_written = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Replayer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _span(self, index: int) -> tuple[int, int]:
        entry = self.entries[index]
        return entry.sector * self.sectorsize, entry.nr_sectors * self.sectorsize

    def _write_entry(self, index: int, sectors: int | None = None) -> None:
        entry = self.entries[index]
        offset, length = self._span(index)
        if sectors is not None:
            length = min(length, sectors * self.sectorsize)
        data = entry.data[:length] if entry.is_write else bytes(length)
        os.pwrite(self._fd, data, offset)
        self.bytes_written += len(data)

    def _restore(self) -> None:
        for position, _ in self._current:
            offset, _length = self._span(self.epochs[self._done].writes[position])
            os.pwrite(self._fd, self._pre[position], offset)
            self.bytes_written += len(self._pre[position])
        self._current = []
        os.ftruncate(self._fd, self._prefix_size)

    def _advance(self) -> None:
        """Write the whole current epoch and move on to the next."""
        self._restore()
        for index in self.epochs[self._done].writes:
            self._write_entry(index)
        self._done += 1
        self._pre = {}
        self._prefix_size = os.fstat(self._fd).st_size

    def changed(self) -> list[tuple[int, int]]:
        """Host ranges (offset, length) where the file now differs from the epoch prefix."""
        epoch = self.epochs[self._done] if self._done < len(self.epochs) else None
        out = []
        for position, sectors in self._current:
            assert epoch is not None
            offset, length = self._span(epoch.writes[position])
            if sectors >= 0:
                length = min(length, sectors * self.sectorsize)
            out.append((offset, length))
        return out

    def goto(self, state: CrashState) -> str:
        """Make the working file hold `state`; its path."""
        if state.epoch < self._done:
            raise UsageError("states must come in epoch order")
        if state.epoch >= len(self.epochs):
            raise UsageError(f"state {state.id}: the log has only {len(self.epochs)} epochs")
        while self._done < state.epoch:
            self._advance()
        epoch = self.epochs[state.epoch]
        wanted = [(p, -1) for p in state.applied]
        if state.torn is not None:
            wanted.append(state.torn)
        for position, _ in wanted:
            if position >= len(epoch.writes):
                raise UsageError(f"state {state.id}: epoch {epoch.index} has only "
                                 f"{len(epoch.writes)} writes")
        wanted.sort()
        if wanted == self._current:
            return self.path
        self._restore()
        for position, _ in wanted:
            if position not in self._pre:
                offset, length = self._span(epoch.writes[position])
                under = os.pread(self._fd, length, offset)
                self._pre[position] = under  # may be short past the end of the file
        end = self._prefix_size
        for position, sectors in wanted:
            index = epoch.writes[position]
            self._write_entry(index, None if sectors < 0 else sectors)
            offset, length = self._span(index)
            if sectors >= 0:
                length = min(length, sectors * self.sectorsize)
            end = max(end, offset + length)
        os.ftruncate(self._fd, end)
        self._current = wanted
        return self.path


def full_replay(base: str, entries: Sequence[LogEntry], epochs: Sequence[Epoch],
                sectorsize: int, state: CrashState, out: str) -> str:
    """Build one state from a fresh copy of the base (no incremental tricks)."""
    shutil.copyfile(base, out)
    with open(out, "r+b") as stream:
        for epoch in epochs[: state.epoch]:
            for index in epoch.writes:
                _apply(stream, entries[index], sectorsize, None)
        epoch = epochs[state.epoch]
        chosen: list[tuple[int, int | None]] = [(p, None) for p in state.applied]
        if state.torn is not None:
            chosen.append(state.torn)
        for position, sectors in sorted(chosen, key=lambda c: c[0]):
            _apply(stream, entries[epoch.writes[position]], sectorsize, sectors)
    return out


def _apply(stream: object, entry: LogEntry, sectorsize: int, sectors: int | None) -> None:
    import io

    assert isinstance(stream, io.BufferedRandom)
    length = entry.nr_sectors * sectorsize
    if sectors is not None:
        length = min(length, sectors * sectorsize)
    stream.seek(entry.sector * sectorsize)
    stream.write(entry.data[:length] if entry.is_write else bytes(length))


__all__ = ["CrashState", "Epoch", "Replayer", "enumerate_states", "epochs_of", "full_replay"]
