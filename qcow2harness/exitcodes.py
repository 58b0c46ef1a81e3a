"""Exit codes shared by every subcommand (documented in the README and `--help`)."""

EXIT_OK = 0  # success; for `check`: conformant
EXIT_CANNOT_RUN = 1  # usage error, I/O error, internal error
EXIT_INVALID = 2  # malformed input, MUST violation, violations found by a campaign
EXIT_SHOULD_ONLY = 3  # `check`: conformant except SHOULD-level findings
