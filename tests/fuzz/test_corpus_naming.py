"""The corpus naming test: corpus/ is what `corpus build corpus --seeds` makes, and its
names say what each image is (and which clause a broken one breaks)."""

from __future__ import annotations

import json
import pathlib

import pytest
from conftest import CORPUS, SEEDS
from qcow2harness.fuzz.seeds import BROKEN_RULE, NAME_RULE, build_seed_corpus
from qcow2harness.spec.registry import load

MANIFEST = json.loads((CORPUS / "manifest.json").read_text())
IMAGES = MANIFEST["images"]


def test_every_seed_is_in_the_manifest_and_named_by_the_rule() -> None:
    listed = {entry["file"] for entry in IMAGES}
    for path in SEEDS.iterdir():
        assert f"seeds/{path.name}" in listed, path.name
        assert NAME_RULE.match(path.name), path.name
    for entry in IMAGES:
        if entry["file"].startswith("seeds/"):
            assert (CORPUS / entry["file"]).is_file(), entry["file"]
            assert entry["conformant"] and entry["size"] < 96 * 1024, entry


def test_broken_images_name_the_clause_they_break() -> None:
    registry = load()
    broken = [entry for entry in IMAGES if not entry["conformant"]]
    assert len(broken) >= 100
    for entry in broken:
        name = pathlib.PurePath(entry["file"]).name
        match = BROKEN_RULE.match(name)
        assert match, name
        assert match.group(1).upper() == entry["breaks"]
        registry[entry["breaks"]]  # noqa: B018 - KeyError for an unknown clause
    assert len({entry["breaks"] for entry in broken}) == len(broken)  # one per clause


def test_committed_seeds_stay_small() -> None:
    assert sum(p.stat().st_size for p in SEEDS.iterdir()) < 400 * 1024


@pytest.mark.qemu
def test_committed_corpus_is_reproducible(tmp_path: pathlib.Path, qemu_tools: None) -> None:
    manifest = build_seed_corpus(str(tmp_path))
    assert [e["file"] for e in manifest["images"]] == [e["file"] for e in IMAGES]
    for path in SEEDS.iterdir():
        assert (tmp_path / "seeds" / path.name).read_bytes() == path.read_bytes(), path.name
    broken = CORPUS / "broken"
    for path in broken.glob("*.qcow2") if broken.is_dir() else []:
        assert (tmp_path / "broken" / path.name).read_bytes() == path.read_bytes(), path.name
