"""X_MIGRATE: Linux 6.1's ``pfkey_migrate`` and ``xfrm_migrate``, and pfmigrate's better one.

Linux semantics (``Engine(semantics="linux")``): find the policy by its exact selector
and direction; for each old/new pair move *the first* SA that matches (mode, protocol,
old endpoints, and reqid when given), keeping its SPI, keys, lifetimes and counters;
rewrite the matching tunnel templates; delete the old SAs; announce. Any failure after
the policy is found is ENODATA and changes nothing.

pfmigrate semantics (the default) differ where Linux is ambiguous or fragile; each
difference is listed in ``docs/differences-from-linux.md``:

* every SA of the bundle moves (during a re-key two SAs share the reqid);
* an old endpoint pair left unspecified (``::`` / ``0.0.0.0``) names the bundle by its
  reqid, and an SA extension names it by SPI, so an agent need not remember the old
  care-of address;
* a request that matches SAs or templates of more than one reqid is refused with
  ENOTUNIQ instead of being resolved silently;
* repeating a MIGRATE that already took effect succeeds without changing anything;
* (in ``Engine.broadcast``) broadcasts carry the engine's generation number.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from pfmigrate.pfkey.constants import AF_INET, AF_INET6, MsgType
from pfmigrate.pfkey.extensions import SA
from pfmigrate.sadb.core import ALL, ONE, Delivery, Request
from pfmigrate.sadb.records import (
    BEET,
    MODE_FROM_PFKEY,
    MODE_TO_PFKEY,
    PROTO_TO_SATYPE,
    TUNNEL,
    ZERO,
    PolicyRecord,
    SARecord,
    Selector,
    Template,
    packed_address_ext,
    same_address,
    sockaddr_bytes,
)
from pfmigrate.sadb.sa import find_larval, init_state
from pfmigrate.sadb.spd import parse_sockaddr_pair, policy_header, selector_of
from pfmigrate.sadb.wire import Refused, extension

if TYPE_CHECKING:
    from pfmigrate.sadb.engine import Engine

_REQUEST = struct.Struct("=HHBBHII")
XFRM_MAX_DEPTH = 6
ENOTUNIQ = errno.ENOTUNIQ


@dataclass(frozen=True, slots=True)
class Move:
    """One ``xfrm_migrate`` entry: a bundle's protocol, mode, reqid and endpoints."""

    proto: int
    mode: int
    reqid: int
    old_family: int
    old_saddr: bytes
    old_daddr: bytes
    new_family: int
    new_saddr: bytes
    new_daddr: bytes

    @property
    def by_reqid(self) -> bool:
        """pfmigrate: unspecified old endpoints mean "the bundle of this reqid"."""
        return self.reqid != 0 and self.old_saddr == ZERO and self.old_daddr == ZERO


def _pair(raw: bytes) -> tuple[int, bytes, bytes]:
    pair = parse_sockaddr_pair(raw)
    if pair is None:
        raise Refused(errno.EINVAL, "bad endpoint pair in a MIGRATE request")
    return pair


