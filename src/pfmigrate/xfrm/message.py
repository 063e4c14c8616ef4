"""Netlink messages on ``NETLINK_XFRM``: the header, XFRM payloads, errors and dumps.

A datagram holds one or more messages, each ``struct nlmsghdr`` (16: len u32, type u16,
flags u16, seq u32, pid u32) and a payload, padded to 4. An XFRM payload is the fixed
struct of its type (what the kernel's ``xfrm_msg_min`` requires) followed by
attributes. ``NLMSG_ERROR`` carries an errno (0 for an ACK) and the request's header;
``NLMSG_DONE`` ends a dump.
"""

from __future__ import annotations

import builtins
import errno as _errno
import os
import struct
from dataclasses import dataclass
from typing import TypeVar

from pfmigrate._value import Value, uint
from pfmigrate._wire import DecodeError, Reader
from pfmigrate.xfrm.attributes import Attribute, read_attributes
from pfmigrate.xfrm.constants import MsgType, NlMsgType
from pfmigrate.xfrm.structs import (
    AeventId,
    CStruct,
    UserAcquire,
    UserExpire,
    UserPolexpire,
    UserpolicyId,
    UserpolicyInfo,
    UsersaFlush,
    UsersaId,
    UsersaInfo,
    UserspiInfo,
)

_HDR = struct.Struct("=IHHII")
_I32 = struct.Struct("=i")

A = TypeVar("A", bound=Attribute)

#: The fixed struct that starts each XFRM message type's payload.
FIXED: dict[int, type[CStruct]] = {
    MsgType.NEWSA: UsersaInfo,
    MsgType.UPDSA: UsersaInfo,
    MsgType.DELSA: UsersaId,
    MsgType.GETSA: UsersaId,
    MsgType.NEWPOLICY: UserpolicyInfo,
    MsgType.UPDPOLICY: UserpolicyInfo,
    MsgType.DELPOLICY: UserpolicyId,
    MsgType.GETPOLICY: UserpolicyId,
    MsgType.ALLOCSPI: UserspiInfo,
    MsgType.ACQUIRE: UserAcquire,
    MsgType.EXPIRE: UserExpire,
    MsgType.POLEXPIRE: UserPolexpire,
    MsgType.FLUSHSA: UsersaFlush,
    MsgType.MIGRATE: UserpolicyId,
    MsgType.NEWAE: AeventId,
    MsgType.GETAE: AeventId,
}
#: Types whose payload is attributes only.
ATTRIBUTES_ONLY = frozenset({MsgType.FLUSHPOLICY})


def is_dump_request(msg_type: int, flags: int) -> bool:
    """GETSA and GETPOLICY with a dump flag: attributes only (``xfrm_dump_sa`` reads its
    filters right after the header)."""
    return msg_type in (MsgType.GETSA, MsgType.GETPOLICY) and bool(flags & 0x300) and bool(flags & 0x1)


_I32_RANGE = range(-(1 << 31), 1 << 31)


def _align4(n: int) -> int:
    return (n + 3) & ~3


def _header(length: int, msg_type: int, flags: int, seq: int, pid: int) -> bytes:
    return _HDR.pack(length, msg_type, flags, seq, pid)


class NetlinkMessage(Value):
    """Base of the message classes: each has ``type``, ``flags``, ``seq``, ``pid``."""

    __slots__ = ()
    type: int
    flags: int
    seq: int
    pid: int

    def payload(self) -> bytes:
        raise NotImplementedError

    def encode(self) -> bytes:
        """The message, padded to 4 bytes (``nlmsg_len`` counts the unpadded length)."""
        payload = self.payload()
        length = 16 + len(payload)
        return _header(length, self.type, self.flags, self.seq, self.pid) + payload + bytes(_align4(length) - length)


