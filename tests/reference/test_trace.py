"""The `qcow2-harness model` JSON-lines protocol."""

from __future__ import annotations

import json
from typing import Any

from qcow2harness.reference.trace import Session, run

CREATE = {
    "op": "create",
    "size": 8 * 8192,
    "zone_size": 8192,
    "zone_capacity": 4096,
    "conventional_zones": 1,
    "max_open_zones": 2,
    "max_active_zones": 2,
    "max_append_bytes": 2048,
}


def session(**overrides: Any) -> Session:
    s = Session()
    created = s.answer(json.dumps({**CREATE, **overrides}))
    assert created == {"ok": True, "error": None, "nr_zones": 8}
    return s


def ask(s: Session, **request: Any) -> dict[str, Any]:
    answer = s.answer(json.dumps(request))
    assert "ok" in answer and "error" in answer
    return answer


def test_every_op_answers() -> None:
    s = session()
    assert ask(s, op="write", offset=8192, length=512) == {"ok": True, "error": None}
    assert ask(s, op="append", zone=2, length=512) == {"ok": True, "error": None, "offset": 16384}
    assert ask(s, op="append", zone=2, length=4096)["offset"] is None
    assert ask(s, op="open", zone=3)["error"] == "too-many-active"
    assert ask(s, op="close", zone=1)["ok"]
    assert ask(s, op="finish", zone=1)["ok"]
    assert ask(s, op="reset", zone=0)["error"] == "conventional-zone"
    assert ask(s, op="reset_all")["ok"]
    assert ask(s, op="flush")["ok"]
    assert ask(s, op="reopen")["ok"]
    assert ask(s, op="write", offset=8192 + 512, length=512)["error"] == "not-at-write-pointer"
    report = ask(s, op="report")
    assert report["zones"][0] == {
        "zone": 0,
        "start": 0,
        "capacity": 8192,
        "type": "conventional",
        "state": "not_write_pointer",
        "wp": 0,
    }
    assert {z["state"] for z in report["zones"][1:]} == {"empty"}
    assert all(z["capacity"] == 4096 for z in report["zones"][1:])


def test_crash_answers_wp_ranges_and_continues_from_durable_state() -> None:
    s = session()
    ask(s, op="write", offset=8192, length=512)
    ask(s, op="flush")
    ask(s, op="write", offset=8192 + 512, length=1024)
    crash = ask(s, op="crash")
    zone1 = crash["zones"][0]
    assert zone1 == {
        "zone": 1,
        "start": 8192,
        "durable_wp": 8704,
        "volatile_wp": 9728,
        "min_wp": 8704,
        "max_wp": 9728,
        "wps": [8704, 9728],
    }
    assert [8704, 1024, [0, 2]] in crash["old_or_new"]
    assert [8192, 512, 1] in crash["exact"]
    report = ask(s, op="report")
    assert report["zones"][1]["wp"] == 8704 and report["zones"][1]["state"] == "closed"


def test_crash_with_recovered_wps() -> None:
    s = session()
    ask(s, op="write", offset=8192, length=512)
    wps = [z["wp"] for z in ask(s, op="report")["zones"]]
    assert ask(s, op="crash", wps=wps)["ok"]
    assert ask(s, op="report")["zones"][1]["wp"] == 8704
    ask(s, op="write", offset=8704, length=512)
    wps[1] = 8192 + 100
    bad = ask(s, op="crash", wps=wps)
    assert bad["ok"] is False and bad["error"] == "malformed" and "PERS-3" in bad["message"]


def test_policy_and_fault_extension() -> None:
    s = session(policy="fifo", max_active_zones=0)
    ask(s, op="write", offset=8192, length=512)
    ask(s, op="write", offset=16384, length=512)
    ask(s, op="write", offset=8192 + 512, length=512)
    ask(s, op="write", offset=24576, length=512)
    states = [z["state"] for z in ask(s, op="report")["zones"][1:4]]
    assert states == ["closed", "implicit_open", "implicit_open"]
    assert ask(s, op="fault", zone=4, state="offline") == {"ok": True, "error": None}
    assert ask(s, op="open", zone=4)["error"] == "invalid-transition"
    assert ask(s, op="fault", zone=4, state="full")["error"] == "malformed"


def test_malformed_lines_do_not_end_the_session() -> None:
    s = Session()
    assert s.answer('{"op":"write","offset":0,"length":1}')["error"] == "not-created"
    for line in ["", "not json", "[1,2]", '{"no":"op"}', '{"op":5}']:
        answer = s.answer(line)
        assert answer["ok"] is False and answer["error"] == "malformed", line
    assert s.answer(json.dumps({**CREATE, "zone_size": 3000}))["error"] == "bad-config"
    assert s.answer(json.dumps({**CREATE, "policy": "random"}))["error"] == "bad-config"
    assert s.answer(json.dumps({**CREATE, "size": "big"}))["error"] == "malformed"
    assert s.answer(json.dumps(CREATE))["ok"]
    assert s.answer(json.dumps(CREATE))["error"] == "already-created"
    cases = [
        {"op": "write", "offset": 0},
        {"op": "write", "offset": 0, "length": 0},
        {"op": "write", "offset": -1, "length": 512},
        {"op": "write", "offset": True, "length": 512},
        {"op": "append", "zone": "1", "length": 512},
        {"op": "open"},
        {"op": "jump"},
        {"op": "crash", "wps": "all"},
    ]
    for request in cases:
        answer = s.answer(json.dumps(request))
        assert answer["ok"] is False and answer["error"] == "malformed", request
        assert answer["message"]
    assert s.answer(json.dumps({"op": "write", "offset": 8192, "length": 512}))["ok"]


def test_run_answers_one_line_per_line() -> None:
    lines = [json.dumps(CREATE) + "\n", "garbage\n", '{"op":"flush"}\n', '{"op":"report"}\r\n']
    out = list(run(lines))
    assert len(out) == 4
    answers = [json.loads(line) for line in out]
    assert [a["ok"] for a in answers] == [True, False, True, True]
    assert all("\n" not in line for line in out)
