"""The backend-neutral model: what agents, the key manager and the command line handle.

Selectors, policies with templates, SAs with algorithms, keys and lifetimes, MIGRATE
requests, and the events a key engine announces. The PF_KEY and XFRM backends translate
these to and from their wire formats; pfmigrate's own engine keeps them in its tables.
Every class is a frozen value checked on construction.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

ESP, AH, IPCOMP = 50, 51, 108
ANY_PROTO = 0  # in a selector: every upper-layer protocol
MH = 135  # the Mobility Header, what Mobile IPv6 signalling policies select
_TYPED = frozenset({1, 58, MH})  # ICMP, ICMPv6 and MH select a message type, not ports


class Dir(enum.Enum):
    """A policy's direction."""

    IN = "in"
    OUT = "out"
    FWD = "fwd"


class Mode(enum.Enum):
    TRANSPORT = "transport"
    TUNNEL = "tunnel"
    BEET = "beet"


class Level(enum.Enum):
    """How a template must be satisfied, as PF_KEY and setkey say it: ``use`` may go
    without an SA, ``require`` needs one, ``unique`` needs one of its own (its reqid)."""

    USE = "use"
    REQUIRE = "require"
    UNIQUE = "unique"


class Action(enum.Enum):
    """What a policy does: protect with its templates, let traffic pass, or drop it."""

    IPSEC = "ipsec"
    NONE = "none"
    DISCARD = "discard"


class SAState(enum.Enum):
    LARVAL = "larval"
    MATURE = "mature"
    DYING = "dying"
    DEAD = "dead"


class SAFlag(enum.Flag):
    NOECN = enum.auto()
    DECAP_DSCP = enum.auto()
    NOPMTUDISC = enum.auto()


NO_FLAGS = SAFlag(0)


def _address(value: Any) -> IPAddress:
    return value if isinstance(value, IPv4Address | IPv6Address) else ipaddress.ip_address(value)


def _network(value: Any) -> IPNetwork:
    return value if isinstance(value, IPv4Network | IPv6Network) else ipaddress.ip_network(value, strict=False)


def _set(obj: object, name: str, value: object) -> None:
    object.__setattr__(obj, name, value)


def _u(name: str, value: int, bits: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} {value!r} is not an unsigned {bits}-bit number")


@dataclass(frozen=True, slots=True)
class Selector:
    """Which traffic a policy (or an SA) covers: source and destination prefixes, the
    upper-layer protocol (0: any) and ports (0: any)."""

    src: IPNetwork
    dst: IPNetwork
    proto: int = ANY_PROTO
    sport: int = 0
    dport: int = 0

    def __post_init__(self) -> None:
        _set(self, "src", _network(self.src))
        _set(self, "dst", _network(self.dst))
        if self.src.version != self.dst.version:
            raise ValueError(f"selector {self.src} -> {self.dst} mixes address families")
        _u("selector protocol", self.proto, 8)
        _u("source port", self.sport, 16)
        _u("destination port", self.dport, 16)

    @classmethod
    def host(cls, src: str | IPAddress, dst: str | IPAddress, proto: int = ANY_PROTO) -> Selector:
        """Traffic between two single addresses."""
        s, d = _address(src), _address(dst)
        return cls(ipaddress.ip_network(s), ipaddress.ip_network(d), proto)

    @classmethod
    def any(cls, version: int) -> Selector:
        """All traffic of one address family."""
        everything = "0.0.0.0/0" if version == 4 else "::/0"
        return cls(ipaddress.ip_network(everything), ipaddress.ip_network(everything))

    @property
    def version(self) -> int:
        return self.src.version

    def __str__(self) -> str:
        proto = f" proto {self.proto}" if self.proto else ""
        if self.proto in _TYPED:  # (the message type rides in the source port, an ICMP code in the destination's)
            ports = f" type {self.sport}" if self.sport or self.dport else ""
            ports += f" code {self.dport}" if self.dport and self.proto != MH else ""
        else:
            ports = f" sport {self.sport}" if self.sport else ""
            ports += f" dport {self.dport}" if self.dport else ""
        return f"{self.src} -> {self.dst}{proto}{ports}"


