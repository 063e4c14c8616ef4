"""The keyd backend: the key-engine interface over ``pfmigrate keyd``'s socket.

keyd serves pfmigrate's engine on a Unix ``SOCK_SEQPACKET`` socket where each packet is
one PF_KEY message, so this backend is the PF_KEY one with another socket. Two things
differ from ``AF_KEY``, both because a stream of packets cannot fail a ``send()``:

* a message Linux would refuse in ``send()`` (bad version, length or type) is answered
  in band, with the errno in the header;
* a client that read too slowly and lost messages gets a notice: a bare header of
  type 0 with errno ``ENOBUFS`` (the transport raises ``EventsLostError``), as a netlink
  socket's ``recv`` fails with ENOBUFS.
"""

from __future__ import annotations

import errno as _errno
import os
import socket
from pathlib import Path

from pfmigrate.backends.linux import RECV_SIZE, SocketTransport
from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.engine import Capabilities, EventsLostError, KeyEngine
from pfmigrate.pfkey import Message, MsgType, SAType

DEFAULT_SOCKET = Path("/run/pfmigrate/keyd.sock")
LOST_NOTICE = bytes([2, 0, _errno.ENOBUFS, 0, 2, 0, 0, 0]) + bytes(8)


def socket_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$PFMIGRATE_KEYD_SOCKET``, else ``/run/pfmigrate/keyd.sock``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("PFMIGRATE_KEYD_SOCKET", DEFAULT_SOCKET))


class KeydTransport(SocketTransport):
    """A ``SocketTransport`` that turns keyd's lost-messages notice into ``EventsLostError``."""

    def recv_ready(self) -> bytes | None:
        return self._checked(super().recv_ready())

    def recv(self, timeout: float | None) -> bytes | None:
        return self._checked(super().recv(timeout))

    @staticmethod
    def _checked(raw: bytes | None) -> bytes | None:
        if raw == LOST_NOTICE:
            raise EventsLostError("keyd dropped messages for this client (its queue was full)")
        if raw == b"":  # a packet socket reads nothing only at its end
            raise ConnectionResetError(_errno.ECONNRESET, "keyd closed the connection")
        return raw

    def drain(self) -> None:
        while True:
            try:
                if not self.sock.recv(RECV_SIZE, socket.MSG_DONTWAIT):
                    raise ConnectionResetError(_errno.ECONNRESET, "keyd closed the connection")
            except (BlockingIOError, InterruptedError):
                return


def connect(path: str | Path | None = None) -> socket.socket:
    where = socket_path(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(where))
    except OSError as exc:
        sock.close()
        raise KeydUnreachable(exc.errno or _errno.EIO, _why_unreachable(where, exc)) from exc
    return sock


class KeydUnreachable(OSError):
    """No keyd answers at the socket path; the message says what is there instead."""

    def __str__(self) -> str:
        return str(self.strerror)


def _why_unreachable(where: Path, exc: OSError) -> str:
    if exc.errno == _errno.ENOENT:
        return f"cannot reach keyd at {where}: there is no socket there (is keyd running?)"
    if where.exists() and not where.is_socket():
        return f"cannot reach keyd at {where}: that is not a socket"
    if exc.errno == _errno.ECONNREFUSED:
        return f"cannot reach keyd at {where}: nobody listens on that socket (keyd stopped?)"
    return f"cannot reach keyd at {where}: {os.strerror(exc.errno or 0)}"


def _events(path: str | Path | None, rcvbuf: int | None) -> KeydTransport:
    sock = connect(path)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    transport = KeydTransport(sock)
    for satype in (SAType.ESP, SAType.AH, SAType.X_IPCOMP):  # registered clients hear ACQUIRE and EXPIRE
        transport.send(Message(MsgType.REGISTER, satype, 1, os.getpid()).encode())
    return transport


def open_keyd(path: str | Path | None = None, *, timeout: float = 5.0, event_buffer: int | None = None) -> KeyEngine:
    """A blocking key engine on the keyd at ``path`` (see ``socket_path``); ``event_buffer``
    sizes the event socket's receive buffer (bytes)."""
    where = socket_path(path)
    return KeyEngine(
        PfKeyOperations(os.getpid(), name="keyd"),
        KeydTransport(connect(where)),
        open_events=lambda: _events(where, event_buffer),
        # (keyd's own semantics unless started with --semantics linux, which a client cannot see)
        capabilities=Capabilities("keyd", True, migrate=True, notes=(f"socket {where}",), migrate_by_reqid=True),
        timeout=timeout,
    )


def probe_keyd(path: str | Path | None = None) -> Capabilities:
    where = socket_path(path)
    try:
        connect(where).close()
    except OSError as exc:
        return Capabilities("keyd", False, notes=(str(exc),))
    return Capabilities("keyd", True, migrate=True, notes=(f"socket {where}",))
