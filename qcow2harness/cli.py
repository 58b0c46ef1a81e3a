"""The `qcow2-harness` command: parse arguments, run one subcommand, map errors to exit codes.

Subcommands live in qcow2harness.commands, one module each. Exit codes, for
every subcommand (qcow2harness.exitcodes):
  0  success (for `check`: conformant)
  1  could not run: usage error, I/O error, internal error
  2  the input is not valid: malformed image, MUST-level violation, violations found
  3  (`check` only) conformant except SHOULD-level findings
No traceback reaches the user unless QCOW2_HARNESS_DEBUG is set.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from qcow2harness import __version__
from qcow2harness.commands import COMMANDS
from qcow2harness.errors import HarnessError, ParseError
from qcow2harness.exitcodes import EXIT_CANNOT_RUN, EXIT_INVALID, EXIT_OK, EXIT_SHOULD_ONLY

__all__ = ["EXIT_CANNOT_RUN", "EXIT_INVALID", "EXIT_OK", "EXIT_SHOULD_ONLY", "main", "run"]

DEBUG_ENV = "QCOW2_HARNESS_DEBUG"


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors; our contract says 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_CANNOT_RUN, f"{self.prog}: error: {message}\n")


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is one of COMMANDS: only its
    module is imported (start-up cost is part of a small check's time). Help, a usage
    error or an unknown name builds the whole parser."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: with `only`, the top level plus that subcommand alone."""
    parser = _Parser(
        prog="qcow2-harness",
        description="Conformance checker, reference model and fuzzing harness for qcow2 "
        "and its proposed zoned extension.",
        epilog="Exit codes: 0 ok, 1 could not run, 2 invalid input or violations found, "
        "3 SHOULD-level findings only (check).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in [only] if only else COMMANDS:
        module = importlib.import_module(f"qcow2harness.commands.{name}")
        command = sub.add_parser(module.NAME, help=module.HELP)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = build_parser(_chosen_command(argv)).parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except ParseError as exc:
        print(f"qcow2-harness: {args.command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_INVALID
    except HarnessError as exc:
        print(f"qcow2-harness: {args.command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except OSError as exc:
        detail = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(f"qcow2-harness: {args.command}: {detail}", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except MemoryError:
        print(f"qcow2-harness: {args.command}: out of memory", file=sys.stderr)
        return EXIT_CANNOT_RUN
    except KeyboardInterrupt:
        return EXIT_CANNOT_RUN
    except Exception as exc:  # the last line of defence: never a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        print(f"qcow2-harness: {args.command}: internal error: {type(exc).__name__}: {exc} "
              f"(set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
        return EXIT_CANNOT_RUN


def main() -> NoReturn:
    sys.exit(run())


if __name__ == "__main__":
    main()