@dataclass(frozen=True, slots=True)
class XfrmMessage(NetlinkMessage):
    """An XFRM message: its fixed struct (``None`` for a dump request or
    ``FLUSHPOLICY``) and its attributes in order."""

    type: MsgType = uint(16, None)
    flags: int = uint(16)
    seq: int = uint(32)
    pid: int = uint(32)
    fixed: CStruct | None = None
    attrs: tuple[Attribute, ...] = ()

    def _check(self) -> None:
        if self.type not in FIXED and self.type not in ATTRIBUTES_ONLY:
            raise ValueError(f"XFRM message type {self.type.label} has no known layout: use RawMessage")
        expected = None if is_dump_request(self.type, self.flags) else FIXED.get(self.type)
        if expected is None and self.fixed is not None:
            raise ValueError(f"{self.type.label} with flags {self.flags:#x} carries no fixed struct")
        if expected is not None and builtins.type(self.fixed) is not expected:
            got = builtins.type(self.fixed).__name__ if self.fixed is not None else "nothing"
            raise ValueError(f"{self.type.label} carries a {expected.__name__}, not {got}")

    def payload(self) -> bytes:
        head = b"" if self.fixed is None else self.fixed.pack()
        if self.attrs and len(head) % 4:
            head += bytes(_align4(len(head)) - len(head))
        return head + b"".join(a.pack() for a in self.attrs)

    def get(self, kind: builtins.type[A]) -> A | None:
        """The first attribute of class ``kind``."""
        for attr in self.attrs:
            if builtins.type(attr) is kind:
                return attr
        return None

    def all(self, kind: builtins.type[A]) -> list[A]:
        """Every attribute of class ``kind`` (a MIGRATE notification repeats them)."""
        return [attr for attr in self.attrs if builtins.type(attr) is kind]


@dataclass(frozen=True, slots=True)
class NetlinkError(NetlinkMessage):
    """``NLMSG_ERROR``: ``error`` is 0 for an ACK or a negative errno; then the
    request's header, its payload unless the kernel capped it, and extended-ACK
    attributes (``NLMSGERR_ATTR_*``) as (type, data) pairs."""

    type: int = NlMsgType.ERROR
    flags: int = uint(16)
    seq: int = uint(32)
    pid: int = uint(32)
    error: int = 0
    request_type: int = uint(16)
    request_flags: int = uint(16)
    request_seq: int = uint(32)
    request_pid: int = uint(32)
    request_length: int = uint(32)
    request_payload: bytes = b""
    extack: tuple[tuple[int, bytes], ...] = ()

    def _check(self) -> None:
        if self.error > 0 or self.error not in _I32_RANGE:
            raise ValueError(f"nlmsgerr.error is 0 or a negative int32, not {self.error}")
        if self.request_payload and len(self.request_payload) != self.request_length - 16:
            raise ValueError("an echoed request is the whole request (request_length - 16 bytes) or nothing")
        for kind, data in self.extack:
            if not 0 <= kind <= 0xFFFF or len(data) > 0xFFFF - 4:
                raise ValueError("an extended-ACK attribute has a u16 type and at most 65531 bytes")

    @property
    def errno(self) -> int:
        return -self.error

    @property
    def message(self) -> str:
        """The kernel's extended-ACK text, if it sent one, else the errno's description."""
        for kind, data in self.extack:
            if kind == 1:  # NLMSGERR_ATTR_MSG
                return data.rstrip(b"\0").decode("utf-8", "replace")
        return os.strerror(self.errno) if self.error else "OK"

    def payload(self) -> bytes:
        request = _header(
            self.request_length, self.request_type, self.request_flags, self.request_seq, self.request_pid
        )
        tlvs = b"".join(
            struct.pack("=HH", 4 + len(data), kind) + data + bytes(_align4(len(data)) - len(data))
            for kind, data in self.extack
        )
        payload = self.request_payload + bytes(_align4(len(self.request_payload)) - len(self.request_payload))
        return _I32.pack(self.error) + request + payload + tlvs


@dataclass(frozen=True, slots=True)
class NetlinkDone(NetlinkMessage):
    """``NLMSG_DONE``: the end of a dump, with its status (0 or a negative errno)."""

    type: int = NlMsgType.DONE
    flags: int = uint(16)
    seq: int = uint(32)
    pid: int = uint(32)
    error: int = 0

    def _check(self) -> None:
        if self.error not in _I32_RANGE:
            raise ValueError(f"NLMSG_DONE status {self.error} is not an int32")

    def payload(self) -> bytes:
        return _I32.pack(self.error)


