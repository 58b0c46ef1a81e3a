"""Each target's bounds turn a synthetic slow or memory-hungry input into a finding.

The clock and the RSS probe are monkeypatched, so nothing here is slow or big.
"""

from __future__ import annotations

import itertools
import sys

import pytest
from qcow2harness.fuzz import targets
from qcow2harness.fuzz.targets import TARGETS, Bounds, execute, get_target

from qcow2harness.image import Image

SMALL_READER = f"{sys.executable} -c pass {{}}"


def all_targets() -> list[targets.Target]:
    chosen = [TARGETS["check"], TARGETS["model"], get_target("external", reader=SMALL_READER)]
    return chosen


@pytest.fixture
def seed(seed_bytes: list[bytes]) -> bytes:
    return min(seed_bytes, key=len)


def fake_clock(step: float) -> object:
    ticks = itertools.count()
    return lambda: next(ticks) * step


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.name)
def test_slow_input_is_a_finding(target: targets.Target, seed: bytes,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets.time, "perf_counter", fake_clock(100.0))
    finding = execute(target, seed)
    assert finding is not None and finding.kind == "slow", finding
    assert "bound" in finding.summary


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.name)
def test_peak_rss_jump_is_a_finding(target: targets.Target, seed: bytes,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    readings = iter([100.0, 100.0 + target.bounds.rss_mb + 1])
    monkeypatch.setattr(targets, "peak_rss_mb", lambda: next(readings))
    monkeypatch.setattr(targets, "_peak_mb", [None])
    # Each clock reading just past the probe threshold: the RSS probe runs, and the input
    # stays short of the time bound.
    step = targets.rss_probe_seconds(target.bounds) * 1.01
    assert step < target.bounds.seconds
    monkeypatch.setattr(targets.time, "perf_counter", fake_clock(step))
    finding = execute(target, seed)
    assert finding is not None and finding.kind == "oom", finding


def test_quick_inputs_skip_the_rss_probe(seed: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """An input quicker than faulting in `rss_mb` MiB could be cannot have raised the
    peak by that much: no getrusage for it, though it is slower than RSS_PROBE_SECONDS."""
    target = TARGETS["check"]
    threshold = targets.rss_probe_seconds(target.bounds)
    assert threshold >= target.bounds.rss_mb / targets.FASTEST_FAULT_MIB_PER_SECOND
    calls: list[int] = []
    monkeypatch.setattr(targets, "peak_rss_mb", lambda: calls.append(1) or 100.0)
    monkeypatch.setattr(targets, "_peak_mb", [100.0])
    elapsed = threshold * 0.9
    assert elapsed > targets.RSS_PROBE_SECONDS
    readings = itertools.chain([0.0], itertools.repeat(elapsed))
    monkeypatch.setattr(targets.time, "perf_counter", lambda: next(readings))
    assert execute(target, seed) is None
    assert calls == []


def _raise_memory_error(*args: object, **kwargs: object) -> None:
    raise MemoryError("synthetic: 4 GiB requested by a 120-byte file")


@pytest.mark.parametrize("target", all_targets(), ids=lambda t: t.name)
def test_memory_error_is_an_oom_finding(target: targets.Target, seed: bytes,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from qcow2harness.reference import persistence

    monkeypatch.setattr(Image, "from_bytes", classmethod(_raise_memory_error))
    monkeypatch.setattr(persistence.PersistenceModel, "__init__", _raise_memory_error)
    finding = execute(target, seed)
    assert finding is not None and finding.kind == "oom", finding
    assert "synthetic" in finding.summary


def test_differential_slow_and_oom(seed: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not a qcow2 image: no qemu-img run, but the bounds still apply.
    target = TARGETS["differential"]
    monkeypatch.setattr(targets.time, "perf_counter", fake_clock(100.0))
    slow = execute(target, b"not qcow2")
    assert slow is not None and slow.kind == "slow"
    monkeypatch.setattr(Image, "from_bytes", classmethod(_raise_memory_error))
    oom = execute(target, seed, Bounds(seconds=1e9))
    assert oom is not None and oom.kind == "oom"


def test_unexpected_exception_is_a_crash(monkeypatch: pytest.MonkeyPatch, seed: bytes) -> None:
    import qcow2harness.checker as checker

    def boom(image: Image) -> None:
        raise ZeroDivisionError("shift by cluster_bits")

    monkeypatch.setattr(checker, "check_image", boom)
    finding = execute(TARGETS["check"], seed)
    assert finding is not None and finding.kind == "crash"
    assert finding.summary.startswith("ZeroDivisionError") and "boom" in finding.where


def test_parse_error_is_not_a_finding() -> None:
    assert execute(TARGETS["check"], b"QFI\xfb\x00\x00\x00\x07") is None
    assert execute(TARGETS["check"], b"") is None


@pytest.mark.parametrize("script, kind", [
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", "crash"),
    ("import sys; sys.stderr.write('ERROR: AddressSanitizer: heap-buffer-overflow'); "
     "sys.exit(1)", "crash"),
    ("import time; time.sleep(30)", "slow"),
    ("import sys; sys.exit(3)", None),  # refusing the input is the reader's right
])
def test_external_reader_outcomes(script: str, kind: str | None, seed: bytes) -> None:
    target = get_target("external", reader=f"{sys.executable} -c \"{script}\" {{}}",
                        reader_timeout=0.5)
    finding = execute(target, seed)
    assert (finding.kind if finding else None) == kind, finding