def parse_moves(raw: bytes) -> list[Move]:
    """``ipsecrequests_to_migrate`` over X_POLICY's requests: old/new pairs, at most 6,
    no bytes left over."""
    moves: list[Move] = []
    pos, left = 0, len(raw)
    while left > 0 and len(moves) < XFRM_MAX_DEPTH:
        if left < _REQUEST.size:
            raise Refused(errno.EINVAL, "a partial ipsecrequest")
        len1, proto1, mode1, _, _, reqid1, _ = _REQUEST.unpack_from(raw, pos)
        if len1 > left or len1 < _REQUEST.size:
            raise Refused(errno.EINVAL, f"ipsecrequest length {len1}")
        old_family, old_s, old_d = _pair(raw[pos + _REQUEST.size : pos + len1])
        rest = left - len1
        if rest <= _REQUEST.size:
            raise Refused(errno.EINVAL, "an old request without its new one")
        len2, proto2, mode2, _, _, reqid2, _ = _REQUEST.unpack_from(raw, pos + len1)
        if len2 > rest or len2 < _REQUEST.size:
            raise Refused(errno.EINVAL, f"ipsecrequest length {len2}")
        new_family, new_s, new_d = _pair(raw[pos + len1 + _REQUEST.size : pos + len1 + len2])
        if (proto1, mode1, reqid1) != (proto2, mode2, reqid2):
            raise Refused(errno.EINVAL, "old and new requests differ in protocol, mode or reqid")
        mode = MODE_FROM_PFKEY.get(mode1)
        if mode is None:
            raise Refused(errno.EINVAL, f"mode {mode1}")
        moves.append(Move(proto1 & 0xFF, mode, reqid1, old_family, old_s, old_d, new_family, new_s, new_d))
        pos += len1 + len2
        left -= len1 + len2
    if not moves or left > 0:
        raise Refused(errno.EINVAL, "no old/new pair, or bytes after the sixth")
    return moves


def _check_moves(moves: list[Move], direction: int, linux: bool) -> None:
    """Stage 0 of ``xfrm_migrate``.

    Linux's duplicate check compares whole 16-byte addresses of which ``pfkey_migrate``
    fills only 4 for IPv4, the rest being stack garbage: it never sees an IPv4
    duplicate. With Linux semantics neither does the engine.
    """
    seen = set()
    for m in moves:
        if m.new_daddr == ZERO or m.new_saddr == ZERO:
            raise Refused(errno.EINVAL, "new endpoints cannot be unspecified")
        key = (m.old_daddr, m.old_saddr, m.proto, m.mode, m.reqid, m.old_family)
        if linux and m.old_family == AF_INET:
            continue
        if key in seen:
            raise Refused(errno.EINVAL, "the same bundle twice")
        seen.add(key)
    if direction >= 3:
        raise Refused(errno.EINVAL, "bad policy direction")


def _states(engine: Engine, m: Move, spi: int | None) -> list[SARecord]:
    """The SAs entry ``m`` names, in Linux's chain order (Linux takes the first)."""
    if m.by_reqid and not engine.linux:
        found = engine.sad.find("reqid", m.reqid)
        table = "dst"
    else:  # Linux looks in the bydst chains when a reqid is given, else in the bysrc ones
        found = engine.sad.find("src", (m.old_daddr, m.old_saddr, m.old_family))
        table = "dst" if m.reqid else "src"
    matching = [
        s
        for s in found
        if s.mode == m.mode
        and s.proto == m.proto
        and (not m.reqid or s.reqid == m.reqid)
        and (spi is None or s.spi == spi)
    ]
    return engine.chain_order(matching, table)


def _template_matches(t: Template, m: Move, linux: bool) -> bool:
    if t.mode != m.mode or t.proto != m.proto or (m.reqid and t.reqid != m.reqid):
        return False
    if t.mode not in (TUNNEL, BEET):
        return True  # Linux: a transport template matches on mode, protocol and reqid alone
    if m.by_reqid and not linux:
        return not _at(t, m.new_saddr, m.new_daddr, m.new_family)
    return _at(t, m.old_saddr, m.old_daddr, m.old_family)


def _at(t: Template, saddr: bytes, daddr: bytes, family: int) -> bool:
    return same_address(t.daddr, daddr, family) and same_address(t.saddr, saddr, family)


def _sa_at(sa: SARecord, saddr: bytes, daddr: bytes, family: int) -> bool:
    return sa.family == family and same_address(sa.daddr, daddr, family) and same_address(sa.saddr, saddr, family)


def _already_moved(policy: PolicyRecord, moves: list[Move]) -> bool:
    """Every tunnel template a move names already has its new endpoints (a retry)."""
    for m in moves:
        hits = [
            t
            for t in policy.templates
            if t.mode == m.mode and t.proto == m.proto and (not m.reqid or t.reqid == m.reqid)
        ]
        new = [
            t
            for t in hits
            if same_address(t.daddr, m.new_daddr, m.new_family) and same_address(t.saddr, m.new_saddr, m.new_family)
        ]
        if not new:
            return False
    return True


