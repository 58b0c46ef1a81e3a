"""The fuzz targets and the bounds every input runs under.

A target is a function `bytes -> None`. It may raise a `HarnessError` (our documented
error type: `ParseError` for bytes that do not parse, the others for inputs the model
refuses) and must do nothing else. `execute()` runs one input under the bounds and
turns everything else into a `Finding`:

    crash   any other exception escaped (the traceback says where)
    oom     MemoryError, or the process peak RSS grew past the memory bound
    slow    the input took longer than the time bound
    diff    a differential target saw two implementations disagree

The same `execute()` serves the atheris worker (fuzz/worker.py) and the plain replay
of a corpus directory (`replay()`), so a finding reproduces without atheris.

    from qcow2harness.fuzz.targets import TARGETS, execute
    finding = execute(TARGETS["check"], open("crash-1234", "rb").read())
"""

from __future__ import annotations

import functools
import hashlib
import os
import resource
import shlex
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from qcow2harness.errors import HarnessError, ParseError

KINDS = ("crash", "oom", "slow", "diff")


class DifferentialMismatch(Exception):  # noqa: N818 - a finding, not an error of ours
    """Two implementations disagree on one input (raised by differential targets)."""


class SlowInput(Exception):  # noqa: N818
    """Raised by bounds checks that can interrupt an input (external readers)."""


class ExcessiveMemory(Exception):  # noqa: N818
    """An external reader died from (or was stopped at) its memory bound."""


@dataclass(frozen=True)
class Bounds:
    """Per-input limits. `seconds` is wall time per input; `rss_mb` is how far one input
    may raise the process's peak RSS; `address_space_mb` is the
    RLIMIT_AS headroom a dedicated worker process sets for itself."""

    seconds: float = 1.0
    rss_mb: int = 512
    address_space_mb: int = 1024


@dataclass(frozen=True)
class Finding:
    """One input that broke a bound or made an unexpected exception escape."""

    target: str
    kind: str  # one of KINDS
    summary: str  # one line: exception type and message, or what was exceeded
    where: str  # innermost frame "file:line in function", or "" (signature for dedup)
    details: str = ""  # traceback or differential report
    seconds: float = 0.0
    # What the input changed relative to the seed it grew from (fuzz/cause.py), e.g.
    # "zoned.num_zones" or "zonedmeta[3]", and that seed's path; "" when not worked out.
    fields: str = ""
    seed: str = ""

    @property
    def site_signature(self) -> str:
        """The cause without the field: kind, category (summary head) and site."""
        head = self.summary.split(":")[0]
        return f"{self.target}/{self.kind}/{head}/{self.where}"

    @property
    def signature(self) -> str:
        """Findings with one signature are one bug: the site plus the field
        (fuzz/cause.field_key: the zoned field, without table indices)."""
        if not self.fields:
            return self.site_signature
        from qcow2harness.fuzz.cause import field_key

        return f"{self.site_signature}/{field_key(self.fields)}"

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "summary": self.summary,
                "where": self.where, "details": self.details, "seconds": self.seconds,
                "fields": self.fields, "seed": self.seed}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Finding:
        return cls(raw["target"], raw["kind"], raw["summary"], raw.get("where", ""),
                   raw.get("details", ""), raw.get("seconds", 0.0), raw.get("fields", ""),
                   raw.get("seed", ""))


@dataclass
class Target:
    """A named target and its default bounds."""

    name: str
    run: Callable[[bytes], None]
    description: str
    bounds: Bounds = field(default_factory=Bounds)
    needs: tuple[str, ...] = ()  # external tools, e.g. ("qemu-img",)


# ---------------------------------------------------------------------------
# Peak RSS: one getrusage() per input, cheap enough for every execution.
# ---------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024



RSS_PROBE_SECONDS = 0.005
# Faulting in fresh memory is never faster than this (measured here: 0.2-1.3 GiB/s under
# load; fast bare metal reaches a few GiB/s), so an input that raised the peak by the
# bound took at least bound / rate seconds and inputs quicker than that need no probe.
FASTEST_FAULT_MIB_PER_SECOND = 16 * 1024


