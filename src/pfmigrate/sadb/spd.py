"""The SPD requests: X_SPDADD, X_SPDUPDATE, X_SPDSETIDX, X_SPDDELETE, X_SPDGET,
X_SPDDELETE2, X_SPDDUMP and X_SPDFLUSH, as Linux 6.1 ``af_key`` handles them.

Requests inside X_POLICY are read from the raw bytes, as ``parse_ipsecrequests`` does:
a policy that is not IPSEC never looks at them, and a transport request's addresses are
never read, so neither may make the request fail.
"""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING

from pfmigrate.pfkey.constants import AF_INET, AF_INET6, MsgType
from pfmigrate.pfkey.extensions import LifetimeHard, LifetimeSoft
from pfmigrate.sadb.core import ALL, ONE, Delivery, Request, header_only
from pfmigrate.sadb.records import (
    INF,
    MODE_FROM_PFKEY,
    TUNNEL,
    ZERO,
    PolicyRecord,
    Selector,
    Template,
    policy_message,
)
from pfmigrate.sadb.sa import security_context
from pfmigrate.sadb.wire import Refused, address_raw, extension

if TYPE_CHECKING:
    from pfmigrate.sadb.engine import Engine

_POLICY = struct.Struct("=HHHBBII")
_REQUEST = struct.Struct("=HHBBHII")
_SOCKADDR_LEN = {AF_INET: 16, AF_INET6: 28}
_TEMPLATE_PROTOS = frozenset({51, 50, 108, 43, 60})
IPSEC_MANUAL_REQID_MAX = 0x3FFF
XFRM_MAX_DEPTH = 6


def policy_header(req: Request) -> tuple[int, int, int, int, bytes]:
    """X_POLICY's type, dir, id, priority, and its request bytes; EINVAL if absent."""
    raw = req.exts.get(18)
    if raw is None:
        raise Refused(errno.EINVAL, "X_POLICY is needed")
    _, _, ptype, direction, _, pid, priority = _POLICY.unpack_from(raw)
    return ptype, direction, pid, priority, raw[_POLICY.size :]


def selector_of(req: Request) -> Selector:
    """SRC and DST of one family as a selector; the protocol comes from DST."""
    src, dst = req.exts.get(5), req.exts.get(6)
    if src is None or dst is None:
        raise Refused(errno.EINVAL, "SRC and DST are needed")
    family, saddr, sport, prefixlen_s, _ = address_raw(src)
    d_family, daddr, dport, prefixlen_d, proto = address_raw(dst)
    if family != d_family:
        raise Refused(errno.EINVAL, "SRC and DST are of different families")
    return Selector(family, daddr, saddr, prefixlen_d, prefixlen_s, 0 if proto == 255 else proto, dport, sport)


def parse_sockaddr_pair(raw: bytes) -> tuple[int, bytes, bytes] | None:
    """Two sockaddrs of one family packed without a gap: (family, first, second)."""
    if len(raw) < 2:
        return None
    family = int.from_bytes(raw[0:2], "little")
    size = _SOCKADDR_LEN.get(family)
    if size is None or len(raw) < (2 * size + 7) & ~7:
        return None
    if int.from_bytes(raw[size : size + 2], "little") != family:
        return None
    if family == AF_INET:
        return family, raw[4:8] + bytes(12), raw[size + 4 : size + 8] + bytes(12)
    return family, raw[8:24], raw[size + 8 : size + 24]


def _gen_reqid(engine: Engine) -> int:
    start = engine.gen_reqid
    taken = {t.reqid for p in engine.spd.values() for t in p.templates}
    while True:
        engine.gen_reqid = (engine.gen_reqid + 1) & 0xFFFFFFFF or 0x4000
        if engine.gen_reqid not in taken:
            return engine.gen_reqid
        if engine.gen_reqid == start:
            return 0


def parse_templates(engine: Engine, raw: bytes, direction: int, family: int) -> tuple[Template, ...]:
    """``parse_ipsecrequests``: the requests of an IPSEC policy, with Linux's checks."""
    templates: list[Template] = []
    pos, left = 0, len(raw)
    while left >= _REQUEST.size:
        length, proto, mode, level, _, reqid, _ = _REQUEST.unpack_from(raw, pos)
        if length < _REQUEST.size or length > left:
            raise Refused(errno.EINVAL, f"ipsecrequest length {length}")
        if len(templates) >= XFRM_MAX_DEPTH:
            raise Refused(errno.ELOOP, "more than 6 templates")
        if mode == 0 or proto not in _TEMPLATE_PROTOS or mode > 3:
            raise Refused(errno.EINVAL, f"template protocol {proto} or mode {mode}")
        xmode = MODE_FROM_PFKEY[mode]
        optional = False
        if level == 1:
            if xmode in (TUNNEL, 4) and direction == 2:
                raise Refused(errno.EINVAL, "an optional tunnel template in an outbound policy")
            optional = True
        if level == 3:
            if reqid > IPSEC_MANUAL_REQID_MAX:
                reqid = 0
            if not reqid:
                reqid = _gen_reqid(engine)
                if not reqid:
                    raise Refused(errno.ENOBUFS, "no reqid left")
        else:
            reqid = 0
        saddr = daddr = ZERO
        t_family = family
        if xmode == TUNNEL:
            pair = parse_sockaddr_pair(raw[pos + _REQUEST.size : pos + length])
            if pair is None:
                raise Refused(errno.EINVAL, "bad tunnel endpoints")
            t_family, saddr, daddr = pair
        templates.append(Template(proto, xmode, reqid, optional, saddr, daddr, t_family))
        pos += length
        left -= length
    return tuple(templates)


