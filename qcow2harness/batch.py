"""Checking a collection of images in one process: find them, check each, sum up.

    for outcome in check_many(["store/", "extra.qcow2"], jobs=2):
        outcome.path, outcome.exit_code, outcome.record   # one per image, in order

A directory is walked (without following directory symlinks) and every regular file
that starts with the qcow2 magic is checked, whatever its name; a path named on the
command line is checked even if it is not qcow2 (then HDR-1 says so). A file that
cannot be read is an outcome with exit class 1 and the batch goes on. Memory stays
bounded whatever the number of images: paths are streamed from the walk, at most
`jobs * IN_FLIGHT_PER_JOB` checks are pending, and an outcome keeps the report's JSON
record only.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qcow2harness.errors import HarnessError
from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK, EXIT_SHOULD_ONLY

IN_FLIGHT_PER_JOB = 8
# The worst verdict decides a batch's exit code: an image that could not be read at all
# outranks a MUST violation (the batch did not see everything), which outranks SHOULD.
SEVERITY = {EXIT_OK: 0, EXIT_SHOULD_ONLY: 1, EXIT_INVALID: 2, EXIT_CANNOT_RUN: 3}
VERDICTS = {EXIT_OK: "conformant", EXIT_SHOULD_ONLY: "SHOULD findings only",
            EXIT_INVALID: "MUST violations", EXIT_CANNOT_RUN: "could not be read"}


@dataclass
class Unreadable:
    """A path the walk found but could not look into (a directory without permission)."""

    path: str
    message: str


@dataclass
class Outcome:
    """One image's check: its report's JSON record (check.schema.json, less the
    schema_version the CLI adds) and its JUnit suite if asked."""

    path: str
    exit_code: int
    record: dict[str, Any]
    suite: Any = None  # qcow2harness.junit.Suite, built in the worker when wanted


def worst(codes: Iterable[int]) -> int:
    """The batch's exit code: the most severe of its images' (0 for no image)."""
    return max(codes, key=SEVERITY.__getitem__, default=EXIT_OK)


def _starts_with_magic(path: str) -> bool:
    """True for a file check would take (inputfile) whose first bytes are the qcow2
    magic; a FIFO or other special file met on the walk is passed over, never waited
    on. A file that cannot be opened is let through, for its check to say why."""
    from qcow2harness.errors import UsageError
    from qcow2harness.image import QCOW2_MAGIC
    from qcow2harness.inputfile import open_image_fd

    try:
        fd = open_image_fd(path)
    except UsageError:
        return False
    except OSError:
        return True
    try:
        return os.pread(fd, len(QCOW2_MAGIC), 0) == QCOW2_MAGIC
    except OSError:
        return True
    finally:
        os.close(fd)


def _walk(root: str) -> Iterator[str | Unreadable]:
    """Every file under `root`, in name order, without following directory symlinks."""
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError as exc:
        yield Unreadable(root, exc.strerror or str(exc))
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path)
            elif entry.is_file():
                yield entry.path
        except OSError as exc:
            yield Unreadable(entry.path, exc.strerror or str(exc))


def find_images(paths: Iterable[str],
                on_file: Callable[[], None] | None = None) -> Iterator[str | Unreadable]:
    """The images named by `paths`: a file as given, a directory's qcow2 files (by
    magic). A directory that cannot be listed comes back as Unreadable. `on_file()` is
    called for every file looked at, qcow2 or not (count_files counts the same)."""
    for path in paths:
        for found in _walk(path) if os.path.isdir(path) else [path]:
            if not isinstance(found, Unreadable) and on_file:
                on_file()
            if isinstance(found, Unreadable) or found == path or _starts_with_magic(found):
                yield found


def count_files(paths: Iterable[str]) -> int:
    """How many files find_images(paths) will look at (the progress bar's total)."""
    return sum(not isinstance(found, Unreadable)
               for path in paths for found in (_walk(path) if os.path.isdir(path) else [path]))


def unreadable_record(path: str, message: str) -> dict[str, Any]:
    """The record of an image that could not be read at all (exit class 1)."""
    return {
        "path": path, "conformant": False, "exit_code": EXIT_CANNOT_RUN,
        "violations": [], "notes": [], "suppressed": {},
        "counts": {"MUST": 0, "SHOULD": 0, "MAY": 0}, "stats": {}, "error": message}


def check_one(path: str, junit: bool = False) -> Outcome:
    """Check one image; whatever goes wrong is this image's outcome, never an exception."""
    from qcow2harness.checker import check_path

    try:
        report = check_path(path)
    except HarnessError as exc:  # e.g. not a regular file
        return _unreadable(path, exc.one_line(), junit)
    except OSError as exc:
        return _unreadable(path, f"{exc.strerror or exc}", junit)
    except MemoryError:
        return _unreadable(path, "out of memory", junit)
    except Exception as exc:  # one image's failure never stops the rest
        return _unreadable(path, f"internal error: {type(exc).__name__}: {exc}", junit)
    suite = None
    if junit:
        from qcow2harness.checker.report import junit_suite

        suite = junit_suite(report)
    return Outcome(path, report.exit_code, report.to_json(), suite)


def _unreadable(path: str, message: str, junit: bool) -> Outcome:
    suite = None
    if junit:
        from qcow2harness.junit import Case, Failure, Suite

        suite = Suite(f"check {path}", [Case("read the image", "check.io",
                                             error=Failure(message, "io"))],
                      properties={"image": path, "exit_code": str(EXIT_CANNOT_RUN)})
    return Outcome(path, EXIT_CANNOT_RUN, unreadable_record(path, message), suite)


def _resolve(found: str | Unreadable, junit: bool) -> Outcome | str:
    return _unreadable(found.path, found.message, junit) if isinstance(found, Unreadable) \
        else found


def check_many(paths: Iterable[str], *, jobs: int = 1, junit: bool = False,
               on_file: Callable[[], None] | None = None) -> Iterator[Outcome]:
    """Check every image `paths` names, yielding outcomes in walk order. jobs > 1 checks
    in that many worker processes; a worker that dies costs only its images, which come
    back as exit class 1. `on_file()` is called per file looked at (progress)."""
    found = find_images(paths, on_file)
    if jobs <= 1:
        for item in found:
            resolved = _resolve(item, junit)
            yield resolved if isinstance(resolved, Outcome) else check_one(resolved, junit)
        return
    yield from _check_in_workers(found, jobs, junit)


def _check_in_workers(found: Iterator[str | Unreadable], jobs: int,
                      junit: bool) -> Iterator[Outcome]:
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("fork")
    pending: deque[tuple[str, Future[Outcome] | Outcome]] = deque()
    pool = ProcessPoolExecutor(jobs, mp_context=context)
    try:
        for item in found:
            resolved = _resolve(item, junit)
            if isinstance(resolved, Outcome):
                pending.append((resolved.path, resolved))
            else:
                pending.append((resolved, pool.submit(check_one, resolved, junit)))
            while len(pending) >= jobs * IN_FLIGHT_PER_JOB:
                outcome, pool = _next(pending, pool, jobs, junit, context, BrokenProcessPool)
                yield outcome
        while pending:
            outcome, pool = _next(pending, pool, jobs, junit, context, BrokenProcessPool)
            yield outcome
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _next(pending: Any, pool: Any, jobs: int, junit: bool, context: Any,
          broken: type[Exception]) -> tuple[Outcome, Any]:
    """The oldest pending outcome; a dead worker pool is replaced and the images it
    still held are checked again once each, alone, so only the culprit is lost."""
    from concurrent.futures import ProcessPoolExecutor

    path, job = pending.popleft()
    if isinstance(job, Outcome):
        return job, pool
    try:
        return job.result(), pool
    except broken:
        pool.shutdown(wait=False, cancel_futures=True)
        alone = ProcessPoolExecutor(1, mp_context=context)
        try:
            outcome = alone.submit(check_one, path, junit).result()
        except broken:
            outcome = _unreadable(path, "the checker process died on this image", junit)
        finally:
            alone.shutdown(wait=False, cancel_futures=True)
        fresh = ProcessPoolExecutor(jobs, mp_context=context)
        requeued = [(other_path, other if isinstance(other, Outcome)
                     else fresh.submit(check_one, other_path, junit))
                    for other_path, other in pending]
        pending.clear()
        pending.extend(requeued)
        return outcome, fresh


@dataclass
class Summary:
    """Counts per verdict and how many images each clause was found in."""

    images: int = 0
    per_verdict: Counter[int] = field(default_factory=Counter)
    clause_images: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: Outcome) -> None:
        self.images += 1
        self.per_verdict[outcome.exit_code] += 1
        record = outcome.record
        clauses = {f["clause"] for f in record.get("violations", [])}
        clauses.update(record.get("suppressed", {}))
        self.clause_images.update(clauses)

    @property
    def exit_code(self) -> int:
        return worst(self.per_verdict)

    def lines(self, top: int = 10) -> list[str]:
        verdicts = ", ".join(f"{self.per_verdict[code]} {VERDICTS[code]}"
                             for code in sorted(SEVERITY, key=SEVERITY.__getitem__)
                             if self.per_verdict[code])
        lines = [f"{self.images} image(s): {verdicts or 'none found'}."]
        if self.clause_images:
            common = ", ".join(f"{clause} ({count})"
                               for clause, count in self.clause_images.most_common(top))
            lines.append(f"Most frequent clauses (images): {common}.")
        return lines


__all__ = ["Outcome", "SEVERITY", "Summary", "Unreadable", "check_many", "check_one",
           "count_files", "find_images", "unreadable_record", "worst"]
