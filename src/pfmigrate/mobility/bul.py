"""The mobile node's Binding Update List entry for its home registration, sans-IO.

``HomeRegistration.handle(event, now)`` takes one input and the time in seconds and
returns the actions to carry out, in order; ``timer()`` says when to hand it
``TimerFired``. It never sends, sleeps or reads a clock, and it never raises.

States (``MnState``)::

    HOME ──Moved──▶ MIGRATING ──MigrateDone──▶ REGISTERING ──BA accepted──▶ REGISTERED
                        ▲                          │  ▲                      │    ▲
                        └──────── Moved ───────────┘  └── lifetime ran out ──┤    │ BA accepted
                                                                             ▼    │
    HOME ◀──BA── DEREGISTERING ◀──ReturnedHome── (any state away)        REFRESHING
    FAILED: rejected, gave up or could not migrate; a new Moved or ReturnedHome starts over,
    and after a migrate that failed so does the machine's own retry timer.

The rules, with their sources:

* Before any Binding Update for a new care-of address the IPsec SAs move there
  (``MigrateIPsec``), and no Binding Update goes out until ``MigrateDone``: the home agent
  tunnels to the new address as soon as it accepts, and the tunnel-mode SAs (RFC 4877,
  RFC 3776) must be there first. A failed migrate ends the attempt.
* Each Binding Update, retransmissions included, takes the next sequence number
  (§11.7.1), compared modulo 2**16 (§9.5.1). Only one is outstanding; a Binding
  Acknowledgement for an earlier one is ignored (§11.7.3).
* Unanswered, a Binding Update is sent again after 1 s (1.5 s when the home agent holds
  no binding: InitialBindackTimeoutFirstReg), the wait doubling up to 32 s (§11.8).
  After the 32 s wait the attempt is given up (``GaveUp``) unless the configuration says
  to go on at that rate, which §11.8 allows.
* Status 135 carries the last sequence number the home agent accepted; the next Binding
  Update uses the one after it, at once (§11.7.1). Other rejections: see
  ``rfc6275.RETRYABLE``.
* The granted lifetime counts from when the Binding Update was sent and may be shorter
  than asked (§11.7.3). A refresh goes out once ``refresh_fraction`` of it has passed.
* K is asked for when configured and counts as agreed only if the acknowledgement
  echoes it (§6.1.7, §11.7.3): ``BindingEstablished.key_management``. When the home agent
  refused K, later migrates say so (``move_ike`` false) and the shell must rerun IKE.
* A migrate that failed (the key engine refused the move, even after reading its tables
  back) is retried on the machine's own schedule, from 1 s doubling to 32 s, without
  waiting for the next movement: a passing fault must not strand a node away from home
  without a binding. A rejection that says this home agent will not serve the node
  (see ``rfc6275.RETRYABLE``), and no answer when told not to keep trying, wait for a
  movement.
* Returning home, the Binding Update has lifetime 0 and A and H set, is sent from the home
  address (§11.5.4), and the binding is gone when its acknowledgement comes; status 133
  (no binding there) counts as done. Then ``RestoreHome``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address
from typing import Any, Final

from pfmigrate.mobility.binding import (
    UNKNOWN_PLACE,
    BindingAck,
    BindingError,
    BindingUpdate,
    Ignored,
    MigrateDone,
    MigrateFailed,
    MigrateIPsec,
    RestoreHome,
    TimerFired,
    answers_out_of_window,
    check_lifetime,
    check_sequence,
    seq_next,
)
from pfmigrate.mobility.rfc6275 import (
    INITIAL_BINDACK_TIMEOUT,
    INITIAL_BINDACK_TIMEOUT_FIRST_REG,
    LIFETIME_UNIT,
    MAX_BINDACK_TIMEOUT,
    RETRYABLE,
    BAStatus,
    accepted,
)


@dataclass(frozen=True, slots=True)
class MobileNodeConfig:
    """How the mobile node registers ``hoa``. ``lifetime`` is what it asks for, in
    seconds; ``refresh_fraction`` of the granted lifetime passes before it refreshes."""

    hoa: IPv6Address
    lifetime: int = 600
    key_management: bool = True
    link_local_compatible: bool = False
    mobile_router: bool = False
    refresh_fraction: float = 0.8
    retry_forever: bool = False

    def __post_init__(self) -> None:
        check_lifetime("MobileNodeConfig.lifetime", self.lifetime, low=LIFETIME_UNIT)
        if not 0.0 < self.refresh_fraction < 1.0:
            raise BindingError(
                "MobileNodeConfig.refresh_fraction", f"must be between 0 and 1, not {self.refresh_fraction}"
            )


class MnState(enum.Enum):
    HOME = "home"  # at home, no binding wanted
    MIGRATING = "migrating"  # the SAs are moving to a new care-of address; no Binding Update yet
    REGISTERING = "registering"  # a Binding Update is outstanding, no binding is confirmed
    REGISTERED = "registered"  # a binding is confirmed until ``expiry``; a refresh is timed
    REFRESHING = "refreshing"  # a binding is confirmed and a refresh is outstanding
    DEREGISTERING = "deregistering"  # back home; a Binding Update with lifetime 0 is outstanding
    FAILED = "failed"  # gave up; waits for a new movement, for home, or (if the cause may pass) a retry


# Inputs (with TimerFired, MigrateDone and MigrateFailed from binding.py)


@dataclass(frozen=True, slots=True)
class Moved:
    """The mobile node has a new primary care-of address. ``Moved(hoa)`` is ``ReturnedHome()``."""

    coa: IPv6Address


@dataclass(frozen=True, slots=True)
class ReturnedHome:
    """The mobile node is on its home link again (§11.5.4)."""


@dataclass(frozen=True, slots=True)
class BindingAckReceived:
    """A Binding Acknowledgement from the home agent, already checked by IPsec."""

    ack: BindingAck


@dataclass(frozen=True, slots=True)
class ErrorReceived:
    """The outstanding Binding Update cannot succeed: an ICMP Parameter Problem or a
    Binding Error said the home agent does not take it. A passing send failure is not
    this; the retransmission timer covers it."""

    reason: str


MnEvent = Moved | ReturnedHome | BindingAckReceived | TimerFired | MigrateDone | MigrateFailed | ErrorReceived

# Outputs (with MigrateIPsec, RestoreHome and Ignored from binding.py)


@dataclass(frozen=True, slots=True)
class SendBindingUpdate:
    """Send ``bu`` to the home agent from ``coa`` (the home address when deregistering)."""

    coa: IPv6Address
    bu: BindingUpdate
    retransmit: bool = False


@dataclass(frozen=True, slots=True)
class BindingEstablished:
    """The home agent holds the binding to ``coa`` until ``expires_at``."""

    coa: IPv6Address
    lifetime: int
    expires_at: float
    key_management: bool  # K agreed: the IKE SA follows the mobile node
    prefix_discovery: bool  # status 1: the home prefix needs Mobile Prefix Discovery


@dataclass(frozen=True, slots=True)
class BindingLost:
    """The binding to ``coa`` ran out before a refresh was acknowledged."""

    coa: IPv6Address
    why: str


@dataclass(frozen=True, slots=True)
class BindingRejected:
    """The home agent answered ``status`` (128 or more); ``will_retry`` says what comes next."""

    status: BAStatus
    will_retry: bool


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The registration or deregistration attempt is over without success."""

    why: str


