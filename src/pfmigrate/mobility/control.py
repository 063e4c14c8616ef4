"""The agents' control socket: ``pfmigrate mn status`` and ``pfmigrate ha status`` ask a
running daemon over a Unix socket (``/run/pfmigrate/mn.sock``, ``ha.sock``; mode 0600).

The protocol is JSON lines: a request ``{"command": "status"}``, an answer
``{"ok": true, "status": {...}}`` or ``{"ok": false, "error": "..."}``, one line each,
many on one connection. ``Connection`` is the protocol without I/O (bytes in, bytes
out); ``ControlServer`` is its shell inside the daemon's single-threaded loop: a
non-blocking listening socket, served while the daemon waits for Mobility Headers
(``wait``), so a slow or silent client never holds the agent up.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import selectors
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

MAX_LINE: Final = 4096  # a request is a few dozen bytes; anything longer is a mistake
MAX_CLIENTS: Final = 16
MAX_OUTBOX: Final = 1 << 20  # answers a client does not read: it is cut off past this
COMMANDS: Final = ("status",)


class ControlError(Exception):
    """The control socket cannot be used, or an answer cannot be read; says why."""


@dataclass(frozen=True, slots=True)
class Request:
    command: str


def parse_request(line: bytes) -> Request:
    """The request on one line, or ``ControlError`` saying what is wrong with it."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(f"a request is one JSON object per line: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError(f"a request is a JSON object, not {type(data).__name__}")
    command = data.get("command")
    if command not in COMMANDS:
        raise ControlError(f"command: expected one of {', '.join(COMMANDS)}, found {command!r}")
    unknown = sorted(set(data) - {"command"})
    if unknown:
        raise ControlError(f"unknown key {unknown[0]!r}: a request has only a command")
    return Request(command)


def encode(answer: dict[str, Any]) -> bytes:
    return json.dumps(answer, separators=(",", ":")).encode() + b"\n"


