"""PF_KEY v2 extensions: one class per wire type, registered by number.

Each class quotes its Linux struct (``include/uapi/linux/pfkeyv2.h``). ``pack()`` gives
the whole extension, header included; ``unpack(r)`` reads one from a reader that spans
exactly the extension (its length already checked against the message). Integers are
in host order except SPIs and NAT-T ports, which are big-endian on the wire but plain
numbers here.

Decoding checks what Linux's ``parse_exthdrs`` checks and reads what a handler would
read. Where Linux ignores bytes after a fixed struct, so does ``unpack``; the encoder
always writes the canonical length, so ``encode(decode(b)) == b`` for canonical input.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from socket import htonl, htons, ntohl, ntohs
from typing import Any, ClassVar, Self

from pfmigrate._enum import MemberTable
from pfmigrate._value import InternTable, Value, builder, uint
from pfmigrate._wire import Reader
from pfmigrate.pfkey.constants import (
    AF_INET,
    AF_INET6,
    AuthAlg,
    Direction,
    EncAlg,
    ExtType,
    IdentType,
    IPProto,
    Level,
    Mode,
    PolicyType,
    SAFlags,
    SAState,
)
from pfmigrate.pfkey.sockaddr import (
    SOCKADDR_LEN,
    SockAddr,
    align8,
    pack_padded,
    pack_pair,
    read_sockaddr_pair,
    sockaddr_from_wire,
)

_HDR = struct.Struct("=HH")

# Decoders look enum members up in these tables: a dict lookup instead of an Enum call.
_SASTATE = MemberTable(SAState)
_AUTH = MemberTable(AuthAlg)
_ENC = MemberTable(EncAlg)
_PROTO = MemberTable(IPProto)
_MODE = MemberTable(Mode)
_LEVEL = MemberTable(Level)
_PTYPE = MemberTable(PolicyType)
_DIR = MemberTable(Direction)
_IDENT_TYPE = MemberTable(IdentType)
_PAGE_SIZE = 4096  # the bound Linux puts on a security context


def _hdr(length: int, exttype: int) -> bytes:
    return _HDR.pack(length // 8, exttype)


def _pad(raw: bytes) -> bytes:
    return raw + bytes(align8(len(raw)) - len(raw))


class Extension(Value):
    """Base of every extension. ``exttype`` is the wire number.

    ``unpack`` is only called by the message decoder, which has bounded the reader to
    the extension and checked that it holds at least ``min_len`` bytes; the hot
    decoders read their fixed struct (never longer than ``min_len``) without a second
    check.
    """

    __slots__ = ()
    exttype: int
    #: ``sadb_ext_min_len``: the fewest bytes Linux accepts for this type.
    min_len: ClassVar[int] = 8

    def pack(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        raise NotImplementedError


# --- SA -------------------------------------------------------------------------

_SA = struct.Struct("=HHIBBBBI")


@dataclass(frozen=True, slots=True)
class SA(Extension):
    """``struct sadb_sa`` (16): spi (be32), replay, state, auth, encrypt, flags."""

    exttype = ExtType.SA
    min_len = 16
    spi: int = uint(32, None)
    replay: int = uint(8)
    state: SAState = uint(8, SAState.MATURE)
    auth: AuthAlg = uint(8, AuthAlg.NONE)
    encrypt: EncAlg = uint(8, EncAlg.NONE)
    flags: SAFlags = uint(32, SAFlags(0))

    def pack(self) -> bytes:
        return _SA.pack(2, 1, htonl(self.spi), self.replay, self.state, self.auth, self.encrypt, self.flags)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, spi, replay, state, auth, encrypt, flags = r.unpack(_SA, "sadb_sa")
        sa: Self = _build_sa(ntohl(spi), replay, _SASTATE[state], _AUTH[auth], _ENC[encrypt], SAFlags(flags))
        return sa


_build_sa = builder(SA)


# --- lifetimes ---------------------------------------------------------------------

_LIFETIME = struct.Struct("=HHIQQQ")


@dataclass(frozen=True, slots=True)
class Lifetime(Extension):
    """``struct sadb_lifetime`` (32): allocations, bytes, addtime, usetime."""

    min_len = 32
    allocations: int = uint(32)
    nbytes: int = uint(64)
    addtime: int = uint(64)
    usetime: int = uint(64)

    def pack(self) -> bytes:
        return _LIFETIME.pack(4, self.exttype, self.allocations, self.nbytes, self.addtime, self.usetime)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, allocations, nbytes, addtime, usetime = r.unpack(_LIFETIME, "sadb_lifetime")
        return cls(allocations, nbytes, addtime, usetime)


@dataclass(frozen=True, slots=True)
class LifetimeCurrent(Lifetime):
    exttype = ExtType.LIFETIME_CURRENT


@dataclass(frozen=True, slots=True)
class LifetimeHard(Lifetime):
    exttype = ExtType.LIFETIME_HARD


@dataclass(frozen=True, slots=True)
class LifetimeSoft(Lifetime):
    exttype = ExtType.LIFETIME_SOFT


# --- addresses ---------------------------------------------------------------------

_ADDRESS = struct.Struct("=HHBBH")
_ADDRESS_FAMILY = struct.Struct("=HHBBHH")  # the header and the sockaddr's family
_ADDRESS_EXT_LEN = {AF_INET: 24, AF_INET6: 40}


@dataclass(frozen=True, slots=True)
class Address(Extension):
    """``struct sadb_address`` (8) + one sockaddr padded to 8: proto, prefixlen.

    ``proto`` is the upper-layer protocol of a selector; 255 (``IPProto.ANY``) is any.
    """

    min_len = 8
    address: SockAddr
    prefixlen: int = uint(8, None)
    proto: IPProto = uint(8, IPProto.ANY)

    @classmethod
    def of(cls, text: str, proto: int = IPProto.ANY, port: int = 0) -> Self:
        """From ``"addr"`` or ``"addr/prefixlen"``: ``AddressSrc.of("3ffe::1/128", IPProto.MH)``."""
        addr, _, plen = text.partition("/")
        sockaddr = SockAddr.of(addr, port)
        return cls(sockaddr, int(plen) if plen else sockaddr.address.max_prefixlen, IPProto.of(proto))

    def _check(self) -> None:
        if not isinstance(self.address, SockAddr):
            raise TypeError(f"{type(self).__name__}.address must be a SockAddr, not {self.address!r}")
        if self.prefixlen > self.address.address.max_prefixlen:
            raise ValueError(f"prefix length {self.prefixlen} is too long for {self.address.address}")

    def pack(self) -> bytes:
        body = pack_padded(self.address)
        return _ADDRESS.pack(1 + len(body) // 8, self.exttype, self.proto, self.prefixlen, 0) + body

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        # verify_address_len: exactly one padded sockaddr, 24 bytes (v4) or 40 (v6).
        # The hottest decoder, so it reads header and family in one go.
        at, size = r.pos, r.end - r.pos
        if size < _ADDRESS_FAMILY.size:
            raise r.error(f"a {size}-byte address extension has no room for a sockaddr")
        _, _, proto, prefixlen, _, family = _ADDRESS_FAMILY.unpack_from(r.data, at)
        expected = _ADDRESS_EXT_LEN.get(family)
        if expected is None:
            raise r.error(f"address family {family} is neither AF_INET (2) nor AF_INET6 (10)", at=at + 8)
        if size != expected:
            raise r.error(f"address extension is {size} bytes, Linux requires {expected} for family {family}")
        if prefixlen > (32 if family == AF_INET else 128):
            raise r.error(f"prefix length {prefixlen} is too long for family {family}", at=at + 5)
        raw = r.data[at + 8 : at + 8 + SOCKADDR_LEN[family]]
        r.pos = r.end
        address: Self = _build_address[cls](sockaddr_from_wire(raw, family), prefixlen, _PROTO[proto])
        return address


@dataclass(frozen=True, slots=True)
class AddressSrc(Address):
    exttype = ExtType.ADDRESS_SRC


@dataclass(frozen=True, slots=True)
class AddressDst(Address):
    exttype = ExtType.ADDRESS_DST


@dataclass(frozen=True, slots=True)
class AddressProxy(Address):
    exttype = ExtType.ADDRESS_PROXY


@dataclass(frozen=True, slots=True)
class NatTOA(Address):
    """``SADB_X_EXT_NAT_T_OA``: the NAT-T original address, a ``sadb_address``."""

    exttype = ExtType.X_NAT_T_OA


_build_address: dict[type[Address], Callable[..., Any]] = {
    c: builder(c) for c in (AddressSrc, AddressDst, AddressProxy, NatTOA)
}


# --- keys --------------------------------------------------------------------------

_KEY = struct.Struct("=HHHH")


@dataclass(frozen=True, slots=True)
class Key(Extension):
    """``struct sadb_key`` (8) + ``ceil(bits / 8)`` key bytes padded to 8."""

    min_len = 8
    bits: int = uint(16, None)
    key: bytes = field(default=b"", repr=False)

    @classmethod
    def of(cls, key: bytes) -> Self:
        """A key of ``8 * len(key)`` bits."""
        return cls(8 * len(key), key)

    def _check(self) -> None:
        if (self.bits + 7) // 8 != len(self.key):
            raise ValueError(f"{self.bits} bits need {(self.bits + 7) // 8} key bytes, got {len(self.key)}")

    def pack(self) -> bytes:
        body = _pad(self.key)
        return _KEY.pack(1 + len(body) // 8, self.exttype, self.bits, 0) + body

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        at = r.pos
        size = r.remaining()
        _, _, bits, _ = r.unpack(_KEY, "sadb_key")
        nbytes = (bits + 7) // 8
        if align8(8 + nbytes) > size:
            raise r.error(f"{bits} key bits do not fit in a {size}-byte key extension", at=at)
        return cls(bits, r.take(nbytes, "key"))

    def __repr__(self) -> str:  # never print key material by accident
        return f"{type(self).__name__}(bits={self.bits}, key=<hidden>)"


@dataclass(frozen=True, slots=True, repr=False)
class KeyAuth(Key):
    exttype = ExtType.KEY_AUTH


@dataclass(frozen=True, slots=True, repr=False)
class KeyEncrypt(Key):
    exttype = ExtType.KEY_ENCRYPT


# --- identities ----------------------------------------------------------------------

_IDENT = struct.Struct("=HHHHQ")


@dataclass(frozen=True, slots=True)
class Identity(Extension):
    """``struct sadb_ident`` (16) + an identity string padded with NULs to 8.

    ``data`` is the string without its NUL padding, so it cannot end in NUL itself.
    """

    min_len = 16
    ident_type: IdentType = uint(16, IdentType.RESERVED)
    id: int = uint(64)
    data: bytes = b""

    def _check(self) -> None:
        if self.data.endswith(b"\0"):
            raise ValueError("an identity string cannot end in NUL: trailing NULs are its padding")

    def pack(self) -> bytes:
        body = _pad(self.data)
        return _IDENT.pack(2 + len(body) // 8, self.exttype, self.ident_type, 0, self.id) + body

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, ident_type, _, ident = r.unpack(_IDENT, "sadb_ident")
        return cls(_IDENT_TYPE[ident_type], ident, r.rest().rstrip(b"\0"))


@dataclass(frozen=True, slots=True)
class IdentitySrc(Identity):
    exttype = ExtType.IDENTITY_SRC


@dataclass(frozen=True, slots=True)
class IdentityDst(Identity):
    exttype = ExtType.IDENTITY_DST


# --- sensitivity -----------------------------------------------------------------------

_SENS = struct.Struct("=HHIBBBBI")
_U64 = struct.Struct("=Q")


@dataclass(frozen=True, slots=True)
class Sensitivity(Extension):
    """``struct sadb_sens`` (16) + sensitivity then integrity bitmaps (u64 words)."""

    exttype = ExtType.SENSITIVITY
    min_len = 16
    dpd: int = uint(32)
    sens_level: int = uint(8)
    integ_level: int = uint(8)
    sens_bitmap: tuple[int, ...] = ()
    integ_bitmap: tuple[int, ...] = ()

    def _check(self) -> None:
        for words in (self.sens_bitmap, self.integ_bitmap):
            if len(words) > 0xFF or any(not 0 <= w < 1 << 64 for w in words):
                raise ValueError("a bitmap is at most 255 words of 64 bits")

    def pack(self) -> bytes:
        words = self.sens_bitmap + self.integ_bitmap
        head = _SENS.pack(
            2 + len(words), self.exttype, self.dpd, self.sens_level, len(self.sens_bitmap),
            self.integ_level, len(self.integ_bitmap), 0,
        )  # fmt: skip
        return head + b"".join(_U64.pack(w) for w in words)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, dpd, sens_level, sens_len, integ_level, integ_len, _ = r.unpack(_SENS, "sadb_sens")
        if 8 * (sens_len + integ_len) > r.remaining():
            raise r.error(f"bitmaps of {sens_len}+{integ_len} words overrun the extension")
        sens = tuple(r.unpack(_U64, "bitmap")[0] for _ in range(sens_len))
        integ = tuple(r.unpack(_U64, "bitmap")[0] for _ in range(integ_len))
        return cls(dpd, sens_level, integ_level, sens, integ)


# --- proposals ---------------------------------------------------------------------------

_PROP = struct.Struct("=HHB3x")
_COMB = struct.Struct("=BBHHHHH4xIIQQQQQQ")


@dataclass(frozen=True, slots=True)
class Comb(Value):
    """``struct sadb_comb`` (72): one acceptable algorithm combination and its lifetimes."""

    auth: AuthAlg = uint(8, AuthAlg.NONE)
    encrypt: EncAlg = uint(8, EncAlg.NONE)
    flags: int = uint(16)
    auth_minbits: int = uint(16)
    auth_maxbits: int = uint(16)
    encrypt_minbits: int = uint(16)
    encrypt_maxbits: int = uint(16)
    soft_allocations: int = uint(32)
    hard_allocations: int = uint(32)
    soft_bytes: int = uint(64)
    hard_bytes: int = uint(64)
    soft_addtime: int = uint(64)
    hard_addtime: int = uint(64)
    soft_usetime: int = uint(64)
    hard_usetime: int = uint(64)


@dataclass(frozen=True, slots=True)
class Proposal(Extension):
    """``struct sadb_prop`` (8) + ``sadb_comb`` entries."""

    exttype = ExtType.PROPOSAL
    replay: int = uint(8)
    combs: tuple[Comb, ...] = ()

    def pack(self) -> bytes:
        head = _PROP.pack(1 + 9 * len(self.combs), self.exttype, self.replay)
        return head + b"".join(_COMB.pack(*(getattr(c, n) for n in _COMB_FIELDS)) for c in self.combs)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        (_, _, replay) = r.unpack(_PROP, "sadb_prop")
        combs = []
        while r.remaining() >= _COMB.size:  # like Linux, ignore a partial trailing sadb_comb
            auth, encrypt, *rest = r.unpack(_COMB, "sadb_comb")
            combs.append(Comb(_AUTH[auth], _ENC[encrypt], *rest))
        return cls(replay, tuple(combs))


_COMB_FIELDS = list(Comb.__dataclass_fields__)


# --- supported algorithms ---------------------------------------------------------------

_SUPPORTED = struct.Struct("=HH4x")
_ALG = struct.Struct("=BBHH2x")


@dataclass(frozen=True, slots=True)
class Alg(Value):
    """``struct sadb_alg`` (8). ``id`` is an ``AuthAlg`` or ``EncAlg`` number."""

    id: int = uint(8)
    ivlen: int = uint(8)
    minbits: int = uint(16)
    maxbits: int = uint(16)


@dataclass(frozen=True, slots=True)
class Supported(Extension):
    """``struct sadb_supported`` (8) + ``sadb_alg`` entries."""

    algs: tuple[Alg, ...] = ()

    def pack(self) -> bytes:
        head = _SUPPORTED.pack(1 + len(self.algs), self.exttype)
        return head + b"".join(_ALG.pack(a.id, a.ivlen, a.minbits, a.maxbits) for a in self.algs)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        r.unpack(_SUPPORTED, "sadb_supported")
        return cls(tuple(Alg(*r.unpack(_ALG, "sadb_alg")) for _ in range(r.remaining() // 8)))


@dataclass(frozen=True, slots=True)
class SupportedAuth(Supported):
    exttype = ExtType.SUPPORTED_AUTH


@dataclass(frozen=True, slots=True)
class SupportedEncrypt(Supported):
    exttype = ExtType.SUPPORTED_ENCRYPT


# --- SPI range, kmprivate -------------------------------------------------------------------

_SPIRANGE = struct.Struct("=HHII4x")


@dataclass(frozen=True, slots=True)
class SPIRange(Extension):
    """``struct sadb_spirange`` (16): min, max."""

    exttype = ExtType.SPIRANGE
    min_len = 16
    min: int = uint(32)
    max: int = uint(32, 0xFFFFFFFF)

    def pack(self) -> bytes:
        return _SPIRANGE.pack(2, self.exttype, self.min, self.max)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, lo, hi = r.unpack(_SPIRANGE, "sadb_spirange")
        return cls(lo, hi)


_KMPRIVATE = struct.Struct("=HH4x")


@dataclass(frozen=True, slots=True)
class KMPrivate(Extension):
    """``struct sadb_x_kmprivate`` (8) + opaque key-manager data (a multiple of 8 bytes)."""

    exttype = ExtType.X_KMPRIVATE
    data: bytes = b""

    def _check(self) -> None:
        if len(self.data) % 8:
            raise ValueError(f"kmprivate data is {len(self.data)} bytes, not a multiple of 8")

    def pack(self) -> bytes:
        return _KMPRIVATE.pack(1 + len(self.data) // 8, self.exttype) + self.data

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        r.unpack(_KMPRIVATE, "sadb_x_kmprivate")
        return cls(r.rest())


# --- policy and its requests ------------------------------------------------------------------

_POLICY = struct.Struct("=HHHB1xII")
_REQUEST = struct.Struct("=HHBB2xI4x")


@dataclass(frozen=True, slots=True)
class IPsecRequest(Value):
    """``struct sadb_x_ipsecrequest`` (16, Linux layout, length in bytes) + src, dst.

    ``src``/``dst`` are the tunnel endpoints; Linux sends them for tunnel templates and
    omits them for transport ones.
    """

    proto: IPProto = uint(16, IPProto.ESP)
    mode: Mode = uint(8, Mode.TRANSPORT)
    level: Level = uint(8, Level.REQUIRE)
    reqid: int = uint(32)
    src: SockAddr | None = None
    dst: SockAddr | None = None

    def _check(self) -> None:
        if (self.src is None) != (self.dst is None):
            raise ValueError("a request has both tunnel endpoints or neither")
        if self.src is not None and self.dst is not None and self.src.family != self.dst.family:
            raise ValueError(f"tunnel endpoints {self.src} and {self.dst} are of different families")

    def pack(self) -> bytes:
        pair = b"" if self.src is None or self.dst is None else self.src.packed + self.dst.packed
        return _REQUEST.pack(16 + len(pair), self.proto, self.mode, self.level, self.reqid) + pair


_build_request = builder(IPsecRequest)


_INTERNED_REQUESTS: InternTable[IPsecRequest] = InternTable()


def _read_request(r: Reader) -> IPsecRequest:
    at = r.pos
    length, proto, mode, level, reqid = _REQUEST.unpack_from(r.data, at)  # the caller checked 16 bytes
    if length < _REQUEST.size:
        raise r.error(f"ipsecrequest length {length} is shorter than its 16-byte header")
    outer_end = r.end
    if at + length > outer_end:
        raise r.error(f"ipsecrequest length {length} overruns the policy extension ({outer_end - at} bytes left)")
    raw = r.data[at : at + length]
    request = _INTERNED_REQUESTS.get(raw)
    if request is None:
        src = dst = None
        if length > _REQUEST.size:
            r.pos, r.end = at + _REQUEST.size, at + length  # the endpoints must lie inside this request
            src, dst = read_sockaddr_pair(r, "ipsecrequest endpoints")
            r.end = outer_end
        request = _build_request(_PROTO[proto], _MODE[mode], _LEVEL[level], reqid, src, dst)
        _INTERNED_REQUESTS.add(raw, request)
    r.pos = at + length
    return request


@dataclass(frozen=True, slots=True)
class Policy(Extension):
    """``struct sadb_x_policy`` (16) + ``sadb_x_ipsecrequest`` entries."""

    exttype = ExtType.X_POLICY
    min_len = 16
    type: PolicyType = uint(16, PolicyType.IPSEC)
    dir: Direction = uint(8, Direction.OUTBOUND)
    id: int = uint(32)
    priority: int = uint(32)
    requests: tuple[IPsecRequest, ...] = ()

    def pack(self) -> bytes:
        body = b"".join(rq.pack() for rq in self.requests)
        return _POLICY.pack(2 + len(body) // 8, self.exttype, self.type, self.dir, self.id, self.priority) + body

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, ptype, direction, pid, priority = _POLICY.unpack_from(r.data, r.pos)  # within min_len
        r.pos += _POLICY.size
        requests = []
        # Like Linux, stop when less than a request header is left.
        while r.end - r.pos >= _REQUEST.size:
            requests.append(_read_request(r))
        policy: Self = _build_policy(_PTYPE[ptype], _DIR[direction], pid, priority, tuple(requests))
        return policy


_build_policy = builder(Policy)


# --- SA2, NAT-T ------------------------------------------------------------------------------------

_SA2 = struct.Struct("=HHB3xII")


@dataclass(frozen=True, slots=True)
class SA2(Extension):
    """``struct sadb_x_sa2`` (16): mode, sequence, reqid."""

    exttype = ExtType.X_SA2
    min_len = 16
    mode: Mode = uint(8, Mode.ANY)
    sequence: int = uint(32)
    reqid: int = uint(32)

    def pack(self) -> bytes:
        return _SA2.pack(2, self.exttype, self.mode, self.sequence, self.reqid)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, mode, sequence, reqid = r.unpack(_SA2, "sadb_x_sa2")
        return cls(_MODE[mode], sequence, reqid)


_NAT_T_TYPE = struct.Struct("=HHB3x")


@dataclass(frozen=True, slots=True)
class NatTType(Extension):
    """``struct sadb_x_nat_t_type`` (8): the encapsulation type (2: ESP in UDP)."""

    exttype = ExtType.X_NAT_T_TYPE
    type: int = uint(8)

    def pack(self) -> bytes:
        return _NAT_T_TYPE.pack(1, self.exttype, self.type)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(r.unpack(_NAT_T_TYPE, "sadb_x_nat_t_type")[2])


_NAT_T_PORT = struct.Struct("=HHH2x")


@dataclass(frozen=True, slots=True)
class NatTPort(Extension):
    """``struct sadb_x_nat_t_port`` (8): a UDP port (be16 on the wire)."""

    port: int = uint(16)

    def pack(self) -> bytes:
        return _NAT_T_PORT.pack(1, self.exttype, htons(self.port))

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        return cls(ntohs(r.unpack(_NAT_T_PORT, "sadb_x_nat_t_port")[2]))


@dataclass(frozen=True, slots=True)
class NatTSport(NatTPort):
    exttype = ExtType.X_NAT_T_SPORT


@dataclass(frozen=True, slots=True)
class NatTDport(NatTPort):
    exttype = ExtType.X_NAT_T_DPORT


# --- security context, KMADDRESS, filter -------------------------------------------------------------

_SEC_CTX = struct.Struct("=HHBBH")


@dataclass(frozen=True, slots=True)
class SecCtx(Extension):
    """``struct sadb_x_sec_ctx`` (8) + a context string padded to 8 (at most a page)."""

    exttype = ExtType.X_SEC_CTX
    alg: int = uint(8)
    doi: int = uint(8)
    context: bytes = b""

    def _check(self) -> None:
        if len(self.context) > _PAGE_SIZE:
            raise ValueError(f"a security context is at most {_PAGE_SIZE} bytes, not {len(self.context)}")

    def pack(self) -> bytes:
        body = _pad(self.context)
        return _SEC_CTX.pack(1 + len(body) // 8, self.exttype, self.alg, self.doi, len(self.context)) + body

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        at = r.pos
        size = r.remaining()
        _, _, alg, doi, ctx_len = r.unpack(_SEC_CTX, "sadb_x_sec_ctx")
        if ctx_len > _PAGE_SIZE:
            raise r.error(f"security context of {ctx_len} bytes is longer than a page", at=at + 6)
        if size != align8(8 + ctx_len):  # verify_sec_ctx_len wants the exact length
            raise r.error(f"a {ctx_len}-byte context needs a {align8(8 + ctx_len)}-byte extension, not {size}", at=at)
        return cls(alg, doi, r.take(ctx_len, "security context"))


_KMADDRESS = struct.Struct("=HHI")


@dataclass(frozen=True, slots=True)
class KMAddress(Extension):
    """``struct sadb_x_kmaddress`` (8) + local then remote sockaddr, packed and padded.

    The key managers' (IKE daemons') addresses after a MIGRATE; Linux echoes
    ``reserved`` back in its broadcast, so it is kept.
    """

    exttype = ExtType.X_KMADDRESS
    local: SockAddr
    remote: SockAddr
    reserved: int = uint(32)

    def _check(self) -> None:
        if self.local.family != self.remote.family:
            raise ValueError(f"key-manager addresses {self.local} and {self.remote} are of different families")

    def pack(self) -> bytes:
        body = pack_pair(self.local, self.remote)
        return _KMADDRESS.pack(1 + len(body) // 8, self.exttype, self.reserved) + body

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, reserved = _KMADDRESS.unpack_from(r.data, r.pos)  # within min_len
        r.pos += _KMADDRESS.size
        local, remote = read_sockaddr_pair(r, "kmaddress")
        kmaddress: Self = _build_kmaddress(local, remote, reserved)
        return kmaddress


_build_kmaddress = builder(KMAddress)

_FILTER = struct.Struct("=HH16s16sHBB")


@dataclass(frozen=True, slots=True)
class Filter(Extension):
    """``struct sadb_x_filter`` (40): a dump filter. Addresses are 16 raw bytes, as
    ``xfrm_address_t``; an IPv4 address fills the first 4."""

    exttype = ExtType.X_FILTER
    min_len = 40
    src: bytes = bytes(16)
    dst: bytes = bytes(16)
    family: int = uint(16, AF_INET6)
    src_prefixlen: int = uint(8)
    dst_prefixlen: int = uint(8)

    def _check(self) -> None:
        if len(self.src) != 16 or len(self.dst) != 16:
            raise ValueError("filter addresses are 16 bytes (xfrm_address_t)")

    def pack(self) -> bytes:
        return _FILTER.pack(5, self.exttype, self.src, self.dst, self.family, self.src_prefixlen, self.dst_prefixlen)

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, _, src, dst, family, splen, dplen = r.unpack(_FILTER, "sadb_x_filter")
        return cls(src, dst, family, splen, dplen)


# --- unknown ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnknownExtension(Extension):
    """An extension type this code does not know; kept byte for byte."""

    exttype: int = uint(16, None)
    data: bytes = b""

    def _check(self) -> None:
        if self.exttype <= 26:
            raise ValueError(f"extension type {self.exttype} is a known type")
        if (4 + len(self.data)) % 8:
            raise ValueError("an extension is a whole number of 8-byte units")

    def pack(self) -> bytes:
        return _HDR.pack((4 + len(self.data)) // 8, self.exttype) + self.data

    @classmethod
    def unpack(cls, r: Reader) -> Self:
        _, exttype = r.unpack(_HDR, "sadb_ext")
        return cls(exttype, r.rest())


#: Every known extension class by its wire number.
EXTENSION_CLASSES: dict[int, type[Extension]] = {
    cls.exttype: cls
    for cls in (
        SA, LifetimeCurrent, LifetimeHard, LifetimeSoft, AddressSrc, AddressDst, AddressProxy,
        KeyAuth, KeyEncrypt, IdentitySrc, IdentityDst, Sensitivity, Proposal, SupportedAuth,
        SupportedEncrypt, SPIRange, KMPrivate, Policy, SA2, NatTType, NatTSport, NatTDport,
        NatTOA, SecCtx, KMAddress, Filter,
    )
}  # fmt: skip
