"""Shrunk counterexamples that kill each mutant, kept as regression data.

    python -m qcow2harness.properties.regressions DIR [MUTANT ...]
    python -m qcow2harness.properties.regressions --tools DIR [TOOL_MUTANT ...]

searches with the zoned stateful suite (with --tools: the zoned tools suite,
properties/zoned_tools.py) until each mutant fails, and writes the shrunk sequence to
DIR/<mutant>.json. tests/properties/test_mutants.py and test_tools_zoned.py replay every
file: the mutant must fail it and the correct writer (or tools) must pass it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from qcow2harness.reference.tools import ToolMutant
from qcow2harness.reference.writer import Mutant

from .stateful import REGRESSION_TAG, zoned_writer_machine
from .zoned_tools import zoned_tools_machine

SEARCH = settings(max_examples=2000, stateful_step_count=30, deadline=None, derandomize=True,
                  database=None, suppress_health_check=list(HealthCheck))


def failure_text(error: BaseException) -> str:
    """The message of a failure, or of every failure in a group."""
    inner = getattr(error, "exceptions", None)
    if inner:
        return "\n".join(failure_text(e) for e in inner)
    return str(error)


def load_counterexample(directory: str | os.PathLike[str], mutant: str) -> dict[str, Any]:
    """The kept counterexample for `mutant` in `directory` (AssertionError if missing)."""
    path = os.path.join(directory, f"{mutant}.json")
    assert os.path.exists(path), f"no counterexample kept for mutant {mutant}: regenerate {path}"
    with open(path) as f:
        data: dict[str, Any] = json.load(f)
    assert data["mutant"] == mutant
    return data


def find_counterexample(mutant: str, machine: type[RuleBasedStateMachine] | None = None,
                        ) -> dict[str, Any] | None:
    """The shrunk sequence on which the suite (default: the zoned writer suite with
    `mutant`) kills `mutant`, or None if it survives."""
    try:
        run_state_machine_as_test(machine or zoned_writer_machine([mutant]), settings=SEARCH)
    except (AssertionError, ExceptionGroup) as error:  # noqa: F821 - builtin in 3.11
        for line in failure_text(error).splitlines():
            if line.startswith(REGRESSION_TAG):
                found: dict[str, Any] = json.loads(line[len(REGRESSION_TAG):])
                found["mutant"] = mutant
                found["failure"] = failure_text(error).splitlines()[0]
                return found
        raise
    return None


def main(argv: Sequence[str]) -> int:
    if not argv:
        print(__doc__)
        return 1
    tools = argv[0] == "--tools"
    argv = argv[1:] if tools else argv
    every = [m.value for m in (ToolMutant if tools else Mutant)]
    directory, wanted = argv[0], list(argv[1:]) or every
    os.makedirs(directory, exist_ok=True)
    survivors = []
    for mutant in wanted:
        started = time.monotonic()
        machine = zoned_tools_machine(tool_mutants=[mutant]) if tools else None
        found = find_counterexample(mutant, machine)
        took = time.monotonic() - started
        if found is None:
            survivors.append(mutant)
            print(f"{mutant}: survived ({took:.0f} s)")
            continue
        with open(os.path.join(directory, f"{mutant}.json"), "w") as out:
            json.dump(found, out, indent=1)
            out.write("\n")
        steps = found["steps" if tools else "ops"]
        print(f"{mutant}: killed by {len(steps)} step(s) ({took:.0f} s): {found['failure']}")
    return 2 if survivors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
