"""A Mobile IPv6 handover topology in named network namespaces (inside the UML guest).

Six namespaces joined by veth pairs, addressed as in the seed's scenario::

    MN ── AR1 ──┐                   (3ffe:501:ffff:500::/64, CoA ...500:1:2:3:4)
     ╎          ├── R ── HA ── home link (3ffe:501:ffff:100::/64, HA ...100::1)
     └╌ AR2 ────┤                   (3ffe:501:ffff:400::/64, CoA ...400:1:2:3:4)
                └── CN              (3ffe:501:ffff:200::/64, CN ...200::2)

The mobile node has one interface, ``mn0``. Its peer (``mnlink``) starts in AR1; a
move hands that peer to AR2's namespace, as a roaming radio meets a new access
router: the MN loses carrier, AR2 brings its end up, and the MN takes its new care-of
address and default route. The home address lives on the MN's loopback with the
``home`` flag (``IFA_F_HOMEADDRESS``), which Linux wants before it accepts a type 2
routing header for it. The home link is a dummy interface on the HA. Routers forward;
duplicate address detection is off everywhere (and addresses are added ``nodad``), so
a move costs no DAD delay.

A node runs a command (``node.run``), many ``ip`` commands in one process
(``node.ip``), a Python callable in a forked child (``node.call``), or lets the
current thread step in (``with node.entered(): ...``): sockets opened there belong to
the node's namespace for good and can be used from anywhere afterwards.

Namespaces are named ``<prefix>-mn`` and so on (``ip netns add``): they persist until
``teardown`` and can be inspected with ``ip -n``.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import TypeVar

from pfmigrate.model import (
    ESP,
    MH,
    Algorithm,
    Dir,
    KMAddress,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from testbed.netns import fork_call

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

HOME_PREFIX = IPv6Network("3ffe:501:ffff:100::/64")
HOME_AGENT = IPv6Address("3ffe:501:ffff:100::1")
HOME_ADDRESS = IPv6Address("3ffe:501:ffff:100:1:2:3:4")
VISITED1 = IPv6Network("3ffe:501:ffff:500::/64")
AR1_ADDRESS = IPv6Address("3ffe:501:ffff:500::1")
COA1 = IPv6Address("3ffe:501:ffff:500:1:2:3:4")
VISITED2 = IPv6Network("3ffe:501:ffff:400::/64")
AR2_ADDRESS = IPv6Address("3ffe:501:ffff:400::1")
COA2 = IPv6Address("3ffe:501:ffff:400:1:2:3:4")
CN_PREFIX = IPv6Network("3ffe:501:ffff:200::/64")
CN_ADDRESS = IPv6Address("3ffe:501:ffff:200::2")
ROUTER_CN = IPv6Address("3ffe:501:ffff:200::1")
# The core: R to AR1, AR2 and HA, one /64 each (R is ::1, the other end ::2).
CORE = {"ar1": IPv6Network("3ffe:501:ffff:f1::/64"), "ar2": IPv6Network("3ffe:501:ffff:f2::/64"),
        "ha": IPv6Network("3ffe:501:ffff:f3::/64")}  # fmt: skip

MN_IF = "mn0"  # the mobile node's only link
AR_IF = "mnlink"  # its peer, in AR1 or AR2
UPLINK = "up0"  # AR1, AR2, HA and CN towards R
HOME_IF = "home0"  # the HA's home link (dummy)


class TopologyError(RuntimeError):
    """Setting up or changing the topology failed; the message has the command's output."""


class NodeFailure(AssertionError):
    """A callable failed inside a node; the message is its traceback."""


_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET): {os.strerror(errno)}")


def _router(net: IPv6Network) -> IPv6Address:
    return net.network_address + 1


def _far_end(net: IPv6Network) -> IPv6Address:
    return net.network_address + 2


