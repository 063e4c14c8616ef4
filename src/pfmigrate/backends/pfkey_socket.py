"""A thin Linux ``AF_KEY`` socket: send PF_KEY messages, receive them, and match replies.

PF_KEY has no separate reply channel. Linux answers a request by broadcasting the
result with the request's ``sadb_msg_seq`` and ``sadb_msg_pid`` copied in, and reports
a failure with a 16-byte header, ``sadb_msg_errno`` set, to the sender alone. So a
*reply* is a message carrying our pid and the seq of our outstanding request; every
other message (other processes' changes, MIGRATE and ACQUIRE announcements) is a
*broadcast*. Broadcasts that arrive while we wait for a reply are kept, in order, for
``receive()``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import select
import socket
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Self

from pfmigrate.pfkey import DecodeError, Message, MsgType, decode
from pfmigrate.pfkey.constants import AF_KEY, PF_KEY_V2

# Sequence numbers are unique per process, so several sockets in one process never
# mistake each other's replies.
_SEQUENCE = itertools.count(1)
_RECV_SIZE = 0xFFFF * 8  # the largest PF_KEY message


class PfKeyError(OSError):
    """Linux answered a request with ``sadb_msg_errno`` set."""

    def __init__(self, errno: int, request: Message, reply: Message) -> None:
        super().__init__(errno, f"{request.type.label} failed: {os.strerror(errno)}")
        self.request = request
        self.reply = reply


class PfKeySocket:
    """One ``socket(AF_KEY, SOCK_RAW, PF_KEY_V2)``."""

    def __init__(
        self, *, pid: int | None = None, rcvbuf: int | None = None, trace: Callable[[str, bytes], None] | None = None
    ) -> None:
        """``trace``, if given, sees every message sent ("send") and received ("recv") as bytes."""
        self.sock = socket.socket(AF_KEY, socket.SOCK_RAW, PF_KEY_V2)
        self.trace = trace
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.pid = os.getpid() if pid is None else pid
        self.backlog: deque[Message] = deque()
        self._buffer = bytearray(_RECV_SIZE)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def stamp(self, msg: Message) -> Message:
        """``msg`` with a fresh sequence number and this socket's pid."""
        return dataclasses.replace(msg, seq=next(_SEQUENCE), pid=self.pid)

    def send(self, msg: Message | bytes) -> None:
        """Send one message (or raw bytes, to test how Linux treats them) as it is."""
        raw = msg if isinstance(msg, bytes) else msg.encode()
        if self.trace is not None:
            self.trace("send", raw)
        self.sock.send(raw)

    def receive_raw(self, timeout: float | None) -> bytes | None:
        """The next message off the socket as bytes, or ``None`` on timeout."""
        if timeout is not None:
            ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
            if not ready:
                return None
        n = self.sock.recv_into(self._buffer)
        raw = bytes(self._buffer[:n])
        if self.trace is not None:
            self.trace("recv", raw)
        return raw

    def _next(self, timeout: float | None) -> Message | None:
        raw = self.receive_raw(timeout)
        if raw is None:
            return None
        try:
            return decode(raw)
        except DecodeError as exc:
            raise DecodeError(exc.offset, f"{exc.reason} (received {raw.hex()})", errno=exc.errno) from exc

    def receive(self, timeout: float | None = 1.0) -> Message | None:
        """The next broadcast: first those kept while waiting for replies."""
        if self.backlog:
            return self.backlog.popleft()
        return self._next(timeout)

    def wait_for(self, match: Callable[[Message], bool], timeout: float = 2.0) -> Message:
        """The first message ``match`` accepts; others go to the backlog.

        ``TimeoutError`` if none arrives in ``timeout`` seconds.
        """
        for kept in list(self.backlog):
            if match(kept):
                self.backlog.remove(kept)
                return kept
        deadline = time.monotonic() + timeout
        while True:
            msg = self._next(deadline - time.monotonic())
            if msg is None:
                raise TimeoutError(f"no matching PF_KEY message within {timeout} s")
            if match(msg):
                return msg
            self.backlog.append(msg)

    def is_reply(self, msg: Message, request: Message) -> bool:
        """Our pid and the request's seq; the type may differ (X_SPDSETIDX is answered
        as X_SPDADD). A promiscuous socket also gets a copy of its own request, which
        would look like a reply: make requests on a socket that is not promiscuous."""
        return msg.pid == request.pid and msg.seq == request.seq

    def request(self, msg: Message, *, timeout: float = 2.0, check: bool = True) -> Message:
        """Send ``msg`` (stamped with a new seq and our pid) and return Linux's reply.

        With ``check`` a reply with ``sadb_msg_errno`` set raises ``PfKeyError``.
        """
        msg = self.stamp(msg)
        self.send(msg)
        reply = self.wait_for(lambda m: self.is_reply(m, msg), timeout)
        if check and reply.errno:
            raise PfKeyError(reply.errno, msg, reply)
        return reply

    def dump(self, msg: Message, *, timeout: float = 2.0) -> list[Message]:
        """Send a DUMP or X_SPDDUMP and collect its answers.

        Linux numbers the answers 1, 2, ... and gives the last ``seq`` 0; an empty
        table answers ``ENOENT``, which gives an empty list.
        """
        msg = self.stamp(msg)
        self.send(msg)
        out: list[Message] = []
        while True:
            part = self.wait_for(lambda m: m.pid == msg.pid and m.type == msg.type, timeout)
            if part.errno:
                if part.errno == 2 and not out:  # ENOENT: nothing to dump
                    return out
                raise PfKeyError(part.errno, msg, part)
            out.append(part)
            if part.seq == 0:
                return out

    def migrate(self, msg: Message, *, timeout: float = 2.0) -> Message:
        """Send an X_MIGRATE; Linux's success answer is only its broadcast (seq 0, pid 0).

        Returns that broadcast; a failure comes back to us alone and raises ``PfKeyError``.
        """
        msg = self.stamp(msg)
        self.send(msg)

        def answer(m: Message) -> bool:
            return m.type == MsgType.X_MIGRATE and (m.pid == 0 or (m.pid == msg.pid and m.seq == msg.seq))

        reply = self.wait_for(answer, timeout)
        if reply.errno:
            raise PfKeyError(reply.errno, msg, reply)
        return reply
