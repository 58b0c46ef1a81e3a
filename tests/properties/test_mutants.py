"""Every reference-writer mutant is killed by a shrunk counterexample kept in regressions/.

The counterexamples were found by the zoned stateful suite
(`python -m qcow2harness.properties.regressions tests/properties/regressions`); here each
is replayed: the mutant must fail it and the correct writer must pass it.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
from qcow2harness.properties.regressions import load_counterexample
from qcow2harness.properties.stateful import replay_regression
from qcow2harness.reference.writer import Mutant

REGRESSIONS = pathlib.Path(__file__).parent / "regressions"


def load(mutant: str) -> dict[str, Any]:
    return load_counterexample(REGRESSIONS, mutant)


@pytest.mark.parametrize("mutant", [m.value for m in Mutant])
def test_mutant_is_killed_by_its_counterexample(mutant: str) -> None:
    regression = load(mutant)
    with pytest.raises(AssertionError) as failure:
        replay_regression(regression, [mutant])
    # The same property breaks as when the suite found it.
    assert regression["failure"].split(":")[0] in str(failure.value)


@pytest.mark.parametrize("mutant", [m.value for m in Mutant])
def test_correct_writer_passes_the_counterexample(mutant: str) -> None:
    replay_regression(load(mutant))


def test_counterexamples_are_short() -> None:
    for mutant in Mutant:
        assert len(load(mutant.value)["ops"]) <= 12, mutant


@pytest.mark.parametrize("path", sorted(REGRESSIONS.glob("correct-*.json")), ids=lambda p: p.stem)
def test_false_alarms_stay_fixed(path: pathlib.Path) -> None:
    """Sequences on which the suite once failed the correct writer (an oracle bug)."""
    replay_regression(json.loads(path.read_text()))