MnAction = (
    MigrateIPsec
    | SendBindingUpdate
    | BindingEstablished
    | BindingLost
    | BindingRejected
    | GaveUp
    | RestoreHome
    | Ignored
)

Handler = Callable[["HomeRegistration", Any, float, list[MnAction]], MnState]


class HomeRegistration:
    """The home registration of one mobile node with its home agent."""

    def __init__(self, config: MobileNodeConfig, *, sequence: int = 0) -> None:
        check_sequence("HomeRegistration.sequence", sequence)
        self.config = config
        self.state = MnState.HOME
        self.sequence = sequence  # of the last Binding Update sent; the next takes the one after
        self.coa = config.hoa  # where the mobile node is; the home address at home
        self.sa_coa = config.hoa  # where the tunnel-mode SAs are, as far as this machine knows
        self.migrating_to: IPv6Address | None = None
        self.outstanding: BindingUpdate | None = None
        self.sent_at = 0.0
        self.interval = 0.0  # the current wait for an acknowledgement
        self.deadline: float | None = None  # retransmission, or refresh when REGISTERED
        self.expiry: float | None = None  # of the binding the home agent confirmed
        self.may_be_bound = False  # a registration was sent since the last time at home
        self.key_management = False  # K agreed in the last acknowledgement
        self.k_refused = False  # the home agent accepted without echoing K
        self.failures = 0  # attempts given up in a row; the retry from FAILED waits longer each time
        self._now = float("-inf")

    def timer(self) -> float | None:
        """When to hand the machine ``TimerFired``, or ``None`` for never."""
        if self.state in _HOLDS_BINDING and self.deadline is not None and self.expiry is not None:
            return min(self.deadline, self.expiry)
        return self.deadline if self.state in _WAITS_FOR_ACK or self.state is MnState.FAILED else None

    def handle(self, event: MnEvent, now: float) -> tuple[MnAction, ...]:
        """Take one input at ``now`` (seconds; a clock that steps back is held still)."""
        now = max(now, self._now)
        self._now = now
        out: list[MnAction] = []
        if self.state in _HOLDS_BINDING and self.expiry is not None and now >= self.expiry:
            self.state = _lapse(self, now, out)
        if isinstance(event, Moved) and event.coa == self.config.hoa:
            event = ReturnedHome()
        self.state = TRANSITIONS[(self.state, type(event))](self, event, now, out)
        return tuple(out)


