"""`qcow2-harness demo`: what `make demo` runs."""

from __future__ import annotations

import argparse

from qcow2harness.exitcodes import EXIT_OK

NAME = "demo"
HELP = "the main job on built-in defaults (make demo)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", default="data/demo", help="where to put the images")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.demo import run_demo

    for title, text in run_demo(args.dir):
        print(f"\n=== {title} ===")
        print(text)
    print(f"\ndemo: images are in {args.dir}")
    return EXIT_OK
