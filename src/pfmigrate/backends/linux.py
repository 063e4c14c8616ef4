"""The Linux backends' I/O: AF_KEY and NETLINK_XFRM sockets, blocking and asyncio, and
probes that say what this kernel supports.

Requests go on one socket; events on another (PF_KEY: a socket registered for ESP, AH
and IPComp, so it is sent ACQUIRE and EXPIRE; XFRM: a socket in the ACQUIRE, EXPIRE and
MIGRATE groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno as _errno
import functools
import os
import select
import socket
from collections.abc import Iterable

from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.backends.xfrm_ops import XfrmOperations
from pfmigrate.engine import AsyncKeyEngine, Capabilities, EventsLostError, KeyEngine
from pfmigrate.pfkey import Message, MsgType, SAType, decode
from pfmigrate.pfkey.constants import AF_KEY, PF_KEY_V2
from pfmigrate.xfrm import Group, NlFlags, UserpolicyId, XfrmMessage
from pfmigrate.xfrm import MsgType as XfrmMsgType
from pfmigrate.xfrm import NetlinkError as XfrmError
from pfmigrate.xfrm import decode as xfrm_decode
from pfmigrate.xfrm.constants import NETLINK_XFRM

SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
RECV_SIZE = 1 << 16
_DONTWAIT = int(socket.MSG_DONTWAIT)  # a plain int: the flag enum converts through __index__ on every call
EVENT_GROUPS = (Group.ACQUIRE, Group.EXPIRE, Group.MIGRATE)


class SocketTransport:
    """Blocking send/receive of whole datagrams on one socket.

    ``unsolicited`` says whether messages nobody asked for arrive here (every PF_KEY
    socket hears every broadcast); only then is the socket drained before a request.
    """

    def __init__(self, sock: socket.socket, *, unsolicited: bool = True) -> None:
        self.sock = sock
        self.unsolicited = unsolicited

    def send(self, data: bytes) -> None:
        self.sock.send(data)

    def recv_ready(self) -> bytes | None:
        try:
            return self.sock.recv(RECV_SIZE, _DONTWAIT)
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == _errno.ENOBUFS:
                raise EventsLostError("the kernel dropped messages for this socket (ENOBUFS)") from exc
            raise

    def recv(self, timeout: float | None) -> bytes | None:
        try:
            if timeout is not None:
                ready, _, _ = select.select([self.sock], [], [], timeout)
                if not ready:
                    return None
            return self.sock.recv(RECV_SIZE)
        except OSError as exc:
            if exc.errno == _errno.ENOBUFS:
                raise EventsLostError("the kernel dropped messages for this socket (ENOBUFS)") from exc
            raise

    def drain(self) -> None:
        if not self.unsolicited:
            return
        while True:
            try:
                self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno != _errno.ENOBUFS:  # an overrun only means stale messages were lost
                    raise

    def close(self) -> None:
        self.sock.close()


class AsyncSocketTransport:
    """The same over asyncio: the socket is non-blocking and awaited."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def recv(self) -> bytes:
        return await asyncio.get_running_loop().sock_recv(self.sock, RECV_SIZE)

    def drain(self) -> None:
        SocketTransport(self.sock).drain()

    def close(self) -> None:
        self.sock.close()


class AsyncEventSocket:
    """An event socket for asyncio: datagrams awaited, ENOBUFS told as ``EventsLostError``.

    ``recv`` waits for the socket to be readable and only then reads, in one step: a
    wait cancelled by a timeout has taken nothing, so no event is lost to it. Closing
    wakes a waiting ``recv`` with EBADF."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._waiting: asyncio.Future[None] | None = None

    async def recv(self) -> bytes:
        while True:
            raw = self.recv_ready()
            if raw is not None:
                return raw
            await self._readable()

    async def _readable(self) -> None:
        if self.sock.fileno() < 0:
            raise OSError(_errno.EBADF, "the event socket is closed")
        loop = asyncio.get_running_loop()
        waiting = self._waiting = loop.create_future()

        def ready() -> None:
            if not waiting.done():
                waiting.set_result(None)

        fd = self.sock.fileno()
        loop.add_reader(fd, ready)
        try:
            await waiting
        finally:
            loop.remove_reader(fd)
            self._waiting = None

    def recv_ready(self) -> bytes | None:
        return SocketTransport(self.sock).recv_ready()

    def close(self) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.get_loop().remove_reader(self.sock.fileno())
            waiting.set_exception(OSError(_errno.EBADF, "the event socket was closed"))
        self.sock.close()


# --- sockets --------------------------------------------------------------------------------------


def pfkey_socket() -> socket.socket:
    return socket.socket(AF_KEY, socket.SOCK_RAW, PF_KEY_V2)


def xfrm_socket(groups: Iterable[int] = ()) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
    try:
        sock.bind((0, 0))
        with contextlib.suppress(OSError):  # older kernels: errors without the reason, with the request
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)  # the kernel's reason text with errors
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)  # ACKs without a copy of the request
        for group in groups:  # (EPERM without CAP_NET_ADMIN)
            sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, int(group))
    except BaseException:
        sock.close()
        raise
    return sock


def _sized(sock: socket.socket, rcvbuf: int | None) -> socket.socket:
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    return sock


def _pfkey_events(rcvbuf: int | None) -> SocketTransport:
    sock = _sized(pfkey_socket(), rcvbuf)
    for satype in (SAType.ESP, SAType.AH, SAType.X_IPCOMP):  # registered sockets hear ACQUIRE and EXPIRE
        sock.send(Message(MsgType.REGISTER, satype, 1, os.getpid()).encode())
    return SocketTransport(sock)


def open_pfkey(*, timeout: float = 5.0, event_buffer: int | None = None) -> KeyEngine:
    """The blocking engine over Linux ``af_key``; ``event_buffer`` sizes the event
    socket's receive buffer (bytes)."""
    ops = PfKeyOperations(os.getpid())
    events = functools.partial(_pfkey_events, event_buffer)
    return KeyEngine(ops, SocketTransport(pfkey_socket()), open_events=events, timeout=timeout)


