"""Shared fixtures: Hypothesis profiles, the QEMU corpus, skips with reasons."""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

from qcow2harness import qemu

REPO = pathlib.Path(__file__).resolve().parent.parent
# Failures replay: the example database lives in the repo's ignored data dir.
_database = DirectoryBasedExampleDatabase(str(REPO / "data" / "hypothesis"))

# ci: deterministic (derandomize implies no database), so CI runs replay exactly.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=100,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", database=_database, deadline=None, max_examples=200)
settings.register_profile(
    "nightly",
    database=_database,
    deadline=None,
    max_examples=20_000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def require_qemu() -> None:
    """Skip, the way iotests' _notrun does, when the real QEMU is missing."""
    for tool in ("qemu-img", "qemu-io"):
        if qemu.find_tool(tool) is None:
            pytest.skip(f"not run: {tool} not found (install qemu-utils or set "
                        f"{qemu.TOOL_ENV[tool]})")


@pytest.fixture
def qemu_tools() -> None:
    require_qemu()


@pytest.fixture(scope="session")
def qemu_corpus(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[pathlib.Path, list[dict[str, Any]]]:
    """The QEMU feature-matrix corpus, built once per session by the real qemu-img."""
    require_qemu()
    from qcow2harness.corpus import build_corpus

    directory = tmp_path_factory.mktemp("corpus")
    manifest = build_corpus(str(directory))
    assert (directory / "manifest.json").exists()
    assert json.loads((directory / "manifest.json").read_text()) == manifest
    return directory, manifest
