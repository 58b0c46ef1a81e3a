"""The iotests (iotests/NNN) under pytest, plus self-tests of their runner.

Every test of the `quick` group becomes one pytest case that runs it through
qcow2harness.iotests_runner: a pass passes, a failure fails with the diff, and
a "not run" is a pytest skip carrying the test's own reason (never a pass).
The full set runs with `iotests/check` (tox env `iotests`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from junitparser import JUnitXml
from qcow2harness.properties.corruptions import HEADER_FIELDS, ZONED_FIELDS

from qcow2harness import iotests_runner as runner

IOTESTS = Path(__file__).resolve().parent.parent / "iotests"
CHECK = IOTESTS / "check"
QUICK = runner.select(runner.discover(IOTESTS), groups=["quick"])
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) not run$")


@pytest.fixture(scope="session")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, runner.Result]:
    """The whole quick group, run once, one test per CPU at a time (the group
    must stay under ~3 minutes inside `make test`); each case below reads its result."""
    base = tmp_path_factory.mktemp("iotests")
    settings = runner.Settings(tests_dir=IOTESTS, results_dir=base / "results",
                               scratch_dir=base / "scratch")
    results = runner.run_suite(QUICK, settings, jobs=os.cpu_count() or 1)
    return {r.test.name: r for r in results}


@pytest.mark.parametrize("test", QUICK, ids=[f"iotest-{t.name}" for t in QUICK])
def test_quick_iotest(test: runner.Test, quick_results: dict[str, runner.Result]) -> None:
    result = quick_results[test.name]
    if result.status == runner.NOTRUN:
        pytest.skip(f"not run: {result.reason}")
    assert result.status == runner.PASS, (
        f"iotest {test.name} failed: {result.reason}\n{result.diff or result.output}"
    )


def test_quick_group_is_big_enough() -> None:
    everything = runner.discover(IOTESTS)
    assert len(everything) >= 30
    assert len(QUICK) >= 25
    for test in everything:
        text = test.path.read_text()
        assert test.groups, f"{test.name}: line 2 must be '# group: ...'"
        assert "*** done" in text or "iotests.done()" in text, test.name
        if test.interpreter == "bash":
            assert "trap " in text or "_model" in text, f"{test.name}: no cleanup trap"
        assert os.access(test.path, os.X_OK), f"{test.name} is not executable"


# ---------------------------------------------------------------------------
# Runner self-tests: a scratch copy of iotests/ with a few tests in it.
# ---------------------------------------------------------------------------


def _copy_suite(tmp_path: Path, *names: str) -> Path:
    suite = tmp_path / "iotests"
    suite.mkdir()
    for helper in ("common.rc", "tools.py", "iotests.py"):
        shutil.copy2(IOTESTS / helper, suite / helper)
    for name in names:
        shutil.copy2(IOTESTS / name, suite / name)
        shutil.copy2(IOTESTS / f"{name}.out", suite / f"{name}.out")
    return suite


def _check(suite: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), "--dir", str(suite), *args],
        capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, **(env or {})},
    )


def _summary(stdout: str) -> tuple[int, int, int]:
    last = stdout.rstrip("\n").splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, f"the last line is not the summary: {last!r}"
    passed, failed, notrun = (int(g) for g in match.groups())
    return passed, failed, notrun


def test_broken_golden_shows_a_diff_and_fails(tmp_path: Path) -> None:
    suite = _copy_suite(tmp_path, "002")
    golden = suite / "002.out"
    text = golden.read_text()
    assert "cluster_bits is 8, below 9" in text
    golden.write_text(text.replace("cluster_bits is 8, below 9", "cluster_bits is 8, fine"))
    proc = _check(suite, "002")
    assert proc.returncode == 1
    assert _summary(proc.stdout) == (0, 1, 0)
    assert "Failures: 002" in proc.stdout
    assert "-MUST   HDR-4    cluster_bits is 8, fine" in proc.stdout
    assert "+MUST   HDR-4    cluster_bits is 8, below 9" in proc.stdout
    bad = suite / "results" / "002.out.bad"
    assert "cluster_bits is 8, below 9" in bad.read_text()
    assert (suite / "results" / "002.diff").read_text().startswith("--- 002.out")
    # -r rewrites the golden from the real output; then the test passes again
    assert _check(suite, "-r", "002").returncode == 0
    assert golden.read_text() == text
    assert _summary(_check(suite, "002").stdout) == (1, 0, 0)


def test_missing_qemu_is_not_run_never_passed(tmp_path: Path) -> None:
    suite = _copy_suite(tmp_path, "001", "011", "038", "021")
    proc = _check(suite, env={"QEMU_IMG": "/nonexistent", "QEMU_IO": "/nonexistent"})
    assert _summary(proc.stdout) == (1, 0, 3), proc.stdout  # 021 needs no QEMU
    assert proc.returncode == 0
    for name in ("001", "011", "038"):
        line = next(x for x in proc.stdout.splitlines() if x.startswith(name))
        assert "not run" in line and "qemu-img not found" in line, line
    assert "Not run: 001 011 038" in proc.stdout


def test_junit_counts(tmp_path: Path) -> None:
    suite = _copy_suite(tmp_path, "001", "002", "034")
    golden = suite / "002.out"
    golden.write_text(golden.read_text() + "an extra line\n")
    junit = tmp_path / "junit.xml"
    proc = _check(suite, "--junit", str(junit))
    assert _summary(proc.stdout) == (1, 1, 1)  # 034 needs a zoned QEMU
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.iter("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    parsed = JUnitXml.fromfile(str(junit))
    assert (parsed.tests, parsed.failures, parsed.skipped) == (3, 1, 1)
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"001", "002", "034"}
    assert cases["001"].find("failure") is None and cases["001"].find("skipped") is None
    failure = cases["002"].find("failure")
    assert failure is not None and "+an extra line" not in (failure.text or "")
    assert "-an extra line" in (failure.text or "")
    skipped = cases["034"].find("skipped")
    assert skipped is not None and "zoned" in (skipped.get("message") or "")


def test_groups_and_selection() -> None:
    tests = runner.discover(IOTESTS)
    zoned = runner.select(tests, groups=["zoned"])
    assert zoned and all("zoned" in t.groups for t in zoned)
    no_zoned = runner.select(tests, groups=["quick"], exclude=["zoned"])
    assert no_zoned and not any("zoned" in t.groups for t in no_zoned)
    assert [t.name for t in runner.select(tests, ["1", "003-004"])] == ["001", "003", "004"]
    with pytest.raises(ValueError):
        runner.select(tests, ["abc"])


def test_filters() -> None:
    text = (
        "Formatting '/tmp/x/t.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off "
        "compression_type=zlib size=67108864 lazy_refcounts=off refcount_bits=16\n"
        "64 KiB, 1 ops; 00.00 sec (38.584 MiB/sec and 308.6748 ops/sec)\n"
        "qemu-img version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"
        "qcow2-harness 0.1.0\n"
    )
    assert runner.filter_output(text, "/tmp/x") == (
        "Formatting 'TEST_DIR/t.qcow2', fmt=qcow2 size=67108864\n"
        "64 KiB, 1 ops; TIMING\n"
        "qemu-img version VERSION\n"
        "qcow2-harness VERSION\n"
    )


def test_common_rc_field_tables_match_the_parser_tables() -> None:
    """common.rc's poke_header / poke_zoned offsets are those of properties.corruptions."""
    text = (IOTESTS / "common.rc").read_text()

    def table(name: str) -> dict[str, int]:
        body = re.search(rf"declare -A {name}=\((.*?)\n\)", text, re.S)
        assert body, name
        return {k: int(v) for k, v in re.findall(r"\[(\w+)\]=(\d+)", body.group(1))}

    offsets, widths = table("HEADER_FIELD_OFFSET"), table("HEADER_FIELD_WIDTH")
    for field, (offset, width) in HEADER_FIELDS.items():
        assert (offsets[field], widths[field]) == (offset, width), field
    zoffsets, zwidths = table("ZONED_FIELD_OFFSET"), table("ZONED_FIELD_WIDTH")
    for field, (offset, width) in ZONED_FIELDS.items():
        assert (zoffsets[field], zwidths[field]) == (offset, width), field
