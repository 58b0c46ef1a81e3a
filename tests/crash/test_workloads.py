"""Workload files and the guest model the data oracle uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qcow2harness.crash.expect import GuestModel
from qcow2harness.crash.workload import Op, get_workload, named_workloads
from qcow2harness.errors import UsageError


def test_named_workloads_have_distinct_fills() -> None:
    for writer in ("qemu", "reference"):
        for name in named_workloads(writer):
            ops = get_workload(name, writer).ops
            fills = [op.fill for op in ops if op.kind in ("write", "compress", "append")]
            assert len(set(fills)) == len(fills) and 0 not in fills


def test_json_workload(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"writer": "qemu", "size": "1M", "ops": [
        {"op": "write", "offset": "4k", "length": "8k"}, {"op": "flush"}]}))
    workload = get_workload(str(path), "qemu")
    assert workload.size == 1 << 20 and workload.ops[0].offset == 4096
    with pytest.raises(UsageError):
        get_workload(str(path), "reference")
    path.write_text(json.dumps({"writer": "qemu", "ops": [{"op": "explode"}]}))
    with pytest.raises(UsageError):
        get_workload(str(path), "qemu")


def test_guest_model_widens_in_flight_ops() -> None:
    ops = [Op("write", 0, 1024, fill=1), Op("flush"), Op("write", 512, 1024, fill=2),
           Op("discard", 0, 512)]
    model = GuestModel(4096, [(2048, 2048, 0xF1)], ops)
    exact = list(model.expectation(2, []))
    assert exact == [(0, 1024, {1}), (1024, 2048, {0}), (2048, 4096, {0xF1})]
    loose = list(model.expectation(2, [2, 3]))
    assert loose[0] == (0, 512, {0, 1}) and (512, 1024, {1, 2}) in loose
    assert (1024, 1536, {0, 2}) in loose
