"""The `qcow2-harness model` trace protocol, as pure functions.

One JSON object per input line, exactly one JSON answer per line. Every answer has
"ok" (bool) and "error" (a name, or null); failed answers add a "message" for people.

The first line creates the model:

    {"op":"create","size":N,"zone_size":N,"zone_capacity":N,"conventional_zones":N,
     "max_open_zones":N,"max_active_zones":N,"max_append_bytes":N,
     "policy":"lru"|"fifo"|"round-robin", "close_at_start":"empty"|"closed"}

("policy" and "close_at_start" are optional.) Then:

    {"op":"write","offset":N,"length":N}
    {"op":"append","zone":I,"length":N}          -> "offset" (null when refused)
    {"op":"open"|"close"|"finish"|"reset","zone":I}
    {"op":"reset_all"}   {"op":"flush"}   {"op":"reopen"}
    {"op":"crash"}                               -> "zones": allowed wps per sequential zone
    {"op":"report"}                              -> "zones": every zone's condition

Extensions beyond the issue's protocol: `{"op":"fault","zone":I,"state":"read_only"|
"offline"}` injects a fault, and crash takes an optional "wps" (one per zone) naming
the wps actually recovered; without it the model continues from the durable wps.

Error names: the zone refusals (zones.Refusal), plus "malformed" (not a JSON object,
unknown op, missing or ill-typed field), "not-created" (an op before create),
"already-created" (a second create) and "bad-config" (create with a configuration
that breaks a ZONE-6..ZONE-16 rule, or has more than zones.MODEL_MAX_ZONES zones).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from qcow2harness.errors import ModelError

from .persistence import PersistenceModel
from .zones import MAX_NR_ZONES, MODEL_MAX_ZONES, OpResult, ZoneConfig

MALFORMED = "malformed"
NOT_CREATED = "not-created"
ALREADY_CREATED = "already-created"
BAD_CONFIG = "bad-config"

_CONFIG_FIELDS = (
    "size",
    "zone_size",
    "zone_capacity",
    "conventional_zones",
    "max_open_zones",
    "max_active_zones",
    "max_append_bytes",
)
_ZONE_OPS = ("open", "close", "finish", "reset")


class _Malformed(Exception):
    """A request this protocol cannot act on (answered as "malformed")."""


def _failure(error: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": error, "message": message}


def _result(result: OpResult) -> dict[str, Any]:
    return {"ok": result.ok, "error": None if result.error is None else str(result.error)}


def _integer(request: dict[str, Any], key: str, *, minimum: int = 0) -> int:
    if key not in request:
        raise _Malformed(f"missing field {key!r}")
    value = request[key]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _Malformed(f"field {key!r} must be an integer, got {value!r}")
    if value < minimum:
        raise _Malformed(f"field {key!r} must be at least {minimum}, got {value}")
    return value


class Session:
    """One model run: feed it lines, get answers. Never prints, never exits."""

    def __init__(self) -> None:
        self.model: PersistenceModel | None = None

    def answer(self, line: str) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, RecursionError) as error:
            return _failure(MALFORMED, f"not JSON: {error}")
        if not isinstance(request, dict):
            return _failure(MALFORMED, "each line must be a JSON object")
        op = request.get("op")
        if not isinstance(op, str):
            return _failure(MALFORMED, 'missing "op"')
        try:
            if op == "create":
                return self._create(request)
            if self.model is None:
                return _failure(NOT_CREATED, 'the first line must be {"op":"create",...}')
            return self._dispatch(self.model, op, request)
        except _Malformed as error:
            return _failure(MALFORMED, str(error))
        except ModelError as error:
            return _failure(MALFORMED, error.one_line())

    def _create(self, request: dict[str, Any]) -> dict[str, Any]:
        if self.model is not None:
            return _failure(ALREADY_CREATED, "the model is already created")
        values = {key: _integer(request, key) for key in _CONFIG_FIELDS}
        policy = request.get("policy", "lru")
        close_at_start = request.get("close_at_start", "empty")
        try:
            config = ZoneConfig(**values)
            if config.nr_zones > MODEL_MAX_ZONES:
                raise ModelError(
                    f"{config.nr_zones} zones is more than the {MODEL_MAX_ZONES} the model "
                    "service takes (an object per zone, every zone in each report and crash "
                    f"answer); the format allows {MAX_NR_ZONES} (ZONE-10), and check, info "
                    "and report take any such table")
            self.model = PersistenceModel(config, policy, close_at_start)
        except ModelError as error:
            return _failure(BAD_CONFIG, error.one_line())
        return {"ok": True, "error": None, "nr_zones": config.nr_zones}

    def _dispatch(
        self, model: PersistenceModel, op: str, request: dict[str, Any]
    ) -> dict[str, Any]:
        if op == "write":
            offset = _integer(request, "offset")
            length = _integer(request, "length", minimum=1)
            return _result(model.write(offset, length))
        if op == "append":
            zone = _integer(request, "zone")
            result = model.append(zone, _integer(request, "length", minimum=1))
            return {**_result(result), "offset": result.offset}
        if op in _ZONE_OPS:
            zone = _integer(request, "zone")
            return _result(model.apply({"op": op, "zone": zone}))
        if op in ("reset_all", "flush", "reopen"):
            return _result(model.apply({"op": op}))
        if op == "crash":
            return self._crash(model, request)
        if op == "report":
            return {"ok": True, "error": None, "zones": self._report(model)}
        if op == "fault":
            zone = _integer(request, "zone")
            state = request.get("state")
            if state not in ("read_only", "offline"):
                raise _Malformed('"state" must be "read_only" or "offline"')
            model.inject_fault(zone, state)
            return {"ok": True, "error": None}
        raise _Malformed(f"unknown op {op!r}")

    def _crash(self, model: PersistenceModel, request: dict[str, Any]) -> dict[str, Any]:
        wps = request.get("wps")
        if wps is not None and (
            not isinstance(wps, list)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in wps)
        ):
            raise _Malformed('"wps" must be a list of integers, one per zone')
        answer = model.crash()
        zones = [
            {
                "zone": window.zone,
                "start": window.start,
                "durable_wp": window.durable,
                "volatile_wp": window.volatile,
                "min_wp": window.lowest,
                "max_wp": window.highest,
                "wps": list(window.allowed),
            }
            for window in answer.windows
        ]
        exact = [[e.offset, e.length, e.content] for e in answer.exact]
        old_or_new = [[u.offset, u.length, sorted(u.candidates)] for u in answer.old_or_new]
        model.recover(wps)  # ModelError (a wp the crash cannot yield) answers "malformed"
        return {
            "ok": True,
            "error": None,
            "zones": zones,
            "exact": exact,
            "old_or_new": old_or_new,
        }

    @staticmethod
    def _report(model: PersistenceModel) -> list[dict[str, Any]]:
        return [
            {
                "zone": info.number,
                "start": info.start,
                "capacity": info.capacity,
                "type": info.type.value,
                "state": info.state.value,
                "wp": info.wp,
            }
            for info in model.zones.report()
        ]


def run(lines: Iterable[str]) -> Iterator[str]:
    """Answer each input line with one JSON line (no trailing newline)."""
    session = Session()
    for line in lines:
        yield json.dumps(session.answer(line.rstrip("\r\n")))


__all__ = ["ALREADY_CREATED", "BAD_CONFIG", "MALFORMED", "NOT_CREATED", "Session", "run"]