def rss_probe_seconds(bounds: Bounds) -> float:
    """Inputs at least this slow get the peak-RSS probe (getrusage)."""
    return max(RSS_PROBE_SECONDS, bounds.rss_mb / FASTEST_FAULT_MIB_PER_SECOND)
_peak_mb: list[float | None] = [None]  # the process peak RSS at the last probe


def limit_address_space(headroom_mb: int) -> int | None:
    """RLIMIT_AS = current address space + headroom, so a huge allocation raises
    MemoryError instead of exhausting the machine. For dedicated worker processes
    only; returns the limit set (bytes), or None where /proc is unavailable."""
    try:
        with open("/proc/self/status") as status:
            vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    except (OSError, StopIteration, ValueError):
        return None
    limit = vm_kb * 1024 + headroom_mb * (1 << 20)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


# ---------------------------------------------------------------------------
# Running one input
# ---------------------------------------------------------------------------


def _innermost(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "qcow2harness" in f.filename or "/work/" in f.filename
            or "kaitaistruct" in f.filename]
    chosen = ours or frames
    if not chosen:
        return ""
    frame = chosen[-1]
    return f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"


def execute(target: Target, data: bytes, bounds: Bounds | None = None) -> Finding | None:
    """Run one input under the bounds; None when it behaved (returned or raised ours)."""
    bounds = bounds or target.bounds
    if _peak_mb[0] is None:
        _peak_mb[0] = peak_rss_mb()
    started = time.perf_counter()
    finding: Finding | None = None
    try:
        target.run(data)
    except HarnessError:
        pass
    except MemoryError as exc:
        finding = Finding(target.name, "oom", f"MemoryError: {exc}"[:300], _innermost(exc),
                          traceback.format_exc())
    except ExcessiveMemory as exc:
        finding = Finding(target.name, "oom", f"ExcessiveMemory: {exc}"[:300], "", str(exc))
    except SlowInput as exc:
        finding = Finding(target.name, "slow", f"SlowInput: {exc}"[:300], "", str(exc))
    except ReaderCrash as exc:  # a reader program died: its category and crash site
        failure = exc.failure
        finding = Finding(target.name, failure.kind, failure.summary(), failure.site,
                          f"{exc.command}\n{failure.text}")
    except DifferentialMismatch as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        finding = Finding(target.name, "diff", f"DifferentialMismatch: {first}"[:300], first,
                          str(exc))
    except RecursionError as exc:
        finding = Finding(target.name, "crash", f"RecursionError: {exc}"[:300],
                          _innermost(exc), traceback.format_exc(limit=30))
    except Exception as exc:  # the point of the target: nothing else may escape
        first = str(exc).splitlines()[0] if str(exc) else ""
        finding = Finding(target.name, "crash", f"{type(exc).__name__}: {first}"[:300],
                          _innermost(exc), traceback.format_exc())
    elapsed = time.perf_counter() - started
    if finding is None and elapsed > bounds.seconds:
        finding = Finding(target.name, "slow",
                          f"took {elapsed:.2f} s, bound {bounds.seconds:g} s", "slow")
    if finding is None and elapsed >= rss_probe_seconds(bounds):
        # The process peak only moves when an input pushes it, and touching hundreds of
        # MiB takes tens of milliseconds: probing only after slower inputs keeps getrusage
        # (which costs milliseconds itself right after large frees) off the fast path.
        now = peak_rss_mb()
        grown, _peak_mb[0] = now - (_peak_mb[0] or now), now
        if grown > bounds.rss_mb:
            finding = Finding(target.name, "oom",
                              f"raised peak RSS by {grown:.0f} MiB, bound {bounds.rss_mb} MiB",
                              "rss")
    if finding is not None:
        finding = replace(finding, seconds=round(elapsed, 4))
    return finding


