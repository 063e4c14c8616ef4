"""A thin socket shell for Mobility Header messages on Linux: raw bytes in and out.

A raw IPv6 socket of protocol 135 (``IPPROTO_MH``) sends and receives Mobility Headers
without their IPv6 header. What Linux does with it (``net/ipv6/raw.c``, ``mip6.c``):

* Checksum: Linux computes the MH checksum on send and verifies it on receive, at
  offset 4 (``rawv6_init_sk`` sets ``IPV6_CHECKSUM`` to 4 for protocol 135). The
  pseudo-header is the flow's: the home address and the peer's address as the upper
  layer sees them, not the care-of address in the outer header (RFC 6275 §6.1.1
  wants exactly that). A message with a bad checksum is dropped silently (the
  socket's drop counter grows); nothing is reported. So ``send`` takes a message with
  any checksum field (Linux overwrites it) and ``receive`` only ever returns messages
  whose checksum was right. ``checksum=False`` turns the kernel's checksum off (for
  tests that need a wrong one).
* Filter: with ``mip6`` loaded, Linux checks every received MH before delivering it
  to any raw socket (``mip6_mh_filter``): the Header Len must be at least the minimum
  of the type (1 for BU and BA, i.e. 16 octets), and the Payload Proto must be 59;
  otherwise it answers with an ICMPv6 Parameter Problem and drops the message.
* Policy: delivery passes the XFRM inbound policy check (``rawv6_rcv``), so a
  Binding Update that arrived with a Home Address option or a Binding Acknowledgement
  with a type 2 routing header is delivered only where an inbound policy lists the
  matching ro template (``routeopt``), and only with ESP where a policy asks for it.
* Addresses: when Linux has processed a Home Address option, the packet's source
  is the home address, so ``Received.source`` is the home address, and the option as
  reported (``IPV6_RECVDSTOPTS``) holds the care-of address (Linux swapped the two).
  After a type 2 routing header, the destination (``IPV6_PKTINFO``) is the home
  address and the header as reported (``IPV6_RECVRTHDR``) holds the care-of address.
* Sending from the home address (``src``, via ``IPV6_PKTINFO``) is what makes an
  outbound ro policy add the Home Address option (mobile node) or the type 2 routing
  header (home agent). ``send(..., rh2=coa)`` instead puts a type 2 routing header
  in the packet from the socket itself (``IPV6_RTHDR``), as UMIP's home agent does
  for its Binding Acknowledgements; the policies still see the home address as the
  destination, so the ESP transport SA of the BA protects it all the same.

The kernel tier (``tests/kernel/test_handover_plumbing.py``) shows each of these on
Linux 6.1.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Protocol

IPPROTO_MH = 135
SOL_RAW = 255  # Linux's level for IPV6_CHECKSUM on raw sockets
HAO_OPTION = 201  # Home Address option type (RFC 6275 §6.3)
ROUTING_TYPE_2 = 2
ANCILLARY_SPACE = 1024

_PKTINFO = struct.Struct("=16sI")


@dataclass(frozen=True, slots=True)
class Received:
    """One Mobility Header as delivered, with what Linux says about its packet.

    ``source`` is the sender's address after Linux processed the headers (the home
    address of a Home Address option); ``destination`` and ``ifindex`` come from
    ``IPV6_PKTINFO``; ``home_address_option`` is the address in the option as
    delivered (the sender's care-of address) and ``routing_header`` the addresses in a
    type 2 routing header as delivered (our care-of address). ``dstopts`` and
    ``rthdr`` are the raw headers Linux reported.
    """

    data: bytes
    source: IPv6Address
    destination: IPv6Address | None = None
    ifindex: int = 0
    home_address_option: IPv6Address | None = None
    routing_header: tuple[IPv6Address, ...] | None = None
    routing_type: int | None = None
    dstopts: bytes = b""
    rthdr: bytes = b""

    @property
    def care_of_address(self) -> IPv6Address | None:
        """The care-of address the packet carried: the sender's (Home Address option)
        or ours (type 2 routing header)."""
        if self.home_address_option is not None:
            return self.home_address_option
        if self.routing_header and self.routing_type == ROUTING_TYPE_2:
            return self.routing_header[0]
        return None


def home_address_option(dstopts: bytes) -> IPv6Address | None:
    """The address in the first Home Address option of one or more destination
    options headers (as ``IPV6_DSTOPTS`` reports them, one after the other), if any."""
    start = 0
    while start + 2 <= len(dstopts):
        end = min(len(dstopts), start + (dstopts[start + 1] + 1) * 8)
        at = start + 2
        while at < end:
            kind = dstopts[at]
            if kind == 0:  # Pad1
                at += 1
                continue
            if at + 2 > end:
                break
            length = dstopts[at + 1]
            if kind == HAO_OPTION and length == 16 and at + 18 <= end:
                return IPv6Address(dstopts[at + 2 : at + 18])
            at += 2 + length
        start = end
    return None


def routing_addresses(rthdr: bytes) -> tuple[int, tuple[IPv6Address, ...]] | None:
    """The type and the addresses of a type 0 or type 2 routing header."""
    if len(rthdr) < 8:
        return None
    end = min(len(rthdr), (rthdr[1] + 1) * 8)
    return rthdr[2], tuple(IPv6Address(rthdr[at : at + 16]) for at in range(8, end - 15, 16))


def type2_routing_header(address: IPv6Address) -> bytes:
    """A type 2 routing header for ancillary data: Linux fills in the next header."""
    return bytes([0, 2, ROUTING_TYPE_2, 1]) + bytes(4) + address.packed


class MobilityHeaderPort(Protocol):
    """What the agents' daemons need of a Mobility Header socket (``MHSocket`` on Linux;
    a test may stand in for it)."""

    def send(
        self, message: bytes, dst: IPv6Address, *, src: IPv6Address | None = None, rh2: IPv6Address | None = None
    ) -> int: ...

    def receive(self, timeout: float | None = None) -> Received | None: ...


class MHSocket:
    """A raw ``IPPROTO_MH`` socket in the calling thread's network namespace that
    reports packet info, destination options and routing headers with each message."""

    def __init__(self, *, bind: IPv6Address | None = None, checksum: bool = True) -> None:
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, IPPROTO_MH)
        try:
            for option in (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVDSTOPTS, socket.IPV6_RECVRTHDR):
                self.sock.setsockopt(socket.IPPROTO_IPV6, option, 1)
            if not checksum:
                self.sock.setsockopt(SOL_RAW, socket.IPV6_CHECKSUM, -1)
            if bind is not None:
                self.sock.bind((str(bind), 0))
        except BaseException:
            self.sock.close()
            raise

    @property
    def kernel_checksum_offset(self) -> int:
        """Where Linux writes and checks the checksum (-1: it does not)."""
        value: int = self.sock.getsockopt(SOL_RAW, socket.IPV6_CHECKSUM)
        return value

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(
        self,
        message: bytes,
        dst: IPv6Address,
        *,
        src: IPv6Address | None = None,
        ifindex: int = 0,
        rh2: IPv6Address | None = None,
    ) -> int:
        """Send one Mobility Header to ``dst``, from ``src`` if given (the home address
        when the kernel's ro state is to add a Home Address option), with a type 2
        routing header to ``rh2`` if given. Returns the bytes sent."""
        ancillary: list[tuple[int, int, bytes]] = []
        if src is not None or ifindex:
            info = _PKTINFO.pack((src or IPv6Address(0)).packed, ifindex)
            ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info))
        if rh2 is not None:
            ancillary.append((socket.IPPROTO_IPV6, socket.IPV6_RTHDR, type2_routing_header(rh2)))
        return self.sock.sendmsg([message], ancillary, 0, (str(dst), 0, 0, 0))

    def receive(self, timeout: float | None = None, *, size: int = 2048) -> Received | None:
        """The next Mobility Header, or ``None`` after ``timeout`` seconds (0: only
        what is already queued)."""
        self.sock.settimeout(timeout)  # a timeout of 0 makes the socket non-blocking
        try:
            data, ancillary, _, address = self.sock.recvmsg(size, ANCILLARY_SPACE)
        except (TimeoutError, BlockingIOError):
            return None
        destination: IPv6Address | None = None
        ifindex = 0
        dstopts = rthdr = b""
        for level, kind, value in ancillary:
            if level != socket.IPPROTO_IPV6:
                continue
            if kind == socket.IPV6_PKTINFO and len(value) >= _PKTINFO.size:
                raw, ifindex = _PKTINFO.unpack_from(value)
                destination = IPv6Address(raw)
            elif kind == socket.IPV6_DSTOPTS:
                dstopts += value
            elif kind == socket.IPV6_RTHDR:
                rthdr = value
        routing = routing_addresses(rthdr) if rthdr else None
        return Received(
            data,
            IPv6Address(address[0].split("%")[0]),
            destination,
            ifindex,
            home_address_option(dstopts) if dstopts else None,
            routing[1] if routing else None,
            routing[0] if routing else None,
            dstopts,
            rthdr,
        )

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MHSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
