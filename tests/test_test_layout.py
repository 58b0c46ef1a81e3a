"""pytest collects test modules by basename (rootdir-relative, no packages): two test
files of one name in different folders break collection of the whole suite."""

from __future__ import annotations

import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def test_every_test_module_has_a_basename_of_its_own() -> None:
    names = collections.Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert not [name for name, count in names.items() if count > 1], names.most_common(3)
