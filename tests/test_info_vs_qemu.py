"""`info --json` agrees with the real `qemu-img info --output=json`, one field family a test."""

from __future__ import annotations

import json
import pathlib
import subprocess
from typing import Any

import pytest

from qcow2harness import qemu
from qcow2harness.corpus import skipped_recipes
from qcow2harness.image import Image
from qcow2harness.info import describe


def qemu_info(path: pathlib.Path) -> dict[str, Any]:
    proc = subprocess.run(
        [qemu.require_tool("qemu-img"), "info", "--force-share", "--output=json", str(path)],
        capture_output=True, text=True, check=True, cwd=path.parent,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture(scope="module")
def both(qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]]) -> list[tuple[str, dict, dict]]:
    directory, manifest = qemu_corpus
    pairs = []
    for entry in manifest:
        if not entry["made_by"].startswith("qemu-img"):
            continue  # QEMU 7.2 refuses zoned images (ZONE-2)
        path = directory / entry["file"]
        with Image.open(path) as image:
            ours = describe(image)
        pairs.append((entry["name"], ours, qemu_info(path)))
    assert len(pairs) >= 20
    return pairs


@pytest.fixture(scope="module")
def not_built(qemu_corpus: tuple[pathlib.Path, list[dict[str, Any]]]) -> dict[str, str]:
    """Corpus recipes this QEMU could not make (no zstd, no crypto library), with why."""
    return skipped_recipes(qemu_corpus[0])


def qcow2_data(theirs: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = theirs["format-specific"]["data"]
    return data


def test_sizes(both: list[tuple[str, dict, dict]]) -> None:
    for name, ours, theirs in both:
        assert ours["virtual_size"] == theirs["virtual-size"], name
        assert ours["cluster_size"] == theirs["cluster-size"], name


def test_compat_and_refcount_bits(both: list[tuple[str, dict, dict]]) -> None:
    for name, ours, theirs in both:
        assert ours["compat"] == qcow2_data(theirs)["compat"], name
        assert ours["refcount_bits"] == qcow2_data(theirs)["refcount-bits"], name


def test_feature_flags(both: list[tuple[str, dict, dict]]) -> None:
    for name, ours, theirs in both:
        data = qcow2_data(theirs)
        features = ours["features"]
        lazy = data.get("lazy-refcounts", False)
        assert ("lazy_refcounts" in features["compatible"]) == lazy, name
        assert ("corrupt" in features["incompatible"]) == data.get("corrupt", False), name
        assert ("extended_l2" in features["incompatible"]) == data.get("extended-l2", False), name
        assert ("dirty" in features["incompatible"]) == theirs["dirty-flag"], name


def test_compression_type(both: list[tuple[str, dict, dict]], not_built: dict[str, str]
                          ) -> None:
    qemu_name = {"deflate": "zlib", "zstd": "zstd"}
    seen = set()
    for name, ours, theirs in both:
        assert qemu_name[ours["compression_type"]] == qcow2_data(theirs)["compression-type"], name
        seen.add(ours["compression_type"])
    if "qemu-compressed-zstd" in not_built:
        assert seen == {"deflate"}
        pytest.skip(f"zstd not compared: {not_built['qemu-compressed-zstd']}")
    assert seen == {"deflate", "zstd"}


def test_backing_file(both: list[tuple[str, dict, dict]]) -> None:
    chains = 0
    for name, ours, theirs in both:
        assert ours["backing_file"] == theirs.get("backing-filename"), name
        assert ours["backing_format"] == theirs.get("backing-filename-format"), name
        chains += ours["backing_file"] is not None
    assert chains >= 1


def test_external_data_file(both: list[tuple[str, dict, dict]]) -> None:
    data_files = 0
    for name, ours, theirs in both:
        data = qcow2_data(theirs)
        assert ours["data_file"] == data.get("data-file"), name
        assert ("data_file_raw" in ours["features"]["autoclear"]) == data.get(
            "data-file-raw", False), name
        data_files += ours["data_file"] is not None
    assert data_files == 2


def test_snapshots(both: list[tuple[str, dict, dict]]) -> None:
    found = 0
    for name, ours, theirs in both:
        expected = theirs.get("snapshots", [])
        assert len(ours["snapshots"]) == len(expected), name
        for mine, qemus in zip(ours["snapshots"], expected, strict=True):
            assert mine["id"] == qemus["id"]
            assert mine["name"] == qemus["name"]
            assert mine["date_sec"] == qemus["date-sec"]
            assert mine["date_nsec"] == qemus["date-nsec"]
            assert mine["vm_state_size"] == qemus["vm-state-size"]
            assert mine["vm_clock_nsec"] == qemus["vm-clock-sec"] * 10**9 + qemus["vm-clock-nsec"]
            assert mine["icount"] == qemus.get("icount")
            found += 1
    assert found >= 1


def test_bitmaps(both: list[tuple[str, dict, dict]]) -> None:
    found = 0
    for name, ours, theirs in both:
        expected = qcow2_data(theirs).get("bitmaps", [])
        assert len(ours["bitmaps"]) == len(expected), name
        for mine, qemus in zip(ours["bitmaps"], expected, strict=True):
            assert mine["name"] == qemus["name"]
            assert mine["granularity"] == qemus["granularity"]
            assert sorted(mine["flags"]) == sorted(f.replace("-", "_") for f in qemus["flags"])
            found += 1
    assert found == 2


def test_encryption(both: list[tuple[str, dict, dict]], not_built: dict[str, str]) -> None:
    encrypted = 0
    for name, ours, theirs in both:
        encrypt = qcow2_data(theirs).get("encrypt")
        method = ours["header"]["crypt_method"]
        if encrypt is None:
            assert method == "none", name
        else:
            assert method == encrypt["format"], name
            fde = [e for e in ours["extensions"] if e["name"] == "full_disk_encryption"]
            assert len(fde) == 1 and fde[0]["decoded"]["len_crypt_header"] > 0
            encrypted += 1
    if "qemu-luks" in not_built:
        assert encrypted == 0
        pytest.skip(f"LUKS not compared: {not_built['qemu-luks']}")
    assert encrypted == 1
