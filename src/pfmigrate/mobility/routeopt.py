"""Mobile IPv6's extension headers as Linux XFRM route-optimisation ("ro") states and policies.

Linux adds the Home Address destination option (RFC 6275 §6.3) and the type 2 routing
header (§6.4) to packets through XFRM: a state of protocol ``IPPROTO_DSTOPTS`` (60) or
``IPPROTO_ROUTING`` (43) in mode ``XFRM_MODE_ROUTEOPTIMIZATION``, SPI 0, carrying the
care-of address (``XFRMA_COADDR``), and a policy whose template names that protocol
and mode. On output a DSTOPTS state moves the packet's source (the home address) into
a Home Address option and puts the care-of address in its place; a ROUTING state moves
the destination into a type 2 routing header and sends the packet to the care-of
address. On input Linux looks for a state before it accepts either header (exact
addresses first, then ``WILDRECV`` states with wildcard addresses), and the inbound
policy must list the ro template, or the packet is refused.

This module installs them the way UMIP's ``mip6d`` does for home registration:

* node-wide receive states: on the mobile node a wildcard ROUTING state (any to any,
  ``WILDRECV``, care-of address ``::``) so that a Binding Acknowledgement with a type 2
  routing header is accepted; on the home agent a wildcard DSTOPTS state, and an
  inbound policy for every Binding Update, so that a Binding Update with a Home
  Address option from a not yet known care-of address is accepted;
* per binding: on the mobile node the DSTOPTS state (home address to home agent, the
  care-of address) and the outbound policy for Binding Updates; on the home agent the
  ROUTING state (home agent to home address, the care-of address) and the outbound
  policy for Binding Acknowledgements. The policies select the Mobility Header and the
  message type (which XFRM compares as the source port);
* as UMIP does, these are *sub* policies (``XFRM_POLICY_TYPE_SUB``, which needs
  ``CONFIG_XFRM_SUB_POLICY``): Linux looks up the sub policy first and then the main
  one, and applies the templates of both, sorted (IPsec transport, then ro, then
  tunnel), so that the ESP transport policies that protect the same messages (main
  policies, pfmigrate's key engine's) stay separate and the wire order of RFC 3776
  comes out: IPv6, Home Address option or routing header, ESP, Mobility Header.

When the care-of address changes, Linux's MIGRATE cannot move these states: it
rewrites the addresses of tunnel templates and states, and the ro states keep their
home address and home agent; only the care-of address changes, which MIGRATE does not
carry (it copies a state's ``coaddr`` unchanged when it moves the state, and matches
no ro template). So, like UMIP, ``RouteOptimization.update`` replaces the care-of
address with ``XFRM_MSG_UPDSA`` (same state, new ``XFRMA_COADDR``) and then rewrites
the policies that use it (``XFRM_MSG_UPDPOLICY``), which makes Linux drop bundles
built for the old address.

Why not the key-engine interface: ``pfmigrate.model`` has no route-optimisation mode,
no care-of address, no sub policies, and its SAs and templates are ESP, AH or IPComp
only. So this module builds the messages with pfmigrate's XFRM codec and runs them on
the socket of a linux-xfrm ``KeyEngine`` (``KeyEngine.run`` takes any ``Exchange``):
one netlink socket per namespace serves the IPsec side and this one. The message
builders are pure; only ``RouteOptimization`` does I/O.
"""

from __future__ import annotations

import enum
import errno as _errno
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv6Address, IPv6Network
from typing import TypeVar

from pfmigrate.backends.xfrm_ops import selector_from, selector_to
from pfmigrate.engine import Exchange, KeyEngine, KeyEngineError, Unsupported
from pfmigrate.model import MH, Dir, Selector
from pfmigrate.xfrm import (
    DUMP,
    CoAddr,
    DecodeError,
    LifetimeCfg,
    LifetimeCur,
    Mode,
    MsgType,
    NetlinkDone,
    NetlinkError,
    NlFlags,
    PolicyAction,
    PolicyDir,
    PolicyType,
    PolicyTypeAttr,
    SrcAddr,
    Templates,
    UserpolicyId,
    UserpolicyInfo,
    UsersaId,
    UsersaInfo,
    UserTmpl,
    XfrmId,
    XfrmMessage,
    decode,
)
from pfmigrate.xfrm.constants import AF_INET6, StateFlags