@dataclass(frozen=True, slots=True)
class Template:
    """One transform a policy asks for: ESP, AH or IPComp, in a mode, with tunnel
    endpoints for tunnel mode. An ``optional`` template may go unsatisfied; a non-zero
    ``reqid`` ties the template to the SAs of that reqid (PF_KEY's "unique" level)."""

    proto: int = ESP
    mode: Mode = Mode.TRANSPORT
    src: IPAddress | None = None
    dst: IPAddress | None = None
    reqid: int = 0
    optional: bool = False

    @property
    def level(self) -> Level:
        """The level PF_KEY reports for this template (Linux derives it the same way)."""
        return Level.USE if self.optional else Level.UNIQUE if self.reqid else Level.REQUIRE

    def __post_init__(self) -> None:
        if self.proto not in (ESP, AH, IPCOMP):
            raise ValueError(f"template protocol {self.proto} is not ESP (50), AH (51) or IPComp (108)")
        if (self.src is None) != (self.dst is None):
            raise ValueError("a template has both tunnel endpoints or neither")
        if self.src is not None and self.dst is not None:
            _set(self, "src", _address(self.src))
            _set(self, "dst", _address(self.dst))
            if self.src.version != self.dst.version:
                raise ValueError(f"tunnel endpoints {self.src} and {self.dst} mix address families")
        if self.mode == Mode.TUNNEL and self.src is None:
            raise ValueError("a tunnel-mode template needs its endpoints")
        _u("reqid", self.reqid, 32)


@dataclass(frozen=True, slots=True)
class Policy:
    """An SPD entry. ``index`` is the engine's id for it (0 until one is given)."""

    selector: Selector
    dir: Dir
    templates: tuple[Template, ...] = ()
    action: Action = Action.IPSEC
    priority: int = 0
    index: int = 0

    def __post_init__(self) -> None:
        _set(self, "templates", tuple(self.templates))
        if self.action != Action.IPSEC and self.templates:
            raise ValueError(f"a {self.action.value} policy has no templates")
        _u("priority", self.priority, 32)
        _u("policy index", self.index, 32)


@dataclass(frozen=True, slots=True)
class Algorithm:
    """A transform by its Linux crypto name (``"cbc(aes)"``, ``"hmac(sha256)"``,
    ``"rfc4106(gcm(aes))"``), its key, and for authentication the truncated ICV
    length, for AEAD the ICV length, in bits."""

    name: str
    key: bytes = field(default=b"", repr=False)
    icv_bits: int = 0
    key_bits: int = -1  # -1: 8 * len(key)

    def __post_init__(self) -> None:
        if not self.name or not self.name.isascii() or len(self.name) > 63:
            raise ValueError(f"algorithm name {self.name!r} must be 1-63 ASCII characters")
        _set(self, "key", bytes(self.key))
        if self.key_bits == -1:
            _set(self, "key_bits", 8 * len(self.key))
        if (self.key_bits + 7) // 8 != len(self.key):
            raise ValueError(f"a {self.key_bits}-bit key needs {(self.key_bits + 7) // 8} bytes, got {len(self.key)}")
        _u("ICV length", self.icv_bits, 32)

    def __repr__(self) -> str:  # keys never appear in logs
        icv = f", icv_bits={self.icv_bits}" if self.icv_bits else ""
        return f"Algorithm({self.name!r}, key_bits={self.key_bits}{icv})"


@dataclass(frozen=True, slots=True)
class Lifetime:
    """Soft and hard limits; 0 means none. Time limits are seconds after adding
    (``add``) or after first use (``use``)."""

    soft_bytes: int = 0
    hard_bytes: int = 0
    soft_packets: int = 0
    hard_packets: int = 0
    soft_add: int = 0
    hard_add: int = 0
    soft_use: int = 0
    hard_use: int = 0

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            _u(f"lifetime {name}", getattr(self, name), 64)


@dataclass(frozen=True, slots=True)
class Counters:
    """What an SA has done: bytes and packets, when it was added and first used
    (seconds since the epoch, 0 if never)."""

    bytes: int = 0
    packets: int = 0
    add_time: int = 0
    use_time: int = 0


@dataclass(frozen=True, slots=True)
class Encap:
    """NAT traversal: ESP in UDP (``type`` 2) between two ports, with the original address."""

    type: int = 2
    sport: int = 4500
    dport: int = 4500
    oa: IPAddress | None = None

    def __post_init__(self) -> None:
        _u("NAT-T type", self.type, 8)
        _u("NAT-T source port", self.sport, 16)
        _u("NAT-T destination port", self.dport, 16)
        if self.oa is not None:
            _set(self, "oa", _address(self.oa))


