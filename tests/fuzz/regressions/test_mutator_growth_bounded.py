"""Regression (the harness itself): the mutator grew inputs by one cluster, and a mutated
cluster_bits of 32 made that 4 GiB. Found by the first uninstrumented mutate/replay loop
(peak RSS +4 GiB); fixed in fuzz/mutator.py: growth is capped at 64 KiB and at max_size."""

from __future__ import annotations

import random
import resource

from qcow2harness.fuzz import mutator


def test_growth_is_bounded_whatever_cluster_bits_says(seed_bytes: list[bytes]) -> None:
    data = bytearray(min(seed_bytes, key=len))
    data[20:24] = (32).to_bytes(4, "big")  # 4 GiB clusters
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rng = random.Random(3)
    for _ in range(300):
        out = mutator.mutate(bytes(data), 1 << 20, rng.randrange(1 << 32))
        assert len(out) <= len(data) + mutator.MAX_GROWTH
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64