T = TypeVar("T")

IPPROTO_ROUTING = 43
IPPROTO_DSTOPTS = 60
ANY = IPv6Address(0)
EVERYWHERE = Selector.any(6)
MH_BINDING_UPDATE = 5
MH_BINDING_ACK = 6
#: UMIP's policy priorities (lower wins): home registration signalling, and the
#: catch-all for Binding Updates from anyone.
PRIORITY_HOME_SIGNALLING = 2
PRIORITY_ANY_SIGNALLING = 9

ACK = NlFlags.REQUEST | NlFlags.ACK
_DIRECTION = {Dir.IN: PolicyDir.IN, Dir.OUT: PolicyDir.OUT, Dir.FWD: PolicyDir.FWD}
_DIRECTION_BACK = {v: k for k, v in _DIRECTION.items()}


class Header(enum.IntEnum):
    """What an ro state adds, by the XFRM protocol number that stands for it."""

    HOME_ADDRESS_OPTION = IPPROTO_DSTOPTS  # ip xfrm: "proto hao" (or "dstopts")
    ROUTING_TYPE_2 = IPPROTO_ROUTING  # ip xfrm: "proto route2"


def _host_or_any(address: IPv6Address) -> IPv6Network:
    return IPv6Network(f"{address}/{0 if address == ANY else 128}")


def mh_selector(src: IPv6Address | Selector, dst: IPv6Address | None = None, mh_type: int = 0) -> Selector:
    """Mobility Header traffic from ``src`` to ``dst`` (``::`` for any) of one MH type
    (0: every type; XFRM compares the type as the source port)."""
    if isinstance(src, Selector):
        return Selector(src.src, src.dst, MH, mh_type)
    return Selector(_host_or_any(src), _host_or_any(dst if dst is not None else ANY), MH, mh_type)


@dataclass(frozen=True, slots=True)
class RoState:
    """One ro state: ``header`` added to packets from ``src`` to ``dst`` (the home
    address and its peer, as the upper layer sees them), with care-of address ``coa``.
    ``::`` everywhere plus ``wildrecv`` is a receive-only state for any peer."""

    header: Header
    src: IPv6Address = ANY
    dst: IPv6Address = ANY
    coa: IPv6Address = ANY
    wildrecv: bool = False

    def __post_init__(self) -> None:
        for name in ("src", "dst", "coa"):
            value = getattr(self, name)
            if not isinstance(value, IPv6Address):
                object.__setattr__(self, name, IPv6Address(value))
        object.__setattr__(self, "header", Header(self.header))

    @property
    def selector(self) -> Selector:
        """The traffic the state applies to, as UMIP sets it: the two addresses, any protocol."""
        return Selector(_host_or_any(self.src), _host_or_any(self.dst))

    @property
    def wildcard(self) -> bool:
        """A receive state for any care-of address (its ``coa`` never changes)."""
        return self.coa == ANY

    def __str__(self) -> str:
        what = "HAO" if self.header == Header.HOME_ADDRESS_OPTION else "RH2"
        return f"{what} {self.src} -> {self.dst} coa {self.coa}" + (" wildrecv" if self.wildrecv else "")


@dataclass(frozen=True, slots=True)
class RoPolicy:
    """A policy with one optional ro template. The template's addresses stay ``::``
    (any) unless given; ``sub`` puts it in the sub policy table, as UMIP does."""

    selector: Selector
    dir: Dir
    header: Header
    priority: int = PRIORITY_HOME_SIGNALLING
    template_src: IPv6Address = ANY
    template_dst: IPv6Address = ANY
    sub: bool = True

    def __post_init__(self) -> None:
        if self.selector.version != 6:
            raise ValueError("Mobile IPv6 ro policies select IPv6 traffic")
        for name in ("template_src", "template_dst"):
            value = getattr(self, name)
            if not isinstance(value, IPv6Address):
                object.__setattr__(self, name, IPv6Address(value))
        object.__setattr__(self, "header", Header(self.header))
        if not 0 <= self.priority < 1 << 32:
            raise ValueError(f"priority {self.priority} is not a u32")

    @property
    def policy_type(self) -> PolicyType:
        return PolicyType.SUB if self.sub else PolicyType.MAIN

    def __str__(self) -> str:
        what = "HAO" if self.header == Header.HOME_ADDRESS_OPTION else "RH2"
        table = "sub" if self.sub else "main"
        return f"{self.dir.value} {self.selector} {what} ({table}, priority {self.priority})"


