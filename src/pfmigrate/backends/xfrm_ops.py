"""The model in XFRM netlink, as Linux ``xfrm_user`` reads and writes it (sans-IO)."""

from __future__ import annotations

import errno as _errno
import itertools
import operator
import struct
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network
from socket import htons
from typing import TypeVar

from pfmigrate.engine import Exchange, KeyEngineError, Unsupported
from pfmigrate.model import (
    AH,
    ESP,
    IPCOMP,
    AcquireEvent,
    Action,
    Algorithm,
    Counters,
    Dir,
    Encap,
    Event,
    ExpireEvent,
    KMAddress,
    Lifetime,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    Policy,
    SAFlag,
    SAState,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.xfrm import (
    DUMP,
    AlgAead,
    AlgAuth,
    AlgAuthTrunc,
    AlgComp,
    AlgCrypt,
    Attr,
    Attribute,
    DecodeError,
    KmAddress,
    LifetimeCfg,
    LifetimeCur,
    Migrate,
    MsgType,
    NetlinkDone,
    NetlinkError,
    NetlinkMessage,
    NlFlags,
    NlMsgType,
    PolicyAction,
    PolicyDir,
    PolicyTypeAttr,
    Templates,
    UserExpire,
    UserKmaddress,
    UserMigrate,
    UserpolicyId,
    UserpolicyInfo,
    UsersaFlush,
    UsersaId,
    UsersaInfo,
    UserspiInfo,
    UserTmpl,
    XfrmId,
    XfrmMessage,
    decode,
)
from pfmigrate.xfrm import Encap as EncapAttr
from pfmigrate.xfrm import Mode as XfrmMode
from pfmigrate.xfrm import PolicyType as XfrmPolicyType
from pfmigrate.xfrm import Selector as XfrmSelector
from pfmigrate.xfrm.constants import AF_INET, AF_INET6, XFRM_INF
from pfmigrate.xfrm.structs import EncapTmpl, UserAcquire, addr_from_wire, addr_to_wire

T = TypeVar("T")
IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

MODE = {Mode.TRANSPORT: XfrmMode.TRANSPORT, Mode.TUNNEL: XfrmMode.TUNNEL, Mode.BEET: XfrmMode.BEET}
MODE_BACK = {v: k for k, v in MODE.items()}
IPSEC = (ESP, AH, IPCOMP)
DIRECTION = {Dir.IN: PolicyDir.IN, Dir.OUT: PolicyDir.OUT, Dir.FWD: PolicyDir.FWD}
DIRECTION_BACK = {v: k for k, v in DIRECTION.items()}
FLAGS = {SAFlag.NOECN: 1, SAFlag.DECAP_DSCP: 2, SAFlag.NOPMTUDISC: 4}
ACK = NlFlags.REQUEST | NlFlags.ACK


def _family(address: IPAddress) -> int:
    return AF_INET6 if address.__class__ is IPv6Address else AF_INET


def _zero(family: int) -> IPAddress:
    return IPv4Address(0) if family == AF_INET else IPv6Address(0)


# --- model -> XFRM ----------------------------------------------------------------------------------


def selector_to(selector: Selector) -> XfrmSelector:
    return XfrmSelector(
        selector.dst.network_address,
        selector.src.network_address,
        selector.dport,
        0xFFFF if selector.dport else 0,
        selector.sport,
        0xFFFF if selector.sport else 0,
        AF_INET if selector.version == 4 else AF_INET6,
        selector.dst.prefixlen,
        selector.src.prefixlen,
        selector.proto,
    )


def _limit(value: int) -> int:
    return value if value else XFRM_INF


def lifetime_to(lifetime: Lifetime) -> LifetimeCfg:
    return LifetimeCfg(
        _limit(lifetime.soft_bytes),
        _limit(lifetime.hard_bytes),
        _limit(lifetime.soft_packets),
        _limit(lifetime.hard_packets),
        lifetime.soft_add,
        lifetime.hard_add,
        lifetime.soft_use,
        lifetime.hard_use,
    )


def sa_to(msg_type: MsgType, sa: SecurityAssociation, seq: int) -> XfrmMessage:
    family = _family(sa.dst)
    if sa.replay_window > 0xFF:
        raise Unsupported(
            "add SA", f"a replay window over 255 needs ESN, which this backend does not set up ({sa.replay_window})"
        )
    sel = (
        selector_to(sa.selector)
        if sa.selector is not None
        else XfrmSelector(_zero(family), _zero(family), family=family)
    )
    flags = sum(bit for flag, bit in FLAGS.items() if flag in sa.flags)
    info = UsersaInfo(
        sel,
        XfrmId(sa.dst, sa.spi, sa.proto),
        sa.src,
        lifetime_to(sa.lifetime),
        LifetimeCur(),
        reqid=sa.reqid,
        family=family,
        mode=MODE[sa.mode],
        replay_window=sa.replay_window,
        flags=flags,
    )
    attrs: list[Attribute] = []
    if sa.auth is not None:
        attrs.append(AlgAuthTrunc(sa.auth.name, sa.auth.key_bits, sa.auth.icv_bits, sa.auth.key))
    if sa.enc is not None:
        attrs.append(AlgCrypt(sa.enc.name, sa.enc.key_bits, sa.enc.key))
    if sa.aead is not None:
        attrs.append(AlgAead(sa.aead.name, sa.aead.key_bits, sa.aead.icv_bits, sa.aead.key))
    if sa.comp is not None:
        attrs.append(AlgComp(sa.comp.name, sa.comp.key_bits, sa.comp.key))
    if sa.encap is not None:
        oa = addr_to_wire(sa.encap.oa) if sa.encap.oa is not None else bytes(16)
        attrs.append(EncapAttr(EncapTmpl(sa.encap.type, sa.encap.sport, sa.encap.dport, oa)))
    return XfrmMessage(msg_type, ACK, seq, 0, info, tuple(attrs))


def template_to(t: Template, selector: Selector) -> UserTmpl:
    if t.src is not None and t.dst is not None:
        family, src, dst = _family(t.dst), t.src, t.dst
    else:
        family = AF_INET if selector.version == 4 else AF_INET6
        src = dst = _zero(family)
    return UserTmpl(XfrmId(dst, 0, t.proto), family, src, t.reqid, MODE[t.mode], optional=int(t.optional))


def policy_to(msg_type: MsgType, policy: Policy, seq: int) -> XfrmMessage:
    action = PolicyAction.BLOCK if policy.action == Action.DISCARD else PolicyAction.ALLOW
    info = UserpolicyInfo(
        selector_to(policy.selector),
        LifetimeCfg(),
        LifetimeCur(),
        policy.priority,
        policy.index,
        DIRECTION[policy.dir],
        action,
    )
    attrs = (Templates(tuple(template_to(t, policy.selector) for t in policy.templates)),) if policy.templates else ()
    return XfrmMessage(msg_type, ACK, seq, 0, info, attrs)


_HDR = struct.Struct("=IHHII")
_I32 = struct.Struct("=i")
_POLICY_ID = struct.Struct("=16s16sHHHHHBBB3xiIIB3x")  # xfrm_userpolicy_id: selector, index, dir
_MIGRATE_ENTRY = struct.Struct("=16s16s16s16sBBHIHH")  # xfrm_user_migrate
_KMADDRESS_ATTR = struct.Struct("=HH16s16sIH2x")  # nlattr + xfrm_user_kmaddress
_NLA = struct.Struct("=HH")


# The integer an ipaddress object keeps (in ``_ip``), as bytes, is exactly ``.packed``,
# without the property and helper calls that cost more than the rest of the encoding.
_integer: Callable[[IPAddress], int] = operator.attrgetter("_ip")
_prefixlen: Callable[[IPNetwork], int] = operator.attrgetter("_prefixlen")  # likewise ``.prefixlen``
_V4_PAD = bytes(12)


def _wire(address: IPAddress) -> bytes:
    if address.__class__ is IPv6Address:
        return _integer(address).to_bytes(16, "big")
    return _integer(address).to_bytes(4, "big") + _V4_PAD


# Plain ints and members bound once: struct takes an IntEnum through ``__index__``, and
# on Python 3.11 every ``Dir.OUT`` is a lookup through the enum's metaclass; an
# Enum's hash, for a dict, costs more still.
_TUNNEL, _TRANSPORT, _OUT, _IN = Mode.TUNNEL, Mode.TRANSPORT, Dir.OUT, Dir.IN
_MODE_TUNNEL, _MODE_TRANSPORT, _MODE_BEET = int(XfrmMode.TUNNEL), int(XfrmMode.TRANSPORT), int(XfrmMode.BEET)
_DIR_OUT, _DIR_IN, _DIR_FWD = int(PolicyDir.OUT), int(PolicyDir.IN), int(PolicyDir.FWD)
_MIGRATE_TYPE, _ACK_FLAGS = int(MsgType.MIGRATE), int(ACK)
_ATTR_MIGRATE, _ATTR_KMADDRESS = int(Attr.MIGRATE), int(Attr.KMADDRESS)
_NLMSG_ERROR = int(NlMsgType.ERROR)


def _mode_number(mode: Mode) -> int:
    return _MODE_TUNNEL if mode is _TUNNEL else _MODE_TRANSPORT if mode is _TRANSPORT else _MODE_BEET


def _dir_number(direction: Dir) -> int:
    return _DIR_OUT if direction is _OUT else _DIR_IN if direction is _IN else _DIR_FWD


# A handover's usual message, one bundle and KMADDRESS, as one struct: header,
# xfrm_userpolicy_id, the MIGRATE attribute with its entry, the KMADDRESS attribute.
_ONE_MOVE = struct.Struct(
    "=" + "".join(s.format.lstrip("=") for s in (_HDR, _POLICY_ID, _NLA, _MIGRATE_ENTRY, _KMADDRESS_ATTR))
)


def encode_migrate(request: MigrateRequest, seq: int) -> bytes:
    """``migrate_to(request, seq).encode()``, written with ``struct`` alone.

    A mobility agent's handover waits on this message, so it skips building the
    intermediate XFRM values; a property test holds it to the same bytes.
    """
    sel = request.selector
    src, dst, sport, dport = sel.src, sel.dst, sel.sport, sel.dport
    family = _family(src.network_address)
    kma = request.kmaddress
    if kma is not None and len(request.bundles) == 1:
        [b] = request.bundles
        if family == AF_INET6 and b.old_dst.__class__ is b.new_dst.__class__ is kma.local.__class__ is IPv6Address:
            return _one_move_v6(request, sel, b, kma, seq)
        return _ONE_MOVE.pack(
            _ONE_MOVE.size, _MIGRATE_TYPE, _ACK_FLAGS, seq, 0,
            _wire(dst.network_address), _wire(src.network_address), htons(dport) if dport else 0,
            0xFFFF if dport else 0, htons(sport) if sport else 0, 0xFFFF if sport else 0, family,
            _prefixlen(dst), _prefixlen(src), sel.proto, 0, 0, 0, _dir_number(request.dir),
            4 + _MIGRATE_ENTRY.size, _ATTR_MIGRATE,
            _wire(b.old_dst), _wire(b.old_src), _wire(b.new_dst), _wire(b.new_src), b.proto,
            _mode_number(b.mode), 0, b.reqid, _family(b.old_dst), _family(b.new_dst),
            44, _ATTR_KMADDRESS, _wire(kma.local), _wire(kma.remote), 0, _family(kma.local),
        )  # fmt: skip
    parts = [
        _POLICY_ID.pack(
            _wire(sel.dst.network_address), _wire(sel.src.network_address), htons(sel.dport),
            0xFFFF if sel.dport else 0, htons(sel.sport), 0xFFFF if sel.sport else 0, family, sel.dst.prefixlen,
            sel.src.prefixlen, sel.proto, 0, 0, 0, _dir_number(request.dir),
        ),
        _NLA.pack(4 + _MIGRATE_ENTRY.size * len(request.bundles), Attr.MIGRATE),
    ]  # fmt: skip
    parts.extend(
        _MIGRATE_ENTRY.pack(
            _wire(b.old_dst),
            _wire(b.old_src),
            _wire(b.new_dst),
            _wire(b.new_src),
            b.proto,
            _mode_number(b.mode),
            0,
            b.reqid,
            _family(b.old_dst),
            _family(b.new_dst),
        )
        for b in request.bundles
    )
    if request.kmaddress is not None:
        k = request.kmaddress
        parts.append(_KMADDRESS_ATTR.pack(44, Attr.KMADDRESS, _wire(k.local), _wire(k.remote), 0, _family(k.local)))
    payload = b"".join(parts)
    return _HDR.pack(16 + len(payload), MsgType.MIGRATE, ACK, seq, 0) + payload


def _one_move_v6(request: MigrateRequest, sel: Selector, b: MigrateBundle, kma: KMAddress, seq: int) -> bytes:
    """The Mobile IPv6 message, everything IPv6: the addresses' integers written out
    in place, without a call per address (the families were checked by the caller and
    by the value objects)."""
    i = _integer
    dport, sport = sel.dport, sel.sport
    return _ONE_MOVE.pack(
        _ONE_MOVE.size, _MIGRATE_TYPE, _ACK_FLAGS, seq, 0,
        i(sel.dst.network_address).to_bytes(16, "big"), i(sel.src.network_address).to_bytes(16, "big"),
        htons(dport) if dport else 0, 0xFFFF if dport else 0, htons(sport) if sport else 0, 0xFFFF if sport else 0,
        AF_INET6, _prefixlen(sel.dst), _prefixlen(sel.src), sel.proto, 0, 0, 0, _dir_number(request.dir),
        4 + _MIGRATE_ENTRY.size, _ATTR_MIGRATE,
        i(b.old_dst).to_bytes(16, "big"), i(b.old_src).to_bytes(16, "big"), i(b.new_dst).to_bytes(16, "big"),
        i(b.new_src).to_bytes(16, "big"), b.proto, _mode_number(b.mode), 0, b.reqid, AF_INET6, AF_INET6,
        44, _ATTR_KMADDRESS, i(kma.local).to_bytes(16, "big"), i(kma.remote).to_bytes(16, "big"), 0, AF_INET6,
    )  # fmt: skip


def migrate_to(request: MigrateRequest, seq: int) -> XfrmMessage:
    entries = tuple(
        UserMigrate(
            b.old_dst,
            b.old_src,
            b.new_dst,
            b.new_src,
            b.proto,
            MODE[b.mode],
            b.reqid,
            _family(b.old_dst),
            _family(b.new_dst),
        )
        for b in request.bundles
    )
    attrs: list[Attribute] = [Migrate(entries)]
    if request.kmaddress is not None:
        k = request.kmaddress
        attrs.append(KmAddress(UserKmaddress(k.local, k.remote, 0, _family(k.local))))
    policy_id = UserpolicyId(selector_to(request.selector), 0, DIRECTION[request.dir])
    return XfrmMessage(MsgType.MIGRATE, ACK, seq, 0, policy_id, tuple(attrs))


# --- XFRM -> model ------------------------------------------------------------------------------------


def selector_from(sel: XfrmSelector) -> Selector:
    return Selector(
        ip_network(f"{sel.saddr}/{sel.prefixlen_s}", strict=False),
        ip_network(f"{sel.daddr}/{sel.prefixlen_d}", strict=False),
        sel.proto,
        sel.sport,
        sel.dport,
    )


def _unlimit(value: int) -> int:
    return 0 if value == XFRM_INF else value


def sa_from(info: UsersaInfo, attrs: tuple[Attribute, ...]) -> SecurityAssociation:
    auth = enc = aead = comp = None
    for attr in attrs:
        if isinstance(attr, AlgAuthTrunc):
            auth = Algorithm(attr.name, attr.key, attr.length, attr.key_len)
        elif isinstance(attr, AlgAuth) and auth is None:
            auth = Algorithm(attr.name, attr.key, 0, attr.key_len)
        elif isinstance(attr, AlgCrypt):
            enc = Algorithm(attr.name, attr.key, 0, attr.key_len)
        elif isinstance(attr, AlgAead):
            aead = Algorithm(attr.name, attr.key, attr.length, attr.key_len)
        elif isinstance(attr, AlgComp):
            comp = Algorithm(attr.name, attr.key, 0, attr.key_len)
    encap = None
    for attr in attrs:
        if isinstance(attr, EncapAttr):
            e = attr.encap
            oa = None if e.oa == bytes(16) else addr_from_wire(e.oa, info.family)
            encap = Encap(e.encap_type, e.sport, e.dport, oa)
    sel = info.sel
    empty = sel.prefixlen_d == sel.prefixlen_s == sel.proto == sel.sport == sel.dport == 0
    lft, cur = info.lft, info.curlft
    return SecurityAssociation(
        info.saddr,
        info.id.daddr,
        info.id.spi,
        info.id.proto,
        _mode(info.mode, f"SA {info.id.spi:#x}"),
        info.reqid,
        auth,
        enc,
        aead,
        comp,
        info.replay_window,
        SAFlag(sum(flag.value for flag, bit in FLAGS.items() if info.flags & bit)),
        Lifetime(
            _unlimit(lft.soft_byte_limit),
            _unlimit(lft.hard_byte_limit),
            _unlimit(lft.soft_packet_limit),
            _unlimit(lft.hard_packet_limit),
            lft.soft_add_expires_seconds,
            lft.hard_add_expires_seconds,
            lft.soft_use_expires_seconds,
            lft.hard_use_expires_seconds,
        ),
        None if empty or sel.family not in (AF_INET, AF_INET6) else selector_from(sel),
        encap,
        Counters(cur.nbytes, cur.packets, cur.add_time, cur.use_time),
        _state(info.id.proto, auth, enc or aead, comp),
    )


def _state(proto: int, auth: Algorithm | None, enc: Algorithm | None, comp: Algorithm | None) -> SAState:
    """XFRM does not say an SA's state; Linux sets up no ESP SA without encryption, no AH
    without authentication and no IPComp without compression, so one that has not the
    algorithm its protocol needs is a larval one (reserved by GETSPI, or made for an
    ACQUIRE)."""
    needed = {ESP: enc, AH: auth, IPCOMP: comp}
    return SAState.LARVAL if proto in needed and needed[proto] is None else SAState.MATURE


def _mode(number: XfrmMode, what: str) -> Mode:
    """The model's name for an XFRM mode; an error for one it has none for (route
    optimisation, IP-TFS...) rather than a wrong one."""
    mode = MODE_BACK.get(number)
    if mode is None:
        raise KeyEngineError(
            _errno.EOPNOTSUPP, "read reply", f"{what} has XFRM mode {number}, which pfmigrate does not model"
        )
    return mode


def template_from(t: UserTmpl) -> Template:
    mode = _mode(t.mode, f"a template of protocol {t.id.proto}")
    tunnel = mode != Mode.TRANSPORT
    return Template(
        t.id.proto, mode, t.saddr if tunnel else None, t.id.daddr if tunnel else None, t.reqid, bool(t.optional)
    )


def policy_from(info: UserpolicyInfo, attrs: tuple[Attribute, ...]) -> Policy:
    if info.action == PolicyAction.BLOCK:  # (Linux keeps templates given to a block policy, and never uses them)
        return Policy(selector_from(info.sel), DIRECTION_BACK[info.dir], (), Action.DISCARD, info.priority, info.index)
    templates = tuple(template_from(t) for attr in attrs if isinstance(attr, Templates) for t in attr.templates)
    action = Action.IPSEC if templates else Action.NONE
    return Policy(selector_from(info.sel), DIRECTION_BACK[info.dir], templates, action, info.priority, info.index)


def acquire_from(ua: UserAcquire, templates: list[Templates]) -> AcquireEvent | None:
    """The ACQUIRE of an IPsec SA, or ``None`` for one the key manager has no part in
    (Mobile IPv6 route optimisation asks its own daemon). The SA's addresses are in its
    template's family, which may differ from the traffic's (an IPv4 tunnel for IPv6)."""
    tmpl = next((t for attr in templates for t in attr.templates if t.id.proto == ua.id.proto), None)
    if ua.id.proto not in IPSEC or (tmpl is not None and tmpl.mode not in MODE_BACK):
        return None
    mode, reqid, family = (MODE_BACK[tmpl.mode], tmpl.reqid, tmpl.family) if tmpl else (Mode.TRANSPORT, 0, 0)
    return AcquireEvent(
        selector_from(ua.sel),
        _in_family(ua.saddr, family),
        _in_family(ua.id.daddr, family),
        ua.id.proto,
        mode,
        reqid,
        ua.policy.index,
        ua.seq,
    )


def _in_family(address: IPv4Address | IPv6Address, family: int) -> IPv4Address | IPv6Address:
    """An address the codec read without knowing its family, in ``family`` (0: as read)."""
    packed = address.packed.ljust(16, b"\0")
    if family == AF_INET:
        return IPv4Address(packed[:4])
    return IPv6Address(packed) if family == AF_INET6 else address


def migrate_from(msg: XfrmMessage) -> MigrateRequest:
    if not isinstance(msg.fixed, UserpolicyId):
        raise DecodeError(16, "a MIGRATE message without its xfrm_userpolicy_id")
    entries = [entry for attr in msg.all(Migrate) for entry in attr.entries]
    bundles = tuple(
        MigrateBundle(
            m.old_saddr, m.old_daddr, m.new_saddr, m.new_daddr, m.proto, MODE_BACK.get(m.mode, Mode.TUNNEL), m.reqid
        )
        for m in entries
    )
    kma = msg.get(KmAddress)
    kmaddress = KMAddress(kma.kmaddress.local, kma.kmaddress.remote) if kma else None
    return MigrateRequest(selector_from(msg.fixed.sel), DIRECTION_BACK[msg.fixed.dir], bundles, kmaddress)


# --- exchanges ---------------------------------------------------------------------------------------


def _failure(op: str, error: NetlinkError) -> KeyEngineError:
    detail = error.message if any(kind == 1 for kind, _ in error.extack) else "answered by Linux xfrm_user"
    return KeyEngineError(error.errno, op, detail)


class _Netlink(Exchange[T]):
    """A request and the messages with its sequence number."""

    def __init__(
        self, operation: str, request: XfrmMessage | bytes, convert: Callable[[XfrmMessage | None], T], seq: int = 0
    ) -> None:
        if isinstance(request, XfrmMessage):
            self.operation, self.request, self.seq = operation, request.encode(), request.seq
        else:  # already encoded, with this seq
            self.operation, self.request, self.seq = operation, request, seq
        self.convert = convert
        self.reply: XfrmMessage | None = None
        self.error: NetlinkError | None = None
        self.failure: KeyEngineError | None = None  # an answer that cannot be read
        self.done = False

    def feed(self, raw: bytes) -> bool:
        length, mtype, _, seq, _ = _HDR.unpack_from(raw) if len(raw) >= 20 else (0, 0, 0, 0, 0)
        if mtype == _NLMSG_ERROR and seq == self.seq and length == len(raw) and _I32.unpack_from(raw, 16)[0] == 0:
            self.done = True  # the common answer, a plain ACK: no need to decode it
            return True
        try:
            messages = decode(raw)
        except DecodeError as exc:
            if seq != self.seq:
                return False  # not ours (a late answer to an earlier request)
            self.failure = KeyEngineError(_errno.EBADMSG, self.operation, f"Linux's answer does not decode: {exc}")
            self.done = True
            return True
        for msg in messages:
            if msg.seq == self.seq:
                self.take(msg)
        return self.done

    def take(self, msg: NetlinkMessage) -> None:
        if isinstance(msg, NetlinkError):
            self.error = msg if msg.error else None
            self.done = True
        elif isinstance(msg, XfrmMessage):
            self.reply = msg
            self.done = True

    def result(self) -> T:
        if self.failure is not None:
            raise self.failure
        if self.error is not None:
            raise _failure(self.operation, self.error)
        return self.convert(self.reply)


class _Dump(_Netlink[list[T]]):
    """A dump; ``keep`` says which entries the model can express (others are left out)."""

    lingers = True

    def __init__(
        self,
        operation: str,
        request: XfrmMessage,
        each: Callable[[XfrmMessage], T],
        keep: Callable[[XfrmMessage], bool] = lambda m: True,
    ) -> None:
        super().__init__(operation, request, lambda m: [])
        self.each = each
        self.keep = keep
        self.parts: list[XfrmMessage] = []

    def take(self, msg: NetlinkMessage) -> None:
        if isinstance(msg, NetlinkError):
            self.error = msg if msg.error else None
            self.done = True
        elif isinstance(msg, NetlinkDone):
            if msg.error:  # the dump stopped short: what came is not all there is
                self.failure = KeyEngineError(-msg.error, self.operation, "the dump ended with an error")
            self.done = True
        elif isinstance(msg, XfrmMessage):
            self.parts.append(msg)

    def result(self) -> list[T]:
        if self.failure is not None:
            raise self.failure
        if self.error is not None:
            raise _failure(self.operation, self.error)
        return [self.each(part) for part in self.parts if self.keep(part)]


class _Then(Exchange[T]):
    """Two requests in a row: the second is sent once the first succeeded (XFRM does
    not echo a new policy, so adding one is followed by reading it back)."""

    def __init__(self, first: Exchange[None], second: Exchange[T]) -> None:
        super().__init__(first.operation, first.request)
        self.first, self.second = first, second
        self.current: Exchange[None] | Exchange[T] = first

    def feed(self, raw: bytes) -> bool:
        return self.current.feed(raw)

    def follow_up(self) -> bytes | None:
        if self.current is self.first:
            self.first.result()  # raises if the first failed
            self.current = self.second
            return self.second.request
        return None

    def result(self) -> T:
        return self.second.result()


def _nothing(msg: XfrmMessage | None) -> None:
    return None


def _ipsec_state(msg: XfrmMessage) -> bool:
    """An ESP, AH or IPComp SA in a mode the model names (not Mobile IPv6's
    route-optimisation states, not IP-TFS)."""
    return isinstance(msg.fixed, UsersaInfo) and msg.fixed.id.proto in IPSEC and msg.fixed.mode in MODE_BACK


def _main_ipsec(msg: XfrmMessage) -> bool:
    """A policy of the SPD itself whose templates are all IPsec in modes the model names:
    not a sub policy, not a socket's own policy (Linux lists those with direction 3 or
    4), not a route-optimisation or IP-TFS one."""
    kind = msg.get(PolicyTypeAttr)
    if kind is not None and kind.type != XfrmPolicyType.MAIN:
        return False
    if not isinstance(msg.fixed, UserpolicyInfo) or msg.fixed.dir not in DIRECTION_BACK:
        return False
    return all(t.id.proto in IPSEC and t.mode in MODE_BACK for attr in msg.all(Templates) for t in attr.templates)


def _info(msg: XfrmMessage | None, kind: type[T]) -> T:
    if msg is None or not isinstance(msg.fixed, kind):
        raise KeyEngineError(_errno.EPROTO, "read reply", f"expected {kind.__name__} from the kernel")
    return msg.fixed


class XfrmOperations:
    """``Operations`` for Linux ``xfrm_user``."""

    name = "linux-xfrm"

    def __init__(self) -> None:
        self._seq = itertools.count(1)

    def _next(self) -> int:
        return next(self._seq)

    def _ack(self, op: str, msg: XfrmMessage) -> _Netlink[None]:
        return _Netlink(op, msg, lambda m: None)

    def add_sa(self, sa: SecurityAssociation) -> Exchange[None]:
        return self._ack("add SA", sa_to(MsgType.NEWSA, sa, self._next()))

    def update_sa(self, sa: SecurityAssociation) -> Exchange[None]:
        return self._ack("update SA", sa_to(MsgType.UPDSA, sa, self._next()))

    def _sa_id(self, msg_type: MsgType, flags: int, dst: IPAddress, spi: int, proto: int) -> XfrmMessage:
        return XfrmMessage(msg_type, flags, self._next(), 0, UsersaId(dst, spi, _family(dst), proto))

    def get_sa(self, dst: IPAddress, spi: int, proto: int) -> Exchange[SecurityAssociation]:
        msg = self._sa_id(MsgType.GETSA, NlFlags.REQUEST, dst, spi, proto)
        return _Netlink("get SA", msg, lambda m: sa_from(_info(m, UsersaInfo), m.attrs if m else ()))

    def delete_sa(self, dst: IPAddress, spi: int, proto: int) -> Exchange[None]:
        return self._ack("delete SA", self._sa_id(MsgType.DELSA, ACK, dst, spi, proto))

    def allocate_spi(
        self, src: IPAddress, dst: IPAddress, proto: int, reqid: int, spi_range: tuple[int, int], mode: Mode
    ) -> Exchange[int]:
        family = _family(dst)
        info = UsersaInfo(
            XfrmSelector(_zero(family), _zero(family), family=family),
            XfrmId(dst, 0, proto),
            src,
            reqid=reqid,
            family=family,
            mode=MODE[mode],
        )
        msg = XfrmMessage(MsgType.ALLOCSPI, NlFlags.REQUEST, self._next(), 0, UserspiInfo(info, *spi_range))
        return _Netlink("allocate SPI", msg, lambda m: _info(m, UsersaInfo).id.spi)

    def _policy_then_get(self, op: str, msg_type: MsgType, policy: Policy) -> Exchange[Policy]:
        return _Then(
            self._ack(op, policy_to(msg_type, policy, self._next())), self.get_policy(policy.selector, policy.dir)
        )

    def add_policy(self, policy: Policy) -> Exchange[Policy]:
        return self._policy_then_get("add policy", MsgType.NEWPOLICY, policy)

    def update_policy(self, policy: Policy) -> Exchange[Policy]:
        return self._policy_then_get("update policy", MsgType.UPDPOLICY, policy)

    def get_policy(self, selector: Selector, dir: Dir) -> Exchange[Policy]:
        policy_id = UserpolicyId(selector_to(selector), 0, DIRECTION[dir])
        msg = XfrmMessage(MsgType.GETPOLICY, NlFlags.REQUEST, self._next(), 0, policy_id)
        return _Netlink("get policy", msg, lambda m: policy_from(_info(m, UserpolicyInfo), m.attrs if m else ()))

    def delete_policy(self, selector: Selector, dir: Dir) -> Exchange[None]:
        policy_id = UserpolicyId(selector_to(selector), 0, DIRECTION[dir])
        return self._ack("delete policy", XfrmMessage(MsgType.DELPOLICY, ACK, self._next(), 0, policy_id))

    def flush_sas(self) -> Exchange[None]:
        return self._ack("flush SAs", XfrmMessage(MsgType.FLUSHSA, ACK, self._next(), 0, UsersaFlush(255)))

    def flush_policies(self) -> Exchange[None]:
        return self._ack("flush policies", XfrmMessage(MsgType.FLUSHPOLICY, ACK, self._next(), 0))

    def dump_sas(self) -> Exchange[list[SecurityAssociation]]:
        msg = XfrmMessage(MsgType.GETSA, NlFlags.REQUEST | DUMP, self._next(), 0)
        return _Dump("dump SAs", msg, lambda m: sa_from(_info(m, UsersaInfo), m.attrs), _ipsec_state)

    def dump_policies(self) -> Exchange[list[Policy]]:
        msg = XfrmMessage(MsgType.GETPOLICY, NlFlags.REQUEST | DUMP, self._next(), 0)
        return _Dump("dump policies", msg, lambda m: policy_from(_info(m, UserpolicyInfo), m.attrs), _main_ipsec)

    def migrate(self, request: MigrateRequest) -> Exchange[None]:
        seq = next(self._seq)
        return _Netlink("migrate", encode_migrate(request, seq), _nothing, seq)

    def events(self, raw: bytes) -> list[Event]:
        out: list[Event] = []
        for msg in decode(raw):
            if not isinstance(msg, XfrmMessage):
                continue
            if msg.type == MsgType.MIGRATE:
                out.append(MigrateEvent(migrate_from(msg)))
            elif msg.type == MsgType.EXPIRE and isinstance(msg.fixed, UserExpire):
                state = msg.fixed.state
                if state.id.proto in IPSEC and state.mode in MODE_BACK:  # (not a route-optimisation state)
                    out.append(ExpireEvent(sa_from(state, msg.attrs), bool(msg.fixed.hard)))
            elif msg.type == MsgType.ACQUIRE and isinstance(msg.fixed, UserAcquire):
                acquire = acquire_from(msg.fixed, msg.all(Templates))
                if acquire is not None:
                    out.append(acquire)
        return out
