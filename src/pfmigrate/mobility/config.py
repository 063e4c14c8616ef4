"""The configuration of ``pfmigrate mn`` and ``pfmigrate ha``: one TOML file, checked whole.

The format, with complete examples, is ``docs/mobility-config.md`` (and
``examples/mn.toml``, ``examples/ha.toml``). Reading a file either gives a frozen
``MNConfig`` or ``HAConfig`` in which every value has been checked, or raises one
``ConfigError`` naming the file, the key path (``mobile_nodes[1].ipsec.sa.bu-ba.to-ha.spi``),
for TOML syntax errors the line and column, and what was expected there. Unknown keys
are mistakes too: a misspelt key would otherwise be a silent default.

What is checked beyond types: addresses are IPv6 and where they must be (the home agent
on the mobile node's home prefix, each served home address on the home agent's), prefixes
have no host bits and do not overlap, lifetimes fit a Binding Update (multiples of 4 s
up to 262140 s, RFC 6275 §6.1.7), Binding Updates and Acknowledgements are protected
(RFC 3776 §4.1: "MUST be used") with a non-null authentication algorithm (RFC 6275
§5.1), the K bit is clear with manual keys (RFC 6275 §6.1.7), SPIs are outside the
reserved 0-255 and do not collide where SAs share a destination, keys have a length the
algorithm takes, and reqids stay within Linux's manual range (PF_KEY replaces larger
ones with its own).
"""

from __future__ import annotations

import enum
import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final, TypeVar

from pfmigrate._files import kind_of
from pfmigrate.backends.keyd import path_too_long
from pfmigrate.backends.registry import NAMES as BACKEND_NAMES
from pfmigrate.model import Algorithm
from pfmigrate.sadb import algorithms as linux_algorithms

T = TypeVar("T")
E = TypeVar("E", bound=enum.Enum)

#: RFC 6275 §6.1.7: a Binding Update's lifetime is a 16-bit count of 4-second units.
LIFETIME_UNIT: Final = 4
MAX_LIFETIME: Final = 0xFFFF * LIFETIME_UNIT
#: Linux ``IPSEC_MANUAL_REQID_MAX``: PF_KEY replaces a larger reqid with one it makes up.
MAX_REQID: Final = 0x3FFF
#: Each mobile node takes this many reqids from its base: a pair per protection.
REQIDS_PER_NODE: Final = 8
#: SPIs 1-255 are reserved by IANA and 0 means "no SA" (RFC 4303 §2.1).
MIN_SPI: Final = 256
MAX_SPI: Final = 0xFFFFFFFF
DEFAULT_REQID_BASE: Final = 100
DEFAULT_ENCRYPTION: Final = "cbc(aes)"
DEFAULT_AUTHENTICATION: Final = "hmac(sha256)"
DEFAULT_LIFETIME: Final = 600
DEFAULT_MAX_LIFETIME: Final = 3600
DEFAULT_PREFIX_LENGTH: Final = 64
DEFAULT_MN_CONTROL: Final = Path("/run/pfmigrate/mn.sock")
DEFAULT_HA_CONTROL: Final = Path("/run/pfmigrate/ha.sock")
#: The most a configuration file may hold: the largest real one is a few kB per mobile node,
#: and a file without a bound (``/dev/zero``) would be read until memory ran out.
MAX_FILE_BYTES: Final = 1 << 20
_IFNAMSIZ: Final = 16  # Linux: interface names are at most 15 bytes and a NUL
_NOT_IN_NAMES: Final = re.compile(r"[\s/:\x00-\x1f\x7f]")  # dev_valid_name's, and what a log line would hide


class ConfigError(Exception):
    """A mistake in a configuration file.

    ``source`` is the file, ``path`` the TOML key path (empty for the file as a whole),
    ``line`` and ``column`` the place of a TOML syntax error (``None`` otherwise), and
    ``message`` says what was expected and what was found.
    """

    def __init__(
        self, source: str, path: str, message: str, *, line: int | None = None, column: int | None = None
    ) -> None:
        self.source = source
        self.path = path
        self.message = message
        self.line = line
        self.column = column
        super().__init__(self.source, self.path, self.message)

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class Role(enum.Enum):
    MN = "mn"
    HA = "ha"


class Keying(enum.Enum):
    """Who makes the SAs: the configuration (``manual``) or an IKE key manager (``ike``)."""

    MANUAL = "manual"
    IKE = "ike"


