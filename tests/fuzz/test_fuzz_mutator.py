"""The structure-aware mutator: always bytes, bounded, deterministic, mostly well-formed."""

from __future__ import annotations

import random

from qcow2harness.fuzz import mutator

from qcow2harness.image import Image


def test_always_bytes_within_max_size(seed_bytes: list[bytes]) -> None:
    rng = random.Random(7)
    inputs = [b"", b"Q", bytes(7), b"QFI\xfb", bytes(range(256)) * 3, *seed_bytes]
    for _ in range(600):
        data = rng.choice(inputs)
        max_size = rng.choice((1, 8, 100, 4096, 1 << 20))
        out = mutator.mutate(data, max_size, rng.randrange(1 << 32))
        assert isinstance(out, bytes) and len(out) <= max_size


def test_deterministic_in_its_arguments(seed_bytes: list[bytes]) -> None:
    for data in seed_bytes[:5]:
        assert mutator.mutate(data, 1 << 20, 1234) == mutator.mutate(data, 1 << 20, 1234)


def test_keeps_magic_and_version_most_of_the_time(seed_bytes: list[bytes]) -> None:
    rng = random.Random(11)
    valid = parsed = total = 0
    for _ in range(1000):
        data = rng.choice(seed_bytes)
        for _depth in range(rng.randrange(1, 4)):  # libFuzzer chains mutations
            data = mutator.mutate(data, 1 << 20, rng.randrange(1 << 32))
        total += 1
        valid += data[:4] == b"QFI\xfb" and int.from_bytes(data[4:8], "big") in (2, 3)
        try:
            Image.from_bytes(data)
            parsed += 1
        except Exception:  # noqa: BLE001 - counting only
            pass
    assert valid / total > 0.85, valid / total
    assert parsed / total > 0.8, parsed / total


def test_layout_covers_every_structure(seed_files: list) -> None:
    roles = set()
    for path in seed_files:
        layout = mutator.layout_of(path.read_bytes())
        assert layout is not None, path
        roles |= {f.role.split(":")[0] for f in layout.fields}
    assert {"header", "ext-length", "ext-magic", "zoned", "l1", "l2", "reftable", "refcount",
            "wp", "snapshot", "bitmaps"} <= roles


def test_mutations_change_fields_not_everything(seed_bytes: list[bytes]) -> None:
    data = seed_bytes[0]
    changed = [sum(a != b for a, b in zip(data, mutator.mutate(data, 1 << 20, s), strict=False))
               for s in range(200)]
    assert sum(1 for c in changed if 0 < c <= 24) > 100  # mostly a field or three
