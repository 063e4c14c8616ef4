"""Decoding and encoding whole Mobility Header messages."""

from __future__ import annotations

from pfmigrate._value import builder
from pfmigrate._wire import DecodeError, Reader
from pfmigrate.mip6.checksum import Address, checksum, checksum_ok
from pfmigrate.mip6.constants import IPPROTO_NONE, MHType
from pfmigrate.mip6.messages import HEADER, MESSAGE_CLASSES, Message, UnknownMessage
from pfmigrate.mip6.options import read_options

_BUILD = {number: builder(cls) for number, cls in MESSAGE_CLASSES.items()}
_build_unknown = builder(UnknownMessage)
#: The least Header Len of each known type (RFC 6275 §6.1: the size of its fixed fields).
MIN_HEADER_LEN = {number: (6 + cls.fixed.size + 7) // 8 - 1 for number, cls in MESSAGE_CLASSES.items()}


def encode(msg: Message, src: Address | None, dst: Address | None) -> bytes:
    """``msg`` on the wire, its Checksum filled in for a packet from ``src`` to ``dst``
    (``None`` for both leaves it zero, for the kernel to fill in)."""
    return msg.encode(src, dst)


def decode(data: bytes | bytearray | memoryview, src: Address | None = None, dst: Address | None = None) -> Message:
    """One Mobility Header message; ``DecodeError`` (offset and reason) if it is invalid.

    Checks what RFC 6275 §9.2 has a receiver check: first the Checksum, when both
    addresses are given (offset 4); then Payload Proto 59 (offset 0), Header Len against
    the data (offset 1, or where octets beyond it start) and against the least length of
    the MH type (offset 1). Offsets 0 and 1 are the pointers of the ICMP Parameter
    Problem the RFC says to answer with. Then the options: each inside the message, known
    fixed-size options of their size, nothing but padding after Binding Authorization
    Data. An unknown MH type (after the Payload Proto and Header Len checks, unlike
    §9.2, so that it is kept whole) decodes to ``UnknownMessage``.
    """
    if type(data) is not bytes:
        data = bytes(data)
    size = len(data)
    if size < 8:
        raise DecodeError(0, f"{size} octets is shorter than the 8-octet minimum Mobility Header")
    if src is not None or dst is not None:
        if src is None or dst is None:
            raise ValueError("give both the source and the destination address, or neither")
        if not checksum_ok(data, src, dst):
            found = HEADER.unpack_from(data)[4]
            raise DecodeError(4, f"Checksum is 0x{found:04x}, not 0x{checksum(data, src, dst):04x} for {src} -> {dst}")
    proto, header_len, mh_type, _, _ = HEADER.unpack_from(data)
    if proto != IPPROTO_NONE:
        raise DecodeError(0, f"Payload Proto is {proto}, not {IPPROTO_NONE} (no next header)")
    length = 8 * (header_len + 1)
    if length > size:
        raise DecodeError(1, f"Header Len {header_len} says {length} octets, the message has {size}")
    if length < size:
        raise DecodeError(length, f"{size - length} octets after the {length} that Header Len {header_len} covers")
    build = _BUILD.get(mh_type)
    if build is None:
        unknown: Message = _build_unknown(MHType.of(mh_type), data[6:])
        return unknown
    if header_len < MIN_HEADER_LEN[mh_type]:
        name = MESSAGE_CLASSES[mh_type].__name__
        raise DecodeError(1, f"Header Len {header_len} is less than the {MIN_HEADER_LEN[mh_type]} of a {name}")
    r = Reader(data, 6, length)
    fields = MESSAGE_CLASSES[mh_type].unpack_fixed(r)
    message: Message = build(*fields, read_options(r))
    return message
