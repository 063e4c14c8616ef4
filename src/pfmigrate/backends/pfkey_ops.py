"""The model in PF_KEY v2, as Linux ``af_key`` reads and writes it (sans-IO).

What PF_KEY cannot say raises ``Unsupported`` rather than being dropped: an
authentication truncation other than Linux's default for the algorithm, a replay window
over 255, an SA selector, NAT-T original addresses of another family, a template's reqid
above 0x3fff or on an optional template, an SA of a protocol other than ESP, AH, IPComp.
An SA with an AEAD cipher, which Linux's PF_KEY refuses with ENOSYS, is refused with
that errno before anything is sent, saying why and which backend can add it.
"""

from __future__ import annotations

import errno as _errno
import itertools
from collections.abc import Callable
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any, TypeVar

from pfmigrate import algorithms
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
    EventsLost,
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
from pfmigrate.model import Level as ModelLevel
from pfmigrate.pfkey import (
    SA,
    SA2,
    Address,
    AddressDst,
    AddressSrc,
    AuthAlg,
    DecodeError,
    Direction,
    EncAlg,
    Extension,
    IPProto,
    IPsecRequest,
    KeyAuth,
    KeyEncrypt,
    Level,
    LifetimeCurrent,
    LifetimeHard,
    LifetimeSoft,
    Message,
    MsgType,
    NatTDport,
    NatTOA,
    NatTSport,
    NatTType,
    PolicyType,
    SAFlags,
    SAType,
    SockAddr,
    SPIRange,
    decode,
)
from pfmigrate.pfkey import (
    KMAddress as KMAddressExt,
)
from pfmigrate.pfkey import Mode as PfkeyMode
from pfmigrate.pfkey import (
    Policy as PolicyExt,
)
from pfmigrate.pfkey import (
    SAState as PfkeySAState,
)
from pfmigrate.pfkey.generation import generation_of

T = TypeVar("T")
# Linux sends an answer to every PF_KEY socket with the request's pid and seq: sequence
# numbers unique in this process keep two engines from taking each other's answers.
_SEQUENCE = itertools.count(1)
IPAddress = IPv4Address | IPv6Address

SATYPE = {ESP: SAType.ESP, AH: SAType.AH, IPCOMP: SAType.X_IPCOMP}
PROTO = {satype: proto for proto, satype in SATYPE.items()}
MODE = {Mode.TRANSPORT: PfkeyMode.TRANSPORT, Mode.TUNNEL: PfkeyMode.TUNNEL, Mode.BEET: PfkeyMode.BEET}
MODE_BACK = {v: k for k, v in MODE.items()} | {PfkeyMode.ANY: Mode.TRANSPORT}
DIRECTION = {Dir.IN: Direction.INBOUND, Dir.OUT: Direction.OUTBOUND, Dir.FWD: Direction.FWD}
DIRECTION_BACK = {v: k for k, v in DIRECTION.items()}
STATE = {
    PfkeySAState.LARVAL: SAState.LARVAL,
    PfkeySAState.MATURE: SAState.MATURE,
    PfkeySAState.DYING: SAState.DYING,
    PfkeySAState.DEAD: SAState.DEAD,
}
LEVEL = {ModelLevel.USE: Level.USE, ModelLevel.REQUIRE: Level.REQUIRE, ModelLevel.UNIQUE: Level.UNIQUE}
FLAGS = {SAFlag.NOECN: SAFlags.NOECN, SAFlag.DECAP_DSCP: SAFlags.DECAP_DSCP, SAFlag.NOPMTUDISC: SAFlags.NOPMTUDISC}


def _unspecified(like: IPAddress) -> IPAddress:
    return IPv4Address(0) if like.version == 4 else IPv6Address(0)


def _host(address: IPAddress, port: int = 0, ext: type[Address] = AddressSrc, proto: int = 0) -> Address:
    return ext(SockAddr(address, port), address.max_prefixlen, IPProto.of(proto or IPProto.ANY))


# --- model -> PF_KEY ----------------------------------------------------------------------------


