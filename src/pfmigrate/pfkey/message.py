"""A PF_KEY v2 message: the ``sadb_msg`` header and its extensions, and their codec."""

from __future__ import annotations

import builtins
import errno as _errno
import struct
from dataclasses import dataclass
from typing import TypeVar

from pfmigrate._enum import MemberTable
from pfmigrate._value import Value, builder, uint
from pfmigrate._wire import DecodeError, Reader
from pfmigrate.pfkey.constants import PF_KEY_V2, SADB_EXT_MAX, MsgType, SAType
from pfmigrate.pfkey.extensions import EXTENSION_CLASSES, Extension, UnknownExtension

_MSG = struct.Struct("=BBBBHHII")
_EXT = struct.Struct("=HH")
_MAX_LEN = 0xFFFF * 8
_MSGTYPE = MemberTable(MsgType)
_SATYPE = MemberTable(SAType)
# Per extension type: its bound decoder, minimum length and name, found with one lookup.
_DECODERS = {n: (cls.unpack, cls.min_len, cls.__name__) for n, cls in EXTENSION_CLASSES.items()}
_UNKNOWN = (UnknownExtension.unpack, 8, "UnknownExtension")

E = TypeVar("E", bound=Extension)


@dataclass(frozen=True, slots=True)
class Message(Value):
    """``struct sadb_msg`` (16): version 2, type, errno, satype, len, seq, pid; then
    the extensions in wire order.

    Each known extension type (1..26) appears at most once, as Linux requires; unknown
    higher types are kept in place and may repeat.
    """

    type: MsgType = uint(8, None)
    satype: SAType = uint(8, SAType.UNSPEC)
    seq: int = uint(32)
    pid: int = uint(32)
    errno: int = uint(8)
    extensions: tuple[Extension, ...] = ()
    #: ``sadb_msg_reserved``: zero in requests (Linux refuses anything else), but Linux
    #: itself puts the policy's reference count here in SPD replies and dumps.
    reserved: int = uint(16)

    def _check(self) -> None:
        seen: set[int] = set()
        for ext in self.extensions:
            if ext.exttype <= SADB_EXT_MAX:
                if ext.exttype in seen:
                    raise ValueError(f"extension {type(ext).__name__} appears twice")
                seen.add(ext.exttype)
        size = 16
        for i, ext in enumerate(self.extensions):
            try:
                size += len(ext.pack())
            except struct.error:  # its length in 8-byte units does not fit sadb_ext_len
                raise ValueError(
                    f"extension {i} ({type(ext).__name__}) is longer than the {_MAX_LEN} bytes one extension may hold"
                ) from None
        if size > _MAX_LEN:
            raise ValueError(f"message of {size} bytes exceeds the PF_KEY limit of {_MAX_LEN}")

    def get(self, kind: builtins.type[E]) -> E | None:
        """The extension of class ``kind``, if present."""
        for ext in self.extensions:
            if builtins.type(ext) is kind:
                return ext
        return None

    def require(self, kind: builtins.type[E]) -> E:
        """The extension of class ``kind``; ``LookupError`` naming it if absent."""
        ext = self.get(kind)
        if ext is None:
            raise LookupError(f"{self.type.label} message has no {kind.__name__} extension")
        return ext

    def encode(self) -> bytes:
        body = b"".join([ext.pack() for ext in self.extensions])
        header = _MSG.pack(
            PF_KEY_V2, self.type, self.errno, self.satype, 2 + len(body) // 8, self.reserved, self.seq, self.pid
        )
        return header + body

    @classmethod
    def decode(cls, data: bytes) -> Message:
        return decode(data)


_build_message = builder(Message)


def decode(data: bytes | bytearray | memoryview) -> Message:
    """Decode one PF_KEY message; ``DecodeError`` (with offset and reason) if invalid.

    Checks what Linux checks before a handler runs (``pfkey_get_base_msg`` and
    ``parse_exthdrs``): version 2, total length (``sadb_msg_len`` must cover the message
    exactly: Linux's base check allows up to 7 more bytes, but its extension walk then
    refuses them with EINVAL), each extension's length, type and minimum size, no known
    type twice, and the contents of address, key, security-context and request
    extensions. Like Linux it ignores extension bytes past a fixed struct. The message
    type and ``sadb_msg_reserved`` are not checked, since Linux itself sends non-zero
    ``reserved``: unknown types decode as ``MsgType`` pseudo-members, and an engine
    applies Linux's request rules (type 1..24, zero ``reserved``) itself.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if len(data) < _MSG.size:
        raise DecodeError(0, f"a {len(data)}-byte message is shorter than the 16-byte sadb_msg", errno=_errno.EMSGSIZE)
    version, mtype, errno, satype, length, reserved, seq, pid = _MSG.unpack_from(data)
    if version != PF_KEY_V2:
        raise DecodeError(0, f"sadb_msg_version is {version}, not {PF_KEY_V2}")
    if length != len(data) // 8 or length < 2:
        raise DecodeError(
            4, f"sadb_msg_len says {length * 8} bytes but the message has {len(data)}", errno=_errno.EMSGSIZE
        )
    end = length * 8
    if end != len(data):
        raise DecodeError(end, f"{len(data) - end} bytes after the {end} that sadb_msg_len covers")
    extensions: list[Extension] = []
    seen = 0
    pos = _MSG.size
    r = Reader(data, pos, end)
    while pos < end:
        # Every extension is a whole number of 8-byte units, so a header always fits.
        ext_len, ext_type = _EXT.unpack_from(data, pos)
        size = ext_len * 8
        if size < 8 or pos + size > end:
            raise DecodeError(pos, f"extension length {size} is zero or runs past the message ({end - pos} bytes left)")
        if ext_type == 0:
            raise DecodeError(pos, "extension type 0 (SADB_EXT_RESERVED)")
        unpack, min_len, name = _DECODERS.get(ext_type, _UNKNOWN)
        if ext_type <= SADB_EXT_MAX:
            if seen & (1 << ext_type):
                raise DecodeError(pos, f"extension {name} (type {ext_type}) appears twice")
            seen |= 1 << ext_type
            if size < min_len:
                raise DecodeError(pos, f"{name} is {size} bytes, Linux requires at least {min_len}")
        # Narrow the one reader to this extension (dnspython's restrict_to, without
        # the context-manager cost): the extension cannot read past its own length.
        r.pos, r.end = pos, pos + size
        try:
            extensions.append(unpack(r))
        except DecodeError:
            raise
        except (ValueError, TypeError) as exc:  # a value's own rule, e.g. mixed families
            raise DecodeError(pos, f"{name}: {exc}") from exc
        pos += size
    message: Message = _build_message(_MSGTYPE[mtype], _SATYPE[satype], seq, pid, errno, tuple(extensions), reserved)
    return message
