"""`qcow2-harness map IMAGE [--output json|human]`: the guest-visible allocation map."""

from __future__ import annotations

import argparse

from qcow2harness.exitcodes import EXIT_OK

NAME = "map"
HELP = "the allocation map of an image and its backing chain, as qemu-img map shows it"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", help="qcow2 image (opened read-only, with its backing files)")
    parser.add_argument("--output", choices=("human", "json"), default="human",
                        help="json: the array qemu-img map --output=json prints; human "
                        "(default): the data extents as a table")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.map import HUMAN_HEADER, Chain, human_line, json_lines

    with Chain(args.image) as chain:
        if args.output == "json":
            for line in json_lines(chain.extents()):
                print(line)
        else:
            print(HUMAN_HEADER)
            for extent in chain.extents():
                row = human_line(extent)
                if row is not None:
                    print(row)
    return EXIT_OK
