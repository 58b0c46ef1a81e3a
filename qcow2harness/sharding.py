"""Shards: `--shard I/N` splits a campaign into N deterministic, disjoint parts.

I runs from 0 to N-1. Every campaign kind (crash, fuzz, properties) cuts its work
with the helpers here, and every shard result carries digests that let
`qcow2-harness merge` prove the shards were disjoint and complete:

- `id_digest(ids)` is the XOR of SHA-256 of each id: order-free, so the digest of a
  union of disjoint parts is the XOR of the parts' digests (`xor_digests`).
- A shard records the digest of its own part and of the whole it was cut from; the
  merge XORs the parts and compares with the whole.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from qcow2harness.errors import UsageError

T = TypeVar("T")
ZERO_DIGEST = "0" * 64
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """'I/N' with 0 <= I < N."""
        match = _SHARD.fullmatch(text)
        if not match:
            raise UsageError(f"--shard wants I/N (e.g. 0/3), not {text!r}")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 0 <= index < count:
            raise UsageError(f"--shard {text}: I must run from 0 to N-1 (N >= 1)")
        return cls(index, count)

    @property
    def whole(self) -> bool:
        return self.count == 1

    def bounds(self, total: int) -> tuple[int, int]:
        """[lo, hi) of this shard's contiguous, balanced part of `total` items."""
        return self.index * total // self.count, (self.index + 1) * total // self.count

    def contiguous(self, items: Sequence[T]) -> list[T]:
        lo, hi = self.bounds(len(items))
        return list(items[lo:hi])

    def owns(self, number: int) -> bool:
        """Round-robin ownership of item `number` (rounds, campaigns, seed files)."""
        return number % self.count == self.index

    def round_robin(self, items: Iterable[T]) -> list[T]:
        return [item for number, item in enumerate(items) if self.owns(number)]

    def label(self) -> str:
        return f"{self.index}/{self.count}"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count}


WHOLE = Shard(0, 1)


def id_digest(ids: Iterable[str]) -> str:
    """XOR of SHA-256(id) over `ids`: equal sets give equal digests, in any order."""
    value = 0
    for item in ids:
        value ^= int.from_bytes(hashlib.sha256(item.encode()).digest(), "big")
    return f"{value:064x}"


def xor_digests(digests: Iterable[str]) -> str:
    value = 0
    for digest in digests:
        value ^= int(digest, 16)
    return f"{value:064x}"


def _shard_argument(text: str) -> Shard:
    import argparse

    try:
        return Shard.parse(text)
    except UsageError as error:
        raise argparse.ArgumentTypeError(error.message) from None


def add_shard_argument(parser: Any, what: str) -> None:
    """--shard I/N, with the same help everywhere."""
    parser.add_argument("--shard", type=_shard_argument, default=WHOLE, metavar="I/N",
                        help=f"run part I (0..N-1) of N of the {what}; merge the shards' "
                        "--json results with `qcow2-harness merge`")


__all__ = ["Shard", "WHOLE", "ZERO_DIGEST", "add_shard_argument", "id_digest", "xor_digests"]
