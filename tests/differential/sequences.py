"""Seeded random sequences of PF_KEY messages to run against Linux and against our engine.

``generate(seed)`` gives the same ``Sequence`` for the same seed: steps, each one
message sent on one of three sockets. Sockets 0 and 1 send; socket 2 only listens. Only
socket 1 sends REGISTER and X_PROMISC, so it may become registered or promiscuous and
then sees more than the others.

Valid messages are built with the codec; invalid ones are built by byte surgery on the
codec's output (a codec value cannot hold a bad prefix length or a wrong extension
length). The generator keeps a rough model of what it has put into the SAD and SPD so
that later steps reuse SPIs, addresses, selectors, templates and policy ids: it only
guides choices and need not be right, since the comparison is between two runs.

What the sequences avoid, because a second run could not reproduce it:

* GETSPI picks a random SPI unless SPIRANGE has min == max, so it always sends a range
  of one SPI (or min > max, which fails before any SPI is chosen);
* every lifetime is absent or at least 3600 s, so no EXPIRE arrives during a run;
* no packet is ever sent, so there is no ACQUIRE.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import ip_address

from pfmigrate.pfkey import (
    SA,
    SA2,
    AddressDst,
    AddressProxy,
    AddressSrc,
    AuthAlg,
    Direction,
    EncAlg,
    Extension,
    ExtType,
    Filter,
    IPProto,
    IPsecRequest,
    KeyAuth,
    KeyEncrypt,
    KMAddress,
    Level,
    LifetimeCurrent,
    LifetimeHard,
    LifetimeSoft,
    Message,
    Mode,
    MsgType,
    NatTDport,
    NatTSport,
    NatTType,
    Policy,
    PolicyType,
    SAFlags,
    SAState,
    SAType,
    SecCtx,
    SockAddr,
    SPIRange,
    UnknownExtension,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

#: Sockets opened for every run, in this order; 0 and 1 send, 2 only listens.
SOCKETS = 3
#: ``sadb_msg_pid`` written into the requests each socket sends.
PIDS = (0x00AF0000, 0x00AF0001, 0x00AF0002)
#: Steps per sequence unless asked otherwise.
DEFAULT_STEPS = 30

_V4 = ("10.0.0.1", "10.0.0.2", "10.0.1.1", "192.0.2.1", "192.0.2.2", "198.51.100.7")
_V6 = (HOME_ADDRESS, OLD_COA, NEW_COA, HOME_AGENT, "2001:db8::1", "2001:db8::2", "2001:db8:1::5")
_SPIS = tuple(range(0x1000, 0x1010))
_REQIDS = (1, 2, 3, 5, 7, 100)
_MANUAL_REQID_MAX = 0x3FFF


def _as_stored(t: IPsecRequest) -> IPsecRequest:
    """A template as later steps may quote it: a reqid Linux generates (level unique with
    0 or above 0x3fff) comes from a counter shared by every namespace since boot, so no
    later request names it (reqid 0 matches any in MIGRATE; other requests pick their own)."""
    if t.level == Level.UNIQUE and (t.reqid == 0 or t.reqid > _MANUAL_REQID_MAX):
        return IPsecRequest(t.proto, t.mode, t.level, 0, t.src, t.dst)
    return t


_EXT = struct.Struct("=HH")
_AF_INET, _AF_INET6 = 2, 10


@dataclass(frozen=True)
class Step:
    """One message: the raw bytes sent on ``socket``, and what they are meant to test."""

    socket: int
    data: bytes
    note: str


@dataclass(frozen=True)
class Sequence:
    """The steps of one seed."""

    seed: int
    steps: tuple[Step, ...]

    def digest(self) -> str:
        """A hash of every step's socket and bytes: a transcript names the sequence it ran."""
        h = hashlib.sha256()
        for step in self.steps:
            h.update(struct.pack("=BI", step.socket, len(step.data)))
            h.update(step.data)
        return h.hexdigest()


def generate(seed: int, steps: int = DEFAULT_STEPS) -> Sequence:
    """The sequence of ``steps`` steps for ``seed``; the same seed gives the same bytes."""
    gen = _Generator(seed)
    return Sequence(seed, tuple(gen.step(i) for i in range(steps)) + final_dumps(steps + 1))


def final_dumps(seq: int) -> tuple[Step, ...]:
    """A DUMP and an X_SPDDUMP after the steps: the whole SAD and SPD are compared too."""
    return (
        Step(0, Message(MsgType.DUMP, SAType.UNSPEC, seq, PIDS[0]).encode(), "final DUMP"),
        Step(0, Message(MsgType.X_SPDDUMP, SAType.UNSPEC, seq + 1, PIDS[0]).encode(), "final X_SPDDUMP"),
    )


# --- algorithms -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Alg:
    id: int
    name: str
    bits: tuple[int, ...]  # key lengths Linux should take
    wrong: tuple[int, ...]  # key lengths the crypto layer should refuse (for HMAC: odd but fine)


_AUTH = (
    _Alg(AuthAlg.MD5HMAC, "hmac(md5)", (128,), (8, 64, 1024)),
    _Alg(AuthAlg.SHA1HMAC, "hmac(sha1)", (160,), (8, 128, 1000)),
    _Alg(AuthAlg.X_SHA2_256HMAC, "hmac(sha256)", (256,), (8, 128, 160)),
    _Alg(AuthAlg.X_SHA2_384HMAC, "hmac(sha384)", (384,), (256,)),
    _Alg(AuthAlg.X_SHA2_512HMAC, "hmac(sha512)", (512,), (256, 1024)),
)
_AUTH_RARE = (
    _Alg(AuthAlg.X_AES_XCBC_MAC, "xcbc(aes)", (128,), (64, 100)),
    _Alg(AuthAlg.X_RIPEMD160HMAC, "hmac(rmd160)", (160,), ()),
    _Alg(AuthAlg.X_NULL, "digest_null", (0,), (64,)),
)
_ENC = (
    _Alg(EncAlg.X_AESCBC, "cbc(aes)", (128, 192, 256), (64, 100, 129, 320)),
    _Alg(EncAlg.X_AESCBC, "cbc(aes)", (128, 192, 256), (64, 100, 129, 320)),
    _Alg(EncAlg.TRIPLEDESCBC, "cbc(des3_ede)", (192,), (64, 128)),
    _Alg(EncAlg.X_AES_GCM_ICV16, "rfc4106(gcm(aes))", (160, 224, 288), (128, 256)),
)
_ENC_RARE = (
    _Alg(EncAlg.X_AES_GCM_ICV8, "rfc4106(gcm(aes)) icv8", (160,), (128,)),
    _Alg(EncAlg.X_AES_CCM_ICV16, "rfc4309(ccm(aes))", (152,), (128,)),
    _Alg(EncAlg.X_AESCTR, "rfc3686(ctr(aes))", (160, 224, 288), (128,)),
    _Alg(EncAlg.DESCBC, "cbc(des)", (64,), (56, 128)),
    _Alg(EncAlg.NULL, "ecb(cipher_null)", (0,), (64,)),
    _Alg(EncAlg.X_CAMELLIACBC, "cbc(camellia)", (128, 256), (100,)),
    _Alg(EncAlg.X_BLOWFISHCBC, "cbc(blowfish)", (40, 128, 448), (32, 456)),
    _Alg(EncAlg.X_CASTCBC, "cbc(cast5)", (40, 128), (136,)),
    _Alg(EncAlg.X_SERPENTCBC, "cbc(serpent)", (128, 256), (264,)),
    _Alg(EncAlg.X_TWOFISHCBC, "cbc(twofish)", (128, 256), (100,)),
    _Alg(EncAlg.X_NULL_AES_GMAC, "rfc4543(gcm(aes))", (160,), (128,)),
)
#: Every algorithm the sequences use, for whoever must make Linux load them all.
AUTH_ALGORITHMS = _AUTH + _AUTH_RARE
ENC_ALGORITHMS = _ENC[1:] + _ENC_RARE
#: Numbers Linux has no algorithm for (ENOSYS), and numbers above its maxima (EINVAL).
_UNKNOWN_AUTH = (1, 4, 10, 11, 100, 250, 252, 255)
_UNKNOWN_ENC = (1, 4, 5, 8, 17, 21, 24, 100, 250, 254, 255)


