"""Findings and the check report: the contract later tooling relies on.

A finding names a clause; its level comes from the clause registry (spec/),
never from the check that found it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from qcow2harness.spec.registry import Registry, load

if TYPE_CHECKING:
    from qcow2harness.junit import Suite

# Individual findings kept per clause; the rest are counted (bounded output on hostile input).
FINDINGS_PER_CLAUSE = 32


# Not frozen: a frozen dataclass's __init__ costs four object.__setattr__ calls, and the
# fuzz target builds thousands of findings per second. Still hashable and compared by value.
@dataclass(slots=True, unsafe_hash=True)
class Finding:
    clause: str
    level: str  # MUST, SHOULD or MAY (from the registry)
    message: str
    offset: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"clause": self.clause, "level": self.level, "message": self.message,
                "offset": self.offset}

    def one_line(self) -> str:
        where = f" (offset {self.offset:#x})" if self.offset is not None else ""
        # ljust pads as the format spec "<6" would, without parsing a spec each time.
        return f"{self.level.ljust(6)} {self.clause.ljust(8)} {self.message}{where}"


@dataclass
class Report:
    path: str
    findings: list[Finding] = field(default_factory=list)
    suppressed: Counter[str] = field(default_factory=Counter)
    level_counts: Counter[str] = field(default_factory=Counter)  # suppressed ones included
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def violations(self) -> list[Finding]:
        """Findings that count against conformance (MUST and SHOULD)."""
        return [f for f in self.findings if f.level in ("MUST", "SHOULD")]

    @property
    def conformant(self) -> bool:
        return not any(f.level == "MUST" for f in self.findings)

    @property
    def exit_code(self) -> int:
        if not self.conformant:
            return 2
        if any(f.level == "SHOULD" for f in self.findings):
            return 3
        return 0

    def clauses(self) -> set[str]:
        return {f.clause for f in self.findings} | set(self.suppressed)

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "conformant": self.conformant,
            "exit_code": self.exit_code,
            "violations": [f.to_json() for f in self.violations],
            "notes": [f.to_json() for f in self.findings if f.level == "MAY"],
            "suppressed": dict(self.suppressed),
            "counts": {level: self.level_counts[level] for level in ("MUST", "SHOULD", "MAY")},
            "stats": self.stats,
        }


class Findings:
    """Collects findings, looking up each clause's level; caps repeats per clause."""

    def __init__(self, report: Report, registry: Registry | None = None) -> None:
        self.report = report
        self.registry = registry or load()
        self._levels = self.registry.levels
        # A plain dict read with get(): a Counter's missing key costs a Python call.
        self._per_clause: dict[str, int] = {}

    def add(self, clause: str, message: str, offset: int | None = None) -> None:
        level = self._levels.get(clause)
        if level is None:
            level = self.registry[clause].level  # KeyError: a check cites an unknown clause
        seen = self._per_clause[clause] = self._per_clause.get(clause, 0) + 1
        counts = self.report.level_counts
        counts[level] = counts.get(level, 0) + 1
        if seen > FINDINGS_PER_CLAUSE:
            self.report.suppressed[clause] += 1
            return
        self.report.findings.append(Finding(clause, level, message, offset))

    def count(self, clause: str) -> int:
        return self._per_clause.get(clause, 0)

    def room(self, clause: str) -> int:
        """How many more findings of `clause` would still be kept individually."""
        return max(FINDINGS_PER_CLAUSE - self._per_clause.get(clause, 0), 0)

    def add_suppressed(self, clause: str, count: int) -> None:
        """Count `count` more findings of `clause` without building a message for each
        (bulk checks report the first few with add() and the rest here)."""
        if count <= 0:
            return
        level = self.registry[clause].level
        self._per_clause[clause] = self._per_clause.get(clause, 0) + count
        self.report.level_counts[level] += count
        self.report.suppressed[clause] += count


def junit_suite(report: Report) -> Suite:
    """One testcase per image-checker clause of the registry (a stable list a CI UI can
    track): a failure of type "must" or "should" when check reported the clause, with
    every finding (clause, level, offset, message) in its text; MAY notes go to the
    case's system-out and never fail it. When the check stopped before the metadata walk
    (a header too broken to go on), the clauses it did not report are skipped."""
    from qcow2harness.junit import Case, Failure, Suite
    from qcow2harness.spec.registry import MODEL_ENFORCERS, load

    registry = load()
    found: dict[str, list[Finding]] = defaultdict(list)
    for finding in report.findings:
        found[finding.clause].append(finding)
    clauses = [c for c in registry if c.family not in MODEL_ENFORCERS]
    clauses += [registry[c] for c in sorted(report.clauses() - {c.id for c in clauses})]
    walked = "clusters_in_file" in report.stats
    cases = []
    for clause in clauses:
        case = Case(f"{clause.id} {clause.title}", f"check.{clause.family}")
        findings = found.get(clause.id, [])
        more = report.suppressed.get(clause.id, 0)
        lines = [f.one_line() for f in findings]
        if more:
            lines.append(f"... and {more} more {clause.id} finding(s) not listed")
        if findings or more:
            if clause.level == "MAY":
                case.system_out = "\n".join(lines)
            else:
                first = findings[0] if findings else None
                where = (f" (offset {first.offset:#x})"
                         if first is not None and first.offset is not None else "")
                head = f"; first: {first.message}{where}" if first is not None else ""
                case.failure = Failure(
                    f"{clause.id} {clause.level}: {len(findings) + more} finding(s){head}",
                    clause.level.lower(), "\n".join(lines))
        elif not walked:
            case.skipped = "not evaluated: the check stopped before the metadata walk"
        cases.append(case)
    counts = report.level_counts
    return Suite(f"check {report.path}", cases, seconds=report.stats.get("seconds", 0.0),
                 properties={"image": report.path, "exit_code": str(report.exit_code),
                             "must": str(counts["MUST"]), "should": str(counts["SHOULD"]),
                             "may": str(counts["MAY"])})