_HOLDS_BINDING: Final = frozenset({MnState.REGISTERED, MnState.REFRESHING})
_WAITS_FOR_ACK: Final = frozenset({MnState.REGISTERING, MnState.REFRESHING, MnState.DEREGISTERING})


# Steps the handlers share


def _send(m: HomeRegistration, lifetime: int, now: float, out: list[MnAction], *, retransmit: bool = False) -> None:
    cfg = m.config
    m.sequence = seq_next(m.sequence)
    bu = BindingUpdate(
        m.sequence,
        lifetime,
        link_local=cfg.link_local_compatible,
        key_management=cfg.key_management,
        mobile_router=cfg.mobile_router,
    )
    m.outstanding = bu
    m.sent_at = now
    m.deadline = now + m.interval
    out.append(SendBindingUpdate(m.coa if lifetime else cfg.hoa, bu, retransmit))


def _register(m: HomeRegistration, now: float, out: list[MnAction]) -> MnState:
    ha_holds_one = m.expiry is not None and m.expiry > now
    m.interval = INITIAL_BINDACK_TIMEOUT if ha_holds_one else INITIAL_BINDACK_TIMEOUT_FIRST_REG
    m.may_be_bound = True
    _send(m, m.config.lifetime, now, out)
    return MnState.REGISTERING


def _go_to(m: HomeRegistration, coa: IPv6Address, now: float, out: list[MnAction]) -> MnState:
    m.coa = coa
    m.outstanding = None
    m.deadline = None
    if coa == m.sa_coa:
        return _register(m, now, out)
    m.migrating_to = coa
    out.append(MigrateIPsec(m.config.hoa, m.sa_coa, coa, m.config.key_management and not m.k_refused))
    return MnState.MIGRATING


def _go_home(m: HomeRegistration, now: float, out: list[MnAction]) -> MnState:
    m.coa = m.config.hoa
    if not m.may_be_bound:
        return _at_home(m, "never registered away", out)
    m.interval = INITIAL_BINDACK_TIMEOUT
    _send(m, 0, now, out)
    return MnState.DEREGISTERING


def _at_home(m: HomeRegistration, why: str, out: list[MnAction]) -> MnState:
    hoa = m.config.hoa
    if m.sa_coa != hoa:
        out.append(RestoreHome(hoa, m.sa_coa, m.config.key_management and not m.k_refused, why))
    m.sa_coa = m.coa = hoa
    m.outstanding = m.deadline = m.expiry = None
    m.may_be_bound = m.key_management = False
    m.failures = 0
    return MnState.HOME


