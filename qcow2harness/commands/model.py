"""`qcow2-harness model`: the reference zone model as a JSON-lines service."""

from __future__ import annotations

import argparse
import sys

from qcow2harness.exitcodes import EXIT_INVALID, EXIT_OK

NAME = "model"
HELP = "the reference zone model as a JSON-lines service on stdin/stdout"
DESCRIPTION = (
    'First line: {"op":"create","size":N,"zone_size":N,"zone_capacity":N,'
    '"conventional_zones":N,"max_open_zones":N,"max_active_zones":N,"max_append_bytes":N} '
    '(optional "policy": lru|fifo|round-robin). Then write, append, open, close, finish, '
    'reset, reset_all, flush, reopen, crash, report. Exactly one JSON answer per input '
    'line, each with "ok" and "error". A geometry of more than 65,536 zones '
    '(reference.zones.MODEL_MAX_ZONES) is refused with "bad-config": the model keeps an '
    'object per zone and reports every zone in one line; check, info and report take any '
    'zone count the format allows (ZONE-10).'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.add_argument("--strict", action="store_true",
                        help="exit 2 if any answer was ok:false (a refused op counts)")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.reference.trace import run as run_trace

    refused = 0
    for answer in run_trace(sys.stdin):
        print(answer, flush=True)
        refused += '"ok": false' in answer
    return EXIT_INVALID if refused and args.strict else EXIT_OK
