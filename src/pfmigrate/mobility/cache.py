"""The home agent's Binding Cache for home registrations, sans-IO.

``BindingCache.handle(event, now)`` takes one input and the time in seconds and returns
the actions to carry out, in order; ``timer()`` says when to hand it ``TimerFired``. Each
home address has its own small machine (``CacheEntry``, states ``CacheState``); the cache
routes inputs to it by home address and runs the expiries that are due before every input.
It never sends, sleeps or reads a clock, and it never raises.

States of one home address::

    ABSENT ──BU──▶ MIGRATING ──MigrateDone──▶ BOUND ──BU, same care-of address──▶ BOUND (refresh)
                     ▲   │                      │
                     │   └──MigrateFailed: BA 130, ABSENT (RestoreHome: the SAs are read back home)
                     └──BU, new care-of address─┘
    BOUND ──BU lifetime 0, or expiry──▶ ABSENT (BindingRemoved, RestoreHome)

The rules, with their sources:

* A Binding Update must have a sequence number newer, modulo 2**16, than the last one
  accepted for the home address; if not, the answer is status 135 carrying that last
  number (§9.5.1). A Binding Update without H for a home registration gets 139 (§9.5.1);
  one without H and no binding is a correspondent registration, which this home agent
  does not take: it is ignored, as §9.5.1 does with one that lacks authorization.
* A registration for an address outside the home prefixes gets 132; R without mobile
  router support gets 140 (§10.3.1, RFC 3963).
* Before answering a Binding Update whose care-of address is not where the IPsec SAs
  are, the home agent moves them (``MigrateIPsec``; for a first registration from the
  home address) and answers only when ``MigrateDone`` comes. If ``MigrateFailed`` comes
  the answer is 130 (insufficient resources), and since where the SAs are is not known
  then (a move may fail half-way), the binding goes and the SAs are restored home
  (``RestoreHome`` from ``UNKNOWN_PLACE``: read back); the mobile node retries. A Binding
  Update arriving meanwhile replaces the one waiting; a further move waits for the first.
* The answer to an accepted registration carries the granted lifetime, the requested one
  capped by ``max_lifetime`` (§10.3.1), and K only when the Binding Update asked for it
  and this home agent allows it (§10.3.1); the IKE SA moves with the migrate then.
* Lifetime 0, or a care-of address equal to the home address, deletes the binding (§9.5.1,
  §10.3.2); without a binding the answer is 133. A binding also ends at its expiry.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address, IPv6Network
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
    check_lifetime,
    seq_newer,
)
from pfmigrate.mobility.rfc6275 import LIFETIME_UNIT, BAStatus


@dataclass(frozen=True, slots=True)
class HomeAgentConfig:
    """What this home agent serves. ``max_lifetime`` caps every granted lifetime (seconds);
    K is echoed when ``key_management`` allows it, except to the home addresses in
    ``without_key_management`` (nodes keyed by hand: no IKE SA to keep). R (a mobile
    router, RFC 3963) is accepted from the home addresses in ``mobile_routers`` alone."""

    home_prefixes: tuple[IPv6Network, ...]
    max_lifetime: int = 3600
    key_management: bool = True
    mobile_routers: frozenset[IPv6Address] = frozenset()
    without_key_management: frozenset[IPv6Address] = frozenset()

    def __post_init__(self) -> None:
        if not self.home_prefixes:
            raise BindingError("HomeAgentConfig.home_prefixes", "a home agent needs at least one home prefix")
        check_lifetime("HomeAgentConfig.max_lifetime", self.max_lifetime, low=LIFETIME_UNIT)

    def key_management_for(self, hoa: IPv6Address, bu: BindingUpdate) -> bool:
        """Whether K is agreed with this node for this Binding Update (§6.1.7)."""
        return self.key_management and bu.key_management and hoa not in self.without_key_management


class CacheState(enum.Enum):
    ABSENT = "absent"  # no binding; the cache keeps no entry in this state
    MIGRATING = "migrating"  # a Binding Update waits for its IPsec migrate
    BOUND = "bound"  # a binding, until its expiry


# Inputs (with TimerFired, MigrateDone and MigrateFailed from binding.py)


@dataclass(frozen=True, slots=True)
class BindingUpdateReceived:
    """A Binding Update for ``hoa`` from ``coa`` (its Alternate Care-of Address, or the
    source address), already checked by IPsec."""

    hoa: IPv6Address
    coa: IPv6Address
    bu: BindingUpdate


HaEvent = BindingUpdateReceived | MigrateDone | MigrateFailed | TimerFired

# Outputs (with MigrateIPsec, RestoreHome and Ignored from binding.py)


@dataclass(frozen=True, slots=True)
class SendBindingAck:
    """Send ``ack`` about ``hoa`` to ``coa``."""

    hoa: IPv6Address
    coa: IPv6Address
    ack: BindingAck


@dataclass(frozen=True, slots=True)
class BindingAccepted:
    """Intercept traffic for ``hoa`` and tunnel it to ``coa`` until ``expires_at``."""

    hoa: IPv6Address
    coa: IPv6Address
    lifetime: int
    expires_at: float
    key_management: bool
    mobile_router: bool


@dataclass(frozen=True, slots=True)
class BindingRemoved:
    """Stop intercepting and tunnelling traffic for ``hoa`` to ``coa``."""

    hoa: IPv6Address
    coa: IPv6Address
    why: str


HaAction = SendBindingAck | MigrateIPsec | BindingAccepted | BindingRemoved | RestoreHome | Ignored


@dataclass(frozen=True, slots=True)
class Binding:
    """A read-only view of one home address's binding."""

    hoa: IPv6Address
    coa: IPv6Address
    expires_at: float
    sequence: int
    key_management: bool
    mobile_router: bool


