"""Verdicts of the stateful suites: one failure identity per clause, and known deviations.

Hypothesis tells bugs apart by the type of the exception and where it was raised. Every
verdict of the zoned suites is raised as `violation(clause, message)`, an AssertionError
of a type of its own per clause, so a writer that breaks two clauses gives two
failures, each shrunk on its own, and one finding never hides another.

A writer's known deviations are declared on the machine (`expected=` of the machine
factories, `--expect CLAUSE` of the nightly runner): a verdict under an expected clause
is counted in `OBSERVED` instead of raised, and judging goes on. Where the deviation
leaves the writer and the model apart (the writer took an op the model refused, its
zone states differ), nothing after it can be judged against the model, so the example
ends there (`hypothesis.reject`) and the next one starts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from hypothesis import reject


class ClauseViolation(AssertionError):
    """A verdict against the writer under test, named by its spec clause."""

    clause: ClassVar[str] = ""


_TYPES: dict[str, type[ClauseViolation]] = {}


def violation_type(clause: str) -> type[ClauseViolation]:
    """The exception type of `clause` (one per clause, made once)."""
    kind = _TYPES.get(clause)
    if kind is None:
        kind = type(f"{clause.replace('-', '_')}_Violation", (ClauseViolation,),
                    {"clause": clause, "__module__": __name__})
        _TYPES[clause] = kind
    return kind


def violation(clause: str, message: str) -> ClauseViolation:
    text = message if message.startswith(f"{clause}:") else f"{clause}: {message}"
    return violation_type(clause)(text)


CLAUSE_PREFIX = re.compile(r"^([A-Z]+-\d+)\b")


def clause_of(text: str, default: str) -> str:
    """The clause id a verdict text starts with ("PERS-4: zone 2 ..."), else `default`."""
    match = CLAUSE_PREFIX.match(text)
    return match.group(1) if match else default


@dataclass
class Observation:
    """An expected deviation as seen: how often, and the first time in full."""

    clause: str
    first: str
    count: int = 0


# Expected deviations seen in this process, by clause (the nightly runner collects them).
OBSERVED: dict[str, Observation] = {}


def observe(clause: str, message: str) -> None:
    seen = OBSERVED.setdefault(clause, Observation(clause, message))
    seen.count += 1


class Judge:
    """Mixin for a state machine: `verdict` raises or, for an expected clause, records."""

    EXPECTED: ClassVar[frozenset[str]] = frozenset()

    def context(self) -> str:
        """What a failure carries besides its message (the replayable script)."""
        return ""

    def verdict(self, clause: str, message: str, *, diverged: bool = False) -> None:
        """Judge against the writer. `diverged`: the writer and the model now differ, so
        an expected deviation ends the example instead of letting it cascade."""
        if clause in self.EXPECTED:
            observe(clause, message)
            if diverged:
                reject()
            return
        raise violation(clause, f"{message}\n{self.context()}")