# --- the generator's rough model ---------------------------------------------------------


@dataclass
class _SA:
    satype: SAType
    src: SockAddr
    dst: SockAddr
    spi: int
    mode: Mode
    reqid: int
    larval: bool = False

    @property
    def family(self) -> int:
        return self.src.family


@dataclass
class _Policy:
    src: AddressSrc
    dst: AddressDst
    dir: Direction
    type: PolicyType
    templates: list[IPsecRequest]
    id: int

    @property
    def family(self) -> int:
        return self.src.address.family

    def same_selector(self, other: _Policy) -> bool:
        return (self.src, self.dst, self.dir) == (other.src, other.dst, other.dir)


@dataclass
class _Out:
    """A built message, how to describe it, and how the model changes if it works."""

    data: bytes
    note: str
    effects: list[Callable[[], None]] = field(default_factory=list)
    socket: int | None = None  # a message only one socket may send


def _family_name(family: int) -> str:
    return "v4" if family == _AF_INET else "v6"


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.sas: list[_SA] = []
        self.policies: list[_Policy] = []
        self.inserted_policies = 0  # successful inserts so far: Linux's index generator
        self.socket = 0
        self.seq = 0
        self.actions: list[tuple[float, Callable[[], _Out]]] = [
            (14, self.add),
            (3, self.add_duplicate),
            (5, self.update),
            (6, self.get),
            (4, self.delete),
            (4, self.getspi),
            (1.5, self.flush),
            (2.5, self.dump),
            (9, lambda: self.spdadd(MsgType.X_SPDADD)),
            (3, lambda: self.spdadd(MsgType.X_SPDUPDATE)),
            (1, lambda: self.spdadd(MsgType.X_SPDSETIDX)),
            (3, self.spddelete),
            (5, self.spdget),
            (2, self.spddump),
            (1, self.spdflush),
            (10, self.migrate),
            (1.5, self.register),
            (1.5, self.promisc),
            (1.5, self.bad_type),
        ]
        self.corruptible: list[tuple[float, Callable[[], _Out]]] = [
            (4, self.add),
            (1, self.get),
            (1, self.getspi),
            (3, lambda: self.spdadd(MsgType.X_SPDADD)),
            (1, self.spdget),
            (3, self.migrate),
            (0.5, self.dump),
            (0.5, self.flush),
        ]

    # --- random helpers ---

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def weighted(self, table: list[tuple[float, Callable[[], _Out]]]) -> Callable[[], _Out]:
        return self.rng.choices([f for _, f in table], [w for w, _ in table])[0]

    def family(self) -> int:
        return _AF_INET6 if self.chance(0.55) else _AF_INET

    def address(self, family: int, port: int = 0) -> SockAddr:
        pool = _V4 if family == _AF_INET else _V6
        return SockAddr(ip_address(self.rng.choice(pool)), port)

    def other_family(self, family: int) -> int:
        return _AF_INET6 if family == _AF_INET else _AF_INET

    def pair(self, family: int) -> tuple[SockAddr, SockAddr]:
        src = self.address(family)
        dst = self.address(family)
        while dst == src and not self.chance(0.03):
            dst = self.address(family)
        return src, dst

    def unspecified(self, family: int) -> SockAddr:
        return SockAddr(ip_address("0.0.0.0" if family == _AF_INET else "::"))

    def reqid(self) -> int:
        r = self.rng.random()
        if r < 0.35:
            return 0
        if r < 0.92:
            return self.rng.choice(_REQIDS)
        return self.rng.choice((0x3FFF, 0x4000, 0x12345, 0xFFFFFFFF))

    def key(self, bits: int) -> bytes:
        return self.rng.randbytes((bits + 7) // 8)

    def header(self, mtype: int, satype: int, extensions: tuple[Extension, ...]) -> Message:
        return Message(MsgType(mtype), SAType(satype), self.seq, PIDS[self.socket], extensions=extensions)

    def lifetimes(self, *, allow_one: bool = False) -> tuple[Extension, ...]:
        """Absent, or hard and soft, each at least an hour: nothing expires during a run."""
        r = self.rng.random()
        if r < 0.6:
            return ()

        def lifetime(cls: type[LifetimeHard] | type[LifetimeSoft], base: int) -> LifetimeHard | LifetimeSoft:
            add = self.rng.choice((0, base, base * 2, 86400))
            use = self.rng.choice((0, 0, base, 7200))
            allocations = self.rng.choice((0, 0, 100, 0xFFFFFFFF))
            nbytes = self.rng.choice((0, 0, 1 << 20, 1 << 40))
            return cls(allocations, nbytes, add, use)

        if allow_one and r < 0.7:
            return (lifetime(self.rng.choice((LifetimeHard, LifetimeSoft)), 3600),)
        return (lifetime(LifetimeHard, 7200), lifetime(LifetimeSoft, 3600))

    def shuffle(self, extensions: list[Extension]) -> tuple[Extension, ...]:
        if self.chance(0.2):
            self.rng.shuffle(extensions)
        return tuple(extensions)

    def addresses(self, src: SockAddr, dst: SockAddr) -> list[Extension]:
        """SRC and DST of an SA: proto and prefix length are ignored by Linux; mostly 0 and full."""
        proto = IPProto.of(self.rng.choice((0, 0, 255))) if not self.chance(0.05) else IPProto.TCP
        full = src.address.max_prefixlen
        plen = full if self.chance(0.9) else self.rng.choice((0, 24, full // 2))
        return [AddressSrc(src, plen, proto), AddressDst(dst, full, proto)]

    # --- steps ---

    def step(self, index: int) -> Step:
        self.seq = index + 1
        if self.chance(0.05):
            self.seq = 0
        self.socket = 0 if self.chance(0.65) else 1
        if self.chance(0.1):
            out = self.corrupt()
        else:
            out = self.weighted(self.actions)()
            for effect in out.effects:
                effect()
        socket = self.socket if out.socket is None else out.socket
        return Step(socket, out.data, out.note)

    # --- SAD ---

    def pick_sa(self, *, larval: bool | None = None) -> _SA | None:
        candidates = [sa for sa in self.sas if larval is None or sa.larval == larval]
        return self.rng.choice(candidates) if candidates else None

    def tunnel_templates(self) -> list[tuple[_Policy, IPsecRequest]]:
        return [(p, t) for p in self.policies for t in p.templates if t.src is not None and t.mode == Mode.TUNNEL]

    def algorithms(self, satype: SAType) -> tuple[list[Extension], str, SA]:
        """Keys and the SA extension for an ESP or AH SA, with correct key lengths."""
        auth: _Alg | None = self.rng.choice(_AUTH if self.chance(0.85) else _AUTH_RARE)
        enc: _Alg | None = None
        if satype == SAType.ESP:
            enc = self.rng.choice(_ENC if self.chance(0.85) else _ENC_RARE)
            if enc.id in (EncAlg.X_AES_GCM_ICV16, EncAlg.X_AES_GCM_ICV8, EncAlg.X_AES_CCM_ICV16) or self.chance(0.1):
                auth = None if self.chance(0.8) else auth
        keys: list[Extension] = []
        if auth is not None:
            keys.append(KeyAuth.of(self.key(self.rng.choice(auth.bits))) if auth.bits != (0,) else KeyAuth(0))
        if enc is not None:
            bits = self.rng.choice(enc.bits)
            keys.append(KeyEncrypt(bits, self.key(bits)))
        replay = self.rng.choice((0, 32, 32, 64, 4, 255))
        flags = SAFlags(0) if self.chance(0.85) else SAFlags(self.rng.choice((1, 0x20000000, 0x40000000, 0x80000000)))
        state = SAState.MATURE if self.chance(0.8) else SAState(self.rng.choice((0, 2, 3, 7)))
        sa = SA(
            0,
            replay,
            state,
            AuthAlg.of(auth.id if auth else 0),
            EncAlg.of(enc.id if enc else 0),
            flags,
        )
        names = "/".join(a.name for a in (enc, auth) if a is not None) or "no algorithms"
        return keys, names, sa

    def add(self) -> _Out:
        r = self.rng.random()
        templates = self.tunnel_templates()
        rekey = self.pick_sa(larval=False) if r < 0.15 else None
        satype = SAType.ESP if self.chance(0.7) else SAType.AH
        mode = Mode.TUNNEL if self.chance(0.6) else Mode.TRANSPORT if self.chance(0.85) else Mode.of(0)
        family = self.family()
        src, dst = self.pair(family)
        reqid = self.reqid()
        what = "new"
        if rekey is not None:
            satype, src, dst, mode, reqid, what = rekey.satype, rekey.src, rekey.dst, rekey.mode, rekey.reqid, "re-key"
        elif r < 0.45 and templates:
            _, t = self.rng.choice(templates)
            assert t.src is not None
            assert t.dst is not None
            src, dst, mode = t.src, t.dst, Mode.TUNNEL
            satype = SAType.AH if t.proto == IPProto.AH else SAType.ESP
            reqid = t.reqid if self.chance(0.8) else 0
            what = "for a template"
        if self.chance(0.03):
            mode = Mode.BEET
        spi = self.rng.choice(_SPIS) if self.chance(0.85) else self.rng.choice((0, 1, 0xFF, 0x100, 0xDEADBEEF))
        keys, names, sa = self.algorithms(satype)
        extensions: list[Extension] = [SA(spi, sa.replay, sa.state, sa.auth, sa.encrypt, sa.flags)]
        if self.chance(0.9):
            extensions.append(SA2(mode, self.rng.choice((0, 0, 7)), reqid))
        extensions += self.addresses(src, dst)
        extensions += keys
        extensions += self.lifetimes()
        broken = ""
        if self.chance(0.22):
            extensions, satype, broken = self.break_add(extensions, satype, src, dst)
        elif self.chance(0.06):
            extensions, broken = self.add_extras(extensions, satype, src)
        mtype = MsgType.ADD
        note = (
            f"ADD {satype.label} {mode.label.lower()} {_family_name(src.family)} {src.address}->{dst.address} "
            f"spi=0x{spi:x} reqid={reqid} {names} ({what}){broken}"
        )
        data = self.header(mtype, satype, self.shuffle(extensions)).encode()
        model = _SA(satype, src, dst, spi, mode, reqid)

        def effect() -> None:
            known = any(s.spi == spi and s.dst == dst and s.satype == satype for s in self.sas)
            if not broken and not known:
                self.sas.append(model)

        return _Out(data, note, [effect])

    def break_add(
        self, extensions: list[Extension], satype: SAType, src: SockAddr, dst: SockAddr
    ) -> tuple[list[Extension], SAType, str]:
        """One thing wrong with an otherwise good ADD (key lengths, algorithms, missing parts)."""
        rng = self.rng
        sa = next(e for e in extensions if isinstance(e, SA))
        i = extensions.index(sa)
        kind = rng.choice(
            (
                "wrong-enc-key", "wrong-enc-key", "wrong-auth-key", "unknown-auth", "unknown-enc",
                "missing-key", "zero-bits", "no-sa", "one-lifetime", "bad-mode", "satype",
                "esp-without-enc", "mixed-families", "no-auth-esp",
            )
        )  # fmt: skip
        if kind == "wrong-enc-key" and satype == SAType.ESP:
            enc = next((a for a in _ENC + _ENC_RARE if a.id == sa.encrypt), None)
            if enc is not None and enc.wrong:
                bits = rng.choice(enc.wrong)
                extensions = [e for e in extensions if not isinstance(e, KeyEncrypt)]
                extensions.append(KeyEncrypt(bits, self.key(bits)))
                return extensions, satype, f" [encryption key of {bits} bits]"
        if kind == "wrong-auth-key":
            auth = next((a for a in _AUTH + _AUTH_RARE if a.id == sa.auth), None)
            if auth is not None and auth.wrong:
                bits = rng.choice(auth.wrong)
                extensions = [e for e in extensions if not isinstance(e, KeyAuth)]
                extensions.append(KeyAuth(bits, self.key(bits)))
                return extensions, satype, f" [authentication key of {bits} bits]"
        if kind == "unknown-auth":
            alg = rng.choice(_UNKNOWN_AUTH)
            extensions[i] = SA(sa.spi, sa.replay, sa.state, AuthAlg.of(alg), sa.encrypt, sa.flags)
            if not any(isinstance(e, KeyAuth) for e in extensions):
                extensions.append(KeyAuth.of(self.key(128)))
            return extensions, satype, f" [unknown auth algorithm {alg}]"
        if kind == "unknown-enc":
            alg = rng.choice(_UNKNOWN_ENC)
            extensions[i] = SA(sa.spi, sa.replay, sa.state, sa.auth, EncAlg.of(alg), sa.flags)
            if not any(isinstance(e, KeyEncrypt) for e in extensions):
                extensions.append(KeyEncrypt.of(self.key(128)))
            return extensions, satype, f" [unknown encryption algorithm {alg}]"
        if kind == "missing-key":
            drop = KeyEncrypt if satype == SAType.ESP else KeyAuth
            return [e for e in extensions if not isinstance(e, drop)], satype, f" [no {drop.__name__}]"
        if kind == "zero-bits":
            if any(isinstance(e, KeyEncrypt) for e in extensions):
                extensions = [KeyEncrypt(0) if isinstance(e, KeyEncrypt) else e for e in extensions]
                return extensions, satype, " [encryption key of 0 bits]"
            extensions = [KeyAuth(0) if isinstance(e, KeyAuth) else e for e in extensions]
            return extensions, satype, " [authentication key of 0 bits]"
        if kind == "no-sa":
            return [e for e in extensions if not isinstance(e, SA)], satype, " [no SA extension]"
        if kind == "one-lifetime":
            extensions = [e for e in extensions if not isinstance(e, LifetimeHard | LifetimeSoft)]
            extensions.append(rng.choice((LifetimeHard, LifetimeSoft))(0, 0, 7200, 0))
            return extensions, satype, " [hard lifetime without soft, or soft without hard]"
        if kind == "bad-mode":
            mode = rng.choice((4, 5, 200))
            extensions = [e for e in extensions if not isinstance(e, SA2)]
            extensions.append(SA2(Mode.of(mode), 0, 1))
            return extensions, satype, f" [SA2 mode {mode}]"
        if kind == "satype":
            new = SAType.of(rng.choice((0, 1, 5, 8, 9, 200)))
            return extensions, new, f" [satype {new.label}]"
        if kind == "esp-without-enc" and satype == SAType.ESP:
            extensions[i] = SA(sa.spi, sa.replay, sa.state, sa.auth, EncAlg.NONE, sa.flags)
            return extensions, satype, " [ESP with encryption NONE]"
        if kind == "mixed-families":
            other = self.address(self.other_family(src.family))
            extensions = [AddressDst(other, other.address.max_prefixlen) if isinstance(e, AddressDst) else e
                          for e in extensions]  # fmt: skip
            return extensions, satype, f" [SRC {src.address} with DST {other.address}]"
        if satype == SAType.ESP:  # no-auth-esp, and the fallbacks
            extensions[i] = SA(sa.spi, sa.replay, sa.state, AuthAlg.NONE, sa.encrypt, sa.flags)
            extensions = [e for e in extensions if not isinstance(e, KeyAuth)]
            return extensions, satype, " [ESP without authentication]"
        extensions[i] = SA(sa.spi, sa.replay, sa.state, AuthAlg.NONE, sa.encrypt, sa.flags)
        return extensions, satype, " [AH with auth NONE]"

    def add_extras(self, extensions: list[Extension], satype: SAType, src: SockAddr) -> tuple[list[Extension], str]:
        """Extensions Linux takes but rarely sees: PROXY, NAT-T, a current lifetime, unknown ones."""
        kind = self.rng.choice(("proxy", "natt", "current", "unknown", "sensitivity-free"))
        if kind == "proxy":
            proxy = self.address(src.family)
            extensions.append(AddressProxy(proxy, self.rng.choice((proxy.address.max_prefixlen, 0, 24)), IPProto.ANY))
            return extensions, f" [+ADDRESS_PROXY {proxy.address}]"
        if kind == "natt":
            extensions += [
                NatTType(self.rng.choice((2, 2, 1, 3))),
                NatTSport(4500),
                NatTDport(self.rng.choice((4500, 0))),
            ]
            return extensions, f" [+NAT-T {satype.label}]"
        if kind == "current":
            extensions.append(LifetimeCurrent(1, 2, 3, 4))
            return extensions, " [+LIFETIME_CURRENT, which Linux ignores]"
        extensions.append(UnknownExtension(self.rng.choice((27, 28, 100, 0xFFFF)), bytes(4)))
        return extensions, " [+an unknown extension type, which Linux skips]"

    def add_duplicate(self) -> _Out:
        sa = self.pick_sa()
        if sa is None:
            return self.add()
        keys, names, tmpl = self.algorithms(sa.satype)
        src = sa.src if self.chance(0.7) else self.address(sa.family)
        extensions: list[Extension] = [
            SA(sa.spi, tmpl.replay, tmpl.state, tmpl.auth, tmpl.encrypt),
            SA2(sa.mode, 0, sa.reqid),
            *self.addresses(src, sa.dst),
            *keys,
        ]
        data = self.header(MsgType.ADD, sa.satype, self.shuffle(extensions)).encode()
        larval = " (larval)" if sa.larval else ""
        return _Out(data, f"ADD again {sa.satype.label} spi=0x{sa.spi:x} dst={sa.dst.address}{larval} {names}")

    def update(self) -> _Out:
        sa = self.pick_sa(larval=True) if self.chance(0.6) else self.pick_sa()
        if sa is None or self.chance(0.15):
            family = self.family()
            src, dst = self.pair(family)
            sa = _SA(SAType.ESP if self.chance(0.7) else SAType.AH, src, dst, self.rng.choice(_SPIS), Mode.TUNNEL, 0)
            what = "missing"
        else:
            what = "larval" if sa.larval else "mature"
        keys, names, tmpl = self.algorithms(sa.satype)
        mode = sa.mode if self.chance(0.85) else self.rng.choice((Mode.TRANSPORT, Mode.TUNNEL))
        reqid = sa.reqid if self.chance(0.8) else self.reqid()
        src = sa.src if self.chance(0.85) else self.address(sa.family)
        extensions: list[Extension] = [
            SA(sa.spi, tmpl.replay, tmpl.state, tmpl.auth, tmpl.encrypt, tmpl.flags),
            SA2(mode, 0, reqid),
            *self.addresses(src, sa.dst),
            *keys,
            *self.lifetimes(),
        ]
        broken = ""
        if self.chance(0.12):
            extensions, _, broken = self.break_add(extensions, sa.satype, src, sa.dst)
        data = self.header(MsgType.UPDATE, sa.satype, self.shuffle(extensions)).encode()
        note = f"UPDATE {what} {sa.satype.label} spi=0x{sa.spi:x} {src.address}->{sa.dst.address} {names}{broken}"
        target = sa

        def effect() -> None:
            if not broken and target in self.sas:
                target.larval = False
                target.mode, target.reqid, target.src = mode, reqid, src

        return _Out(data, note, [effect])

    def lookup(self, mtype: MsgType) -> tuple[Message, str, _SA | None]:
        """GET or DELETE: of a known SA (maybe with the wrong satype or source), or of none."""
        sa = self.pick_sa()
        what = ""
        if sa is None or self.chance(0.15):
            family = self.family()
            src, dst = self.pair(family)
            sa = _SA(SAType.ESP, src, dst, self.rng.choice(_SPIS), Mode.TUNNEL, 0)
            what = " (no such SA)"
            found = None
        else:
            found = sa
        satype, src = sa.satype, sa.src
        if self.chance(0.08):
            satype = SAType.AH if satype == SAType.ESP else SAType.ESP
            what += " (other satype)"
        if self.chance(0.08):
            src = self.address(sa.family)
            what += " (other source)"
        if self.chance(0.03):
            satype = SAType.of(self.rng.choice((0, 5, 9)))
            what += f" (satype {satype.label})"
        extensions: list[Extension] = [SA(sa.spi), *self.addresses(src, sa.dst)]
        if self.chance(0.04):
            extensions = extensions[1:]
            what += " (no SA extension)"
        elif self.chance(0.04):
            other = self.address(self.other_family(sa.family))
            extensions[2] = AddressDst(other, other.address.max_prefixlen)
            what += " (mixed families)"
        msg = self.header(mtype, satype, self.shuffle(extensions))
        note = f"{mtype.label} {satype.label} spi=0x{sa.spi:x} {src.address}->{sa.dst.address}{what}"
        return msg, note, found if not what else None

    def get(self) -> _Out:
        msg, note, _ = self.lookup(MsgType.GET)
        return _Out(msg.encode(), note)

    def delete(self) -> _Out:
        msg, note, found = self.lookup(MsgType.DELETE)

        def effect() -> None:
            if found is not None and found in self.sas:
                self.sas.remove(found)

        return _Out(msg.encode(), note, [effect])

    def getspi(self) -> _Out:
        family = self.family()
        src, dst = self.pair(family)
        satype = SAType.ESP if self.chance(0.75) else SAType.AH
        mode, reqid = (Mode.TUNNEL if self.chance(0.6) else Mode.TRANSPORT), self.reqid()
        templates = self.tunnel_templates()
        if templates and self.chance(0.4):
            _, t = self.rng.choice(templates)
            assert t.src is not None
            assert t.dst is not None
            src, dst, mode, reqid = t.src, t.dst, Mode.TUNNEL, t.reqid
            satype = SAType.AH if t.proto == IPProto.AH else SAType.ESP
        larval = self.pick_sa(larval=True)
        if larval is not None and self.chance(0.2):  # the same larval SA again: Linux gives its SPI back
            src, dst, mode, reqid, satype = larval.src, larval.dst, larval.mode, larval.reqid, larval.satype
        spi = self.rng.choice(_SPIS) if self.chance(0.9) else self.rng.choice((0, 0x100, 0x0FFFFFFF, 0xFFFFFFFF))
        low, high = spi, spi
        what = ""
        if self.chance(0.06) and spi:
            low, high = spi, spi - 1
            what = " (min > max)"
        extensions: list[Extension] = [*self.addresses(src, dst), SPIRange(low, high)]
        if self.chance(0.85):
            extensions.append(SA2(mode, 0, reqid))
        else:
            mode, reqid = Mode.TRANSPORT, 0
            what += " (no SA2)"
        if self.chance(0.03):
            satype = SAType.of(self.rng.choice((0, 9, 5)))
            what += f" (satype {satype.label})"
        data = self.header(MsgType.GETSPI, satype, self.shuffle(extensions)).encode()
        note = (
            f"GETSPI {satype.label} {mode.label.lower()} {src.address}->{dst.address} spi 0x{spi:x} reqid={reqid}{what}"
        )
        model = _SA(satype, src, dst, spi, mode, reqid, larval=True)

        def effect() -> None:
            if what or satype not in (SAType.ESP, SAType.AH):
                return
            if any(s.larval and (s.src, s.dst, s.mode, s.reqid, s.satype) == (src, dst, mode, reqid, satype)
                   for s in self.sas):  # fmt: skip
                return
            if not any(s.spi == spi and s.dst == dst and s.satype == satype for s in self.sas):
                self.sas.append(model)

        return _Out(data, note, [effect])

    def flush(self) -> _Out:
        satype = SAType.of(self.rng.choice((0, 0, 2, 3, 3, 9, 5)))
        data = self.header(MsgType.FLUSH, satype, ()).encode()

        def effect() -> None:
            if satype == SAType.UNSPEC:
                self.sas.clear()
            else:
                self.sas[:] = [s for s in self.sas if s.satype != satype]

        return _Out(data, f"FLUSH {satype.label}", [effect])

    def dump(self) -> _Out:
        satype = SAType.of(self.rng.choice((0, 0, 0, 2, 3, 9, 7)))
        extensions: tuple[Extension, ...] = ()
        what = ""
        if self.chance(0.2):
            family = self.family()
            src, dst = self.address(family), self.address(family)
            width = 32 if family == _AF_INET else 128
            splen = self.rng.choice((0, width, 16, 24, 129, 200))
            dplen = self.rng.choice((0, width, 8))
            fam = family if self.chance(0.9) else self.rng.choice((0, 1))
            extensions = (
                Filter(src.address.packed.ljust(16, b"\0"), dst.address.packed.ljust(16, b"\0"), fam, splen, dplen),
            )
            what = f" with FILTER family={fam} {src.address}/{splen} {dst.address}/{dplen}"
        return _Out(self.header(MsgType.DUMP, satype, extensions).encode(), f"DUMP {satype.label}{what}")

    # --- SPD ---

    def selector(self, family: int) -> tuple[AddressSrc, AddressDst]:
        r = self.rng.random()
        proto = (
            IPProto.ANY if r < 0.5 else IPProto.MH if r < 0.65 else IPProto.TCP if r < 0.75 else
            IPProto.UDP if r < 0.85 else IPProto.ICMPV6 if r < 0.9 else IPProto.of(0)
        )  # fmt: skip
        sport = dport = 0
        if proto in (IPProto.TCP, IPProto.UDP) and self.chance(0.6):
            sport, dport = self.rng.choice((0, 500, 4500)), self.rng.choice((0, 80, 500))
        width = 32 if family == _AF_INET else 128

        def plen() -> int:
            return self.rng.choice((width, width, width, width // 2, width - 8, 0))

        src, dst = self.address(family, sport), self.address(family, dport)
        src_proto = proto if self.chance(0.93) else IPProto.of(self.rng.choice((255, 6, 17)))
        return AddressSrc(src, plen(), src_proto), AddressDst(dst, plen(), proto)

    def template(self, family: int, direction: Direction) -> IPsecRequest:
        rng = self.rng
        proto = IPProto.ESP if self.chance(0.7) else IPProto.AH if self.chance(0.85) else IPProto.IPCOMP
        r = rng.random()
        mode = Mode.TUNNEL if r < 0.6 else Mode.TRANSPORT if r < 0.95 else Mode.BEET
        r = rng.random()
        level = Level.REQUIRE if r < 0.45 else Level.UNIQUE if r < 0.75 else Level.USE if r < 0.95 else Level.DEFAULT
        if level == Level.USE and mode == Mode.TUNNEL and direction == Direction.OUTBOUND and self.chance(0.7):
            level = Level.REQUIRE  # Linux refuses optional outbound tunnels: only now and then
        if level == Level.UNIQUE:
            reqid = rng.choice(_REQIDS) if self.chance(0.75) else rng.choice((0, 0, 0x4000, 0x10000))
        else:
            reqid = 0 if self.chance(0.8) else rng.choice(_REQIDS)
        src = dst = None
        if mode == Mode.TUNNEL:
            known = [s for s in self.sas if s.mode == Mode.TUNNEL]
            if known and self.chance(0.5):
                sa = rng.choice(known)
                src, dst = sa.src, sa.dst
                proto = IPProto.AH if sa.satype == SAType.AH else IPProto.ESP
                if level == Level.UNIQUE and self.chance(0.8):
                    reqid = sa.reqid or reqid
            else:
                src, dst = self.pair(family if self.chance(0.85) else self.other_family(family))
        return IPsecRequest(proto, mode, level, reqid, src, dst)

    def new_policy(self) -> _Policy:
        family = self.family()
        src, dst = self.selector(family)
        r = self.rng.random()
        direction = Direction.OUTBOUND if r < 0.4 else Direction.INBOUND if r < 0.75 else Direction.FWD
        r = self.rng.random()
        ptype = PolicyType.IPSEC if r < 0.8 else PolicyType.NONE if r < 0.9 else PolicyType.DISCARD
        count = self.rng.choices((0, 1, 2, 3), (0.05, 0.7, 0.2, 0.05))[0]
        templates = [self.template(family, direction) for _ in range(count)]
        if ptype != PolicyType.IPSEC and self.chance(0.7):
            templates = []
        return _Policy(src, dst, direction, ptype, templates, 0)

    def predicted_id(self, direction: int) -> int:
        index = (8 * self.inserted_policies) | (direction - 1)
        return index or 8

    def spdadd(self, mtype: MsgType) -> _Out:
        existing = self.rng.choice(self.policies) if self.policies else None
        policy = self.new_policy()
        what = "new"
        reuse = 0.6 if mtype == MsgType.X_SPDUPDATE else 0.2
        if existing is not None and self.chance(reuse):
            policy.src, policy.dst, policy.dir = existing.src, existing.dst, existing.dir
            what = "existing selector"
        priority = self.rng.choice((0, 0, 0, 1, 100, 0x80000000))
        pid_field = 0 if self.chance(0.9) else self.rng.choice((1, 8, 0x12345))
        lifetimes = self.lifetimes(allow_one=True)
        requests = tuple(policy.templates)
        if self.chance(0.02):
            requests = tuple(self.template(policy.family, policy.dir) for _ in range(7))
            what += ", 7 templates"
        direction = policy.dir
        broken = ""
        extra: list[Extension] = []
        r = self.rng.random()
        if r < 0.04:
            direction = Direction.of(self.rng.choice((0, 4, 5, 200)))
            broken = f" [dir {direction.label}]"
        elif r < 0.06:
            ptype = PolicyType.of(self.rng.choice((3, 4, 9)))
            policy.type = ptype
            broken = f" [policy type {ptype.label}]"
        elif r < 0.09 and policy.type == PolicyType.IPSEC:
            bad = self.rng.choice(("proto", "mode-0", "mode-9", "use-tunnel-out", "level-7"))
            t = self.template(policy.family, policy.dir)
            if bad == "proto":
                t = IPsecRequest(IPProto.TCP, t.mode, t.level, t.reqid, t.src, t.dst)
            elif bad == "mode-0":
                t = IPsecRequest(t.proto, Mode.ANY, t.level, t.reqid)
            elif bad == "mode-9":
                t = IPsecRequest(t.proto, Mode.of(9), t.level, t.reqid)
            elif bad == "use-tunnel-out":
                direction = Direction.OUTBOUND
                s, d = self.pair(policy.family)
                t = IPsecRequest(t.proto, Mode.TUNNEL, Level.USE, 0, s, d)
            else:
                t = IPsecRequest(t.proto, t.mode, Level.of(7), t.reqid, t.src, t.dst)
            requests = (*requests, t)
            broken = f" [template {bad}]"
        elif r < 0.1:
            extra.append(SecCtx(1, 1, b"system_u:object_r:ipsec_spd_t:s0"))
        extensions: list[Extension] = [
            policy.src,
            policy.dst,
            Policy(policy.type, direction, pid_field, priority, requests),
            *lifetimes,
            *extra,
        ]
        data = self.header(mtype, SAType.of(0 if self.chance(0.95) else 3), self.shuffle(extensions)).encode()
        note = (
            f"{mtype.label} {_family_name(policy.family)} {policy.src.address.address}/{policy.src.prefixlen}->"
            f"{policy.dst.address.address}/{policy.dst.prefixlen} proto={policy.dst.proto.label} "
            f"dir={direction.label} {policy.type.label} {len(requests)} templates ({what}){broken}"
            + (" [+SEC_CTX]" if extra else "")
        )

        def effect() -> None:
            if broken:
                return
            kept = [_as_stored(t) for t in requests]
            old = next((p for p in self.policies if p.same_selector(policy)), None)
            if old is not None:
                if mtype == MsgType.X_SPDUPDATE:
                    old.templates, old.type = kept, policy.type
                return
            policy.templates = kept
            policy.id = self.predicted_id(policy.dir)
            self.inserted_policies += 1
            self.policies.append(policy)

        return _Out(data, note, [effect])

    def spddelete(self) -> _Out:
        policy = self.rng.choice(self.policies) if self.policies and self.chance(0.85) else self.new_policy()
        direction = policy.dir
        what = "" if policy in self.policies else " (no such policy)"
        if self.chance(0.08):
            direction = Direction.of(self.rng.choice((0, 4, 200)))
            what += f" (dir {direction.label})"
        extensions: list[Extension] = [
            policy.src,
            policy.dst,
            Policy(PolicyType.of(self.rng.choice((2, 2, 0, 1))), direction, 0, 0),
        ]
        data = self.header(MsgType.X_SPDDELETE, 0, self.shuffle(extensions)).encode()
        note = (
            f"X_SPDDELETE {policy.src.address.address}/{policy.src.prefixlen}->"
            f"{policy.dst.address.address}/{policy.dst.prefixlen} dir={direction.label}{what}"
        )

        def effect() -> None:
            if not what and policy in self.policies:
                self.policies.remove(policy)

        return _Out(data, note, [effect])

    def policy_id(self) -> tuple[int, _Policy | None]:
        r = self.rng.random()
        if self.policies and r < 0.7:
            policy = self.rng.choice(self.policies)
            return policy.id, policy
        if r < 0.85:
            return 8 * self.rng.randrange(0, self.inserted_policies + 2) + self.rng.choice((0, 1, 2)), None
        return self.rng.choice((0, 3, 4, 7, 8, 0xFFFFFFFF, 0x12345678)), None

    def spdget(self) -> _Out:
        mtype = MsgType.X_SPDGET if self.chance(0.7) else MsgType.X_SPDDELETE2
        policy_id, policy = self.policy_id()
        extensions: tuple[Extension, ...] = (
            Policy(PolicyType.IPSEC, Direction.of(self.rng.choice((1, 2, 3, 0))), policy_id),
        )
        what = ""
        if self.chance(0.04):
            extensions = ()
            what = " (no X_POLICY)"
        data = self.header(mtype, 0, extensions).encode()

        def effect() -> None:
            if mtype == MsgType.X_SPDDELETE2 and policy is not None and policy in self.policies and not what:
                self.policies.remove(policy)

        return _Out(data, f"{mtype.label} id={policy_id} (dir {policy_id & 7}){what}", [effect])

    def spddump(self) -> _Out:
        return _Out(self.header(MsgType.X_SPDDUMP, 0, ()).encode(), "X_SPDDUMP")

    def spdflush(self) -> _Out:
        def effect() -> None:
            self.policies.clear()

        return _Out(self.header(MsgType.X_SPDFLUSH, 0, ()).encode(), "X_SPDFLUSH", [effect])

    # --- MIGRATE ---

    def moved(self, old_src: SockAddr, old_dst: SockAddr) -> tuple[SockAddr, SockAddr, str]:
        """New tunnel endpoints as a mobile node's move would give them."""
        family = old_src.family
        r = self.rng.random()
        if r < 0.08:
            family = self.other_family(family)
            src, dst = self.pair(family)
            return src, dst, " (family changes)"
        if r < 0.11:
            return self.unspecified(family), old_dst, " (new source unspecified)"
        if r < 0.7:
            return self.address(family), old_dst, ""
        if r < 0.85:
            return old_src, self.address(family), ""
        src, dst = self.pair(family)
        return src, dst, ""

    def migrate(self) -> _Out:
        rng = self.rng
        candidates = [p for p in self.policies if p.templates]
        if not candidates and self.chance(0.6):
            return self.spdadd(MsgType.X_SPDADD)  # something to migrate first
        policy = rng.choice(candidates) if candidates and self.chance(0.85) else None
        notes: list[str] = []
        if policy is None:
            policy = self.new_policy()
            if not policy.templates:
                policy.templates = [self.template(policy.family, policy.dir)]
            notes.append("no such policy")
        direction = policy.dir
        r = rng.random()
        if r < 0.07:
            direction = Direction.of(rng.choice((0, 4, 5, 200)))
            notes.append(f"dir {direction.label}")
        elif r < 0.1:
            direction = Direction.of(rng.choice([d for d in (1, 2, 3) if d != policy.dir]))
            notes.append("other direction")
        count = 1 if len(policy.templates) == 1 or self.chance(0.6) else 2
        tunnels = [t for t in policy.templates if t.mode == Mode.TUNNEL]
        if count == 1 and tunnels and self.chance(0.75):
            chosen = [rng.choice(tunnels)]
        else:
            chosen = rng.sample(policy.templates, count)
        bundles: list[tuple[IPsecRequest, IPsecRequest]] = []
        for t in chosen:
            reqid = t.reqid if self.chance(0.7) else 0 if self.chance(0.8) else rng.choice(_REQIDS)
            if t.src is not None and t.dst is not None and not self.chance(0.12):
                old_src, old_dst = t.src, t.dst
            else:
                sa = self.pick_sa()
                if sa is not None and self.chance(0.5):
                    old_src, old_dst = sa.src, sa.dst
                else:
                    old_src, old_dst = self.pair(policy.family)
                if t.mode == Mode.TUNNEL:
                    notes.append("stale old endpoints")
            new_src, new_dst, moved = self.moved(old_src, old_dst)
            if moved:
                notes.append(moved.strip(" ()"))
            mode = t.mode if t.mode in (Mode.TUNNEL, Mode.TRANSPORT, Mode.BEET) else Mode.TUNNEL
            level = Level.UNIQUE if reqid else Level.REQUIRE
            old = IPsecRequest(t.proto, mode, level, reqid, old_src, old_dst)
            new = IPsecRequest(t.proto, mode, level if self.chance(0.9) else Level.USE, reqid, new_src, new_dst)
            bundles.append((old, new))
        r = rng.random()
        if r < 0.03:
            old, new = bundles[0]
            bundles[0] = (old, IPsecRequest(old.proto, old.mode, old.level, old.reqid + 1, new.src, new.dst))
            notes.append("old and new reqids differ")
        elif r < 0.05:
            old, new = bundles[0]
            other = IPProto.AH if old.proto == IPProto.ESP else IPProto.ESP
            bundles[0] = (old, IPsecRequest(other, old.mode, old.level, old.reqid, new.src, new.dst))
            notes.append("old and new protocols differ")
        elif r < 0.07 and _is_ipv6(bundles[0][0]):
            # (Not for IPv4: Linux compares 16-byte addresses of which pfkey_migrate fills
            # 4, the rest stack garbage, so whether it sees the duplicate is chance.)
            bundles.append(bundles[0])
            notes.append("the same bundle twice")
        elif r < 0.08:
            bundles = bundles[:1] * 7
            notes.append("7 bundles")
        elif r < 0.1:
            old, new = bundles[0]
            bundles[0] = (
                IPsecRequest(old.proto, Mode.ANY, old.level, old.reqid, old.src, old.dst),
                IPsecRequest(new.proto, Mode.ANY, new.level, new.reqid, new.src, new.dst),
            )
            notes.append("mode 0")
        requests = tuple(rq for pair in bundles for rq in pair)
        if self.chance(0.03):
            requests = requests[:-1]
            notes.append("odd number of requests")
        last_new = bundles[0][1]
        assert last_new.src is not None
        assert last_new.dst is not None
        extensions: list[Extension] = [
            policy.src,
            policy.dst,
            Policy(PolicyType.IPSEC if self.chance(0.9) else PolicyType.NONE, direction, 0, 0, requests),
        ]
        if self.chance(0.6):
            local, remote = (last_new.src, last_new.dst) if self.chance(0.7) else (last_new.dst, last_new.src)
            extensions.append(KMAddress(local, remote, 0 if self.chance(0.9) else 7))
            kma = "with KMADDRESS"
        else:
            kma = "without KMADDRESS"
        if self.chance(0.02):
            extensions = [e for e in extensions if not isinstance(e, Policy)]
            notes.append("no X_POLICY")
        elif self.chance(0.02):
            extensions = extensions[1:]
            notes.append("no ADDRESS_SRC")
        satype = SAType.ESP if self.chance(0.8) else SAType.of(rng.choice((0, 2, 9)))
        data = self.header(MsgType.X_MIGRATE, satype, self.shuffle(extensions)).encode()
        ends = "; ".join(
            f"{o.proto.label} {o.mode.label.lower()} reqid={o.reqid} {o.src.address if o.src else ''}->"
            f"{o.dst.address if o.dst else ''} => {n.src.address if n.src else ''}->{n.dst.address if n.dst else ''}"
            for o, n in bundles[:2]
        )
        note = (
            f"X_MIGRATE {policy.src.address.address}->{policy.dst.address.address} dir={direction.label} "
            f"{len(bundles)} bundles {kma}: {ends}" + (f" ({', '.join(notes)})" if notes else "")
        )
        target = policy

        def effect() -> None:
            if notes or target not in self.policies:
                return
            for old, new in bundles:
                for i, t in enumerate(target.templates):
                    if (
                        (t.proto, t.mode) == (old.proto, old.mode)
                        and (not old.reqid or t.reqid == old.reqid)
                        and t.mode == Mode.TUNNEL
                        and (t.src, t.dst) == (old.src, old.dst)
                    ):
                        target.templates[i] = IPsecRequest(t.proto, t.mode, t.level, t.reqid, new.src, new.dst)
                for sa in self.sas:
                    satype_proto = IPProto.AH if sa.satype == SAType.AH else IPProto.ESP
                    if (
                        (sa.src, sa.dst, sa.mode) == (old.src, old.dst, old.mode)
                        and satype_proto == old.proto
                        and (not old.reqid or sa.reqid == old.reqid)
                    ):
                        assert new.src is not None
                        assert new.dst is not None
                        sa.src, sa.dst = new.src, new.dst
                        break

        return _Out(data, note, [effect])

    # --- registration, promiscuous mode, refused types ---

    def register(self) -> _Out:
        satype = SAType.of(self.rng.choice((3, 3, 2, 0, 9, 5, 10, 200)))
        data = Message(MsgType.REGISTER, satype, self.seq, PIDS[1]).encode()
        return _Out(data, f"REGISTER {satype.label} (socket 1)", socket=1)

    def promisc(self) -> _Out:
        r = self.rng.random()
        extensions: tuple[Extension, ...] = ()
        if r < 0.45:
            satype, what = 1, "on"
        elif r < 0.85:
            satype, what = 0, "off"
        elif r < 0.93:
            satype = self.rng.choice((2, 3, 255))
            what = f"satype {satype}, which is neither on nor off"
        else:
            satype, what = 1, "with an extension: broadcast to every socket, mode unchanged"
            extensions = (SA(self.rng.choice(_SPIS)),)
        data = Message(MsgType.X_PROMISC, SAType.of(satype), self.seq, PIDS[1], extensions=extensions).encode()
        return _Out(data, f"X_PROMISC {what} (socket 1)", socket=1)

    def bad_type(self) -> _Out:
        r = self.rng.random()
        if r < 0.4:
            mtype = self.rng.choice((0, 25, 26, 100, 255))
            what = "outside 1..24"
        elif r < 0.85:
            mtype = self.rng.choice((8, 12, 17, 21, 23))
            what = "no handler"
        else:
            mtype = 6
            what = "ACQUIRE from user space (an error report for an acquire)"
        extensions: tuple[Extension, ...] = ()
        if self.chance(0.4):
            src, dst = self.pair(self.family())
            extensions = (AddressSrc(src, src.address.max_prefixlen), AddressDst(dst, dst.address.max_prefixlen))
        msg = Message(
            MsgType.of(mtype), SAType.ESP, self.seq, PIDS[self.socket], self.rng.choice((0, 0, 22)), extensions
        )
        return _Out(msg.encode(), f"type {MsgType.of(mtype).label} ({what})")

    # --- invalid framing ---

    def corrupt(self) -> _Out:
        base = self.weighted(self.corruptible)()  # its effects are dropped: the message is broken
        for _ in range(8):
            damage = self.rng.choice(_CORRUPTIONS)
            result = damage(self.rng, base.data)
            if result is not None and not _may_draw_a_random_spi(result[0]):
                data, what = result
                return _Out(data, f"{base.note} | corrupted: {what}", socket=base.socket)
        return _Out(base.data[:8], f"{base.note} | corrupted: cut to 8 bytes", socket=base.socket)


# --- byte surgery ---------------------------------------------------------------------------

Corruption = Callable[[random.Random, bytes], "tuple[bytes, str] | None"]


def _extensions(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, size, type) of each extension of a well-formed message."""
    out: list[tuple[int, int, int]] = []
    pos = 16
    while pos + 4 <= len(data):
        length, exttype = _EXT.unpack_from(data, pos)
        if length == 0:
            break
        out.append((pos, length * 8, exttype))
        pos += length * 8
    return out


def _may_draw_a_random_spi(data: bytes) -> bool:
    """A GETSPI that Linux may take without a one-SPI range (a cut or a dropped
    extension took it away): Linux would answer with a random SPI, which nothing can
    reproduce."""
    if len(data) < 16 or data[1] != MsgType.GETSPI:
        return False
    for pos, size, exttype in _extensions(data):
        if exttype == ExtType.SPIRANGE and size >= 16 and pos + 16 <= len(data):
            low, high = struct.unpack_from("=II", data, pos + 4)
            return bool(low < high)
    return True


def _fix_len(data: bytes | bytearray) -> bytes:
    out = bytearray(data)
    struct.pack_into("=H", out, 4, len(out) // 8)
    return bytes(out)


def _ext_name(exttype: int) -> str:
    return ExtType.of(exttype).label


def _pick_ext(rng: random.Random, data: bytes, types: tuple[int, ...] | None = None) -> tuple[int, int, int] | None:
    exts = [e for e in _extensions(data) if types is None or e[2] in types]
    return rng.choice(exts) if exts else None


def _c_version(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    version = rng.choice((0, 1, 3, 255))
    return bytes([version]) + data[1:], f"sadb_msg_version {version}"


def _c_reserved(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    out = bytearray(data)
    value = rng.choice((1, 0x100, 0xFFFF))
    struct.pack_into("=H", out, 6, value)
    return bytes(out), f"sadb_msg_reserved {value}"


def _c_msg_len(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    actual = len(data) // 8
    value = rng.choice([v for v in (0, 1, actual - 1, actual + 1, actual + 8) if v != actual and v >= 0])
    out = bytearray(data)
    struct.pack_into("=H", out, 4, value)
    return bytes(out), f"sadb_msg_len {value} for {actual} units"


def _c_trailing(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    extra = rng.choice((1, 3, 4, 7, 8, 12))
    tail = bytes(extra) if rng.random() < 0.5 else rng.randbytes(extra)
    return data + tail, f"{extra} bytes after sadb_msg_len"


def _c_truncate(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    if len(data) <= 24:
        return None
    cut = rng.randrange(17, len(data))
    if rng.random() < 0.6:
        cut -= cut % 8
        return _fix_len(data[:cut]), f"cut to {cut} bytes, sadb_msg_len fixed"
    return data[:cut], f"cut to {cut} bytes"


def _c_tiny(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    n = rng.choice((0, 1, 8, 15))
    return data[:n], f"only {n} bytes"


def _c_ext_len_zero(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data)
    if ext is None:
        return None
    out = bytearray(data)
    struct.pack_into("=H", out, ext[0], 0)
    return bytes(out), f"{_ext_name(ext[2])} length 0"


def _c_ext_len_overrun(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data)
    if ext is None:
        return None
    units = (len(data) - ext[0]) // 8 + rng.choice((1, 2, 100))
    out = bytearray(data)
    struct.pack_into("=H", out, ext[0], units)
    return bytes(out), f"{_ext_name(ext[2])} length {units} runs past the end"


def _c_duplicate(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data)
    if ext is None:
        return None
    copy = data[ext[0] : ext[0] + ext[1]]
    return _fix_len(data + copy), f"{_ext_name(ext[2])} twice"


def _c_type_zero(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data)
    if ext is None:
        return None
    out = bytearray(data)
    struct.pack_into("=H", out, ext[0] + 2, 0)
    return bytes(out), f"{_ext_name(ext[2])} retyped as 0"


def _c_unknown(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    exttype = rng.choice((27, 28, 99, 0x7FFF, 0xFFFF))
    units = rng.choice((1, 2, 3))
    ext = _EXT.pack(units, exttype) + rng.randbytes(units * 8 - 4)
    positions = [e[0] for e in _extensions(data)] + [len(data)]
    at = rng.choice(positions)
    return _fix_len(data[:at] + ext + data[at:]), f"an extension of unknown type {exttype} ({units * 8} bytes)"


def _c_short_address(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data, (5, 6, 7))
    if ext is None:
        return None
    units = rng.choice((1, 2, 3 if ext[1] == 40 else 2))
    body = bytearray(data[ext[0] : ext[0] + units * 8])
    struct.pack_into("=H", body, 0, units)
    out = data[: ext[0]] + bytes(body) + data[ext[0] + ext[1] :]
    return _fix_len(out), f"{_ext_name(ext[2])} shortened to {units * 8} bytes"


def _c_family(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data, (5, 6, 7))
    if ext is None:
        return None
    family = struct.unpack_from("=H", data, ext[0] + 8)[0]
    value = rng.choice((0, 1, 17, _AF_INET6 if family == _AF_INET else _AF_INET))
    out = bytearray(data)
    struct.pack_into("=H", out, ext[0] + 8, value)
    return bytes(out), f"{_ext_name(ext[2])} family {value}"


def _c_prefix(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data, (5, 6, 7))
    if ext is None:
        return None
    family = struct.unpack_from("=H", data, ext[0] + 8)[0]
    value = rng.choice((33, 64, 255) if family == _AF_INET else (129, 200, 255))
    out = bytearray(data)
    out[ext[0] + 5] = value
    return bytes(out), f"{_ext_name(ext[2])} prefix length {value}"


_MIN_LEN = {1: 16, 2: 32, 3: 32, 4: 32, 16: 16, 18: 16, 19: 16, 26: 40}


def _c_below_minimum(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data, tuple(_MIN_LEN))
    if ext is None:
        return None
    units = rng.randrange(1, _MIN_LEN[ext[2]] // 8)
    body = bytearray(data[ext[0] : ext[0] + units * 8])
    struct.pack_into("=H", body, 0, units)
    out = data[: ext[0]] + bytes(body) + data[ext[0] + ext[1] :]
    return _fix_len(out), f"{_ext_name(ext[2])} of {units * 8} bytes, below Linux's minimum"


def _c_key_bits(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data, (8, 9))
    if ext is None:
        return None
    bits = (ext[1] - 8) * 8 + rng.choice((1, 8, 64))
    out = bytearray(data)
    struct.pack_into("=H", out, ext[0] + 4, bits)
    return bytes(out), f"{_ext_name(ext[2])} says {bits} bits in {ext[1]} bytes"


def _c_type_swap(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    # Never to GETSPI: without a one-SPI range Linux would pick a random SPI.
    mtype = rng.choice((2, 3, 4, 5, 9, 10, 13, 14, 15, 16, 20, 22, 24))
    return data[:1] + bytes([mtype]) + data[2:], f"sent as {MsgType.of(mtype).label}"


def _c_errno(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    value = rng.choice((1, 22, 255))
    return data[:2] + bytes([value]) + data[3:], f"sadb_msg_errno {value}"


def _c_satype(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    value = rng.choice((0, 1, 2, 3, 4, 9, 10, 255))
    return data[:3] + bytes([value]) + data[4:], f"satype {value}"


def _c_request_len(rng: random.Random, data: bytes) -> tuple[bytes, str] | None:
    ext = _pick_ext(rng, data, (18,))
    if ext is None or ext[1] < 32:
        return None
    value = rng.choice((0, 8, 15, 17, 40, ext[1] - 16 + 8, 0xFFFF))
    out = bytearray(data)
    struct.pack_into("=H", out, ext[0] + 16, value)
    return bytes(out), f"first ipsecrequest length {value}"


_CORRUPTIONS: tuple[Corruption, ...] = (
    _c_version, _c_reserved, _c_msg_len, _c_trailing, _c_trailing, _c_truncate, _c_tiny,
    _c_ext_len_zero, _c_ext_len_overrun, _c_duplicate, _c_duplicate, _c_type_zero, _c_unknown, _c_unknown,
    _c_short_address, _c_family, _c_family, _c_prefix, _c_prefix, _c_below_minimum, _c_key_bits,
    _c_type_swap, _c_type_swap, _c_errno, _c_satype, _c_request_len, _c_request_len,
)  # fmt: skip


def _is_ipv6(request: IPsecRequest) -> bool:
    return request.src is not None and request.src.address.version == 6