def _algorithms(op: str, sa: SecurityAssociation) -> tuple[int, int, list[Extension]]:
    """The SA extension's auth and encrypt numbers, and the key extensions."""
    auth = encrypt = 0
    keys: list[Extension] = []
    if sa.aead is not None:
        number = algorithms.AEAD_BY_NAME.get((sa.aead.name, sa.aead.icv_bits))
        if number is None:
            raise Unsupported(op, f"PF_KEY has no number for AEAD {sa.aead.name} with a {sa.aead.icv_bits}-bit ICV")
        encrypt = number
        keys.append(KeyEncrypt(sa.aead.key_bits, sa.aead.key))
    if sa.auth is not None:
        found = algorithms.AUTH_BY_NAME.get(sa.auth.name)
        if found is None:
            raise Unsupported(op, f"PF_KEY has no number for authentication {sa.auth.name}")
        auth, trunc = found
        if sa.auth.icv_bits not in (0, trunc):
            raise Unsupported(
                op, f"PF_KEY cannot truncate {sa.auth.name} to {sa.auth.icv_bits} bits (Linux uses {trunc})"
            )
        if sa.auth.key or sa.proto == AH:  # Linux wants AH's key extension, even empty (digest_null)
            keys.append(KeyAuth(sa.auth.key_bits, sa.auth.key))
    if sa.enc is not None:
        enc_number = algorithms.ENCRYPT_BY_NAME.get(sa.enc.name)
        if enc_number is None:
            raise Unsupported(op, f"PF_KEY has no number for encryption {sa.enc.name}")
        encrypt = enc_number
        if sa.enc.key or sa.proto == ESP:  # Linux wants ESP's key extension, even empty (null cipher)
            keys.append(KeyEncrypt(sa.enc.key_bits, sa.enc.key))
    if sa.comp is not None:
        comp_number = algorithms.COMPRESS_BY_NAME.get(sa.comp.name)
        if comp_number is None:
            raise Unsupported(op, f"PF_KEY has no number for compression {sa.comp.name}")
        encrypt = comp_number
    return auth, encrypt, keys


def sa_message(msg_type: MsgType, sa: SecurityAssociation) -> Message:
    op = msg_type.label.lower()
    if sa.selector is not None:
        raise Unsupported(op, "PF_KEY cannot give an SA a selector")
    if sa.replay_window > 0xFF:
        raise Unsupported(op, f"PF_KEY's replay window is at most 255, not {sa.replay_window}")
    auth, encrypt, keys = _algorithms(op, sa)
    flags = SAFlags(0)
    for flag, bit in FLAGS.items():
        if flag in sa.flags:
            flags |= bit
    lt = sa.lifetime
    extensions: list[Extension] = [
        SA(sa.spi, sa.replay_window, PfkeySAState.MATURE, AuthAlg.of(auth), EncAlg.of(encrypt), flags),
        SA2(MODE[sa.mode], 0, sa.reqid),
        _host(sa.src),
        _host(sa.dst, ext=AddressDst),
        *keys,
    ]
    if lt != Lifetime():  # Linux takes hard and soft together or neither (EINVAL otherwise)
        extensions.append(LifetimeHard(lt.hard_packets, lt.hard_bytes, lt.hard_add, lt.hard_use))
        extensions.append(LifetimeSoft(lt.soft_packets, lt.soft_bytes, lt.soft_add, lt.soft_use))
    if sa.encap is not None:
        extensions += [NatTType(sa.encap.type), NatTSport(sa.encap.sport), NatTDport(sa.encap.dport)]
        if sa.encap.oa is not None:
            if sa.encap.oa.version != sa.dst.version:
                raise Unsupported(op, f"PF_KEY keeps a NAT-T original address in the SA's family, not {sa.encap.oa}")
            extensions.append(NatTOA(SockAddr(sa.encap.oa), sa.encap.oa.max_prefixlen))
    return Message(msg_type, SATYPE[sa.proto], extensions=tuple(extensions))


def selector_extensions(selector: Selector) -> tuple[AddressSrc, AddressDst]:
    proto = IPProto.of(selector.proto or IPProto.ANY)
    src = AddressSrc(SockAddr(selector.src.network_address, selector.sport), selector.src.prefixlen, proto)
    dst = AddressDst(SockAddr(selector.dst.network_address, selector.dport), selector.dst.prefixlen, proto)
    return src, dst


