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
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import numpy as np
from hypothesis import reject
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
from qcow2harness.reference.zones import (
    OP_CLAUSES,
    REFUSAL_CLAUSES,
    ZoneConfig,
    ZoneState,
    ZoneType,
    config_problems,
)

from qcow2harness import qemu
from qcow2harness.checker import check_path
from qcow2harness.checker.report import Finding
from qcow2harness.errors import ModelError, WriterError
from qcow2harness.image import Image
from qcow2harness.info import describe_zones
from qcow2harness.qemu_zoned import (
    APPEND_SECTOR,
    ZAP_FILL,
    ZONE_COMMANDS,
    parse_zone_report,
    zone_create_options,
    zoned_qemu_build,
)

from .qemu_io import QemuIO
from .stateful import REGRESSION_TAG, SECTOR, ZoneGuestRules, persisted_zone_mismatches
from .strategies import invalid_zone_geometries, zone_configs
from .verdicts import Judge, clause_of, observe

BITMAP = "b0"
# Steps that use a bitmap's contents, which a crash while it was open leaves untrusted.
USES_BITMAP = {ToolStep.BITMAP_CLEAR, ToolStep.BITMAP_DISABLE, ToolStep.BITMAP_ENABLE}
# After a crash and the writer's recovery, the SHOULD-level findings a power cut may
# leave: dead data past a wp that did not survive (WP-10) and, when only a read-write
# open recovered, leaks (RC-5).
CRASH_ALLOWED = {"repair-all": {"WP-10"}, "open": {"WP-10", "RC-5"}}


class ZonedWriter(Protocol):
    """What the suite needs from a zoned writer and its tools."""

    name: str

    def create(self, path: str, geometry: Mapping[str, int], cluster_size: int) -> ToolRun:
        """Create a zoned image of `geometry` (ZoneConfig's fields); the image stays
        closed. A refusal is a non-zero exit code."""
        ...
    def use(self, config: ZoneConfig, cluster_size: int) -> None:
        """The geometry of the image the guest ops go to."""
        ...
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

    def use(self, config: ZoneConfig, cluster_size: int) -> None:
        pass  # the reference writer reads its geometry from the file

    def create(self, path: str, geometry: Mapping[str, int], cluster_size: int) -> ToolRun:
        try:
            config = ZoneConfig(**geometry)
        except ModelError as error:
            return ToolRun(1, str(error))
        ReferenceWriter.create(path, config.size, cluster_size=cluster_size, zoned=config,
                               fsync=False).close()
        return ToolRun(0)

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

class QemuZonedWriter:
    """A zoned-capable QEMU: qemu-io for the guest, qemu-img for the tools."""

    name = "QEMU"
    append_fill = ZAP_FILL

    def __init__(self) -> None:
        self.io: QemuIO | None = None
        self.config: ZoneConfig | None = None
        self.cluster_size = 65536
        self.lines: list[str] = []
        self.build = zoned_qemu_build()

    def use(self, config: ZoneConfig, cluster_size: int) -> None:
        self.config, self.cluster_size = config, cluster_size

    def create(self, path: str, geometry: Mapping[str, int], cluster_size: int) -> ToolRun:
        options = zone_create_options(geometry, cluster_size)
        proc = qemu.run("qemu-img", "create", "-q", "-f", "qcow2", "-o", options, path,
                        str(geometry["size"]), check=False, build=self.build)
        answer = (proc.stderr or proc.stdout).strip().replace("\n", " ")[:300]
        shown = os.path.basename(path)
        self.lines.append(f"# qemu-img create -f qcow2 -o {options} {shown} "
                          f"{geometry['size']}  -> exit {proc.returncode} {answer}".rstrip())
        return ToolRun(proc.returncode, answer)

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
            self.io = QemuIO(path, build=self.build)
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
            proc = qemu.run("qemu-img", *args, check=False, build=self.build)
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
            qemu.run("qemu-img", "convert", "-f", fmt, "-O", "raw", path, raw, build=self.build)
            path = raw
        with open(path, "rb") as f:
            return f.read()

    def script(self) -> str:
        return "qemu-io script (qemu-io -f qcow2 IMG < script):\n" + "\n".join(self.lines) + "\n"


