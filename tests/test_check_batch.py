"""`check` over a collection: discovery by magic, records per image, summary, exit code,
JUnit per image, worker processes, and an image that kills its worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from qcow2harness.reference.writer import ReferenceWriter

from qcow2harness import batch
from qcow2harness.batch import SEVERITY, check_many, find_images, worst
from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK, EXIT_SHOULD_ONLY

CLI = [sys.executable, "-m", "qcow2harness.cli"]


def _image(path: Path) -> Path:
    writer = ReferenceWriter.create(path, size=1 << 20)
    writer.close()
    return path


def _broken(path: Path) -> Path:
    """A qcow2 image whose refcount table offset is not cluster-aligned (HDR-18)."""
    _image(path)
    with open(path, "r+b") as f:
        f.seek(48)
        f.write((0x10200).to_bytes(8, "big"))
    return path


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    (root / "nested" / "deeper").mkdir(parents=True)
    _image(root / "a.qcow2")
    _image(root / "nested" / "disk.img")  # qcow2 by magic, not by name
    _broken(root / "nested" / "deeper" / "z.qcow2")
    (root / "notes.txt").write_text("not an image\n")
    (root / "raw.qcow2").write_bytes(b"\0" * 4096)  # named like one, but no magic
    os.mkfifo(root / "pipe")  # must be passed over, never opened blocking
    (root / "loop").symlink_to(root)  # a directory symlink is not followed
    return root


def _run(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_a_directory_is_walked_and_images_found_by_magic(store: Path) -> None:
    found = list(find_images([str(store)]))
    assert found == [str(store / "a.qcow2"), str(store / "nested" / "deeper" / "z.qcow2"),
                     str(store / "nested" / "disk.img")]


def test_records_verdicts_and_summary(store: Path, tmp_path: Path) -> None:
    missing = tmp_path / "gone.qcow2"
    result = _run("check", store, missing)
    assert result.returncode == EXIT_CANNOT_RUN, result.stderr  # worst: one was unreadable
    out = result.stdout
    assert f"{store / 'a.qcow2'}: conformant" in out
    assert f"{store / 'nested' / 'deeper' / 'z.qcow2'}: MUST violations" in out
    assert "HDR-18" in out
    assert f"{missing}: No such file or directory" in out
    assert "4 image(s): 2 conformant, 1 MUST violations, 1 could not be read." in out
    assert "Most frequent clauses (images): HDR-18 (1)." in out


def test_json_is_one_valid_record_per_line(store: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(__file__).parents[1] / "docs/schema/check.schema.json")
                        .read_text())
    result = _run("check", "--json", store, store / "gone")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for record in records:
        jsonschema.validate(record, schema)
    assert [r["path"] for r in records] == [
        str(store / "a.qcow2"), str(store / "nested" / "deeper" / "z.qcow2"),
        str(store / "nested" / "disk.img"), str(store / "gone")]
    assert [r["exit_code"] for r in records] == [EXIT_OK, EXIT_INVALID, EXIT_OK,
                                                 EXIT_CANNOT_RUN]
    assert "error" in records[-1] and not records[-1]["conformant"]


def test_junit_has_one_suite_per_image(store: Path, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = _run("check", "--junit", junit, store)
    assert result.returncode == EXIT_INVALID
    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == [
        f"check {store / 'a.qcow2'}", f"check {store / 'nested' / 'deeper' / 'z.qcow2'}",
        f"check {store / 'nested' / 'disk.img'}"]
    assert int(root.get("tests", "0")) == sum(int(s.get("tests", "0")) for s in suites)
    assert root.get("failures") == "1"


def test_workers_give_the_same_outcomes_in_the_same_order(store: Path) -> None:
    def outcomes(jobs: int) -> list[tuple[str, int, list[str]]]:
        return [(o.path, o.exit_code, [v["clause"] for v in o.record["violations"]])
                for o in check_many([str(store)], jobs=jobs)]

    assert outcomes(2) == outcomes(1)


_REAL_CHECK_ONE = batch.check_one


def _dies_on_disk_img(path: str, junit: bool = False) -> batch.Outcome:
    """check_one, but the worker process exits (as a crash would) on disk.img."""
    if path.endswith("disk.img"):
        os._exit(9)
    return _REAL_CHECK_ONE(path, junit)


def test_an_image_that_kills_its_worker_costs_only_itself(
        store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batch, "check_one", _dies_on_disk_img)
    outcomes = list(check_many([str(store)], jobs=2))
    assert [(Path(o.path).name, o.exit_code) for o in outcomes] == [
        ("a.qcow2", EXIT_OK), ("z.qcow2", EXIT_INVALID), ("disk.img", EXIT_CANNOT_RUN)]
    assert "died" in outcomes[-1].record["error"]


def test_worst_ranks_unreadable_over_must_over_should() -> None:
    assert worst([]) == EXIT_OK
    assert worst([EXIT_OK, EXIT_SHOULD_ONLY]) == EXIT_SHOULD_ONLY
    assert worst([EXIT_SHOULD_ONLY, EXIT_INVALID, EXIT_OK]) == EXIT_INVALID
    assert worst([EXIT_INVALID, EXIT_CANNOT_RUN]) == EXIT_CANNOT_RUN
    assert sorted(SEVERITY, key=SEVERITY.__getitem__) == [
        EXIT_OK, EXIT_SHOULD_ONLY, EXIT_INVALID, EXIT_CANNOT_RUN]


def test_one_image_keeps_the_single_report(store: Path) -> None:
    one = _run("check", store / "a.qcow2")
    assert one.returncode == EXIT_OK
    assert one.stdout.startswith("No errors were found on the image.")
    document = json.loads(_run("check", "--json", store / "a.qcow2").stdout)
    assert document["path"] == str(store / "a.qcow2")