IPSEC_MANUAL_REQID_MAX = 0x3FFF  # Linux gives a template a reqid of its own above this
_POLICY_OPERATION = {MsgType.X_SPDADD: "add policy", MsgType.X_SPDUPDATE: "update policy"}


def _request(op: str, t: Template) -> IPsecRequest:
    if t.reqid > IPSEC_MANUAL_REQID_MAX:
        raise Unsupported(op, f"PF_KEY takes a template's reqid up to {IPSEC_MANUAL_REQID_MAX}, not {t.reqid}")
    if t.optional and t.reqid:
        raise Unsupported(op, "PF_KEY keeps no reqid for an optional template (level use)")
    src = dst = None
    if t.src is not None and t.dst is not None:
        src, dst = SockAddr(t.src), SockAddr(t.dst)
    return IPsecRequest(IPProto.of(t.proto), MODE[t.mode], LEVEL[t.level], t.reqid, src, dst)


def policy_message(msg_type: MsgType, policy: Policy) -> Message:
    ptype = {Action.IPSEC: PolicyType.IPSEC, Action.NONE: PolicyType.NONE, Action.DISCARD: PolicyType.DISCARD}
    ext = PolicyExt(
        ptype[policy.action],
        DIRECTION[policy.dir],
        policy.index,
        policy.priority,
        tuple(_request(_POLICY_OPERATION.get(msg_type, msg_type.label.lower()), t) for t in policy.templates),
    )
    return Message(msg_type, SAType.UNSPEC, extensions=(*selector_extensions(policy.selector), ext))


def migrate_message(request: MigrateRequest) -> Message:
    requests: list[IPsecRequest] = []
    for b in request.bundles:
        level = Level.UNIQUE if b.reqid else Level.REQUIRE
        for src, dst in ((b.old_src, b.old_dst), (b.new_src, b.new_dst)):
            requests.append(
                IPsecRequest(IPProto.of(b.proto), MODE[b.mode], level, b.reqid, SockAddr(src), SockAddr(dst))
            )
    extensions: list[Extension] = [
        *selector_extensions(request.selector),
        PolicyExt(PolicyType.IPSEC, DIRECTION[request.dir], requests=tuple(requests)),
    ]
    if request.kmaddress is not None:
        extensions.append(KMAddressExt(SockAddr(request.kmaddress.local), SockAddr(request.kmaddress.remote)))
    satype = SATYPE.get(request.bundles[0].proto, SAType.UNSPEC)
    return Message(MsgType.X_MIGRATE, satype, extensions=tuple(extensions))


# --- PF_KEY -> model -----------------------------------------------------------------------------


def _selector_from(src: Address, dst: Address, any_proto: int) -> Selector:
    proto = 0 if src.proto == any_proto or dst.proto == any_proto else int(dst.proto)
    return Selector(
        ip_network(f"{src.address.address}/{src.prefixlen}", strict=False),
        ip_network(f"{dst.address.address}/{dst.prefixlen}", strict=False),
        proto,
        src.address.port,
        dst.address.port,
    )


