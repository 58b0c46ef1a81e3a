"""The zoned series as a crash writer: its qemu-io zone commands, its reading of a crash
state, the persistence order its log shows, and shell reproducers.

- **Capture** (capture.capture_qemu with a zoned workload): the image is created with
  the workload's zone geometry (`qemu-img create -o`, qcow2harness/qemu_zoned.py
  `zone_create_options`) and every op runs on the build's qemu-io beside the
  PersistenceModel, which gives each write its fill byte. An append is `zap -p`, which
  writes 0xcd whatever is asked (`qemu_zoned.ZAP_FILL`), so the model stores
  that content for it. The writer's answer (accepted or refused, where an append landed,
  the zone report's write pointers, the bytes of the zones the op touched) must be the
  model's; each difference is a disagreement, reported once. From the first one on the
  model no longer speaks for the writer: crash states whose history reaches that op are
  judged by the checker and the log order only (`Capture.diverged_at`).
- **Judging a crash state** (`ZonedJudge`): the checker, which looks past a declared
  deviation such as WP-2 (`KNOWN_DEVIATIONS`, `DEVIATION_READINGS`), then the model's
  CrashAnswer on what the series itself reads back: the write pointers of `zrp` and the
  guest bytes of `qemu-img convert` (PERS-3, PERS-4, PERS-5).
- **Persistence order** (`order_problems`): every write-pointer update in the log is held
  to PERS-1 and PERS-2 (reference/persistence.py `stage_order_problems`): the data and
  the mapping metadata of the op that moved the wp must be issued and flushed first.
- **Reproducers** (`shell_reproducer`): the qemu-img/qemu-io lines that rebuild a crash
  state from scratch (the workload prefix through blklogwrites, then `dd` of the kept
  log entries onto the base) and show what is wrong with it.
"""

from __future__ import annotations

import os
import re
import shlex
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from qcow2harness import qemu
from qcow2harness.errors import UsageError
from qcow2harness.image import Image

from .oracle import Problem, check_problems
from .workload import Op, Workload

if TYPE_CHECKING:
    from qcow2harness.reference.persistence import CrashAnswer, PersistenceModel
    from qcow2harness.reference.zones import ZoneConfig

    from .capture import Capture, QemuIoSession
    from .states import CrashState, Epoch

# Deviations a build is known for: reported once (on the base image) and looked past in
# every crash state, so that everything else is still judged. The series writes its wp
# table in host byte order (WP-2, facts file).
KNOWN_DEVIATIONS: dict[str, tuple[str, ...]] = {"zoned": ("WP-2",), "zoned-asan": ("WP-2",)}
ZONED_BUILDS = ("zoned", "zoned-asan")
LOG_SECTOR = 512


def series_tools() -> Any:
    """qcow2harness/qemu_zoned.py: the series' create options and qemu-io zone commands."""
    from qcow2harness import qemu_zoned

    return qemu_zoned


def require_zoned_build(build: str | None, workload: str) -> str:
    """The build a zoned QEMU workload runs on, or a clear refusal."""
    if build not in ZONED_BUILDS:
        raise UsageError(f"workload {workload!r} is zoned: it needs the zoned series build "
                         f"(--build zoned), not {'the default QEMU' if build is None else build}")
    reason = qemu.build_unavailable(build)
    if reason is not None:
        raise UsageError(reason)
    return build


# ----- capture ------------------------------------------------------------------------


