"""Maintenance tools on zoned images, as rules of a model-vs-writer stateful suite.

`ZonedToolsMachine` keeps the persistence model (reference/persistence.py) beside a
zoned writer reached through a `ZonedWriter` adapter. Guest rules (write, append, zone
management, flush, reopen) go to both; the writer's live zone report and guest bytes
must be the model's after every step. Tool rules run one step of
reference/tools.py `TOOL_RULES` with the writer closed (a clean power cycle for the
model, ZSM-17) and hold it to its rule:

- the outcome: a step the rules require is accepted, a forbidden one refused (TOOL-2:
  the refused file is byte-identical), and read-only steps change nothing (TOOL-3);
- the effect: afterwards `check` is clean and the zone report parsed from the file is
  the model's (TOOL-1); a zoned copy becomes the image and must hold the same zones
  and data (TOOL-9); a plain copy or an overlay must read as the model's guest view
  (TOOL-10, TOOL-8).

A `crash` rule kills the writer, runs its recovery (a read-write open, or
`check -r all`) and judges the result with the persistence model (PERS-*, TOOL-4).

Adapters: `QemuZonedWriter` (one long-running qemu-io with its zone commands, and
qemu-img; it needs a zoned-capable QEMU, see stateful.zoned_qemu_unavailable) and
`ReferenceZonedWriter` (the reference writer and its tools, optionally with
ToolMutants, which the suite must catch).

A failure carries the steps after REGRESSION_TAG: `replay_zoned_tools` runs them again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule
from qcow2harness.reference.persistence import PersistenceModel, pattern_byte
from qcow2harness.reference.tools import (
    NEEDS_BITMAP,
    TOOL_RULES,
    Effect,
    Outcome,
    ReferenceTools,
    ToolMutant,
    ToolRun,
    ToolStep,
)
from qcow2harness.reference.writer import ReferenceWriter
from qcow2harness.reference.zones import ZoneConfig, ZoneState, ZoneType

from qcow2harness import qemu
from qcow2harness.checker import check_path
from qcow2harness.errors import WriterError
from qcow2harness.image import Image
from qcow2harness.info import describe_zones

from .qemu_io import QemuIO
from .stateful import REGRESSION_TAG, SECTOR, ZoneGuestRules, persisted_zone_mismatches
from .strategies import zone_configs

BITMAP = "b0"
# After a crash and the writer's recovery, the SHOULD-level findings a power cut may
# leave: dead data past a wp that did not survive (WP-10) and, when only a read-write
# open recovered, leaks (RC-5).
CRASH_ALLOWED = {"repair-all": {"WP-10"}, "open": {"WP-10", "RC-5"}}


class ZonedWriter(Protocol):
    """What the suite needs from a zoned writer and its tools."""

    name: str

    def create(self, path: str, config: ZoneConfig, cluster_size: int) -> None: ...
    # The byte an append writes when the writer cannot be told one (None: `fill`).
    append_fill: int | None

    def guest(self, op: dict[str, Any], fill: int) -> tuple[bool, int | None]:
        """Send one op: (accepted, where an append landed, when the writer says)."""
        ...
    def live_report(self) -> list[tuple[ZoneState, int]]: ...
    def verify(self, offset: int, length: int, byte: int) -> bool: ...
    def open(self, path: str) -> None: ...
    def close(self) -> None: ...
    def kill(self) -> None: ...
    def tool(self, step: ToolStep, image: str, target: str) -> ToolRun: ...
    def guest_bytes(self, path: str, fmt: str) -> bytes: ...
    def script(self) -> str: ...


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ----- the reference writer and its tools -------------------------------------------------


class ReferenceZonedWriter:
    """The reference writer and ReferenceTools (with the given ToolMutants)."""

    name = "reference writer"
    append_fill = None

    def __init__(self, mutants: Iterable[ToolMutant | str] = ()) -> None:
        self.tools = ReferenceTools(mutants)
        self.writer: ReferenceWriter | None = None
        self.lines: list[str] = []

    def create(self, path: str, config: ZoneConfig, cluster_size: int) -> None:
        self.writer = ReferenceWriter.create(path, config.size, cluster_size=cluster_size,
                                             zoned=config, fsync=False)

    def _writer(self) -> ReferenceWriter:
        assert self.writer is not None, "the image is closed"
        return self.writer

    def guest(self, op: dict[str, Any], fill: int) -> tuple[bool, int | None]:
        self.lines.append(json.dumps(op))
        result = self._writer().apply(op, bytes([fill]))
        return result.ok, result.offset

    def live_report(self) -> list[tuple[ZoneState, int]]:
        zones = self._writer().zones
        assert zones is not None
        return [(info.state, info.wp) for info in zones.report()]

    def verify(self, offset: int, length: int, byte: int) -> bool:
        return self._writer().read(offset, length) == bytes([byte]) * length

    def open(self, path: str) -> None:
        self.writer = ReferenceWriter.open(path, fsync=False)

    def close(self) -> None:
        self._writer().close()
        self.writer = None

    def kill(self) -> None:
        # Every write is already in the file (no cache): a legal crash state.
        if self.writer is not None:
            self.close()

    def tool(self, step: ToolStep, image: str, target: str) -> ToolRun:
        self.lines.append(f"# tool {step}")
        return self.tools.run(step, image, target)

    def guest_bytes(self, path: str, fmt: str) -> bytes:
        if fmt == "raw":
            with open(path, "rb") as f:
                return f.read()
        with ReferenceWriter.open(path, fsync=False) as reader:
            return reader.read(0, reader.size)

    def script(self) -> str:
        return "model ops and tool steps:\n" + "\n".join(self.lines) + "\n"


# ----- QEMU -----------------------------------------------------------------------------

# qemu-io `zrp` prints each zone's condition as its ZBC code, and sizes in sectors.
ZBC_CONDITIONS = {0x0: ZoneState.NOT_WRITE_POINTER, 0x1: ZoneState.EMPTY,
                  0x2: ZoneState.IMPLICIT_OPEN, 0x3: ZoneState.EXPLICIT_OPEN,
                  0x4: ZoneState.CLOSED, 0xD: ZoneState.READ_ONLY, 0xE: ZoneState.FULL,
                  0xF: ZoneState.OFFLINE}
ZONE_REPORT_LINE = re.compile(r"start: 0x([0-9a-f]+), len 0x([0-9a-f]+), cap 0x([0-9a-f]+),"
                              r"\s*wptr 0x([0-9a-f]+), zcond:(\d+)")
APPEND_SECTOR = re.compile(r"append sector is 0x([0-9a-f]+)")  # zap -p
ZONE_COMMANDS = {"open": "zo", "close": "zc", "finish": "zf", "reset": "zrs"}


def parse_zone_report(text: str) -> list[tuple[ZoneState, int]]:
    """(state, wp in bytes) of each zone in qemu-io `zrp` output."""
    return [(ZBC_CONDITIONS.get(int(m.group(5)), ZoneState.OFFLINE), int(m.group(4), 16) * SECTOR)
            for m in ZONE_REPORT_LINE.finditer(text)]


def zone_create_options(config: ZoneConfig, cluster_size: int) -> str:
    """qemu-img create options of the v10 series for a zoned image."""
    return ",".join([
        f"cluster_size={cluster_size}", "zone.mode=host-managed",
        f"zone.size={config.zone_size}", f"zone.capacity={config.zone_capacity}",
        f"zone.conventional_zones={config.conventional_zones}",
        f"zone.max_open_zones={config.max_open_zones}",
        f"zone.max_active_zones={config.max_active_zones}",
        f"zone.max_append_bytes={config.max_append_bytes}",
    ])


class QemuZonedWriter:
    """A zoned-capable QEMU: qemu-io for the guest, qemu-img for the tools."""

    name = "QEMU"
    append_fill = 0xCD  # qemu-io's zap takes no pattern

    def __init__(self) -> None:
        self.io: QemuIO | None = None
        self.config: ZoneConfig | None = None
        self.cluster_size = 65536
        self.lines: list[str] = []

    def create(self, path: str, config: ZoneConfig, cluster_size: int) -> None:
        self.config, self.cluster_size = config, cluster_size
        options = zone_create_options(config, cluster_size)
        qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, path,
                 str(config.size))
        self.lines.append(f"# qemu-img create -f qcow2 -o {options} IMG {config.size}")
        self.open(path)

    def _io(self) -> QemuIO:
        assert self.io is not None, "the image is closed"
        return self.io

    def _config(self) -> ZoneConfig:
        assert self.config is not None
        return self.config

    def guest(self, op: dict[str, Any], fill: int) -> tuple[bool, int | None]:
        config = self._config()
        name = op["op"]
        if name == "write":
            line = f"write -P {fill:#x} {op['offset']} {op['length']}"
        elif name == "append":
            line = f"zap -p {op['zone'] * config.zone_size} {op['length']}"
        elif name in ZONE_COMMANDS:
            line = f"{ZONE_COMMANDS[name]} {op['zone'] * config.zone_size} {config.zone_size}"
        elif name == "reset_all":
            line = f"zrs 0 {config.size}"
        elif name == "flush":
            line = "flush"
        elif name == "reopen":
            self._io().reopen()
            return True, None
        else:
            raise ValueError(f"no qemu-io command for {op}")
        out = self._io().command(line).lower()
        landed = APPEND_SECTOR.search(out)
        return ("failed" not in out and "error" not in out,
                int(landed.group(1), 16) * SECTOR if landed else None)

    def live_report(self) -> list[tuple[ZoneState, int]]:
        config = self._config()
        out = self._io().command(f"zrp 0 {config.nr_zones}")
        rows = parse_zone_report(out)
        if len(rows) != config.nr_zones:
            raise AssertionError(f"qemu-io zrp gave {len(rows)} zones, not {config.nr_zones}: "
                                 f"{out.strip()[:300]}")
        return rows

    def verify(self, offset: int, length: int, byte: int) -> bool:
        return self._io().verify(offset, length, byte)

    def open(self, path: str) -> None:
        if self.io is None:
            self.io = QemuIO(path)
            self.io.script = self.lines
        else:
            self.io.image = path
            out = self.io.command(f"open -t {self.io.cache} -o driver=qcow2 {path}")
            if out.strip():
                raise WriterError(f"qemu-io could not open {path}: {out.strip()}")

    def close(self) -> None:
        self._io().command("close")

    def kill(self) -> None:
        if self.io is not None:
            self.io.kill()
            self.io = None

    def tool(self, step: ToolStep, image: str, target: str) -> ToolRun:
        for args in self._commands(step, image, target):
            shown = " ".join("IMG" if a == image else os.path.basename(a) or "''" for a in args)
            proc = qemu.run("qemu-img", *args, check=False)
            answer = (proc.stderr or proc.stdout).strip().replace("\n", " ")[:300]
            self.lines.append(f"# qemu-img {shown}  -> exit {proc.returncode} {answer}")
            if proc.returncode != 0:
                return ToolRun(proc.returncode, answer)
        return ToolRun(0)

    def _commands(self, step: ToolStep, image: str, target: str) -> list[list[str]]:
        """The qemu-img command lines of a step (set-up first, the step itself last)."""
        config = self._config()
        zone = str(config.zone_size)
        base = target + ".base"
        simple: dict[ToolStep, list[str]] = {
            ToolStep.CHECK: ["check", "-f", "qcow2", image],
            ToolStep.REPAIR_LEAKS: ["check", "-f", "qcow2", "-r", "leaks", image],
            ToolStep.REPAIR_ALL: ["check", "-f", "qcow2", "-r", "all", image],
            ToolStep.AMEND_COMPAT_V2: ["amend", "-f", "qcow2", "-o", "compat=0.10", image],
            ToolStep.AMEND_REFCOUNT_BITS: ["amend", "-f", "qcow2", "-o", "refcount_bits=64",
                                           image],
            ToolStep.AMEND_LAZY_REFCOUNTS: ["amend", "-f", "qcow2", "-o", "lazy_refcounts=on",
                                            image],
            ToolStep.AMEND_ZONE_SIZE: ["amend", "-f", "qcow2", "-o",
                                       f"zone.size={2 * config.zone_size}", image],
            ToolStep.CONVERT_ZONED: ["convert", "-f", "qcow2", "-O", "qcow2", "-o",
                                     zone_create_options(config, self.cluster_size), image,
                                     target],
            ToolStep.CONVERT_QCOW2: ["convert", "-f", "qcow2", "-O", "qcow2", image, target],
            ToolStep.CONVERT_RAW: ["convert", "-f", "qcow2", "-O", "raw", image, target],
            ToolStep.SNAPSHOT_CREATE: ["snapshot", "-c", "s0", image],
            ToolStep.SNAPSHOT_LIST: ["snapshot", "-l", image],
            ToolStep.OVERLAY: ["create", "-q", "-f", "qcow2", "-b", image, "-F", "qcow2",
                               target],
            ToolStep.REBASE_NONE: ["rebase", "-f", "qcow2", "-b", "", image],
            ToolStep.RESIZE_GROW: ["resize", "-f", "qcow2", image, f"+{zone}"],
            ToolStep.RESIZE_SHRINK: ["resize", "-f", "qcow2", "--shrink", image, f"-{zone}"],
            ToolStep.BITMAP_ADD: ["bitmap", "-f", "qcow2", "--add", image, BITMAP],
            ToolStep.BITMAP_REMOVE: ["bitmap", "-f", "qcow2", "--remove", image, BITMAP],
            ToolStep.BITMAP_CLEAR: ["bitmap", "-f", "qcow2", "--clear", image, BITMAP],
            ToolStep.BITMAP_DISABLE: ["bitmap", "-f", "qcow2", "--disable", image, BITMAP],
            ToolStep.BITMAP_ENABLE: ["bitmap", "-f", "qcow2", "--enable", image, BITMAP],
        }
        if step in simple:
            return [simple[step]]
        if step is ToolStep.COMMIT_INTO:  # the overlay is made without opening the image
            return [["create", "-q", "-f", "qcow2", "-u", "-b", image, "-F", "qcow2", target,
                     str(config.size)], ["commit", "-q", target]]
        assert step is ToolStep.REBASE_ONTO
        return [["create", "-q", "-f", "qcow2", base, str(config.size)],
                ["rebase", "-f", "qcow2", "-u", "-b", base, "-F", "qcow2", image]]

    def guest_bytes(self, path: str, fmt: str) -> bytes:
        if fmt != "raw":
            raw = path + ".raw"
            qemu.run("qemu-img", "convert", "-f", fmt, "-O", "raw", path, raw)
            path = raw
        with open(path, "rb") as f:
            return f.read()

    def script(self) -> str:
        return "qemu-io script (qemu-io -f qcow2 IMG < script):\n" + "\n".join(self.lines) + "\n"


# ----- the suite ----------------------------------------------------------------------------


class ZonedToolsMachine(ZoneGuestRules):
    """The zone and persistence model beside a zoned writer and its tools."""

    TOOL_MUTANTS: tuple[str, ...] = ()
    USE_QEMU = False

    def __init__(self) -> None:
        super().__init__()
        self.workdir = tempfile.mkdtemp(prefix="qcow2-harness-zoned-tools-")
        self.image = os.path.join(self.workdir, "zoned-0.qcow2")
        self.writer: ZonedWriter = (QemuZonedWriter() if self.USE_QEMU
                                    else ReferenceZonedWriter(self.TOOL_MUTANTS))
        self.model: PersistenceModel | None = None
        self.config: ZoneConfig | None = None
        self.cluster_size = 4096
        self.files = 0
        self.has_bitmap = False
        self.steps: list[dict[str, Any]] = []

    def _record(self, rule_name: str, **args: Any) -> None:
        self.steps.append({"rule": rule_name, "args": args})

    def _fail(self, message: str) -> None:
        run = {"config": None if self.config is None else dataclasses.asdict(self.config),
               "cluster_size": self.cluster_size, "steps": self.steps}
        raise AssertionError(f"{message}\n{self.writer.name}: {self.writer.script()}"
                             f"{REGRESSION_TAG}{json.dumps(run)}\n")

    def _model(self) -> PersistenceModel:
        assert self.model is not None
        return self.model

    def _new_file(self, suffix: str) -> str:
        self.files += 1
        return os.path.join(self.workdir, f"file-{self.files}.{suffix}")

    @initialize(config=zone_configs(max_zones=8), cluster_size=st.sampled_from([512, 4096]))
    def create(self, config: ZoneConfig, cluster_size: int) -> None:
        self.config, self.cluster_size = config, cluster_size
        self.model = PersistenceModel(config)
        self.writer.create(self.image, config, cluster_size)

    # -- guest rules ---------------------------------------------------------------------

    def _apply(self, op: dict[str, Any]) -> None:
        model = self._model()
        if op["op"] == "append" and self.writer.append_fill is not None:
            # Content id b reads as byte b (pattern_byte), so the model expects that byte.
            op = {**op, "content": self.writer.append_fill}
        self._record("guest", op=op)
        expected = model.apply(op)
        fill = pattern_byte(model.last_content) or 0
        accepted, landed = self.writer.guest(op, fill)
        if accepted != expected.ok:
            verb = "accepted" if accepted else "refused"
            self._fail(f"{op}: the writer {verb} it; the model says "
                       f"{'ok' if expected.ok else expected.error} (ZSM-*)")
        if accepted and landed is not None and landed != expected.offset:
            self._fail(f"ZSM-11: {op} landed at {landed:#x}; the model says "
                       f"{expected.offset:#x}")



    # -- tool rules ----------------------------------------------------------------------

    @rule(step=st.sampled_from(list(ToolStep)))
    def tool(self, step: ToolStep) -> None:
        if step in NEEDS_BITMAP and not self.has_bitmap:
            return  # a step on a bitmap it does not have is no zone matter
        self._record("tool", step=step.value)
        rule = TOOL_RULES[step]
        model = self._model()
        self.writer.close()
        model.reopen()  # closing the image is a clean power cycle (ZSM-17)
        target = self._new_file("raw" if step is ToolStep.CONVERT_RAW else "qcow2")
        before = digest(self.image)
        run = self.writer.tool(step, self.image, target)
        accepted = run.exit_code == 0
        if rule.outcome is Outcome.ACCEPT and not accepted:
            self._fail(f"{rule.clause}: {step} must be accepted on a zoned image; refused: "
                       f"{run.message}")
        if rule.outcome is Outcome.REFUSE and accepted:
            self._fail(f"{rule.clause}: {step} must be refused on a zoned image; accepted")
        unchanged_required = not accepted or rule.effect in (Effect.UNCHANGED, Effect.OVERLAY)
        if unchanged_required and digest(self.image) != before:
            clause = "TOOL-2" if not accepted else rule.clause
            self._fail(f"{clause}: {step} {'refused' if not accepted else 'accepted'}, and the "
                       f"zoned file changed")
        if accepted:
            self._took(step, rule.effect, target)
        self._closed_checks(f"after {step}")
        self.writer.open(self.image)

    def _took(self, step: ToolStep, effect: Effect, target: str) -> None:
        if step is ToolStep.BITMAP_ADD:
            self.has_bitmap = True
        elif step is ToolStep.BITMAP_REMOVE:
            self.has_bitmap = False
        if effect is Effect.ZONED_COPY:  # TOOL-9: continue on the copy (checked next)
            os.unlink(self.image)
            self.image = target
            self.has_bitmap = False
        elif effect in (Effect.PLAIN_COPY, Effect.OVERLAY):
            fmt = "raw" if step is ToolStep.CONVERT_RAW else "qcow2"
            if fmt == "qcow2":
                problems = [f.one_line() for f in check_path(target).violations]
                if problems:
                    self._fail(f"{TOOL_RULES[step].clause}: check of the {step} result: "
                               + "; ".join(problems))
            self._compare_guest_view(self.writer.guest_bytes(target, fmt),
                                     f"{TOOL_RULES[step].clause}: the {step} result")

    def _compare_guest_view(self, data: bytes, what: str) -> None:
        """`data` must be the model's guest bytes (ZSM-16: zeros at and past each wp)."""
        config = self.config
        assert config is not None
        got = np.frombuffer(data, dtype=np.uint8)
        if got.size != config.size:
            self._fail(f"{what} has {got.size} guest bytes, not {config.size}")
        want = np.zeros(config.size, dtype=np.int16)
        for extent in self._model().content():
            byte = pattern_byte(extent.content)
            want[extent.offset:extent.end] = -1 if byte is None else byte
        wrong = np.flatnonzero((want >= 0) & (got != want))
        if wrong.size:
            first = int(wrong[0])
            self._fail(f"{what}: guest byte {first:#x} is {int(got[first]):#x}, the model "
                       f"says {int(want[first]):#x}")

    def _closed_checks(self, where: str) -> None:
        """With the writer closed: `check` clean, and the zones parsed from the file are
        the model's (TOOL-1)."""
        problems = [f.one_line() for f in check_path(self.image).violations]
        if problems:
            self._fail(f"TOOL-1: check {where}: " + "; ".join(problems))
        mismatches = persisted_zone_mismatches(self.image, self._model().zones.report())
        if mismatches:
            self._fail(f"TOOL-1: {where}: {mismatches[0]}")

    # -- crash and the writer's recovery ------------------------------------------------------

    @rule(recovery=st.sampled_from(sorted(CRASH_ALLOWED)))
    def crash(self, recovery: str) -> None:
        """Kill the writer, recover (TOOL-4), and judge with the crash model (PERS-*)."""
        self._record("crash", recovery=recovery)
        model = self._model()
        answer = model.crash()
        self.writer.kill()
        if recovery == "repair-all":
            run = self.writer.tool(ToolStep.REPAIR_ALL, self.image, "")
            if run.exit_code != 0:
                self._fail(f"TOOL-4: check -r all after a crash failed: {run.message}")
        else:
            self.writer.open(self.image)
            self.writer.close()
        allowed = CRASH_ALLOWED[recovery]
        problems = [f.one_line() for f in check_path(self.image).violations
                    if f.clause not in allowed]
        with Image.open(self.image) as parsed:
            zones = describe_zones(parsed)
        if zones is None:
            self._fail("TOOL-4: the recovered image lost its zoned extension")
            return
        wps = [int(row["wp"]) for row in zones["zones"]]
        data = self.writer.guest_bytes(self.image, "qcow2")
        problems += answer.violations(wps, lambda offset, length: data[offset:offset + length])
        if problems:
            self._fail(f"after a crash and recovery by {recovery}: " + "; ".join(problems))
        model.recover(wps)
        self.writer.open(self.image)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def live_zones_match_model(self) -> None:
        if self.model is None:
            return
        for (state, wp), info in zip(self.writer.live_report(), self.model.zones.report(),
                                     strict=True):
            if state is not info.state or (info.type is ZoneType.SEQUENTIAL and wp != info.wp):
                self._fail(f"zone {info.number}: the writer reports {state.value} wp {wp:#x}; "
                           f"the model: {info.state.value} wp {info.wp:#x}")

    @invariant()
    def guest_data_reads_back(self) -> None:
        if self.model is None:
            return
        for extent in self.model.content():
            byte = pattern_byte(extent.content)
            if byte is not None and not self.writer.verify(extent.offset, extent.length, byte):
                self._fail(f"guest bytes {extent.offset:#x}+{extent.length:#x} do not read "
                           f"back as {byte:#x}")

    def teardown(self) -> None:
        self.writer.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def zoned_tools_machine(*, qemu_writer: bool = False,
                        tool_mutants: Iterable[str] = ()) -> type[ZonedToolsMachine]:
    """The suite against QEMU, or against the reference tools with these mutants."""
    chosen = tuple(tool_mutants)
    name = ("ZonedQemuToolsMachine" if qemu_writer else "ZonedReferenceToolsMachine"
            + "".join(f"_{m.replace('-', '_')}" for m in chosen))
    return type(name, (ZonedToolsMachine,), {"USE_QEMU": qemu_writer, "TOOL_MUTANTS": chosen})


def replay_zoned_tools(run: dict[str, Any], machine_class: type[ZonedToolsMachine]) -> None:
    """Run recorded steps again, with the invariants after each; raises AssertionError as
    the suite would."""
    machine = machine_class()
    steps: dict[str, Callable[..., None]] = {
        "guest": lambda op: machine._apply(op),
        "tool": lambda step: machine.tool(ToolStep(step)),
        "crash": lambda recovery: machine.crash(recovery),
    }
    try:
        machine.create(ZoneConfig(**run["config"]), run["cluster_size"])
        for step in run["steps"]:
            steps[step["rule"]](**step["args"])
            machine.live_zones_match_model()
            machine.guest_data_reads_back()
    finally:
        machine.teardown()
