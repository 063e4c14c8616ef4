"""What the engine stores for an SA and a policy, and how Linux writes them as PF_KEY.

Addresses are kept as Linux keeps them, 16-byte ``xfrm_address_t`` values (IPv4 in the
first 4 bytes) beside a family, so that the odd cases (a proxy address of the other
family, say) come out byte for byte as Linux writes them. The encoders follow
``pfkey_xfrm_state2msg`` and ``pfkey_xfrm_policy2msg``: extension order, which
extensions appear when, and every field.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field, fields
from functools import lru_cache
from operator import attrgetter
from socket import htonl, htons
from typing import Any

from pfmigrate._value import builder
from pfmigrate.pfkey.constants import AF_INET, AF_INET6
from pfmigrate.pfkey.extensions import (
    SA,
    SA2,
    Address,
    AddressDst,
    AddressProxy,
    AddressSrc,
    Extension,
    IPsecRequest,
    KeyAuth,
    KeyEncrypt,
    LifetimeCurrent,
    LifetimeHard,
    LifetimeSoft,
    Policy,
    SecCtx,
)
from pfmigrate.pfkey.message import Message
from pfmigrate.pfkey.sockaddr import SockAddr, sockaddr_from_wire
from pfmigrate.sadb.algorithms import Algorithm

# Replies are built without the constructors' checks: every number here is already in
# range (and it is a hot path: every answer and broadcast goes through it).
_SA, _SA2, _KEY_AUTH, _KEY_ENCRYPT = builder(SA), builder(SA2), builder(KeyAuth), builder(KeyEncrypt)
_HARD, _SOFT, _CURRENT = builder(LifetimeHard), builder(LifetimeSoft), builder(LifetimeCurrent)
_SRC, _DST, _PROXY = builder(AddressSrc), builder(AddressDst), builder(AddressProxy)
_REQUEST, _POLICY, _MESSAGE = builder(IPsecRequest), builder(Policy), builder(Message)

INF = (1 << 64) - 1
ZERO = bytes(16)

# XFRM modes and what PF_KEY reports for them.
TRANSPORT, TUNNEL, BEET = 0, 1, 4
MODE_TO_PFKEY = {TRANSPORT: 1, TUNNEL: 2, BEET: 3}
MODE_FROM_PFKEY = {0: TRANSPORT, 1: TRANSPORT, 2: TUNNEL, 3: BEET}

# XFRM state values (km.state) and their PF_KEY report.
ACQ, VALID, ERROR, EXPIRED, DEAD = "acq", "valid", "error", "expired", "dead"

PROTO_TO_SATYPE = {51: 2, 50: 3, 108: 9}

_SIN = struct.Struct("=HH4s8x")
_SIN6 = struct.Struct("=HHI16sI")


def sockaddr(family: int, raw: bytes, port: int = 0) -> SockAddr:
    """The Linux sockaddr Linux writes for an address of ``family`` (interned)."""
    if family == AF_INET:
        return sockaddr_from_wire(_SIN.pack(AF_INET, htons(port), raw[:4]), AF_INET)
    return sockaddr_from_wire(_SIN6.pack(AF_INET6, htons(port), 0, raw, 0), AF_INET6)


_SELECTORS: dict[tuple[int, bytes, int, int, int], tuple[int, bytes, int, int, int]] = {}


def sa_selector(
    family: int, saddr: bytes = ZERO, prefixlen: int = 0, proto: int = 0, sport: int = 0
) -> tuple[int, bytes, int, int, int]:
    """An SA selector, interned (a million SAs made through PF_KEY share a handful)."""
    sel = (family, saddr, prefixlen, proto, sport)
    if len(_SELECTORS) > 4096:
        return sel
    return _SELECTORS.setdefault(sel, sel)


@lru_cache(maxsize=4096)
def sockaddr_bytes(family: int, raw: bytes, port: int = 0) -> bytes:
    """The sockaddr Linux writes for an address of ``family``, as bytes (unpadded)."""
    if family == AF_INET:
        return _SIN.pack(AF_INET, htons(port), raw[:4])
    return _SIN6.pack(AF_INET6, htons(port), 0, raw, 0)


def host_bits(family: int) -> int:
    return 32 if family == AF_INET else 128


def same_address(a: bytes, b: bytes, family: int) -> bool:
    return a[:4] == b[:4] if family == AF_INET else a == b


def prefix_match(address: bytes, prefix: bytes, bits: int) -> bool:
    """Whether the first ``bits`` bits of two addresses agree."""
    whole, rest = divmod(bits, 8)
    if address[:whole] != prefix[:whole]:
        return False
    if rest:
        mask = (0xFF << (8 - rest)) & 0xFF
        return address[whole] & mask == prefix[whole] & mask
    return True


def report_limit(value: int) -> int:
    return 0 if value == INF else value


@dataclass(slots=True)
class SARecord:
    """An ``xfrm_state`` as far as PF_KEY can see or set it."""

    serial: int
    family: int
    daddr: bytes
    saddr: bytes
    spi: int
    proto: int
    mode: int = TRANSPORT
    reqid: int = 0
    replay_window: int = 0
    flags: int = 0  # the sadb_sa_flags bits Linux keeps (NOECN, DECAP_DSCP, NOPMTUDISC)
    # The SA's selector as PF_KEY sets it (family, source, its prefix length, protocol,
    # source port), interned: most SAs share one.
    sel: tuple[int, bytes, int, int, int] = (0, ZERO, 0, 0, 0)
    aalg: Algorithm | None = None
    akey: bytes = field(default=b"", repr=False)
    akey_bits: int = 0
    ealg: Algorithm | None = None
    ekey: bytes = field(default=b"", repr=False)
    ekey_bits: int = 0
    calg: Algorithm | None = None
    # soft/hard byte, soft/hard packet, soft/hard add, soft/hard use
    lft: tuple[int, int, int, int, int, int, int, int] = (INF, INF, INF, INF, 0, 0, 0, 0)
    cur_bytes: int = 0
    cur_packets: int = 0
    add_time: int = 0
    use_time: int = 0
    state: str = VALID
    dying: bool = False
    seq: int = 0  # km.seq
    encap: tuple[int, int, int] | None = None  # type, sport, dport
    sec_ctx: tuple[int, int, bytes] | None = None  # alg, doi, context

    def but(self, **changes: Any) -> SARecord:
        """A copy with some fields changed (``dataclasses.replace`` is five times slower,
        and MIGRATE and every packet copy SAs)."""
        values = list(_sa_values(self))
        for name, value in changes.items():
            values[_SA_FIELD[name]] = value
        return SARecord(*values)

    @property
    def reported_state(self) -> int:
        if self.state == VALID:
            return 2 if self.dying else 1
        return 0 if self.state == ACQ else 3


_SA_FIELDS = tuple(f.name for f in fields(SARecord))
_SA_FIELD = {name: i for i, name in enumerate(_SA_FIELDS)}
_sa_values = attrgetter(*_SA_FIELDS)


_HEADER = struct.Struct("=BBBBHHII")
_SA_EXT = struct.Struct("=HHIBBBBI")
_LIFETIME_EXT = struct.Struct("=HHIQQQ")
_ADDRESS_HEAD = struct.Struct("=HHBBH")
_KEY_HEAD = struct.Struct("=HHHH")
_SA2_EXT = struct.Struct("=HHB3xII")
_NAT_T_TYPE = struct.Struct("=HHB3x")
_NAT_T_PORT = struct.Struct("=HHH2x")
_SEC_CTX_HEAD = struct.Struct("=HHBBH")


def _padded(raw: bytes) -> bytes:
    return raw + bytes(-len(raw) % 8)


@lru_cache(maxsize=4096)
def packed_address_ext(exttype: int, family: int, raw: bytes, prefixlen: int, proto: int, port: int = 0) -> bytes:
    body = _padded(sockaddr_bytes(family, raw, port))
    return _ADDRESS_HEAD.pack(1 + len(body) // 8, exttype, proto, prefixlen, 0) + body


def sa_message(
    sa: SARecord, msg_type: int, seq: int, pid: int, *, keys: bool = True, hsc: int = 3, state: int | None = None
) -> bytes:
    """``pfkey_xfrm_state2msg``: hsc 3 for replies and dumps, 2 hard EXPIRE, 1 soft.

    Packed directly (every answer and broadcast about an SA comes through here); a test
    holds it to the codec's encoding of the same extensions.
    """
    family = sa.family
    auth = sa.aalg.id if sa.aalg is not None else 0
    encrypt = sa.calg.id if sa.calg is not None else sa.ealg.id if sa.ealg is not None else 0
    lft = sa.lft
    parts = [
        _SA_EXT.pack(2, 1, htonl(sa.spi), sa.replay_window, sa.reported_state if state is None else state, auth,
                     encrypt, sa.flags),
    ]  # fmt: skip
    if hsc & 2:
        parts.append(_LIFETIME_EXT.pack(4, 3, report_limit(lft[3]) & 0xFFFFFFFF, report_limit(lft[1]), lft[5], lft[7]))
    if hsc & 1:
        parts.append(_LIFETIME_EXT.pack(4, 4, report_limit(lft[2]) & 0xFFFFFFFF, report_limit(lft[0]), lft[4], lft[6]))
    parts.append(_LIFETIME_EXT.pack(4, 2, sa.cur_packets & 0xFFFFFFFF, sa.cur_bytes, sa.add_time, sa.use_time))
    bits = host_bits(family)
    parts.append(packed_address_ext(5, family, sa.saddr, bits, 0))
    parts.append(packed_address_ext(6, family, sa.daddr, bits, 0))
    _, sel_saddr, sel_prefixlen_s, sel_proto, sel_sport = sa.sel
    if not same_address(sel_saddr, sa.saddr, family):
        parts.append(packed_address_ext(7, family, sel_saddr, sel_prefixlen_s, sel_proto or 255, sel_sport))
    if keys and sa.aalg is not None and sa.akey_bits:
        body = _padded(sa.akey)
        parts.append(_KEY_HEAD.pack(1 + len(body) // 8, 8, sa.akey_bits, 0) + body)
    if keys and sa.ealg is not None and sa.ekey_bits:
        body = _padded(sa.ekey)
        parts.append(_KEY_HEAD.pack(1 + len(body) // 8, 9, sa.ekey_bits, 0) + body)
    parts.append(_SA2_EXT.pack(2, 19, MODE_TO_PFKEY[sa.mode], 0, sa.reqid))
    if sa.encap is not None and sa.encap[0]:
        encap_type, sport, dport = sa.encap
        parts += [_NAT_T_TYPE.pack(1, 20, encap_type), _NAT_T_PORT.pack(1, 21, htons(sport)),
                  _NAT_T_PORT.pack(1, 22, htons(dport))]  # fmt: skip
    if sa.sec_ctx is not None:
        alg, doi, context = sa.sec_ctx
        body = _padded(context)
        parts.append(_SEC_CTX_HEAD.pack(1 + len(body) // 8, 24, alg, doi, len(context)) + body)
    extensions = b"".join(parts)
    satype = PROTO_TO_SATYPE.get(sa.proto, 0)
    return _HEADER.pack(2, msg_type, 0, satype, 2 + len(extensions) // 8, 0, seq, pid) + extensions


# --- policies -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Template:
    """An ``xfrm_tmpl`` as PF_KEY sets it: addresses only for tunnel mode (BEET keeps
    them but never reports them)."""

    proto: int
    mode: int
    reqid: int
    optional: bool
    saddr: bytes = ZERO
    daddr: bytes = ZERO
    family: int = AF_INET6  # encap_family


@dataclass(frozen=True, slots=True)
class Selector:
    """The 56-byte ``xfrm_selector`` as PF_KEY fills it; equal selectors are equal bytes."""

    family: int
    daddr: bytes
    saddr: bytes
    prefixlen_d: int
    prefixlen_s: int
    proto: int  # 0: any
    dport: int
    sport: int


@dataclass(slots=True)
class PolicyRecord:
    serial: int
    index: int
    dir: int  # XFRM: 0 in, 1 out, 2 fwd
    selector: Selector
    action: int = 0  # 0 allow, 1 block
    priority: int = 0
    templates: tuple[Template, ...] = ()
    lft: tuple[int, int, int, int, int, int, int, int] = (INF, INF, INF, INF, 0, 0, 0, 0)
    add_time: int = 0
    use_time: int = 0
    inserted: float = 0.0  # engine time of insertion: the 1-second timer's reference
    sec_ctx: tuple[int, int, bytes] | None = None
    # Lookups prefer the lowest priority, then the lowest position: Linux's order in its
    # hash chains. A replacement of the same priority keeps its place; otherwise it goes
    # after the policies of its priority, as a new one does.
    position: int = 0

    @property
    def rank(self) -> tuple[int, int]:
        return (self.priority, self.position)

    def identity(self) -> tuple[object, ...]:
        """What makes two policies "the same" (Linux: dir, type, selector bytes, context SID)."""
        return (self.dir, self.selector, self.sec_ctx is not None)

    def but(self, **changes: Any) -> PolicyRecord:
        values = list(_policy_values(self))
        for name, value in changes.items():
            values[_POLICY_FIELD[name]] = value
        return PolicyRecord(*values)

    def exact_key(self) -> tuple[int, int, bytes, bytes] | None:
        """A host-to-host selector's key for the outbound lookup, else ``None``."""
        sel = self.selector
        bits = host_bits(sel.family)
        if sel.prefixlen_d != bits or sel.prefixlen_s != bits:
            return None
        return (self.dir, sel.family, sel.daddr, sel.saddr)

    def timer_pending(self, now: float) -> bool:
        """Linux holds a reference while the policy's timer is pending: during the first
        second, and always if the policy has add or use expiry times."""
        return now - self.inserted < 1.0 or any(self.lft[4:])