class Protection(enum.Enum):
    """What IPsec protects between a mobile node and its home agent (RFC 4877 §4.2,
    RFC 3776 §4.1), in the order policies are listed and reqids are numbered."""

    BU_BA = "bu-ba"  # Binding Update / Acknowledgement: ESP transport, HoA <-> HA
    MPS_MPA = "mps-mpa"  # Mobile Prefix Solicitation / Advertisement: ESP transport
    HOTI_HOT = "hoti-hot"  # Home Test Init / Home Test: ESP tunnel, CoA <-> HA
    PAYLOAD = "payload"  # all traffic from and to the home address (and NEMO prefixes)

    @property
    def tunnel(self) -> bool:
        return self in (Protection.HOTI_HOT, Protection.PAYLOAD)


class Toward(enum.Enum):
    """Which way an SA (and the policies it serves) carries traffic: to the home agent or
    to the mobile node. The same names on both sides, so a mobile node's keys are copied
    to its home agent's file as they are."""

    HA = "to-ha"
    MN = "to-mn"


DEFAULT_PROTECT: Final = (Protection.BU_BA, Protection.MPS_MPA, Protection.HOTI_HOT)


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """Which key engine to use (``None``: the registry's default, keyd if one runs, else
    Linux), and keyd's socket (``None``: keyd's default)."""

    name: str | None = None
    keyd_socket: Path | None = None


@dataclass(frozen=True, slots=True)
class ManualKeys:
    """One manually keyed SA: its SPI and keys (the algorithms are the node's)."""

    spi: int
    encryption_key: bytes = field(repr=False)
    authentication_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class IPsec:
    """How one mobile node and its home agent use IPsec.

    ``keys`` holds the SPI and keys of each SA for manual keying (empty with IKE).
    Reqids: ``reqid(protection, toward)`` is ``reqid_base`` + 2 * the protection's place
    in ``Protection`` + (1 for the SA toward the mobile node unless ``shared_reqids``).
    """

    keying: Keying
    protect: tuple[Protection, ...]
    encryption: str
    authentication: str
    reqid_base: int
    shared_reqids: bool = False
    keys: Mapping[tuple[Protection, Toward], ManualKeys] = field(default_factory=dict)

    def reqid(self, protection: Protection, toward: Toward) -> int:
        offset = 2 * list(Protection).index(protection)
        return self.reqid_base + offset + (0 if self.shared_reqids or toward is Toward.HA else 1)

    def algorithms(self, keys: ManualKeys) -> tuple[Algorithm, Algorithm]:
        """The (encryption, authentication) algorithms of a manually keyed SA; the ICV is
        truncated as Linux truncates it for SAs added through PF_KEY, so that every backend
        installs the same SA."""
        truncation = _AUTHENTICATION[self.authentication].trunc_bits
        return (
            Algorithm(self.encryption, keys.encryption_key),
            Algorithm(self.authentication, keys.authentication_key, truncation),
        )


@dataclass(frozen=True, slots=True)
class MNConfig:
    """``pfmigrate mn``: a mobile node (a mobile router when it has prefixes) and its home agent."""

    source: str
    backend: BackendChoice
    home_address: IPv6Address
    home_agent: IPv6Address
    home_prefix_length: int
    interface: str  # its global address is the care-of address
    lifetime: int  # seconds asked for in Binding Updates
    key_management_mobility: bool  # the K bit
    mobile_network_prefixes: tuple[IPv6Network, ...]
    ipsec: IPsec
    keep_trying: bool = True  # with no answer, go on sending Binding Updates every 32 s
    route_optimisation: bool = True  # the kernel's Home Address option and type 2 routing header
    control_socket: Path = DEFAULT_MN_CONTROL  # where `pfmigrate mn status` asks

    @property
    def home_prefix(self) -> IPv6Network:
        return IPv6Network((self.home_address, self.home_prefix_length), strict=False)


@dataclass(frozen=True, slots=True)
class ServedNode:
    """A mobile node as its home agent knows it."""

    home_address: IPv6Address
    mobile_network_prefixes: tuple[IPv6Network, ...]
    ipsec: IPsec