def _clone(engine: Engine, sa: SARecord, m: Move) -> SARecord:
    clone = sa.but(serial=engine.next_serial(), family=m.new_family, daddr=m.new_daddr, saddr=m.new_saddr, dying=False)
    try:
        init_state(clone)  # a larval SA has no algorithms: it cannot be set up again
    except Refused:
        raise Refused(errno.ENODATA, "an SA to move cannot be rebuilt") from None
    return clone


def _insert_clone(engine: Engine, clone: SARecord, old: SARecord) -> None:
    """``xfrm_state_add`` when the destination changes (which checks the SPI and retires
    a larval SA), else ``xfrm_state_insert`` (which does neither)."""
    if clone.daddr != old.daddr:
        if engine.sa_by_spi(clone.family, clone.daddr, clone.spi, clone.proto) is not None:
            raise Refused(errno.ENODATA, "the SPI is taken at the new destination")
        retired = find_larval(engine, clone)
        engine.insert_sa(clone)
        if retired is not None:
            engine.sad.delete(retired.serial)
        return
    engine.insert_sa(clone)


def handle_migrate(engine: Engine, req: Request, out: list[Delivery]) -> None:
    linux = engine.semantics == "linux"
    exts = req.exts
    src, dst = exts.get(5), exts.get(6)
    if src is None or dst is None or 18 not in exts:
        raise Refused(errno.EINVAL, "SRC, DST and X_POLICY are needed")
    if src[8:10] != dst[8:10] or int.from_bytes(src[8:10], "little") not in (AF_INET, AF_INET6):
        raise Refused(errno.EINVAL, "SRC and DST are of different or unknown families")
    _, direction, _, _, requests = policy_header(req)
    if direction >= 4:
        raise Refused(errno.EINVAL, f"policy direction {direction}")
    kmaddress = None
    if 25 in exts:
        raw = exts[25]
        pair = _pair(raw[8 : 8 * int.from_bytes(raw[0:2], "little")])
        kmaddress = (pair, int.from_bytes(raw[4:8], "little"))
    selector = selector_of(req)
    moves = parse_moves(requests)
    xdir = (direction - 1) & 0xFF
    _check_moves(moves, xdir, linux)
    spi = None
    if not linux and 1 in exts:
        sa_ext = extension(exts, SA)
        assert sa_ext is not None
        spi = sa_ext.spi
    policies = engine.spd.find("identity", (xdir, selector, False)) + engine.spd.find(
        "identity", (xdir, selector, True)
    )
    if not policies:
        raise Refused(errno.ENOENT, "no policy with that selector and direction")
    policy = min(policies, key=lambda p: p.rank)  # security contexts do not matter here
    with engine.db.transaction():
        moved = _move(engine, policy, moves, spi, linux)
    if moved:
        engine.broadcast(out, announcement(selector, xdir, moves, kmaddress), ALL)
    else:  # a retry: the sender hears success; the others heard it the first time
        engine.broadcast(out, announcement(selector, xdir, moves, kmaddress), ONE, req.client, numbered=False)