def sa_from(msg: Message) -> SecurityAssociation:
    sa, sa2 = msg.require(SA), msg.get(SA2)
    proto = PROTO.get(msg.satype)
    if proto is None:
        raise DecodeError(3, f"SA message of satype {msg.satype.label} is not ESP, AH or IPComp")
    auth = aead = enc = comp = None
    key_auth, key_enc = msg.get(KeyAuth), msg.get(KeyEncrypt)
    # Algorithm 0 is none, as in a larval SA (after GETSPI), which setkey shows without an
    # E: or C: line; an ESP cipher PF_KEY has no number for still comes with its key.
    if proto == IPCOMP:
        comp = Algorithm(algorithms.COMPRESS.get(sa.encrypt, f"calg-{sa.encrypt}")) if sa.encrypt else None
    elif sa.encrypt in algorithms.AEAD:
        name, icv = algorithms.AEAD[sa.encrypt]
        aead = Algorithm(name, key_enc.key if key_enc else b"", icv, key_enc.bits if key_enc else 0)
    elif sa.encrypt or (proto == ESP and key_enc is not None):
        name = algorithms.ENCRYPT.get(sa.encrypt, f"ealg-{sa.encrypt}")
        enc = Algorithm(name, key_enc.key if key_enc else b"", 0, key_enc.bits if key_enc else 0)
    if sa.auth:
        name, trunc = algorithms.AUTH.get(sa.auth, (f"aalg-{sa.auth}", 0))
        auth = Algorithm(name, key_auth.key if key_auth else b"", trunc, key_auth.bits if key_auth else 0)
    hard, soft, cur = msg.get(LifetimeHard), msg.get(LifetimeSoft), msg.get(LifetimeCurrent)
    lifetime = Lifetime(
        soft.nbytes if soft else 0, hard.nbytes if hard else 0, soft.allocations if soft else 0,
        hard.allocations if hard else 0, soft.addtime if soft else 0, hard.addtime if hard else 0,
        soft.usetime if soft else 0, hard.usetime if hard else 0,
    )  # fmt: skip
    counters = Counters(cur.nbytes, cur.allocations, cur.addtime, cur.usetime) if cur else Counters()
    encap = None
    nat_type = msg.get(NatTType)
    if nat_type is not None:
        sport, dport, oa = msg.get(NatTSport), msg.get(NatTDport), msg.get(NatTOA)
        encap = Encap(
            nat_type.type, sport.port if sport else 0, dport.port if dport else 0, oa.address.address if oa else None
        )
    flags = SAFlag(0)
    for flag, bit in FLAGS.items():
        if sa.flags & bit:
            flags |= flag
    return SecurityAssociation(
        msg.require(AddressSrc).address.address,
        msg.require(AddressDst).address.address,
        sa.spi,
        proto,
        MODE_BACK.get(sa2.mode, Mode.TRANSPORT) if sa2 else Mode.TRANSPORT,
        sa2.reqid if sa2 else 0,
        auth,
        enc,
        aead,
        comp,
        sa.replay,
        flags,
        lifetime,
        None,  # Linux's PF_KEY carries no SA selector worth reading (only ADDRESS_PROXY)
        encap,
        counters,
        STATE.get(sa.state, SAState.MATURE),
    )


def _template_from(rq: IPsecRequest) -> Template:
    mode = MODE_BACK.get(rq.mode, Mode.TRANSPORT)
    src = rq.src.address if rq.src and mode != Mode.TRANSPORT else None
    dst = rq.dst.address if rq.dst and mode != Mode.TRANSPORT else None
    return Template(int(rq.proto), mode, src, dst, rq.reqid, rq.level == Level.USE)


def policy_from(msg: Message) -> Policy:
    ext = msg.require(PolicyExt)
    action = {PolicyType.IPSEC: Action.IPSEC, PolicyType.NONE: Action.NONE, PolicyType.DISCARD: Action.DISCARD}
    return Policy(
        _selector_from(msg.require(AddressSrc), msg.require(AddressDst), IPProto.ANY),
        DIRECTION_BACK[ext.dir],
        tuple(_template_from(rq) for rq in ext.requests),
        action.get(ext.type, Action.IPSEC),
        ext.priority,
        ext.id,
    )


def _spd_policy(msg: Message) -> bool:
    """A policy of the SPD itself, not a socket's own (Linux dumps those too, with
    direction 4 or 5)."""
    ext = msg.get(PolicyExt)
    return ext is not None and ext.dir in DIRECTION_BACK


def migrate_from(msg: Message) -> MigrateRequest:
    """A MIGRATE broadcast. Linux puts the selector's protocol there as XFRM holds it
    (0 for any), not as PF_KEY's 255."""
    ext = msg.require(PolicyExt)
    requests = ext.requests
    if len(requests) % 2:
        raise DecodeError(16, f"a MIGRATE holds old/new request pairs, not {len(requests)} requests")
    bundles = []
    for old, new in zip(requests[0::2], requests[1::2], strict=True):
        if not (old.src and old.dst and new.src and new.dst):
            raise DecodeError(16, "a MIGRATE request has no tunnel endpoints")
        bundles.append(
            MigrateBundle(
                old.src.address, old.dst.address, new.src.address, new.dst.address, int(old.proto),
                MODE_BACK.get(old.mode, Mode.TRANSPORT), old.reqid,
            )
        )  # fmt: skip
    kma = msg.get(KMAddressExt)
    return MigrateRequest(
        _selector_from(msg.require(AddressSrc), msg.require(AddressDst), 0),
        DIRECTION_BACK[ext.dir],
        tuple(bundles),
        KMAddress(kma.local.address, kma.remote.address) if kma else None,
    )