@dataclass(frozen=True, slots=True)
class HAConfig:
    """``pfmigrate ha``: a home agent and the mobile nodes it serves."""

    source: str
    backend: BackendChoice
    address: IPv6Address
    prefix_length: int
    max_lifetime: int  # the longest binding it grants, in seconds
    allow_key_management_mobility: bool  # whether it may answer the K bit with K
    mobile_nodes: tuple[ServedNode, ...]
    route_optimisation: bool = True  # the kernel's Home Address option and type 2 routing header
    control_socket: Path = DEFAULT_HA_CONTROL  # where `pfmigrate ha status` asks

    @property
    def home_prefix(self) -> IPv6Network:
        return IPv6Network((self.address, self.prefix_length), strict=False)

    def mobile_node(self, home_address: IPv6Address | str) -> ServedNode:
        """The served mobile node of this home address (``KeyError`` if none)."""
        wanted = IPv6Address(home_address)
        for node in self.mobile_nodes:
            if node.home_address == wanted:
                return node
        raise KeyError(f"{self.source} serves no mobile node with home address {wanted}")

    def grants_key_management_mobility(self, node: ServedNode) -> bool:
        """Whether a Binding Acknowledgement to ``node`` may set K (never with manual keys)."""
        return self.allow_key_management_mobility and node.ipsec.keying is Keying.IKE


Config = MNConfig | HAConfig


# --- reading ------------------------------------------------------------------------------


def load(path: str | Path, *, role: Role | None = None) -> Config:
    """Read and check a configuration file (``role``: refuse a file of the other role)."""
    source = str(path)
    try:
        text = _read(Path(path), source).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"is not UTF-8 text (byte {exc.start})") from None
    return parse(text, source, role=role)