def _move(engine: Engine, policy: PolicyRecord, moves: list[Move], spi: int | None, linux: bool) -> bool:
    """Stages 2 to 4; ``False`` when (pfmigrate) the MIGRATE had already taken effect."""
    olds: list[SARecord] = []
    for m in moves:
        found = _states(engine, m, spi)
        if m.by_reqid and not linux:  # those at the new endpoints moved in an earlier try
            found = [s for s in found if not _sa_at(s, m.new_saddr, m.new_daddr, m.new_family)]
        if not linux and len({s.reqid for s in found}) > 1:
            raise Refused(ENOTUNIQ, "the old endpoints name SAs of several reqids: give the reqid")
        chosen = found[:1] if linux else found
        for sa in chosen:
            _insert_clone(engine, _clone(engine, sa, m), sa)
            olds.append(sa)
    templates = list(policy.templates)
    matched = 0
    for i in range(len(templates)):
        for m in moves:  # a template a move has rewritten is matched against the next move as it is now
            t = templates[i]
            if not _template_matches(t, m, linux):
                continue
            matched += 1
            if t.mode in (TUNNEL, BEET):
                templates[i] = Template(t.proto, t.mode, t.reqid, t.optional, m.new_saddr, m.new_daddr, m.new_family)
    if not linux:
        reqids = {t.reqid for t in policy.templates for m in moves if _template_matches(t, m, linux)}
        if any(not m.reqid for m in moves) and len(reqids) > 1:
            raise Refused(ENOTUNIQ, "the request matches templates of several reqids: give the reqid")
    if matched:
        engine.spd.put(policy.serial, policy.but(templates=tuple(templates)))
    elif linux or not _already_moved(policy, moves):
        raise Refused(errno.ENODATA, "no template of the policy has those old endpoints")
    elif not olds:
        return False  # a retry of a MIGRATE that took effect: success, nothing to do
    for sa in olds:
        if sa.serial in engine.sad:  # (Linux: an IPv4 bundle given twice names one SA twice)
            engine.sad.delete(sa.serial)
    return True


def announcement(
    selector: Selector, xdir: int, moves: list[Move], kmaddress: tuple[tuple[int, bytes, bytes], int] | None
) -> bytes:
    """``pfkey_send_migrate``: KMADDRESS, SRC, DST (the selector, raw protocol, no ports),
    X_POLICY with each old/new pair; seq and pid 0. Packed directly from pieces kept
    in bounded caches: it goes out with every MIGRATE, and the same addresses come back
    move after move."""
    parts: list[bytes] = []
    if kmaddress is not None:
        (family, local, remote), reserved = kmaddress
        pair = _sockaddr_pair(family, local, remote)
        parts.append(_KMADDRESS_HEAD.pack(1 + len(pair) // 8, 25, reserved) + pair)
    family = selector.family
    parts.append(packed_address_ext(5, family, selector.saddr, selector.prefixlen_s, selector.proto))
    parts.append(packed_address_ext(6, family, selector.daddr, selector.prefixlen_d, selector.proto))
    requests = []
    for m in moves:
        requests.append(_request(m.proto, m.mode, m.reqid, m.old_family, m.old_saddr, m.old_daddr))
        requests.append(_request(m.proto, m.mode, m.reqid, m.new_family, m.new_saddr, m.new_daddr))
    body = b"".join(requests)
    parts.append(_POLICY_HEAD.pack(2 + len(body) // 8, 18, 2, xdir + 1, 0, 0, 0) + body)
    exts = b"".join(parts)
    satype = PROTO_TO_SATYPE.get(moves[0].proto, 0)
    return _HEADER.pack(2, MsgType.X_MIGRATE, 0, satype, 2 + len(exts) // 8, 0, 0, 0) + exts


@lru_cache(maxsize=4096)
def _sockaddr_pair(family: int, first: bytes, second: bytes) -> bytes:
    """Two sockaddrs as Linux writes them, back to back, padded to 8 bytes."""
    raw = sockaddr_bytes(family, first) + sockaddr_bytes(family, second)
    return raw + bytes(-len(raw) % 8)


@lru_cache(maxsize=4096)
def _request(proto: int, mode: int, reqid: int, family: int, saddr: bytes, daddr: bytes) -> bytes:
    """One ipsecrequest of the announcement: level unique with a reqid, else require."""
    pair = _sockaddr_pair(family, saddr, daddr)
    level = 3 if reqid else 2
    return _REQUEST.pack(_REQUEST.size + len(pair), proto, MODE_TO_PFKEY[mode], level, 0, reqid, 0) + pair


_HEADER = struct.Struct("=BBBBHHII")
_KMADDRESS_HEAD = struct.Struct("=HHI")
_POLICY_HEAD = struct.Struct("=HHHBBII")


__all__ = ["handle_migrate", "parse_moves"]
