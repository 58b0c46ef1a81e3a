"""The executable model of zoned qcow2 (imported as qcow2harness.reference).

- zones: the zone state machine (ZoneConfig, ZoneModel, Refusal names, policies);
- persistence: what is durable, and what a crash may leave (PersistenceModel, crash_at);
- trace: the `qcow2-harness model` JSON-lines protocol (Session, run);
- writer: a pure-Python qcow2 writer with named mutants (ReferenceWriter, Mutant).
"""