@dataclass(frozen=True, slots=True)
class _Waiting:
    """The Binding Update answered once the SAs are where it says."""

    coa: IPv6Address
    bu: BindingUpdate


class CacheEntry:
    """One home address: its state and what the state machine needs."""

    __slots__ = (
        "coa",
        "expiry",
        "hoa",
        "key_management",
        "migrating_to",
        "mobile_router",
        "sa_coa",
        "sequence",
        "state",
        "waiting",
    )

    def __init__(self, hoa: IPv6Address) -> None:
        self.hoa = hoa
        self.state = CacheState.ABSENT
        self.sequence = 0  # the last accepted; meaningful unless ABSENT
        self.coa: IPv6Address | None = None  # of the binding, while there is one
        self.expiry: float | None = None
        self.key_management = False
        self.mobile_router = False
        self.sa_coa = hoa  # where the tunnel-mode SAs are
        self.migrating_to: IPv6Address | None = None
        self.waiting: _Waiting | None = None


Handler = Callable[[CacheEntry, HomeAgentConfig, Any, float, list[HaAction]], CacheState]


class BindingCache:
    """The home registrations of one home agent."""

    def __init__(self, config: HomeAgentConfig) -> None:
        self.config = config
        self._entries: dict[IPv6Address, CacheEntry] = {}
        self._expiries: list[tuple[float, IPv6Address]] = []  # a heap; stale items are skipped
        self._now = float("-inf")

    def __len__(self) -> int:
        return len(self._entries)

    def state(self, hoa: IPv6Address) -> CacheState:
        entry = self._entries.get(hoa)
        return CacheState.ABSENT if entry is None else entry.state

    def binding(self, hoa: IPv6Address) -> Binding | None:
        entry = self._entries.get(hoa)
        if entry is None or entry.coa is None or entry.expiry is None:
            return None
        return Binding(hoa, entry.coa, entry.expiry, entry.sequence, entry.key_management, entry.mobile_router)

    def entry(self, hoa: IPv6Address) -> CacheEntry | None:
        """The machine for ``hoa``, for inspection; change it only through ``handle``."""
        return self._entries.get(hoa)

    def timer(self) -> float | None:
        """When to hand the cache ``TimerFired``, or ``None`` for never."""
        heap = self._expiries
        while heap and not self._live(*heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def handle(self, event: HaEvent, now: float) -> tuple[HaAction, ...]:
        """Take one input at ``now`` (seconds; a clock that steps back is held still)."""
        now = max(now, self._now)
        self._now = now
        out: list[HaAction] = []
        heap = self._expiries
        while heap and heap[0][0] <= now:
            when, hoa = heapq.heappop(heap)
            if self._live(when, hoa):
                self._step(self._entries[hoa], TimerFired(), now, out)
        if not isinstance(event, TimerFired):
            self._step(self._entries.get(event.hoa) or CacheEntry(event.hoa), event, now, out)
        return tuple(out)

    def _live(self, when: float, hoa: IPv6Address) -> bool:
        entry = self._entries.get(hoa)
        return entry is not None and entry.expiry == when

    def _step(self, entry: CacheEntry, event: HaEvent, now: float, out: list[HaAction]) -> None:
        expiry = entry.expiry
        entry.state = TRANSITIONS[(entry.state, type(event))](entry, self.config, event, now, out)
        if entry.state is CacheState.ABSENT:
            self._entries.pop(entry.hoa, None)
            return
        self._entries[entry.hoa] = entry
        if entry.expiry is not None and entry.expiry != expiry:
            heapq.heappush(self._expiries, (entry.expiry, entry.hoa))


# Steps the handlers share


def _is_deregistration(hoa: IPv6Address, coa: IPv6Address, bu: BindingUpdate) -> bool:
    return bu.lifetime == 0 or coa == hoa  # §9.5.1


def _answer(e: CacheEntry, coa: IPv6Address, status: BAStatus, sequence: int, out: list[HaAction]) -> None:
    out.append(SendBindingAck(e.hoa, coa, BindingAck(status, sequence)))


def _refusal(cfg: HomeAgentConfig, hoa: IPv6Address, bu: BindingUpdate) -> BAStatus | None:
    if not any(hoa in prefix for prefix in cfg.home_prefixes):
        return BAStatus.NOT_HOME_SUBNET
    if bu.mobile_router and hoa not in cfg.mobile_routers:
        return BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED
    return None


def _migrate(e: CacheEntry, cfg: HomeAgentConfig, coa: IPv6Address, bu: BindingUpdate, out: list[HaAction]) -> None:
    e.migrating_to = coa
    out.append(MigrateIPsec(e.hoa, e.sa_coa, coa, cfg.key_management_for(e.hoa, bu)))


def _accept(
    e: CacheEntry, cfg: HomeAgentConfig, coa: IPv6Address, bu: BindingUpdate, now: float, out: list[HaAction]
) -> CacheState:
    granted = min(bu.lifetime, cfg.max_lifetime)
    e.coa, e.expiry, e.waiting = coa, now + granted, None
    e.key_management = cfg.key_management_for(e.hoa, bu)
    e.mobile_router = bu.mobile_router and e.hoa in cfg.mobile_routers
    ack = BindingAck(BAStatus.ACCEPTED, bu.sequence, granted, e.key_management, e.mobile_router)
    out.append(SendBindingAck(e.hoa, coa, ack))
    out.append(BindingAccepted(e.hoa, coa, granted, e.expiry, e.key_management, e.mobile_router))
    return CacheState.BOUND


def _drop(e: CacheEntry, move_ike: bool, why: str, out: list[HaAction]) -> CacheState:
    """Forget the binding and send the SAs home: the entry becomes ABSENT."""
    if e.coa is not None:
        out.append(BindingRemoved(e.hoa, e.coa, why))
    if e.sa_coa != e.hoa:
        out.append(RestoreHome(e.hoa, e.sa_coa, move_ike, why))
    return CacheState.ABSENT


def _deregister(
    e: CacheEntry, cfg: HomeAgentConfig, coa: IPv6Address, bu: BindingUpdate, out: list[HaAction]
) -> CacheState:
    """§10.3.2: delete, then acknowledge with status 0 and lifetime 0."""
    k = cfg.key_management_for(e.hoa, bu)
    out.append(SendBindingAck(e.hoa, coa, BindingAck(BAStatus.ACCEPTED, bu.sequence, 0, k, e.mobile_router)))
    return _drop(e, k, "deregistered", out)


def _checked(e: CacheEntry, ev: BindingUpdateReceived, out: list[HaAction]) -> bool:
    """§9.5.1 for an existing entry: H must stay set and the number must be newer. Only
    135 carries the last accepted number; every other answer echoes the BU's (§6.1.8)."""
    if not ev.bu.home:
        _answer(e, ev.coa, BAStatus.REGISTRATION_TYPE_CHANGE_DISALLOWED, ev.bu.sequence, out)
        return False
    if not seq_newer(ev.bu.sequence, e.sequence):
        _answer(e, ev.coa, BAStatus.SEQUENCE_NUMBER_OUT_OF_WINDOW, e.sequence, out)
        return False
    e.sequence = ev.bu.sequence
    return True


# Handlers: (entry, config, input, now, actions) -> next state


def _unexpected(e: CacheEntry, cfg: HomeAgentConfig, ev: object, now: float, out: list[HaAction]) -> CacheState:
    out.append(Ignored(f"{type(ev).__name__} for {e.hoa} while {e.state.value}: nothing waits for it"))
    return e.state


def _stay(e: CacheEntry, cfg: HomeAgentConfig, ev: object, now: float, out: list[HaAction]) -> CacheState:
    return e.state


def _first(
    e: CacheEntry, cfg: HomeAgentConfig, ev: BindingUpdateReceived, now: float, out: list[HaAction]
) -> CacheState:
    bu = ev.bu
    if not bu.home:
        out.append(Ignored(f"Binding Update for {e.hoa} without H: correspondent registration is not served"))
        return CacheState.ABSENT
    if _is_deregistration(e.hoa, ev.coa, bu):
        _answer(e, ev.coa, BAStatus.NOT_HOME_AGENT_FOR_THIS_MOBILE_NODE, bu.sequence, out)  # §10.3.2
        return CacheState.ABSENT
    refusal = _refusal(cfg, e.hoa, bu)
    if refusal is not None:
        _answer(e, ev.coa, refusal, bu.sequence, out)
        return CacheState.ABSENT
    e.sequence, e.waiting = bu.sequence, _Waiting(ev.coa, bu)
    _migrate(e, cfg, ev.coa, bu, out)
    return CacheState.MIGRATING


def _update(
    e: CacheEntry, cfg: HomeAgentConfig, ev: BindingUpdateReceived, now: float, out: list[HaAction]
) -> CacheState:
    if not _checked(e, ev, out):
        return e.state
    if _is_deregistration(e.hoa, ev.coa, ev.bu):
        return _deregister(e, cfg, ev.coa, ev.bu, out)
    refusal = _refusal(cfg, e.hoa, ev.bu)
    if refusal is not None:
        _answer(e, ev.coa, refusal, ev.bu.sequence, out)
        return e.state
    if ev.coa == e.sa_coa:
        return _accept(e, cfg, ev.coa, ev.bu, now, out)
    e.waiting = _Waiting(ev.coa, ev.bu)
    _migrate(e, cfg, ev.coa, ev.bu, out)
    return CacheState.MIGRATING


def _replace(
    e: CacheEntry, cfg: HomeAgentConfig, ev: BindingUpdateReceived, now: float, out: list[HaAction]
) -> CacheState:
    """A newer Binding Update while a migrate runs: it is the one answered afterwards."""
    if not _checked(e, ev, out):
        return e.state
    refusal = None if _is_deregistration(e.hoa, ev.coa, ev.bu) else _refusal(cfg, e.hoa, ev.bu)
    if refusal is not None:
        _answer(e, ev.coa, refusal, ev.bu.sequence, out)
        return e.state
    e.waiting = _Waiting(ev.coa, ev.bu)
    return e.state


def _migrated(e: CacheEntry, cfg: HomeAgentConfig, ev: MigrateDone, now: float, out: list[HaAction]) -> CacheState:
    if e.migrating_to is None or e.waiting is None:
        return _unexpected(e, cfg, ev, now, out)
    e.sa_coa, e.migrating_to = e.migrating_to, None
    coa, bu = e.waiting.coa, e.waiting.bu
    if _is_deregistration(e.hoa, coa, bu):
        return _deregister(e, cfg, coa, bu, out)
    if coa != e.sa_coa:  # the mobile node moved on while the SAs moved
        _migrate(e, cfg, coa, bu, out)
        return e.state
    return _accept(e, cfg, coa, bu, now, out)


def _migrate_failed(
    e: CacheEntry, cfg: HomeAgentConfig, ev: MigrateFailed, now: float, out: list[HaAction]
) -> CacheState:
    if e.migrating_to is None or e.waiting is None:
        return _unexpected(e, cfg, ev, now, out)
    e.migrating_to, waiting, e.waiting = None, e.waiting, None
    e.sa_coa = UNKNOWN_PLACE  # (it may have moved in part: the way home reads the tables back)
    if _is_deregistration(e.hoa, waiting.coa, waiting.bu):  # needs no migrate
        return _deregister(e, cfg, waiting.coa, waiting.bu, out)
    _answer(e, waiting.coa, BAStatus.INSUFFICIENT_RESOURCES, waiting.bu.sequence, out)
    return _drop(e, e.key_management, f"IPsec migrate failed: {ev.reason}", out)


def _expired(e: CacheEntry, cfg: HomeAgentConfig, ev: TimerFired, now: float, out: list[HaAction]) -> CacheState:
    if e.expiry is None or now < e.expiry or e.coa is None:
        return e.state
    if e.state is CacheState.BOUND:
        return _drop(e, e.key_management, "lifetime ran out", out)
    out.append(BindingRemoved(e.hoa, e.coa, "lifetime ran out"))  # the SAs are on their way elsewhere
    e.coa = e.expiry = None
    return e.state


#: The inputs, in the order of the columns below.
EVENT_TYPES: Final = (BindingUpdateReceived, MigrateDone, MigrateFailed, TimerFired)


def _row(state: CacheState, *handlers: Handler) -> dict[tuple[CacheState, type], Handler]:
    return {(state, kind): handler for kind, handler in zip(EVENT_TYPES, handlers, strict=True)}


_S, _x = CacheState, _unexpected
# fmt: off
#: What each input does in each state; every pair is here (a test checks).
TRANSITIONS: Final[dict[tuple[CacheState, type], Handler]] = {
    #                  BindingUpdate  MigrateDone  MigrateFailed    TimerFired
    **_row(_S.ABSENT,    _first,        _x,          _x,              _stay),
    **_row(_S.MIGRATING, _replace,      _migrated,   _migrate_failed, _expired),
    **_row(_S.BOUND,     _update,       _x,          _x,              _expired),
}
# fmt: on
