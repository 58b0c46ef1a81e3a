"""Running a reader program on one input, and saying how it ended.

A reader that exits, with 0 or with a refusal, behaved. A finding is a reader that dies
of a signal, prints a sanitizer report or exits with qemu.ASAN_EXIT_CODE. Each gets a
`ReaderFailure`:

    kind      crash, or oom when the reader ran out of the memory it was given
    category  SIGSEGV, SIGFPE, SIGABRT, ... (the signal, or the one ASan caught);
              AssertionFailure; ASan <bug type> (heap-buffer-overflow, ...);
              UnboundedAllocation: an allocation failed whose size alone is at least
              half the memory bound (a size the reader took from the file; GLib's
              g_malloc aborts on it); OutOfMemory (kind oom): the bound was reached
              by smaller allocations, or the reader was killed for memory
    site      the first meaningful frame of the stack, "block/qcow2.c:836 in
              qcow2_read_extensions": QEMU's own source, the block layer first, leaving
              out the frames that only report (error_setv, g_malloc, abort, ...). From
              the ASan report; for a build without ASan from gdb when it is installed;
              otherwise the program and the signal

QEMU builds (`build=`, qcow2harness.qemu.BUILDS, or "series": zoned-asan when it is
built, else zoned) are run in their own environment (qemu.tool_environment, plus the
ASan options below); `qemu-img`/`qemu-io` at the head of a reader command are that
build's tools.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qcow2harness import qemu
from qcow2harness.errors import HarnessError

SERIES = "series"
BUILD_CHOICES = (SERIES, *qemu.BUILDS)
QEMU_TOOLS = ("qemu-img", "qemu-io")
ALLOCATION_FRACTION = 2  # one request of >= bound / 2 is an unbounded allocation
GDB_SECONDS = 60.0


def resolve_build(build: str | None) -> str | None:
    """A concrete build (qemu.BUILDS) for a build choice; HarnessError when absent."""
    if build is None:
        return None
    if build not in BUILD_CHOICES:
        raise HarnessError(f"unknown build {build!r}; choose from {', '.join(BUILD_CHOICES)}")
    if build == SERIES:
        for variant in ("zoned-asan", "zoned"):
            if qemu.build_unavailable(variant) is None:
                return variant
        build = "zoned"
    reason = qemu.build_unavailable(build)
    if reason is not None:
        raise HarnessError(reason)
    return build


def is_asan(build: str | None) -> bool:
    return build is not None and build.endswith("-asan")


def reader_environment(build: str | None, memory_mb: int,
                       debugger: bool = False) -> dict[str, str] | None:
    """The build's environment; for ASan also: SIGTRAP caught (GLib's g_error raises
    it), and the memory bound given to ASan, since RLIMIT_AS would stop ASan itself.
    `debugger`: ASan leaves the fatal signals to gdb."""
    env = qemu.tool_environment(build)
    if not is_asan(build):
        return env
    env = dict(env or os.environ)
    options = env.get("ASAN_OPTIONS", "")
    have = {part.split("=", 1)[0] for part in options.split(":") if part}
    handle = "0" if debugger else "1"
    if debugger:  # ours win over the build's defaults
        options = ":".join(p for p in options.split(":") if not p.startswith("handle_"))
        have = {part.split("=", 1)[0] for part in options.split(":") if part}
    extra = {"handle_sigtrap": handle, "handle_segv": handle, "handle_sigfpe": handle,
             "handle_abort": handle, "allocator_may_return_null": "1",
             "max_allocation_size_mb": str(memory_mb), "hard_rss_limit_mb": str(memory_mb),
             "symbolize": "1", "fast_unwind_on_malloc": "0"}
    added = ":".join(f"{key}={value}" for key, value in extra.items() if key not in have)
    env["ASAN_OPTIONS"] = ":".join(part for part in (options, added) if part)
    return env


def reader_argv(command: str, path: str, build: str | None) -> list[str]:
    """The command's words, {} replaced by the input (appended when absent), and a
    leading qemu-img/qemu-io taken from the build."""
    parts = shlex.split(command)
    if not any("{}" in p for p in parts):
        parts.append("{}")
    argv = [p.replace("{}", path) for p in parts]
    if build is not None and argv and argv[0] in QEMU_TOOLS:
        argv[0] = qemu.require_tool(argv[0], build)
    return argv


def limits(memory_mb: int, build: str | None) -> Callable[[], None]:
    """preexec_fn: no core files, its own process group, and RLIMIT_AS = the memory
    bound (not for ASan builds: ASan reserves terabytes of address space up front)."""

    def apply() -> None:
        if is_asan(build):  # lift the fuzz worker's own bound, as far as its hard limit
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
        else:
            memory = memory_mb * (1 << 20)
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()

    return apply


@dataclass(frozen=True)
class Ended:
    """How one reader run ended."""

    argv: tuple[str, ...]
    returncode: int
    text: str  # stdout + stderr
    timed_out: bool = False
    stdout: str = ""


def run_reader(argv: Sequence[str], build: str | None, *, seconds: float, memory_mb: int,
               cwd: str | None = None) -> Ended:
    """Run a reader under the bounds; a timeout kills its process group."""
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=limits(memory_mb, build),
                            cwd=cwd, env=reader_environment(build, memory_mb))
    try:
        out, err = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return Ended(tuple(argv), proc.returncode, (out + err).decode("utf-8", "replace"),
                     True, out.decode("utf-8", "replace"))
    return Ended(tuple(argv), proc.returncode, (out + err).decode("utf-8", "replace"),
                 False, out.decode("utf-8", "replace"))


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    function: str
    location: str  # "../src/block/qcow2.c:836", or "(/lib/...so+0x5be72)"


@dataclass(frozen=True)
class ReaderFailure:
    kind: str  # crash | oom
    category: str
    site: str
    detail: str  # one line
    text: str  # the reader's output, its tail

    def summary(self) -> str:
        return f"{self.category}: {self.detail}"[:300]


_ASAN_ERROR = re.compile(r"ERROR: AddressSanitizer: ([\w-]+)(?: on unknown address)?")
_ASAN_SUMMARY = re.compile(r"SUMMARY: AddressSanitizer: (.*)")
_ASAN_FRAME = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ in (\S+) (.+)$", re.M)
_GDB_FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(.*?\)(?: at (\S+))?", re.M)
_ASAN_ACCESS = re.compile(r"(?:READ|WRITE) of size \d+")
_ASSERTION = re.compile(r"(\S+:\d+): (\S+): Assertion `(.*)' failed")
_ALLOCATION = re.compile(r"(?:failed to allocate|memory allocation of) (\d+) bytes")
_ASAN_MALLOC = re.compile(r"(?:malloc|calloc|realloc|memalign)\((?:0x[0-9a-f]+, )?(\d+)\)")
_ASAN_SIGNALS = {"SEGV": "SIGSEGV", "FPE": "SIGFPE", "ABRT": "SIGABRT", "TRAP": "SIGTRAP",
                 "BUS": "SIGBUS", "ILL": "SIGILL"}
_ASAN_OOM = ("out-of-memory", "rss-limit-exceeded", "allocator-out-of-memory")
_ASAN_TOO_BIG = ("allocation-size-too-big", "requested-allocation-size-exceeds-maximum")
# Frames that only report or allocate: the site is their caller.
_REPORTING = frozenset({
    "error_setv", "error_setg_internal", "error_setg_errno_internal", "error_propagate",
    "error_report", "abort", "__assert_fail", "__assert_fail_base", "g_malloc",
    "g_malloc0", "g_realloc", "g_malloc_n", "g_malloc0_n", "g_realloc_n", "g_try_malloc",
    "g_log", "g_logv", "qemu_memalign", "qemu_try_memalign", "qemu_blockalign",
    "qemu_blockalign0", "qemu_try_blockalign", "qemu_try_blockalign0",
})
OTHER_CRASH_MARKERS = {"ERROR: LeakSanitizer": "LeakSanitizer", "runtime error:": "UBSan",
                       "panicked at": "Panic", "stack smashing detected": "StackSmashing",
                       "Segmentation fault": "SIGSEGV"}
OOM_MARKERS = ("out of memory", "Cannot allocate memory", "std::bad_alloc")


def asan_frames(text: str, after: str = "ERROR: AddressSanitizer") -> list[Frame]:
    """The first stack of an ASan report (the crash's), or the first one after `after`
    ("allocated by thread": where the overrun buffer came from)."""
    start = text.find(after)
    if start < 0:
        return []
    frames: list[Frame] = []
    for match in _ASAN_FRAME.finditer(text, start):
        if frames and match.group(0).lstrip().startswith("#0 "):
            break  # the next stack
        frames.append(Frame(match.group(1), match.group(2).strip()))
    return frames


def gdb_frames(text: str) -> list[Frame]:
    return [Frame(m.group(1), m.group(2) or "") for m in _GDB_FRAME.finditer(text)]


def crash_site(frames: Sequence[Frame]) -> str:
    """`path:line in function` of the first meaningful frame, or "" (also when the
    stack holds nothing but unknown frames: a smashed stack)."""
    frames = [f for f in frames if f.function != "??"]
    own = [f for f in frames if f.location.startswith("../src/") and
           f.function not in _REPORTING]
    block = [f for f in own if f.location.startswith("../src/block/")]
    chosen = (block or own or [f for f in frames if f.function not in _REPORTING] or
              list(frames))
    if not chosen:
        return ""
    frame = chosen[0]
    location = frame.location.removeprefix("../src/")
    return f"{location} in {frame.function}"


def _allocation_category(text: str, memory_mb: int) -> tuple[str, str] | None:
    """(category, detail) for a failed allocation the text reports, else None."""
    match = _ALLOCATION.search(text) or _ASAN_MALLOC.search(text)
    if match is None:
        return None
    size = int(match.group(1))
    if size * ALLOCATION_FRACTION >= memory_mb << 20:
        return ("UnboundedAllocation",
                f"an allocation of {size} bytes (a size taken from the input) failed")
    return "OutOfMemory", f"out of memory (the failing request: {size} bytes)"


def classify(ended: Ended, build: str | None, memory_mb: int,
             stack: Callable[[], list[Frame]] | None = None) -> ReaderFailure | None:
    """None when the reader behaved (exit 0 or a refusal). `stack` gives the frames of
    a crash when the output has none (gdb, for builds without ASan)."""
    text, code = ended.text, ended.returncode
    program = os.path.basename(ended.argv[0]) if ended.argv else "reader"
    asan = _ASAN_ERROR.search(text)
    killed = code < 0
    signal_name = (signal.Signals(-code).name if killed and -code in signal.valid_signals()
                   else f"signal {-code}" if killed else "")
    if asan is None and not killed and not (is_asan(build) and code == qemu.ASAN_EXIT_CODE):
        marker = next((m for m in OTHER_CRASH_MARKERS if m in text), None)
        if marker is None:
            return None
        return ReaderFailure("crash", OTHER_CRASH_MARKERS[marker], f"{program}: {marker}",
                             f"{program} reported {marker!r} (exit {code})", text[-3000:])
    frames = asan_frames(text)
    if not frames and stack is not None and (killed or asan is not None):
        frames = stack()
    site = crash_site(frames) or f"{program}: " + (
        signal_name or _ASAN_SIGNALS.get(asan.group(1) if asan else "", "") or f"exit {code}")
    buffer_site = crash_site(asan_frames(text, "allocated by thread"))
    if buffer_site and buffer_site != site:  # a heap error: the buffer's origin too
        site = f"{site} (buffer from {buffer_site})"
    bug = asan.group(1) if asan else ""
    summary = _ASAN_SUMMARY.search(text)
    kind = "crash"
    allocation = _allocation_category(text, memory_mb)
    assertion = _ASSERTION.search(text)
    if bug in _ASAN_TOO_BIG:
        category, detail = "UnboundedAllocation", summary.group(1) if summary else bug
    elif allocation is not None and (bug in _ASAN_OOM or bug in _ASAN_SIGNALS or killed):
        category, detail = allocation
    elif bug in _ASAN_OOM or (killed and -code == signal.SIGKILL) or (
            killed and any(m.lower() in text.lower() for m in OOM_MARKERS)):
        category, detail = "OutOfMemory", summary.group(1) if summary else (
            f"killed by {signal_name}")
    elif assertion is not None:
        category = "AssertionFailure"
        detail = f"{assertion.group(1)}: {assertion.group(2)}: `{assertion.group(3)}'"
    elif bug in _ASAN_SIGNALS:
        category, detail = _ASAN_SIGNALS[bug], summary.group(1) if summary else bug
    elif bug:
        access = _ASAN_ACCESS.search(text)
        category = f"ASan {bug}"
        detail = f"{bug}, {access.group(0)}" if access else (
            summary.group(1) if summary else bug)
    elif killed:
        category, detail = signal_name, f"{program} killed by {signal_name}"
    else:
        category, detail = "ASan", f"{program} exited {code} (the ASan exit code)"
    if category == "OutOfMemory":
        kind = "oom"
    detail = f"{program}: {detail}" if not detail.startswith(program) else detail
    return ReaderFailure(kind, category, site, detail.splitlines()[0][:240], text[-4000:])


def gdb_stack(argv: Sequence[str], build: str | None, memory_mb: int,
              cwd: str | None = None) -> list[Frame]:
    """The frames of the crash, rerun under gdb (empty without gdb or on a rerun that
    does not crash)."""
    gdb = shutil.which("gdb")
    if gdb is None:
        return []
    try:
        proc = subprocess.run(
            [gdb, "-batch", "-nx", "-ex", "run", "-ex", "bt", "--args", *argv],
            capture_output=True, text=True, timeout=GDB_SECONDS, check=False, cwd=cwd,
            env=reader_environment(build, memory_mb, debugger=True),
            preexec_fn=limits(memory_mb, build),
            stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return []
    trace = proc.stdout[proc.stdout.find("\n#0 ") + 1:] if "\n#0 " in proc.stdout else ""
    return gdb_frames(trace)


def run_and_classify(argv: Sequence[str], build: str | None, *, seconds: float,
                     memory_mb: int, cwd: str | None = None) -> tuple[Ended, ReaderFailure | None]:
    """One run, classified; gdb supplies the stack of a series build when the run left
    none (no ASan, or an ASan report cut short by a nested fault)."""
    ended = run_reader(argv, build, seconds=seconds, memory_mb=memory_mb, cwd=cwd)
    if ended.timed_out:
        return ended, None
    stack = (lambda: gdb_stack(argv, build, memory_mb, cwd)) if build is not None else None
    return ended, classify(ended, build, memory_mb, stack)


def describe_outcome(ended: Ended, failure: ReaderFailure | None) -> str:
    """One line: 'read fine (exit 0)', 'refused cleanly (exit 1: message)', or the
    failure; what a reproducer does under a given build."""
    if ended.timed_out:
        return "did not finish (timeout)"
    if failure is not None:
        return f"{failure.kind}: {failure.summary()} at {failure.site}"
    if ended.returncode == 0:
        return "read fine (exit 0)"
    lines = [line for line in ended.text.strip().splitlines() if line.strip()]
    return f"refused cleanly (exit {ended.returncode}: {lines[-1][:200] if lines else ''})"


def shell_command(argv: Sequence[str], build: str | None, memory_mb: int) -> str:
    """The command a person runs to see it: the build's environment first."""
    env = reader_environment(build, memory_mb) or {}
    prefix = f"ASAN_OPTIONS={shlex.quote(env['ASAN_OPTIONS'])} " if "ASAN_OPTIONS" in env \
        else ""
    return prefix + shlex.join(argv)



@dataclass(frozen=True)
class Verdict:
    """What one build does with a reproducer: the first command that fails (or the
    last one run), as a person would type it, and how it ended."""

    build: str | None
    command: str
    outcome: str
    failed: bool


def verdict(commands: Sequence[str], path: str, build: str | None, *, memory_mb: int,
            seconds: float) -> Verdict:
    """Run the reader commands ({} = path) under one build until one fails. Each runs on
    a fresh copy of the file (a reader such as qemu-io writes to the image it opens,
    and a reproducer must stay as it was); the command shown names `path`."""
    shown = ""
    outcome = "no reader command"
    directory = os.path.dirname(os.path.abspath(path))
    for command in commands:
        handle, scratch = tempfile.mkstemp(prefix=".verdict-", suffix=".qcow2",
                                           dir=directory)
        os.close(handle)
        try:
            shutil.copyfile(path, scratch)
            argv = reader_argv(command, scratch, build)
            ended, failure = run_and_classify(argv, build, seconds=seconds,
                                              memory_mb=memory_mb)
        finally:
            os.unlink(scratch)
        shown = shell_command(reader_argv(command, path, build), build, memory_mb)
        outcome = describe_outcome(ended, failure).replace(scratch, path)
        if failure is not None or ended.timed_out:
            return Verdict(build, shown, outcome, True)
    return Verdict(build, shown, outcome, False)


__all__ = ["BUILD_CHOICES", "Ended", "Frame", "ReaderFailure", "SERIES", "Verdict",
           "asan_frames",
           "classify", "crash_site", "describe_outcome", "gdb_stack", "reader_argv",
           "reader_environment", "resolve_build", "run_and_classify", "run_reader",
           "shell_command", "verdict"]
