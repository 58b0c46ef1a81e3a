"""`qcow2-harness info IMAGE [--json] [--zones N|all]`."""

from __future__ import annotations

import argparse

from qcow2harness.commands.output import emit_json
from qcow2harness.exitcodes import EXIT_OK

NAME = "info"
HELP = "show every header field, extension, feature bit and zone"


def _zone_limit(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from qcow2harness.info import ZONES_LISTED_JSON, ZONES_LISTED_TEXT

    parser.add_argument("image", help="qcow2 image (opened read-only)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--zones", type=_zone_limit, metavar="N|all", default=None,
                        help=f"list the first N zones (default {ZONES_LISTED_TEXT}, "
                        f"{ZONES_LISTED_JSON} with --json) or all of them, streamed; every "
                        "zone is counted by state whatever the table's length")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.image import Image
    from qcow2harness.info import (
        ZONES_LISTED_JSON,
        ZONES_LISTED_TEXT,
        describe,
        render_lines,
        zone_rows,
    )

    limit = args.zones
    if limit is None:
        limit = ZONES_LISTED_JSON if args.json else ZONES_LISTED_TEXT
    with Image.open(args.image) as image:
        info = describe(image, 0 if limit == "all" else limit)
        if limit == "all" and info["zoned"] is not None:
            info["zoned"]["zones"] = zone_rows(image)
            info["zoned"]["zones_listed"] = info["zoned"]["nr_zones"]
        # Inside the block: a streamed zone list reads the image while it is written.
        if args.json:
            emit_json(info)
        else:
            for line in render_lines(info):
                print(line)
    return EXIT_OK
