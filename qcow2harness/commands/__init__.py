"""One module per `qcow2-harness` subcommand (the CLI layer: these may print).

Each module defines NAME, HELP, add_arguments(parser) and run(args) -> exit code.
Add a subcommand by adding its module name to COMMANDS.
"""

COMMANDS = [
    "info",
    "check",
    "map",
    "report",
    "model",
    "corpus",
    "demo",
    "fuzz",
    "iotests",
    "crash",
    "merge",
]
