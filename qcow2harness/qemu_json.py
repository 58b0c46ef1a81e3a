"""Our JSON beside QEMU's (`qemu-img map/check --output=json`), on the fields we model.

QEMU adds keys from version to version (10.x's map has `compressed`, which 7.2's has not).
A key we do not model is not a difference; a modelled key that differs, or that one side
has and the other lacks, is. Every comparison of our output with QEMU's JSON goes through
here, so that a new QEMU key is handled once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# The fields of a qemu-img map extent that qcow2harness.map models (L2-6). `offset` is
# absent where QEMU gives none (compressed, zero, not present), so absence is compared too.
MAP_FIELDS = ("start", "length", "depth", "present", "zero", "data", "offset")
Extent = dict[str, Any]


def comparable_map(extents: Iterable[Mapping[str, Any]]) -> list[Extent]:
    """The extents on the modelled fields only. Extents are not re-merged: where they
    start and end is part of what is compared."""
    return [{key: extent[key] for key in MAP_FIELDS if key in extent} for extent in extents]


def map_difference(ours: Sequence[Mapping[str, Any]],
                   theirs: Sequence[Mapping[str, Any]]) -> str | None:
    """None when the maps agree on the modelled fields; else one line naming the first
    extent that differs, with both sides."""
    mine, qemus = comparable_map(ours), comparable_map(theirs)
    if mine == qemus:
        return None
    at = next((i for i, (a, b) in enumerate(zip(mine, qemus, strict=False)) if a != b),
              min(len(mine), len(qemus)))
    left = json.dumps(mine[at]) if at < len(mine) else "nothing"
    right = json.dumps(qemus[at]) if at < len(qemus) else "nothing"
    return f"map differs from qemu-img map at extent {at}: ours {left}, qemu-img {right}"


def maps_agree(ours: Sequence[Mapping[str, Any]], theirs: Sequence[Mapping[str, Any]]) -> bool:
    return map_difference(ours, theirs) is None


# `qemu-img check --output=json`: the counts qcow2harness check models (RC-*, TOOL-3).
# qemu-img omits a count that is zero (7.2 and 10.2 alike), so a missing one reads as 0.
CHECK_COUNTS = ("corruptions", "leaks", "check-errors")


def check_counts(report: Mapping[str, Any]) -> dict[str, int]:
    """The modelled counts of a qemu-img check JSON report (missing: 0)."""
    return {key: int(report.get(key, 0)) for key in CHECK_COUNTS}


__all__ = ["CHECK_COUNTS", "MAP_FIELDS", "check_counts", "comparable_map", "map_difference",
           "maps_agree"]


def _map_text(extents: Sequence[Mapping[str, Any]]) -> str:
    """Extents in qemu-img map --output=json's own layout."""
    lines = ["{ " + ", ".join(f'"{key}": {json.dumps(value)}' for key, value in extent.items())
             + "}" for extent in extents]
    return "[" + ",\n".join(lines) + "]"


def main(argv: Sequence[str] | None = None) -> int:
    """For shell tests (iotests): `show-map FILE` prints a qemu-img map JSON on the
    modelled fields, in qemu-img's layout; `compare-maps OURS THEIRS` prints
    "maps agree" or the first difference (exit 0 either way; 1 on bad input)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m qcow2harness.qemu_json")
    parser.add_argument("action", choices=["show-map", "compare-maps"])
    parser.add_argument("files", nargs="+")
    args = parser.parse_args(argv)
    try:
        maps = []
        for name in args.files:
            with open(name) as stream:
                maps.append(json.load(stream))
    except (OSError, ValueError) as error:
        print(f"qemu_json: {args.action}: {error}", file=sys.stderr)
        return 1
    if args.action == "show-map":
        print(_map_text(comparable_map(maps[0])))
    elif len(maps) != 2:
        parser.error("compare-maps takes two files: OURS THEIRS")
    else:
        print(map_difference(maps[0], maps[1]) or "maps agree")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
