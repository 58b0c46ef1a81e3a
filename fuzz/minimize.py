"""Shrinking a finding's input while it still fails the same way.

qcow2 is reached by offsets, so deleting bytes from the middle moves every structure
behind the cut and rarely keeps a finding. The two passes keep offsets instead:

1. cut the tail (halves, then smaller chunks) — a crasher seldom needs the data clusters;
2. zero chunks, from 4 KiB down to single bytes (delta debugging over positions), so
   that only the bytes that matter stay non-zero.

`still_fails(candidate)` decides; it should compare the finding kind and signature,
not just "some finding" (see `same_finding`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qcow2harness.fuzz.targets import Bounds, Finding, Target, execute

CHUNKS = (4096, 512, 64, 8, 1)


def same_finding(target: Target, original: Finding,
                 bounds: Bounds | None = None) -> Callable[[bytes], bool]:
    """A predicate: the candidate fails with the original's kind, category and site
    (`site_signature`: a reader that dies of another signal, or at another frame, is
    another finding). The field is not compared: a shrunk input differs from the seed
    everywhere. slow and oom only need the same kind; the campaign classifies the
    minimized input again and names it for what it does (fuzz/campaign.py)."""

    def predicate(candidate: bytes) -> bool:
        found = execute(target, candidate, bounds)
        return found is not None and found.kind == original.kind and (
            found.site_signature == original.site_signature
            or original.kind in ("slow", "oom"))

    return predicate


def minimize(data: bytes, still_fails: Callable[[bytes], bool], *,
             seconds: float = 30.0, max_tests: int = 5000) -> bytes:
    """The smallest (then the most zeroed) input found within the budget."""
    deadline = time.monotonic() + seconds
    tests = 0
    best = bytes(data)

    def attempt(candidate: bytes) -> bool:
        nonlocal tests, best
        if tests >= max_tests or time.monotonic() > deadline:
            return False
        tests += 1
        if still_fails(candidate):
            best = candidate
            return True
        return False

    chunk = max(1, len(best) // 2)
    while chunk >= 1 and tests < max_tests and time.monotonic() < deadline:
        if len(best) > chunk and attempt(best[:-chunk]):
            continue
        chunk //= 2
    for size in CHUNKS:
        position = 0
        while position < len(best):
            if tests >= max_tests or time.monotonic() > deadline:
                return best
            window = best[position:position + size]
            if any(window):
                attempt(best[:position] + bytes(len(window)) + best[position + size:])
            position += size
    return best