@dataclass(frozen=True, slots=True)
class RoSet:
    """States and policies installed and removed together (states first, policies last)."""

    states: tuple[RoState, ...] = ()
    policies: tuple[RoPolicy, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "states", tuple(self.states))
        object.__setattr__(self, "policies", tuple(self.policies))

    def moved(self, coa: IPv6Address) -> RoSet:
        """The same set for a new care-of address (wildcard receive states stay)."""
        return RoSet(tuple(s if s.wildcard else replace(s, coa=coa) for s in self.states), self.policies)

    def __add__(self, other: RoSet) -> RoSet:
        return RoSet(self.states + other.states, self.policies + other.policies)


# --- the sets UMIP installs for home registration ------------------------------------------------


def mobile_node_base() -> RoSet:
    """Once per mobile node: accept a type 2 routing header to any home address."""
    return RoSet((RoState(Header.ROUTING_TYPE_2, wildrecv=True),))


def mobile_node_binding(hoa: IPv6Address, ha: IPv6Address, coa: IPv6Address) -> RoSet:
    """Per home registration on the mobile node: Binding Updates to the home agent
    carry a Home Address option (sent from ``coa``); Binding Acknowledgements from it
    are accepted with a type 2 routing header."""
    return RoSet(
        (RoState(Header.HOME_ADDRESS_OPTION, hoa, ha, coa),),
        (
            RoPolicy(mh_selector(hoa, ha, MH_BINDING_UPDATE), Dir.OUT, Header.HOME_ADDRESS_OPTION,
                     template_src=hoa, template_dst=ha),
            RoPolicy(mh_selector(ha, hoa, MH_BINDING_ACK), Dir.IN, Header.ROUTING_TYPE_2),
        ),
    )  # fmt: skip


def home_agent_base() -> RoSet:
    """Once per home agent: accept Binding Updates with a Home Address option from any
    care-of address (UMIP's correspondent-node set, which the home agent runs too)."""
    return RoSet(
        (RoState(Header.HOME_ADDRESS_OPTION, wildrecv=True),),
        (RoPolicy(mh_selector(EVERYWHERE, mh_type=MH_BINDING_UPDATE), Dir.IN, Header.HOME_ADDRESS_OPTION,
                  PRIORITY_ANY_SIGNALLING),),
    )  # fmt: skip


def home_agent_binding(ha: IPv6Address, hoa: IPv6Address, coa: IPv6Address) -> RoSet:
    """Per binding on the home agent: Binding Acknowledgements to the home address go
    to ``coa`` with a type 2 routing header."""
    return RoSet(
        (RoState(Header.ROUTING_TYPE_2, ha, hoa, coa),),
        (RoPolicy(mh_selector(ha, hoa, MH_BINDING_ACK), Dir.OUT, Header.ROUTING_TYPE_2),),
    )


# --- messages (pure) --------------------------------------------------------------------------------


def state_info(state: RoState) -> UsersaInfo:
    """The ``xfrm_usersa_info`` of an ro state (SPI 0, lifetimes without limits)."""
    return UsersaInfo(
        selector_to(state.selector),
        XfrmId(state.dst, 0, state.header),
        state.src,
        LifetimeCfg(),
        LifetimeCur(),
        family=AF_INET6,
        mode=Mode.ROUTEOPTIMIZATION,
        flags=StateFlags.WILDRECV if state.wildrecv else 0,
    )


def new_state(state: RoState, seq: int = 0, *, update: bool = False) -> XfrmMessage:
    """``XFRM_MSG_NEWSA`` (``UPDSA`` with ``update``) with the care-of address."""
    kind = MsgType.UPDSA if update else MsgType.NEWSA
    return XfrmMessage(kind, ACK, seq, 0, state_info(state), (CoAddr(state.coa.packed),))


def delete_state(state: RoState, seq: int = 0) -> XfrmMessage:
    """``XFRM_MSG_DELSA``: an ro state has SPI 0, so its source address names it too."""
    return XfrmMessage(
        MsgType.DELSA, ACK, seq, 0, UsersaId(state.dst, 0, AF_INET6, state.header), (SrcAddr(state.src.packed),)
    )


