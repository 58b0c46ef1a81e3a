"""The hostile list of issue #18, item by item, through the real CLI.

Items with a file of their own are tested there, and this file names them:
  zone counts past the memory bound     tests/hostile/test_zone_scale.py
  a FIFO, /dev/zero, merge of junk      tests/hostile/test_inputs.py
  every corruption through 4 commands   tests/test_command_agreement.py
Here: the commands' disagreements about the same bytes, map on structures it must not
walk, the checks that could not fail, and the second homes of one rule.
"""

from __future__ import annotations

import configparser
import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig

from qcow2harness.image import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
SEED = REPO / "corpus" / "seeds" / "qemu-v3.qcow2"
CLI = [sys.executable, "-m", "qcow2harness.cli"]
INT64_MAX = (1 << 63) - 1


def harness(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=120,
                          check=False)


def patched(tmp_path: pathlib.Path, name: str, edits: dict[int, bytes],
            source: pathlib.Path = SEED) -> pathlib.Path:
    image = tmp_path / name
    shutil.copy(source, image)
    with open(image, "r+b") as f:
        for offset, data in edits.items():
            f.seek(offset)
            f.write(data)
    return image


def zoned(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "zoned.qcow2"
    size = 8 << 20
    ReferenceWriter.create(path, size, zoned=ZoneConfig(size, 1 << 20, 1 << 20)).close()
    return path


def zoned_field(path: pathlib.Path, field_offset: int) -> int:
    """The file offset of a field of the zoned extension's body."""
    from qcow2harness.image import ExtensionType

    with Image.open(path) as image:
        extension = image.extension(ExtensionType.zoned)
        assert extension is not None
        return int(extension.offset) + 8 + field_offset


def clauses_named(command: str, image: pathlib.Path, tmp_path: pathlib.Path
                  ) -> tuple[int, set[str]]:
    """(exit code, clauses named) of one command on an image."""
    if command == "check":
        done = harness("check", "--json", str(image))
        report = json.loads(done.stdout)
        return done.returncode, {f["clause"] for f in report["violations"]}
    extra = ["--html", str(tmp_path / "page.html")] if command == "report" else []
    done = harness(command, str(image), *extra)
    assert "Traceback" not in done.stderr, done.stderr
    if command == "report":
        page = (tmp_path / "page.html").read_text(encoding="utf-8")
        return done.returncode, set(re.findall(r'data-clause="([A-Z0-9-]+)"', page))
    return done.returncode, set(re.findall(r"\[([A-Z][A-Z0-9]*-[0-9]+)\]", done.stderr))


# === Commands disagree about the same bytes ===

DISAGREEMENTS = {
    # name: (header edits, the one clause every command must name)
    "L1 table past EOF": ({40: (1 << 40).to_bytes(8, "big")}, "HDR-15"),
    "refcount table past EOF": ({48: (1 << 40).to_bytes(8, "big")}, "HDR-18"),
    "cluster_bits 22 (one limit, HDR-5)": ({20: (22).to_bytes(4, "big")}, "HDR-5"),
    "cluster_bits 56": ({20: (56).to_bytes(4, "big")}, "HDR-5"),
}


@pytest.mark.parametrize("case", list(DISAGREEMENTS))
@pytest.mark.parametrize("command", ["check", "info", "map", "report"])
def test_every_command_names_the_same_clause(case: str, command: str,
                                             tmp_path: pathlib.Path) -> None:
    edits, clause = DISAGREEMENTS[case]
    code, named = clauses_named(command, patched(tmp_path, "x.qcow2", edits), tmp_path)
    assert code == 2 and clause in named, (command, code, named)


@pytest.mark.parametrize("command", ["check", "info", "map", "report"])
def test_the_wp_table_past_eof_is_zone_20_everywhere(command: str,
                                                     tmp_path: pathlib.Path) -> None:
    image = zoned(tmp_path)
    at = zoned_field(image, 48)  # zonedmeta_offset
    with open(image, "r+b") as f:
        f.seek(at)
        f.write((1 << 40).to_bytes(8, "big"))
    code, named = clauses_named(command, image, tmp_path)
    assert code == 2 and "ZONE-20" in named, (command, code, named)


# === map exits 2, never past int64, on what check calls invalid ===

def _map_refuses(image: pathlib.Path) -> None:
    done = harness("map", "--output", "json", str(image))
    assert done.returncode == 2, (done.returncode, done.stdout[-500:], done.stderr)
    for number in re.findall(r"\d+", done.stdout):
        assert int(number) <= INT64_MAX
    assert harness("check", str(image)).returncode == 2


def test_map_refuses_virtual_size_2_64_minus_1(tmp_path: pathlib.Path) -> None:
    _map_refuses(patched(tmp_path, "v.qcow2", {24: ((1 << 64) - 1).to_bytes(8, "big")}))


def test_map_refuses_a_256_tb_refcount_table(tmp_path: pathlib.Path) -> None:
    # refcount_table_clusters (offset 56) so large the table spans 256 TB
    _map_refuses(patched(tmp_path, "r.qcow2", {56: (0xFFFFFFFF).to_bytes(4, "big")}))


def test_map_refuses_2_32_minus_1_zones(tmp_path: pathlib.Path) -> None:
    image = zoned(tmp_path)
    at = zoned_field(image, 24)  # nr_zones
    with open(image, "r+b") as f:
        f.seek(at)
        f.write((0xFFFFFFFF).to_bytes(4, "big"))
    _map_refuses(image)


# === Checks that could not fail ===

def test_make_crash_does_not_swallow_exit_1() -> None:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    commands = tox["testenv:crash"]["commands"].strip().splitlines()
    assert commands and not any(line.lstrip().startswith("-") for line in commands)


def test_the_qemu_img_info_crash_xfail_is_strict() -> None:
    text = (REPO / "tests" / "fuzz" / "test_qemu_img_info_crash.py").read_text()
    assert "strict=False" not in text and "strict=True" in text


def test_clause_coverage_fails_on_an_import_error() -> None:
    text = (REPO / "tests" / "test_clause_coverage.py").read_text()
    assert "importorskip" not in text


# === Two homes for one rule ===

def test_the_entry_offset_mask_has_one_home_in_the_harness() -> None:
    literal = re.compile(r"0x00FFFFFFFFFFFE00", re.IGNORECASE)
    homes = sorted(str(path.relative_to(REPO)) for folder in ("qcow2harness", "fuzz",
                                                               "properties")
                   for path in (REPO / folder).rglob("*.py")
                   if "parser" not in path.parts and literal.search(path.read_text()))
    assert homes == ["qcow2harness/image.py"], homes


def test_l2_entries_are_decoded_in_one_place() -> None:
    for module in ("qcow2harness/map.py", "qcow2harness/checker/metadata.py"):
        text = (REPO / module).read_text()
        assert "decode_l2_entries" in text, module
