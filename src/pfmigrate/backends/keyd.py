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
import pwd
import socket
import time
from pathlib import Path

from pfmigrate.backends.linux import RECV_SIZE, SocketTransport
from pfmigrate.backends.pfkey_ops import PfKeyOperations
from pfmigrate.engine import Capabilities, EventsLostError, KeyEngine
from pfmigrate.pfkey import DecodeError, Message, MsgType, SAType
from pfmigrate.pfkey.generation import generation_of

DEFAULT_SOCKET = Path("/run/pfmigrate/keyd.sock")
LOST_NOTICE = bytes([2, 0, _errno.ENOBUFS, 0, 2, 0, 0, 0]) + bytes(8)
# The longest path a Unix socket's address takes: Linux's sun_path is 108 bytes, and
# Python keeps one for the terminating NUL (a longer path fails without an errno).
SUN_PATH_MAX = 107
# REGISTERs a member of keyd's read group may send a second (``keyd.service``'s bound,
# which cannot be imported here: the service imports this module).
READER_REGISTERS_PER_SECOND = 50


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


def path_too_long(path: Path) -> str | None:
    """Why ``path`` cannot be a Unix socket's address, or ``None`` if it can."""
    size = len(os.fsencode(path))
    if size <= SUN_PATH_MAX:
        return None
    return (
        f"the path is {size} bytes long, and a Unix socket's address (sun_path) holds at most {SUN_PATH_MAX}: "
        "give a shorter path"
    )


def connect(path: str | Path | None = None) -> socket.socket:
    where = socket_path(path)
    too_long = path_too_long(where)
    if too_long is not None:
        raise KeydUnreachable(_errno.ENAMETOOLONG, f"cannot reach keyd at {where}: {too_long}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        sock.connect(str(where))
    except OSError as exc:
        sock.close()
        raise KeydUnreachable(exc.errno or _errno.EIO, _why_unreachable(where, exc)) from exc
    return sock


class KeydError(OSError):
    """keyd cannot be used; the message says why, without Python's "[Errno n]"."""

    def __str__(self) -> str:
        return str(self.strerror)


class KeydUnreachable(KeydError):
    """No keyd answers at the socket path; the message says what is there instead."""


class KeydRefused(KeydError):
    """keyd answers, but not to this client (its uid and groups give no privilege)."""


def _why_unreachable(where: Path, exc: OSError) -> str:
    if exc.errno == _errno.ENOENT:
        return f"cannot reach keyd at {where}: there is no socket there (is keyd running?)"
    if where.exists() and not where.is_socket():
        return f"cannot reach keyd at {where}: that is not a socket"
    if exc.errno == _errno.ECONNREFUSED:
        return f"cannot reach keyd at {where}: nobody listens on that socket (keyd stopped?)"
    return f"cannot reach keyd at {where}: {os.strerror(exc.errno or 0)}"


def semantics_of(path: str | Path | None = None, *, timeout: float = 5.0) -> str:
    """Which semantics the keyd at ``path`` keeps: ``"pfmigrate"`` or ``"linux"``.

    Asked with a REGISTER for no SA type, which changes nothing and is answered as a
    broadcast to the registered clients: keyd's own semantics number every such
    broadcast (an X_KMPRIVATE generation), Linux's never do. The registered clients
    hear one more REGISTER answer, as whenever a key manager registers."""
    deadline = time.monotonic() + timeout
    sock = connect(path)
    code = 0
    try:
        while True:
            try:
                code, numbered = _ask_register(sock, deadline, path)
            except TimeoutError:
                if code == _errno.EAGAIN:  # refused until the time ran out
                    raise register_refused(path, code) from None
                raise
            if code != _errno.EAGAIN:  # (EAGAIN: a reader over its REGISTERs for this second)
                break
            time.sleep(0.05)
    finally:
        sock.close()
    if code:
        raise register_refused(path, code)
    return "pfmigrate" if numbered else "linux"


def register_refused(path: str | Path | None, code: int) -> KeydRefused:
    """keyd's refusal of a REGISTER, with the right that is missing. keyd tells a client
    only the errno, not its groups' names: they are those of its ``--admin-group`` and
    ``--read-group``."""
    said = f"keyd at {socket_path(path)} refused a REGISTER: {os.strerror(code)}"
    if code == _errno.EPERM:
        said += (
            f": {_user()} is in neither keyd's admin group nor its read group (its --admin-group and "
            "--read-group), and is not root or keyd's own user; a member of either may REGISTER"
        )
    elif code == _errno.EAGAIN:
        said += (
            f": {_user()} has only keyd's read group, whose members may REGISTER at most "
            f"{READER_REGISTERS_PER_SECOND} times a second, and its processes went over that "
            "(keyd's admin group has no such bound)"
        )
    return KeydRefused(code, said)


def _user() -> str:
    uid = os.getuid()
    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _ask_register(sock: socket.socket, deadline: float, path: str | Path | None) -> tuple[int, bool]:
    """(errno, numbered) of keyd's answer to a REGISTER for no SA type."""
    seq = int.from_bytes(os.urandom(4), "little")
    sock.send(Message(MsgType.REGISTER, SAType.UNSPEC, seq, os.getpid()).encode())
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            raw = sock.recv(RECV_SIZE)
        except TimeoutError:
            break
        if not raw:
            raise ConnectionResetError(_errno.ECONNRESET, "keyd closed the connection")
        try:
            answer = Message.decode(raw)
        except DecodeError:
            continue  # not ours: a broadcast this client need not understand
        if answer.type == MsgType.REGISTER and answer.seq == seq and answer.pid == os.getpid():
            return answer.errno, generation_of(answer) is not None
    raise TimeoutError(_errno.ETIMEDOUT, f"keyd at {socket_path(path)} did not answer a REGISTER in time")


def _capabilities(where: Path, semantics: str) -> Capabilities:
    notes = (f"socket {where}", f"{semantics} semantics")
    return Capabilities("keyd", True, migrate=True, notes=notes, migrate_by_reqid=semantics == "pfmigrate")


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
    capabilities = _capabilities(where, semantics_of(where, timeout=timeout))
    return KeyEngine(
        PfKeyOperations(os.getpid(), name="keyd"),
        KeydTransport(connect(where)),
        open_events=lambda: _events(where, event_buffer),
        capabilities=capabilities,
        timeout=timeout,
    )


def probe_keyd(path: str | Path | None = None) -> Capabilities:
    """keyd is there if its socket takes a connection (its semantics are asked when it
    is opened: asking costs a REGISTER that every key manager hears)."""
    where = socket_path(path)
    try:
        connect(where).close()
    except OSError as exc:
        return Capabilities("keyd", False, notes=(str(exc),))
    return Capabilities("keyd", True, migrate=True, notes=(f"socket {where}",))