# ----- the suite ----------------------------------------------------------------------------


class ZonedToolsMachine(ZoneGuestRules, Judge):
    """The zone and persistence model beside a zoned writer and its tools.

    Every verdict names its clause (verdicts.Judge): distinct bugs stay distinct, and a
    declared deviation (EXPECTED) is counted once while the rest is still judged."""

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
        self.bitmap_in_use = False  # a crash while the writer had it open
        self.lazy_refcounts = False  # then a read-write open after a crash repairs
        self.steps: list[dict[str, Any]] = []
        self.last_op = "create"
        # Big-endian as WP-1 says, until the writer shows the expected WP-2 deviation.
        self.wp_byte_order = "big"

    def _record(self, rule_name: str, **args: Any) -> None:
        self.steps.append({"rule": rule_name, "args": args})

    def context(self) -> str:
        run = {"config": None if self.config is None else dataclasses.asdict(self.config),
               "cluster_size": self.cluster_size, "steps": self.steps}
        return f"{self.writer.name}: {self.writer.script()}{REGRESSION_TAG}{json.dumps(run)}\n"

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
        run = self.writer.create(self.image, dataclasses.asdict(config), cluster_size)
        if run.exit_code != 0:
            self.verdict("TOOL-12", f"create refused {config}, a geometry the spec allows: "
                         f"{run.message}")
            reject()
        self.writer.use(config, cluster_size)
        self.writer.open(self.image)
        self._close_and_judge("after create")
        self.writer.open(self.image)

    @rule(fields=invalid_zone_geometries(max_zones=8))
    def create_invalid(self, fields: dict[str, int]) -> None:
        """A geometry that breaks a MUST rule must be refused, leaving no zoned image."""
        self._record("create_invalid", fields=fields)
        clause, _, broken = config_problems(**fields)[0]
        path = self._new_file("qcow2")
        run = self.writer.create(path, fields, self.cluster_size)
        if run.exit_code == 0:
            self.verdict("TOOL-12", f"create accepted {fields}, which breaks {clause}: {broken}")

    # -- guest rules ---------------------------------------------------------------------

    def _apply(self, op: dict[str, Any]) -> None:
        model = self._model()
        if op["op"] == "append" and self.writer.append_fill is not None:
            # Content id b reads as byte b (pattern_byte), so the model expects that byte.
            op = {**op, "content": self.writer.append_fill}
        self._record("guest", op=op)
        self.last_op = str(op["op"])
        expected = model.apply(op)
        fill = pattern_byte(model.last_content) or 0
        try:
            accepted, landed = self.writer.guest(op, fill)
        except WriterError as error:  # the writer died on the op: a finding of that op
            self.verdict(OP_CLAUSES[self.last_op], f"{op}: the writer died: {error}",
                         diverged=True)
            raise
        if accepted != expected.ok:
            clause = (OP_CLAUSES[self.last_op] if expected.error is None
                      else REFUSAL_CLAUSES[expected.error])
            verb = "accepted" if accepted else "refused"
            self.verdict(clause, f"{op}: the writer {verb} it; the model says "
                         f"{'ok' if expected.ok else expected.error}", diverged=True)
        if accepted and landed is not None and landed != expected.offset:
            self.verdict("ZSM-11", f"{op} landed at {landed:#x}; the model says "
                         f"{expected.offset:#x}", diverged=True)

    # -- judging a closed file ---------------------------------------------------------

    def _findings(self, path: str) -> list[Finding]:
        """check's violations of a closed file. The WP-2 deviation, when expected, is
        counted once and the table is then read as the writer writes it."""
        found = check_path(path, wp_byte_order=self.wp_byte_order).violations
        if self.wp_byte_order == "big" and "WP-2" in self.EXPECTED and any(
                f.clause == "WP-2" for f in found):
            observe("WP-2", next(f.one_line() for f in found if f.clause == "WP-2"))
            self.wp_byte_order = "little"
            found = check_path(path, wp_byte_order="little").violations
        return found

    def _judge_findings(self, findings: Iterable[Finding], where: str) -> None:
        for finding in findings:
            self.verdict(finding.clause, f"check {where}: {finding.one_line()}")

    def _close_and_judge(self, where: str) -> tuple[set[str], list[tuple[str, int]]]:
        """Close the writer (a clean power cycle for the model, ZSM-17) and judge what it
        persisted: check clean, zones as the model says (WP-8). Returns the clauses check
        found and the persisted zones, for judging a tool step against them."""
        self.writer.close()
        self._model().reopen()
        findings = self._findings(self.image)
        self._judge_findings(findings, where)
        mismatches = persisted_zone_mismatches(self.image, self._model().zones.report(),
                                               wp_byte_order=self.wp_byte_order)
        if mismatches:
            self.verdict("WP-8", f"{where}: {mismatches[0]}", diverged=True)
        return {f.clause for f in findings}, persisted_zones(self.image, self.wp_byte_order)

    @rule()
    def close_and_judge_file(self) -> None:
        """Close the writer and judge what it persisted."""
        self._record("close_and_judge_file")
        self.last_op = "reopen"
        self._close_and_judge("after a clean close")
        self.writer.open(self.image)

    # -- tool rules ----------------------------------------------------------------------

    @rule(step=st.sampled_from(list(ToolStep)))
    def tool(self, step: ToolStep) -> None:
        if step in NEEDS_BITMAP and not self.has_bitmap:
            return  # a step on a bitmap it does not have is no zone matter
        if step in USES_BITMAP and self.bitmap_in_use:
            return  # a crash left the bitmap marked in use: only removing it is defined
        if step is ToolStep.BITMAP_ADD and self.has_bitmap:
            # Adding a name twice is refused, and QEMU (7.2 and stock 10.2, plain images
            # too) rewrites the file while refusing: no zone matter.
            return
        self._record("tool", step=step.value)
        self.last_op = "reopen"
        rule = TOOL_RULES[step]
        # What the writer left is judged before the tool runs: the tool answers only for
        # what changes after (TOOL-1).
        findings_before, zones_before = self._close_and_judge(f"before {step}")
        target = self._new_file("raw" if step is ToolStep.CONVERT_RAW else "qcow2")
        before = digest(self.image)
        run = self.writer.tool(step, self.image, target)
        accepted = run.exit_code == 0
        if rule.outcome is Outcome.ACCEPT and not accepted:
            self.verdict(rule.clause, f"{step} must be accepted on a zoned image; refused: "
                         f"{run.message}")
        if rule.outcome is Outcome.REFUSE and accepted:
            self.verdict(rule.clause, f"{step} must be refused on a zoned image; accepted",
                         diverged=True)
        unchanged_required = not accepted or rule.effect in (Effect.UNCHANGED, Effect.OVERLAY)
        if unchanged_required and digest(self.image) != before:
            clause = "TOOL-2" if not accepted else rule.clause
            message = (f"{step} {'refused' if not accepted else 'accepted'}, and the zoned "
                       "file changed")
            if not accepted and self.has_bitmap and self.USE_QEMU:
                # QEMU's own finding (README, Findings: refused steps rewrite the bitmaps
                # of any image, 7.2 and stock 10.2 alike): counted, not the series'.
                observe("TOOL-2", f"{message} (it has a bitmap: QEMU's own behaviour)")
            else:
                self.verdict(clause, message, diverged=True)
        if accepted:
            self._took(step, rule.effect, target)
        where = f"after {step}"
        if step is not ToolStep.CONVERT_ZONED or not accepted:
            new = [f for f in self._findings(self.image) if f.clause not in findings_before]
            for finding in new:  # what the step broke, under the step's own clause
                self.verdict(rule.clause, f"{where}: check finds {finding.one_line()}")
            zones_after = persisted_zones(self.image, self.wp_byte_order)
            if zones_after != zones_before:
                changed = next(i for i, (a, b) in enumerate(zip(zones_before, zones_after,
                                                               strict=False)) if a != b) \
                    if zones_after and zones_before else 0
                self.verdict(rule.clause, f"{where}: persisted zones changed (first zone "
                             f"{changed}): {zones_before[changed:changed + 1]} -> "
                             f"{zones_after[changed:changed + 1]}", diverged=True)
        self.writer.open(self.image)

    def _took(self, step: ToolStep, effect: Effect, target: str) -> None:
        clause = TOOL_RULES[step].clause
        if step is ToolStep.AMEND_LAZY_REFCOUNTS:
            self.lazy_refcounts = True
        if step is ToolStep.BITMAP_ADD:
            self.has_bitmap = True
        elif step is ToolStep.BITMAP_REMOVE:
            self.has_bitmap = self.bitmap_in_use = False
        if effect is Effect.ZONED_COPY:  # TOOL-9: the copy becomes the image
            os.unlink(self.image)
            self.image = target
            self.has_bitmap = self.bitmap_in_use = self.lazy_refcounts = False
            self._judge_findings(self._findings(target), f"of the {step} result")
            mismatches = persisted_zone_mismatches(target, self._model().zones.report(),
                                                   wp_byte_order=self.wp_byte_order)
            if mismatches:
                self.verdict(clause, f"the {step} result: {mismatches[0]}", diverged=True)
        elif effect in (Effect.PLAIN_COPY, Effect.OVERLAY):
            fmt = "raw" if step is ToolStep.CONVERT_RAW else "qcow2"
            if fmt == "qcow2":
                for finding in check_path(target).violations:
                    self.verdict(clause, f"check of the {step} result: {finding.one_line()}")
            self._compare_guest_view(self.writer.guest_bytes(target, fmt), clause,
                                     f"the {step} result")

    def _compare_guest_view(self, data: bytes, clause: str, what: str) -> None:
        """`data` must be the model's guest bytes (ZSM-16: zeros at and past each wp)."""
        config = self.config
        assert config is not None
        got = np.frombuffer(data, dtype=np.uint8)
        if got.size != config.size:
            self.verdict(clause, f"{what} has {got.size} guest bytes, not {config.size}")
            return
        want = np.zeros(config.size, dtype=np.int16)
        for extent in self._model().content():
            byte = pattern_byte(extent.content)
            want[extent.offset:extent.end] = -1 if byte is None else byte
        wrong = np.flatnonzero((want >= 0) & (got != want))
        if wrong.size:
            first = int(wrong[0])
            self.verdict(clause, f"{what}: guest byte {first:#x} is {int(got[first]):#x}, "
                         f"the model says {int(want[first]):#x}")

    # -- crash and the writer's recovery ------------------------------------------------------

    @rule(recovery=st.sampled_from(sorted(CRASH_ALLOWED)))
    def crash(self, recovery: str) -> None:
        """Kill the writer, recover (TOOL-4), and judge with the crash model (PERS-*)."""
        self._record("crash", recovery=recovery)
        self.last_op = "reopen"
        model = self._model()
        answer = model.crash()
        self.writer.kill()
        self.bitmap_in_use = self.has_bitmap
        if recovery == "repair-all":
            run = self.writer.tool(ToolStep.REPAIR_ALL, self.image, "")
            if run.exit_code != 0:
                self.verdict("TOOL-4", f"check -r all after a crash failed: {run.message}",
                             diverged=True)
        else:
            self.writer.open(self.image)
            self.writer.close()
        # What a repair leaves (check -r all, or the open of a dirty lazy-refcounts
        # image) is the repair's doing (TOOL-4); otherwise each finding is the writer's,
        # under its own clause.
        repaired = recovery == "repair-all" or self.lazy_refcounts
        for finding in self._findings(self.image):
            if finding.clause not in CRASH_ALLOWED[recovery]:
                self.verdict("TOOL-4" if repaired else finding.clause,
                             f"check after a crash and {recovery}: {finding.one_line()}",
                             diverged=True)
        zones = persisted_zones(self.image, self.wp_byte_order)
        if not zones:
            self.verdict("TOOL-4", "the recovered image lost its zoned extension",
                         diverged=True)
            return
        wps = [wp for _, wp in zones]
        data = self.writer.guest_bytes(self.image, "qcow2")
        problems = answer.violations(wps, lambda offset, length: data[offset:offset + length])
        for problem in problems:
            self.verdict(clause_of(problem, "PERS-4"),
                         f"after a crash and recovery by {recovery}: {problem}",
                         diverged=True)
        model.recover(wps)
        self.writer.open(self.image)

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def live_zones_match_model(self) -> None:
        if self.model is None:
            return
        clause = OP_CLAUSES.get(self.last_op, "ZSM-17")
        for (state, wp), info in zip(self.writer.live_report(), self.model.zones.report(),
                                     strict=True):
            full = state is ZoneState.FULL and info.state is ZoneState.FULL  # WP-9
            if state is not info.state or (info.type is ZoneType.SEQUENTIAL and not full
                                           and wp != info.wp):
                self.verdict(clause, f"after {self.last_op}: zone {info.number}: the writer "
                             f"reports {state.value} wp {wp:#x}; the model: "
                             f"{info.state.value} wp {info.wp:#x}", diverged=True)

    @invariant()
    def guest_data_reads_back(self) -> None:
        if self.model is None:
            return
        for extent in self.model.content():
            byte = pattern_byte(extent.content)
            if byte is not None and not self.writer.verify(extent.offset, extent.length, byte):
                self.verdict("ZSM-16" if byte == 0 else "ZSM-18",
                             f"guest bytes {extent.offset:#x}+{extent.length:#x} do not read "
                             f"back as {byte:#x}", diverged=True)

    def teardown(self) -> None:
        self.writer.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def persisted_zones(path: str, wp_byte_order: str = "big") -> list[tuple[str, int]]:
    """(persisted state, wp) of each zone parsed from the file; [] without the extension."""
    with Image.open(path, wp_byte_order=wp_byte_order) as parsed:
        zones = describe_zones(parsed)
    return [] if zones is None else [(row["state"], int(row["wp"])) for row in zones["zones"]]


