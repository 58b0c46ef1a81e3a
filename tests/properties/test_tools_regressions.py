"""QEMU 7.2 findings of the tools suite, kept as shrunk runs in regressions/qemu-tools/.

Each file is a recorded run of QemuToolsMachine. The searching suite steps around these
known bugs (SKIP_KNOWN_FINDINGS); replayed here without that, each must still fail the
way it did when found (strict xfail: once QEMU is fixed, the XPASS says so). With the
known bugs stepped around, the same run must pass.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from qcow2harness.properties.tools import QemuToolsMachine, replay_tools_regression

from qcow2harness import qemu
from qcow2harness.errors import WriterError

REGRESSIONS = pathlib.Path(__file__).parent / "regressions" / "qemu-tools"
RUNS = sorted(REGRESSIONS.glob("*.json"))


class StrictToolsMachine(QemuToolsMachine):
    SKIP_KNOWN_FINDINGS = False


def load(path: pathlib.Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_findings_are_kept() -> None:
    assert len(RUNS) >= 3


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_qemu_finding_still_reproduces(qemu_tools: None, path: pathlib.Path) -> None:
    run = load(path)
    try:
        replay_tools_regression(run, StrictToolsMachine)
    except (AssertionError, WriterError) as failure:
        assert run["failure"] in str(failure), str(failure)[:2000]
        pytest.xfail(f"QEMU bug ({qemu.qemu_version()}): {run['finding']}")
    pytest.fail(f"no longer reproduces on {qemu.qemu_version()}: {run['finding']} "
                "(fixed? update README Findings and drop the SKIP_KNOWN_FINDINGS step)")


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_suite_steps_around_the_finding(qemu_tools: None, path: pathlib.Path) -> None:
    replay_tools_regression(load(path))
