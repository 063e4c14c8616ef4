"""Mobility Header messages (RFC 6275 §6.1): one class per MH type, registered by number.

Every message starts with the 6-octet Mobility Header (RFC 6275 §6.1.1)::

    Payload Proto (8) | Header Len (8) | MH Type (8) | Reserved (8) | Checksum (16)

Payload Proto is 59 (no next header); Header Len counts the 8-octet units after the first
8. The message data follows: the fixed fields of the type (``fixed``, whose size is the
least RFC 6275 allows), then mobility options, padded to a multiple of 8 octets.

Reserved fields are written as zeros and not kept when read, as RFC 6275 tells a
receiver to ignore them. The flag fields of the Binding Update and Acknowledgement keep
all their bits, since later RFCs defined flags in what RFC 6275 reserved.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any, ClassVar

from pfmigrate._value import Value, uint
from pfmigrate._wire import Reader
from pfmigrate.mip6.checksum import Address, checksum
from pfmigrate.mip6.constants import IPPROTO_NONE, MAX_MH_LEN, BAFlags, BAStatus, BEStatus, BUFlags, MHType
from pfmigrate.mip6.options import Option, check_ipv6, check_length, check_options, pack_options

HEADER = struct.Struct("!BBBBH")
_CHECKSUM = struct.Struct("!H")


class Message(Value):
    """Base of every message; ``mh_type`` is the wire number."""

    __slots__ = ()
    mh_type: int

    def pack_data(self) -> bytes:
        """The message data: everything after the Checksum field."""
        raise NotImplementedError

    def encode(self, src: Address | None, dst: Address | None) -> bytes:
        """The Mobility Header, its Checksum filled in for a packet from ``src`` to ``dst``.

        With ``None`` for both the Checksum is left zero, for a raw socket whose kernel
        fills it in (``IPV6_CHECKSUM`` at offset 4).
        """
        data = self.pack_data()
        wire = HEADER.pack(IPPROTO_NONE, (6 + len(data)) // 8 - 1, self.mh_type, 0, 0) + data
        if src is None and dst is None:
            return wire
        if src is None or dst is None:
            raise ValueError("give both the source and the destination address, or neither")
        return wire[:4] + _CHECKSUM.pack(checksum(wire, src, dst)) + wire[6:]


class KnownMessage(Message):
    """A message of a type this code knows: its fixed fields, then ``options``."""

    __slots__ = ()
    #: The fixed fields after the Mobility Header (reserved ones as pad bytes).
    fixed: ClassVar[struct.Struct]
    options: tuple[Option, ...]

    def fixed_values(self) -> tuple[Any, ...]:
        """The values of ``fixed``, in order."""
        raise NotImplementedError

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        """The fields before ``options``, in declaration order, from the fixed part."""
        raise NotImplementedError

    def pack_data(self) -> bytes:
        return self.fixed.pack(*self.fixed_values()) + pack_options(self.options, 6 + self.fixed.size)

    def _check(self) -> None:
        self._check_fields()
        check_options(self.options)
        size = 6 + len(self.pack_data())
        if size > MAX_MH_LEN:
            name = type(self).__name__
            raise ValueError(f"a {name} of {size} octets is longer than the {MAX_MH_LEN} that Header Len allows")

    def _check_fields(self) -> None:
        """Rules of the fixed fields; subclasses override."""


@dataclass(frozen=True, slots=True)
class BindingRefreshRequest(KnownMessage):
    """Binding Refresh Request (0, RFC 6275 §6.1.2): Reserved (16), options."""

    mh_type = MHType.BINDING_REFRESH_REQUEST
    fixed = struct.Struct("!2x")
    options: tuple[Option, ...] = ()

    def fixed_values(self) -> tuple[Any, ...]:
        return ()

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        r.skip(cls.fixed.size, "Reserved")
        return ()


@dataclass(frozen=True, slots=True)
class _TestInit(KnownMessage):
    """Reserved (16), an init cookie (64 bits, echoed in the matching test), options."""

    fixed = struct.Struct("!2x8s")
    cookie: bytes = bytes(8)
    options: tuple[Option, ...] = ()

    def _check_fields(self) -> None:
        check_length(self, "cookie", 8, 8)

    def fixed_values(self) -> tuple[Any, ...]:
        return (self.cookie,)

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        return r.unpack(cls.fixed, "init cookie")


@dataclass(frozen=True, slots=True)
class HomeTestInit(_TestInit):
    """Home Test Init (1, RFC 6275 §6.1.3): Reserved (16), Home Init Cookie (64), options."""

    mh_type = MHType.HOME_TEST_INIT


@dataclass(frozen=True, slots=True)
class CareOfTestInit(_TestInit):
    """Care-of Test Init (2, RFC 6275 §6.1.4): Reserved (16), Care-of Init Cookie (64), options."""

    mh_type = MHType.CARE_OF_TEST_INIT


@dataclass(frozen=True, slots=True)
class _Test(KnownMessage):
    """A nonce index (16), the init cookie echoed (64), a keygen token (64), options."""

    fixed = struct.Struct("!H8s8s")
    nonce_index: int = uint(16)
    cookie: bytes = bytes(8)
    keygen_token: bytes = bytes(8)
    options: tuple[Option, ...] = ()

    def _check_fields(self) -> None:
        check_length(self, "cookie", 8, 8)
        check_length(self, "keygen_token", 8, 8)

    def fixed_values(self) -> tuple[Any, ...]:
        return self.nonce_index, self.cookie, self.keygen_token

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        return r.unpack(cls.fixed, "nonce index, cookie and keygen token")


@dataclass(frozen=True, slots=True)
class HomeTest(_Test):
    """Home Test (3, RFC 6275 §6.1.5): Home Nonce Index (16), Home Init Cookie (64), Home
    Keygen Token (64), options."""

    mh_type = MHType.HOME_TEST


@dataclass(frozen=True, slots=True)
class CareOfTest(_Test):
    """Care-of Test (4, RFC 6275 §6.1.6): Care-of Nonce Index (16), Care-of Init Cookie
    (64), Care-of Keygen Token (64), options."""

    mh_type = MHType.CARE_OF_TEST


@dataclass(frozen=True, slots=True)
class BindingUpdate(KnownMessage):
    """Binding Update (5, RFC 6275 §6.1.7): Sequence # (16), flags A H L K M R P F and
    the reserved bits (16), Lifetime (16, in 4-second units; 0 deletes the binding), options."""

    mh_type = MHType.BINDING_UPDATE
    fixed = struct.Struct("!HHH")
    sequence: int = uint(16)
    flags: BUFlags = uint(16, BUFlags(0))
    lifetime: int = uint(16)
    options: tuple[Option, ...] = ()

    @property
    def lifetime_seconds(self) -> int:
        return 4 * self.lifetime

    def fixed_values(self) -> tuple[Any, ...]:
        return self.sequence, self.flags, self.lifetime

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        sequence, flags, lifetime = r.unpack(cls.fixed, "Binding Update")
        return sequence, BUFlags(flags), lifetime


@dataclass(frozen=True, slots=True)
class BindingAck(KnownMessage):
    """Binding Acknowledgement (6, RFC 6275 §6.1.8): Status (8), flags K R P and the
    reserved bits (8), Sequence # (16), Lifetime (16, in 4-second units), options."""

    mh_type = MHType.BINDING_ACK
    fixed = struct.Struct("!BBHH")
    status: BAStatus = uint(8, BAStatus.ACCEPTED)
    flags: BAFlags = uint(8, BAFlags(0))
    sequence: int = uint(16)
    lifetime: int = uint(16)
    options: tuple[Option, ...] = ()

    @property
    def lifetime_seconds(self) -> int:
        return 4 * self.lifetime

    def fixed_values(self) -> tuple[Any, ...]:
        return self.status, self.flags, self.sequence, self.lifetime

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        status, flags, sequence, lifetime = r.unpack(cls.fixed, "Binding Acknowledgement")
        return BAStatus.of(status), BAFlags(flags), sequence, lifetime