def zoned_tools_machine(*, qemu_writer: bool = False, tool_mutants: Iterable[str] = (),
                        expected: Iterable[str] = ()) -> type[ZonedToolsMachine]:
    """The suite against QEMU, or against the reference tools with these mutants; the
    `expected` clauses are the writer's declared deviations (verdicts.Judge)."""
    chosen = tuple(tool_mutants)
    name = ("ZonedQemuToolsMachine" if qemu_writer else "ZonedReferenceToolsMachine"
            + "".join(f"_{m.replace('-', '_')}" for m in chosen))
    return type(name, (ZonedToolsMachine,), {"USE_QEMU": qemu_writer, "TOOL_MUTANTS": chosen,
                                             "EXPECTED": frozenset(expected)})


def replay_zoned_tools(run: dict[str, Any], machine_class: type[ZonedToolsMachine]) -> None:
    """Run recorded steps again, with the invariants after each; raises AssertionError as
    the suite would."""
    machine = machine_class()
    steps: dict[str, Callable[..., None]] = {
        "guest": lambda op: machine._apply(op),
        "tool": lambda step: machine.tool(ToolStep(step)),
        "crash": lambda recovery: machine.crash(recovery),
    }
    steps["create_invalid"] = lambda fields: machine.create_invalid(fields)
    steps["close_and_judge_file"] = lambda: machine.close_and_judge_file()
    try:
        machine.create(ZoneConfig(**run["config"]), run["cluster_size"])
        for step in run["steps"]:
            steps[step["rule"]](**step["args"])
            machine.live_zones_match_model()
            machine.guest_data_reads_back()
    finally:
        machine.teardown()