# --- exchanges ------------------------------------------------------------------------------------


def _checked(op: str, reply: Message, source: str) -> Message:
    if reply.errno:
        raise KeyEngineError(reply.errno, op, f"answered by {source}")
    return reply


R = TypeVar("R", bound="_Reply[Any]")
_SOURCES = {"linux-pfkey": "Linux af_key", "keyd": "keyd", "inprocess": "pfmigrate's engine"}


class _Reply(Exchange[T]):
    """A request answered by one message carrying its seq and pid."""

    source = "Linux af_key"  # who answers, for error messages (set by the operations)

    def __init__(self, operation: str, request: Message, convert: Callable[[Message], T]) -> None:
        super().__init__(operation, request.encode())
        self.message = request
        self.convert = convert
        self.reply: Message | None = None
        self.failure: KeyEngineError | None = None  # our answer, unreadable

    def _decode(self, raw: bytes) -> Message | None:
        try:
            return decode(raw)
        except DecodeError as exc:
            if self._ours(raw):
                self.failure = KeyEngineError(
                    _errno.EBADMSG, self.operation, f"the answer from {self.source} does not decode: {exc}"
                )
            return None  # otherwise not ours to judge: another process's garbage never answers us

    def _ours(self, raw: bytes) -> bool:
        """Whether an unreadable message has our answer's header (pid and seq)."""
        return len(raw) >= 16 and raw[8:16] == self.request[8:16]

    def feed(self, raw: bytes) -> bool:
        msg = self._decode(raw)
        if msg is not None and msg.pid == self.message.pid and msg.seq == self.message.seq:
            self.reply = msg
        return self.reply is not None or self.failure is not None

    def result(self) -> T:
        if self.failure is not None:
            raise self.failure
        assert self.reply is not None
        return self.convert(_checked(self.operation, self.reply, self.source))


class _Dump(_Reply[list[T]]):
    """A DUMP or X_SPDDUMP: answers numbered 1, 2, ... and the last with seq 0."""

    lingers = True

    def __init__(
        self,
        operation: str,
        request: Message,
        convert: Callable[[Message], T],
        keep: Callable[[Message], bool] = lambda msg: True,
    ) -> None:
        super().__init__(operation, request, lambda m: [])
        self.each = convert
        self.keep = keep
        self.parts: list[Message] = []
        self.error = 0

    def _ours(self, raw: bytes) -> bool:  # a dump's answers are numbered 1, 2, ..., 0
        return len(raw) >= 16 and raw[1] == self.message.type and raw[12:16] == self.request[12:16]

    def feed(self, raw: bytes) -> bool:
        msg = self._decode(raw)
        if self.failure is not None:
            return True
        if msg is None or msg.pid != self.message.pid or msg.type != self.message.type:
            return False
        if msg.errno:
            self.error = msg.errno
            return True
        self.parts.append(msg)
        return msg.seq == 0

    def result(self) -> list[T]:
        if self.failure is not None:
            raise self.failure
        if self.error and not (self.error == _errno.ENOENT and not self.parts):
            raise KeyEngineError(self.error, self.operation, f"answered by {self.source}")
        return [self.each(part) for part in self.parts if self.keep(part)]


class _Migrate(_Reply[None]):
    """X_MIGRATE: Linux answers success only with its broadcast (seq 0, pid 0), failure
    with an error to the sender."""

    def __init__(self, request: Message, expected: MigrateRequest) -> None:
        super().__init__("migrate", request, lambda m: None)
        self.expected = expected

    def feed(self, raw: bytes) -> bool:
        msg = self._decode(raw)
        if self.failure is not None:
            return True
        if msg is None or msg.type != MsgType.X_MIGRATE:
            return False
        if msg.pid == self.message.pid and msg.seq == self.message.seq:
            self.reply = msg
        elif msg.pid == 0 and not msg.errno:  # (the broadcast names no sender: it must be this very move)
            announced, expected = migrate_from(msg), self.expected
            if (announced.dir, announced.bundles, _policy_of(announced.selector)) == (
                expected.dir,
                expected.bundles,
                _policy_of(expected.selector),
            ):
                self.reply = msg
        return self.reply is not None