def _give_up(m: HomeRegistration, why: str, now: float, out: list[MnAction], *, passing: bool = False) -> MnState:
    """End the attempt; ``passing``: its cause may pass by itself, so FAILED retries it."""
    out.append(GaveUp(why))
    if m.state is MnState.DEREGISTERING:
        return _at_home(m, "deregistration not acknowledged", out)
    m.outstanding = m.deadline = None
    if passing:
        m.deadline = now + min(INITIAL_BINDACK_TIMEOUT * 2**m.failures, MAX_BINDACK_TIMEOUT)
        m.failures = min(m.failures + 1, 6)  # (32 s reached: no need to count further)
    return MnState.FAILED


def _established(m: HomeRegistration, ack: BindingAck, bu: BindingUpdate, now: float, out: list[MnAction]) -> MnState:
    granted = min(ack.lifetime, bu.lifetime)  # a home agent may shorten, never lengthen (§10.3.1)
    if granted == 0:
        return _give_up(m, "the home agent accepted with lifetime 0", now, out)
    if m.sent_at + granted <= now:  # the lifetime counts from the send (§11.7.3); it is over already
        _send(m, bu.lifetime, now, out, retransmit=True)
        return m.state
    m.expiry = m.sent_at + granted
    m.deadline = m.sent_at + granted * m.config.refresh_fraction
    m.outstanding = None
    m.failures = 0
    m.key_management = bu.key_management and ack.key_management
    m.k_refused = bu.key_management and not ack.key_management
    prefix = ack.status == BAStatus.PREFIX_DISCOVERY_NECESSARY
    out.append(BindingEstablished(m.coa, granted, m.expiry, m.key_management, prefix))
    return MnState.REGISTERED


def _lapse(m: HomeRegistration, now: float, out: list[MnAction]) -> MnState:
    """A REGISTERED or REFRESHING binding whose expiry has come: it is gone (§11.7.3)."""
    out.append(BindingLost(m.coa, "the lifetime ran out before a refresh was acknowledged"))
    m.expiry = None
    if m.state is MnState.REFRESHING:  # the refresh goes on as a registration
        return MnState.REGISTERING
    return _register(m, now, out)


# Handlers: (machine, input, now, actions) -> next state


def _stay(m: HomeRegistration, ev: object, now: float, out: list[MnAction]) -> MnState:
    return m.state


def _unexpected(m: HomeRegistration, ev: object, now: float, out: list[MnAction]) -> MnState:
    out.append(Ignored(f"{type(ev).__name__} while {m.state.value}: nothing waits for it"))
    return m.state


def _move(m: HomeRegistration, ev: Moved, now: float, out: list[MnAction]) -> MnState:
    return m.state if ev.coa == m.coa else _go_to(m, ev.coa, now, out)


def _retry(m: HomeRegistration, ev: Moved, now: float, out: list[MnAction]) -> MnState:
    return _go_to(m, ev.coa, now, out)


def _retarget(m: HomeRegistration, ev: Moved | ReturnedHome, now: float, out: list[MnAction]) -> MnState:
    m.coa = ev.coa if isinstance(ev, Moved) else m.config.hoa  # acted on when the migrate ends
    return m.state


def _leave(m: HomeRegistration, ev: ReturnedHome, now: float, out: list[MnAction]) -> MnState:
    return _go_home(m, now, out)


def _migrated(m: HomeRegistration, ev: MigrateDone, now: float, out: list[MnAction]) -> MnState:
    if ev.hoa != m.config.hoa or m.migrating_to is None:
        return _unexpected(m, ev, now, out)
    m.sa_coa, m.migrating_to = m.migrating_to, None
    if m.coa == m.config.hoa:
        return _go_home(m, now, out)
    return _go_to(m, m.coa, now, out)  # registers, or migrates on if the node moved meanwhile


def _migrate_failed(m: HomeRegistration, ev: MigrateFailed, now: float, out: list[MnAction]) -> MnState:
    if ev.hoa != m.config.hoa:
        return _unexpected(m, ev, now, out)
    target, m.migrating_to = m.migrating_to, None
    m.sa_coa = UNKNOWN_PLACE  # (the next move, or the way home, reads the tables back)
    if m.coa == m.config.hoa:
        return _go_home(m, now, out)
    return _give_up(m, f"moving the IPsec SAs to {target} failed: {ev.reason}", now, out, passing=True)


