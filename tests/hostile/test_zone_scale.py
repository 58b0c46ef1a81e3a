"""Zone counts up to the spec's bound through every command, under a memory limit
(issue #18): info, check, map and report stream the write-pointer table in batches,
and the model service refuses a geometry past its documented bound.

Each command runs as a child with RLIMIT_AS of 1 GiB, so an allocation that grows
with the zone count fails as exit 1 ("out of memory") instead of passing; the
timeout is a hang guard, not a timing assertion (figures: bench/run.py --only zones).
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import resource
import subprocess
import sys

import pytest
from qcow2harness.reference.zones import MAX_NR_ZONES, MODEL_MAX_ZONES

from qcow2harness.checker import check_path
from qcow2harness.checker import zoned as checker_zoned

REPO = pathlib.Path(__file__).resolve().parents[2]
CLI = pathlib.Path(sys.executable).with_name("qcow2-harness")
MEMORY_LIMIT = 1 << 30
HANG_GUARD_S = 60
ZONES = 1 << 22
INT64_MAX = (1 << 63) - 1


def _builder():  # bench/zone_images.py, loaded by path (bench/ is not a package)
    spec = importlib.util.spec_from_file_location("zone_images", REPO / "bench" /
                                                  "zone_images.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_zoned_image


build_zoned_image = _builder()


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(CLI), *argv], input=stdin, capture_output=True, text=True,
                          preexec_fn=_limit_memory, timeout=HANG_GUARD_S)
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "MemoryError" not in proc.stderr, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="module")
def many_zones(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    path = tmp_path_factory.mktemp("zones") / "many.qcow2"
    build_zoned_image(str(path), ZONES, conventional_zones=3)
    return path


@pytest.fixture(scope="module")
def zeroed_table(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """2^22 zones whose table is a hole: every zone but the first has wp 0 (WP-6)."""
    path = tmp_path_factory.mktemp("zones") / "zeroed.qcow2"
    build_zoned_image(str(path), ZONES, table="hole")
    return path


def test_check_on_many_zones(many_zones: pathlib.Path) -> None:
    proc = run("check", str(many_zones))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_names_the_first_zones_and_counts_the_rest(zeroed_table: pathlib.Path) -> None:
    from qcow2harness.checker.report import FINDINGS_PER_CLAUSE

    proc = run("check", "--json", str(zeroed_table))
    assert proc.returncode == 2, proc.stderr
    report = json.loads(proc.stdout)
    findings = report["violations"]
    assert {f["clause"] for f in findings} == {"WP-6"}, findings
    assert [f["message"].split(":")[0] for f in findings] == [
        f"zone {zone}" for zone in range(1, FINDINGS_PER_CLAUSE + 1)]
    assert report["suppressed"] == {"WP-6": ZONES - 1 - FINDINGS_PER_CLAUSE}
    assert report["counts"]["MUST"] == ZONES - 1


def test_info_summarises_and_lists_all_on_request(many_zones: pathlib.Path) -> None:
    proc = run("info", "--json", str(many_zones))
    assert proc.returncode == 0, proc.stderr
    zoned = json.loads(proc.stdout)["zoned"]
    assert zoned["nr_zones"] == ZONES
    assert zoned["states"] == {"empty": ZONES - 3, "not_write_pointer": 3}
    assert len(zoned["zones"]) == zoned["zones_listed"] < ZONES
    text = run("info", str(many_zones))
    assert text.returncode == 0 and f"zone report ({ZONES} zones)" in text.stdout
    assert len(text.stdout.splitlines()) < 200


def test_info_zones_all_is_streamed(tmp_path: pathlib.Path) -> None:
    """Every zone, under the memory limit; 2^18 zones keep the test short."""
    path = tmp_path / "quarter.qcow2"
    count = 1 << 18
    build_zoned_image(str(path), count, conventional_zones=1)
    proc = run("info", "--zones", "all", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    zones = json.loads(proc.stdout)["zoned"]["zones"]
    assert len(zones) == count
    assert [z["index"] for z in zones[-2:]] == [count - 2, count - 1]
    assert zones[0]["state"] == "not_write_pointer" and zones[-1]["state"] == "empty"
    text = run("info", "--zones", "all", str(path))
    assert text.returncode == 0 and len(text.stdout.splitlines()) > count


def test_map_and_report_on_many_zones(many_zones: pathlib.Path, tmp_path: pathlib.Path) -> None:
    proc = run("map", "--output", "json", str(many_zones))
    assert proc.returncode == 0, proc.stderr
    assert all(0 <= e["length"] <= INT64_MAX for e in json.loads(proc.stdout))
    html = tmp_path / "page.html"
    proc = run("report", str(many_zones), "--html", str(html))
    assert proc.returncode == 0, proc.stderr
    page = html.read_text()
    assert f"{ZONES:,} zones" in page and "All zones by stored state" in page


@pytest.mark.parametrize("zone_size", [1 << 16, 1 << 32])
def test_zone_count_past_the_bound(tmp_path: pathlib.Path, zone_size: int) -> None:
    """nr_zones 2^32 - 1 (ZONE-10), the table past the end of the file; with 4 GiB zones
    the virtual size passes 2^63, and no command may print a length past int64."""
    path = tmp_path / "past.qcow2"
    count = 2**32 - 1
    size = min(count * zone_size, 2**64 - 512)
    build_zoned_image(str(path), 8, zone_size=zone_size, table="none", nr_zones_field=count,
                      virtual_size=size)
    check = run("check", "--json", str(path))
    assert check.returncode == 2, check.stdout + check.stderr
    clauses = {f["clause"] for f in json.loads(check.stdout)["violations"]}
    assert clauses & {"ZONE-10", "ZONE-18", "ZONE-20", "HDR-16"}, clauses
    info = run("info", "--json", str(path))
    assert info.returncode in (0, 2), info.stderr
    mapped = run("map", "--output", "json", str(path))
    assert mapped.returncode in (0, 2), mapped.stderr
    if mapped.returncode == 0:
        assert all(0 <= e["length"] <= INT64_MAX and e["start"] + e["length"] <= INT64_MAX
                   for e in json.loads(mapped.stdout))
    report = run("report", str(path), "--html", str(tmp_path / "past.html"))
    assert report.returncode in (0, 2), report.stderr


def _create(zones: int) -> str:
    zone_size = 1 << 20
    return json.dumps({"op": "create", "size": zones * zone_size, "zone_size": zone_size,
                       "zone_capacity": zone_size, "conventional_zones": 0,
                       "max_open_zones": 0, "max_active_zones": 0, "max_append_bytes": 0})


@pytest.mark.parametrize("zones", [MODEL_MAX_ZONES + 1, 1 << 22, MAX_NR_ZONES])
def test_model_refuses_past_its_bound(zones: int) -> None:
    proc = run("model", stdin=_create(zones) + '\n{"op":"report"}\n')
    assert proc.returncode == 0, proc.stderr
    created, report = (json.loads(line) for line in proc.stdout.splitlines())
    assert created["error"] == "bad-config" and str(MODEL_MAX_ZONES) in created["message"]
    assert report["error"] == "not-created"


def test_model_takes_its_bound() -> None:
    proc = run("model", stdin=_create(MODEL_MAX_ZONES) + '\n{"op":"report"}\n')
    assert proc.returncode == 0, proc.stderr
    created, report = (json.loads(line) for line in proc.stdout.splitlines())
    assert created["ok"] and created["nr_zones"] == MODEL_MAX_ZONES
    assert len(report["zones"]) == MODEL_MAX_ZONES


@pytest.mark.parametrize("table", ["empty", "hole"])
def test_plain_path_equals_batched_path(tmp_path: pathlib.Path, table: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A short table is judged without numpy; the findings match the batched path's."""
    path = tmp_path / "short.qcow2"
    build_zoned_image(str(path), 40, conventional_zones=2, table=table)
    with open(path, "r+b") as stream:  # zone 5: wp unaligned; zone 6: reserved bits
        offset = checker_zoned.Image.open(str(path)).zoned.ofs_zonedmeta
        stream.seek(offset + 8 * 5)
        stream.write((5 * 65536 + 7).to_bytes(8, "big"))
        stream.seek(offset + 8 * 6)
        stream.write((6 * 65536 | 1 << 61).to_bytes(8, "big"))
    plain = check_path(path).to_json()["violations"]
    monkeypatch.setattr(checker_zoned, "PLAIN_TABLE_ZONES", 0)
    batched = check_path(path).to_json()["violations"]
    assert plain == batched and {f["clause"] for f in plain} >= {"WP-3"}