@dataclass(frozen=True, slots=True)
class BindingError(KnownMessage):
    """Binding Error (7, RFC 6275 §6.1.9): Status (8), Reserved (8), Home Address (128),
    options. The home address is the one of the packet that caused the error."""

    mh_type = MHType.BINDING_ERROR
    fixed = struct.Struct("!Bx16s")
    home_address: IPv6Address
    status: BEStatus = uint(8, BEStatus.UNKNOWN_BINDING_FOR_HOME_ADDRESS)
    options: tuple[Option, ...] = ()

    def _check_fields(self) -> None:
        check_ipv6(self, "home_address")

    def fixed_values(self) -> tuple[Any, ...]:
        return self.status, self.home_address.packed

    @classmethod
    def unpack_fixed(cls, r: Reader) -> tuple[Any, ...]:
        status, home_address = r.unpack(cls.fixed, "Binding Error")
        return IPv6Address(home_address), BEStatus.of(status)


@dataclass(frozen=True, slots=True)
class UnknownMessage(Message):
    """An MH type this code does not know: the message data kept byte for byte (a node
    answers it with a Binding Error, status 2)."""

    mh_type: MHType = uint(8, None)
    data: bytes = bytes(2)

    def _check(self) -> None:
        if self.mh_type in MESSAGE_CLASSES:
            raise ValueError(f"MH type {self.mh_type.label} is a known type: use its class")
        size = 6 + len(self.data)
        if size % 8 or not 8 <= size <= MAX_MH_LEN:
            raise ValueError(f"{len(self.data)} octets of data do not make a message of 8 to {MAX_MH_LEN} octets")

    def pack_data(self) -> bytes:
        return self.data


#: Every known message class by its MH type.
MESSAGE_CLASSES: dict[int, type[KnownMessage]] = {
    cls.mh_type: cls
    for cls in (
        BindingRefreshRequest, HomeTestInit, CareOfTestInit, HomeTest, CareOfTest, BindingUpdate, BindingAck,
        BindingError,
    )
}  # fmt: skip
