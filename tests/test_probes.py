"""What the probes say for each answer a kernel may give to their empty MIGRATE, with
the kernel stood in for by a socket pair holding the canned answer."""

from __future__ import annotations

import errno
import select
import socket
from collections.abc import Iterator

import pytest

from pfmigrate.backends import linux
from pfmigrate.engine import Capabilities
from pfmigrate.pfkey import Message, MsgType, SAType
from pfmigrate.xfrm import MsgType as XfrmMsgType
from pfmigrate.xfrm import NetlinkError


class Kernel:
    """Stands in for the kernel: each probe socket it makes holds the next canned answer."""

    def __init__(self) -> None:
        self.answers: list[bytes] = []
        self.far_ends: list[socket.socket] = []

    def socket(self, *_: object) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.far_ends.append(theirs)
        if self.answers:
            theirs.send(self.answers.pop(0))
        return ours


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Kernel]:
    stand_in = Kernel()
    monkeypatch.setattr(linux, "xfrm_socket", stand_in.socket)
    monkeypatch.setattr(linux, "pfkey_socket", stand_in.socket)
    yield stand_in
    for far in stand_in.far_ends:
        far.close()


def xfrm_answer(code: int) -> bytes:
    return NetlinkError(seq=1, error=-code, request_type=XfrmMsgType.MIGRATE, request_seq=1, request_length=16).encode()


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EINVAL, Capabilities("linux-xfrm", True, True)),
        (errno.ENOPROTOOPT,
         Capabilities("linux-xfrm", True, False, ("MIGRATE is not built in (CONFIG_XFRM_MIGRATE)",))),
        (errno.EPERM, Capabilities("linux-xfrm", True, False, ("changing XFRM state needs CAP_NET_ADMIN",))),
    ],
)  # fmt: skip
def test_the_xfrm_probe_reads_the_kernels_answer(kernel: Kernel, code: int, expected: Capabilities) -> None:
    kernel.answers.append(xfrm_answer(code))
    assert linux.probe_xfrm() == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (errno.EINVAL, Capabilities("linux-pfkey", True, True)),
        (errno.ENOPROTOOPT,
         Capabilities("linux-pfkey", True, False, ("MIGRATE is not built in (CONFIG_NET_KEY_MIGRATE)",))),
    ],
)  # fmt: skip
def test_the_pfkey_probe_reads_the_kernels_answer(kernel: Kernel, code: int, expected: Capabilities) -> None:
    kernel.answers.append(Message(MsgType.X_MIGRATE, SAType.UNSPEC, 1, 0, code).encode())
    assert linux.probe_pfkey() == expected


def test_a_kernel_that_does_not_answer_is_said_to(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "select", lambda r, w, x, timeout: ([], [], []))  # (no 2 s wait)
    assert linux.probe_xfrm().notes == ("no answer to a MIGRATE probe",)
    assert linux.probe_pfkey().notes == ("no answer to a MIGRATE probe",)


def test_a_kernel_without_the_socket_family_is_said_to(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*_: object) -> socket.socket:
        raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")

    monkeypatch.setattr(linux, "xfrm_socket", missing)
    found = linux.probe_xfrm()
    assert not found.available
    assert found.notes[0].startswith("no NETLINK_XFRM in this kernel (module xfrm_user)")


def test_a_process_without_the_privilege_is_told_so_not_that_the_kernel_lacks_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refused(*_: object) -> socket.socket:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(linux, "pfkey_socket", refused)
    assert linux.probe_pfkey().notes == ("linux-pfkey needs CAP_NET_ADMIN: Operation not permitted (errno 1)",)