def input_name(data: bytes) -> str:
    """libFuzzer names units by the SHA-1 of their bytes."""
    return hashlib.sha1(data).hexdigest()


def corpus_files(paths: Iterable[str]) -> Iterator[str]:
    """Every regular file under the given files/directories, sorted, manifests skipped."""
    for path in paths:
        if os.path.isdir(path):
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    found = os.path.join(root, name)
                    # A FIFO or device in a corpus folder is passed over, never opened.
                    if (not name.endswith((".json", ".md", ".txt")) and not name.startswith(".")
                            and os.path.isfile(found)):
                        yield found
        elif os.path.isfile(path):
            yield path


# A replayed input bigger than this is refused (exit 1 naming it), not read: libFuzzer's
# own units are at most -max_len (1 MiB for the zoned mutator).
MAX_REPLAY_BYTES = 64 * 1024 * 1024


def replay(target: Target, paths: Iterable[str],
           bounds: Bounds | None = None) -> Iterator[tuple[str, Finding | None]]:
    """Plain replay (no atheris): each corpus file through `execute`."""
    try:  # the first run pays the lazy imports: keep them out of the time bound
        target.run(b"")
    except Exception:  # noqa: BLE001, S110 - a warm-up only
        pass
    from qcow2harness.inputfile import read_bounded

    for path in corpus_files(paths):
        yield path, execute(target, read_bounded(path, MAX_REPLAY_BYTES), bounds)


# ---------------------------------------------------------------------------
# check: parse + check robustness
# ---------------------------------------------------------------------------


# The last input `check` parsed, and its image. libFuzzer mutates the unit it has just
# run (up to -mutate_depth times in a row), so the structure-aware mutator reads that
# unit's layout from this parse instead of parsing the same bytes again.
_last_parsed: list[Any] = [b"", None]


def parsed_image(data: bytes) -> Any:
    """The Image `run_check` built for exactly these bytes, if it was the last input."""
    return _last_parsed[1] if _last_parsed[1] is not None and _last_parsed[0] == data else None


def run_check(data: bytes) -> None:
    """Parse and check; render the report as the CLI would. Only HarnessError may escape."""
    from qcow2harness.checker import check_image
    from qcow2harness.image import Image

    _last_parsed[1] = None
    image = Image.from_bytes(data)
    _last_parsed[:] = [data, image]
    report = check_image(image)
    report.to_json()
    for finding in report.findings:
        finding.one_line()


# ---------------------------------------------------------------------------
# differential: check vs qemu-img check
# ---------------------------------------------------------------------------

# Clauses whose findings qemu-img check does not report by design (see
# tests/test_check_vs_qemu.py): with one of them in our report, a verdict mismatch is
# explained, not a finding.
EXPLAINED_BY = {
    "HDR-12": "dirty bit: QEMU repairs on open, check reports nothing",
    "HDR-13": "corrupt bit: we report the bit, qemu-img check only damage it finds",
}

QEMU_CORRUPT, QEMU_LEAKS, QEMU_CANNOT = 2, 3, 1


def _qemu_walks_cluster_zero(image: Any) -> bool:
    """An L1 entry with flag bits but offset 0: the spec (and QEMU's read path) call its
    L2 table unallocated, but qemu-img 7.2 check tests the raw entry and walks cluster 0
    (the header) as an L2 table. Found by this target; explained, not a finding."""
    from qcow2harness.image import OFFSET_MASK

    try:
        entries = image.l1_entries()
    except HarnessError:
        return False
    return bool(((entries & OFFSET_MASK) == 0).__and__(entries != 0).any())


def _scratch_dir() -> str:
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


