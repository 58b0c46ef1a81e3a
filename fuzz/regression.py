"""A ready-to-commit pytest module per finding (tests/fuzz/regressions/).

The minimized input is embedded (zlib + base64), so the test is one self-contained file
that fails until the bug is fixed and guards against it afterwards:

    test_check_crash_1a2b3c4d5e6f.py
"""

from __future__ import annotations

import base64
import zlib

from qcow2harness.fuzz.targets import Finding, input_name


def regression_name(finding: Finding, data: bytes) -> str:
    return f"test_{finding.target}_{finding.kind}_{input_name(data)[:12]}"


def regression_test(finding: Finding, data: bytes, *, reader: str | None = None,
                    found_by: str = "", build: str | None = None) -> tuple[str, str]:
    """(file name, module text) of a pytest regression test for `finding`."""
    name = regression_name(finding, data)
    packed = base64.b64encode(zlib.compress(data, 9)).decode("ascii")
    lines = "\n".join(f'    "{packed[i:i + 76]}"' for i in range(0, len(packed), 76))
    summary = finding.summary.replace('"""', "'''").replace("\\", "\\\\")
    where = finding.where.replace('"""', "'''")
    stdlib = ["import base64", "import zlib"]
    third: list[str] = []
    prologue = ""
    get = f"get_target({finding.target!r})"
    if finding.target == "external":
        stdlib = ["import base64", "import shlex", "import shutil", "import zlib"]
        third = ["import pytest"]
        get = f"get_target(\"external\", reader={reader!r})"
        prologue = (f"\nif shutil.which(shlex.split({reader!r})[0]) is None:\n"
                    f"    pytest.skip(\"the reader is not installed\", "
                    f"allow_module_level=True)\n")
    elif finding.target == "differential":
        third = ["import pytest"]
        prologue = "\npytestmark = pytest.mark.qemu\n"
    if build is not None and finding.target in ("differential", "external"):
        # The reader is a build of the zoned series: skipped with the reason without it.
        stdlib = ["import base64", "import zlib"]
        third = ["import pytest", "from qcow2harness import qemu"]
        get = (f"get_target({finding.target!r}, reader={reader!r}, build={build!r})"
               if finding.target == "external" else f"get_target({finding.target!r}, "
               f"build={build!r})")
        prologue = (f"\nREASON = qemu.build_unavailable({build!r})\n"
                    f"pytestmark = [pytest.mark.qemu, pytest.mark.skipif(REASON is not None, "
                    f"reason=f\"not run: {{REASON}}\")]\n")
    # ruff's isort puts pytest and qcow2harness.fuzz in one block in this repo.
    third.append("from qcow2harness.fuzz.targets import execute, get_target")
    imports = "\n".join(stdlib) + "\n\n" + "\n".join(third) + "\n"
    text = f'''"""Regression: `{finding.target}` target, {finding.kind} ({len(data)}-byte input).

{summary}
{f"at {where}" if where else ""}
{f"field: {finding.fields}" if finding.fields else ""}
{found_by}
"""

from __future__ import annotations

{imports}{prologue}
INPUT = zlib.decompress(base64.b64decode(
{lines}
))


def {name}() -> None:
    finding = execute({get}, INPUT)
    assert finding is None, finding.summary if finding else ""
'''
    while "\n\n\n\n" in text:
        text = text.replace("\n\n\n\n", "\n\n\n")
    return name + ".py", text
