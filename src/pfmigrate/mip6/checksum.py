"""The Mobility Header checksum (RFC 6275 §6.1.1): the Internet checksum over an IPv6
pseudo-header (source, destination, upper-layer length, Next Header 135) and the whole
Mobility Header.

The addresses are those of the packet as the receiver sees it once Mobile IPv6 is done
with it: a Binding Update sent from a care-of address with a Home Address option is
summed from the home address, a Binding Acknowledgement sent to a care-of address with a
type 2 routing header is summed to the home address.
"""

from __future__ import annotations

import struct
from ipaddress import IPv6Address
from typing import TypeAlias

from pfmigrate.mip6.constants import IPPROTO_MH

#: An IPv6 address as an object or as text.
Address: TypeAlias = IPv6Address | str

_LENGTH_AND_NEXT = struct.Struct("!I3xB")


def _pseudo_header(src: Address, dst: Address, length: int) -> bytes:
    return IPv6Address(src).packed + IPv6Address(dst).packed + _LENGTH_AND_NEXT.pack(length, IPPROTO_MH)


def _ones_complement_sum(data: bytes) -> int:
    """The 16-bit ones' complement sum of ``data`` (padded to even length).

    As 2**16 is 1 modulo 0xFFFF, a big-endian number is congruent to the sum of its
    16-bit words; the ones' complement sum of words that are not all zero is that
    remainder, with 0xFFFF in place of 0. The pseudo-header always has a non-zero word.
    """
    if len(data) % 2:
        data += b"\0"
    rest = int.from_bytes(data, "big") % 0xFFFF
    return rest or 0xFFFF


def checksum(data: bytes, src: Address, dst: Address) -> int:
    """The value the Checksum field (octets 4 and 5) of the Mobility Header ``data`` must
    hold between ``src`` and ``dst``; the field's present value does not count."""
    if len(data) < 6:
        raise ValueError(f"a {len(data)}-octet Mobility Header has no Checksum field")
    blank = data[:4] + b"\0\0" + data[6:]
    return 0xFFFF - _ones_complement_sum(_pseudo_header(src, dst, len(data)) + blank)


def checksum_ok(data: bytes, src: Address, dst: Address) -> bool:
    """Whether the Mobility Header ``data`` carries the right checksum between ``src`` and ``dst``."""
    return _ones_complement_sum(_pseudo_header(src, dst, len(data)) + bytes(data)) == 0xFFFF