def _message(engine: Engine, policy: PolicyRecord, msg_type: int, seq: int, pid: int, refcount: int) -> bytes:
    return policy_message(policy, msg_type, seq, pid, refcount, linux_length=engine.linux)


def _gen_index(engine: Engine, direction: int) -> int:
    while True:
        index = engine.idx_generator | direction
        engine.idx_generator = (engine.idx_generator + 8) & 0xFFFFFFFF
        if index == 0:
            index = 8
        if not engine.spd.find("index", index):
            return index


def _lifetimes(req: Request) -> tuple[int, int, int, int, int, int, int, int]:
    hard, soft = extension(req.exts, LifetimeHard), extension(req.exts, LifetimeSoft)

    def limit(value: int) -> int:
        return value if value else INF

    return (
        limit(soft.nbytes) if soft else INF, limit(hard.nbytes) if hard else INF,
        limit(soft.allocations) if soft else INF, limit(hard.allocations) if hard else INF,
        soft.addtime if soft else 0, hard.addtime if hard else 0, soft.usetime if soft else 0,
        hard.usetime if hard else 0,
    )  # fmt: skip


def _direction(value: int) -> int:
    if value == 0 or value >= 4:
        raise Refused(errno.EINVAL, f"policy direction {value}")
    return value - 1


def handle_spdadd(engine: Engine, req: Request, out: list[Delivery]) -> None:
    """X_SPDADD and X_SPDSETIDX insert (EEXIST on a duplicate); X_SPDUPDATE replaces."""
    if 5 not in req.exts or 6 not in req.exts or 18 not in req.exts:
        raise Refused(errno.EINVAL, "SRC, DST and X_POLICY are needed")
    selector = selector_of(req)
    ptype, direction, _, priority, requests = policy_header(req)
    if ptype > 2:
        raise Refused(errno.EINVAL, f"policy type {ptype}")
    xdir = _direction(direction)
    sec_ctx = security_context(req)
    lft = _lifetimes(req)
    templates = parse_templates(engine, requests, direction, selector.family) if ptype == 2 else ()
    serial = engine.next_serial()
    policy = PolicyRecord(
        serial, 0, xdir, selector, 1 if ptype == 0 else 0, priority, templates, lft, int(req.now), 0, req.now,
        sec_ctx, serial,
    )  # fmt: skip
    with engine.db.transaction():
        same = engine.spd.find("identity", policy.identity())
        if same:
            if req.type != MsgType.X_SPDUPDATE:
                raise Refused(errno.EEXIST, "that policy exists")
            replaced = same[-1]
            policy.index = replaced.index
            if replaced.priority == priority:
                policy.position = replaced.position
            engine.spd.delete(replaced.serial)
        else:
            policy.index = _gen_index(engine, xdir)
        engine.spd.put(policy.serial, policy)
    reply = MsgType.X_SPDUPDATE if req.type == MsgType.X_SPDUPDATE else MsgType.X_SPDADD
    engine.broadcast(out, _message(engine, policy, reply, req.seq, req.pid, 3), ALL)


def handle_spddelete(engine: Engine, req: Request, out: list[Delivery]) -> None:
    if 5 not in req.exts or 6 not in req.exts or 18 not in req.exts:
        raise Refused(errno.EINVAL, "SRC, DST and X_POLICY are needed")
    selector = selector_of(req)
    _, direction, _, _, _ = policy_header(req)
    xdir = _direction(direction)
    sec_ctx = security_context(req)
    found = engine.spd.find("identity", (xdir, selector, sec_ctx is not None))
    if not found:
        raise Refused(errno.ENOENT, "no such policy")
    with engine.db.transaction():
        engine.spd.delete(found[-1].serial)
    engine.broadcast(out, _message(engine, found[-1], MsgType.X_SPDDELETE, req.seq, req.pid, 1), ALL)


def handle_spdget(engine: Engine, req: Request, out: list[Delivery]) -> None:
    """X_SPDGET and X_SPDDELETE2: a policy by its id (the direction is its low 3 bits)."""
    _, _, policy_id, _, _ = policy_header(req)
    if policy_id & 7 >= 3:
        raise Refused(errno.EINVAL, f"policy id {policy_id} names no direction")
    found = [p for p in engine.spd.find("index", policy_id) if p.dir == policy_id & 7]
    if not found:
        raise Refused(errno.ENOENT, "no policy with that id")
    policy = found[-1]
    if req.type == MsgType.X_SPDGET:
        refcount = 2 + policy.timer_pending(req.now)
        engine.broadcast(out, _message(engine, policy, MsgType.X_SPDGET, req.seq, req.pid, refcount), ONE, req.client)
        return
    with engine.db.transaction():
        engine.spd.delete(policy.serial)
    engine.broadcast(out, _message(engine, policy, MsgType.X_SPDDELETE2, req.seq, req.pid, 1), ALL)


def handle_spddump(engine: Engine, req: Request, out: list[Delivery]) -> None:
    entries = sorted(engine.spd.values(), key=lambda p: p.serial, reverse=True)
    if not entries:
        raise Refused(errno.ENOENT, "no policies")

    def message(policy: PolicyRecord, seq: int) -> bytes:
        refcount = 1 + policy.timer_pending(req.now)
        return _message(engine, policy, MsgType.X_SPDDUMP, seq, req.pid, refcount)

    engine.dump(req, entries, message)


def handle_spdflush(engine: Engine, req: Request, out: list[Delivery]) -> None:
    doomed = list(engine.spd.values())
    with engine.db.transaction():
        for policy in doomed:
            engine.spd.delete(policy.serial)
    engine.broadcast(out, header_only(req.header), ONE, req.client)
    if doomed:
        engine.broadcast(out, header_only(req.header, satype=0), ALL)