def template(policy: RoPolicy) -> UserTmpl:
    return UserTmpl(
        XfrmId(policy.template_dst, 0, policy.header), AF_INET6, policy.template_src, 0, Mode.ROUTEOPTIMIZATION,
        optional=1,
    )  # fmt: skip


def new_policy(policy: RoPolicy, seq: int = 0, *, update: bool = False) -> XfrmMessage:
    """``XFRM_MSG_NEWPOLICY`` (``UPDPOLICY`` with ``update``) with its table and template."""
    info = UserpolicyInfo(
        selector_to(policy.selector), LifetimeCfg(), LifetimeCur(), policy.priority, 0, _DIRECTION[policy.dir],
        PolicyAction.ALLOW,
    )  # fmt: skip
    attrs = (PolicyTypeAttr(policy.policy_type), Templates((template(policy),)))
    return XfrmMessage(MsgType.UPDPOLICY if update else MsgType.NEWPOLICY, ACK, seq, 0, info, attrs)


def delete_policy(policy: RoPolicy, seq: int = 0) -> XfrmMessage:
    policy_id = UserpolicyId(selector_to(policy.selector), 0, _DIRECTION[policy.dir])
    return XfrmMessage(MsgType.DELPOLICY, ACK, seq, 0, policy_id, (PolicyTypeAttr(policy.policy_type),))


def install_messages(ro: RoSet, *, update: bool = False) -> list[XfrmMessage]:
    """States, then the policies that use them (sequence numbers left 0)."""
    return [new_state(s, update=update) for s in ro.states] + [new_policy(p, update=update) for p in ro.policies]


def remove_messages(ro: RoSet) -> list[XfrmMessage]:
    """Policies, then their states."""
    return [delete_policy(p) for p in ro.policies] + [delete_state(s) for s in ro.states]


def state_from(msg: XfrmMessage) -> RoState | None:
    """The ro state a ``NEWSA`` (or dump entry) describes, ``None`` for any other SA."""
    info = msg.fixed
    if not isinstance(info, UsersaInfo) or info.mode != Mode.ROUTEOPTIMIZATION:
        return None
    if info.id.proto not in (IPPROTO_DSTOPTS, IPPROTO_ROUTING) or info.family != AF_INET6:
        return None
    coa_attr = msg.get(CoAddr)
    coa = IPv6Address(coa_attr.address) if coa_attr is not None else ANY
    src, dst = info.saddr, info.id.daddr
    if not isinstance(src, IPv6Address) or not isinstance(dst, IPv6Address):
        return None
    return RoState(Header(info.id.proto), src, dst, coa, bool(info.flags & StateFlags.WILDRECV))


def policy_from(msg: XfrmMessage) -> RoPolicy | None:
    """The ro policy a ``NEWPOLICY`` (or dump entry) describes: one whose only template
    is an ro one; ``None`` for any other policy."""
    info = msg.fixed
    if not isinstance(info, UserpolicyInfo) or info.sel.family != AF_INET6:
        return None
    templates = [t for attr in msg.all(Templates) for t in attr.templates]
    if len(templates) != 1 or templates[0].mode != Mode.ROUTEOPTIMIZATION:
        return None
    t = templates[0]
    if t.id.proto not in (IPPROTO_DSTOPTS, IPPROTO_ROUTING) or info.dir not in _DIRECTION_BACK:
        return None
    kind = msg.get(PolicyTypeAttr)
    sub = kind is not None and kind.type == PolicyType.SUB
    src, dst = t.saddr, t.id.daddr
    if not isinstance(src, IPv6Address) or not isinstance(dst, IPv6Address):
        return None
    return RoPolicy(
        selector_from(info.sel), _DIRECTION_BACK[info.dir], Header(t.id.proto), info.priority, src, dst, sub
    )


# --- running them -----------------------------------------------------------------------------------


_SEQ = struct.Struct("=I")  # nlmsghdr's nlmsg_seq, at 8