_POLICY_FIELDS = tuple(f.name for f in fields(PolicyRecord))
_POLICY_FIELD = {name: i for i, name in enumerate(_POLICY_FIELDS)}
_policy_values = attrgetter(*_POLICY_FIELDS)

LEVEL_USE, LEVEL_REQUIRE, LEVEL_UNIQUE = 1, 2, 3


def _request(t: Template) -> IPsecRequest:
    level = LEVEL_USE if t.optional else LEVEL_UNIQUE if t.reqid else LEVEL_REQUIRE
    src = dst = None
    if t.mode == TUNNEL:
        src, dst = sockaddr(t.family, t.saddr), sockaddr(t.family, t.daddr)
    request: IPsecRequest = _REQUEST(t.proto, MODE_TO_PFKEY[t.mode], level, t.reqid, src, dst)
    return request


def policy_extensions(p: PolicyRecord) -> list[Extension]:
    """``pfkey_xfrm_policy2msg``."""
    sel = p.selector
    proto = sel.proto or 255
    lft = p.lft
    ptype = 0 if p.action == 1 else 2 if p.templates else 1
    exts: list[Extension] = [
        _SRC(sockaddr(sel.family, sel.saddr, sel.sport), sel.prefixlen_s, proto),
        _DST(sockaddr(sel.family, sel.daddr, sel.dport), sel.prefixlen_d, proto),
        _HARD(report_limit(lft[3]) & 0xFFFFFFFF, report_limit(lft[1]), lft[5], lft[7]),
        _SOFT(report_limit(lft[2]) & 0xFFFFFFFF, report_limit(lft[0]), lft[4], lft[6]),
        _CURRENT(0, 0, p.add_time, p.use_time),
        _POLICY(ptype, p.dir + 1, p.index, p.priority, tuple(map(_request, p.templates))),
    ]
    if p.sec_ctx is not None:
        exts.append(SecCtx(*p.sec_ctx))
    return exts


