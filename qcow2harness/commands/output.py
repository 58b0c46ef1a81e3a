"""Small output helpers shared by the subcommands."""

from __future__ import annotations

import json
import sys


def emit_json(payload: object) -> None:
    json.dump(payload, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