def _scratch_file(data: bytes) -> str:
    fd, path = tempfile.mkstemp(prefix="qcow2-fuzz-", suffix=".qcow2", dir=_scratch_dir())
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def run_differential(data: bytes, build: str | None = None) -> None:
    """Our verdict vs `qemu-img check`'s, and our `map` vs `qemu-img map`'s, on the same
    bytes; `build` picks the qemu-img (qcow2harness.qemu.BUILDS; None: the default).

    Verdicts are compared when QEMU could check the image (exit 0, 2 or 3): when qemu-img
    check finds corruption (2) we must report a MUST violation, and when it finds leaks
    (3) we must not call the image clean. Our being stricter is not a finding; nor is QEMU
    refusing to open an image (exit 1): it refuses for many legitimate reasons. A crash or
    hang of qemu-img check is. Maps are compared the same way (see _compare_maps).
    """
    from qcow2harness.checker import check_image
    from qcow2harness.image import Image

    image = Image.from_bytes(data)
    if int(image.header.crypt_method) != 0 or image.backing_file_name is not None:
        return  # needs a secret or a backing file QEMU would open: not comparable
    ours = check_image(image)
    path = _scratch_file(data)
    try:
        check_seconds = 0.0
        if not _qemu_walks_cluster_zero(image):
            started = time.perf_counter()
            _compare_verdicts(ours, path, build)
            check_seconds = time.perf_counter() - started
        # QEMU's open alone costs what qemu-img check took: an image it opens slowly
        # (a huge snapshot table read past the end of the file, say) is not mapped too,
        # which keeps an input within twice the cost of one slow open.
        if check_seconds < MAP_AFTER_CHECK_SECONDS:
            _compare_maps(image, path, build)
    finally:
        os.unlink(path)


QEMU_IMG_SECONDS, QEMU_IMG_MEMORY_MB = 30.0, 2048
QEMU_IMG_CHECK = ("check", "--force-share", "-f", "qcow2")
QEMU_IMG_MAP = ("map", "--force-share", "--output=json", "-f", "qcow2")


def _run_qemu_img(args: tuple[str, ...], path: str, build: str | None) -> Any:
    """qemu-img ARGS PATH of the build, bounded; a crash (signal, ASan report) raises
    ReaderCrash with its site, a hang DifferentialMismatch. Returns fuzz.reader.Ended."""
    from qcow2harness.fuzz.reader import run_and_classify, shell_command

    from qcow2harness import qemu

    argv = [qemu.require_tool("qemu-img", build), *args, path]
    ended, failure = run_and_classify(argv, build, seconds=QEMU_IMG_SECONDS,
                                      memory_mb=QEMU_IMG_MEMORY_MB, cwd=os.path.dirname(path))
    if ended.timed_out:
        raise DifferentialMismatch(f"qemu-img {args[0]} timed out ({QEMU_IMG_SECONDS:g} s)")
    if failure is not None:
        raise ReaderCrash(failure, shell_command(argv, build, QEMU_IMG_MEMORY_MB))
    return ended


def _compare_verdicts(ours: Any, path: str, build: str | None = None) -> None:
    explained = sorted(set(EXPLAINED_BY) & ours.clauses())
    proc = _run_qemu_img(QEMU_IMG_CHECK, path, build)
    theirs = proc.returncode
    if theirs not in (0, QEMU_CORRUPT, QEMU_LEAKS) or explained:
        return
    # Where we are stricter (we report a MUST, qemu-img check nothing) is expected: most
    # clauses are outside what qemu-img check examines (tests/test_check_vs_qemu.py lists
    # cases). A finding is QEMU seeing damage that we miss or grade lower.
    missed = (theirs == QEMU_CORRUPT and ours.exit_code != 2) or (
        theirs == QEMU_LEAKS and ours.exit_code == 0)
    if missed:
        clauses = ", ".join(sorted(ours.clauses())) or "none"
        raise DifferentialMismatch(
            # The first line is the signature: the two exit codes, not our clause list.
            f"check exit {ours.exit_code}, qemu-img check exit {theirs}\n"
            f"our clauses: {clauses}\n"
            f"qemu-img: {proc.text.strip()[-2000:]}")


# At most this many clusters/subclusters are mapped per input: a few hundred
# milliseconds of numpy for us, and a bound on the extents qemu-img map walks.
MAP_MAX_UNITS = 1 << 22
MAP_AFTER_CHECK_SECONDS = 1.0


