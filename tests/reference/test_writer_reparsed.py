"""Model vs reference writer, the writer's file re-parsed by our Kaitai parser and
checked by `check` after every operation (issue 4: the model's differential test)."""

from __future__ import annotations

from pathlib import Path

from qcow2harness.properties.stateful import PERSISTED_STATES as PERSISTED
from qcow2harness.reference.persistence import PersistenceModel
from test_writer import CONFIG, apply_both, script, zoned_writer

from qcow2harness.checker import check_path
from qcow2harness.image import Image
from qcow2harness.info import describe_zones


def test_every_op_reparsed_and_checked(tmp_path: Path) -> None:
    image_path = tmp_path / "reparsed.qcow2"
    model = PersistenceModel(CONFIG)
    steps = 0
    with zoned_writer(image_path) as writer:
        for op in script():
            apply_both(model, writer, op)
            report = check_path(image_path)
            assert report.exit_code == 0, (op, report.to_json()["violations"])
            with Image.open(image_path) as image:
                zones = describe_zones(image)
            assert zones is not None
            assert zones["config"]["num_zones"] == CONFIG.nr_zones
            for row, info in zip(zones["zones"], model.zones.report(), strict=True):
                assert row["start"] == info.start, op
                assert row["type"] == info.type.value, op
                assert row["state"] in PERSISTED[info.state], (op, row, info)
                if info.type.value == "sequential":
                    assert row["wp"] == info.wp, (op, row, info)
            steps += 1
    assert steps == len(script())
