"""The one reader every decoder uses, and the one error every decoder raises.

A ``Reader`` is a cursor over an immutable byte string with a hard end. ``sub(n)``
hands out a child reader for the next ``n`` bytes and moves the parent past them, so a
length field, once checked, bounds everything decoded inside it: a decoder cannot read
past its own extension or attribute even if it tries. Offsets in errors are absolute
offsets into the original message, which is what a person comparing with a hex dump
needs.
"""

from __future__ import annotations

import errno as _errno
import struct
from typing import Any


class DecodeError(ValueError):
    """Bytes that are not a valid message.

    ``offset`` is where in the message the problem is; ``reason`` says what is wrong;
    ``errno`` is what Linux would answer for the same bytes (``EINVAL`` for a bad
    extension, ``EMSGSIZE`` for a bad total length), so an engine can reply as Linux
    does.
    """

    def __init__(self, offset: int, reason: str, *, errno: int = _errno.EINVAL) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.errno = errno


class Reader:
    """A bounded cursor; every read is checked against ``end``."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def remaining(self) -> int:
        return self.end - self.pos

    def error(self, reason: str, *, at: int | None = None, errno: int = _errno.EINVAL) -> DecodeError:
        return DecodeError(self.pos if at is None else at, reason, errno=errno)

    def _short(self, n: int, what: str) -> DecodeError:
        return DecodeError(self.pos, f"{what} needs {n} bytes, only {self.end - self.pos} left")

    # The bounds check is written out in each method: these run for every field of
    # every message, and a shared helper call would cost more than the check itself.

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        pos = self.pos
        if pos + st.size > self.end:
            raise self._short(st.size, what)
        self.pos = pos + st.size
        return st.unpack_from(self.data, pos)

    def peek(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        if self.pos + st.size > self.end:
            raise self._short(st.size, what)
        return st.unpack_from(self.data, self.pos)

    def take(self, n: int, what: str) -> bytes:
        pos = self.pos
        if pos + n > self.end:
            raise self._short(n, what)
        self.pos = pos + n
        return self.data[pos : pos + n]

    def skip(self, n: int, what: str) -> None:
        if self.pos + n > self.end:
            raise self._short(n, what)
        self.pos += n

    def sub(self, n: int, what: str) -> Reader:
        """A reader over the next ``n`` bytes; the parent moves past them."""
        pos = self.pos
        if pos + n > self.end:
            raise self._short(n, what)
        self.pos = pos + n
        return Reader(self.data, pos, pos + n)

    def rest(self) -> bytes:
        pos, self.pos = self.pos, self.end
        return self.data[pos : self.end]