def parse_answer(line: bytes) -> dict[str, Any]:
    """What an answer holds, or ``ControlError`` (with the daemon's own words for a refusal)."""
    try:
        data = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ControlError(f"the daemon's answer is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise ControlError("the daemon's answer is not an object with ok")
    if not data["ok"]:
        raise ControlError(f"the daemon refused: {data.get('error')}")
    return data


class Connection:
    """One client, without I/O: ``receive(data)`` gives the bytes to send back; after a
    line longer than ``MAX_LINE`` the connection is ``closed`` (its rest cannot be framed)."""

    def __init__(self, answer: Callable[[Request], dict[str, Any]]) -> None:
        self.answer = answer
        self.buffer = b""
        self.closed = False

    def receive(self, data: bytes) -> bytes:
        if self.closed:
            return b""
        self.buffer += data
        out = b""
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            out += self._one(line)
        if len(self.buffer) > MAX_LINE:
            self.buffer, self.closed = b"", True
            out += encode({"ok": False, "error": f"a request is at most {MAX_LINE} bytes"})
        return out

    def _one(self, line: bytes) -> bytes:
        if len(line) > MAX_LINE:
            self.closed = True
            return encode({"ok": False, "error": f"a request is at most {MAX_LINE} bytes"})
        if not line.strip():
            return b""
        try:
            request = parse_request(line)
        except ControlError as exc:
            return encode({"ok": False, "error": str(exc)})
        try:
            answer = self.answer(request)
        except Exception as exc:  # (a bug: the daemon logs it; the client hears of it, and the daemon goes on)
            return encode({"ok": False, "error": f"the daemon could not answer: {type(exc).__name__}: {exc}"})
        return encode({"ok": True, **answer})


class Waitable(Protocol):
    def fileno(self) -> int: ...


class _Client:
    __slots__ = ("conn", "outbox", "sock")

    def __init__(self, sock: socket.socket, conn: Connection) -> None:
        self.sock, self.conn, self.outbox = sock, conn, b""


class ControlServer:
    """The listening socket and its clients, served by ``wait``. The socket file is made
    with ``mode`` (0600: root's alone; 0660 lets the group ask) and removed by ``close``;
    one a stopped daemon left is replaced, one a running daemon answers on is not."""

    def __init__(self, path: Path, answer: Callable[[Request], dict[str, Any]], *, mode: int = 0o600) -> None:
        self.path = path
        self.answer = answer
        self.selector = selectors.DefaultSelector()
        self.clients: dict[int, _Client] = {}
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        _clear(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o777 & ~mode)  # (the file is born with its mode: no window for others)
            try:
                self.sock.bind(os.fspath(path))
            finally:
                os.umask(old)
            self.sock.listen(MAX_CLIENTS)
            self.sock.setblocking(False)
        except OSError as exc:
            self.sock.close()
            raise ControlError(f"cannot listen on {path}: {exc.strerror or exc}") from exc
        self.selector.register(self.sock, selectors.EVENT_READ)

    def wait(self, other: Waitable | None, timeout: float) -> bool:
        """Serve clients for up to ``timeout`` seconds, or until ``other`` is readable
        (then ``True``)."""
        if other is not None:
            self.selector.register(other, selectors.EVENT_READ)
        try:
            deadline = time.monotonic() + timeout
            while True:
                for key, events in self.selector.select(max(0.0, deadline - time.monotonic())):
                    if other is not None and key.fileobj is other:
                        return True
                    self._event(key.fileobj, events)
                if time.monotonic() >= deadline:
                    return False
        finally:
            if other is not None:
                self.selector.unregister(other)

    def _event(self, sock: Any, events: int) -> None:
        if sock is self.sock:
            self._accept()
            return
        client = self.clients.get(sock.fileno())
        if client is None:
            return
        if events & selectors.EVENT_READ:
            try:
                data = client.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                data = None
            except OSError:
                data = b""
            if data == b"":
                self._drop(client)
                return
            if data:
                client.outbox += client.conn.receive(data)
        self._flush(client)

    def _accept(self) -> None:
        try:
            sock, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        if len(self.clients) >= MAX_CLIENTS:
            sock.close()
            return
        sock.setblocking(False)
        self.clients[sock.fileno()] = _Client(sock, Connection(self.answer))
        self.selector.register(sock, selectors.EVENT_READ)

    def _flush(self, client: _Client) -> None:
        if client.outbox:
            try:
                sent = client.sock.send(client.outbox)
                client.outbox = client.outbox[sent:]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(client)
                return
        if len(client.outbox) > MAX_OUTBOX or (client.conn.closed and not client.outbox):
            self._drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.outbox else 0)
        self.selector.modify(client.sock, events)

    def _drop(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        self.selector.unregister(client.sock)
        client.sock.close()

    def close(self) -> None:
        for client in list(self.clients.values()):
            self._drop(client)
        self.selector.close()
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _clear(path: Path) -> None:
    """Remove a socket a stopped daemon left at ``path``; refuse anything else there."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise ControlError(f"cannot listen on {path}: something that is not a socket is there")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        path.unlink(missing_ok=True)  # no one listens: a daemon that stopped left it
        return
    finally:
        probe.close()
    raise ControlError(f"cannot listen on {path}: another daemon answers there (give each its own control_socket)")


def ask(path: Path, command: str = "status", *, timeout: float = 5.0) -> dict[str, Any]:
    """Ask the daemon listening on ``path``; its answer, or ``ControlError`` saying why not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    with sock:
        try:
            sock.connect(os.fspath(path))
            sock.sendall(encode({"command": command}))
            line = b""
            while not line.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ControlError(f"the daemon on {path} closed the connection without an answer")
                line += chunk
        except FileNotFoundError:
            raise ControlError(f"no daemon answers on {path}: there is no such socket (is it running?)") from None
        except ConnectionRefusedError:
            raise ControlError(f"no daemon answers on {path}: nothing listens there (it stopped)") from None
        except PermissionError:
            raise ControlError(f"may not connect to {path}: permission denied (the socket is root's)") from None
        except TimeoutError:
            raise ControlError(f"the daemon on {path} did not answer within {timeout:g} s") from None
        except OSError as exc:
            if exc.errno == errno.ENOTSOCK:
                raise ControlError(f"{path} is not a socket") from None
            raise ControlError(f"cannot ask the daemon on {path}: {exc.strerror or exc}") from None
    return parse_answer(line)
