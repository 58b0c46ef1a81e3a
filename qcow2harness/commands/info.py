"""`qcow2-harness info IMAGE [--json]`."""

from __future__ import annotations

import argparse

from qcow2harness.commands.output import emit_json
from qcow2harness.exitcodes import EXIT_OK

NAME = "info"
HELP = "show every header field, extension, feature bit and zone"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="qcow2 image (opened read-only)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.image import Image
    from qcow2harness.info import describe, render

    with Image.open(args.image) as image:
        info = describe(image)
    if args.json:
        emit_json(info)
    else:
        print(render(info))
    return EXIT_OK