@dataclass(frozen=True, slots=True)
class SecurityAssociation:
    """An SAD entry, identified by (``dst``, ``spi``, ``proto``). ``selector`` ``None``
    is the engine's default (any traffic of the SA's family)."""

    src: IPAddress
    dst: IPAddress
    spi: int
    proto: int = ESP
    mode: Mode = Mode.TRANSPORT
    reqid: int = 0
    auth: Algorithm | None = None
    enc: Algorithm | None = None
    aead: Algorithm | None = None
    comp: Algorithm | None = None
    replay_window: int = 0
    flags: SAFlag = NO_FLAGS
    lifetime: Lifetime = Lifetime()
    selector: Selector | None = None
    encap: Encap | None = None
    # What the engine reports, not part of what the SA is:
    current: Counters = field(default=Counters(), compare=False)
    state: SAState = field(default=SAState.MATURE, compare=False)

    def __post_init__(self) -> None:
        _set(self, "src", _address(self.src))
        _set(self, "dst", _address(self.dst))
        if self.src.version != self.dst.version:
            raise ValueError(f"SA endpoints {self.src} and {self.dst} mix address families")
        if self.proto not in (ESP, AH, IPCOMP):
            raise ValueError(f"SA protocol {self.proto} is not ESP (50), AH (51) or IPComp (108)")
        _u("SPI", self.spi, 32)
        _u("reqid", self.reqid, 32)
        _u("replay window", self.replay_window, 32)
        if self.aead is not None and (self.auth is not None or self.enc is not None):
            raise ValueError("an AEAD SA has no separate authentication or encryption algorithm")
        sel = self.selector
        if sel is not None and sel.version == self.src.version and sel == Selector.any(self.src.version):
            _set(self, "selector", None)  # the same as no selector: one way to say it

    @property
    def id(self) -> tuple[IPAddress, int, int]:
        """What identifies an SA in Linux and in PF_KEY: destination, SPI, protocol."""
        return (self.dst, self.spi, self.proto)


@dataclass(frozen=True, slots=True)
class MigrateBundle:
    """One SA bundle to move: its protocol, mode and reqid, and the tunnel endpoints
    before and after."""

    old_src: IPAddress
    old_dst: IPAddress
    new_src: IPAddress
    new_dst: IPAddress
    proto: int = ESP
    mode: Mode = Mode.TUNNEL
    reqid: int = 0

    def __post_init__(self) -> None:
        for name in ("old_src", "old_dst", "new_src", "new_dst"):
            _set(self, name, _address(getattr(self, name)))
        if self.old_src.version != self.old_dst.version or self.new_src.version != self.new_dst.version:
            raise ValueError("the old and the new endpoint pairs must each be of one family")
        _u("reqid", self.reqid, 32)


@dataclass(frozen=True, slots=True)
class KMAddress:
    """The key managers' addresses after a move (the IKE SA's local and remote)."""

    local: IPAddress
    remote: IPAddress

    def __post_init__(self) -> None:
        _set(self, "local", _address(self.local))
        _set(self, "remote", _address(self.remote))
        if self.local.version != self.remote.version:
            raise ValueError("key-manager addresses mix address families")


@dataclass(frozen=True, slots=True)
class MigrateRequest:
    """Move the bundles of the policy (``selector``, ``dir``) to new endpoints, and
    tell the key managers ``kmaddress``."""

    selector: Selector
    dir: Dir
    bundles: tuple[MigrateBundle, ...]
    kmaddress: KMAddress | None = None

    def __post_init__(self) -> None:
        _set(self, "bundles", tuple(self.bundles))
        if not 1 <= len(self.bundles) <= 6:
            raise ValueError(f"a MIGRATE moves 1 to 6 bundles, not {len(self.bundles)}")


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrateEvent:
    """A MIGRATE took effect (any process's)."""

    request: MigrateRequest


@dataclass(frozen=True, slots=True)
class AcquireEvent:
    """Traffic hit a policy that has no SA: a key manager should negotiate one.
    (PF_KEY does not say which traffic: its ``selector`` is ``None``.)"""

    selector: Selector | None
    src: IPAddress
    dst: IPAddress
    proto: int
    mode: Mode
    reqid: int
    policy_index: int
    seq: int


@dataclass(frozen=True, slots=True)
class ExpireEvent:
    """An SA reached a soft (re-key now) or hard (deleted) limit."""

    sa: SecurityAssociation
    hard: bool


@dataclass(frozen=True, slots=True)
class EventsLost:
    """The engine dropped events for this listener (a full queue): state may have
    changed unseen, so resynchronise by dumping."""

    reason: str


Event = MigrateEvent | AcquireEvent | ExpireEvent | EventsLost
