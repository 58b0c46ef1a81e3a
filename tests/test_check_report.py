"""The check report's contract (qcow2harness/checker/report.py): exit codes by level,
which findings count as violations and which as notes, the per-clause cap and its
counts, the JSON shape. Written from the mutation campaign's survivors (issue #20)."""

from __future__ import annotations

import pathlib
import re
import time

import pytest
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.spec.registry import MODEL_ENFORCERS, load

from qcow2harness.checker import check_path, inspect_image
from qcow2harness.checker.metadata import cluster_kinds
from qcow2harness.checker.report import FINDINGS_PER_CLAUSE, Finding, Findings, Report, junit_suite
from qcow2harness.image import Image
from qcow2harness.junit import Case

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


@pytest.mark.parametrize("header_length", [112, 4096])
def test_a_header_length_past_the_end_of_the_file_is_hdr_3(tmp_path: pathlib.Path,
                                                           header_length: int) -> None:
    # The magic, version and fields up to header_length are whole; the header they declare
    # is not. Image.open refuses it, so check_header never sees an HDR-3 of its own.
    path = tmp_path / "long-header.qcow2"
    ReferenceWriter.create(path, 1 << 20, fsync=False).close()
    data = bytearray(path.read_bytes())
    data[100:104] = header_length.to_bytes(4, "big")
    path.write_bytes(bytes(data[:header_length - 4]))
    report = check_path(path)
    assert [f.clause for f in report.findings] == ["HDR-3"] and report.exit_code == 2
    assert report.findings[0].offset == header_length - 4


