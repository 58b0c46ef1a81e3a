"""A finding of `qcow2-harness fuzz external --reader 'qemu-img info {}'` (60 s run):
qemu-img 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18) `info` dies of SIGSEGV on this 104-byte
image, a v3 header with crypt_method 2 (LUKS) and no full disk encryption header
extension (crypt_method 0 or 1 does not crash). Kept as an xfail: the bug is QEMU's.
Our own check must report it, and not crash."""

from __future__ import annotations

import base64

import pytest
from qcow2harness.fuzz.targets import TARGETS, execute, get_target

INPUT = base64.b64decode(
    "UUZJ+wAAAAMAAAAAAAAAAAAAAAAAAAAJAAAAAAAAAAAAAAACAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB"
    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAHA="
)


def test_our_check_survives_it() -> None:
    assert len(INPUT) == 104
    assert execute(TARGETS["check"], INPUT) is None


@pytest.mark.qemu
@pytest.mark.xfail(reason="qemu-img 7.2 info: SIGSEGV on crypt_method 2 without the "
                          "encryption header extension", strict=False)
def test_qemu_img_info_survives_it(qemu_tools: None) -> None:
    finding = execute(get_target("external", reader="qemu-img info {}"), INPUT)
    assert finding is None, finding.summary if finding else ""
