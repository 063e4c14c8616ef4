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

A change whose outcome is unknown (no answer came: ETIMEDOUT, a dropped broadcast, a
connection that broke) is not a failure, and a refusal may come from tables that are
not what the agent believes ("no such policy", "no matching SA", "exists": someone
else's doing, or a half-applied batch). Either way the agent asks the shell to read
the tables back and apply only what its goal still lacks (``Configure.read_back``,
``converge``); a read-back whose answers are lost again is retried with back-off
(``READ_BACKS`` times for a move, then it has failed; a return home keeps trying, as
nothing else would put it right). Only a refusal that stands after reading back is a
failure: then the mobile node gives up the attempt (and retries it later on its own),
and the home agent answers 130.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, IPv6Network
from typing import Any

from pfmigrate import mip6
from pfmigrate._wire import DecodeError
from pfmigrate.mobility import policies
from pfmigrate.mobility.binding import (
    UNKNOWN_PLACE,
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
from pfmigrate.mobility.config import IPsec as IPsecConfig
from pfmigrate.mobility.policies import Change, Goal

# The tables are not what the agent believes: no such policy, no matching SA, or one
# already there (a change that failed half-way left it).
DIVERGENCE = frozenset({errno.ENOENT, errno.ENODATA, errno.EEXIST})
# No answer, so no outcome: the request may or may not have been carried out.
UNKNOWN = frozenset({
    errno.ETIMEDOUT, errno.EIO, errno.EPIPE, errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN,
    errno.ESHUTDOWN, errno.ENOBUFS, errno.EAGAIN, errno.EINTR, errno.EBUSY,
})  # fmt: skip
READ_BACKS = 6  # read-backs of a move before it has failed
FIRST_WAIT, LAST_WAIT = 0.1, 32.0  # seconds before a read-back that follows a lost one, doubling


@dataclass(frozen=True, slots=True)
class Configure:
    """Apply ``changes`` to the key engine: the way from where the agent believes the
    tables are to ``goal``. With ``read_back`` (``changes`` is then empty): read the
    tables and apply only what ``goal`` still lacks. ``why``: "move" or "home"."""

    hoa: IPv6Address
    changes: tuple[Change, ...]
    why: str
    goal: Goal | None = None
    read_back: bool = False


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


class Verdict(enum.Enum):
    DONE = "done"  # the goal holds
    WAIT = "wait"  # a read-back is under way or due
    FAILED = "failed"  # refused, after reading back (or too many read-backs lost)


@dataclass(slots=True)
class _Settling:
    """A change of one home address whose outcome is being settled by reading back.
    ``goal.announcements`` are those not yet known to have gone (no dump can tell)."""

    why: str
    goal: Goal
    tries: int = 1  # read-backs asked for
    due: float | None = None  # when the next one goes (``None``: one is under way)

    def read_back(self, hoa: IPv6Address) -> Configure:
        return Configure(hoa, (), self.why, self.goal, read_back=True)

    def went(self, announced: int | None) -> None:
        """The last change or read-back sent the first ``announced`` of the goal's
        announcements (``None``: not known): those need not go again."""
        if announced:
            self.goal = replace(self.goal, announcements=self.goal.announcements[announced:])


class Settler:
    """What both agents do with the outcome of a ``Configure``, per home address: done,
    or read back (at once after the change itself, with back-off after a read-back
    whose answers were lost too), or failed."""

    def __init__(self) -> None:
        self.pending: dict[IPv6Address, _Settling] = {}

    def started(self, hoa: IPv6Address) -> bool:
        """A new change for ``hoa``: whatever was being settled is superseded by it.
        Whether something was (then the tables are not where any plan starts from)."""
        return self.pending.pop(hoa, None) is not None

    def timer(self) -> float | None:
        return min((s.due for s in self.pending.values() if s.due is not None), default=None)

    def due(self, now: float) -> list[Step]:
        """The read-backs whose time has come."""
        steps: list[Step] = []
        for hoa, settling in self.pending.items():
            if settling.due is not None and settling.due <= now:
                settling.due = None
                settling.tries += 1
                steps.append(settling.read_back(hoa))
        return steps

    def outcome(
        self,
        hoa: IPv6Address,
        error: int,
        reason: str,
        now: float,
        why: str,
        goal: Callable[[], Goal],
        announced: int | None = None,
    ) -> tuple[Verdict, list[Step]]:
        """What follows a ``Configure`` for ``hoa`` that ended with ``error`` (0: none),
        having sent ``announced`` of its announcements (``None``: not known); ``goal``
        gives the node's entries where it is going, should they need reading back."""
        settling = self.pending.get(hoa)
        if not error:
            self.pending.pop(hoa, None)
            return Verdict.DONE, [_note("converged", hoa=hoa, reads=settling.tries)] if settling else []
        said = {"hoa": hoa, "errno": error, "reason": reason}
        if settling is None:  # the change itself: look at once, whatever went wrong
            settling = self.pending[hoa] = _Settling(why, goal())
            settling.went(announced)
            kind = "outcome-unknown" if error in UNKNOWN else "divergence" if error in DIVERGENCE else "refused"
            return Verdict.WAIT, [_note(kind, **said), settling.read_back(hoa)]
        settling.went(announced)
        if error not in UNKNOWN | DIVERGENCE or (settling.tries >= READ_BACKS and why != "home"):
            del self.pending[hoa]  # a refusal that stands after reading back, or no answers at all
            return Verdict.FAILED, [_note("read-back-failed", reads=settling.tries, **said)]
        wait = min(FIRST_WAIT * 2 ** min(settling.tries - 1, 16), LAST_WAIT)  # (a return home tries on)
        settling.due = now + wait
        return Verdict.WAIT, [_note("read-back-again", reads=settling.tries, wait=wait, **said)]


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
        self.settler = Settler()

    def timer(self) -> float | None:
        return _earliest(self.registration.timer(), self.settler.timer())

    def moved(self, coa: IPv6Address, now: float) -> list[Step]:
        return [_note("moved", coa=coa), *self._run(Moved(coa), now)]

    def returned_home(self, now: float) -> list[Step]:
        return [_note("home"), *self._run(ReturnedHome(), now)]

    def tick(self, now: float) -> list[Step]:
        return [*self.settler.due(now), *self._run(TimerFired(), now)]

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

    def configured(self, error: int, reason: str, now: float, *, why: str, announced: int | None = None) -> list[Step]:
        """The shell carried out the last ``Configure`` (``why``: its own): ``error`` 0,
        or the errno it failed with, having sent ``announced`` of its announcements
        (``None``: not known)."""

        def goal() -> Goal:
            return policies.mn_goal(self.config, self.target)

        verdict, steps = self.settler.outcome(self.hoa, error, reason, now, why, goal, announced)
        if why == "home":  # nothing waits for a restore: its end is not a migrate's
            return [*steps, *_restored(self.hoa, verdict)]
        if verdict is Verdict.DONE:
            return [*steps, _note("migrate-done", to=self.target or "home"), *self._run(MigrateDone(self.hoa), now)]
        if verdict is Verdict.FAILED:
            return [*steps, _note("migrate-failed", errno=error, reason=reason),
                    *self._run(MigrateFailed(self.hoa, reason), now)]  # fmt: skip
        return steps

    def _run(self, event: MnEvent, now: float) -> list[Step]:
        steps: list[Step] = []
        for action in self.registration.handle(event, now):
            steps += self._act(action)
        return steps

    def _configure(self, old: IPv6Address, why: str) -> Configure:
        """The change from ``old`` to ``self.target``; from a place not known (a move
        that failed, or one still being settled, which this change supersedes), a read-back."""
        if self.settler.started(self.hoa) or old == UNKNOWN_PLACE:
            return Configure(self.hoa, (), why, policies.mn_goal(self.config, self.target), read_back=True)
        by_reqid = _by_reqid(self.by_reqid, self.config.ipsec)
        return Configure(self.hoa, tuple(policies.mn_move(self.config, old, self.target, by_reqid=by_reqid)), why)

    def _act(self, action: object) -> list[Step]:
        match action:
            case MigrateIPsec(_, old, new, move_ike):
                self.target = None if new == self.hoa else new
                step = self._configure(old, "move")
                return [_note("migrate", old=old, new=new, ike=move_ike, changes=len(step.changes)), step]
            case RestoreHome(_, from_coa, _, why):
                self.target = None
                return [_note("restore-home", why=why), self._configure(from_coa, "home")]
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


def _by_reqid(by_reqid: bool, ipsec: IPsecConfig) -> bool:
    """Whether moves can name bundles by reqid: the engine takes it, and no reqid names
    both directions' SAs."""
    return by_reqid and not ipsec.shared_reqids


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


def _restored(hoa: IPv6Address, verdict: Verdict) -> list[Step]:
    """What follows a restore of the SAs to the home address: only a note (the settler
    keeps reading back until it holds)."""
    if verdict is Verdict.DONE:
        return [_note("restore-home-done", hoa=hoa)]
    return [_note("restore-home-failed", hoa=hoa)] if verdict is Verdict.FAILED else []


def _earliest(*times: float | None) -> float | None:
    return min((t for t in times if t is not None), default=None)


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
        self.settler = Settler()

    def timer(self) -> float | None:
        return _earliest(self.cache.timer(), self.settler.timer())

    def tick(self, now: float) -> list[Step]:
        return [*self.settler.due(now), *self._run(TimerFired(), now)]

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

    def configured(
        self, hoa: IPv6Address, error: int, reason: str, now: float, *, why: str, announced: int | None = None
    ) -> list[Step]:
        """The shell carried out a ``Configure`` for ``hoa`` (``why``: its own): ``error``
        0, or the errno it failed with, having sent ``announced`` of its announcements
        (``None``: not known). A Binding Acknowledgement waits for the outcome."""
        target = self.targets.get(hoa)

        def goal() -> Goal:
            return policies.ha_goal(self.config, self.served[hoa], target)

        verdict, steps = self.settler.outcome(hoa, error, reason, now, why, goal, announced)
        if why == "home":  # nothing waits for a restore (a binding expired): its end is not a migrate's
            return [*steps, *_restored(hoa, verdict)]
        if verdict is Verdict.DONE:
            return [*steps, _note("migrate-done", hoa=hoa, to=target or "home"), *self._run(MigrateDone(hoa), now)]
        if verdict is Verdict.FAILED:
            return [*steps, _note("migrate-failed", hoa=hoa, errno=error, reason=reason),
                    *self._run(MigrateFailed(hoa, reason), now)]  # fmt: skip
        return steps

    def _configure(self, hoa: IPv6Address, old: IPv6Address, why: str) -> Configure:
        """The change of ``hoa``'s entries from ``old`` to its target; from a place not
        known (a move that failed, or one still being settled, which this change
        supersedes), a read-back."""
        node, target = self.served[hoa], self.targets.get(hoa)
        if self.settler.started(hoa) or old == UNKNOWN_PLACE:
            return Configure(hoa, (), why, policies.ha_goal(self.config, node, target), read_back=True)
        by_reqid = _by_reqid(self.by_reqid, node.ipsec)
        return Configure(hoa, tuple(policies.ha_move(self.config, node, old, target, by_reqid=by_reqid)), why)

    def _run(self, event: HaEvent, now: float) -> list[Step]:
        steps: list[Step] = []
        for action in self.cache.handle(event, now):
            steps += self._act(action)
        return steps

    def _act(self, action: object) -> list[Step]:
        match action:
            case MigrateIPsec(hoa, old, new, move_ike):
                self.targets[hoa] = None if new == hoa else new
                step = self._configure(hoa, old, "move")
                return [_note("migrate", hoa=hoa, old=old, new=new, ike=move_ike, changes=len(step.changes)), step]
            case RestoreHome(hoa, from_coa, _, why):
                self.targets[hoa] = None
                return [_note("restore-home", hoa=hoa, why=why), self._configure(hoa, from_coa, "home")]
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