class _Request(Exchange[list[XfrmMessage]]):
    """One request: done at its ACK or error, or at the end of a dump."""

    def __init__(self, operation: str, msg: XfrmMessage) -> None:
        super().__init__(operation, msg.encode())
        self.seq = msg.seq
        self.dump = bool(msg.flags & DUMP)
        self.parts: list[XfrmMessage] = []
        self.error: NetlinkError | None = None
        self.failure: KeyEngineError | None = None  # an answer that cannot be read, a dump cut short
        self.done = False

    def feed(self, raw: bytes) -> bool:
        try:
            messages = decode(raw)
        except DecodeError as exc:
            if len(raw) < 16 or _SEQ.unpack_from(raw, 8)[0] != self.seq:
                return False  # not ours
            self.failure = KeyEngineError(_errno.EBADMSG, self.operation, f"Linux's answer does not decode: {exc}")
            self.done = True
            return True
        for msg in messages:
            if msg.seq != self.seq:
                continue
            if isinstance(msg, NetlinkError):
                self.error = msg if msg.error else None
                self.done = True
            elif isinstance(msg, NetlinkDone):
                if msg.error:
                    self.failure = KeyEngineError(-msg.error, self.operation, "the dump ended with an error")
                self.done = True
            elif isinstance(msg, XfrmMessage):
                self.parts.append(msg)
                self.done = self.done or not self.dump
        return self.done

    def result(self) -> list[XfrmMessage]:
        if self.failure is not None:
            raise self.failure
        if self.error is not None:
            detail = self.error.message if any(k == 1 for k, _ in self.error.extack) else "answered by Linux xfrm_user"
            raise KeyEngineError(self.error.errno, self.operation, detail)
        return self.parts


class RouteOptimization:
    """Installs, updates and removes ro sets on a linux-xfrm ``KeyEngine``'s socket
    (so in the network namespace that engine was opened in)."""

    def __init__(self, engine: KeyEngine) -> None:
        if engine.name != "linux-xfrm":
            raise Unsupported("route optimisation", f"needs the linux-xfrm backend, not {engine.name}")
        self.engine = engine
        self._seq = 0x40000000  # apart from the engine's own sequence numbers

    def _run(self, operation: str, msg: XfrmMessage) -> list[XfrmMessage]:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        numbered = XfrmMessage(msg.type, msg.flags, self._seq, 0, msg.fixed, msg.attrs)
        return self.engine.run(_Request(operation, numbered))

    def install(self, ro: RoSet) -> None:
        """Add every state, then every policy; ``KeyEngineError`` (EEXIST…) on the first refusal."""
        for state in ro.states:
            self._run(f"add ro state {state}", new_state(state))
        for policy in ro.policies:
            self._run(f"add ro policy {policy}", new_policy(policy))

    def update(self, ro: RoSet) -> None:
        """Replace the states' care-of addresses (``UPDSA``, the same state keeps
        working), then rewrite the policies (``UPDPOLICY``), as UMIP does: ``UPDSA``
        alone leaves cached bundles whose route was looked up toward the old care-of
        address (harmless where both are reached through the same next hop, as at the
        kernel tier's home agent; not in general)."""
        for state in ro.states:
            self._run(f"update ro state {state}", new_state(state, update=True))
        for policy in ro.policies:
            self._run(f"update ro policy {policy}", new_policy(policy, update=True))

    def move(self, ro: RoSet, coa: IPv6Address) -> RoSet:
        """``update(ro.moved(coa))``; returns the moved set."""
        moved = ro.moved(coa)
        self.update(RoSet(tuple(s for s in moved.states if not s.wildcard), moved.policies))
        return moved

    def remove(self, ro: RoSet, *, missing_ok: bool = False) -> None:
        """Delete the policies, then the states (what is missing is ignored with ``missing_ok``)."""
        for msg, what in [(delete_policy(p), f"ro policy {p}") for p in ro.policies] + [
            (delete_state(s), f"ro state {s}") for s in ro.states
        ]:
            try:
                self._run(f"delete {what}", msg)
            except KeyEngineError as exc:
                if not (missing_ok and exc.errno in (_errno.ENOENT, _errno.ESRCH)):  # (no policy; no state)
                    raise

    def _dump(self, kind: MsgType, convert: Callable[[XfrmMessage], T | None]) -> list[T]:
        found = (convert(m) for m in self._run("dump", XfrmMessage(kind, NlFlags.REQUEST | DUMP, 0, 0)))
        return [item for item in found if item is not None]

    def states(self) -> list[RoState]:
        """Every ro state Linux has here (other SAs are left out)."""
        return self._dump(MsgType.GETSA, state_from)

    def policies(self) -> list[RoPolicy]:
        """Every policy of main or sub type whose one template is an ro template."""
        return self._dump(MsgType.GETPOLICY, policy_from)