def map_work_units(image: Any) -> int:
    """Clusters (subclusters with extended L2) our map decodes: present L2 tables inside
    the virtual disk times the units one table maps."""
    import numpy as np

    from qcow2harness.image import OFFSET_MASK

    cluster_size = image.cluster_size
    entries = cluster_size // (16 if image.header.is_extended_l2 else 8)
    span = cluster_size * entries
    tables = -(-int(image.header.virtual_size) // span)
    l1 = image.l1_entries()[:tables]
    present = int(np.count_nonzero(l1 & OFFSET_MASK))
    return present * entries * (32 if image.header.is_extended_l2 else 1)


def _compare_maps(image: Any, path: str, build: str | None = None) -> None:
    """`map` vs `qemu-img map --output=json` on the scratch copy: when both map the image,
    they must agree on the fields our map models (qemu_json.map_difference: a key a newer
    QEMU adds, such as 10.x's `compressed`, is no difference). Either side refusing is not
    a finding (QEMU refuses many images, we refuse entries the spec calls invalid);
    qemu-img map dying of a signal or hanging is. Images with an external data file are
    not compared (the name would send both to an arbitrary host file), nor images past
    MAP_MAX_UNITS."""
    import json

    from qcow2harness.map import map_json
    from qcow2harness.qemu_json import map_difference

    try:
        if image.header.has_external_data_file or map_work_units(image) > MAP_MAX_UNITS:
            return
        ours = map_json(path)
    except HarnessError:
        return
    proc = _run_qemu_img(QEMU_IMG_MAP, path, build)
    if proc.returncode != 0:
        return
    theirs = json.loads(proc.stdout)
    difference = map_difference(ours, theirs)
    if difference is not None:
        raise DifferentialMismatch(
            f"{difference}\nours: {json.dumps(ours)[:3000]}\n"
            f"qemu-img: {json.dumps(theirs)[:3000]}")


# ---------------------------------------------------------------------------
# model: zone model vs reference writer on op sequences decoded from the bytes
# ---------------------------------------------------------------------------

_K = 1024
# Small configurations (512-byte blocks, 4 KiB zones) so each input runs many ops.
MODEL_CONFIGS: tuple[dict[str, int], ...] = (
    dict(size=24 * _K, zone_size=4 * _K, zone_capacity=3 * _K, conventional_zones=1,
         max_open_zones=2, max_active_zones=3, max_append_bytes=1 * _K),
    dict(size=16 * _K, zone_size=4 * _K, zone_capacity=4 * _K, conventional_zones=0,
         max_open_zones=0, max_active_zones=0, max_append_bytes=0),
    dict(size=32 * _K, zone_size=8 * _K, zone_capacity=5 * _K, conventional_zones=2,
         max_open_zones=1, max_active_zones=1, max_append_bytes=2 * _K),
)
MODEL_OPS = ("write", "write", "append", "open", "close", "finish", "reset", "reset_all",
             "flush", "reopen")
MAX_MODEL_OPS = 64


def decode_ops(data: bytes) -> tuple[dict[str, int], str, list[dict[str, Any]]]:
    """Bytes -> (config, victim policy, ops). Every byte string decodes to something."""
    from qcow2harness.reference.zones import VictimPolicy

    config = MODEL_CONFIGS[data[0] % len(MODEL_CONFIGS)] if data else MODEL_CONFIGS[0]
    policies = list(VictimPolicy)
    policy = str(policies[(data[1] if len(data) > 1 else 0) % len(policies)])
    nr_zones = config["size"] // config["zone_size"]
    ops: list[dict[str, Any]] = []
    body = data[2:]
    for i in range(0, min(len(body) // 3, MAX_MODEL_OPS) * 3, 3):
        kind, a, b = body[i], body[i + 1], body[i + 2]
        name = MODEL_OPS[kind % len(MODEL_OPS)]
        zone = a % (nr_zones + 1) if a & 0x80 else a % nr_zones  # sometimes out of range
        length = 512 * (1 + b % 4)
        if name == "write":
            # High bits of b: at the wp (twice as likely), 512 bytes past it, at the start.
            ops.append({"op": "write", "zone": zone, "where": b >> 6, "length": length})
        elif name == "append":
            ops.append({"op": "append", "zone": zone, "length": length})
        elif name in ("open", "close", "finish", "reset"):
            ops.append({"op": name, "zone": zone})
        else:
            ops.append({"op": name})
    return config, policy, ops


def run_model(data: bytes) -> None:
    """Apply the decoded ops to the persistence model and to the reference writer; every
    answer must agree, and the writer's file must re-read to the model's wps and pass
    `check` with no MUST violation."""
    from qcow2harness.reference.persistence import PersistenceModel, pattern_byte
    from qcow2harness.reference.writer import ReferenceWriter
    from qcow2harness.reference.zones import ZoneConfig, ZoneType

    from qcow2harness.checker import check_path

    fields, policy, ops = decode_ops(data)
    config = ZoneConfig(**fields)
    model = PersistenceModel(config, policy)
    fd, path = tempfile.mkstemp(prefix="qcow2-model-", suffix=".qcow2", dir=_scratch_dir())
    os.close(fd)
    try:
        writer = ReferenceWriter.create(path, config.size, cluster_size=512, zoned=config,
                                        policy=policy, fsync=False)
        with writer:
            for step, drawn in enumerate(ops):
                op = dict(drawn)
                if op["op"] == "write":
                    zone, where = op.pop("zone"), op.pop("where")
                    if zone >= model.zones.nr_zones:
                        op["offset"] = config.size  # past the end: must be refused
                    else:
                        info = model.zones.zone(zone)
                        base = info.wp if info.type is ZoneType.SEQUENTIAL else info.start
                        op["offset"] = (base, base + 512, info.start, base)[where]
                expected = model.apply(op)
                fill = bytes([pattern_byte(model.last_content) or 0])
                got = writer.apply(op, fill)
                if got != expected:
                    raise DifferentialMismatch(
                        f"op {step} {op}: model {expected}, writer {got}\n"
                        + "\n".join(str(o) for o in ops[: step + 1]))
        with ReferenceWriter.open(path, fsync=False) as fresh:
            on_disk = fresh.wps_on_disk()
        volatile = model.zones.wps()
        for zone, info in enumerate(model.zones.report()):
            if info.type is ZoneType.SEQUENTIAL and on_disk[zone] != volatile[zone]:
                raise DifferentialMismatch(
                    f"zone {zone}: wp on disk {on_disk[zone]}, model {volatile[zone]} after "
                    f"close\n" + "\n".join(str(o) for o in ops))
        report = check_path(path)
        if not report.conformant:
            raise DifferentialMismatch(
                "the reference writer's image fails check: "
                + "; ".join(f.one_line() for f in report.violations[:5]))
    finally:
        os.unlink(path)


# ---------------------------------------------------------------------------
# external: a user-supplied reader command
# ---------------------------------------------------------------------------

@dataclass
class ExternalReader:
    """Runs `command` ({} = the input file) on each input. Non-zero exits are the reader
    refusing the input, which is fine; signals, timeouts, sanitizer reports and panics
    are findings, classified by fuzz/reader.py (an allocation sized by the input that
    aborts is a crash; running out of the memory bound is `oom`). With `build`, a
    leading qemu-img/qemu-io is that build's (qcow2harness.qemu.BUILDS)."""

    command: str
    seconds: float = 10.0
    memory_mb: int = 4096
    check_in_process: bool = True  # our checker on the same bytes: coverage feedback
    build: str | None = None

    def argv(self, path: str) -> list[str]:
        from qcow2harness.fuzz.reader import reader_argv

        return reader_argv(self.command, path, self.build)

    def __call__(self, data: bytes) -> None:
        from qcow2harness.fuzz.reader import run_and_classify, shell_command

        if self.check_in_process:
            try:
                run_check(data)
            except HarnessError:
                pass
        path = _scratch_file(data)
        try:
            argv = self.argv(path)
            ended, failure = run_and_classify(argv, self.build, seconds=self.seconds,
                                              memory_mb=self.memory_mb,
                                              cwd=os.path.dirname(path))
        finally:
            os.unlink(path)
        if ended.timed_out:
            raise SlowInput(f"reader still running after {self.seconds:g} s: {self.command}")
        if failure is not None:
            raise ReaderCrash(failure, shell_command(argv, self.build, self.memory_mb))


class ReaderCrash(Exception):  # noqa: N818
    """A reader program crashed (signal, sanitizer report, panic) or ran out of memory;
    `failure` says how and where (fuzz/reader.py)."""

    def __init__(self, failure: Any, command: str = "") -> None:
        super().__init__(f"{failure.summary()} at {failure.site}: {command}")
        self.failure = failure
        self.command = command


def external_target(command: str, seconds: float = 10.0, memory_mb: int = 4096,
                    build: str | None = None) -> Target:
    reader = ExternalReader(command, seconds, memory_mb, build=build)
    label = f" ({build} build)" if build else ""
    return Target("external", reader, f"external reader: {command}{label}",
                  Bounds(seconds=seconds + 5.0))


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------

TARGETS: dict[str, Target] = {
    "check": Target("check", run_check,
                    "parse + check robustness: only ParseError/HarnessError may escape",
                    Bounds(seconds=2.0, rss_mb=512)),
    "differential": Target("differential", run_differential,
                           "check vs qemu-img check verdicts and map vs qemu-img map "
                           "on the same bytes",
                           Bounds(seconds=35.0, rss_mb=512), needs=("qemu-img",)),
    "model": Target("model", run_model,
                    "zone model vs reference writer on op sequences decoded from bytes",
                    Bounds(seconds=5.0, rss_mb=512)),
}
TARGET_NAMES = (*TARGETS, "external")


# The targets that run a QEMU reader, and so take a build (fuzz/reader.py).
BUILD_TARGETS = ("differential", "external")


def reader_commands(name: str, reader: str | None = None) -> list[str]:
    """The reader commands ({} = the input) a target runs on each input, in order."""
    if name == "external":
        return [reader] if reader else []
    if name == "differential":
        return [shlex.join(("qemu-img", *args)) + " {}" for args in (QEMU_IMG_CHECK,
                                                                     QEMU_IMG_MAP)]
    return []


def get_target(name: str, reader: str | None = None, reader_timeout: float = 10.0,
               reader_memory_mb: int = 4096, build: str | None = None) -> Target:
    """`build`: the QEMU the reader is (qcow2harness.qemu.BUILDS, or "series": the zoned
    series with ASan when built); None is the default QEMU."""
    from qcow2harness.fuzz.reader import resolve_build

    if build is not None and name not in BUILD_TARGETS:
        raise HarnessError(f"--build is for the targets that run QEMU "
                           f"({', '.join(BUILD_TARGETS)}), not {name!r}")
    build = resolve_build(build)
    if name == "external":
        if not reader:
            raise HarnessError("the external target needs --reader 'COMMAND {}'")
        return external_target(reader, reader_timeout, reader_memory_mb, build)
    if name not in TARGETS:
        raise HarnessError(f"unknown target {name!r}; known: {', '.join(TARGET_NAMES)}")
    if name == "differential" and build is not None:
        base = TARGETS[name]
        return replace(base, run=functools.partial(run_differential, build=build),
                       description=f"{base.description} ({build} build)")
    return TARGETS[name]


__all__ = [
    "BUILD_TARGETS", "Bounds", "DifferentialMismatch", "ExternalReader", "Finding", "KINDS",
    "ParseError", "ReaderCrash",
    "TARGETS", "TARGET_NAMES", "Target", "corpus_files", "decode_ops", "execute",
    "get_target", "input_name", "reader_commands", "limit_address_space", "peak_rss_mb", "replay",
]
