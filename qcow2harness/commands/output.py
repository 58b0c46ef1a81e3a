"""Small output helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys


def emit_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def write_json(where: str, payload: object) -> None:
    """`--json [FILE]`: '-' is stdout."""
    if where == "-":
        emit_json(payload)
        return
    with open(where, "w") as stream:
        json.dump(payload, stream, indent=2)
        stream.write("\n")
