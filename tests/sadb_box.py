"""A small harness for unit tests of ``pfmigrate.sadb.Engine``: clients, messages, answers."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from pfmigrate.pfkey import (
    SA,
    SA2,
    AddressDst,
    AddressSrc,
    AuthAlg,
    Direction,
    EncAlg,
    Extension,
    IPProto,
    IPsecRequest,
    KeyAuth,
    KeyEncrypt,
    KMAddress,
    Level,
    LifetimeHard,
    LifetimeSoft,
    Message,
    Mode,
    MsgType,
    Policy,
    PolicyType,
    SAState,
    SAType,
    SockAddr,
    decode,
)
from pfmigrate.pfkey.generation import generation_of
from pfmigrate.sadb import Engine, Outcome
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

NOW = 1_800_000_000.0
PID = 4242


@dataclass
class Box:
    """An engine with two clients: ``a`` asks, ``b`` listens (and may register)."""

    semantics: str = "pfmigrate"
    engine: Engine = field(init=False)
    a: int = field(init=False)
    b: int = field(init=False)
    now: float = NOW
    seq: int = 0

    def __post_init__(self) -> None:
        self.engine = Engine(semantics=self.semantics, rng=random.Random(7))
        self.b = self.engine.connect()
        self.a = self.engine.connect()

    def send(self, msg: Message | bytes, client: int | None = None) -> Outcome:
        if isinstance(msg, Message):
            self.seq += 1
            msg = Message(msg.type, msg.satype, self.seq, PID, msg.errno, msg.extensions).encode()
        return self.engine.handle(self.a if client is None else client, msg, self.now)

    def to(self, outcome: Outcome, client: int) -> list[Message]:
        return [decode(d.data) for d in outcome.deliveries if d.client == client]

    def answer(self, msg: Message | bytes, client: int | None = None) -> Message:
        """The one message the sender gets back."""
        sender = self.a if client is None else client
        outcome = self.send(msg, sender)
        assert outcome.send_errno == 0, f"send() failed with errno {outcome.send_errno}"
        got = self.to(outcome, sender)
        assert len(got) == 1, f"expected one answer, got {len(got)}"
        return got[0]

    def ok(self, msg: Message | bytes, client: int | None = None) -> Message:
        got = self.answer(msg, client)
        assert got.errno == 0, f"refused with errno {got.errno}"
        return got

    def refused(self, msg: Message | bytes, client: int | None = None) -> int:
        return self.answer(msg, client).errno

    def generations(self, outcome: Outcome) -> list[int | None]:
        return [generation_of(decode(d.data)) for d in outcome.deliveries]


def addresses(src: str, dst: str, proto: int = 0) -> tuple[AddressSrc, AddressDst]:
    bits = 32 if "." in src else 128
    return AddressSrc.of(f"{src}/{bits}", IPProto.of(proto)), AddressDst.of(f"{dst}/{bits}", IPProto.of(proto))


def esp_sa(
    spi: int,
    src: str = OLD_COA,
    dst: str = HOME_AGENT,
    *,
    reqid: int = 0,
    mode: Mode = Mode.TUNNEL,
    kind: MsgType = MsgType.ADD,
    lifetimes: tuple[int, int] | None = (3000, 3600),
    extra: tuple[Extension, ...] = (),
) -> Message:
    exts: list[Extension] = [
        SA(spi, 32, SAState.MATURE, AuthAlg.X_SHA2_256HMAC, EncAlg.X_AESCBC),
        SA2(mode, 0, reqid),
        *addresses(src, dst),
        KeyAuth.of(bytes(range(32))),
        KeyEncrypt.of(bytes(range(16))),
        *extra,
    ]
    if lifetimes is not None:
        exts += [LifetimeSoft(0, 0, lifetimes[0], 0), LifetimeHard(0, 0, lifetimes[1], 0)]
    return Message(kind, SAType.ESP, extensions=tuple(exts))


def sa_key(spi: int, src: str = OLD_COA, dst: str = HOME_AGENT, kind: MsgType = MsgType.GET) -> Message:
    return Message(kind, SAType.ESP, extensions=(SA(spi), *addresses(src, dst)))


def tunnel(src: str, dst: str, reqid: int = 0, proto: IPProto = IPProto.ESP) -> IPsecRequest:
    level = Level.UNIQUE if reqid else Level.REQUIRE
    return IPsecRequest(proto, Mode.TUNNEL, level, reqid, SockAddr.of(src), SockAddr.of(dst))


def mh_policy(
    coa: str = OLD_COA,
    *,
    inbound: bool = False,
    reqid: int = 0,
    kind: MsgType = MsgType.X_SPDADD,
    priority: int = 0,
) -> Message:
    """The seed mobile node's MH policy, outbound (HoA -> HA over coa -> HA) or inbound."""
    if inbound:
        exts = (*addresses(HOME_AGENT, HOME_ADDRESS, IPProto.MH), tunnel(HOME_AGENT, coa, reqid))
        direction = Direction.INBOUND
    else:
        exts = (*addresses(HOME_ADDRESS, HOME_AGENT, IPProto.MH), tunnel(coa, HOME_AGENT, reqid))
        direction = Direction.OUTBOUND
    src, dst, request = exts
    policy = Policy(PolicyType.IPSEC, direction, priority=priority, requests=(request,))
    return Message(kind, SAType.UNSPEC, extensions=(src, dst, policy))


def migrate(
    old: str = OLD_COA,
    new: str = NEW_COA,
    *,
    inbound: bool = False,
    reqid: int = 0,
    spi: int | None = None,
    kmaddress: bool = True,
) -> Message:
    """X_MIGRATE of the seed MN's MH policy from ``old`` to ``new`` ("::" old: by reqid)."""
    if inbound:
        src, dst = addresses(HOME_AGENT, HOME_ADDRESS, IPProto.MH)
        pairs = [tunnel(HOME_AGENT, old, reqid), tunnel(HOME_AGENT, new, reqid)]
        direction = Direction.INBOUND
    else:
        src, dst = addresses(HOME_ADDRESS, HOME_AGENT, IPProto.MH)
        pairs = [tunnel(old, HOME_AGENT, reqid), tunnel(new, HOME_AGENT, reqid)]
        direction = Direction.OUTBOUND
    if old == "::":
        pairs[0] = IPsecRequest(IPProto.ESP, Mode.TUNNEL, Level.UNIQUE, reqid, SockAddr.of("::"), SockAddr.of("::"))
    exts: list[Extension] = [src, dst, Policy(PolicyType.IPSEC, direction, requests=tuple(pairs))]
    if kmaddress:
        exts.append(KMAddress(SockAddr.of(new), SockAddr.of(HOME_AGENT)))
    if spi is not None:
        exts.append(SA(spi))
    return Message(MsgType.X_MIGRATE, SAType.ESP, extensions=tuple(exts))


__all__ = ["NOW", "Box", "addresses", "esp_sa", "mh_policy", "migrate", "sa_key", "tunnel"]