@dataclass(frozen=True, slots=True)
class RawMessage(NetlinkMessage):
    """Any other message (``NLMSG_NOOP``, reports, mappings…), kept as bytes."""

    type: int = uint(16, None)
    flags: int = uint(16)
    seq: int = uint(32)
    pid: int = uint(32)
    data: bytes = b""

    def payload(self) -> bytes:
        return self.data


def _decode_xfrm(r: Reader, mtype: int, flags: int, seq: int, pid: int) -> XfrmMessage:
    cls = None if is_dump_request(mtype, flags) else FIXED.get(mtype)
    fixed: CStruct | None = None
    if cls is not None:
        if r.remaining() < cls.SIZE:
            raise r.error(f"{MsgType(mtype).label} needs a {cls.SIZE}-byte {cls.__name__}, has {r.remaining()} bytes")
        fixed = cls.unpack(r.take(cls.SIZE, cls.__name__))
        r.skip(min(_align4(cls.SIZE) - cls.SIZE, r.remaining()), "padding")
    return XfrmMessage(MsgType.of(mtype), flags, seq, pid, fixed, read_attributes(r))


def _decode_error(r: Reader, flags: int, seq: int, pid: int) -> NetlinkError:
    (error,) = r.unpack(_I32, "nlmsgerr.error")
    if error > 0:
        raise r.error(f"nlmsgerr.error is {error}: an error is 0 or negative", at=r.pos - 4)
    length, rtype, rflags, rseq, rpid = r.unpack(_HDR, "nlmsgerr.msg")
    payload = b""
    if not flags & 0x100 and length > 16 and r.remaining():  # the whole request is echoed unless capped
        payload = r.take(length - 16, "the request echoed in nlmsgerr")
        r.skip(min(_align4(len(payload)) - len(payload), r.remaining()), "padding")
    extack: list[tuple[int, bytes]] = []
    while r.remaining() >= 4:
        at = r.pos
        tlv_len, kind = r.unpack(struct.Struct("=HH"), "extack attribute")
        if tlv_len < 4 or at + tlv_len > r.end:
            raise r.error(f"extack attribute length {tlv_len} is invalid", at=at)
        extack.append((kind, r.take(tlv_len - 4, "extack data")))
        r.skip(min(_align4(tlv_len) - tlv_len, r.remaining()), "padding")
    return NetlinkError(
        NlMsgType.ERROR, flags, seq, pid, error, rtype, rflags, rseq, rpid, length, payload, tuple(extack)
    )


def decode(data: bytes | bytearray | memoryview) -> list[NetlinkMessage]:
    """Every message in one netlink datagram; ``DecodeError`` with offset and reason."""
    data = bytes(data)
    r = Reader(data)
    out: list[NetlinkMessage] = []
    while r.remaining():
        at = r.pos
        if r.remaining() < 16:
            raise r.error(f"{r.remaining()} bytes are too few for a netlink header", errno=_errno.EMSGSIZE)
        length, mtype, flags, seq, pid = r.unpack(_HDR, "nlmsghdr")
        if length < 16 or at + length > r.end:
            raise r.error(f"nlmsg_len {length} is below 16 or runs past the datagram", at=at, errno=_errno.EMSGSIZE)
        body = r.sub(length - 16, "netlink payload")
        try:
            if mtype == NlMsgType.ERROR:
                out.append(_decode_error(body, flags, seq, pid))
            elif mtype == NlMsgType.DONE:
                status = body.unpack(_I32, "NLMSG_DONE status")[0] if body.remaining() >= 4 else 0
                out.append(NetlinkDone(NlMsgType.DONE, flags, seq, pid, status))
            elif mtype in FIXED or mtype in ATTRIBUTES_ONLY:
                out.append(_decode_xfrm(body, mtype, flags, seq, pid))
            else:
                out.append(RawMessage(mtype, flags, seq, pid, body.rest()))
        except DecodeError:
            raise
        except (ValueError, TypeError) as exc:  # a value's own rule
            raise DecodeError(at, f"message type {mtype}: {exc}") from exc
        r.skip(min(_align4(length) - length, r.remaining()), "message padding")
    return out


def decode_one(data: bytes | bytearray | memoryview) -> NetlinkMessage:
    messages = decode(data)
    if len(messages) != 1:
        raise DecodeError(0, f"expected one netlink message, found {len(messages)}")
    return messages[0]
