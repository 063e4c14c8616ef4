"""The SA requests: GETSPI, UPDATE, ADD, DELETE, GET, ACQUIRE, REGISTER, FLUSH, DUMP and
X_PROMISC, as Linux 6.1 ``af_key`` and ``xfrm_state`` handle them.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from pfmigrate.pfkey.constants import AF_INET, AF_INET6, MsgType, SAType
from pfmigrate.pfkey.extensions import (
    SA,
    SA2,
    AddressProxy,
    Alg,
    Filter,
    KeyAuth,
    KeyEncrypt,
    LifetimeHard,
    LifetimeSoft,
    NatTDport,
    NatTSport,
    NatTType,
    SecCtx,
    SPIRange,
    SupportedAuth,
    SupportedEncrypt,
)
from pfmigrate.pfkey.message import Message
from pfmigrate.sadb import algorithms
from pfmigrate.sadb.core import ACQ_EXPIRES, ALL, ONE, REGISTERED, SATYPE_TO_PROTO, Delivery, Request, header_only
from pfmigrate.sadb.records import (
    ACQ,
    DEAD,
    ERROR,
    INF,
    MODE_FROM_PFKEY,
    PROTO_TO_SATYPE,
    TUNNEL,
    VALID,
    SARecord,
    address_ext,
    host_bits,
    prefix_match,
    sa_message,
    sa_selector,
)
from pfmigrate.sadb.wire import Refused, address_raw, extension

if TYPE_CHECKING:
    from pfmigrate.sadb.engine import Engine


def _addresses(req: Request) -> tuple[int, bytes, bytes, int]:
    """SRC and DST, present and of one family (``present_and_same_family``)."""
    src, dst = req.exts.get(5), req.exts.get(6)
    if src is None or dst is None:
        raise Refused(errno.EINVAL, "SRC and DST are needed")
    s_family, d_family = int.from_bytes(src[8:10], "little"), int.from_bytes(dst[8:10], "little")
    if s_family != d_family or s_family not in (AF_INET, AF_INET6):
        raise Refused(errno.EINVAL, "SRC and DST are of different or unknown families")
    family, saddr, _, _, proto = address_raw(src)
    _, daddr, _, _, _ = address_raw(dst)
    return family, saddr, daddr, proto


def _limit(value: int) -> int:
    return value if value else INF


def security_context(req: Request) -> tuple[int, int, bytes] | None:
    """SELinux with no policy loaded, as the testbed: the context is kept with a NUL added."""
    ctx = extension(req.exts, SecCtx)
    if ctx is None:
        return None
    if ctx.doi != 1 or ctx.alg != 1:
        raise Refused(errno.EINVAL, "security context of an unknown DOI or algorithm")
    if len(ctx.context) >= 4096:
        raise Refused(errno.ENOMEM, "security context too long")
    if not ctx.context:
        raise Refused(errno.EINVAL, "empty security context")
    return (ctx.alg, ctx.doi, ctx.context + b"\0")


def state_from_request(engine: Engine, req: Request) -> SARecord:
    """``pfkey_msg2xfrm_state`` and ``xfrm_init_state``: an SA built from ADD or UPDATE."""
    exts = req.exts
    sa = extension(exts, SA)
    if sa is None or 5 not in exts or 6 not in exts:
        raise Refused(errno.EINVAL, "SA, SRC and DST are needed")
    family, saddr, daddr, _ = _addresses(req)
    if (req.satype == 3 and 9 not in exts) or (req.satype == 2 and 8 not in exts):
        raise Refused(errno.EINVAL, "ESP needs an encryption key, AH an authentication key")
    if (3 in exts) != (4 in exts):
        raise Refused(errno.EINVAL, "hard and soft lifetimes come together")
    proto = SATYPE_TO_PROTO.get(req.satype)
    if proto is None:
        raise Refused(errno.EINVAL, f"satype {req.satype} is not ESP, AH or IPComp")
    if sa.auth > 251 or (req.satype == 9 and sa.encrypt > 4) or sa.encrypt > 253:
        raise Refused(errno.EINVAL, "algorithm number out of range")
    key_auth, key_enc = extension(exts, KeyAuth), extension(exts, KeyEncrypt)
    if key_auth is not None and sa.auth != 251 and key_auth.bits == 0:
        raise Refused(errno.EINVAL, "an authentication key of 0 bits")
    if key_enc is not None and sa.encrypt != 11 and key_enc.bits == 0:
        raise Refused(errno.EINVAL, "an encryption key of 0 bits")
    hard, soft = extension(exts, LifetimeHard), extension(exts, LifetimeSoft)
    lft = (
        _limit(soft.nbytes) if soft else INF, _limit(hard.nbytes) if hard else INF,
        _limit(soft.allocations) if soft else INF, _limit(hard.allocations) if hard else INF,
        soft.addtime if soft else 0, hard.addtime if hard else 0, soft.usetime if soft else 0,
        hard.usetime if hard else 0,
    )  # fmt: skip
    flags = sa.flags & 0xE0000000
    sec_ctx = security_context(req)
    record = SARecord(
        engine.next_serial(), family, daddr, saddr, sa.spi, proto, replay_window=min(sa.replay, 32), flags=flags,
        lft=lft, add_time=int(req.now), sec_ctx=sec_ctx,
    )  # fmt: skip
    if sa.auth:
        aalg = algorithms.AUTH_BY_ID.get(sa.auth)
        if aalg is None:
            raise Refused(errno.ENOSYS, f"no authentication algorithm {sa.auth}")
        record.aalg = aalg
        if key_auth is not None:
            record.akey, record.akey_bits = key_auth.key, key_auth.bits
    if sa.encrypt:
        if req.satype == 9:
            calg = algorithms.COMPRESS_BY_ID.get(sa.encrypt)
            if calg is None:
                raise Refused(errno.ENOSYS, f"no compression algorithm {sa.encrypt}")
            record.calg = calg
        else:
            ealg = algorithms.ENCRYPT_BY_ID.get(sa.encrypt)
            if ealg is None:
                raise Refused(errno.ENOSYS, f"no encryption algorithm {sa.encrypt}")
            record.ealg = ealg
            if key_enc is not None:
                record.ekey, record.ekey_bits = key_enc.key, key_enc.bits
    sa2 = extension(exts, SA2)
    if sa2 is not None:
        mode = MODE_FROM_PFKEY.get(sa2.mode)
        if mode is None:
            raise Refused(errno.EINVAL, f"mode {sa2.mode}")
        record.mode, record.reqid = mode, sa2.reqid
    proxy = extension(exts, AddressProxy)
    if proxy is not None:
        sel_family, sel_saddr, _ = address_ext(proxy)
        record.sel = sa_selector(sel_family, sel_saddr, proxy.prefixlen)
    else:
        record.sel = sa_selector(family)
    nat = extension(exts, NatTType)
    if nat is not None:
        sport, dport = extension(exts, NatTSport), extension(exts, NatTDport)
        record.encap = (nat.type, sport.port if sport else 0, dport.port if dport else 0)
    init_state(record)
    record.seq = req.seq
    return record


def init_state(sa: SARecord) -> None:
    """``xfrm_init_state`` with the ESP, AH and IPComp set-up checks."""
    if sa.sel[0] != sa.family and sa.mode not in (TUNNEL, 4):
        raise Refused(errno.EPROTONOSUPPORT, "a selector of another family needs tunnel mode")
    if sa.proto == 255:
        raise Refused(errno.EPROTONOSUPPORT, "no transform for protocol 255")
    key_ok = True
    if sa.proto == 50:
        if sa.ealg is None:
            raise Refused(errno.EINVAL, "ESP without an encryption algorithm")
        key_ok = sa.ealg.accepts(len(sa.ekey)) and (sa.aalg is None or sa.aalg.accepts(len(sa.akey)))
        if sa.encap is not None and sa.encap[0] not in (1, 2):
            raise Refused(errno.EINVAL, f"NAT-T type {sa.encap[0]}")
    elif sa.proto == 51:
        if sa.aalg is None or sa.encap is not None:
            raise Refused(errno.EINVAL, "AH needs an authentication algorithm and no encapsulation")
        key_ok = sa.aalg.accepts(len(sa.akey))
    elif sa.proto == 108 and (sa.mode not in (0, TUNNEL) or sa.calg is None or sa.encap is not None):
        raise Refused(errno.EINVAL, "IPComp needs transport or tunnel mode and an algorithm")
    if not key_ok:
        raise Refused(errno.EINVAL, "the key length does not suit the algorithm")
    sa.state = VALID


def find_larval(engine: Engine, sa: SARecord) -> SARecord | None:
    """The larval SA that adding ``sa`` retires (``xfrm_state_add``): the first waiting
    for its seq if it is for the same protocol and destination, else one waiting for
    these addresses."""
    if sa.seq:
        first = engine.acquire_by_seq(sa.seq)
        if first is not None and first.proto == sa.proto and first.daddr == sa.daddr:
            return first
    found = engine.sad.find("larval", (sa.mode, sa.reqid, sa.family, sa.proto, sa.daddr, sa.saddr))
    return engine.chain_order(found, "dst")[0] if found else None


def handle_add_update(engine: Engine, req: Request, out: list[Delivery]) -> None:
    with engine.db.transaction():
        sa = state_from_request(engine, req)
        old = engine.sa_by_spi(sa.family, sa.daddr, sa.spi, sa.proto)
        reported: int | None = None
        if req.type == MsgType.ADD:
            if old is not None:
                raise Refused(errno.EEXIST, "that SA exists")
            retired = find_larval(engine, sa)
            engine.insert_sa(sa)
            if retired is not None:
                engine.sad.delete(retired.serial)
        else:
            if old is None:
                raise Refused(errno.ESRCH, "no such SA to update")
            if old.state == ACQ:
                engine.insert_sa(sa)
                engine.sad.delete(old.serial)
            elif old.state == VALID:
                if (old.encap is None) != (sa.encap is None) or (
                    old.encap and sa.encap and old.encap[0] != sa.encap[0]
                ):
                    raise Refused(errno.EINVAL, "an update cannot add, drop or change the encapsulation type")
                engine.sad.put(old.serial, old.but(lft=sa.lft, dying=False, encap=sa.encap or old.encap))
                reported = 3  # the notification is built from the discarded new SA, already DEAD
            else:
                raise Refused(errno.EINVAL, "the SA is in error or expired")
    data = sa_message(sa, req.type, req.seq, req.pid, state=reported)
    engine.broadcast(out, data, ALL)


def _lookup(engine: Engine, req: Request) -> SARecord:
    """DELETE and GET: SA, SRC and DST needed; the SA found by DST, SPI and protocol."""
    sa = extension(req.exts, SA)
    if sa is None:
        raise Refused(errno.EINVAL, "SA is needed")
    family, _, daddr, _ = _addresses(req)
    proto = SATYPE_TO_PROTO.get(req.satype, 0)
    found = engine.sa_by_spi(family, daddr, sa.spi, proto) if proto not in (0, 255) else None
    if found is None:
        raise Refused(errno.ESRCH, "no such SA")
    return found


def handle_delete(engine: Engine, req: Request, out: list[Delivery]) -> None:
    found = _lookup(engine, req)
    with engine.db.transaction():
        engine.sad.delete(found.serial)
    engine.broadcast(out, sa_message(found, MsgType.DELETE, req.seq, req.pid, state=3), ALL)


def handle_get(engine: Engine, req: Request, out: list[Delivery]) -> None:
    found = _lookup(engine, req)
    engine.broadcast(out, sa_message(found, MsgType.GET, req.seq, req.pid), ONE, req.client)


def handle_getspi(engine: Engine, req: Request, out: list[Delivery]) -> None:
    family, saddr, daddr, _ = _addresses(req)
    proto = SATYPE_TO_PROTO.get(req.satype)
    if proto is None:
        raise Refused(errno.EINVAL, f"satype {req.satype}")
    sa2 = extension(req.exts, SA2)
    mode, reqid = 0, 0
    if sa2 is not None:
        found_mode = MODE_FROM_PFKEY.get(sa2.mode)
        if found_mode is None:
            raise Refused(errno.EINVAL, f"mode {sa2.mode}")
        mode, reqid = found_mode, sa2.reqid
    larval = None
    if req.seq:
        larval = engine.acquire_by_seq(req.seq)
        if larval is not None and larval.daddr != daddr:
            larval = None
    with engine.db.transaction():  # the larval stays even if the range is refused below, as in Linux
        if larval is None:
            found = engine.sad.find("larval", (mode, reqid, family, proto, daddr, saddr))
            if found:
                larval = engine.chain_order(found, "dst")[0]
            else:
                larval = SARecord(
                    engine.next_serial(), family, daddr, saddr, 0, proto, mode, reqid,
                    sel=sa_selector(0, saddr, host_bits(family)), state=ACQ, add_time=int(req.now),
                    lft=(INF, INF, INF, INF, 0, ACQ_EXPIRES, 0, 0),
                )  # fmt: skip
                engine.insert_sa(larval)
    low, high = 0x100, 0x0FFFFFFF
    spirange = extension(req.exts, SPIRange)
    if spirange is not None:
        low, high = spirange.min, spirange.max
    if proto not in (50, 51, 108) or (proto == 108 and high >= 0x10000) or low > high:
        raise Refused(errno.EINVAL, "no SPI range for this protocol")
    if larval.state == DEAD:
        raise Refused(errno.ENOENT, "the SA died")
    if not larval.spi:
        spi = _allocate_spi(engine, larval, low, high)
        with engine.db.transaction():
            larval = larval.but(spi=spi)
            engine.sad.put(larval.serial, larval)
    engine.broadcast(out, sa_message(larval, MsgType.GETSPI, req.seq, req.pid), ONE, req.client)


def _allocate_spi(engine: Engine, sa: SARecord, low: int, high: int) -> int:
    """``xfrm_alloc_spi``: the one value, or random draws with replacement."""
    if low == high:
        if low == 0 or engine.sa_by_spi(sa.family, sa.daddr, low, sa.proto) is not None:
            raise Refused(errno.ENOENT, "that SPI is taken")
        return low
    span = (high - low + 1) & 0xFFFFFFFF
    for _ in range(span):
        spi = low + engine.rng.randrange(span)
        if engine.sa_by_spi(sa.family, sa.daddr, spi, sa.proto) is None:
            return spi
    raise Refused(errno.ENOENT, "no free SPI in the range")


def handle_acquire(engine: Engine, req: Request, out: list[Delivery]) -> None:
    """ACQUIRE from a key manager: only "it failed" (errno set) has an effect."""
    if len(req.data) != 16:
        raise Refused(errno.EOPNOTSUPP, "ACQUIRE from a user carries no extensions")
    if not req.seq or not req.data[2]:
        return
    sa = engine.acquire_by_seq(req.seq)
    if sa is not None:
        with engine.db.transaction():
            engine.sad.put(sa.serial, sa.but(state=ERROR))


_SUPPORTED_AUTH = SupportedAuth(tuple(Alg(a.id, a.ivlen, a.minbits, a.maxbits) for a in algorithms.AUTH))
_SUPPORTED_ENCRYPT = SupportedEncrypt(tuple(Alg(a.id, a.ivlen, a.minbits, a.maxbits) for a in algorithms.ENCRYPT))


def handle_register(engine: Engine, req: Request, out: list[Delivery]) -> None:
    if req.satype > 9:
        raise Refused(errno.EINVAL, f"satype {req.satype}")
    client = engine.clients[req.client]
    if req.satype:
        if client.registered & (1 << req.satype):
            raise Refused(errno.EEXIST, "already registered for that satype")
        client.registered |= 1 << req.satype
    reply = Message(MsgType.REGISTER, SAType.of(req.satype), req.seq, req.pid, 0, (_SUPPORTED_AUTH, _SUPPORTED_ENCRYPT))
    engine.broadcast(out, reply.encode(), REGISTERED, req.client)


def handle_flush(engine: Engine, req: Request, out: list[Delivery]) -> None:
    proto = SATYPE_TO_PROTO.get(req.satype)
    if proto is None:
        raise Refused(errno.EINVAL, f"satype {req.satype}")
    doomed = [sa for sa in engine.sad.values() if proto == 255 or sa.proto == proto]
    with engine.db.transaction():
        for sa in doomed:
            engine.sad.delete(sa.serial)
    engine.broadcast(out, header_only(req.header), ONE, req.client)
    if doomed:
        engine.broadcast(out, header_only(req.header, satype=PROTO_TO_SATYPE.get(proto, 0)), ALL)


def _filter_match(sa: SARecord, f: Filter) -> bool:
    if f.family in (AF_INET, AF_INET6) and sa.family != f.family:
        return False
    return prefix_match(sa.saddr, f.src, f.src_prefixlen) and prefix_match(sa.daddr, f.dst, f.dst_prefixlen)


def handle_dump(engine: Engine, req: Request, out: list[Delivery]) -> None:
    proto = SATYPE_TO_PROTO.get(req.satype)
    if proto is None:
        raise Refused(errno.EINVAL, f"satype {req.satype}")
    f = extension(req.exts, Filter)
    if f is not None and (f.src_prefixlen > 128 or f.dst_prefixlen > 128):
        raise Refused(errno.EINVAL, "filter prefix too long")
    entries = [
        sa
        for sa in sorted(engine.sad.values(), key=lambda s: s.serial, reverse=True)
        if (proto == 255 or sa.proto == proto) and (f is None or _filter_match(sa, f))
    ]
    if not entries:
        raise Refused(errno.ENOENT, "nothing to dump")
    engine.dump(req, entries, lambda sa, seq: sa_message(sa, MsgType.DUMP, seq, req.pid))


def handle_promisc(engine: Engine, req: Request, out: list[Delivery]) -> None:
    if len(req.data) == 16:
        if req.satype not in (0, 1):
            raise Refused(errno.EINVAL, "X_PROMISC takes satype 0 or 1")
        engine.clients[req.client].promisc = bool(req.satype)
        engine.broadcast(out, header_only(req.header), ALL)
    else:
        engine.broadcast(out, req.data, ALL, numbered=False)
