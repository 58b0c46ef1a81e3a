"""The check report's contract (qcow2harness/checker/report.py): exit codes by level,
which findings count as violations and which as notes, the per-clause cap and its
counts, the JSON shape. Written from the mutation campaign's survivors (issue #20)."""

from __future__ import annotations

import pathlib
import time

import pytest
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.spec.registry import load

from qcow2harness.checker import check_path
from qcow2harness.checker.report import FINDINGS_PER_CLAUSE, Findings, Report

REGISTRY = load()


def _clause(level: str) -> str:
    return next(c.id for c in REGISTRY if c.level == level)


MUST, SHOULD, MAY = _clause("MUST"), _clause("SHOULD"), _clause("MAY")


def _report(*clauses: str) -> Report:
    report = Report("image.qcow2")
    found = Findings(report)
    for clause in clauses:
        found.add(clause, f"{clause} broken", 0x200)
    return report


@pytest.mark.parametrize(("clauses", "code", "conformant"), [
    ((), 0, True), ((MAY,), 0, True), ((SHOULD,), 3, True), ((SHOULD, MAY), 3, True),
    ((MUST,), 2, False), ((MAY, SHOULD, MUST), 2, False)])
def test_the_exit_code_is_set_by_the_gravest_level(clauses: tuple[str, ...], code: int,
                                                   conformant: bool) -> None:
    report = _report(*clauses)
    assert (report.exit_code, report.conformant) == (code, conformant)
    assert report.to_json()["exit_code"] == code


def test_violations_are_must_and_should_and_notes_are_may() -> None:
    report = _report(MUST, SHOULD, MAY)
    assert [f.clause for f in report.violations] == [MUST, SHOULD]
    document = report.to_json()
    assert [v["clause"] for v in document["violations"]] == [MUST, SHOULD]
    assert [n["clause"] for n in document["notes"]] == [MAY]
    assert document["counts"] == {"MUST": 1, "SHOULD": 1, "MAY": 1}
    assert document["violations"][0] == {"clause": MUST, "level": "MUST",
                                         "message": f"{MUST} broken", "offset": 0x200}


def test_repeats_past_the_cap_are_counted_not_kept() -> None:
    report = Report("image.qcow2")
    found = Findings(report)
    for _ in range(FINDINGS_PER_CLAUSE + 3):
        found.add(MUST, "again")
    found.add(SHOULD, "once")
    assert len([f for f in report.findings if f.clause == MUST]) == FINDINGS_PER_CLAUSE
    assert report.suppressed == {MUST: 3}
    assert report.level_counts["MUST"] == FINDINGS_PER_CLAUSE + 3
    assert (found.count(MUST), found.room(MUST), found.room(SHOULD)) == (
        FINDINGS_PER_CLAUSE + 3, 0, FINDINGS_PER_CLAUSE - 1)
    assert report.clauses() == {MUST, SHOULD}
    found.add_suppressed(MAY, 5)
    found.add_suppressed(SHOULD, 0)
    assert report.suppressed == {MUST: 3, MAY: 5} and report.level_counts["MAY"] == 5
    assert report.clauses() == {MUST, SHOULD, MAY}
    assert found.count(MAY) == 5 and found.room(MAY) == FINDINGS_PER_CLAUSE - 5


def test_a_finding_on_one_line() -> None:
    report = _report(MUST)
    assert report.findings[0].one_line() == f"MUST   {MUST.ljust(8)} {MUST} broken (offset 0x200)"


def test_a_check_citing_an_unknown_clause_is_a_bug() -> None:
    with pytest.raises(KeyError):
        Findings(Report("x")).add("NOPE-1", "no such clause")


# ----- check_path(): the report of a whole file -----

def test_a_file_cut_inside_the_header_is_hdr_3(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "cut.qcow2"
    path.write_bytes(b"QFI\xfb\0\0\0\3" + bytes(60))
    report = check_path(path)
    assert [f.clause for f in report.findings] == ["HDR-3"] and report.exit_code == 2


def test_a_report_carries_the_walk_and_how_long_it_took(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plain.qcow2"
    ReferenceWriter.create(path, 1 << 20, fsync=False).close()
    started = time.perf_counter()
    report = check_path(path)
    took = time.perf_counter() - started
    assert report.findings == [] and report.stats["file_size"] == path.stat().st_size
    assert report.stats["clusters_in_file"] == -(-path.stat().st_size // 65536)
    assert 0 <= report.stats["seconds"] <= took