def test_a_report_carries_the_walk_and_how_long_it_took(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plain.qcow2"
    ReferenceWriter.create(path, 1 << 20, fsync=False).close()
    started = time.perf_counter()
    report = check_path(path)
    took = time.perf_counter() - started
    assert report.findings == [] and report.stats["file_size"] == path.stat().st_size
    assert report.stats["clusters_in_file"] == -(-path.stat().st_size // 65536)
    assert 0 <= report.stats["seconds"] <= took


def test_the_decoding_bounds_are_the_ones_the_clauses_state() -> None:
    # CMP-4 and BMP-13 state how much the checker decodes or reads per image.
    from qcow2harness.checker import metadata

    spec = load()
    streams, mebibytes = map(int, re.search(  # type: ignore[union-attr]
        r"at most (\d+) streams and (\d+) MiB of output", spec["CMP-4"].notes).groups())
    tails = int(re.search(r"at most (\d+) MiB of such tails",  # type: ignore[union-attr]
                          spec["BMP-13"].notes).group(1))
    assert metadata.MAX_DECODED_STREAMS == streams
    assert metadata.MAX_DECODED_BYTES == mebibytes << 20
    assert metadata.MAX_BITMAP_TAIL_BYTES == tails << 20


def test_no_two_cluster_roles_share_a_code() -> None:
    # Two roles with one code would be one role: no OVL-1 between them, one name for both.
    from qcow2harness.checker.metadata import Role

    assert len({int(role) for role in Role}) == len(Role.__members__)  # no aliases


def test_the_cap_is_the_one_the_readme_states() -> None:
    # README "check": "At most N findings per clause are listed; the rest are counted".
    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    stated = int(re.search(r"At most (\d+) findings per clause", readme).group(1))  # type: ignore[union-attr]
    report = Report("image.qcow2")
    found = Findings(report)
    for _ in range(stated + 1):
        found.add(MUST, "again")
    assert len(report.findings) == stated and report.suppressed == {MUST: 1}


def test_counts_of_a_clause_not_seen_yet_and_bulk_counts() -> None:
    found = Findings(Report("image.qcow2"))
    assert (found.count(MAY), found.room(MAY)) == (0, FINDINGS_PER_CLAUSE)
    found.add_suppressed(MAY, 1)  # one is a count too
    assert found.count(MAY) == 1 and found.report.suppressed == {MAY: 1}
    for _ in range(2):
        found.add(MAY, "kept")
    found.add_suppressed(MAY, 5)  # 3 + 5, not 3 ^ 5 or 3 | 5
    assert found.count(MAY) == 8 and found.report.level_counts["MAY"] == 8


def test_equal_findings_are_one_in_a_set() -> None:
    assert len({Finding(MUST, "MUST", "m", 1), Finding(MUST, "MUST", "m", 1),
                Finding(MUST, "MUST", "m", 2)}) == 2


# ----- junit_suite(): one case per image-checker clause -----

def _cases(report: Report) -> dict[str, Case]:
    suite = junit_suite(report)
    cases = {case.name.split(" ", 1)[0]: case for case in suite.cases}
    assert len(cases) == len(suite.cases)  # a clause is one case, never two
    return cases


IMAGE_CLAUSES = [c for c in REGISTRY if c.family not in MODEL_ENFORCERS]


def test_a_junit_case_per_clause_with_its_findings() -> None:
    report = Report("image.qcow2", stats={"clusters_in_file": 3, "seconds": 0.25})
    found = Findings(report)
    found.add(MUST, "first", None)
    found.add(MUST, "second", 0x10000)
    found.add_suppressed(MUST, 2)
    found.add_suppressed(SHOULD, 3)
    found.add(MAY, "noted", 0x30)
    cases = _cases(report)
    assert sorted(cases) == sorted(c.id for c in IMAGE_CLAUSES)
    must = cases[MUST]
    assert must.name == f"{MUST} {REGISTRY[MUST].title}"
    assert must.classname == f"check.{REGISTRY[MUST].family}"
    assert must.failure is not None and must.failure.type == "must"
    assert must.failure.message == f"{MUST} MUST: 4 finding(s); first: first"
    assert must.failure.text.splitlines() == [
        report.findings[0].one_line(), report.findings[1].one_line(),
        f"... and 2 more {MUST} finding(s) not listed"]
    should = cases[SHOULD]
    assert should.failure is not None and should.failure.type == "should"
    assert should.failure.message == f"{SHOULD} SHOULD: 3 finding(s)"
    may = cases[MAY]
    assert may.failure is None and may.skipped is None
    assert may.system_out == report.findings[2].one_line()
    quiet = [case for clause, case in cases.items() if clause not in (MUST, SHOULD, MAY)]
    assert all(c.outcome == "passed" and c.system_out == "" for c in quiet)


def test_the_first_findings_offset_heads_the_failure() -> None:
    report = Report("image.qcow2", stats={"clusters_in_file": 1})
    found = Findings(report)
    found.add(MUST, "here", 0x200)
    found.add(MUST, "there", None)
    failure = _cases(report)[MUST].failure
    assert failure is not None
    assert failure.message == f"{MUST} MUST: 2 finding(s); first: here (offset 0x200)"


def test_clauses_a_stopped_check_never_judged_are_skipped() -> None:
    report = Report("cut.qcow2")  # no clusters_in_file: the walk never ran
    Findings(report).add(MUST, "broken header")
    cases = _cases(report)
    assert cases[MUST].outcome == "failure"
    others = [case for clause, case in cases.items() if clause != MUST]
    assert others and all(case.outcome == "skipped" for case in others)


def test_a_model_clause_found_by_check_gets_its_own_case() -> None:
    model = next(c for c in REGISTRY if c.family in MODEL_ENFORCERS and c.level == "MUST")
    report = Report("image.qcow2", stats={"clusters_in_file": 1})
    Findings(report).add(model.id, "model rule")
    cases = _cases(report)
    assert sorted(cases) == sorted([c.id for c in IMAGE_CLAUSES] + [model.id])
    assert cases[model.id].outcome == "failure"


def test_the_suite_carries_the_reports_totals() -> None:
    report = Report("image.qcow2", stats={"clusters_in_file": 1, "seconds": 1.5})
    found = Findings(report)
    found.add(SHOULD, "s")
    found.add(MAY, "a")
    found.add(MAY, "b")
    suite = junit_suite(report)
    assert suite.name == "check image.qcow2" and suite.seconds == 1.5
    assert suite.properties == {"image": "image.qcow2", "exit_code": "3", "must": "0",
                                "should": "1", "may": "2"}
    assert junit_suite(Report("x")).seconds == 0.0


# ----- inspect_image() -----

def test_inspect_image_keeps_a_cluster_map_only_when_asked(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "plain.qcow2"
    ReferenceWriter.create(path, 1 << 20, fsync=False).close()
    stages: list[str] = []
    with Image.open(path) as image:
        plain = inspect_image(image, progress=lambda stage, done, total: stages.append(stage))
        mapped = inspect_image(image, cluster_map=True)
    assert plain.walk is not None and stages
    with pytest.raises(ValueError, match="cluster_map=True"):
        cluster_kinds(plain.walk)
    assert mapped.walk is not None
    assert len(cluster_kinds(mapped.walk)) == mapped.report.stats["clusters_in_file"]
