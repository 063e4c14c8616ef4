"""Mobility options (RFC 6275 §6.2, RFC 3963 §4.3): one class per type, registered by number.

An option is Option Type (8), Option Length (8, the octets of data that follow) and its
data. ``pack()`` gives the whole option; ``unpack(r)`` reads the data from a reader that
spans exactly Option Length octets (already checked against the message).

Pad1 and PadN are not values here: they are layout. ``pack_options`` puts before each
option the least padding its alignment asks for (``align = (x, y)``: the option starts
x*n + y octets from the start of the Mobility Header) and pads the message to a multiple
of 8, as RFC 6275 §6.2 says; ``read_options`` skips padding wherever it is, ignoring
PadN's data as RFC 6275 §6.2.3 tells a receiver to. So ``encode(decode(b)) == b`` holds
when ``b`` is padded that way, and unknown options are kept byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
from typing import ClassVar, Self

from pfmigrate._value import Value, uint
from pfmigrate._wire import Reader
from pfmigrate.mip6.constants import MAX_MH_LEN, OptType

_OPT = struct.Struct("!BB")
_U16 = struct.Struct("!H")
_NONCES = struct.Struct("!HH")
_PREFIX = struct.Struct("!xB16s")


def check_ipv6(obj: Value, name: str) -> None:
    """Turn text into an ``IPv6Address`` in place; refuse anything else, and scoped
    addresses (a scope does not travel on the wire)."""
    value = getattr(obj, name)
    if isinstance(value, str):
        value = IPv6Address(value)
        object.__setattr__(obj, name, value)
    if not isinstance(value, IPv6Address):
        raise TypeError(f"{type(obj).__name__}.{name} must be an IPv6Address, not {value!r}")
    if value.scope_id is not None:
        raise ValueError(f"{type(obj).__name__}.{name} = {value} has a scope, which the wire cannot carry")


def check_length(obj: Value, name: str, low: int, high: int) -> None:
    size = len(getattr(obj, name))
    if not low <= size <= high:
        wanted = f"{low}" if low == high else f"{low} to {high}"
        raise ValueError(f"{type(obj).__name__}.{name} is {size} octets, not {wanted}")


class Option(Value):
    """Base of every mobility option; ``opt_type`` is the wire number."""

    __slots__ = ()
    opt_type: int
    #: ``(x, y)``: the option starts x*n + y octets from the start of the Mobility Header.
    align: ClassVar[tuple[int, int]] = (1, 0)
    #: The Option Length the type requires, or ``None`` when it varies.
    data_len: ClassVar[int | None] = None

    def pack_data(self) -> bytes:
        raise NotImplementedError

    def pack(self) -> bytes:
        data = self.pack_data()
        return _OPT.pack(self.opt_type, len(data)) + data

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class BindingRefreshAdvice(Option):
    """Binding Refresh Advice (2, RFC 6275 §6.2.4): when the home agent wants the next
    Binding Update, in 4-second units. Alignment 2n."""

    opt_type = OptType.BINDING_REFRESH_ADVICE
    align = (2, 0)
    data_len = 2
    interval: int = uint(16)

    @property
    def seconds(self) -> int:
        return 4 * self.interval

    def pack_data(self) -> bytes:
        return _U16.pack(self.interval)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(*r.unpack(_U16, "refresh interval"))


@dataclass(frozen=True, slots=True)
class AlternateCareOfAddress(Option):
    """Alternate Care-of Address (3, RFC 6275 §6.2.5): the care-of address of a Binding
    Update, inside the part IPsec protects. Alignment 8n+6, so the address is 8-aligned."""

    opt_type = OptType.ALTERNATE_CARE_OF_ADDRESS
    align = (8, 6)
    data_len = 16
    address: IPv6Address

    def _check(self) -> None:
        check_ipv6(self, "address")

    def pack_data(self) -> bytes:
        return self.address.packed

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(IPv6Address(r.take(16, "care-of address")))


@dataclass(frozen=True, slots=True)
class NonceIndices(Option):
    """Nonce Indices (4, RFC 6275 §6.2.6): which nonces the correspondent node should use
    to check a Binding Update's authorization. Alignment 2n."""

    opt_type = OptType.NONCE_INDICES
    align = (2, 0)
    data_len = 4
    home_nonce_index: int = uint(16)
    care_of_nonce_index: int = uint(16)

    def pack_data(self) -> bytes:
        return _NONCES.pack(self.home_nonce_index, self.care_of_nonce_index)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(*r.unpack(_NONCES, "nonce indices"))


@dataclass(frozen=True, slots=True)
class BindingAuthorizationData(Option):
    """Binding Authorization Data (5, RFC 6275 §6.2.7): the authenticator (96 bits with
    return routability). It must be the last option, hence its alignment 8n+2."""

    opt_type = OptType.BINDING_AUTHORIZATION_DATA
    align = (8, 2)
    authenticator: bytes = b""

    def _check(self) -> None:
        check_length(self, "authenticator", 0, 0xFF)

    def pack_data(self) -> bytes:
        return self.authenticator

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(r.rest())


