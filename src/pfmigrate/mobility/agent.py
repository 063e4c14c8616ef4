"""The mobile node and home agent, sans-IO: movement and Mobility Headers in, key-engine
changes, Mobility Headers to send and notes for the log out.

Each agent joins three pieces: its binding machine (``bul.HomeRegistration`` or
``cache.BindingCache``), the RFC 4877 policy sets (``policies``) and the Mobility Header
codec (``mip6``). The shell around it (``simulation`` in-process, ``daemon`` with real
sockets) carries out the steps in order:

* ``Configure``: apply these changes to the key engine, then call ``configured`` with
  the result. The machines see the move as done only then: the mobile node's IPsec has
  moved **before** its Binding Update goes out, the home agent's **before** its Binding
  Acknowledgement (RFC 4877), and a home agent whose move fails answers 130.
* ``Send``: a Mobility Header for the shell to send (from ``src`` to ``dst``, by way of
  the care-of address ``coa``: the Home Address option or the type 2 routing header).
* ``Note``: an event of the handover for the log and the timeline.

A MIGRATE refused with "no such policy" (ENOENT) or "no matching SA" (ENODATA) means the
engine's tables are not what the agent believes: the agent says so (a ``divergence``
note) and asks for a repair, which installs the whole set for the target care-of
address; it is never taken for success.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from pfmigrate import mip6
from pfmigrate._wire import DecodeError
from pfmigrate.mobility import policies
from pfmigrate.mobility.binding import (
    BindingAck,
    BindingUpdate,
    Ignored,
    MigrateDone,
    MigrateFailed,
    MigrateIPsec,
    RestoreHome,
    TimerFired,
)
from pfmigrate.mobility.bul import (
    BindingAckReceived,
    BindingEstablished,
    BindingLost,
    BindingRejected,
    ErrorReceived,
    GaveUp,
    HomeRegistration,
    MnEvent,
    MobileNodeConfig,
    Moved,
    ReturnedHome,
    SendBindingUpdate,
)
from pfmigrate.mobility.cache import (
    BindingAccepted,
    BindingCache,
    BindingRemoved,
    BindingUpdateReceived,
    HaEvent,
    HomeAgentConfig,
    SendBindingAck,
)
from pfmigrate.mobility.config import HAConfig, MNConfig
from pfmigrate.mobility.policies import Change, Owned, PolicySet

# The tables are not what the agent believes: no such policy, no matching SA, or one
# already there (a change that failed half-way left it).
DIVERGENCE = frozenset({errno.ENOENT, errno.ENODATA, errno.EEXIST})


@dataclass(frozen=True, slots=True)
class Configure:
    """Apply ``changes`` to the key engine (``repair``: make the node's tables equal it)."""

    hoa: IPv6Address
    changes: tuple[Change, ...]
    why: str
    repair: PolicySet | None = None
    owned: Owned | None = None  # with ``repair``: the node's entries, of which only ``repair``'s stay


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes
    src: IPv6Address
    dst: IPv6Address
    coa: IPv6Address


@dataclass(frozen=True, slots=True)
class Note:
    event: str
    fields: dict[str, Any] = field(default_factory=dict)


Step = Configure | Send | Note


def _note(event: str, **fields: Any) -> Note:
    return Note(event, {k: str(v) if isinstance(v, IPv6Address) else v for k, v in fields.items()})


class MobileNodeAgent:
    """One mobile node: its home registration, its IPsec, its Binding Updates."""

    def __init__(self, config: MNConfig, *, by_reqid: bool = False) -> None:
        self.config = config
        self.by_reqid = by_reqid  # name bundles by reqid (pfmigrate's engine) or by old endpoints (Linux)
        self.hoa, self.ha = config.home_address, config.home_agent
        machine = MobileNodeConfig(
            self.hoa,
            config.lifetime,
            config.key_management_mobility,
            mobile_router=bool(config.mobile_network_prefixes),
            retry_forever=config.keep_trying,
        )
        self.registration = HomeRegistration(machine)
        self.target: IPv6Address | None = None  # where the IPsec move under way goes (None: home)

    def timer(self) -> float | None:
        return self.registration.timer()

    def moved(self, coa: IPv6Address, now: float) -> list[Step]:
        return [_note("moved", coa=coa), *self._run(Moved(coa), now)]

    def returned_home(self, now: float) -> list[Step]:
        return [_note("home"), *self._run(ReturnedHome(), now)]

    def tick(self, now: float) -> list[Step]:
        return self._run(TimerFired(), now)

    def received(self, data: bytes, src: IPv6Address, dst: IPv6Address, now: float) -> list[Step]:
        try:
            msg = mip6.decode(data, src, dst)
        except DecodeError as exc:
            return [_note("mh-refused", peer=src, error=str(exc))]
        if isinstance(msg, mip6.BindingError) and src == self.ha:
            return self._binding_error(msg, now)
        if not isinstance(msg, mip6.BindingAck):
            return [_note("mh-ignored", peer=src, type=type(msg).__name__)]
        if src != self.ha:  # only the home agent acknowledges a home registration (RFC 6275 §11.7.3)
            return [_note("mh-ignored", peer=src, type="BindingAck", why="not from the home agent")]
        ack = BindingAck(
            msg.status, msg.sequence, msg.lifetime_seconds, bool(msg.flags & mip6.BAFlags.K),
            bool(msg.flags & mip6.BAFlags.R),
        )  # fmt: skip
        note = _note("ba-received", status=int(msg.status), sequence=msg.sequence, k=ack.key_management)
        return [note, *self._run(BindingAckReceived(ack), now)]

    def _binding_error(self, error: mip6.BindingError, now: float) -> list[Step]:
        """RFC 6275 §11.3.6: status 2, the home agent does not know the Binding Update's MH
        type, so the registration cannot succeed (no more retransmissions). Status 1 is
        about a packet with a Home Address option; the registration's timers cover it."""
        note = _note("be-received", status=int(error.status), home_address=error.home_address)
        if error.status == mip6.BEStatus.UNRECOGNIZED_MH_TYPE:
            return [note, *self._run(ErrorReceived("the home agent does not recognise Binding Updates"), now)]
        return [note]

    def configured(self, error: int, reason: str, now: float, *, why: str) -> list[Step]:
        """The shell carried out the last ``Configure`` (``why``: its own): ``error`` 0,
        or the errno it failed with."""
        if why == "home":  # nothing waits for a restore: its end is not a migrate's
            home = policies.mn_policy_set(self.config, None)
            repair = Configure(self.hoa, (), "repair", repair=home, owned=policies.mn_owned(self.config))
            return _restored(self.hoa, error, reason, self.target, repair)
        if error in DIVERGENCE:
            target = policies.mn_policy_set(self.config, self.target)
            return [
                _note("divergence", errno=error, reason=reason, target=self.target or "home"),
                Configure(self.hoa, (), "repair", repair=target, owned=policies.mn_owned(self.config)),
            ]
        if error:
            return [
                _note("migrate-failed", errno=error, reason=reason),
                *self._run(MigrateFailed(self.hoa, reason), now),
            ]
        return [_note("migrate-done", to=self.target or "home"), *self._run(MigrateDone(self.hoa), now)]

    def _run(self, event: MnEvent, now: float) -> list[Step]:
        steps: list[Step] = []
        for action in self.registration.handle(event, now):
            steps += self._act(action)
        return steps

    def _act(self, action: object) -> list[Step]:
        match action:
            case MigrateIPsec(_, old, new, move_ike):
                self.target = None if new == self.hoa else new
                changes = policies.mn_move(self.config, old, self.target, by_reqid=self.by_reqid)
                return [_note("migrate", old=old, new=new, ike=move_ike, changes=len(changes)),
                        Configure(self.hoa, tuple(changes), "move")]  # fmt: skip
            case RestoreHome(_, from_coa, _, why):
                self.target = None
                changes = policies.mn_move(self.config, from_coa, None, by_reqid=self.by_reqid)
                return [_note("restore-home", why=why), Configure(self.hoa, tuple(changes), "home")]
            case SendBindingUpdate(coa, bu, retransmit):
                data = binding_update(bu, coa, self.hoa, self.ha)
                return [_note("bu-sent", coa=coa, sequence=bu.sequence, lifetime=bu.lifetime, retransmit=retransmit),
                        Send(data, self.hoa, self.ha, coa)]  # fmt: skip
            case BindingEstablished(coa, lifetime, _, k, _):
                return [_note("registered", coa=coa, lifetime=lifetime, k=k)]
            case BindingLost(coa, why):
                return [_note("binding-lost", coa=coa, why=why)]
            case BindingRejected(status, will_retry):
                return [_note("rejected", status=int(status), retry=will_retry)]
            case GaveUp(why):
                return [_note("gave-up", why=why)]
            case Ignored(why):
                return [_note("ignored", why=why)]
        return [_note("action", what=type(action).__name__)]


def binding_update(bu: BindingUpdate, coa: IPv6Address, hoa: IPv6Address, ha: IPv6Address) -> bytes:
    """The Mobility Header of a home registration; the care-of address also travels in an
    Alternate Care-of Address option, which ESP protects (RFC 6275 §11.7.1, RFC 4877)."""
    flags = mip6.BUFlags(0)
    for on, flag in ((bu.ack, mip6.BUFlags.A), (bu.home, mip6.BUFlags.H), (bu.link_local, mip6.BUFlags.L),
                     (bu.key_management, mip6.BUFlags.K), (bu.mobile_router, mip6.BUFlags.R)):  # fmt: skip
        if on:
            flags |= flag
    options = (mip6.AlternateCareOfAddress(coa),) if bu.lifetime else ()
    msg = mip6.BindingUpdate(bu.sequence, flags, bu.lifetime // 4, options)
    return mip6.encode(msg, hoa, ha)


def _restored(hoa: IPv6Address, error: int, reason: str, target: IPv6Address | None, repair: Configure) -> list[Step]:
    """What follows a restore of the SAs to the home address: a note; if the tables were
    not as expected and nothing has moved them on since (``target`` None), a repair."""
    if not error:
        return [_note("restore-home-done", hoa=hoa)]
    if error in DIVERGENCE and target is None:
        return [_note("divergence", hoa=hoa, errno=error, reason=reason, target="home"), repair]
    return [_note("restore-home-failed", hoa=hoa, errno=error, reason=reason)]


BINDING_ERROR_INTERVAL = 1.0  # seconds: at most one Binding Error a second


class HomeAgentAgent:
    """One home agent: its binding cache, the IPsec of the mobile nodes it serves, its
    Binding Acknowledgements."""

    def __init__(self, config: HAConfig, *, by_reqid: bool = False) -> None:
        self.config = config
        self.by_reqid = by_reqid
        self.served = {node.home_address: node for node in config.mobile_nodes}
        home_prefix = IPv6Network(f"{config.address}/{config.prefix_length}", strict=False)
        machine = HomeAgentConfig(
            (home_prefix,), config.max_lifetime, config.allow_key_management_mobility,
            mobile_routers=frozenset(node.home_address for node in config.mobile_nodes if node.mobile_network_prefixes),
            without_key_management=frozenset(node.home_address for node in config.mobile_nodes
                                             if not config.grants_key_management_mobility(node)),
        )  # fmt: skip
        self.cache = BindingCache(machine)
        self.targets: dict[IPv6Address, IPv6Address | None] = {}  # per home address: where its move goes
        self._last_error = float("-inf")  # when the last Binding Error went out

    def timer(self) -> float | None:
        return self.cache.timer()

    def tick(self, now: float) -> list[Step]:
        return self._run(TimerFired(), now)

    def received(self, data: bytes, src: IPv6Address, dst: IPv6Address, coa: IPv6Address, now: float) -> list[Step]:
        """A Mobility Header from ``src`` (the home address, from the Home Address option)
        that came from ``coa`` (the packet's source)."""
        try:
            msg = mip6.decode(data, src, dst)
        except DecodeError as exc:
            return [_note("mh-refused", peer=src, error=str(exc))]
        if isinstance(msg, mip6.UnknownMessage):
            return self._unrecognised(msg, src, dst, coa, now)
        if not isinstance(msg, mip6.BindingUpdate):
            return [_note("mh-ignored", peer=src, type=type(msg).__name__)]
        alternate = next((o.address for o in msg.options if isinstance(o, mip6.AlternateCareOfAddress)), None)
        care_of = IPv6Address(alternate) if alternate is not None else coa
        note = _note("bu-received", hoa=src, coa=care_of, sequence=msg.sequence, lifetime=msg.lifetime_seconds)
        if msg.lifetime_seconds and (why := self._not_a_care_of_address(care_of)):
            return [note, _note("bu-discarded", hoa=src, coa=care_of, why=why)]
        if src not in self.served:  # not one of ours: say so (RFC 6275 §10.3.1)
            ack = mip6.BindingAck(mip6.BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE, mip6.BAFlags(0), msg.sequence, 0)
            return [note, _note("ba-sent", hoa=src, status=int(ack.status)),
                    Send(mip6.encode(ack, dst, src), dst, src, care_of)]  # fmt: skip
        flags = msg.flags
        bu = BindingUpdate(
            msg.sequence, msg.lifetime_seconds, bool(flags & mip6.BUFlags.A), bool(flags & mip6.BUFlags.H),
            bool(flags & mip6.BUFlags.L), bool(flags & mip6.BUFlags.K), bool(flags & mip6.BUFlags.R),
        )  # fmt: skip
        return [note, *self._run(BindingUpdateReceived(src, care_of, bu), now)]

    def _unrecognised(
        self, msg: mip6.UnknownMessage, src: IPv6Address, dst: IPv6Address, coa: IPv6Address, now: float
    ) -> list[Step]:
        """RFC 6275 §9.2: an MH type this home agent does not know is discarded and answered
        with a Binding Error (status 2), sent straight to the packet's source, at most
        one a second (§9.3.3 bounds their rate)."""
        note = _note("mh-unrecognised", peer=src, type=int(msg.mh_type))
        if now - self._last_error < BINDING_ERROR_INTERVAL:
            return [note]
        self._last_error = now
        home = src if src != coa else IPv6Address(0)  # (the home address of a Home Address option, else ::)
        error = mip6.BindingError(home, mip6.BEStatus.UNRECOGNIZED_MH_TYPE)
        return [
            note,
            _note("be-sent", to=coa, status=int(error.status)),
            Send(mip6.encode(error, dst, coa), dst, coa, coa),
        ]

    def _not_a_care_of_address(self, address: IPv6Address) -> str:
        """Why ``address`` cannot be a care-of address ("" if it can): a tunnel end must
        be a unicast routable address (RFC 6275 §9.5.1), and not ours."""
        if address.is_unspecified or address.is_multicast or address.is_loopback:
            return "not a unicast address"
        if address.is_link_local or address.ipv4_mapped is not None:
            return "not routable beyond a link"
        if address == self.config.address:
            return "the home agent's own address"
        return ""

    def configured(self, hoa: IPv6Address, error: int, reason: str, now: float, *, why: str) -> list[Step]:
        """The shell carried out a ``Configure`` for ``hoa`` (``why``: its own): ``error``
        0, or the errno it failed with."""
        if why == "home":  # nothing waits for a restore (a binding expired): its end is not a migrate's
            node = self.served[hoa]
            home = policies.ha_policy_set(self.config, node, None)
            repair = Configure(hoa, (), "repair", repair=home, owned=policies.ha_owned(self.config, node))
            return _restored(hoa, error, reason, self.targets.get(hoa), repair)
        if error in DIVERGENCE:
            node = self.served[hoa]
            target = policies.ha_policy_set(self.config, node, self.targets.get(hoa))
            return [
                _note("divergence", hoa=hoa, errno=error, reason=reason, target=self.targets.get(hoa) or "home"),
                Configure(hoa, (), "repair", repair=target, owned=policies.ha_owned(self.config, node)),
            ]
        if error:
            return [_note("migrate-failed", hoa=hoa, errno=error, reason=reason),
                    *self._run(MigrateFailed(hoa, reason), now)]  # fmt: skip
        return [_note("migrate-done", hoa=hoa, to=self.targets.get(hoa) or "home"), *self._run(MigrateDone(hoa), now)]

    def _run(self, event: HaEvent, now: float) -> list[Step]:
        steps: list[Step] = []
        for action in self.cache.handle(event, now):
            steps += self._act(action)
        return steps

    def _act(self, action: object) -> list[Step]:
        match action:
            case MigrateIPsec(hoa, old, new, move_ike):
                node = self.served[hoa]
                self.targets[hoa] = None if new == hoa else new
                changes = policies.ha_move(self.config, node, old, self.targets[hoa], by_reqid=self.by_reqid)
                return [_note("migrate", hoa=hoa, old=old, new=new, ike=move_ike, changes=len(changes)),
                        Configure(hoa, tuple(changes), "move")]  # fmt: skip
            case RestoreHome(hoa, from_coa, _, why):
                node = self.served[hoa]
                self.targets[hoa] = None
                changes = policies.ha_move(self.config, node, from_coa, None, by_reqid=self.by_reqid)
                return [_note("restore-home", hoa=hoa, why=why), Configure(hoa, tuple(changes), "home")]
            case SendBindingAck(hoa, coa, ack):
                flags = mip6.BAFlags(0)
                if ack.key_management:
                    flags |= mip6.BAFlags.K
                if ack.mobile_router:
                    flags |= mip6.BAFlags.R
                msg = mip6.BindingAck(ack.status, flags, ack.sequence, ack.lifetime // 4)
                data = mip6.encode(msg, self.config.address, hoa)
                return [_note("ba-sent", hoa=hoa, coa=coa, status=int(ack.status), sequence=ack.sequence),
                        Send(data, self.config.address, hoa, coa)]  # fmt: skip
            case BindingAccepted(hoa, coa, lifetime, _, k, _):
                return [_note("bound", hoa=hoa, coa=coa, lifetime=lifetime, k=k)]
            case BindingRemoved(hoa, coa, why):
                return [_note("unbound", hoa=hoa, coa=coa, why=why)]
            case Ignored(why):
                return [_note("ignored", why=why)]
        return [_note("action", what=type(action).__name__)]
