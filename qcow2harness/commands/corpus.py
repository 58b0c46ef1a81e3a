"""`qcow2-harness corpus build DIR`: the seed corpus."""

from __future__ import annotations

import argparse

from qcow2harness.exitcodes import EXIT_OK

NAME = "corpus"
HELP = "build the seed corpus (real qemu-img feature matrix + reference writer zoned images)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["build"])
    parser.add_argument("dir", help="output directory")
    parser.add_argument("--only", action="append", help="build only images whose name has this")
    parser.add_argument("--seeds", action="store_true",
                        help="the small fuzzing seed corpus instead: DIR/seeds (QEMU + zoned, "
                             "kilobytes each), DIR/broken (one per clause, labelled), "
                             "DIR/manifest.json; `corpus build corpus --seeds` remakes corpus/")
    parser.add_argument("--no-broken", action="store_true",
                        help="with --seeds: skip the labelled non-conformant images")


def run(args: argparse.Namespace) -> int:
    from qcow2harness.corpus import build_corpus, skipped_recipes
    from qcow2harness.progress import Progress

    progress = Progress.for_cli("corpus")
    if args.seeds:
        from qcow2harness.fuzz.seeds import build_seed_corpus

        with progress:
            seeds = build_seed_corpus(args.dir, broken=not args.no_broken,
                                      progress=lambda built: progress.count(
                                          built, None, "images built"))
        for entry in seeds["images"]:
            label = f"breaks {entry['breaks']}" if "breaks" in entry else "conformant"
            print(f"{entry['file']:<58} {entry['size']:>7} bytes  {label}")
        total = sum(entry["size"] for entry in seeds["images"])
        print(f"{len(seeds['images'])} images, {total} bytes, in {args.dir}; clauses without "
              f"a broken image: {len(seeds['clauses_without_broken_image'])} (see manifest)")
        return EXIT_OK

    with progress:
        manifest = build_corpus(args.dir, only=args.only, progress=lambda built, total:
                                progress.count(built, total, "images built"))
    for entry in manifest:
        print(f"{entry['name']:<40} {entry['size']:>9} bytes  {entry['description']}")
    for name, reason in skipped_recipes(args.dir).items():
        print(f"{name:<40} not built: {reason}")
    makers = sorted({entry["made_by"] for entry in manifest})
    print(f"{len(manifest)} images in {args.dir}, made by: {'; '.join(makers)}")
    return EXIT_OK