@dataclass(frozen=True)
class Node:
    """One network namespace, by its ``ip netns`` name."""

    name: str

    @property
    def path(self) -> Path:
        return Path("/run/netns") / self.name

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """The calling thread is in this namespace until the block ends (setns and back).

        Sockets and child processes created inside stay in the namespace. Other
        threads are not affected; threads started inside inherit the namespace.
        """
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(self.path, os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(home)
        finally:
            os.close(home)

    def run(
        self, *argv: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in this namespace; ``TopologyError`` with its output if it fails."""
        with self.entered():
            done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise TopologyError(f"{self.name}: {' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    def ip(self, *commands: str) -> None:
        """Several ``ip`` commands (without the leading ``ip``) in one process."""
        self.run("ip", "-batch", "-", input="".join(f"{c}\n" for c in commands))

    def sysctl(self, key: str, value: str | int) -> None:
        """Write ``/proc/sys/<key with dots as slashes>`` as seen from this namespace."""
        with self.entered(), open(Path("/proc/sys") / key.replace(".", "/"), "w") as f:
            f.write(f"{value}\n")

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a forked child that has moved into this namespace; its return
        value (pickled) or its traceback (as ``NodeFailure``) comes back."""

        def enter() -> None:
            fd = os.open(self.path, os.O_RDONLY)
            _setns(fd)
            os.close(fd)

        answer = fork_call(enter, fn)
        if answer is None:
            raise NodeFailure(f"{self.name}: the child died without an answer")
        ok, value = answer
        if not ok:
            raise NodeFailure(f"in {self.name}:\n{value}")
        return value  # type: ignore[return-value]


def _host(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise TopologyError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done


@dataclass
class Topology:
    """The handover topology; ``attached`` is the access router the MN is on now."""

    prefix: str
    mn: Node
    ar1: Node
    ar2: Node
    ha: Node
    router: Node
    cn: Node
    attached: Node = field(init=False)
    moves: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.attached = self.ar1

    @property
    def nodes(self) -> tuple[Node, ...]:
        return (self.mn, self.ar1, self.ar2, self.ha, self.router, self.cn)

    @property
    def coa(self) -> IPv6Address:
        """The MN's care-of address on its current link."""
        return COA1 if self.attached == self.ar1 else COA2

    def node(self, role: str) -> Node:
        """A node by role: ``mn``, ``ar1``, ``ar2``, ``ha``, ``router`` or ``cn``."""
        found: Node = getattr(self, role)
        return found

    def move(self, to: Node | None = None, *, detached: float = 0.0) -> IPv6Address:
        """Hand the MN's link to the other access router (or ``to``) and configure the
        MN there: the old care-of address goes, the new one (``nodad``) and the default
        route via the new router come, ``detached`` seconds later (the MN has no global
        address meanwhile, as between two radio links). Returns the new care-of address."""
        target = to or (self.ar2 if self.attached == self.ar1 else self.ar1)
        if target not in (self.ar1, self.ar2):
            raise ValueError(f"the MN attaches to AR1 or AR2, not {target.name}")
        if target == self.attached:
            return self.coa
        old_coa, old_net = (COA1, VISITED1) if self.attached == self.ar1 else (COA2, VISITED2)
        if target == self.ar1:
            new_coa, new_net, gateway = COA1, VISITED1, AR1_ADDRESS
        else:
            new_coa, new_net, gateway = COA2, VISITED2, AR2_ADDRESS
        self.attached.ip(f"link set {AR_IF} netns {target.name}")
        target.ip(f"addr add {gateway}/{new_net.prefixlen} dev {AR_IF} nodad", f"link set {AR_IF} up")
        leave = f"addr del {old_coa}/{old_net.prefixlen} dev {MN_IF}"
        arrive = (f"addr add {new_coa}/{new_net.prefixlen} dev {MN_IF} nodad",
                  f"route replace default via {gateway} dev {MN_IF}")  # fmt: skip
        if detached:
            self.mn.ip(leave)
            time.sleep(detached)
            self.mn.ip(*arrive)
        else:
            self.mn.ip(leave, *arrive)
        self.attached = target
        self.moves += 1
        return new_coa

    def teardown(self) -> None:
        """Delete every namespace (and with them their links, SAs and policies)."""
        remove(self.prefix)


def _names(prefix: str) -> dict[str, str]:
    return {role: f"{prefix}-{role}" for role in ("mn", "ar1", "ar2", "ha", "router", "cn")}


def remove(prefix: str) -> None:
    """Delete the namespaces of a topology with this prefix, if there are any."""
    there = [name for name in _names(prefix).values() if (Path("/run/netns") / name).exists()]
    if there:
        _host("ip", "-force", "-batch", "-", input="".join(f"netns del {name}\n" for name in there), check=False)


def _no_dad(node: Node, *, forwarding: bool) -> None:
    for scope in ("all", "default"):
        node.sysctl(f"net.ipv6.conf.{scope}.accept_dad", 0)
        node.sysctl(f"net.ipv6.conf.{scope}.dad_transmits", 0)
    if forwarding:
        node.sysctl("net.ipv6.conf.all.forwarding", 1)


def build(prefix: str = "ho") -> Topology:
    """Create the namespaces, links, addresses and routes; the MN is on AR1 with CoA1.

    Leftovers of an earlier topology with the same prefix are removed first.
    """
    remove(prefix)
    names = _names(prefix)
    topo = Topology(prefix, *(Node(names[r]) for r in ("mn", "ar1", "ar2", "ha", "router", "cn")))
    _host("ip", "-batch", "-", input="".join(f"netns add {n.name}\n" for n in topo.nodes))
    try:
        _configure(topo)
    except BaseException:
        topo.teardown()
        raise
    return topo


def _configure(topo: Topology) -> None:
    for node in topo.nodes:
        _no_dad(node, forwarding=node != topo.mn and node != topo.cn)
        node.ip("link set lo up")
    mn, ar1, ar2, ha, r, cn = topo.nodes
    links = [
        (mn, MN_IF, ar1, AR_IF),
        (ar1, UPLINK, r, "r-ar1"),
        (ar2, UPLINK, r, "r-ar2"),
        (ha, UPLINK, r, "r-ha"),
        (cn, UPLINK, r, "r-cn"),
    ]
    _host(
        "ip", "-batch", "-",
        input="".join(f"link add {a} netns {x.name} type veth peer name {b} netns {y.name}\n" for x, a, y, b in links),
    )  # fmt: skip
    mn.ip(
        f"addr add {HOME_ADDRESS}/128 dev lo home nodad",
        f"addr add {COA1}/{VISITED1.prefixlen} dev {MN_IF} nodad",
        f"link set {MN_IF} up",
        f"route add default via {AR1_ADDRESS} dev {MN_IF}",
    )
    ar1.ip(
        f"addr add {AR1_ADDRESS}/{VISITED1.prefixlen} dev {AR_IF} nodad",
        f"addr add {_far_end(CORE['ar1'])}/64 dev {UPLINK} nodad",
        f"link set {AR_IF} up",
        f"link set {UPLINK} up",
        f"route add default via {_router(CORE['ar1'])} dev {UPLINK}",
    )
    ar2.ip(
        f"addr add {_far_end(CORE['ar2'])}/64 dev {UPLINK} nodad",
        f"link set {UPLINK} up",
        f"route add default via {_router(CORE['ar2'])} dev {UPLINK}",
    )
    ha.ip(
        f"link add {HOME_IF} type dummy",
        f"addr add {HOME_AGENT}/{HOME_PREFIX.prefixlen} dev {HOME_IF} nodad",
        f"link set {HOME_IF} up",
        f"addr add {_far_end(CORE['ha'])}/64 dev {UPLINK} nodad",
        f"link set {UPLINK} up",
        f"route add default via {_router(CORE['ha'])} dev {UPLINK}",
    )
    cn.ip(
        f"addr add {CN_ADDRESS}/{CN_PREFIX.prefixlen} dev {UPLINK} nodad",
        f"link set {UPLINK} up",
        f"route add default via {ROUTER_CN} dev {UPLINK}",
    )
    r.ip(
        *(f"addr add {_router(CORE[role])}/64 dev r-{role} nodad" for role in ("ar1", "ar2", "ha")),
        f"addr add {ROUTER_CN}/{CN_PREFIX.prefixlen} dev r-cn nodad",
        *(f"link set r-{role} up" for role in ("ar1", "ar2", "ha", "cn")),
        f"route add {VISITED1} via {_far_end(CORE['ar1'])} dev r-ar1",
        f"route add {VISITED2} via {_far_end(CORE['ar2'])} dev r-ar2",
        f"route add {HOME_PREFIX} via {_far_end(CORE['ha'])} dev r-ha",
    )


@contextlib.contextmanager
def topology(prefix: str = "ho") -> Iterator[Topology]:
    """``build`` for a ``with`` block; torn down at its end."""
    topo = build(prefix)
    try:
        yield topo
    finally:
        topo.teardown()


def addresses(node: Node) -> list[str]:
    """The node's global IPv6 addresses with their interfaces (``ip -6 -br addr``)."""
    text = node.run("ip", "-6", "-br", "addr", "show", "scope", "global").stdout
    return [line.strip() for line in text.splitlines() if line.strip()]


def reachable(node: Node, target: IPv6Address, *, source: IPv6Address | None = None, count: int = 1) -> bool:
    """Whether ``ping`` from ``node`` (from ``source``) to ``target`` gets an answer."""
    argv: Sequence[str] = ["ping", "-6", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "2"]
    if source is not None:
        argv = [*argv, "-I", str(source)]
    return node.run(*argv, str(target), check=False).returncode == 0


# --- manual-keyed IPsec between the MN and the HA ---------------------------------------------------
#
# RFC 3776/4877 with manual keys: the home address's traffic in an ESP tunnel between the
# care-of address and the HA, Binding Updates and Acknowledgements in ESP transport
# between the home address and the HA. Selectors and reqids as UMIP keeps them (a reqid
# per direction); the signalling policies win over the tunnel by priority.

TUNNEL_UP_SPI, TUNNEL_DOWN_SPI, BU_SPI, BA_SPI = 0x1000, 0x1001, 0x2000, 0x2001
TUNNEL_UP_REQID, TUNNEL_DOWN_REQID, BU_REQID, BA_REQID = 11, 12, 21, 22
SIGNALLING_PRIORITY, DATA_PRIORITY = 2, 5  # UMIP's MIP6_PRIO_HOME_SIG and MIP6_PRIO_HOME_DATA_IPSEC
MH_BU, MH_BA = 5, 6
AUTH = Algorithm("hmac(sha256)", bytes(range(32)), 128)
ENC = Algorithm("cbc(aes)", bytes(range(100, 116)))
_EVERYWHERE = IPv6Network("::/0")
FROM_MN = Selector(IPv6Network(HOME_ADDRESS), _EVERYWHERE)  # what the MN sends from its home address
TO_MN = Selector(_EVERYWHERE, IPv6Network(HOME_ADDRESS))
BU_SELECTOR = Selector(IPv6Network(HOME_ADDRESS), IPv6Network(HOME_AGENT), MH, MH_BU)
BA_SELECTOR = Selector(IPv6Network(HOME_AGENT), IPv6Network(HOME_ADDRESS), MH, MH_BA)


def _esp(src: IPv6Address, dst: IPv6Address, spi: int, mode: Mode, reqid: int) -> SecurityAssociation:
    return SecurityAssociation(src, dst, spi, ESP, mode, reqid, AUTH, ENC, replay_window=32)


def ipsec_sas(coa: IPv6Address) -> list[SecurityAssociation]:
    """The four SAs, the same on both ends: tunnel up and down, BU and BA transport."""
    return [
        _esp(coa, HOME_AGENT, TUNNEL_UP_SPI, Mode.TUNNEL, TUNNEL_UP_REQID),
        _esp(HOME_AGENT, coa, TUNNEL_DOWN_SPI, Mode.TUNNEL, TUNNEL_DOWN_REQID),
        _esp(HOME_ADDRESS, HOME_AGENT, BU_SPI, Mode.TRANSPORT, BU_REQID),
        _esp(HOME_AGENT, HOME_ADDRESS, BA_SPI, Mode.TRANSPORT, BA_REQID),
    ]


def ipsec_policies(role: str, coa: IPv6Address) -> list[Policy]:
    """The MN's (``"mn"``: out, in) or the HA's (``"ha"``: in, fwd, out) policies."""
    up = (Template(ESP, Mode.TUNNEL, coa, HOME_AGENT, TUNNEL_UP_REQID),)
    down = (Template(ESP, Mode.TUNNEL, HOME_AGENT, coa, TUNNEL_DOWN_REQID),)
    bu = (Template(ESP, Mode.TRANSPORT, reqid=BU_REQID),)
    ba = (Template(ESP, Mode.TRANSPORT, reqid=BA_REQID),)
    if role == "mn":
        return [
            Policy(FROM_MN, Dir.OUT, up, priority=DATA_PRIORITY),
            Policy(TO_MN, Dir.IN, down, priority=DATA_PRIORITY),
            Policy(BU_SELECTOR, Dir.OUT, bu, priority=SIGNALLING_PRIORITY),
            Policy(BA_SELECTOR, Dir.IN, ba, priority=SIGNALLING_PRIORITY),
        ]
    if role == "ha":
        return [
            Policy(FROM_MN, Dir.IN, up, priority=DATA_PRIORITY),
            Policy(FROM_MN, Dir.FWD, up, priority=DATA_PRIORITY),
            Policy(TO_MN, Dir.OUT, down, priority=DATA_PRIORITY),
            Policy(BU_SELECTOR, Dir.IN, bu, priority=SIGNALLING_PRIORITY),
            Policy(BA_SELECTOR, Dir.OUT, ba, priority=SIGNALLING_PRIORITY),
        ]
    raise ValueError(f"role is mn or ha, not {role!r}")


def migrations(role: str, old: IPv6Address, new: IPv6Address) -> list[MigrateRequest]:
    """The MIGRATEs of a move from care-of address ``old`` to ``new``, as UMIP sends
    them: per tunnel policy direction (MN: out, in; HA: in, fwd, out), then the
    transport policies (which move nothing, but tell key managers the new address),
    each with KMADDRESS (local, remote after the move)."""
    ha = HOME_AGENT
    up = MigrateBundle(old, ha, new, ha, ESP, Mode.TUNNEL, TUNNEL_UP_REQID)
    down = MigrateBundle(ha, old, ha, new, ESP, Mode.TUNNEL, TUNNEL_DOWN_REQID)
    bu = MigrateBundle(old, ha, new, ha, ESP, Mode.TRANSPORT, BU_REQID)
    ba = MigrateBundle(ha, old, ha, new, ESP, Mode.TRANSPORT, BA_REQID)
    if role == "mn":
        kma = KMAddress(new, ha)
        return [
            MigrateRequest(FROM_MN, Dir.OUT, (up,), kma),
            MigrateRequest(TO_MN, Dir.IN, (down,), kma),
            MigrateRequest(BU_SELECTOR, Dir.OUT, (bu,), kma),
            MigrateRequest(BA_SELECTOR, Dir.IN, (ba,), kma),
        ]
    if role == "ha":
        kma = KMAddress(ha, new)
        return [
            MigrateRequest(FROM_MN, Dir.IN, (up,), kma),
            MigrateRequest(FROM_MN, Dir.FWD, (up,), kma),
            MigrateRequest(TO_MN, Dir.OUT, (down,), kma),
            MigrateRequest(BU_SELECTOR, Dir.IN, (bu,), kma),
            MigrateRequest(BA_SELECTOR, Dir.OUT, (ba,), kma),
        ]
    raise ValueError(f"role is mn or ha, not {role!r}")


# --- watching the wire ---------------------------------------------------------------------------

ETH_P_ALL = 0x0003
ETH_P_IPV6 = 0x86DD
PACKET_OUTGOING = 4
_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: followed to the next header


@dataclass(frozen=True)
class Packet:
    """An IPv6 packet seen on a link: its outer addresses, the chain of next-header
    values (up to ESP or an upper layer), the Home Address option's and the type 2
    routing header's address if present, and whether this end sent it."""

    src: IPv6Address
    dst: IPv6Address
    chain: tuple[int, ...]
    hao: IPv6Address | None = None
    rh2: IPv6Address | None = None
    outgoing: bool = False
    at: float = 0.0

    @property
    def upper(self) -> int:
        return self.chain[-1]


def parse_ipv6(frame: bytes, *, outgoing: bool = False, at: float = 0.0) -> Packet | None:
    """An Ethernet frame as a ``Packet``, or ``None`` if it is not IPv6."""
    if len(frame) < 54 or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IPV6:
        return None
    ip = frame[14:]
    src, dst = IPv6Address(ip[8:24]), IPv6Address(ip[24:40])
    chain, hao, rh2 = [ip[6]], None, None
    at_off = 40
    while chain[-1] in _EXTENSIONS and at_off + 8 <= len(ip):
        header, length = ip[at_off:], (ip[at_off + 1] + 1) * 8
        if chain[-1] == 43 and header[2] == 2 and length >= 24:
            rh2 = IPv6Address(header[8:24])
        if chain[-1] == 60:
            pos = 2
            while pos + 2 <= length:
                kind = header[pos]
                if kind == 0:
                    pos += 1
                    continue
                if kind == 201 and header[pos + 1] == 16:
                    hao = IPv6Address(header[pos + 2 : pos + 18])
                pos += 2 + header[pos + 1]
        chain.append(header[0])
        at_off += length
    return Packet(src, dst, tuple(chain), hao, rh2, outgoing, at)


class Capture:
    """Every IPv6 packet on one interface of a node, from now until ``stop`` (an
    ``AF_PACKET`` socket in the node's namespace, read by a thread)."""

    def __init__(self, node: Node, interface: str) -> None:
        with node.entered():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((interface, 0))
        self.sock.settimeout(0.05)
        self.packets: list[Packet] = []
        self._running = True
        self._thread = threading.Thread(target=self._read, name=f"capture {node.name}:{interface}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            try:
                frame, address = self.sock.recvfrom(65535)
            except TimeoutError:
                if not self._running:  # stopped, and nothing more is queued
                    return
                continue
            except OSError:
                return
            packet = parse_ipv6(frame, outgoing=address[2] == PACKET_OUTGOING, at=time.monotonic())
            if packet is not None:
                self.packets.append(packet)

    def stop(self) -> list[Packet]:
        self._running = False
        self._thread.join(2)
        self.sock.close()
        return self.packets

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- traffic from the home address: a UDP echo at the CN and a prober at the MN -----------------

ECHO_PORT = 7
_PROBE = struct.Struct("!Qd")


class UdpEcho:
    """A UDP echo service in a node: answers every datagram to its sender and keeps
    the senders' addresses (what the CN saw)."""

    def __init__(self, node: Node, address: IPv6Address, port: int = ECHO_PORT) -> None:
        with node.entered():
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind((str(address), port))
        self.sock.settimeout(0.05)
        self.address, self.port = address, port
        self.peers: list[IPv6Address] = []
        self._running = True
        self._thread = threading.Thread(target=self._serve, name=f"echo {node.name}", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._running:
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.peers.append(IPv6Address(peer[0].split("%")[0]))
            self.sock.sendto(data, peer)

    def close(self) -> None:
        self._running = False
        self._thread.join(2)
        self.sock.close()


@dataclass(frozen=True)
class Outage:
    """The longest time without answers: between the answers (receive times) before
    and after it, and how many probes in between got none."""

    gap: float
    lost: int
    last_before: float
    first_after: float


class Prober:
    """Sends a numbered UDP datagram from ``source`` to an echo service every
    ``interval`` seconds (a socket in ``node``), and records which come back when."""

    def __init__(self, node: Node, source: IPv6Address, echo: UdpEcho, interval: float = 0.01) -> None:
        with node.entered():
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        self.sock.bind((str(source), 0))
        self.sock.settimeout(0.05)
        self.target = (str(echo.address), echo.port)
        self.interval = interval
        self.sent: dict[int, float] = {}
        self.answered: dict[int, float] = {}
        self._running = True
        self._sender = threading.Thread(target=self._send, name="prober send", daemon=True)
        self._receiver = threading.Thread(target=self._receive, name="prober receive", daemon=True)
        self._receiver.start()
        self._sender.start()

    def _send(self) -> None:
        seq = 0
        next_at = time.monotonic()
        while self._running:
            now = time.monotonic()
            self.sent[seq] = now
            with contextlib.suppress(OSError):  # no route for a moment during the move
                self.sock.sendto(_PROBE.pack(seq, now), self.target)
            seq += 1
            next_at += self.interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def _receive(self) -> None:
        while self._running:
            try:
                data = self.sock.recv(64)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) == _PROBE.size:
                self.answered.setdefault(_PROBE.unpack(data)[0], time.monotonic())

    def answers_after(self, moment: float) -> int:
        """How many answers arrived after ``moment`` (``time.monotonic()``)."""
        return sum(1 for t in list(self.answered.values()) if t > moment)

    def wait_for_answers(self, count: int, after: float, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.answers_after(after) >= count:
                return True
            time.sleep(self.interval)
        return False

    def outage(self, after: float = 0.0) -> Outage:
        """The longest silence between two answers that ends after ``after`` (monotonic),
        so that a pause of the host before the handover is not taken for it (``gap`` 0
        without answers)."""
        answers = sorted(self.answered.items(), key=lambda item: item[1])
        best = Outage(0.0, 0, 0.0, 0.0)
        for (seq_a, t_a), (seq_b, t_b) in itertools.pairwise(answers):
            if t_b > after and t_b - t_a > best.gap:
                lost = sum(1 for s in range(seq_a + 1, seq_b) if s not in self.answered)
                best = Outage(t_b - t_a, lost, t_a, t_b)
        return best

    def stop(self) -> None:
        self._running = False
        self._sender.join(2)
        self._receiver.join(2)
        self.sock.close()


__all__ = [
    "AR1_ADDRESS", "AR2_ADDRESS", "BA_SELECTOR", "BU_SELECTOR", "CN_ADDRESS", "CN_PREFIX", "COA1", "COA2",
    "FROM_MN", "HOME_ADDRESS", "HOME_AGENT", "HOME_PREFIX", "TO_MN", "VISITED1", "VISITED2", "Capture", "Node",
    "NodeFailure", "Outage", "Packet", "Prober", "Topology", "TopologyError", "UdpEcho", "addresses", "build",
    "ipsec_policies", "ipsec_sas", "migrations", "parse_ipv6", "reachable", "remove", "topology",
]  # fmt: skip
