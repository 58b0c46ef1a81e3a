"""`qcow2-harness iotests [args]`: the numbered iotests (same as iotests/check)."""

from __future__ import annotations

import argparse

NAME = "iotests"
HELP = "run the qemu-iotests-style suite in iotests/ (golden output, groups, JUnit)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qcow2harness.iotests_runner import add_arguments as runner_arguments

    parser.description = (
        "Run the numbered iotests and compare their output with NNN.out. The last line is "
        "'N passed, N failed, N not run'; exit 0 when nothing failed, 1 otherwise."
    )
    runner_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from qcow2harness.iotests_runner import run_args

    return run_args(args)