def policy_message(
    p: PolicyRecord, msg_type: int, seq: int, pid: int, refcount: int, *, linux_length: bool = False
) -> bytes:
    """``pfkey_xfrm_policy2msg``; ``linux_length`` copies its length bug (below)."""
    message: Message = _MESSAGE(msg_type, 0, seq, pid, 0, tuple(policy_extensions(p)), refcount & 0xFFFF)
    data = message.encode()
    if linux_length:
        wrong = len(data) + _length_error(p)
        if wrong != len(data):
            data = data[:4] + (wrong // 8 & 0xFFFF).to_bytes(2, "little") + data[6:]
    return data


_SOCKADDR_LEN = {AF_INET: 16, AF_INET6: 28}


def _length_error(p: PolicyRecord) -> int:
    """How far off Linux's ``sadb_msg_len`` is for this policy, in bytes.

    Linux sizes the message with two sockaddrs of each template's family, then for each
    transport template (which carries none) takes off two sockaddrs of the family of
    the last *tunnel* template before it. When that family is not the policy's, the
    header's length is 24 bytes off while the bytes themselves are right.
    """
    own = _SOCKADDR_LEN.get(p.selector.family, 28)
    last = own
    error = 0
    for t in p.templates:
        if t.mode == TUNNEL:
            last = _SOCKADDR_LEN.get(t.family, 28)
        else:
            error += 2 * own - 2 * last
    return error


def address_ext(ext: Address) -> tuple[int, bytes, int]:
    """(family, 16-byte address, port) of an address extension."""
    sa = ext.address
    raw = sa.address.packed
    return (AF_INET if len(raw) == 4 else AF_INET6), raw + bytes(16 - len(raw)), sa.port
