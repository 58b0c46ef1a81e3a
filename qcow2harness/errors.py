"""The project's exception tree: one base, one subclass per layer.

Every error that may reach a user carries enough to print one line: what broke,
where (byte offset when known) and which spec clause it concerns.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error this project raises on purpose."""

    def __init__(
        self,
        message: str,
        *,
        offset: int | None = None,
        clause: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.clause = clause

    def one_line(self) -> str:
        parts = []
        if self.clause:
            parts.append(f"[{self.clause}]")
        parts.append(self.message)
        if self.offset is not None:
            parts.append(f"(at byte offset {self.offset:#x})")
        return " ".join(parts)

    def __str__(self) -> str:
        return self.one_line()


class ParseError(HarnessError):
    """The bytes do not parse as the structure ksy/ describes.

    `structure` names the Kaitai type that failed; parser exceptions are wrapped
    into this class in one place only (qcow2harness.image).
    """

    def __init__(
        self,
        message: str,
        *,
        structure: str | None = None,
        offset: int | None = None,
        clause: str | None = None,
    ) -> None:
        super().__init__(message, offset=offset, clause=clause)
        self.structure = structure


class ResourceLimitError(HarnessError):
    """The image asks for more memory or work than the file can back."""


class ModelError(HarnessError):
    """Misuse of the reference model (bad configuration, not a refused zone op)."""


class WriterError(HarnessError):
    """A writer adapter (QEMU or the reference writer) failed to run."""


class UsageError(HarnessError):
    """The user asked for something that cannot be done as asked."""