class ZonedRun:
    """A zoned workload's ops on the series' qemu-io, beside the persistence model."""

    def __init__(self, config: ZoneConfig) -> None:
        from qcow2harness.reference.persistence import PersistenceModel

        self.tools = series_tools()
        self.config = config
        self.model: PersistenceModel = PersistenceModel(config)
        self.append_fill: int = self.tools.ZAP_FILL
        self.disagreements: list[str] = []
        self.diverged_at: int | None = None  # the first op the writer and model disagree on

    def _disagree(self, number: int, text: str) -> None:
        self.disagreements.append(text)
        if self.diverged_at is None:
            self.diverged_at = number

    def run(self, number: int, op: Op, session: QemuIoSession) -> Op:
        """Run one op (not reopen) on the model and the writer; the op as recorded, with
        the fill byte it wrote."""
        from qcow2harness.reference.persistence import pattern_byte

        expected = self.model.apply(model_trace(op, self.append_fill))
        fill = 0
        if op.kind == "write":
            fill = pattern_byte(self.model.last_content) or 0
        elif op.kind == "append":
            fill = self.append_fill
        recorded = replace(op, fill=fill)
        output = session.command(recorded.qemu_command(self.config))
        accepted = not _failed(output)
        what = f"op {number} ({recorded.describe()})"
        if accepted != expected.ok:
            writer = "accepted it" if accepted else f"refused it: {_first_line(output)}"
            model = "accepts it" if expected.ok else f"refuses it: {expected.error}"
            self._disagree(number, f"{what}: the series {writer}; the model {model} (ZSM-*)")
        landed = self.tools.APPEND_SECTOR.search(output)
        if accepted and expected.ok and landed and expected.offset is not None:
            offset = int(landed.group(1), 16) * LOG_SECTOR
            if offset != expected.offset:
                self._disagree(number, f"{what}: the append landed at {offset:#x}; the model "
                               f"says {expected.offset:#x} (ZSM-11)")
        if self.diverged_at is None:
            self.compare_wps(number, recorded, session)
        if self.diverged_at is None and accepted and op.kind != "flush":
            self.compare_data(number, recorded, session)
        return recorded

    def reopened(self, number: int, op: Op, session: QemuIoSession) -> None:
        self.model.apply({"op": "reopen"})
        if self.diverged_at is None:
            self.compare_wps(number, op, session)
            self.compare_data(number, op, session)

    def compare_data(self, number: int, op: Op, session: QemuIoSession) -> None:
        """The bytes of the zones the op touched, read through the writer right after it,
        against the model's content (a zone op's own zone; a write's; else every zone)."""
        from qcow2harness.reference.persistence import pattern_byte

        config = self.config
        if op.zone >= 0:
            zones = [op.zone]
        elif op.kind == "write":
            zones = [op.offset // config.zone_size]
        else:
            zones = list(range(config.nr_zones))
        for zone in zones:
            lo, hi = zone * config.zone_size, _zone_end(config, zone)
            for extent in self.model.content():
                a, b = max(lo, extent.offset), min(hi, extent.end)
                fill = pattern_byte(extent.content)
                if a >= b or fill is None:
                    continue
                out = session.command(f"read -q -P {fill:#04x} {a} {b - a}").strip()
                if out:
                    self._disagree(number, f"op {number} ({op.describe()}): zone {zone} reads "
                                   f"[{a:#x}, {b:#x}) otherwise than {fill:#04x} right after "
                                   f"it: {_first_line(out)}")
                    return

    def compare_wps(self, number: int, op: Op, session: QemuIoSession) -> None:
        """The live zone report's write pointers against the model's (sequential zones)."""
        config = self.config
        rows = self.tools.parse_zone_report(session.command(f"zrp 0 {config.nr_zones}"))
        model = self.model.zones.wps()
        if len(rows) != config.nr_zones:
            self._disagree(number, f"after op {number} ({op.describe()}): zrp listed "
                           f"{len(rows)} zones, not {config.nr_zones}")
            return
        for zone in range(config.conventional_zones, config.nr_zones):
            if rows[zone][1] != model[zone]:
                self._disagree(number, f"after op {number} ({op.describe()}): zone {zone} wp "
                               f"{rows[zone][1]:#x} in the series' zone report, "
                               f"{model[zone]:#x} in the model")
                return


def create_options(config: ZoneConfig, cluster_size: int, create: dict[str, str]) -> str:
    """qemu-img create -o for a zoned workload: the zone geometry, then the other
    create options (a cluster_size among them replaces the workload's)."""
    if "cluster_size" in create:
        cluster_size = _size_option(create["cluster_size"])
    options = series_tools().zone_create_options(config, cluster_size)
    rest = ",".join(f"{k}={v}" for k, v in create.items() if k != "cluster_size")
    return f"{options},{rest}" if rest else options


def model_trace(op: Op, append_fill: int | None) -> dict[str, Any]:
    """An op in the model's trace form; an append stores `append_fill` when the writer
    cannot choose its bytes, and the session's end (qemu-io quits) is a flush."""
    if op.kind == "close" and op.zone < 0:
        return {"op": "flush"}
    trace = op.trace()
    if op.kind == "append" and append_fill is not None:
        trace["content"] = append_fill
    return trace


def _failed(output: str) -> bool:
    from .capture import OP_ERRORS

    return any(word.lower() in output.lower() for word in OP_ERRORS)


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _size_option(value: str) -> int:
    from .workload import parse_size

    return parse_size(value)


# ----- judging ------------------------------------------------------------------------


# How the checker looks past a declared deviation: the byte order it then reads the wp
# table in (check_path's wp_byte_order).
DEVIATION_READINGS: dict[str, str] = {"WP-2": "little"}


def check_state(path: str, base_clauses: set[str] | None,
                deviations: Sequence[str]) -> list[Problem]:
    """The checker's problems with a crash state, past the declared deviations: a
    deviation found is dropped and, when the checker can read past it, the state is
    judged again that way (so the rest of the wp table is still judged)."""
    problems, _ = check_problems(path, base_clauses)
    found = {p.prop for p in problems} & set(deviations)
    for clause in sorted(found):
        reading = DEVIATION_READINGS.get(clause)
        if reading is not None:
            problems, _ = check_problems(path, base_clauses, wp_byte_order=reading)
    return [p for p in problems if p.prop not in found]


class ZonedReader:
    """Reads crash states back through the series: `zrp` in one long-lived qemu-io, the
    guest bytes with `qemu-img convert` (cheaper than parsing `read -v` dumps)."""

    def __init__(self, build: str, config: ZoneConfig) -> None:
        from .capture import QemuIoSession

        self.build = build
        self.config = config
        self.tools = series_tools()
        self.session = QemuIoSession([], build=build)
        self._tmp = tempfile.TemporaryDirectory(prefix="qcow2-crash-zoned-")
        self.reads = 0

    def close(self) -> None:
        self.session.quit()
        self._tmp.cleanup()

    def read_back(self, path: str) -> tuple[list[int], bytes] | Problem:
        """(write pointers, guest bytes) as the series reads them, or why it cannot."""
        opened = self.session.command(f"open -r -o driver=qcow2 {path}").strip()
        if opened:
            self.session.command("close")
            return Problem("open", f"the series cannot open the state: {_first_line(opened)}",
                           cause="the series cannot open the crash state")
        report = self.session.command(f"zrp 0 {self.config.nr_zones}")
        self.session.command("close")
        rows = self.tools.parse_zone_report(report)
        if len(rows) != self.config.nr_zones:
            return Problem("open", f"the series' zone report lists {len(rows)} zones, not "
                           f"{self.config.nr_zones}: {_first_line(report)}",
                           cause="the series cannot report the zones of the crash state")
        raw = os.path.join(self._tmp.name, "state.raw")
        proc = qemu.run("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, raw,
                        check=False, build=self.build)
        self.reads += 1
        if proc.returncode != 0:
            return Problem("data", "the series cannot read the guest data back: "
                           f"{_first_line(proc.stderr or proc.stdout)}",
                           cause="the series cannot read the guest data back")
        with open(raw, "rb") as stream:
            data = stream.read()
        return [wp for _, wp in rows], data


class ZonedJudge:
    """The model's verdict on what the series reads back, each problem with its cause."""

    def __init__(self, capture: Capture, workload: Workload, reader: ZonedReader | None):
        assert workload.zoned is not None
        self.capture = capture
        self.config = workload.zoned
        self.reader = reader

    def model_speaks(self, epoch: Epoch) -> bool:
        """False when the crash point's history reaches an op the writer and the model
        disagreed on: the model's answer is then not the writer's to meet."""
        diverged = self.capture.diverged_at
        return diverged is None or last_op_of(self.capture, epoch) < diverged

    def problems(self, path: str, answer: CrashAnswer, epoch: Epoch) -> list[Problem]:
        if self.reader is None or not self.model_speaks(epoch):
            return []
        during = self._in_flight(epoch)
        back = self.reader.read_back(path)
        if isinstance(back, Problem):
            return [replace(back, cause=f"{back.cause}, crash during {during}")]
        wps, data = back
        out = []
        for text in answer.violations(wps, lambda offset, length: data[offset:offset + length]):
            clause, _, message = text.partition(":")
            message = message.strip()
            cause, show = self._explain(clause, message, answer, wps, during)
            out.append(Problem(clause, message, cause=cause, show=show))
        return out

    def _in_flight(self, epoch: Epoch) -> str:
        capture = self.capture
        if epoch.end >= len(capture.entries):
            return "no op (end of the log)"
        number = capture.op_of(epoch.end)
        return _kind(capture.ops[number]) if number < len(capture.ops) else "?"

    def _explain(self, clause: str, message: str, answer: CrashAnswer, wps: list[int],
                 during: str) -> tuple[str, tuple[str, ...]]:
        """(the cause findings are deduplicated by, qemu-io commands that show it)."""
        from qcow2harness.reference.persistence import pattern_byte

        nr = self.config.nr_zones
        zone_match = re.match(r"zone (\d+) recovered wp", message)
        if clause == "PERS-4" and zone_match:
            zone = int(zone_match.group(1))
            points = [p for p in answer.wp_points[zone] if p.wp == wps[zone]]
            kinds = sorted({_kind(self.capture.ops[p.sequence]) if p.sequence >= 0
                            else "the last flush" for p in points})
            reads = [f"read -P {pattern_byte(e.content) or 0:#04x} {e.offset} {e.length}"
                     for p in points[:1] for e in p.data if e.offset < wps[zone]]
            if set(kinds) <= {"write", "append"}:
                return (f"wp ahead of data after {' or '.join(kinds)}",
                        (f"zrp 0 {nr}", *reads))
            # The wp of a reset or finish came back, its data did not: the bytes above
            # the wp are not zeros (ZSM-16), so the zone reads half done (PERS-7).
            above = f"read -P 0 {wps[zone]} {_zone_end(self.config, zone) - wps[zone]}"
            return (f"data above the recovered wp not zeros after {' or '.join(kinds)}",
                    (f"zrp 0 {nr}", *reads, above))
        if clause == "PERS-3" and zone_match:
            return (f"recovered wp the zone never held since the last flush, crash during "
                    f"{during}", (f"zrp 0 {nr}",))
        span = re.search(r"\[(0x[0-9a-f]+), (0x[0-9a-f]+)\)", message)
        show: tuple[str, ...] = ()
        if clause == "PERS-5" and span:
            lo, hi = int(span.group(1), 16), int(span.group(2), 16)
            content = re.search(r"as content (\d+)", message)
            if content:
                fill = pattern_byte(int(content.group(1))) or 0
                show = (f"zrp 0 {nr}", f"read -P {fill:#04x} {lo} {hi - lo}")
                what = ("zeros" if fill == 0 else "append data"
                        if fill == self.capture.append_fill else "write data")
                return f"flushed {what} read back otherwise, crash during {during}", show
            listed = re.search(r"contents \[([0-9, ]*)\]", message)
            contents = [int(c) for c in listed.group(1).split(",")] if listed else []
            reads = [f"read -P {pattern_byte(c) or 0:#04x} {lo} {hi - lo}" for c in contents]
            return (f"unflushed bytes hold neither old nor new, crash during {during}",
                    (f"zrp 0 {nr}", *reads))
        return f"{_generic(message)}, crash during {during}", show


def _zone_end(config: ZoneConfig, zone: int) -> int:
    return min((zone + 1) * config.zone_size, config.size)


def _kind(op: Op) -> str:
    return "the session's end (qemu-io quits)" if op.kind == "close" and op.zone < 0 else op.kind


def _generic(message: str) -> str:
    """A message with its numbers taken out: what broke, not where."""
    return re.sub(r"0x[0-9a-f]+|\d+", "N", message)


# ----- persistence order (PERS-1, PERS-2) ---------------------------------------------


@dataclass(frozen=True)
class OrderProblem:
    op: int  # the op that moved the wp
    entry: int  # the log entry writing the wp table
    other: int  # the log entry of the stage out of order (its first late or last unflushed)
    zone: int
    clause: str
    cause: str
    message: str


def host_stages(path: str) -> tuple[int, set[int], tuple[int, int]]:
    """(cluster size, clusters of qcow2 metadata, the wp table's byte range) of an image:
    whatever is not metadata or the table is guest data (the PERS-1 stages)."""
    with Image.open(path) as image:
        cluster = image.cluster_size
        zoned = image.zoned
        table = ((int(zoned.ofs_zonedmeta), int(zoned.ofs_zonedmeta) + 8 * int(zoned.num_zones))
                 if zoned is not None else (0, 0))
        header = image.header
        meta: set[int] = {0}

        def span(offset: int, length: int) -> None:
            meta.update(range(offset // cluster, -(-(offset + length) // cluster)))

        span(int(header.ofs_l1_table), 8 * int(header.num_l1_entries))
        span(int(header.ofs_refcount_table), int(header.num_refcount_table_clusters) * cluster)
        from qcow2harness.image import OFFSET_MASK as mask
        for entry in image.refcount_table_entries():
            if int(entry) & mask:
                meta.add((int(entry) & mask) // cluster)
        for entry in image.l1_entries():
            if int(entry) & mask:
                meta.add((int(entry) & mask) // cluster)
    return cluster, meta, table


def order_problems(capture: Capture, final_image: str) -> list[OrderProblem]:
    """Each write-pointer update in the log against PERS-1 and PERS-2: the op that made
    it must have issued its data and its metadata, and a flush, before it."""
    from qcow2harness.reference.persistence import STAGE_CLAUSES, stage_order_problems

    cluster, meta, (table_lo, table_hi) = host_stages(final_image)
    if table_hi <= table_lo:
        return []
    with open(capture.base, "rb") as stream:
        stream.seek(table_lo)
        table = bytearray(stream.read(table_hi - table_lo).ljust(table_hi - table_lo, b"\0"))
    sector = capture.sectorsize
    starts = [capture.first_entry, *capture.boundaries[:-1]]
    out: list[OrderProblem] = []

    def stage(entry: Any) -> str:
        lo, hi = entry.sector * sector, (entry.sector + entry.nr_sectors) * sector
        if lo < table_hi and table_lo < hi:
            return "wp"
        clusters = range(lo // cluster, -(-hi // cluster))
        return "metadata" if any(c in meta for c in clusters) else "data"

    for entry in capture.entries[capture.first_entry:]:
        if not entry.is_write:
            continue
        lo, hi = entry.sector * sector, (entry.sector + entry.nr_sectors) * sector
        if not (lo < table_hi and table_lo < hi):
            continue
        a, b = max(lo, table_lo), min(hi, table_hi)
        new = entry.data[a - lo:b - lo]
        moved = [(a - table_lo + i) // 8 for i in range(0, len(new), 8)
                 if new[i:i + 8] != table[a - table_lo + i:a - table_lo + i + 8]]
        table[a - table_lo:b - table_lo] = new
        if not moved:
            continue
        number = capture.op_of(entry.index)
        if number >= len(capture.ops) or capture.ops[number].kind not in ("write", "append"):
            continue  # finish, reset: no data of their own to order (PERS-7)
        first, end = starts[number], capture.boundaries[number]
        events = []  # one per log entry of the op, so a position is an entry
        for other in capture.entries[first:end]:
            if other.is_flush:
                events.append("flush")
            elif other.index == entry.index:
                events.append("wp")
            else:
                events.append(stage(other) if other.is_write else "other")
        op = capture.ops[number]
        at = entry.index - first
        for clause, what in stage_order_problems(events, at):
            name = next(k for k, v in STAGE_CLAUSES.items() if v == clause)
            where = [i for i, event in enumerate(events) if event == name]
            late = [i for i in where if i > at]
            culprit = first + (late[0] if late else where[-1])
            host = capture.entries[culprit].sector * sector
            out.append(OrderProblem(
                number, entry.index, culprit, moved[0], clause, f"{what} ({op.kind})",
                f"op {number} ({op.describe()}): log entry #{entry.index} writes the wp of "
                f"zone {moved[0]} (file offset {lo:#x}); {what}: entry #{culprit} writes "
                f"its {name} (file offset {host:#x})"))
    return out


# ----- reproducers --------------------------------------------------------------------


def shell_reproducer(capture: Capture, workload: Workload, state: CrashState | None,
                     epochs: Sequence[Epoch], last_op: int, show: Sequence[str],
                     headers: Sequence[int] = ()) -> list[str]:
    """Shell lines that rebuild a crash state with qemu-img, qemu-io and dd: create the
    base, run ops[:last_op + 1] through blklogwrites, apply the kept log entries onto a
    copy of the base, then the qemu-io commands in `show` on it. Without `state`, the
    lines stop after the run and print the headers of the log entries `headers` (the
    log itself is the evidence: sector, sectors, flags, data length)."""
    from .capture import split_options

    build = capture.build
    img = qemu.require_tool("qemu-img", build)
    io = qemu.require_tool("qemu-io", build)
    create, runtime, cache = split_options(dict(capture.options))
    if workload.zoned is not None:
        opts = create_options(workload.zoned, workload.cluster_size, create)
    else:
        opts = ",".join(f"{k}={v}" for k, v in create.items())
    lines = [f"{shlex.quote(img)} create -q -f qcow2{' -o ' + opts if opts else ''} "
             f"base.qcow2 {workload.size}",
             "cp base.qcow2 run.qcow2 && : > writes.log"]
    stack = ("driver=qcow2,file.driver=blklogwrites,file.file.filename=run.qcow2,"
             "file.log.filename=writes.log")
    extra = "".join(f",{k}={v}" for k, v in runtime.items())
    commands: list[str] = []
    appending = False

    def session() -> None:
        mode = "file.log-append=on" if appending else f"file.log-sector-size={LOG_SECTOR}"
        args = " ".join(f"-c {shlex.quote(c)}" for c in commands)
        lines.append(f"{shlex.quote(io)} -t {cache} --image-opts "
                     f"{shlex.quote(f'{stack},{mode}{extra}')} {args}".rstrip())

    for op in capture.ops[:last_op + 1]:
        if op.kind == "close" and op.zone < 0:
            continue  # qemu-io quits after its last -c anyway
        if op.kind in ("reopen", "snapshot", "snapshot_delete"):
            session()
            commands, appending = [], True
            if op.kind != "reopen":
                flag = "-c" if op.kind == "snapshot" else "-d"
                lines.append(f"{shlex.quote(img)} snapshot --image-opts "
                             f"{shlex.quote(f'{stack},file.log-append=on{extra}')} {flag} "
                             f"{op.name}")
            continue
        commands.append(op.qemu_command(workload.zoned))
    session()
    if state is None:
        for index in headers:
            entry = capture.entries[index]
            lines.append(f"od -A d -t u8 -j {entry.log_offset} -N 32 writes.log  # entry "
                         f"#{index}: sector {entry.sector} (file offset "
                         f"{entry.sector * capture.sectorsize:#x})")
        return lines
    lines.append("cp base.qcow2 state.qcow2")
    chosen: list[tuple[int, int | None]] = []
    for epoch in epochs[:state.epoch]:
        chosen += [(index, None) for index in epoch.writes]
    epoch = epochs[state.epoch]
    picked: list[tuple[int, int | None]] = [(p, None) for p in state.applied]
    if state.torn is not None:
        picked.append((state.torn[0], state.torn[1]))
    chosen += [(epoch.writes[p], kept) for p, kept in sorted(picked, key=lambda c: c[0])]
    sector = capture.sectorsize
    for index, kept in chosen:
        entry = capture.entries[index]
        count = entry.nr_sectors if kept is None else min(kept, entry.nr_sectors)
        source = ("if=/dev/zero" if entry.is_discard
                  else f"if=writes.log skip={(entry.log_offset + sector) // sector}")
        lines.append(f"dd {source} of=state.qcow2 bs={sector} seek={entry.sector} "
                     f"count={count} conv=notrunc status=none  # log entry #{index}")
    if show:
        args = " ".join(f"-c {shlex.quote(c)}" for c in show)
        lines.append(f"{shlex.quote(io)} -r -f qcow2 {args} state.qcow2")
    return lines


def last_op_of(capture: Capture, epoch: Epoch) -> int:
    """The op in flight at the epoch's crash point (the last op a reproducer runs)."""
    if epoch.end >= len(capture.entries):
        return len(capture.ops) - 1
    return min(capture.op_of(epoch.end), len(capture.ops) - 1)


def known_deviations(build: str | None, expect: Sequence[str] | None) -> tuple[str, ...]:
    return tuple(expect) if expect is not None else KNOWN_DEVIATIONS.get(build or "", ())


__all__ = ["DEVIATION_READINGS", "KNOWN_DEVIATIONS", "OrderProblem", "ZONED_BUILDS", "ZonedJudge",
           "ZonedReader", "ZonedRun", "check_state", "create_options", "known_deviations",
           "last_op_of", "model_trace", "order_problems", "require_zoned_build", "series_tools",
           "shell_reproducer"]
