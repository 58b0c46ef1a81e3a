"""The zoned series' findings kept in fuzz/findings/ (series-findings.json): each
reproducer still fails the series the way its entry says, stock 10.2 refuses it cleanly
or reads it, and our check reports on it the clauses the entry says the input breaks
(none: the image is conformant, and the finding is what the series does with it).
Entries whose build is absent are skipped with the reason."""

from __future__ import annotations

import json
import pathlib

import pytest
from qcow2harness.fuzz.reader import verdict
from qcow2harness.fuzz.targets import execute, get_target, reader_commands

from qcow2harness import qemu
from qcow2harness.checker import check_path

REPO = pathlib.Path(__file__).resolve().parents[2]
MANIFEST = REPO / "fuzz" / "findings" / "series-findings.json"
ENTRIES = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else []
CASES = [(entry, kind) for entry in ENTRIES for kind in entry["files"]]


def ids(case: tuple[dict, str]) -> str:
    return f"{case[0]['name']}-{case[1]}"


def test_the_manifest_lists_findings() -> None:
    assert ENTRIES, f"{MANIFEST} is missing or empty"
    for entry in ENTRIES:
        assert entry["clause"], entry["name"]
        assert all((REPO / path).is_file() for path in entry["files"].values()), entry["name"]


@pytest.mark.parametrize("case", CASES, ids=[ids(c) for c in CASES])
def test_check_reports_the_clauses(case: tuple[dict, str]) -> None:
    entry, kind = case
    if kind != "narrowed":
        pytest.skip("not run: the clauses are those of the narrowed input (seed + field)")
    report = check_path(str(REPO / entry["files"][kind]))
    if not entry["input_breaks"]:
        assert report.conformant, report.clauses()
    missing = set(entry["input_breaks"]) - report.clauses()
    assert not missing, f"{entry['name']}: check no longer reports {sorted(missing)}"


@pytest.mark.qemu
@pytest.mark.parametrize("case", CASES, ids=[ids(c) for c in CASES])
@pytest.mark.parametrize("build", ["zoned-asan", "zoned"])
def test_the_series_still_fails_this_way(case: tuple[dict, str], build: str) -> None:
    entry, kind = case
    expected = entry["outcomes"][kind][build]
    if not expected.get("category"):
        pytest.skip(f"not run: {build} did not fail on it when it was kept")
    reason = qemu.build_unavailable(build)
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    data = (REPO / entry["files"][kind]).read_bytes()
    finding = execute(get_target(entry["target"], entry["reader"], build=build), data)
    assert finding is not None, f"{entry['name']}: {build} no longer fails (fixed?)"
    assert finding.summary.split(":")[0] == expected["category"]
    if build.endswith("-asan"):  # gdb's stacks of the plain build vary between runs
        assert finding.where == expected["site"]


@pytest.mark.qemu
@pytest.mark.parametrize("case", CASES, ids=[ids(c) for c in CASES])
def test_stock_does_not_fail(case: tuple[dict, str]) -> None:
    entry, kind = case
    reason = qemu.build_unavailable("stock")
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    if entry["outcomes"][kind]["stock"]["failed"]:
        pytest.skip("not run: kept as a stock 10.2 finding, not the series'")
    outcome = verdict(reader_commands(entry["target"], entry["reader"]),
                      str(REPO / entry["files"][kind]), "stock", memory_mb=4096, seconds=30)
    assert not outcome.failed, outcome.outcome
    assert outcome.outcome.startswith(("refused cleanly", "read fine")), outcome.outcome
