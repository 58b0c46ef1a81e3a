"""Shared by the fuzz tests: the committed seed corpus."""

from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
CORPUS = REPO / "corpus"
SEEDS = CORPUS / "seeds"


@pytest.fixture(scope="session")
def seed_files() -> list[pathlib.Path]:
    files = sorted(SEEDS.glob("*.qcow2"))
    assert files, "corpus/seeds is empty: run `qcow2-harness corpus build corpus --seeds`"
    return files


@pytest.fixture(scope="session")
def seed_bytes(seed_files: list[pathlib.Path]) -> list[bytes]:
    return [path.read_bytes() for path in seed_files]
