"""CI formats: every JUnit file our commands write parses with junitparser and with
xml.etree and counts what the command reported; every --json output validates against
its schema in docs/schema/ (on the corpus seeds and on damaged images)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pathlib
import re
import shlex
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from junitparser import Error, Failure, JUnitXml, Skipped
from qcow2harness.spec.registry import MODEL_ENFORCERS, load

from qcow2harness import cli
from qcow2harness.commands.output import SCHEMA_VERSIONS
from qcow2harness.image import OFFSET_MASK
from qcow2harness.junit import Case, Suite, write_junit, xml_safe

REPO = pathlib.Path(__file__).resolve().parent.parent
SEEDS = REPO / "corpus" / "seeds"
SCHEMAS = REPO / "docs" / "schema"
HARNESS = shutil.which("qcow2-harness", path=os.path.dirname(sys.executable))
SEGV_READER = "sh -c 'kill -SEGV $$' {}"  # an external reader that crashes on every input


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(list(argv))
    return code, out.getvalue(), err.getvalue()


def run_harness(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    if HARNESS is None:
        pytest.skip("not run: the qcow2-harness console script is not installed")
    return subprocess.run([HARNESS, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False)


def validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads((SCHEMAS / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def assert_valid(name: str, document: Any) -> None:
    errors = sorted(validator(name).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message[:300]}" for e in errors[:5]]


# ---------------------------------------------------------------------------
# Reading a JUnit file twice: junitparser and xml.etree must agree with each other
# and with the counts the file declares.
# ---------------------------------------------------------------------------


@dataclass
class ReadCase:
    name: str
    classname: str
    outcome: str  # passed, failure, error, skipped
    message: str
    type: str
    text: str


def read_junit(path: pathlib.Path) -> dict[str, list[ReadCase]]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    by_etree: dict[str, list[ReadCase]] = {}
    for suite in root.iter("testsuite"):
        cases = []
        for case in suite.iter("testcase"):
            results = [r for r in case if r.tag in ("failure", "error", "skipped")]
            assert len(results) <= 1, case.get("name")
            result = results[0] if results else None
            cases.append(ReadCase(
                case.get("name", ""), case.get("classname", ""),
                {None: "passed", "failure": "failure", "error": "error",
                 "skipped": "skipped"}[result.tag if result is not None else None],
                result.get("message", "") if result is not None else "",
                result.get("type", "") if result is not None else "",
                (result.text or "") if result is not None else ""))
        for outcome, attribute in (("failure", "failures"), ("error", "errors"),
                                   ("skipped", "skipped")):
            assert int(suite.get(attribute, "-1")) == sum(c.outcome == outcome for c in cases)
        assert int(suite.get("tests", "-1")) == len(cases)
        by_etree[suite.get("name", "")] = cases
    assert int(root.get("tests", "-1")) == sum(len(c) for c in by_etree.values())

    parsed = JUnitXml.fromfile(str(path))
    by_parser: dict[str, list[tuple[str, str]]] = {}
    for suite in parsed:
        assert suite.tests == len(list(suite))
        outcomes = []
        for case in suite:
            kinds = {Failure: "failure", Error: "error", Skipped: "skipped"}
            names = [kinds[type(r)] for r in case.result if type(r) in kinds]
            outcomes.append((case.name, names[0] if names else "passed"))
        assert suite.failures == sum(o == "failure" for _, o in outcomes)
        assert suite.skipped == sum(o == "skipped" for _, o in outcomes)
        by_parser[suite.name] = outcomes
    assert by_parser == {name: [(c.name, c.outcome) for c in cases]
                         for name, cases in by_etree.items()}
    return by_etree


# ---------------------------------------------------------------------------
# check: images, damaged and not
# ---------------------------------------------------------------------------


def l2_reserved_everywhere(seed: pathlib.Path, out: pathlib.Path) -> None:
    """A reserved bit in every entry of the first L2 table: more L2-1 findings than the
    report lists, so that some are counted in `suppressed`."""
    data = bytearray(seed.read_bytes())
    l1 = struct.unpack(">Q", data[40:48])[0]
    l2 = struct.unpack(">Q", data[l1:l1 + 8])[0] & OFFSET_MASK
    cluster_size = 1 << struct.unpack(">I", data[20:24])[0]
    for at in range(l2, l2 + cluster_size, 8):
        entry = struct.unpack(">Q", data[at:at + 8])[0]
        data[at:at + 8] = struct.pack(">Q", entry | 1 << 56)
    out.write_bytes(data)


@pytest.fixture(scope="session")
def check_images(tmp_path_factory: pytest.TempPathFactory) -> list[pathlib.Path]:
    """The committed seeds, one broken image per clause (built from them here), an image
    with suppressed findings, files that are not qcow2 at all, and a file whose name
    holds control characters and a byte that is not UTF-8."""
    from qcow2harness.fuzz.seeds import build_broken

    base = tmp_path_factory.mktemp("ci-images")
    broken = base / "broken"
    broken.mkdir()
    build_broken(str(SEEDS), str(broken))
    images = sorted(SEEDS.glob("*.qcow2")) + sorted(broken.glob("*.qcow2"))
    many = base / "l2-reserved-everywhere.qcow2"
    l2_reserved_everywhere(SEEDS / "qemu-preallocation-metadata.qcow2", many)
    empty = base / "empty.qcow2"
    empty.write_bytes(b"")
    text = base / "text.qcow2"
    text.write_bytes(b"QFI\xfb" + bytes(range(32)) * 3)
    odd = base / os.fsdecode(b"odd-\x01\x1b[31m-\xff-name.qcow2")
    shutil.copy(broken / "hdr-4--cluster-bits-small.qcow2", odd)
    assert len(images) > 100
    return [*images, many, empty, text, odd]


@dataclass
class CheckRun:
    image: pathlib.Path
    code: int
    report: dict[str, Any]
    suites: dict[str, list[ReadCase]]


@pytest.fixture(scope="session")
def check_runs(check_images: list[pathlib.Path],
               tmp_path_factory: pytest.TempPathFactory) -> list[CheckRun]:
    junit_dir = tmp_path_factory.mktemp("check-junit")
    runs = []
    for number, image in enumerate(check_images):
        junit = junit_dir / f"{number}.xml"
        code, out, err = run_cli("check", "--json", "--junit", str(junit), str(image))
        assert err == "", err
        runs.append(CheckRun(image, code, json.loads(out), read_junit(junit)))
    return runs


def test_check_json_validates_on_seeds_and_damaged_images(check_runs: list[CheckRun]) -> None:
    codes = {run.code for run in check_runs}
    assert codes == {0, 2, 3}
    assert any(run.report["suppressed"] for run in check_runs)
    assert any(run.report["notes"] for run in check_runs)
    for run in check_runs:
        assert run.report["schema_version"] == SCHEMA_VERSIONS["check"]
        assert_valid("check", run.report)


def test_check_schema_rejects_what_it_does_not_describe(check_runs: list[CheckRun]) -> None:
    damaged = next(run.report for run in check_runs if run.report["violations"])
    assert_valid("check", damaged)
    for break_it in (
        lambda d: d.update(surprise=1),
        lambda d: d.pop("counts"),
        lambda d: d["violations"][0].update(level="MAY"),
        lambda d: d["violations"][0].update(clause="not a clause"),
        lambda d: d.update(conformant=True),  # exit_code 2 says otherwise
        lambda d: d.update(schema_version="2.0"),
    ):
        document = json.loads(json.dumps(damaged))
        break_it(document)
        assert not validator("check").is_valid(document), document


FAILURE_MESSAGE = re.compile(r"^(?P<clause>\S+) (?P<level>MUST|SHOULD): (?P<count>\d+) finding")


def test_check_junit_counts_equal_the_report(check_runs: list[CheckRun]) -> None:
    registry = load()
    image_clauses = [c.id for c in registry if c.family not in MODEL_ENFORCERS]
    for run in check_runs:
        report = run.report
        (name, cases), = run.suites.items()
        assert name == f"check {report['path']}" or "\\x01" in name
        assert [c.name.split()[0] for c in cases][:len(image_clauses)] == image_clauses
        levels = {c.id: c.level for c in registry}
        expected = ({v["clause"] for v in report["violations"]}
                    | {c for c in report["suppressed"] if levels[c] != "MAY"})
        failed = [c for c in cases if c.outcome == "failure"]
        assert {c.name.split()[0] for c in failed} == expected, run.image
        total = 0
        for case in failed:
            match = FAILURE_MESSAGE.match(case.message)
            assert match, case.message
            assert case.type == match["level"].lower() == levels[match["clause"]].lower()
            total += int(match["count"])
            listed = [v for v in report["violations"] if v["clause"] == match["clause"]]
            for finding in listed:
                assert finding["message"] in case.text
            if match["clause"] in report["suppressed"]:
                assert f"and {report['suppressed'][match['clause']]} more" in case.text
        assert total == report["counts"]["MUST"] + report["counts"]["SHOULD"], run.image
        skipped = [c for c in cases if c.outcome == "skipped"]
        assert bool(skipped) == ("clusters_in_file" not in report["stats"]), run.image
        types = {c.type for c in failed}
        assert types == {levels[c].lower() for c in expected}
        assert (run.code == 0) == (not types)
        assert (run.code == 2) == ("must" in types)
        assert (run.code == 3) == (types == {"should"})


def test_junit_escapes_control_characters(check_runs: list[CheckRun],
                                          tmp_path: pathlib.Path) -> None:
    odd = next(run for run in check_runs if "odd-" in run.image.name)
    (name,) = odd.suites
    assert "\\x01\\x1b[31m" in name and "\\udcff" in name
    hostile = "".join(chr(c) for c in range(256)) + "\ud800\ufffe\uffff"
    path = tmp_path / "hostile.xml"
    write_junit(path, [Suite(hostile, [Case(hostile, hostile, system_out=hostile * 3)])])
    (cases,) = read_junit(path).values()
    assert xml_safe(hostile) == cases[0].name
    assert "\\x00" in cases[0].name and "\\x7f" not in cases[0].name  # DEL is legal XML


# ---------------------------------------------------------------------------
# crash
# ---------------------------------------------------------------------------


def _crash(tmp_path: pathlib.Path, *argv: str) -> tuple[int, dict[str, Any],
                                                         dict[str, list[ReadCase]]]:
    junit = tmp_path / "crash.xml"
    code, out, _ = run_cli("crash", "--writer", "reference", "--workload", "zones-small",
                           "--json", "--junit", str(junit), *argv)
    return code, json.loads(out), read_junit(junit)


def _epoch_failures(document: dict[str, Any], cases: list[ReadCase]) -> None:
    """One failing case per epoch with violations, their counts adding up."""
    failing_epochs = {v["state"].split(":")[0] for v in document["violations"]}
    failed = [c for c in cases if c.outcome == "failure"]
    names = {c.name.removeprefix("epoch ") for c in failed}
    names = {{"base image": "base", "writer and model agree": "run"}.get(n, n) for n in names}
    assert names == failing_epochs
    total = sum(int(c.message.split()[0]) for c in failed)
    assert total == len(document["violations"])
    for violation in document["violations"]:
        assert any(f"state {violation['state']}: " in c.text for c in failed)
        assert any(violation["reproduce"] in c.text for c in failed)


def test_crash_json_and_junit(tmp_path: pathlib.Path) -> None:
    code, clean, suites = _crash(tmp_path)
    assert code == 0
    assert_valid("crash", clean)
    (cases,) = suites.values()
    assert len(cases) == clean["epochs"] + 2 and all(c.outcome == "passed" for c in cases)

    code, found, suites = _crash(tmp_path, "--mutant", "wp-before-data")
    assert code == 2 and found["violations"]
    assert_valid("crash", found)
    (cases,) = suites.values()
    assert len(cases) == found["epochs"] + 2
    _epoch_failures(found, cases)

    state = found["violations"][0]["state"]
    code, rebuilt, suites = _crash(tmp_path, "--mutant", "wp-before-data", "--state", state,
                                   "--out", str(tmp_path / "state.qcow2"))
    assert code == 2
    assert_valid("crash", rebuilt)
    ((case,),) = suites.values()
    assert case.outcome == "failure"
    assert int(case.message.split()[0]) == len(rebuilt["violations"])
    broken = dict(rebuilt, surprise=True)
    assert not validator("crash").is_valid(broken)


def test_crash_matrix_json_and_junit(tmp_path: pathlib.Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The --matrix output shape, with real campaigns standing in for QEMU's rows (the
    real matrix takes an hour): a clean one, and a failing one labelled as the
    cache=unsafe control row, whose failures are expected and so skipped."""
    from qcow2harness.crash import campaign
    from qcow2harness.crash.shard import matrix_shard_fields
    from qcow2harness.sharding import WHOLE

    def fake_matrix(workloads: Any = None, report: Any = None,
                    **_: Any) -> list[campaign.CampaignResult]:
        results = []
        rows = (((), {}), (("wp-before-data",), {"cache": "unsafe"}))
        for number, (mutants, options) in enumerate(rows):
            result = campaign.run_campaign(campaign.CampaignSpec(
                "reference", "zones-small", mutants))
            result.spec.options = options
            result.sharding.update(matrix_shard_fields(
                WHOLE, number, len(rows), campaign.EXPECTED_TO_FAIL.get("cache=unsafe", "")
                if options else ""))
            results.append(result)
            if report is not None:
                report(result)
        return results

    monkeypatch.setattr(campaign, "run_matrix", fake_matrix)
    junit = tmp_path / "matrix.xml"
    code, out, _ = run_cli("crash", "--matrix", "--json", "--junit", str(junit))
    document = json.loads(out)
    assert code == 0  # only the control row fails
    assert_valid("crash", document)
    assert len(document["campaigns"]) == 2
    suites = list(read_junit(junit).values())
    assert all(c.outcome == "passed" for c in suites[0])
    control = suites[1]
    assert not [c for c in control if c.outcome == "failure"]
    skipped = [c for c in control if c.outcome == "skipped"]
    assert len(skipped) == len({v["state"].split(":")[0]
                                for v in document["campaigns"][1]["violations"]})