@dataclass(frozen=True, slots=True)
class MobileNetworkPrefix(Option):
    """Mobile Network Prefix (6, RFC 3963 §4.3): a prefix behind a mobile router, as a
    full 128-bit address (host bits kept) and a prefix length. Alignment 8n+4."""

    opt_type = OptType.MOBILE_NETWORK_PREFIX
    align = (8, 4)
    data_len = 18
    prefix: IPv6Address
    prefixlen: int = uint(8, None)

    @classmethod
    def of(cls, text: str) -> Self:
        """From ``"2001:db8:1::/48"``."""
        network = IPv6Network(text, strict=False)
        return cls(IPv6Address(text.partition("/")[0]), network.prefixlen)

    @property
    def network(self) -> IPv6Network:
        return IPv6Network((self.prefix, self.prefixlen), strict=False)

    def _check(self) -> None:
        check_ipv6(self, "prefix")
        if self.prefixlen > 128:
            raise ValueError(f"prefix length {self.prefixlen} is longer than 128")

    def pack_data(self) -> bytes:
        return _PREFIX.pack(self.prefixlen, self.prefix.packed)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        prefixlen, prefix = r.unpack(_PREFIX, "mobile network prefix")
        if prefixlen > 128:
            raise r.error(f"prefix length {prefixlen} is longer than 128", at=r.pos - 17)
        return cls(IPv6Address(prefix), prefixlen)


@dataclass(frozen=True, slots=True)
class UnknownOption(Option):
    """An option type this code does not know, kept byte for byte (RFC 6275 §6.2.1: a
    receiver skips what it does not understand). It has no alignment."""

    opt_type: OptType = uint(8, None)
    data: bytes = b""

    def _check(self) -> None:
        if self.opt_type in (OptType.PAD1, OptType.PADN):
            raise ValueError(f"option type {self.opt_type.label} is padding, which the encoder lays out itself")
        if self.opt_type in OPTION_CLASSES:
            raise ValueError(f"option type {self.opt_type.label} is a known type: use its class")
        check_length(self, "data", 0, 0xFF)

    def pack_data(self) -> bytes:
        return self.data


#: Every known option class by its wire number.
OPTION_CLASSES: dict[int, type[Option]] = {
    cls.opt_type: cls
    for cls in (
        BindingRefreshAdvice, AlternateCareOfAddress, NonceIndices, BindingAuthorizationData, MobileNetworkPrefix,
    )
}  # fmt: skip


# --- layout --------------------------------------------------------------------------------------


def padding(n: int) -> bytes:
    """``n`` octets of padding: nothing, one Pad1, or one PadN of zeros."""
    if n < 2:
        return bytes(n)
    return _OPT.pack(OptType.PADN, n - 2) + bytes(n - 2)


def pack_options(options: Sequence[Option], start: int) -> bytes:
    """``options`` placed from offset ``start`` of the Mobility Header, each after the least
    padding its alignment needs, then padding to a multiple of 8 octets."""
    out = bytearray()
    for opt in options:
        x, y = opt.align
        out += padding((y - start - len(out)) % x)
        out += opt.pack()
    out += padding(-(start + len(out)) % 8)
    return bytes(out)


def check_options(options: Sequence[Option]) -> None:
    """The rule that ties options together: Binding Authorization Data comes last."""
    for opt in options[:-1]:
        if isinstance(opt, BindingAuthorizationData):
            raise ValueError("Binding Authorization Data must be the last option (RFC 6275 §6.2.7)")


def read_options(r: Reader) -> tuple[Option, ...]:
    """The options from ``r.pos`` to ``r.end``, padding skipped.

    Checks that each option's length stays inside the message, that known fixed-size
    options have their size, that nothing but padding follows Binding Authorization Data,
    and that the options, aligned as ``pack_options`` aligns them, still fit in a
    Mobility Header (so a decoded message always encodes).
    """
    data, end = r.data, r.end
    options: list[Option] = []
    aligned = r.pos  # where the next option would start in the canonical layout
    last_at = -1  # the offset of Binding Authorization Data, once seen
    while r.pos < end:
        at = r.pos
        opt_type = data[at]
        if opt_type == OptType.PAD1:
            r.pos = at + 1
            continue
        if at + 2 > end:
            raise r.error(f"option type {opt_type} in the last octet has no Option Length")
        length = data[at + 1]
        if at + 2 + length > end:
            raise r.error(f"Option Length {length} runs past the message ({end - at - 2} octets left)", at=at + 1)
        r.pos = at + 2
        body = r.sub(length, "option data")
        if opt_type == OptType.PADN:
            continue
        if last_at >= 0:
            raise r.error(
                f"option type {opt_type} after the Binding Authorization Data at {last_at}, which must be last", at=at
            )
        cls = OPTION_CLASSES.get(opt_type)
        opt: Option
        if cls is None:
            opt = UnknownOption(OptType.of(opt_type), body.rest())
        else:
            if cls.data_len is not None and length != cls.data_len:
                raise r.error(f"{cls.__name__} has Option Length {length}, not {cls.data_len}", at=at + 1)
            opt = cls.unpack(body)
            if cls is BindingAuthorizationData:
                last_at = at
        x, y = opt.align
        aligned += (y - aligned) % x + 2 + length
        if aligned > MAX_MH_LEN:
            raise r.error(f"aligned as RFC 6275 asks, the options would not fit in {MAX_MH_LEN} octets", at=at)
        options.append(opt)
    return tuple(options)
