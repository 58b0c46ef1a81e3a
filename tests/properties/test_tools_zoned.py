"""Maintenance tools on zoned images.

- QEMU 7.2 has no zoned qcow2: every tool must refuse a zoned image (incompatible bit 5,
  ZONE-1) with a non-zero exit and leave the file byte-identical
  (properties/tools.py ZONED_TOOL_STEPS).
- With a zoned-capable QEMU, the zoned tools suite (properties/zoned_tools.py) holds
  each qemu-img step to reference/tools.py TOOL_RULES; without one it is not run.
- The same suite against the reference writer's tools: it passes on the correct tools,
  and each ToolMutant is killed by a shrunk counterexample kept in
  regressions/zoned-tools/ (`python -m qcow2harness.properties.regressions --tools DIR`).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from qcow2harness.properties.regressions import load_counterexample
from qcow2harness.properties.series_findings import SERIES_EXPECTED
from qcow2harness.properties.stateful import zoned_qemu_unavailable
from qcow2harness.properties.tools import (
    ZONED_STEPS_ACCEPTED,
    ZONED_TOOL_STEPS,
    zoned_tool_outcomes,
)
from qcow2harness.properties.verdicts import OBSERVED
from qcow2harness.properties.zoned_tools import (
    QemuZonedWriter,
    ReferenceZonedWriter,
    ZonedToolsMachine,
    parse_zone_report,
    replay_zoned_tools,
    zoned_tools_machine,
)
from qcow2harness.reference.tools import TOOL_RULES, ToolMutant
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig, ZoneState
from qcow2harness.spec.registry import load

from qcow2harness import qemu

CONFIG = ZoneConfig(size=16 * 65536, zone_size=65536, zone_capacity=49152, conventional_zones=1,
                    max_open_zones=2, max_active_zones=3, max_append_bytes=4096)
COUNTEREXAMPLES = pathlib.Path(__file__).parent / "regressions" / "zoned-tools"


@pytest.fixture
def zoned_image(tmp_path: pathlib.Path) -> str:
    path = str(tmp_path / "zoned.qcow2")
    with ReferenceWriter.create(path, CONFIG.size, cluster_size=4096, zoned=CONFIG,
                                fsync=False) as writer:
        writer.apply({"op": "write", "offset": 0, "length": 8192})
        writer.apply({"op": "append", "zone": 2, "length": 4096})
        writer.apply({"op": "open", "zone": 3})
    return path


def test_every_tool_refuses_a_zoned_image_and_leaves_it_unchanged(
        qemu_tools: None, zoned_image: str, tmp_path: pathlib.Path) -> None:
    if zoned_qemu_unavailable() is None:
        pytest.skip("not run: this QEMU knows zoned qcow2; the refusal table is for one "
                    "that does not")
    outcomes = zoned_tool_outcomes(zoned_image, str(tmp_path))
    assert [o.step for o in outcomes] == [step for step, _ in ZONED_TOOL_STEPS]
    accepted = [f"{o.command}: exit {o.exit_code}" for o in outcomes
                if (o.exit_code == 0) != (o.step in ZONED_STEPS_ACCEPTED)]
    changed = [o.command for o in outcomes if not o.unchanged]
    assert not accepted, f"{qemu.qemu_version()}: unexpected outcome on a zoned image: {accepted}"
    assert not changed, f"refused, but the zoned file changed: {changed}"


def test_tool_rules_on_zoned_images_through_a_zoned_qemu(qemu_tools: None) -> None:
    """The series' known deviations (docs/series-review.md) are counted, not raised:
    anything else it does wrong fails here."""
    reason = zoned_qemu_unavailable()
    if reason is not None:
        pytest.skip(f"not run: {reason}")
    OBSERVED.clear()
    run_state_machine_as_test(
        zoned_tools_machine(qemu_writer=True, expected=SERIES_EXPECTED),
        settings=settings(settings.default, stateful_step_count=15, derandomize=True,
                          database=None, max_examples=min(settings.default.max_examples, 12),
                          suppress_health_check=list(HealthCheck)))
    # The run met the series at least as far as its first known deviation (WP-2).
    assert "WP-2" in OBSERVED, sorted(OBSERVED)


def test_a_qemu_without_zones_refuses_the_suites_create_options(
        qemu_tools: None, tmp_path: pathlib.Path) -> None:
    if zoned_qemu_unavailable() is None:
        pytest.skip("not run: this QEMU knows zoned qcow2")
    run = QemuZonedWriter().create(str(tmp_path / "zoned.qcow2"), dataclasses.asdict(CONFIG),
                                   4096)
    assert run.exit_code != 0 and "zone" in run.message, run


def test_zone_report_lines_parse_into_states_and_write_pointers() -> None:
    # qemu-io `zrp` prints sectors in hex and the ZBC condition code.
    text = ("start: 0x0, len 0x80, cap 0x80, wptr 0x0, zcond:0, [type: 1]\n"
            "start: 0x80, len 0x80, cap 0x60, wptr 0x88, zcond:2, [type: 2]\n"
            "start: 0x100, len 0x80, cap 0x60, wptr 0x160, zcond:14, [type: 2]\n")
    assert parse_zone_report(text) == [(ZoneState.NOT_WRITE_POINTER, 0),
                                       (ZoneState.IMPLICIT_OPEN, 0x88 * 512),
                                       (ZoneState.FULL, 0x160 * 512)]


def test_tool_rules_hold_for_the_reference_tools() -> None:
    run_state_machine_as_test(zoned_tools_machine(),
                              settings=settings(settings.default, stateful_step_count=30))


def test_every_tool_rule_names_a_tool_clause() -> None:
    spec = load()
    cited = {rule.clause for rule in TOOL_RULES.values()}
    assert all(spec[clause].family == "TOOL" for clause in cited)
    # TOOL-2 (every refusal leaves the file as it was) is judged by the suite itself.
    # TOOL-12 (create takes exactly the allowed geometries) too.
    assert {c.id for c in spec.family("TOOL")} - cited == {"TOOL-2", "TOOL-12"}


def kept(mutant: str) -> dict[str, Any]:
    return load_counterexample(COUNTEREXAMPLES, mutant)


@pytest.mark.parametrize("mutant", [m.value for m in ToolMutant])
def test_tool_mutant_is_killed_by_its_counterexample(mutant: str) -> None:
    run = kept(mutant)
    with pytest.raises(AssertionError) as failure:
        replay_zoned_tools(run, zoned_tools_machine(tool_mutants=[mutant]))
    assert run["failure"].split(":")[0] in str(failure.value)


@pytest.mark.parametrize("mutant", [m.value for m in ToolMutant])
def test_correct_tools_pass_the_counterexample(mutant: str) -> None:
    replay_zoned_tools(kept(mutant), zoned_tools_machine())


class FixedAppendWriter(ReferenceZonedWriter):
    """The reference writer, but every append writes 0xcd whatever it is told, as
    qemu-io's `zap` does."""

    append_fill = 0xCD

    def guest(self, op: dict[str, Any], fill: int) -> tuple[bool, int | None]:
        return super().guest(op, 0xCD if op["op"] == "append" else fill)


class FixedAppendMachine(ZonedToolsMachine):
    def __init__(self) -> None:
        super().__init__()
        self.writer = FixedAppendWriter()


def test_a_writer_that_cannot_choose_its_append_data_is_judged_by_that_data() -> None:
    run_state_machine_as_test(FixedAppendMachine,
                              settings=settings(settings.default, stateful_step_count=30))


def test_without_append_fill_a_fixed_append_byte_is_caught() -> None:
    machine = type("Unannounced", (FixedAppendMachine,), {})()
    machine.writer.append_fill = None  # the suite no longer knows what zap writes
    try:
        machine.create(ZoneConfig(size=4 * 4096, zone_size=4096, zone_capacity=4096,
                                  max_append_bytes=2048), 512)
        machine._apply({"op": "append", "zone": 1, "length": 512})
        with pytest.raises(AssertionError, match="do not read back"):
            machine.guest_data_reads_back()
    finally:
        machine.teardown()
