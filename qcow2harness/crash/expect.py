"""What a plain (non-zoned) guest disk may read after a crash: the data oracle's model.

Each guest byte range carries the set of byte values it may hold. A write of fill P
makes a range {P}; write-zeroes makes it {0}; a discard adds 0 to what was there
(discarded data may read as zeros or as before); growing the disk adds a zero range.

For a crash at a point T (see campaign.py), with g the last guest flush acknowledged
before T, the allowed bytes are those after op g, widened by every op that may have
started before T: each such op adds its value to the set of the range it touches.
Ranges no later op touches must therefore read back exactly (PERS-5); the others read
old or new, byte by byte, and never a value no op wrote there.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Sequence

from .workload import Op

Values = frozenset[int]
ZERO: Values = frozenset({0})


class Ranges:
    """A partition of [0, size) into intervals, each with a set of allowed byte values."""

    def __init__(self, size: int, value: Values = ZERO) -> None:
        self.size = size
        self.sizes: set[int] = {size}  # virtual sizes the disk may have (a resize in flight)
        self._starts = [0]
        self._values = [value]

    def copy(self) -> Ranges:
        other = Ranges(self.size)
        other._starts = list(self._starts)
        other._values = list(self._values)
        other.sizes = set(self.sizes)
        return other

    def _split(self, at: int) -> int:
        """Make `at` an interval start (0 < at < size); its index."""
        index = bisect.bisect_right(self._starts, at) - 1
        if self._starts[index] != at:
            self._starts.insert(index + 1, at)
            self._values.insert(index + 1, self._values[index])
            index += 1
        return index

    def update(self, offset: int, end: int, change: Callable[[Values], Values]) -> None:
        end = min(end, self.size)
        if end <= offset:
            return
        lo = self._split(offset)
        hi = self._split(end) if end < self.size else len(self._starts)
        for index in range(lo, hi):
            self._values[index] = change(self._values[index])
        self._merge()

    def resize(self, size: int) -> None:
        if size > self.size:
            if self._values[-1] == ZERO:
                self.size = size
                return
            self._starts.append(self.size)
            self._values.append(ZERO)
        elif size < self.size:
            index = bisect.bisect_left(self._starts, size)
            del self._starts[max(index, 1):]
            del self._values[max(index, 1):]
        self.size = size

    def _merge(self) -> None:
        starts, values = [self._starts[0]], [self._values[0]]
        for start, value in zip(self._starts[1:], self._values[1:], strict=True):
            if value == values[-1]:
                continue
            starts.append(start)
            values.append(value)
        self._starts, self._values = starts, values

    def __iter__(self) -> Iterator[tuple[int, int, Values]]:
        ends = [*self._starts[1:], self.size]
        return iter(zip(self._starts, ends, self._values, strict=True))


def apply_op(ranges: Ranges, op: Op, *, widen: bool = False) -> None:
    """Change `ranges` by one op; with `widen` the op's value joins the old ones."""
    end = op.offset + op.length

    def put(value: Values) -> Callable[[Values], Values]:
        return (lambda old: old | value) if widen else (lambda old: value)

    if op.kind in ("write", "compress"):
        ranges.update(op.offset, end, put(frozenset({op.fill})))
    elif op.kind in ("zero", "zero_unmap"):
        ranges.update(op.offset, end, put(ZERO))
    elif op.kind == "discard":
        ranges.update(op.offset, end, lambda old: old | ZERO)
    elif op.kind == "truncate":
        if op.length > ranges.size:
            ranges.resize(op.length)
        ranges.sizes = (ranges.sizes | {op.length}) if widen else {op.length}


def _constant(value: Values) -> Callable[[Values], Values]:
    return lambda _old: value


class GuestModel:
    """The allowed contents after each op of a workload (index 0: before any op)."""

    def __init__(self, size: int, initial: Iterable[tuple[int, int, int]], ops: Sequence[Op]):
        start = Ranges(size)
        for offset, length, fill in initial:
            start.update(offset, offset + length, _constant(frozenset({fill})))
        self.ops = list(ops)
        self.after = [start]
        for op in self.ops:
            state = self.after[-1].copy()
            apply_op(state, op)
            self.after.append(state)

    def expectation(self, durable_ops: int, touching: Iterable[int]) -> Ranges:
        """Allowed bytes when ops[:durable_ops] are durable and `touching` may be there."""
        ranges = self.after[durable_ops].copy()
        for index in sorted(touching):
            if index >= durable_ops:
                apply_op(ranges, self.ops[index], widen=True)
        return ranges


__all__ = ["GuestModel", "Ranges", "Values", "ZERO", "apply_op"]
