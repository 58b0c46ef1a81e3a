"""JUnit XML: the one writer behind every `--junit FILE` (check, crash, fuzz, iotests).

    suite = Suite("check image.qcow2")
    suite.cases.append(Case("HDR-4", "check.HDR", failure=Failure("...", "must", "...")))
    write_junit("junit.xml", [suite])

The file is `<testsuites>` holding one `<testsuite>` per suite, each with its
tests/failures/errors/skipped counts. A case has at most one failure, error or
skipped element, which is what every CI reader (Jenkins, GitLab, junitparser)
agrees on. Text is made XML-safe here: messages may quote arbitrary image bytes,
and XML 1.0 cannot hold most control characters even as character references, so
each becomes a visible `\\xNN` escape. Long texts are cut (MAX_TEXT) to keep the file
bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

# Characters XML 1.0 forbids (everything below 0x20 but tab, LF, CR; surrogates;
# U+FFFE/U+FFFF).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
MAX_TEXT = 64 * 1024  # characters of one failure/system-out text
MAX_MESSAGE = 1024  # characters of a message attribute


def xml_safe(text: str, limit: int = MAX_TEXT) -> str:
    """`text` with XML-illegal characters escaped as \\xNN and cut to `limit` characters."""
    safe = _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                        else f"\\u{ord(m.group()):04x}", text)
    if len(safe) > limit:
        cut = len(safe) - limit
        safe = safe[:limit] + f"\n... ({cut} more characters cut)"
    return safe


@dataclass
class Failure:
    message: str
    type: str
    text: str = ""


@dataclass
class Case:
    name: str
    classname: str
    seconds: float = 0.0
    failure: Failure | None = None
    error: Failure | None = None
    skipped: str | None = None  # the reason
    system_out: str = ""

    @property
    def outcome(self) -> str:
        if self.failure is not None:
            return "failure"
        if self.error is not None:
            return "error"
        return "skipped" if self.skipped is not None else "passed"


@dataclass
class Suite:
    name: str
    cases: list[Case] = field(default_factory=list)
    seconds: float | None = None  # default: the sum of the cases' times
    properties: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(case.outcome == outcome for case in self.cases)


def _result(case_element: ET.Element, tag: str, result: Failure) -> None:
    element = ET.SubElement(case_element, tag, message=xml_safe(result.message, MAX_MESSAGE),
                            type=xml_safe(result.type, MAX_MESSAGE))
    if result.text:
        element.text = xml_safe(result.text)


def suite_element(suite: Suite) -> ET.Element:
    """One `<testsuite>` element with its cases."""
    seconds = suite.seconds if suite.seconds is not None else sum(
        c.seconds for c in suite.cases)
    suite_element = ET.Element(
        "testsuite", name=xml_safe(suite.name, MAX_MESSAGE),
        tests=str(len(suite.cases)), failures=str(suite.count("failure")),
        errors=str(suite.count("error")), skipped=str(suite.count("skipped")),
        time=f"{seconds:.3f}")
    if suite.properties:
        properties = ET.SubElement(suite_element, "properties")
        for key, value in suite.properties.items():
            ET.SubElement(properties, "property", name=xml_safe(key, MAX_MESSAGE),
                          value=xml_safe(value, MAX_MESSAGE))
    for case in suite.cases:
        case_element = ET.SubElement(
            suite_element, "testcase", name=xml_safe(case.name, MAX_MESSAGE),
            classname=xml_safe(case.classname, MAX_MESSAGE), time=f"{case.seconds:.3f}")
        if case.failure is not None:
            _result(case_element, "failure", case.failure)
        elif case.error is not None:
            _result(case_element, "error", case.error)
        elif case.skipped is not None:
            ET.SubElement(case_element, "skipped",
                          message=xml_safe(case.skipped, MAX_MESSAGE))
        if case.system_out:
            ET.SubElement(case_element, "system-out").text = xml_safe(case.system_out)
    return suite_element


def _totals(suites: Sequence[Suite]) -> dict[str, str]:
    return {"tests": str(sum(len(s.cases) for s in suites)),
            **{f"{outcome}s" if outcome != "skipped" else outcome:
               str(sum(s.count(outcome) for s in suites))
               for outcome in ("failure", "error", "skipped")}}


def junit_tree(suites: Sequence[Suite]) -> ET.ElementTree:
    root = ET.Element("testsuites", _totals(suites))
    root.extend(suite_element(suite) for suite in suites)
    ET.indent(root)
    return ET.ElementTree(root)


class JUnitWriter:
    """Writes suites one at a time, for a run of any length in bounded memory: each
    suite goes to a spool file as it comes, and close() writes `<testsuites>` with the
    totals around them, atomically, as write_junit does."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")
        self._counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

    def add(self, suite: Suite) -> None:
        for key, value in _totals([suite]).items():
            self._counts[key] += int(value)
        element = suite_element(suite)
        ET.indent(element, level=1)
        self._spool.write("  " + ET.tostring(element, encoding="unicode").rstrip() + "\n")

    def close(self) -> None:
        tmp = f"{self.path}.tmp"
        root = ET.tostring(ET.Element("testsuites", {k: str(v) for k, v in
                                                    self._counts.items()}),
                           encoding="unicode")
        with open(tmp, "w", encoding="utf-8") as out:
            out.write("<?xml version='1.0' encoding='utf-8'?>\n")
            out.write(root.replace(" />", ">") + "\n")
            self._spool.seek(0)
            shutil.copyfileobj(self._spool, out)
            out.write("</testsuites>\n")
        self._spool.close()
        os.replace(tmp, self.path)


def write_junit(path: str | os.PathLike[str], suites: Sequence[Suite]) -> None:
    """Write the suites to `path` (UTF-8, with an XML declaration), atomically."""
    tmp = f"{os.fspath(path)}.tmp"
    junit_tree(suites).write(tmp, encoding="utf-8", xml_declaration=True)
    os.replace(tmp, path)


__all__ = ["Case", "Failure", "JUnitWriter", "Suite", "junit_tree", "suite_element",
           "write_junit", "xml_safe"]
