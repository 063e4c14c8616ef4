"""Linux ``sockaddr_in`` / ``sockaddr_in6`` as embedded in PF_KEY messages.

Linux has no ``sa_len`` byte: the family is a host-order ``u16`` at offset 0, the port
a big-endian ``u16`` at offset 2. ``sockaddr_in`` is 16 bytes, ``sockaddr_in6`` 28.
Where PF_KEY pads a single sockaddr, it pads to 8 (16 and 32 bytes); a pair is packed
without a gap and padded as a whole (32 and 56 bytes).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from socket import htonl, htons, ntohl, ntohs

from pfmigrate._value import InternTable, builder
from pfmigrate._wire import Reader
from pfmigrate.pfkey.constants import AF_INET, AF_INET6

IPAddress = IPv4Address | IPv6Address

_SIN = struct.Struct("=HH4s8x")  # family, port (pre-swapped), addr, zero
_SIN6 = struct.Struct("=HHI16sI")  # family, port, flowinfo (pre-swapped), addr, scope_id
_FAMILY = struct.Struct("=H")
SOCKADDR_LEN = {AF_INET: _SIN.size, AF_INET6: _SIN6.size}
# Per family: the bytes two sockaddrs take, and that padded to 8 (pfkey_sockaddr_pair_size).
_PAIR_SIZES = {AF_INET: (32, 32), AF_INET6: (56, 56)}

# A MIGRATE names the same three or four addresses several times: intern them.
_INTERNED: InternTable[SockAddr] = InternTable()
_INTERNED_PAIRS: InternTable[tuple[SockAddr, SockAddr]] = InternTable()


def align8(n: int) -> int:
    """``PFKEY_ALIGN8``: ``n`` rounded up to a multiple of 8."""
    return (n + 7) & ~7


@dataclass(frozen=True, slots=True)
class SockAddr:
    """An IPv4 or IPv6 socket address; the family follows from ``address``."""

    address: IPAddress
    port: int = 0
    flowinfo: int = 0
    scope_id: int = 0
    #: The 16- or 28-byte Linux sockaddr, computed once.
    packed: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        address: object = self.address
        if not isinstance(address, IPv4Address | IPv6Address):  # text from a user
            object.__setattr__(self, "address", ipaddress.ip_address(str(address)))
        if not 0 <= self.port <= 0xFFFF:
            raise ValueError(f"port {self.port} is not a u16")
        if not (0 <= self.flowinfo <= 0xFFFFFFFF and 0 <= self.scope_id <= 0xFFFFFFFF):
            raise ValueError("flowinfo and scope_id must be u32")
        if self.address.version == 4 and (self.flowinfo or self.scope_id):
            raise ValueError("an IPv4 address has no flowinfo or scope_id")
        object.__setattr__(self, "packed", self._pack())

    @classmethod
    def of(cls, text: str, port: int = 0) -> SockAddr:
        """From an address as text: ``SockAddr.of("3ffe:501:ffff:100::1")``."""
        return cls(ipaddress.ip_address(text), port)

    @property
    def family(self) -> int:
        return AF_INET if self.address.version == 4 else AF_INET6

    def _pack(self) -> bytes:
        if self.address.version == 4:
            return _SIN.pack(AF_INET, htons(self.port), self.address.packed)
        return _SIN6.pack(AF_INET6, htons(self.port), htonl(self.flowinfo), self.address.packed, self.scope_id)

    def __str__(self) -> str:
        text = str(self.address)
        return text if not self.port else f"[{text}]:{self.port}" if self.family == AF_INET6 else f"{text}:{self.port}"


_build = builder(SockAddr)


def _decode(raw: bytes, family: int) -> SockAddr:
    if family == AF_INET:
        _, port, addr = _SIN.unpack(raw)
        raw = _SIN.pack(AF_INET, port, addr)  # sin_zero is padding: keep it zero
        sa = _build(IPv4Address(addr), ntohs(port), 0, 0, raw)
    else:
        _, port, flowinfo, addr, scope_id = _SIN6.unpack(raw)
        sa = _build(IPv6Address(addr), ntohs(port), ntohl(flowinfo), scope_id, raw)
    return _INTERNED.add(raw, sa)


def read_sockaddr(r: Reader, what: str) -> SockAddr:
    """One Linux sockaddr at the reader's position; only AF_INET and AF_INET6."""
    data, pos = r.data, r.pos
    if r.end - pos < 2:
        raise r.error(f"{what}: no room for an address family")
    (family,) = _FAMILY.unpack_from(data, pos)
    size = SOCKADDR_LEN.get(family)
    if size is None:
        raise r.error(f"{what}: address family {family} is neither AF_INET (2) nor AF_INET6 (10)")
    if r.end - pos < size:
        raise r.error(f"{what}: a {size}-byte sockaddr does not fit in the {r.end - pos} bytes left")
    r.pos = pos + size
    return sockaddr_from_wire(data[pos : pos + size], family)


def sockaddr_from_wire(raw: bytes, family: int) -> SockAddr:
    """The sockaddr whose wire form is ``raw`` (of ``family``'s exact size)."""
    return _INTERNED.get(raw) or _decode(raw, family)


def read_sockaddr_pair(r: Reader, what: str) -> tuple[SockAddr, SockAddr]:
    """Linux ``parse_sockaddr_pair``: two sockaddrs of one family packed without a gap.

    The block must hold ``align8(2 * sockaddr_len)`` bytes; bytes after that are ignored,
    as Linux ignores them. Pairs are interned like single addresses: tunnel endpoints
    and key-manager addresses come in the same pairs again and again.
    """
    data, at, end = r.data, r.pos, r.end
    if end - at < 2:
        raise r.error(f"{what}: no room for an address family")
    (family,) = _FAMILY.unpack_from(data, at)
    sizes = _PAIR_SIZES.get(family)
    if sizes is None:
        raise r.error(f"{what}: address family {family} is neither AF_INET (2) nor AF_INET6 (10)")
    size, padded = sizes
    if end - at < padded:
        raise r.error(f"{what}: needs {padded} bytes for two addresses, {end - at} left")
    raw = data[at : at + size]
    pair = _INTERNED_PAIRS.get(raw)
    if pair is None:
        first = read_sockaddr(r, what)
        second = read_sockaddr(r, what)
        if len(second.packed) != len(first.packed):
            raise r.error(f"{what}: the two addresses are of different families", at=at)
        pair = _INTERNED_PAIRS.add(raw, (first, second))
    r.pos = at + size
    return pair


def pack_pair(a: SockAddr, b: SockAddr) -> bytes:
    """Two sockaddrs as one block padded to 8."""
    raw = a.packed + b.packed
    return raw + bytes(align8(len(raw)) - len(raw))


def pack_padded(a: SockAddr) -> bytes:
    raw = a.packed
    return raw + bytes(align8(len(raw)) - len(raw))