# ---------------------------------------------------------------------------
# fuzz
# ---------------------------------------------------------------------------


def test_fuzz_replay_junit(tmp_path: pathlib.Path) -> None:
    junit = tmp_path / "replay.xml"
    proc = run_harness("fuzz", "check", "--replay", str(SEEDS), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    count = int(re.search(r"replayed (\d+) inputs", proc.stdout)[1])  # type: ignore[index]
    (cases,) = read_junit(junit).values()
    assert len(cases) == count == len(list(SEEDS.glob("*.qcow2")))
    assert all(c.outcome == "passed" for c in cases)

    proc = run_harness("fuzz", "external", "--reader", SEGV_READER, "--replay", str(SEEDS),
                       "--junit", str(junit))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    found = int(re.search(r": (\d+) finding\(s\)", proc.stdout)[1])  # type: ignore[index]
    (cases,) = read_junit(junit).values()
    failed = [c for c in cases if c.outcome == "failure"]
    assert len(failed) == found == count
    assert all(c.type == "crash" and "SIGSEGV" in c.message for c in failed)
    assert all("reproduce: qcow2-harness fuzz external --replay" in c.text for c in failed)


def test_fuzz_campaign_junit_and_its_reproduce_command(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("atheris", reason="not run: atheris is not installed")
    junit = tmp_path / "fuzz.xml"
    proc = run_harness("fuzz", "external", "--reader", SEGV_READER, "--runs", "20",
                       "--time", "60", "--minimize-time", "0", "--seeds", str(SEEDS),
                       "--corpus", str(tmp_path / "corpus"),
                       "--artifacts", str(tmp_path / "artifacts"),
                       "--regressions", str(tmp_path / "regressions"), "--junit", str(junit))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    found = int(re.search(r"^(\d+) finding\(s\)$", proc.stdout, re.M)[1])  # type: ignore[index]
    assert found >= 1
    (cases,) = read_junit(junit).values()
    assert cases[0].name == "external campaign" and cases[0].outcome == "passed"
    failed = [c for c in cases if c.outcome == "failure"]
    assert len(failed) == found == len(cases) - 1
    for case in failed:
        artifact = re.search(r"^artifact: (\S+)", case.text, re.M)[1]  # type: ignore[index]
        assert os.path.exists(artifact)
        command = re.search(r"^reproduce: (.*)$", case.text, re.M)[1]  # type: ignore[index]
        argv = shlex.split(command)
        assert argv[0] == "qcow2-harness"
        again = run_harness(*argv[1:])
        assert again.returncode == 2 and "SIGSEGV" in again.stdout, again.stdout
