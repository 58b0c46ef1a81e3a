"""Small output helpers shared by the subcommands.

The JSON that `check --json` and `crash --json` print is a versioned contract: each
document starts with "schema_version" and is described by docs/schema/NAME.schema.json
(NAME: check, crash). The fuzz and nightly properties results are described there too
(fuzz, properties), without a schema_version yet; `merge` validates all four.
A MINOR bump adds optional fields; a MAJOR bump removes, renames or changes the
meaning of one (README, "CI integration").
"""

from __future__ import annotations

import json
import sys
from typing import Any

# schema name (docs/schema/NAME.schema.json) -> the version its documents carry
SCHEMA_VERSIONS = {
    # 1.1: exit_code 1 and error, for an image of a collection that could not be read
    "check": "1.1",
    # 1.1: shard fields; 1.2: build, findings, causes. A campaign, the --matrix list, or
    # one --state rebuild
    "crash": "1.2",
}


def versioned(schema: str, payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` with "schema_version" first."""
    return {"schema_version": SCHEMA_VERSIONS[schema], **payload}


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
