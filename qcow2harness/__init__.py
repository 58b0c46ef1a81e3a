"""qcow2-harness: format verification and fuzzing harness for qcow2 and zoned qcow2.

Layers, bottom up (ARCHITECTURE.md):
  bytes -> qcow2harness.parser (generated from ksy/) -> qcow2harness.image (model with
  lazy tables) -> checks / qcow2harness.reference (meaning) -> report -> qcow2harness.cli.
Nothing below the CLI prints or exits.
"""

__version__ = "0.1.0"
