"""The progress line: frames on a terminal's stderr, not one byte anywhere else.

Commands run with stderr on a pseudo-terminal (stdout stays a pipe) and then fully
piped; the piped run's stderr has no progress bytes and its stdout is byte-identical
to the terminal run's (timings masked where the output prints them).
"""

from __future__ import annotations

import io
import os
import pathlib
import pty
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from qcow2harness.progress import CLEAR_LINE, Progress, bar, wanted

REPO = pathlib.Path(__file__).resolve().parent.parent
SEEDS = REPO / "corpus" / "seeds"
HARNESS = shutil.which("qcow2-harness", path=os.path.dirname(sys.executable))
TIMINGS = re.compile(rb"\d+(\.\d+)? s \(\d+ states/s\)")


class FakeTerminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def terminal_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")


def test_wanted_only_on_a_terminal_without_opt_outs(terminal_env: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert wanted(FakeTerminal(True))
    assert not wanted(FakeTerminal(False))
    assert not wanted(FakeTerminal(True), quiet=True)
    monkeypatch.setenv("TERM", "dumb")
    assert not wanted(FakeTerminal(True))
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("NO_PROGRESS", "")
    assert not wanted(FakeTerminal(True))


def test_disabled_progress_writes_nothing() -> None:
    stream = FakeTerminal(False)
    progress = Progress("x", stream, enabled=wanted(stream))
    for n in range(1000):
        progress.count(n, 1000, "things")
    progress.show("text", force=True)
    progress.clear()
    progress.close()
    assert stream.getvalue() == ""


def test_frames_are_throttled_and_the_last_one_is_kept() -> None:
    stream, clock = FakeTerminal(True), Clock()
    progress = Progress("job", stream, enabled=True, clock=clock)
    for n in range(100):  # 100 updates in 99 ms: one frame
        clock.now = n / 1000
        progress.count(n, 100)
    assert stream.getvalue().count("\r") == 1
    clock.now = 0.2
    progress.count(100, 100)
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 2 and all(f.endswith(CLEAR_LINE) for f in frames)
    assert frames[-1].startswith("job: [####################] 100% 100/100")
    progress.close()
    assert stream.getvalue().endswith(CLEAR_LINE + "\n")


def test_close_without_keep_erases_and_note_clears_first() -> None:
    stream, clock = FakeTerminal(True), Clock()
    progress = Progress("job", stream, enabled=True, clock=clock)
    progress.count(1, 2)
    progress.note("a log line", stream)
    assert stream.getvalue().endswith(f"\r{CLEAR_LINE}a log line\n")
    clock.now = 0.01  # inside the throttle interval, but the line was erased: redraw
    progress.count(2, 2)
    assert stream.getvalue().endswith(f"2/2 0s{CLEAR_LINE}")
    progress.close(keep=False)
    assert stream.getvalue().endswith(f"\r{CLEAR_LINE}")


def test_bar() -> None:
    assert bar(5, 10) == "[##########..........]  50% 5/10"
    assert bar(3, None) == "3"
    assert bar(30, 10).endswith("100% 30/10")


# ---------------------------------------------------------------------------
# Whole commands, on a pseudo-terminal and piped
# ---------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "NO_PROGRESS"}
    env.update({"TERM": "xterm", "COLUMNS": "200", **extra})
    return env


def _read_all(fd: int) -> Iterator[bytes]:
    while True:
        ready, _, _ = select.select([fd], [], [], 300)
        if not ready:
            return
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other side closed
            return
        if not chunk:
            return
        yield chunk


def run_on_tty(*argv: str, **env: str) -> tuple[int, bytes, bytes]:
    """stderr on a pseudo-terminal, stdout a pipe."""
    if HARNESS is None:
        pytest.skip("not run: the qcow2-harness console script is not installed")
    leader, follower = pty.openpty()
    with subprocess.Popen([HARNESS, *argv], stdout=subprocess.PIPE, stderr=follower,
                          stdin=subprocess.DEVNULL, env=_env(**env)) as proc:
        os.close(follower)
        assert proc.stdout is not None
        stderr = b"".join(_read_all(leader))
        stdout = proc.stdout.read()
        code = proc.wait(timeout=300)
    os.close(leader)
    return code, stdout, stderr


def run_piped(*argv: str) -> tuple[int, bytes, bytes]:
    if HARNESS is None:
        pytest.skip("not run: the qcow2-harness console script is not installed")
    proc = subprocess.run([HARNESS, *argv], capture_output=True, env=_env(), timeout=300,
                          check=False)
    return proc.returncode, proc.stdout, proc.stderr


def assert_no_progress_bytes(stderr: bytes) -> None:
    assert b"\r" not in stderr and b"\x1b" not in stderr, stderr[:200]


def frames(stderr: bytes) -> list[bytes]:
    return [f for f in stderr.replace(b"\r\n", b"\n").split(b"\r") if f.strip(b"\x1b[K\n")]


def test_check_progress_on_a_terminal_only() -> None:
    image = str(SEEDS / "qemu-preallocation-metadata.qcow2")
    code, out, err = run_on_tty("check", image)
    assert code == 0
    shown = frames(err)
    assert shown and all(f.startswith(b"check: ") for f in shown), err
    assert any(b"L2 tables" in f for f in shown)
    assert err.endswith(b"\r" + CLEAR_LINE.encode())  # erased: check's output stands alone
    piped = run_piped("check", image)
    assert piped[0] == 0 and piped[2] == b""
    assert piped[1] == out
    for quiet in (("--json",), ()):
        env = {} if quiet else {"NO_PROGRESS": "1"}
        assert run_on_tty("check", *quiet, image, **env)[2] == b""
    assert run_on_tty("check", image, TERM="dumb")[2] == b""


def test_crash_progress_counts_states() -> None:
    argv = ("crash", "--writer", "reference", "--workload", "zones-small", "--mutant",
            "wp-before-data")
    code, out, err = run_on_tty(*argv)
    assert code == 2
    shown = frames(err)
    total = int(re.search(rb"(\d+) crash states checked", out)[1])  # type: ignore[index]
    assert shown[-1].startswith(b"crash: states judged [####################] 100% "
                                + f"{total}/{total}".encode())
    assert err.endswith(b"\n")  # the final frame is kept
    piped = run_piped(*argv)
    assert piped[0] == 2 and piped[2] == b""
    assert TIMINGS.sub(b"T", piped[1]) == TIMINGS.sub(b"T", out)


def test_crash_progress_from_parallel_workers(qemu_tools: None) -> None:
    """400 states or more are judged by worker processes; the line still counts them."""
    code, out, err = run_on_tty("crash", "--writer", "qemu", "--workload", "refcount-growth",
                                "--max-states", "400", "--no-data")
    assert code == 0, out
    assert b"400 crash states checked" in out
    shown = frames(err)
    counts = [int(m[1]) for f in shown if (m := re.search(rb" (\d+)/400 ", f))]
    assert counts == sorted(counts) and counts[-1] == 400 and len(set(counts)) > 2, shown


def test_corpus_build_progress(tmp_path: pathlib.Path, qemu_tools: None) -> None:
    argv = ("corpus", "build", "--only", "reference-zoned")
    code, out, err = run_on_tty(*argv, str(tmp_path / "a"))
    assert code == 0
    built = len(list((tmp_path / "a").glob("*.qcow2")))
    assert built >= 5
    assert frames(err)[-1].startswith(f"corpus: images built {built} ".encode())
    piped = run_piped(*argv, str(tmp_path / "b"))
    assert piped[0] == 0 and piped[2] == b""
    assert piped[1].replace(str(tmp_path / "b").encode(), b"DIR") == out.replace(
        str(tmp_path / "a").encode(), b"DIR")


def test_fuzz_replay_progress() -> None:
    argv = ("fuzz", "check", "--replay", str(SEEDS))
    code, out, err = run_on_tty(*argv)
    assert code == 0
    inputs = len(list(SEEDS.glob("*.qcow2")))
    assert frames(err)[-1].startswith(f"fuzz check replay: inputs {inputs} ".encode())
    piped = run_piped(*argv)
    assert piped[0] == 0 and piped[2] == b"" and piped[1] == out


def test_fuzz_campaign_live_line(tmp_path: pathlib.Path) -> None:
    pytest.importorskip("atheris", reason="not run: atheris is not installed")

    def argv(name: str) -> tuple[str, ...]:
        return ("fuzz", "check", "--time", "3", "--runs", "300", "--minimize-time", "0",
                "--seeds", str(SEEDS), "--corpus", str(tmp_path / name / "corpus"),
                "--artifacts", str(tmp_path / name / "artifacts"),
                "--regressions", str(tmp_path / name / "regressions"))

    code, out, err = run_on_tty(*argv("tty"))
    assert code == 0, out
    shown = frames(err)
    assert shown and all(f.startswith(b"fuzz check: ") for f in shown), err
    last = shown[-1]
    for word in (b"execs ", b"cov ", b"corpus ", b"findings 0"):
        assert word in last, last
    assert int(re.search(rb"execs (\d+)", last)[1]) > 0  # type: ignore[index]
    piped = run_piped(*argv("piped"))
    assert piped[0] == 0
    assert_no_progress_bytes(piped[2])
    assert b"DONE" in piped[1]