def _satype(op: str, proto: int) -> SAType:
    satype = SATYPE.get(proto)
    if satype is None:
        raise Unsupported(op, f"PF_KEY has SAs of ESP (50), AH (51) and IPComp (108), not of protocol {proto}")
    return satype


def _policy_of(selector: Selector) -> tuple[object, ...]:
    """What of a selector a MIGRATE broadcast repeats: its addresses and protocol (Linux
    leaves the ports out)."""
    return selector.src, selector.dst, selector.proto


class PfKeyOperations:
    """``Operations`` for Linux ``af_key`` (and pfmigrate's engine, which speaks it too)."""

    def __init__(self, pid: int, *, name: str = "linux-pfkey") -> None:
        self.pid = pid
        self.name = name
        self._generation: int | None = None  # the last broadcast generation seen (pfmigrate engines)

    def _own(self, exchange: R) -> R:
        exchange.source = _SOURCES.get(self.name, self.name)
        return exchange

    def _stamp(self, msg: Message) -> Message:
        return Message(msg.type, msg.satype, next(_SEQUENCE), self.pid, 0, msg.extensions)

    def _reply(self, op: str, msg: Message, convert: Callable[[Message], T]) -> _Reply[T]:
        return self._own(_Reply(op, self._stamp(msg), convert))

    def _sa_id(self, msg_type: MsgType, dst: IPAddress, spi: int, proto: int) -> Message:
        # Linux finds an SA by destination, SPI and protocol; the source must only be present.
        src = AddressSrc(SockAddr(_unspecified(dst)), dst.max_prefixlen)
        satype = _satype(f"{msg_type.label.lower()} SA", proto)
        return Message(msg_type, satype, extensions=(SA(spi), src, _host(dst, ext=AddressDst)))

    def _no_aead(self, op: str, sa: SecurityAssociation) -> None:
        """Linux's ``af_key`` looks an ESP cipher up in its encryption table only, never
        in its AEAD one, and answers ENOSYS: the same errno, said before asking, with why
        and with the backend that can (pfmigrate's engine answers as Linux does)."""
        if sa.aead is not None:
            raise KeyEngineError(
                _errno.ENOSYS,
                op,
                f"{sa.aead.name} is an AEAD cipher, and PF_KEY, which {self.name} speaks, has none on Linux "
                "(af_key never looks in the kernel's AEAD table): the linux-xfrm backend can add this SA",
            )

    def add_sa(self, sa: SecurityAssociation) -> Exchange[None]:
        self._no_aead("add SA", sa)
        return self._reply("add SA", sa_message(MsgType.ADD, sa), lambda m: None)

    def update_sa(self, sa: SecurityAssociation) -> Exchange[None]:
        self._no_aead("update SA", sa)
        return self._reply("update SA", sa_message(MsgType.UPDATE, sa), lambda m: None)

    def get_sa(self, dst: IPAddress, spi: int, proto: int) -> Exchange[SecurityAssociation]:
        return self._reply("get SA", self._sa_id(MsgType.GET, dst, spi, proto), sa_from)

    def delete_sa(self, dst: IPAddress, spi: int, proto: int) -> Exchange[None]:
        return self._reply("delete SA", self._sa_id(MsgType.DELETE, dst, spi, proto), lambda m: None)

    def allocate_spi(
        self, src: IPAddress, dst: IPAddress, proto: int, reqid: int, spi_range: tuple[int, int], mode: Mode
    ) -> Exchange[int]:
        pfkey_mode = PfkeyMode.ANY if mode == Mode.TRANSPORT else MODE[mode]  # (Linux reads "any" as transport)
        msg = Message(
            MsgType.GETSPI,
            _satype("allocate SPI", proto),
            extensions=(SA2(pfkey_mode, 0, reqid), _host(src), _host(dst, ext=AddressDst), SPIRange(*spi_range)),
        )
        return self._reply("allocate SPI", msg, lambda m: m.require(SA).spi)

    def add_policy(self, policy: Policy) -> Exchange[Policy]:
        return self._reply("add policy", policy_message(MsgType.X_SPDADD, policy), policy_from)

    def update_policy(self, policy: Policy) -> Exchange[Policy]:
        return self._reply("update policy", policy_message(MsgType.X_SPDUPDATE, policy), policy_from)

    def get_policy(self, selector: Selector, dir: Dir) -> Exchange[Policy]:
        # PF_KEY gets a policy only by id: dump, then pick.
        def pick(policies: list[Policy]) -> Policy:
            for policy in policies:
                if policy.selector == selector and policy.dir == dir:
                    return policy
            raise KeyEngineError(_errno.ENOENT, "get policy", f"no {dir.value} policy for {selector}")

        dump = _Dump("get policy", self._stamp(Message(MsgType.X_SPDDUMP)), policy_from, _spd_policy)
        return _Picked(self._own(dump), pick)

    def delete_policy(self, selector: Selector, dir: Dir) -> Exchange[None]:
        msg = policy_message(MsgType.X_SPDDELETE, Policy(selector, dir))
        return self._reply("delete policy", msg, lambda m: None)

    def flush_sas(self) -> Exchange[None]:
        return self._reply("flush SAs", Message(MsgType.FLUSH, SAType.UNSPEC), lambda m: None)

    def flush_policies(self) -> Exchange[None]:
        return self._reply("flush policies", Message(MsgType.X_SPDFLUSH), lambda m: None)

    def dump_sas(self) -> Exchange[list[SecurityAssociation]]:
        return self._own(_Dump("dump SAs", self._stamp(Message(MsgType.DUMP, SAType.UNSPEC)), sa_from))

    def dump_policies(self) -> Exchange[list[Policy]]:
        return self._own(_Dump("dump policies", self._stamp(Message(MsgType.X_SPDDUMP)), policy_from, _spd_policy))

    def migrate(self, request: MigrateRequest) -> Exchange[None]:
        return self._own(_Migrate(self._stamp(migrate_message(request)), request))

    def events(self, raw: bytes) -> list[Event]:
        msg = decode(raw)
        lost = self._gap(msg)
        if msg.errno or msg.pid != 0:
            return lost  # answers to requests, not announcements
        return lost + self._event(msg)

    def _gap(self, msg: Message) -> list[Event]:
        """A pfmigrate engine numbers its broadcasts: a gap means some were lost."""
        generation = generation_of(msg)
        if generation is None:
            return []
        last, self._generation = self._generation, generation
        if last is None or generation == last + 1:
            return []
        return [EventsLost(f"broadcasts {last + 1} to {generation - 1} did not arrive")]

    def _event(self, msg: Message) -> list[Event]:
        if msg.type == MsgType.X_MIGRATE:
            return [MigrateEvent(migrate_from(msg))]
        if msg.type == MsgType.EXPIRE:
            return [ExpireEvent(sa_from(msg), msg.get(LifetimeHard) is not None)]
        if msg.type == MsgType.ACQUIRE:
            src, dst, pol = msg.require(AddressSrc), msg.require(AddressDst), msg.require(PolicyExt)
            proto = PROTO.get(msg.satype, ESP)
            template = next((t for t in pol.requests), None)
            mode = MODE_BACK.get(template.mode, Mode.TRANSPORT) if template else Mode.TRANSPORT
            reqid = template.reqid if template else 0
            return [AcquireEvent(None, src.address.address, dst.address.address, proto, mode, reqid, pol.id, msg.seq)]
        return []


class _Picked(Exchange[T]):
    """Another exchange's answer, with a function applied (errors pass through)."""

    def __init__(self, inner: Exchange[list[Policy]], pick: Callable[[list[Policy]], T]) -> None:
        super().__init__(inner.operation, inner.request)
        self.inner = inner
        self.pick = pick
        self.lingers = inner.lingers

    def feed(self, raw: bytes) -> bool:
        return self.inner.feed(raw)

    def result(self) -> T:
        return self.pick(self.inner.result())
