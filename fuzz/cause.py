"""Which field of an input a finding comes from: the input against the seed it grew from.

A fuzzer's input is a seed changed in many places, most of them beside the point. For
a finding we take the nearest seed (fewest differing bytes), list what differs as named
units of the seed's parsed layout, and narrow that list to the units that alone (put
into the seed) still give the same finding:

    header.<field>        a header field          (fuzz/field_positions.py, the parser)
    extension[i:kind].<field>  a header extension record's magic / len_body / body,
                          e.g. extension[1:zoned].len_body
    zoned.<field>         a field of the zoned extension, e.g. zoned.num_zones
    zonedmeta[i]          write-pointer table entry i
    bytes@0x<offset>      any other 8 bytes that differ (512-byte blocks when many do)
    file.length           the file was cut or grown

The names are the generated parser's. The narrowed input (the seed with those units
only) is also the best start for byte minimization: its other bytes are the seed's.
"""

from __future__ import annotations

import bisect
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from qcow2harness.fuzz.field_positions import (
    extension_record_positions,
    header_positions,
    zoned_field_positions,
    zonedmeta_entry_width,
)

from qcow2harness.errors import HarnessError
from qcow2harness.image import ExtensionType, Image

LOOSE_WORD = 8
LOOSE_BLOCK = 512
MAX_LOOSE_WORDS = 64  # more differing words than this are grouped by block
MAX_TABLE_UNITS = 4096  # write-pointer entries named at most
MAX_NAMED = 6  # names listed in a finding's `fields` before "+N more"
LENGTH = "file.length"


@dataclass(frozen=True)
class Unit:
    """A named byte range of the seed."""

    name: str
    offset: int
    width: int

    @property
    def priority(self) -> int:
        """Zoned fields first, then the wp table, extensions, header, anything else."""
        for rank, prefix in enumerate(("zoned.", "zonedmeta[", "extension[", "header.")):
            if self.name.startswith(prefix):
                return rank
        return 4


