"""The stateful suites under the active Hypothesis profile (ci in `make test`)."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from qcow2harness.properties.stateful import (
    QemuGuestMachine,
    zoned_writer_machine,
)

from qcow2harness import qemu


def test_model_vs_reference_writer() -> None:
    run_state_machine_as_test(zoned_writer_machine(),
                              settings=settings(settings.default, stateful_step_count=30))


def test_model_vs_real_qemu() -> None:
    if qemu.find_tool("qemu-img") is None or qemu.find_tool("qemu-io") is None:
        pytest.skip("not run: qemu-img/qemu-io not found (install qemu-utils)")
    run_state_machine_as_test(
        QemuGuestMachine,
        settings=settings(settings.default, stateful_step_count=25,
                          max_examples=min(settings.default.max_examples, 25)))


# The model against a zoned-capable QEMU (guest zone rules and tool rules together):
# tests/properties/test_tools_zoned.py::test_tool_rules_on_zoned_images_through_a_zoned_qemu.