def open_xfrm(*, timeout: float = 5.0, event_buffer: int | None = None) -> KeyEngine:
    """The blocking engine over Linux ``xfrm_user``; ``event_buffer`` as for ``open_pfkey``."""

    def events() -> SocketTransport:
        return SocketTransport(_sized(xfrm_socket(EVENT_GROUPS), event_buffer))

    transport = SocketTransport(xfrm_socket(), unsolicited=False)  # in no group: only answers arrive
    return KeyEngine(XfrmOperations(), transport, open_events=events, timeout=timeout)


def open_pfkey_async(*, timeout: float = 5.0, event_buffer: int | None = None) -> AsyncKeyEngine:
    """``open_pfkey`` for asyncio."""
    return AsyncKeyEngine(
        PfKeyOperations(os.getpid()),
        AsyncSocketTransport(pfkey_socket()),
        open_events=lambda: AsyncEventSocket(_pfkey_events(event_buffer).sock),
        timeout=timeout,
    )


def open_xfrm_async(*, timeout: float = 5.0, event_buffer: int | None = None) -> AsyncKeyEngine:
    """``open_xfrm`` for asyncio."""
    return AsyncKeyEngine(
        XfrmOperations(),
        AsyncSocketTransport(xfrm_socket()),
        open_events=lambda: AsyncEventSocket(_sized(xfrm_socket(EVENT_GROUPS), event_buffer)),
        timeout=timeout,
    )


# --- probes --------------------------------------------------------------------------------------


def _unavailable(name: str, exc: OSError, what: str) -> Capabilities:
    if exc.errno in (_errno.EPERM, _errno.EACCES):  # the kernel has it; this process may not use it
        what = f"{name} needs CAP_NET_ADMIN"
    return Capabilities(name, False, notes=(f"{what}: {os.strerror(exc.errno or 0)} (errno {exc.errno})",))


def probe_pfkey() -> Capabilities:
    """Whether AF_KEY exists here and whether its MIGRATE does.

    An empty X_MIGRATE is refused with EINVAL where MIGRATE is built in, ENOPROTOOPT
    where ``CONFIG_NET_KEY_MIGRATE`` is off.
    """
    try:
        sock = pfkey_socket()
    except OSError as exc:
        return _unavailable("linux-pfkey", exc, "no AF_KEY sockets in this kernel (module af_key)")
    with sock:
        probe = Message(MsgType.X_MIGRATE, SAType.UNSPEC, 1, os.getpid())
        sock.send(probe.encode())
        ready, _, _ = select.select([sock], [], [], 2.0)
        answer = decode(sock.recv(RECV_SIZE)) if ready else None
    if answer is None:
        return Capabilities("linux-pfkey", True, False, ("no answer to a MIGRATE probe",))
    if answer.errno == _errno.ENOPROTOOPT:
        return Capabilities("linux-pfkey", True, False, ("MIGRATE is not built in (CONFIG_NET_KEY_MIGRATE)",))
    return Capabilities("linux-pfkey", True, answer.errno == _errno.EINVAL)


def probe_xfrm() -> Capabilities:
    """Whether NETLINK_XFRM exists here and whether its MIGRATE does (as libreswan asks:
    an empty MIGRATE is EINVAL where built in, ENOPROTOOPT where ``CONFIG_XFRM_MIGRATE``
    is off)."""
    try:
        sock = xfrm_socket()
    except OSError as exc:
        return _unavailable("linux-xfrm", exc, "no NETLINK_XFRM in this kernel (module xfrm_user)")
    with sock:
        probe = XfrmMessage(XfrmMsgType.MIGRATE, NlFlags.REQUEST | NlFlags.ACK, 1, 0, UserpolicyId())
        try:
            sock.send(probe.encode())
        except OSError as exc:
            return _unavailable("linux-xfrm", exc, "cannot send to NETLINK_XFRM")
        ready, _, _ = select.select([sock], [], [], 2.0)
        answers = xfrm_decode(sock.recv(RECV_SIZE)) if ready else []
    error = next((a for a in answers if isinstance(a, XfrmError)), None)
    if error is None:
        return Capabilities("linux-xfrm", True, False, ("no answer to a MIGRATE probe",))
    if error.errno == _errno.EPERM:
        return Capabilities("linux-xfrm", True, False, ("changing XFRM state needs CAP_NET_ADMIN",))
    if error.errno == _errno.ENOPROTOOPT:
        return Capabilities("linux-xfrm", True, False, ("MIGRATE is not built in (CONFIG_XFRM_MIGRATE)",))
    return Capabilities("linux-xfrm", True, error.errno == _errno.EINVAL)