def _acknowledged(m: HomeRegistration, ev: BindingAckReceived, now: float, out: list[MnAction]) -> MnState:
    ack, bu = ev.ack, m.outstanding
    if bu is None:
        return _unexpected(m, ev, now, out)
    if ack.status == BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW:
        if not answers_out_of_window(ack.sequence, bu.sequence):
            return _unexpected(m, ev, now, out)  # stale: it answers an earlier one
        out.append(BindingRejected(ack.status, True))
        m.sequence = ack.sequence  # the next Binding Update takes the one after it (§11.7.1)
        _send(m, bu.lifetime, now, out, retransmit=True)
        return m.state
    if ack.sequence != bu.sequence:
        out.append(Ignored(f"acknowledgement {ack.sequence} does not match outstanding {bu.sequence}"))
        return m.state
    if m.state is MnState.DEREGISTERING and (
        accepted(ack.status) or ack.status == BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE
    ):
        return _at_home(m, "deregistered", out)
    if accepted(ack.status):
        return _established(m, ack, bu, now, out)
    retry = ack.status in RETRYABLE
    out.append(BindingRejected(ack.status, retry))
    return m.state if retry else _give_up(m, f"the home agent rejected it: {ack.status.label}", now, out)


def _retransmit(m: HomeRegistration, ev: TimerFired, now: float, out: list[MnAction]) -> MnState:
    if m.deadline is None or now < m.deadline or m.outstanding is None:
        return m.state
    if m.interval >= MAX_BINDACK_TIMEOUT and not m.config.retry_forever:
        return _give_up(m, f"no acknowledgement, the last wait {MAX_BINDACK_TIMEOUT:g} s", now, out)
    m.interval = min(2 * m.interval, MAX_BINDACK_TIMEOUT)
    _send(m, m.outstanding.lifetime, now, out, retransmit=True)
    return m.state


def _refresh(m: HomeRegistration, ev: TimerFired, now: float, out: list[MnAction]) -> MnState:
    if m.deadline is None or now < m.deadline:
        return m.state
    m.interval = INITIAL_BINDACK_TIMEOUT
    _send(m, m.config.lifetime, now, out)
    return MnState.REFRESHING


def _resume(m: HomeRegistration, ev: TimerFired, now: float, out: list[MnAction]) -> MnState:
    """FAILED's own retry: the attempt again, from where the SAs are to where the node is."""
    if m.deadline is None or now < m.deadline:
        return m.state
    m.deadline = None
    return _go_home(m, now, out) if m.coa == m.config.hoa else _go_to(m, m.coa, now, out)


def _error(m: HomeRegistration, ev: ErrorReceived, now: float, out: list[MnAction]) -> MnState:
    return _give_up(m, f"the home agent cannot take it: {ev.reason}", now, out)


#: The inputs, in the order of the columns below.
EVENT_TYPES: Final = (Moved, ReturnedHome, BindingAckReceived, TimerFired, MigrateDone, MigrateFailed, ErrorReceived)


def _row(state: MnState, *handlers: Handler) -> dict[tuple[MnState, type], Handler]:
    return {(state, kind): handler for kind, handler in zip(EVENT_TYPES, handlers, strict=True)}


_S, _x = MnState, _unexpected
# fmt: off
#: What each input does in each state; every pair is here (a test checks).
TRANSITIONS: Final[dict[tuple[MnState, type], Handler]] = {
    #                      Moved      ReturnedHome  BindingAck     TimerFired   MigrateDone  MigrateFailed    Error
    **_row(_S.HOME,          _move,     _stay,        _x,            _stay,       _x,          _x,              _x),
    **_row(_S.MIGRATING,     _retarget, _retarget,    _x,            _stay,       _migrated,   _migrate_failed, _x),
    **_row(_S.REGISTERING,   _move,     _leave,       _acknowledged, _retransmit, _x,          _x,              _error),
    **_row(_S.REGISTERED,    _move,     _leave,       _x,            _refresh,    _x,          _x,              _x),
    **_row(_S.REFRESHING,    _move,     _leave,       _acknowledged, _retransmit, _x,          _x,              _error),
    **_row(_S.DEREGISTERING, _retry,    _stay,        _acknowledged, _retransmit, _x,          _x,              _error),
    **_row(_S.FAILED,        _retry,    _leave,       _x,            _resume,     _x,          _x,              _x),
}
# fmt: on