def named_units(data: bytes) -> list[Unit]:
    """The named units of an image's layout, by offset (empty when it does not parse)."""
    units = [Unit(f"header.{name}", off, width)
             for name, (off, width) in header_positions(data).items()]
    try:
        image = Image.from_bytes(data)
        extensions = image.extensions() if image.version >= 3 else []
    except HarnessError:
        return sorted(units, key=lambda u: u.offset)
    for ext in extensions:
        record = extension_record_positions(data, ext.offset)
        for name, (off, width) in record.items():
            if name == "body" and ext.magic == ExtensionType.zoned:
                units += [Unit(f"zoned.{field}", off + rel, w)
                          for field, (rel, w) in zoned_field_positions().items()
                          if rel + w <= width]
            else:
                units.append(Unit(f"extension[{ext.index}:{ext.name}].{name}", off, width))
    try:
        zoned = image.zoned
    except HarnessError:
        zoned = None
    if zoned is not None:
        width = zonedmeta_entry_width()
        start = int(zoned.ofs_zonedmeta)
        count = min(int(zoned.num_zones), MAX_TABLE_UNITS,
                    max(0, (len(data) - start) // width))
        units += [Unit(f"zonedmeta[{i}]", start + i * width, width) for i in range(count)]
    return _without_overlaps(units)


def _layout_units(seed: bytes, data: bytes) -> list[Unit]:
    """The seed's units, and where the input's own parse names a zoned field, a table
    entry or an extension record over bytes the seed has no zoned name for (a mutant
    that turned another extension into a zoned one), the input's names for those
    bytes. The seed's zoned names come first: a mutant whose extensions moved would
    otherwise name the seed's zone_size bytes after its own layout."""
    try:
        theirs = [u for u in named_units(data)
                  if u.name.startswith(("zoned.", "zonedmeta[", "extension["))]
    except Exception:  # noqa: BLE001 - a mutant that does not parse names nothing
        theirs = []
    ours = named_units(seed)
    mine = {(u.name, u.offset, u.width) for u in ours}
    extra = [u for u in theirs if (u.name, u.offset, u.width) not in mine]
    zoned = [u for u in ours if u.priority <= 1]
    rest = [u for u in ours if u.priority > 1]
    return _without_overlaps(zoned + sorted(extra, key=lambda u: u.priority) + rest)


def _without_overlaps(units: list[Unit]) -> list[Unit]:
    """By offset, without overlaps: where two units overlap, the one that comes first
    in `units` keeps its bytes (callers list what names a range best first)."""
    starts: list[int] = []
    kept: list[Unit] = []
    for unit in units:
        if unit.width <= 0:
            continue
        at = bisect.bisect_right(starts, unit.offset)
        before = kept[at - 1] if at else None
        after = kept[at] if at < len(kept) else None
        if before is not None and before.offset + before.width > unit.offset:
            continue
        if after is not None and unit.offset + unit.width > after.offset:
            continue
        starts.insert(at, unit.offset)
        kept.insert(at, unit)
    return kept


def changed_units(seed: bytes, data: bytes, units: Sequence[Unit] | None = None) -> list[Unit]:
    """The units where `data` differs from `seed`, plus loose bytes and the length."""
    units = _layout_units(seed, data) if units is None else units
    common = min(len(seed), len(data))
    left = np.frombuffer(seed, dtype=np.uint8, count=common)
    right = np.frombuffer(data, dtype=np.uint8, count=common)
    differing = np.nonzero(left != right)[0].tolist()
    starts = [u.offset for u in units]
    changed: dict[Unit, None] = {}
    loose: set[int] = set()
    for position in differing:
        at = bisect.bisect_right(starts, position) - 1
        if at >= 0 and position < units[at].offset + units[at].width:
            changed[units[at]] = None
        else:
            loose.add(position - position % LOOSE_WORD)
    step = LOOSE_WORD if len(loose) <= MAX_LOOSE_WORDS else LOOSE_BLOCK
    for offset in sorted({word - word % step for word in loose}):
        changed[Unit(f"bytes@{offset:#x}", offset, min(step, common - offset))] = None
    result = sorted(changed, key=lambda u: (u.priority, u.offset))
    if len(seed) != len(data):
        result.append(Unit(LENGTH, common, abs(len(seed) - len(data))))
    return result


def apply_units(seed: bytes, data: bytes, units: Iterable[Unit]) -> bytes:
    """The seed with `data`'s bytes in these units (and its length, with file.length)."""
    out = bytearray(seed)
    resize = False
    for unit in units:
        if unit.name == LENGTH:
            resize = True
            continue
        out[unit.offset:unit.offset + unit.width] = data[unit.offset:unit.offset + unit.width]
    if resize:
        out = out[:len(data)] if len(data) < len(out) else out + data[len(out):]
    return bytes(out)


_ZONED_SEEDS: dict[tuple[str, int], bool] = {}


def _seed_is_zoned(name: str, seed: bytes) -> bool:
    key = (name, hash(seed))
    if key not in _ZONED_SEEDS:
        _ZONED_SEEDS[key] = has_zoned_extension(seed)
    return _ZONED_SEEDS[key]


def has_zoned_extension(data: bytes) -> bool:
    try:
        return Image.from_bytes(data).zoned is not None
    except HarnessError:
        return False


def nearest_seed(data: bytes, seeds: Sequence[tuple[str, bytes]]) -> tuple[str, bytes] | None:
    """The seed with the fewest differing bytes (a length difference counts per byte).
    An input with a zoned extension is compared with the zoned seeds only (when there
    are any): against a seed without one, every zoned field would differ. A seed equal
    to the input is passed over: a seed that fails by itself is compared with the seed
    nearest to it."""
    if has_zoned_extension(data):
        zoned = [(name, seed) for name, seed in seeds if _seed_is_zoned(name, seed)]
        seeds = zoned or seeds
    best: tuple[int, str, bytes] | None = None
    mine = np.frombuffer(data, dtype=np.uint8)
    for name, seed in seeds:
        if seed == data:
            continue
        common = min(len(seed), len(data))
        cost = abs(len(seed) - len(data))
        if best is not None and cost >= best[0]:
            continue
        cost += int(np.count_nonzero(np.frombuffer(seed, dtype=np.uint8, count=common)
                                     != mine[:common]))
        if best is None or cost < best[0]:
            best = (cost, name, seed)
    return None if best is None else (best[1], best[2])


def narrow(seed: bytes, data: bytes, units: Sequence[Unit],
           reproduces: Callable[[bytes], bool], *, max_tests: int = 24,
           hints: Iterable[frozenset[str]] = ()) -> list[Unit] | None:
    """The fewest units that, put into the seed, still reproduce (None: not even all of
    them do, or the budget of `max_tests` runs is spent before that is known).

    `hints` (unit-name sets that explained the same finding before) are tried first,
    one run each; then each unit alone, in priority order (zoned fields first), for
    half the budget; then delta debugging: drop chunks of the units while it still
    reproduces, halving the chunk until single units."""
    tests = 0

    def attempt(chosen: Sequence[Unit]) -> bool:
        nonlocal tests
        tests += 1
        return reproduces(apply_units(seed, data, chosen))

    by_name = {u.name: u for u in units}
    for hint in hints:
        if tests < max_tests and hint <= by_name.keys() and attempt(
                [by_name[n] for n in sorted(hint)]):
            return [by_name[n] for n in sorted(hint)]
    for unit in units:
        if tests >= max_tests // 2 or len(units) == 1:
            break
        if attempt([unit]):
            return [unit]
    current = list(units)
    if tests >= max_tests or not attempt(current):
        return None
    chunks = 2
    while len(current) > 1 and tests < max_tests:
        size = max(1, len(current) // chunks)
        for start in range(0, len(current), size):
            trial = current[:start] + current[start + size:]
            if tests >= max_tests:
                break
            if trial and attempt(trial):
                current, chunks = trial, max(chunks - 1, 2)
                break
        else:
            if size == 1:
                break
            chunks = min(len(current), chunks * 2)
    return current


def field_names(units: Sequence[Unit]) -> str:
    """What a finding records: the narrowed units' names, the first MAX_NAMED of them."""
    names = [u.name for u in units]
    shown = ",".join(names[:MAX_NAMED])
    return shown + (f",+{len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")


def field_key(fields: str) -> str:
    """What a finding's fields say about its cause, for deduplication: the names of the
    first class present, in priority order (zoned fields, then write-pointer entries,
    extension records, header fields, other bytes), without table or extension indices
    ("zonedmeta[*]", "extension[zoned].len_body"). Changes that only made the extension
    appear (a magic, a length) do not split one zoned cause into several."""
    names = [n for n in fields.split(",") if n and not n.startswith("+")]
    if not names:
        return ""
    units = [Unit(n, 0, 0) for n in names]
    first = min(u.priority for u in units)
    keys = {re.sub(r"@0x[0-9a-f]+$", "", re.sub(r"\[\d+\]", "[*]", re.sub(
        r"\[\d+:", "[", u.name))) for u in units if u.priority == first}
    return ",".join(sorted(keys))


def units_named(seed: bytes, data: bytes, fields: str) -> list[Unit]:
    """The units a finding's `fields` names, found again in seed vs data."""
    wanted = set(fields.split(","))
    return [u for u in changed_units(seed, data) if u.name in wanted]


def load_seeds(paths: Iterable[str], limit_bytes: int = 64 << 20) -> list[tuple[str, bytes]]:
    """(path, bytes) of the seed files under these dirs/files, up to `limit_bytes`."""
    from qcow2harness.fuzz.targets import corpus_files

    seeds: list[tuple[str, bytes]] = []
    total = 0
    for path in corpus_files(paths):
        size = os.path.getsize(path)
        if total + size > limit_bytes:
            break
        with open(path, "rb") as f:
            seeds.append((path, f.read()))
        total += size
    return seeds


def known_fields(known: Iterable[str], site_signature: str) -> list[frozenset[str]]:
    """The field sets already recorded for a site (signatures are site + "/" + fields)."""
    prefix = site_signature + "/"
    return [frozenset(line[len(prefix):].split(",")) for line in known
            if line.startswith(prefix) and "more" not in line[len(prefix):]]


def attribute(target: Any, data: bytes, finding: Any, seeds: Sequence[tuple[str, bytes]],
              bounds: Any = None, hints: dict[str, list[frozenset[str]]] | None = None,
              max_tests: int = 24) -> Any:
    """The finding with `fields` (what the input changed relative to its nearest seed,
    narrowed to what reproduces the same site) and `seed` filled in. Crashes and oom
    only; other kinds come back as they are."""
    from dataclasses import replace

    from qcow2harness.fuzz.targets import execute

    if finding.kind not in ("crash", "oom") or not seeds:
        return finding
    nearest = nearest_seed(data, seeds)
    if nearest is None:
        return finding
    name, seed = nearest
    units = changed_units(seed, data)
    if not units:
        return replace(finding, seed=name)
    site = finding.site_signature

    def reproduces(candidate: bytes) -> bool:
        found = execute(target, candidate, bounds)
        return found is not None and found.site_signature == site

    hints = {} if hints is None else hints
    narrowed = narrow(seed, data, units, reproduces, max_tests=max_tests,
                      hints=hints.get(site, ()))
    if narrowed is None:
        narrowed = units  # not reproducible from the seed within the budget: all of it
    else:
        found = frozenset(u.name for u in narrowed)
        hints.setdefault(site, [])
        if found not in hints[site]:
            hints[site].insert(0, found)
    return replace(finding, fields=field_names(narrowed), seed=name)



def _clause_offsets(data: bytes) -> set[tuple[str, int | None]]:
    """(clause, offset) of every MUST/SHOULD finding `check` makes on the bytes."""
    from qcow2harness.checker import check_image

    try:
        report = check_image(Image.from_bytes(data))
    except HarnessError as error:
        return {(str(error.clause), getattr(error, "offset", None))}
    return {(f.clause, f.offset) for f in report.violations}


def clauses_broken(seed: bytes, data: bytes, units: Sequence[Unit]) -> list[str]:
    """The spec clauses `check` reports on `data` but not on its seed, those at the
    units' bytes first (all the new ones when none is at them)."""
    new = _clause_offsets(data) - _clause_offsets(seed)
    at_units = {clause for clause, offset in new if offset is not None and any(
        u.offset <= offset < u.offset + max(u.width, 1) for u in units)}
    return sorted(at_units or {clause for clause, _ in new})


__all__ = ["LENGTH", "Unit", "apply_units", "attribute", "changed_units", "clauses_broken",
           "field_key", "field_names", "known_fields", "load_seeds", "named_units", "narrow",
           "nearest_seed", "units_named"]
