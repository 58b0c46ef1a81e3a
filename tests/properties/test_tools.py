"""QEMU's maintenance tools as rules of the model-vs-QEMU suite (properties/tools.py)."""

from __future__ import annotations

from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test
from qcow2harness.properties.tools import QemuToolsMachine


def test_model_vs_qemu_tools(qemu_tools: None) -> None:
    run_state_machine_as_test(
        QemuToolsMachine,
        settings=settings(settings.default, stateful_step_count=25,
                          max_examples=min(settings.default.max_examples, 25)))
