"""libFuzzer program for the `model` target (OSS-Fuzz / ClusterFuzzLite; see README.md here)."""

from qcow2harness.fuzz.libfuzzer_entry import main

if __name__ == "__main__":
    main("model")
