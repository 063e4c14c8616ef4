"""The fixed C structs of XFRM netlink, with Linux's natural alignment (x86-64).

Each class quotes its struct from ``include/uapi/linux/xfrm.h`` with byte offsets.
Integers are in host order except SPIs and ports, which are big-endian on the wire but
plain numbers here. An ``xfrm_address_t`` is 16 bytes; where the struct says which
family it holds, it becomes an ``IPv4Address`` (the first 4 bytes) or an
``IPv6Address``; an address of another family (AF_UNSPEC selectors of SAs) is kept as
its 16 bytes in an ``IPv6Address``, so nothing is lost.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from socket import htonl, htons, ntohl, ntohs
from typing import Any, ClassVar, Self

from pfmigrate._value import Value, uint
from pfmigrate.xfrm.constants import AF_INET, AF_INET6, XFRM_INF, Mode, PolicyAction, PolicyDir, Share

IPAddress = IPv4Address | IPv6Address
ANY6 = IPv6Address(0)


def addr_from_wire(raw: bytes, family: int) -> IPAddress:
    if family == AF_INET:
        return IPv4Address(raw[:4])
    return IPv6Address(raw)


def addr_to_wire(address: IPAddress) -> bytes:
    packed = address.packed
    return packed + bytes(16 - len(packed))


def family_of(address: IPAddress) -> int:
    return AF_INET if address.version == 4 else AF_INET6


def _ip(value: Any) -> IPAddress:
    return value if isinstance(value, IPv4Address | IPv6Address) else ipaddress.ip_address(value)


class CStruct(Value):
    """A fixed-size struct: ``SIZE`` bytes, ``pack()``, and ``unpack(raw)`` from exactly
    ``SIZE`` bytes (the caller's reader has checked that they are there)."""

    __slots__ = ()
    SIZE: ClassVar[int]

    def pack(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        raise NotImplementedError


_SELECTOR = struct.Struct("=16s16sHHHHHBBB3xiI")


@dataclass(frozen=True, slots=True)
class Selector(CStruct):
    """``struct xfrm_selector`` (56): 0 daddr · 16 saddr · 32 dport · 34 dport_mask ·
    36 sport · 38 sport_mask · 40 family · 42 prefixlen_d · 43 prefixlen_s · 44 proto ·
    48 ifindex · 52 user."""

    SIZE = 56
    daddr: IPAddress = ANY6
    saddr: IPAddress = ANY6
    dport: int = uint(16)
    dport_mask: int = uint(16)
    sport: int = uint(16)
    sport_mask: int = uint(16)
    family: int = uint(16, AF_INET6)
    prefixlen_d: int = uint(8)
    prefixlen_s: int = uint(8)
    proto: int = uint(8)
    ifindex: int = 0
    user: int = uint(32)

    def _check(self) -> None:
        object.__setattr__(self, "daddr", _ip(self.daddr))
        object.__setattr__(self, "saddr", _ip(self.saddr))
        if not -(1 << 31) <= self.ifindex < 1 << 31:
            raise ValueError(f"ifindex {self.ifindex} is not an int32")

    @classmethod
    def of(cls, src: str, dst: str, proto: int = 0, sport: int = 0, dport: int = 0) -> Selector:
        """From ``"addr/len"`` strings: ``Selector.of("3ffe::1/128", "3ffe::2/128", 135)``."""
        s, d = ipaddress.ip_network(src, strict=False), ipaddress.ip_network(dst, strict=False)
        if s.version != d.version:
            raise ValueError(f"selector addresses {src} and {dst} are of different families")
        return cls(
            d.network_address, s.network_address, dport, 0xFFFF if dport else 0, sport, 0xFFFF if sport else 0,
            AF_INET if s.version == 4 else AF_INET6, d.prefixlen, s.prefixlen, proto,
        )  # fmt: skip

    def pack(self) -> bytes:
        return _SELECTOR.pack(
            addr_to_wire(self.daddr), addr_to_wire(self.saddr), htons(self.dport), htons(self.dport_mask),
            htons(self.sport), htons(self.sport_mask), self.family, self.prefixlen_d, self.prefixlen_s, self.proto,
            self.ifindex, self.user,
        )  # fmt: skip

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        daddr, saddr, dport, dmask, sport, smask, family, pd, ps, proto, ifindex, user = _SELECTOR.unpack(raw)
        return cls(
            addr_from_wire(daddr, family), addr_from_wire(saddr, family), ntohs(dport), ntohs(dmask), ntohs(sport),
            ntohs(smask), family, pd, ps, proto, ifindex, user,
        )  # fmt: skip


_ID = struct.Struct("=16sIB3x")


@dataclass(frozen=True, slots=True)
class XfrmId(CStruct):
    """``struct xfrm_id`` (24): 0 daddr · 16 spi (be32) · 20 proto. The family comes
    from the enclosing struct."""

    SIZE = 24
    daddr: IPAddress = ANY6
    spi: int = uint(32)
    proto: int = uint(8, 50)

    def _check(self) -> None:
        object.__setattr__(self, "daddr", _ip(self.daddr))

    def pack(self) -> bytes:
        return _ID.pack(addr_to_wire(self.daddr), htonl(self.spi), self.proto)

    @classmethod
    def unpack_family(cls, raw: bytes, family: int) -> Self:
        daddr, spi, proto = _ID.unpack(raw)
        return cls(addr_from_wire(daddr, family), ntohl(spi), proto)


_LIFETIME_CFG = struct.Struct("=8Q")


@dataclass(frozen=True, slots=True)
class LifetimeCfg(CStruct):
    """``struct xfrm_lifetime_cfg`` (64): soft/hard byte, packet, add and use limits;
    ``XFRM_INF`` means none."""

    SIZE = 64
    soft_byte_limit: int = uint(64, XFRM_INF)
    hard_byte_limit: int = uint(64, XFRM_INF)
    soft_packet_limit: int = uint(64, XFRM_INF)
    hard_packet_limit: int = uint(64, XFRM_INF)
    soft_add_expires_seconds: int = uint(64)
    hard_add_expires_seconds: int = uint(64)
    soft_use_expires_seconds: int = uint(64)
    hard_use_expires_seconds: int = uint(64)

    def pack(self) -> bytes:
        return _LIFETIME_CFG.pack(
            self.soft_byte_limit, self.hard_byte_limit, self.soft_packet_limit, self.hard_packet_limit,
            self.soft_add_expires_seconds, self.hard_add_expires_seconds, self.soft_use_expires_seconds,
            self.hard_use_expires_seconds,
        )  # fmt: skip

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(*_LIFETIME_CFG.unpack(raw))


_LIFETIME_CUR = struct.Struct("=4Q")


@dataclass(frozen=True, slots=True)
class LifetimeCur(CStruct):
    """``struct xfrm_lifetime_cur`` (32): bytes (``nbytes`` here), packets, add_time, use_time."""

    SIZE = 32
    nbytes: int = uint(64)
    packets: int = uint(64)
    add_time: int = uint(64)
    use_time: int = uint(64)

    def pack(self) -> bytes:
        return _LIFETIME_CUR.pack(self.nbytes, self.packets, self.add_time, self.use_time)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(*_LIFETIME_CUR.unpack(raw))


_STATS = struct.Struct("=3I")


@dataclass(frozen=True, slots=True)
class Stats(CStruct):
    """``struct xfrm_stats`` (12): replay_window, replay, integrity_failed."""

    SIZE = 12
    replay_window: int = uint(32)
    replay: int = uint(32)
    integrity_failed: int = uint(32)

    def pack(self) -> bytes:
        return _STATS.pack(self.replay_window, self.replay, self.integrity_failed)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(*_STATS.unpack(raw))


_SA_TAIL = struct.Struct("=IIHBBB7x")


@dataclass(frozen=True, slots=True)
class UsersaInfo(CStruct):
    """``struct xfrm_usersa_info`` (224): 0 sel · 56 id · 80 saddr · 96 lft · 160 curlft ·
    192 stats · 204 seq · 208 reqid · 212 family · 214 mode · 215 replay_window · 216 flags."""

    SIZE = 224
    sel: Selector = Selector()
    id: XfrmId = XfrmId()
    saddr: IPAddress = ANY6
    lft: LifetimeCfg = LifetimeCfg()
    curlft: LifetimeCur = LifetimeCur()
    stats: Stats = Stats()
    seq: int = uint(32)
    reqid: int = uint(32)
    family: int = uint(16, AF_INET6)
    mode: Mode = uint(8, Mode.TRANSPORT)
    replay_window: int = uint(8)
    flags: int = uint(8)

    def _check(self) -> None:
        object.__setattr__(self, "saddr", _ip(self.saddr))

    def pack(self) -> bytes:
        return b"".join(
            (
                self.sel.pack(), self.id.pack(), addr_to_wire(self.saddr), self.lft.pack(), self.curlft.pack(),
                self.stats.pack(),
                _SA_TAIL.pack(self.seq, self.reqid, self.family, self.mode, self.replay_window, self.flags),
            )
        )  # fmt: skip

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        seq, reqid, family, mode, replay_window, flags = _SA_TAIL.unpack_from(raw, 204)
        return cls(
            Selector.unpack(raw[0:56]), XfrmId.unpack_family(raw[56:80], family), addr_from_wire(raw[80:96], family),
            LifetimeCfg.unpack(raw[96:160]), LifetimeCur.unpack(raw[160:192]), Stats.unpack(raw[192:204]),
            seq, reqid, family, Mode.of(mode), replay_window, flags,
        )  # fmt: skip


_USERSA_ID = struct.Struct("=16sIHB1x")


@dataclass(frozen=True, slots=True)
class UsersaId(CStruct):
    """``struct xfrm_usersa_id`` (24): 0 daddr · 16 spi (be32) · 20 family · 22 proto."""

    SIZE = 24
    daddr: IPAddress = ANY6
    spi: int = uint(32)
    family: int = uint(16, AF_INET6)
    proto: int = uint(8, 50)

    def _check(self) -> None:
        object.__setattr__(self, "daddr", _ip(self.daddr))

    def pack(self) -> bytes:
        return _USERSA_ID.pack(addr_to_wire(self.daddr), htonl(self.spi), self.family, self.proto)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        daddr, spi, family, proto = _USERSA_ID.unpack(raw)
        return cls(addr_from_wire(daddr, family), ntohl(spi), family, proto)


_AEVENT_TAIL = struct.Struct("=16sII")


@dataclass(frozen=True, slots=True)
class AeventId(CStruct):
    """``struct xfrm_aevent_id`` (48), of NEWAE and GETAE: 0 sa_id · 24 saddr · 40 flags
    (``XFRM_AE_*``: which values a GETAE asks for, what caused a NEWAE) · 44 reqid. The
    source address is in the family of ``sa_id``."""

    SIZE = 48
    sa_id: UsersaId = UsersaId()
    saddr: IPAddress = ANY6
    flags: int = uint(32)
    reqid: int = uint(32)

    def _check(self) -> None:
        object.__setattr__(self, "saddr", _ip(self.saddr))

    def pack(self) -> bytes:
        return self.sa_id.pack() + _AEVENT_TAIL.pack(addr_to_wire(self.saddr), self.flags, self.reqid)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        sa_id = UsersaId.unpack(raw[:24])
        saddr, flags, reqid = _AEVENT_TAIL.unpack_from(raw, 24)
        return cls(sa_id, addr_from_wire(saddr, sa_id.family), flags, reqid)


_SPI_RANGE = struct.Struct("=II")


@dataclass(frozen=True, slots=True)
class UserspiInfo(CStruct):
    """``struct xfrm_userspi_info`` (232): 0 info · 224 min · 228 max."""

    SIZE = 232
    info: UsersaInfo = UsersaInfo()
    min: int = uint(32, 0x100)
    max: int = uint(32, 0xFFFFFFFF)

    def pack(self) -> bytes:
        return self.info.pack() + _SPI_RANGE.pack(self.min, self.max)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(UsersaInfo.unpack(raw[:224]), *_SPI_RANGE.unpack_from(raw, 224))


_POLICY_TAIL = struct.Struct("=IIBBBB4x")


@dataclass(frozen=True, slots=True)
class UserpolicyInfo(CStruct):
    """``struct xfrm_userpolicy_info`` (168): 0 sel · 56 lft · 120 curlft · 152 priority ·
    156 index · 160 dir · 161 action · 162 flags · 163 share."""

    SIZE = 168
    sel: Selector = Selector()
    lft: LifetimeCfg = LifetimeCfg()
    curlft: LifetimeCur = LifetimeCur()
    priority: int = uint(32)
    index: int = uint(32)
    dir: PolicyDir = uint(8, PolicyDir.OUT)
    action: PolicyAction = uint(8, PolicyAction.ALLOW)
    flags: int = uint(8)
    share: Share = uint(8, Share.ANY)

    def pack(self) -> bytes:
        tail = _POLICY_TAIL.pack(self.priority, self.index, self.dir, self.action, self.flags, self.share)
        return self.sel.pack() + self.lft.pack() + self.curlft.pack() + tail

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        priority, index, direction, action, flags, share = _POLICY_TAIL.unpack_from(raw, 152)
        return cls(
            Selector.unpack(raw[0:56]), LifetimeCfg.unpack(raw[56:120]), LifetimeCur.unpack(raw[120:152]),
            priority, index, PolicyDir.of(direction), PolicyAction.of(action), flags, Share.of(share),
        )  # fmt: skip


_POLICY_ID_TAIL = struct.Struct("=IB3x")


@dataclass(frozen=True, slots=True)
class UserpolicyId(CStruct):
    """``struct xfrm_userpolicy_id`` (64): 0 sel · 56 index · 60 dir."""

    SIZE = 64
    sel: Selector = Selector()
    index: int = uint(32)
    dir: PolicyDir = uint(8, PolicyDir.OUT)

    def pack(self) -> bytes:
        return self.sel.pack() + _POLICY_ID_TAIL.pack(self.index, self.dir)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        index, direction = _POLICY_ID_TAIL.unpack_from(raw, 56)
        return cls(Selector.unpack(raw[0:56]), index, PolicyDir.of(direction))


_ACQUIRE_TAIL = struct.Struct("=4I")


@dataclass(frozen=True, slots=True)
class UserAcquire(CStruct):
    """``struct xfrm_user_acquire`` (280): 0 id · 24 saddr · 40 sel · 96 policy ·
    264 aalgos · 268 ealgos · 272 calgos · 276 seq."""

    SIZE = 280
    id: XfrmId = XfrmId()
    saddr: IPAddress = ANY6
    sel: Selector = Selector()
    policy: UserpolicyInfo = UserpolicyInfo()
    aalgos: int = uint(32)
    ealgos: int = uint(32)
    calgos: int = uint(32)
    seq: int = uint(32)

    def _check(self) -> None:
        object.__setattr__(self, "saddr", _ip(self.saddr))

    def pack(self) -> bytes:
        tail = _ACQUIRE_TAIL.pack(self.aalgos, self.ealgos, self.calgos, self.seq)
        return self.id.pack() + addr_to_wire(self.saddr) + self.sel.pack() + self.policy.pack() + tail

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        """The SA's addresses are in its template's family, which the struct does not hold
        (``XFRMA_TMPL`` does): they are read in the selector's family, or as IPv6 when
        that would drop bytes (an IPv6 tunnel for IPv4 traffic)."""
        policy = UserpolicyInfo.unpack(raw[96:264])
        sel = Selector.unpack(raw[40:96])
        family = sel.family or policy.sel.family
        if family == AF_INET and (any(raw[4:16]) or any(raw[28:40])):
            family = AF_INET6
        return cls(
            XfrmId.unpack_family(raw[0:24], family), addr_from_wire(raw[24:40], family),
            sel, policy, *_ACQUIRE_TAIL.unpack_from(raw, 264),
        )  # fmt: skip


_HARD = struct.Struct("=B7x")


@dataclass(frozen=True, slots=True)
class UserExpire(CStruct):
    """``struct xfrm_user_expire`` (232): 0 state · 224 hard."""

    SIZE = 232
    state: UsersaInfo = UsersaInfo()
    hard: int = uint(8)

    def pack(self) -> bytes:
        return self.state.pack() + _HARD.pack(self.hard)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(UsersaInfo.unpack(raw[:224]), raw[224])


@dataclass(frozen=True, slots=True)
class UserPolexpire(CStruct):
    """``struct xfrm_user_polexpire`` (176): 0 pol · 168 hard."""

    SIZE = 176
    pol: UserpolicyInfo = UserpolicyInfo()
    hard: int = uint(8)

    def pack(self) -> bytes:
        return self.pol.pack() + _HARD.pack(self.hard)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(UserpolicyInfo.unpack(raw[:168]), raw[168])


@dataclass(frozen=True, slots=True)
class UsersaFlush(CStruct):
    """``struct xfrm_usersa_flush`` (1): proto (255: every protocol)."""

    SIZE = 1
    proto: int = uint(8, 255)

    def pack(self) -> bytes:
        return bytes([self.proto])

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        return cls(raw[0])


_TMPL = struct.Struct("=24sH2x16sIBBB1xIII")


@dataclass(frozen=True, slots=True)
class UserTmpl(CStruct):
    """``struct xfrm_user_tmpl`` (64): 0 id · 24 family · 28 saddr · 44 reqid · 48 mode ·
    49 share · 50 optional · 52 aalgos · 56 ealgos · 60 calgos."""

    SIZE = 64
    id: XfrmId = XfrmId()
    family: int = uint(16, AF_INET6)
    saddr: IPAddress = ANY6
    reqid: int = uint(32)
    mode: Mode = uint(8, Mode.TRANSPORT)
    share: Share = uint(8, Share.ANY)
    optional: int = uint(8)
    aalgos: int = uint(32, 0xFFFFFFFF)
    ealgos: int = uint(32, 0xFFFFFFFF)
    calgos: int = uint(32, 0xFFFFFFFF)

    def _check(self) -> None:
        object.__setattr__(self, "saddr", _ip(self.saddr))

    def pack(self) -> bytes:
        return _TMPL.pack(
            self.id.pack(), self.family, addr_to_wire(self.saddr), self.reqid, self.mode, self.share, self.optional,
            self.aalgos, self.ealgos, self.calgos,
        )  # fmt: skip

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        id_raw, family, saddr, reqid, mode, share, optional, aalgos, ealgos, calgos = _TMPL.unpack(raw)
        return cls(
            XfrmId.unpack_family(id_raw, family), family, addr_from_wire(saddr, family), reqid, Mode.of(mode),
            Share.of(share), optional, aalgos, ealgos, calgos,
        )  # fmt: skip


_MIGRATE = struct.Struct("=16s16s16s16sBBHIHH")


@dataclass(frozen=True, slots=True)
class UserMigrate(CStruct):
    """``struct xfrm_user_migrate`` (76): 0 old_daddr · 16 old_saddr · 32 new_daddr ·
    48 new_saddr · 64 proto · 65 mode · 68 reqid · 72 old_family · 74 new_family.

    Note the order: destination before source, unlike PF_KEY's requests.
    """

    SIZE = 76
    old_daddr: IPAddress = ANY6
    old_saddr: IPAddress = ANY6
    new_daddr: IPAddress = ANY6
    new_saddr: IPAddress = ANY6
    proto: int = uint(8, 50)
    mode: Mode = uint(8, Mode.TUNNEL)
    reqid: int = uint(32)
    old_family: int = uint(16, AF_INET6)
    new_family: int = uint(16, AF_INET6)

    def _check(self) -> None:
        for name in ("old_daddr", "old_saddr", "new_daddr", "new_saddr"):
            object.__setattr__(self, name, _ip(getattr(self, name)))

    def pack(self) -> bytes:
        return _MIGRATE.pack(
            addr_to_wire(self.old_daddr), addr_to_wire(self.old_saddr), addr_to_wire(self.new_daddr),
            addr_to_wire(self.new_saddr), self.proto, self.mode, 0, self.reqid, self.old_family, self.new_family,
        )  # fmt: skip

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        od, os_, nd, ns, proto, mode, _, reqid, of, nf = _MIGRATE.unpack(raw)
        return cls(
            addr_from_wire(od, of), addr_from_wire(os_, of), addr_from_wire(nd, nf), addr_from_wire(ns, nf),
            proto, Mode.of(mode), reqid, of, nf,
        )  # fmt: skip


_KMADDRESS = struct.Struct("=16s16sIH2x")


@dataclass(frozen=True, slots=True)
class UserKmaddress(CStruct):
    """``struct xfrm_user_kmaddress`` (40): 0 local · 16 remote · 32 reserved · 36 family."""

    SIZE = 40
    local: IPAddress = ANY6
    remote: IPAddress = ANY6
    reserved: int = uint(32)
    family: int = uint(16, AF_INET6)

    def _check(self) -> None:
        object.__setattr__(self, "local", _ip(self.local))
        object.__setattr__(self, "remote", _ip(self.remote))

    def pack(self) -> bytes:
        return _KMADDRESS.pack(addr_to_wire(self.local), addr_to_wire(self.remote), self.reserved, self.family)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        local, remote, reserved, family = _KMADDRESS.unpack(raw)
        return cls(addr_from_wire(local, family), addr_from_wire(remote, family), reserved, family)


_ENCAP = struct.Struct("=HHH2x16s")


@dataclass(frozen=True, slots=True)
class EncapTmpl(CStruct):
    """``struct xfrm_encap_tmpl`` (24): 0 encap_type · 2 sport (be16) · 4 dport (be16) ·
    8 encap_oa (16 raw bytes: its family is not given)."""

    SIZE = 24
    encap_type: int = uint(16, 2)  # UDP_ENCAP_ESPINUDP
    sport: int = uint(16, 4500)
    dport: int = uint(16, 4500)
    oa: bytes = bytes(16)

    def _check(self) -> None:
        if len(self.oa) != 16:
            raise ValueError(f"encap_oa is an xfrm_address_t of 16 bytes, not {len(self.oa)}")

    def pack(self) -> bytes:
        return _ENCAP.pack(self.encap_type, htons(self.sport), htons(self.dport), self.oa)

    @classmethod
    def unpack(cls, raw: bytes) -> Self:
        encap_type, sport, dport, oa = _ENCAP.unpack(raw)
        return cls(encap_type, ntohs(sport), ntohs(dport), oa)