def _read(path: Path, source: str) -> bytes:
    """The bytes of a regular file of at most ``MAX_FILE_BYTES``. Anything else is
    refused before it is read: a FIFO would hold the daemon until someone wrote to it,
    a device such as ``/dev/zero`` never ends."""
    try:
        _regular(source, os.stat(path).st_mode)  # (before opening: opening a device may act on it)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot be read: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as file:
        try:
            _regular(source, os.fstat(fd).st_mode)  # (what was opened: the path may have changed since)
            data = file.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(source, "", f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(
            source, "", f"is larger than {MAX_FILE_BYTES} bytes (1 MiB), far more than a configuration needs"
        )
    return data


def _regular(source: str, mode: int) -> None:
    if not stat.S_ISREG(mode):
        raise ConfigError(source, "", f"is {kind_of(mode)}, not a regular file: give the configuration file's path")


def load_mn(path: str | Path) -> MNConfig:
    config = load(path, role=Role.MN)
    assert isinstance(config, MNConfig)
    return config


def load_ha(path: str | Path) -> HAConfig:
    config = load(path, role=Role.HA)
    assert isinstance(config, HAConfig)
    return config


_TOML_PLACE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse(text: str, source: str = "<config>", *, role: Role | None = None) -> Config:
    """Check the TOML ``text`` (``source`` names it in errors)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        place = _TOML_PLACE.search(message)
        line = column = None
        if place is not None:
            line, column = int(place.group(1)), int(place.group(2))
            message = message[: place.start()]
        raise ConfigError(source, "", f"invalid TOML: {message}", line=line, column=column) from None
    except ValueError as exc:  # (an integer of thousands of digits: Python's own limit)
        raise ConfigError(source, "", f"invalid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(source, "", "invalid TOML: arrays or tables nested too deeply") from None
    top = _Table(source, "", document)
    found = top.choice("role", Role, "the role")
    if role is not None and found is not role:
        raise top.error("role", f'expected "{role.value}" here, found "{found.value}"')
    if found is Role.MN:
        top.only("role", "backend", "mobile_node", "ipsec")
        return _mobile_node_config(top)
    top.only("role", "backend", "home_agent", "ipsec", "mobile_nodes")
    return _home_agent_config(top)


def _backend(top: _Table) -> BackendChoice:
    table = top.table("backend")
    if table is None:
        return BackendChoice()
    table.only("name", "keyd_socket")
    name = table.optional("name", str, "a backend name")
    if name is not None and name not in BACKEND_NAMES:
        raise table.error("name", f"expected one of {', '.join(BACKEND_NAMES)}, found {name!r}")
    socket = table.optional("keyd_socket", str, "a socket path")
    if socket is None:
        return BackendChoice(name)
    if name != "keyd":
        raise table.error("keyd_socket", 'is only for name = "keyd"')
    if not socket:
        raise table.error("keyd_socket", "expected a socket path, found an empty string")
    too_long = path_too_long(Path(socket))
    if too_long is not None:
        raise table.error("keyd_socket", f"expected a socket path keyd can listen on: {too_long}")
    return BackendChoice(name, Path(socket))


def _mobile_node_config(top: _Table) -> MNConfig:
    backend = _backend(top)
    node = top.table("mobile_node", required=True)
    assert node is not None
    node.only(
        "home_address",
        "home_agent",
        "home_prefix_length",
        "interface",
        "lifetime",
        "key_management_mobility",
        "mobile_network_prefixes",
        "keep_trying",
        "route_optimisation",
        "control_socket",
    )
    home_address = node.address("home_address")
    home_agent = node.address("home_agent")
    prefix_length = node.integer("home_prefix_length", 1, 127, DEFAULT_PREFIX_LENGTH)
    home_prefix = IPv6Network((home_address, prefix_length), strict=False)
    if home_agent == home_address:
        raise node.error("home_agent", "expected the home agent's own address, found the home address")
    if home_agent not in home_prefix:
        raise node.error("home_agent", f"expected an address on the home prefix {home_prefix}, found {home_agent}")
    interface = node.required("interface", str, "an interface name")
    if not 0 < len(interface.encode()) < _IFNAMSIZ or interface in (".", "..") or _NOT_IN_NAMES.search(interface):
        rules = "1 to 15 bytes, no white space, control characters, / or :"
        raise node.error("interface", f"expected a Linux interface name ({rules}), found {interface!r}")
    lifetime = node.lifetime("lifetime", DEFAULT_LIFETIME)
    prefixes = _prefixes(node, home_prefix, {})
    ipsec = _ipsec(top.table("ipsec") or top.empty("ipsec"), None, top, DEFAULT_REQID_BASE)
    k_bit = node.optional("key_management_mobility", bool, "true or false")
    if k_bit is None:
        k_bit = ipsec.keying is Keying.IKE
    elif k_bit and ipsec.keying is Keying.MANUAL:
        raise node.error(
            "key_management_mobility", "expected false: with manual keys the K bit is clear (RFC 6275 6.1.7)"
        )
    keep_trying = node.optional("keep_trying", bool, "true or false")
    route_optimisation = node.optional("route_optimisation", bool, "true or false")
    return MNConfig(
        top.source, backend, home_address, home_agent, prefix_length, interface, lifetime, k_bit, prefixes, ipsec,
        True if keep_trying is None else keep_trying, True if route_optimisation is None else route_optimisation,
        _control_socket(node, DEFAULT_MN_CONTROL),
    )  # fmt: skip


def _home_agent_config(top: _Table) -> HAConfig:
    backend = _backend(top)
    agent = top.table("home_agent", required=True)
    assert agent is not None
    agent.only(
        "address", "prefix_length", "max_lifetime", "allow_key_management_mobility", "route_optimisation",
        "control_socket",
    )  # fmt: skip
    address = agent.address("address")
    prefix_length = agent.integer("prefix_length", 1, 127, DEFAULT_PREFIX_LENGTH)
    home_prefix = IPv6Network((address, prefix_length), strict=False)
    max_lifetime = agent.lifetime("max_lifetime", DEFAULT_MAX_LIFETIME)
    allow_k = agent.optional("allow_key_management_mobility", bool, "true or false")
    defaults = top.table("ipsec")
    reqid_start = DEFAULT_REQID_BASE
    if defaults is not None:
        if "sa" in defaults.values:
            raise defaults.error("sa", "SAs belong to one mobile node: give them as mobile_nodes[N].ipsec.sa")
        defaults.only(*(key for key in _IPSEC_KEYS if key != "sa"))
        _settings(defaults, defaults=True)  # checked here even where every node overrides them
        reqid_start = defaults.integer("reqid_base", 1, MAX_REQID - REQIDS_PER_NODE + 1, DEFAULT_REQID_BASE)
    nodes: list[ServedNode] = []
    owners: dict[IPv6Network, str] = {}
    for i, entry in enumerate(top.tables("mobile_nodes")):
        entry.only("home_address", "mobile_network_prefixes", "ipsec")
        home_address = entry.address("home_address")
        if home_address not in home_prefix:
            raise entry.error(
                "home_address", f"expected an address on the home prefix {home_prefix}, found {home_address}"
            )
        if home_address == address:
            raise entry.error("home_address", "expected a mobile node's address, found the home agent's")
        for earlier, node in enumerate(nodes):
            if node.home_address == home_address:
                raise entry.error("home_address", f"{home_address} is already mobile_nodes[{earlier}]'s home address")
        prefixes = _prefixes(entry, home_prefix, owners)
        own = entry.table("ipsec") or entry.empty("ipsec")
        ipsec = _ipsec(own, defaults, entry, reqid_start + REQIDS_PER_NODE * i)
        nodes.append(ServedNode(home_address, prefixes, ipsec))
    if not nodes:
        raise top.error("mobile_nodes", "expected at least one [[mobile_nodes]] table")
    _check_shared(top, nodes)
    allow = True if allow_k is None else allow_k
    route_optimisation = agent.optional("route_optimisation", bool, "true or false")
    return HAConfig(
        top.source, backend, address, prefix_length, max_lifetime, allow, tuple(nodes),
        True if route_optimisation is None else route_optimisation, _control_socket(agent, DEFAULT_HA_CONTROL),
    )  # fmt: skip


def _control_socket(table: _Table, default: Path) -> Path:
    """Where the daemon answers ``status``: a Unix socket path it can listen on."""
    text = table.optional("control_socket", str, "a socket path")
    if text is None:
        return default
    if not text:
        raise table.error("control_socket", "expected a socket path, found an empty string")
    too_long = path_too_long(Path(text))
    if too_long is not None:
        raise table.error("control_socket", f"expected a socket path the daemon can listen on: {too_long}")
    return Path(text)


def _prefixes(table: _Table, home_prefix: IPv6Network, owners: dict[IPv6Network, str]) -> tuple[IPv6Network, ...]:
    """Mobile network prefixes (RFC 3963): whole prefixes, off the home link, and each
    prefix served once (``owners`` remembers them across a home agent's nodes)."""
    key = "mobile_network_prefixes"
    found: list[IPv6Network] = []
    for text, path in table.strings(key, "IPv6 prefixes"):
        try:
            prefix = IPv6Network(text)
        except ValueError:
            raise table.error_at(
                path, f"expected an IPv6 prefix without host bits, like 2001:db8:1::/48, found {text!r}"
            ) from None
        if prefix.prefixlen == 0:
            raise table.error_at(path, "expected a mobile network prefix, found all addresses (::/0)")
        if prefix.overlaps(home_prefix):
            raise table.error_at(path, f"{prefix} overlaps the home prefix {home_prefix}")
        for other, owner in owners.items():
            if prefix.overlaps(other):
                raise table.error_at(path, f"{prefix} overlaps {other} ({owner})")
        owners[prefix] = path
        found.append(prefix)
    return tuple(found)


_IPSEC_KEYS: Final = ("keying", "protect", "encryption", "authentication", "reqid_base", "shared_reqids", "sa")


def _ipsec(own: _Table, defaults: _Table | None, parent: _Table, reqid_base: int) -> IPsec:
    """A pair's IPsec: ``own`` holds its keys, ``defaults`` (a home agent's ``[ipsec]``)
    whatever else ``own`` does not say; ``reqid_base`` unless ``own`` gives one."""
    own.only(*_IPSEC_KEYS)
    keying, protect, encryption, authentication, shared = _settings(own.over(defaults))
    assert keying is not None
    if "reqid_base" in own.values:
        base = own.integer("reqid_base", 1, MAX_REQID - REQIDS_PER_NODE + 1, None)
    elif reqid_base + REQIDS_PER_NODE - 1 > MAX_REQID:
        raise parent.error_at(
            ".".join(filter(None, (parent.path, "ipsec", "reqid_base"))),
            f"the derived reqids {reqid_base}-{reqid_base + REQIDS_PER_NODE - 1} pass {MAX_REQID}: give a smaller one",
        )
    else:
        base = reqid_base
    ipsec = IPsec(keying, protect, encryption, authentication, base, shared)
    sa = own.table("sa", secret=True)
    if keying is Keying.IKE:
        if sa is not None:
            raise own.error("sa", 'expected no SAs with keying = "ike": the key manager makes them')
        return ipsec
    if sa is None:
        raise own.error("sa", 'expected the SPI and keys of every SA with keying = "manual"')
    return IPsec(keying, protect, encryption, authentication, base, shared, _manual_keys(sa, ipsec))


def _settings(table: _Table, *, defaults: bool = False) -> tuple[Keying | None, tuple[Protection, ...], str, str, bool]:
    """Keying, protections, algorithms and reqid sharing (``defaults``: a home agent's
    ``[ipsec]``, where keying may be left to each node)."""
    keying = None if defaults and table.get("keying") is None else table.choice("keying", Keying, "the keying")
    protect = _protections(table)
    encryption = table.optional("encryption", str, "an encryption algorithm")
    if encryption is None:
        encryption = DEFAULT_ENCRYPTION
    elif encryption not in _ENCRYPTION:
        raise table.error("encryption", f"expected one of {', '.join(_ENCRYPTION)}, found {encryption!r}")
    authentication = table.optional("authentication", str, "an authentication algorithm")
    if authentication is None:
        authentication = DEFAULT_AUTHENTICATION
    elif authentication not in _AUTHENTICATION:
        raise table.error(
            "authentication",
            f"expected one of {', '.join(_AUTHENTICATION)} (Mobile IPv6 signalling needs a non-null "
            f"authentication algorithm, RFC 6275 5.1), found {authentication!r}",
        )
    shared = table.optional("shared_reqids", bool, "true or false") or False
    return keying, protect, encryption, authentication, shared


def _protections(table: _Table) -> tuple[Protection, ...]:
    if table.get("protect") is None:
        return DEFAULT_PROTECT
    chosen: set[Protection] = set()
    for name, path in table.strings("protect", "protection names"):
        try:
            protection = Protection(name)
        except ValueError:
            names = ", ".join(f'"{p.value}"' for p in Protection)
            raise table.error_at(path, f"expected one of {names}, found {name!r}") from None
        if protection in chosen:
            raise table.error_at(path, f'"{name}" is given twice')
        chosen.add(protection)
    if Protection.BU_BA not in chosen:
        raise table.error("protect", 'expected "bu-ba" among them: RFC 3776 4.1 says BU/BA protection MUST be used')
    return tuple(p for p in Protection if p in chosen)


def _manual_keys(sa: _Table, ipsec: IPsec) -> dict[tuple[Protection, Toward], ManualKeys]:
    sa.only(*(p.value for p in Protection))
    for name in sa.values:
        if Protection(name) not in ipsec.protect:
            raise sa.error(name, f'keys for "{name}", which protect does not list')
    keys: dict[tuple[Protection, Toward], ManualKeys] = {}
    spis: dict[int, str] = {}
    for protection in ipsec.protect:
        pair = sa.table(protection.value, required=True)
        assert pair is not None
        pair.only(*(t.value for t in Toward))
        for toward in Toward:
            one = pair.table(toward.value, required=True)
            assert one is not None
            one.only("spi", "encryption_key", "authentication_key")
            spi = one.integer("spi", MIN_SPI, MAX_SPI, None)
            if spi in spis:
                raise one.error("spi", f"{spi:#x} is already {spis[spi]}'s SPI")
            spis[spi] = one.path_of("spi")
            encryption_key = _key(one, "encryption_key", _ENCRYPTION[ipsec.encryption])
            authentication_key = _key(one, "authentication_key", _AUTHENTICATION[ipsec.authentication])
            keys[protection, toward] = ManualKeys(spi, encryption_key, authentication_key)
    return keys


def _key(table: _Table, name: str, algorithm: linux_algorithms.Algorithm) -> bytes:
    """A key in hexadecimal. What is wrong with it is said by place and length, never by
    showing any of it: error messages end up in logs and bug reports."""
    wanted = _key_lengths(algorithm)
    if algorithm.maxbits == 0:
        if table.get(name) is not None:
            raise table.error(name, f"expected no key: {algorithm.name} takes none")
        return b""
    text = table.required(name, str, f"{wanted} in hexadecimal, as a string")  # (``table`` is secret)
    prefix = 2 if text[:2].lower() == "0x" else 0
    digits = text[prefix:]
    bad = next((i for i, char in enumerate(digits) if char not in _HEX_DIGITS), None)
    if bad is not None:
        raise table.error(
            name, f"expected {wanted} in hexadecimal, found a character that is not a hex digit at character "
            f"{prefix + bad + 1} of {len(text)} (the key is not shown)",
        )  # fmt: skip
    if not digits or len(digits) % 2:
        raise table.error(
            name, f"expected {wanted} in hexadecimal (an even number of hex digits), found {len(digits)} digits"
        )
    key = bytes.fromhex(digits)
    if not (algorithm.minbits <= 8 * len(key) <= algorithm.maxbits and algorithm.accepts(len(key))):
        raise table.error(name, f"expected {wanted} for {algorithm.name}, found {8 * len(key)} bits")
    return key


def _key_lengths(algorithm: linux_algorithms.Algorithm) -> str:
    bits = [b for b in range(algorithm.minbits, algorithm.maxbits + 1, 8) if algorithm.accepts(b // 8)]
    if len(bits) == 1:
        return f"a {bits[0]}-bit key"
    if len(bits) <= 3:
        return "a " + ", ".join(f"{b}-" for b in bits[:-1]) + f" or {bits[-1]}-bit key"
    return f"a key of {bits[0]} to {bits[-1]} bits in whole bytes"


def _check_shared(top: _Table, nodes: list[ServedNode]) -> None:
    """Across a home agent's nodes: reqid blocks apart, and SPIs toward the home agent
    distinct (those SAs all have the home agent's address as destination)."""
    for i, node in enumerate(nodes):
        low = node.ipsec.reqid_base
        for j in range(i):
            other = nodes[j].ipsec.reqid_base
            if abs(low - other) < REQIDS_PER_NODE:
                raise top.error_at(
                    f"mobile_nodes[{i}].ipsec.reqid_base",
                    f"reqids {low}-{low + REQIDS_PER_NODE - 1} overlap mobile_nodes[{j}]'s "
                    f"{other}-{other + REQIDS_PER_NODE - 1}: give each node its own block of {REQIDS_PER_NODE}",
                )
    seen: dict[int, str] = {}
    for i, node in enumerate(nodes):
        for (protection, toward), keys in node.ipsec.keys.items():
            if toward is not Toward.HA:
                continue
            path = f"mobile_nodes[{i}].ipsec.sa.{protection.value}.{toward.value}.spi"
            if keys.spi in seen:
                raise top.error_at(
                    path, f"{keys.spi:#x} is already {seen[keys.spi]}'s SPI (both SAs end at the home agent)"
                )
            seen[keys.spi] = path


_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_ENCRYPTION: Final = {a.name: a for a in linux_algorithms.ENCRYPT}
_AUTHENTICATION: Final = {a.name: a for a in linux_algorithms.AUTH if a.name != "digest_null"}
_SHORTEST_KEY_BITS: Final = min(a.minbits for a in (*_ENCRYPTION.values(), *_AUTHENTICATION.values()) if a.minbits)


# --- one table, read with its place in the file --------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, key: str) -> str:
    if not key.startswith("[") and not _BARE_KEY.fullmatch(key.split("[", 1)[0]):
        key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if not path:
        return key
    return path + key if key.startswith("[") else f"{path}.{key}"


def _describe(value: object, *, secret: bool = False) -> str:
    """``value`` for an error message; with ``secret``, only its kind (and a string's
    length), as a key must never be shown."""
    if secret and isinstance(value, str):
        return f"a string of {len(value)} characters"
    if secret and isinstance(value, bool | int | float):
        return "a boolean" if isinstance(value, bool) else "a number"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"a {type(value).__name__}"  # dates and times


_ABSENT: Final = object()


class _Table:
    """A TOML table being read: its values, its key path, and an optional table whose
    values stand in for those it lacks (a home agent's ``[ipsec]`` defaults). A
    ``secret`` table (the SAs, with their keys) and those in it name their values'
    kinds in errors, never the values."""

    def __init__(
        self,
        source: str,
        path: str,
        values: Mapping[str, Any],
        fallback: _Table | None = None,
        *,
        secret: bool = False,
    ) -> None:
        self.source = source
        self.path = path
        self.values = values
        self.fallback = fallback
        self.secret = secret

    def empty(self, key: str) -> _Table:
        return _Table(self.source, _join(self.path, key), {})

    def over(self, fallback: _Table | None) -> _Table:
        return _Table(self.source, self.path, self.values, fallback)

    def path_of(self, key: str) -> str:
        if key not in self.values and self.fallback is not None and key in self.fallback.values:
            return self.fallback.path_of(key)
        return _join(self.path, key)

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.source, self.path_of(key), message)

    def error_at(self, path: str, message: str) -> ConfigError:
        return ConfigError(self.source, path, message)

    def only(self, *known: str) -> None:
        for key in self.values:
            if key not in known:
                raise self.error(key, f"unknown key: expected one of {', '.join(known)}")

    def get(self, key: str) -> object:
        if key in self.values:
            return self.values[key]
        if self.fallback is not None:
            return self.fallback.get(key)
        return None

    def optional(self, key: str, kind: type[T], expected: str) -> T | None:
        value = self.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {expected}, found {_describe(value, secret=self.secret)}")
        return value

    def required(self, key: str, kind: type[T], expected: str) -> T:
        value = self.optional(key, kind, expected)
        if value is None:
            raise self.error(key, f"expected {expected}, found nothing (the key is missing)")
        return value

    def integer(self, key: str, low: int, high: int, default: int | None) -> int:
        expected = f"a whole number from {low} to {high}"
        value = self.optional(key, int, expected)
        if value is None:
            if default is None:
                raise self.error(key, f"expected {expected}, found nothing (the key is missing)")
            return default
        if not low <= value <= high:
            # (among keys, a number as wide as the shortest key could be a key in the wrong place)
            wide = self.secret and value.bit_length() >= _SHORTEST_KEY_BITS
            found = f"a number of {value.bit_length()} bits" if wide else value
            raise self.error(key, f"expected {expected}, found {found}")
        return value

    def lifetime(self, key: str, default: int) -> int:
        value = self.integer(key, LIFETIME_UNIT, MAX_LIFETIME, default)
        if value % LIFETIME_UNIT:
            raise self.error(
                key, f"expected a multiple of {LIFETIME_UNIT} seconds (the unit of RFC 6275 6.1.7), found {value}"
            )
        return value

    def address(self, key: str) -> IPv6Address:
        text = self.required(key, str, "an IPv6 address")
        try:
            address = IPv6Address(text)
        except ValueError:
            found = "an IPv4 address" if _is_ipv4(text) else repr(text)
            raise self.error(key, f"expected an IPv6 address, found {found}") from None
        if address.scope_id is not None:
            raise self.error(key, f"expected a global address, without a zone, found {text!r}")
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            raise self.error(key, f"expected a unicast address, found {address}")
        return address

    def choice(self, key: str, kind: type[E], what: str) -> E:
        names = ", ".join(f'"{m.value}"' for m in kind)
        text = self.required(key, str, f"{what}: {names}")
        try:
            return kind(text)
        except ValueError:
            raise self.error(key, f"expected {what}: {names}, found {text!r}") from None

    def strings(self, key: str, what: str) -> list[tuple[str, str]]:
        """An array of strings, each with its key path."""
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"expected an array of {what}, found {_describe(value, secret=self.secret)}")
        path = self.path_of(key)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error_at(f"{path}[{i}]", f"expected a string, found {_describe(item, secret=self.secret)}")
        return [(item, f"{path}[{i}]") for i, item in enumerate(value)]

    def table(self, key: str, *, required: bool = False, secret: bool = False) -> _Table | None:
        value = self.values.get(key, _ABSENT)
        if value is _ABSENT:
            if required:
                raise self.error(key, "expected a table, found nothing (it is missing)")
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"expected a table, found {_describe(value, secret=secret or self.secret)}")
        return _Table(self.source, _join(self.path, key), value, secret=secret or self.secret)

    def tables(self, key: str) -> list[_Table]:
        value = self.values.get(key, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self.error(
                key, f"expected an array of tables ([[{key}]]), found {_describe(value, secret=self.secret)}"
            )
        return [
            _Table(self.source, f"{_join(self.path, key)}[{i}]", item, secret=self.secret)
            for i, item in enumerate(value)
        ]


def _is_ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)
    except ValueError:
        return False
    return True


__all__ = [
    "ConfigError",
    "Role",
    "Keying",
    "Protection",
    "Toward",
    "BackendChoice",
    "ManualKeys",
    "IPsec",
    "MNConfig",
    "ServedNode",
    "HAConfig",
    "Config",
    "load",
    "load_mn",
    "load_ha",
    "parse",
    "DEFAULT_PROTECT",
    "LIFETIME_UNIT",
    "MAX_LIFETIME",
    "MAX_REQID",
    "REQIDS_PER_NODE",
]
