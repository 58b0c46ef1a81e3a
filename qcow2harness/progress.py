"""A one-line progress display on stderr, for the CLI layer only (stdlib only).

    bar = Progress.for_cli("crash", quiet=args.json)
    result = run_campaign(spec, progress=bar.count)   # library code calls back; never prints
    bar.close()

It draws only when stderr is a terminal, and not when the command was asked for
machine output (quiet), NO_PROGRESS is set (any value) or TERM is "dumb". Otherwise
every method does nothing and not one byte reaches stderr, so logs stay clean. A
frame is `\\r`, the text cut to the terminal width, then clear-to-end-of-line;
redraws are throttled to MAX_REDRAWS_PER_SECOND. close() either keeps the last frame
(ending it with a newline) or erases it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

MAX_REDRAWS_PER_SECOND = 10
CLEAR_LINE = "\x1b[K"
BAR_WIDTH = 20


def wanted(stream: TextIO, quiet: bool = False) -> bool:
    """Whether a progress display belongs on `stream` (see the module docstring)."""
    if quiet or "NO_PROGRESS" in os.environ or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bar(done: int, total: int | None) -> str:
    """`[#######.............]  35% 350/1000`, or just `350` without a total."""
    if not total:
        return f"{done}"
    fraction = min(max(done / total, 0.0), 1.0)
    filled = int(fraction * BAR_WIDTH)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {fraction:4.0%} {done}/{total}"


class Progress:
    """The progress line of one command. Disabled instances do nothing at all."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool = True,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.clock = clock
        self.started = clock()
        self._last_draw = float("-inf")
        self._text = ""  # the latest text, drawn or not
        self._shown = ""  # what the terminal shows now ("" when nothing)

    @classmethod
    def for_cli(cls, label: str, quiet: bool = False) -> Progress:
        return cls(label, sys.stderr, enabled=wanted(sys.stderr, quiet))

    def elapsed(self) -> float:
        return self.clock() - self.started

    def show(self, text: str, force: bool = False) -> None:
        """Set the line's text; redrawn at most MAX_REDRAWS_PER_SECOND times a second."""
        if not self.enabled:
            return
        self._text = text
        if text == self._shown and not force:
            return
        now = self.clock()
        if force or now - self._last_draw >= 1.0 / MAX_REDRAWS_PER_SECOND:
            self._draw(text)
            self._last_draw = now

    def count(self, done: int, total: int | None = None, what: str = "") -> None:
        """A counter with an optional total (a bar) and a word on what is counted."""
        if self.enabled:
            words = f" {what}" if what else ""
            self.show(f"{self.label}:{words} {bar(done, total)} {self.elapsed():.0f}s")

    def stage(self, what: str, done: int, total: int) -> None:
        """The checker's hook: (stage name, units done, units in the stage)."""
        self.count(done, total, what)

    def _draw(self, text: str) -> None:
        width = shutil.get_terminal_size((80, 24)).columns - 1
        line = text[:max(width, 10)]
        self.stream.write(f"\r{line}{CLEAR_LINE}")
        self.stream.flush()
        self._shown = line

    def clear(self) -> None:
        """Erase the line (before other output goes to the terminal); the next update
        redraws it."""
        if self.enabled and self._shown:
            self.stream.write(f"\r{CLEAR_LINE}")
            self.stream.flush()
            self._shown = ""
            self._last_draw = float("-inf")

    def note(self, text: str, stream: TextIO | None = None) -> None:
        """Print a line of ordinary output without tearing the progress line."""
        self.clear()
        out = stream if stream is not None else sys.stdout
        out.write(text + "\n")
        out.flush()

    def close(self, keep: bool = True) -> None:
        """End the display: keep the final frame (and end its line) or erase it."""
        if not self.enabled:
            return
        if keep and self._text:
            if self._shown != self._text:
                self._draw(self._text)
            self.stream.write("\n")
            self.stream.flush()
            self._shown = ""
        else:
            self.clear()
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(keep=exc[0] is None)


__all__ = ["MAX_REDRAWS_PER_SECOND", "Progress", "bar", "wanted"]
