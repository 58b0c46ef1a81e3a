"""The reference writer survives every crash state; every named mutant is caught."""

from __future__ import annotations

import pytest
from qcow2harness.reference.writer import Mutant

from qcow2harness.crash.campaign import CampaignSpec, rebuild_state, run_campaign


@pytest.mark.parametrize("workload", ["zones", "zones-small"])
def test_reference_writer_has_no_violations(workload: str) -> None:
    result = run_campaign(CampaignSpec("reference", workload))
    assert result.exhaustive and result.states_checked > 20
    assert result.violations == [], [v.to_json() for v in result.violations[:3]]


@pytest.mark.parametrize("mutant", [m.value for m in Mutant])
def test_every_mutant_is_caught_with_a_reproducer(mutant: str, tmp_path: object) -> None:
    result = run_campaign(CampaignSpec("reference", "zones", mutants=(mutant,)))
    assert result.violations, f"{mutant} went unnoticed"
    crash_states = [v for v in result.violations if v.state not in ("run", "base")]
    if crash_states:
        first = crash_states[0]
        assert f"--state {first.state}" in first.reproduce
        assert f"--mutant {mutant}" in first.reproduce
        again, _ = rebuild_state(CampaignSpec("reference", "zones", mutants=(mutant,)),
                                 first.state, f"{tmp_path}/state.qcow2")
        assert {v.prop for v in again} == {v.prop for v in result.violations
                                           if v.state == first.state}
