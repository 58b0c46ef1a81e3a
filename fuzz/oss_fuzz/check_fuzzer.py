"""libFuzzer program for the `check` target (OSS-Fuzz / ClusterFuzzLite; see README.md here)."""

from qcow2harness.fuzz.libfuzzer_entry import main

if __name__ == "__main__":
    main("check")
