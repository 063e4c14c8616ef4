"""The binding machines as a whole: every state takes every input without raising, and
the invariants hold after any sequence of inputs and times (Hypothesis). An observer
plays the shell: from the actions it keeps what the shell would know (where the IPsec
SAs are, which migrate is out, the last sequence number sent) and checks each action
and each state against it. Last, a mobile node and a home agent talk over a link."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pfmigrate.mobility import bul, cache
from pfmigrate.mobility.binding import (
    UNKNOWN_PLACE,
    BindingAck,
    BindingError,
    BindingUpdate,
    MigrateDone,
    MigrateFailed,
    MigrateIPsec,
    RestoreHome,
    TimerFired,
    seq_newer,
    seq_next,
)
from pfmigrate.mobility.bul import HomeRegistration, MnEvent, MnState, MobileNodeConfig
from pfmigrate.mobility.cache import BindingCache, CacheState, HaEvent, HomeAgentConfig
from pfmigrate.mobility.rfc6275 import MAX_BINDACK_TIMEOUT, MAX_LIFETIME, BAStatus, accepted

PREFIX = IPv6Network("2001:db8:1::/64")
HOA = IPv6Address("2001:db8:1::100")
HOA2 = IPv6Address("2001:db8:1::200")
OUTSIDE = IPv6Address("2001:db8:2::1")
COAS = (IPv6Address("2001:db8:5::1"), IPv6Address("2001:db8:6::1"), IPv6Address("2001:db8:7::1"))
SEQ = st.integers(0, 0xFFFF)
LIFETIMES = st.sampled_from([0, 4, 8, 12, 100, 400, 600, 4000, MAX_LIFETIME])
STATUSES = st.sampled_from([0, 1, 128, 129, 130, 131, 133, 134, 135, 139, 140, 143, 200]).map(BAStatus)
DELAYS = st.one_of(st.floats(0.0, 2.0), st.floats(0.0, 700.0))


# Sequence numbers (RFC 6275 §9.5.1)


@given(a=SEQ, b=SEQ)
def test_of_two_sequence_numbers_at_most_one_is_newer(a: int, b: int) -> None:
    """§9.5.1: "newer" is a strict order on any window of half the number space (of two
    numbers exactly half the space apart, each is newer than the other)."""
    assert not (seq_newer(a, b) and seq_newer(b, a)) or (a - b) % 65536 == 32768
    assert seq_newer(a, b) or seq_newer(b, a) or a == b


@given(b=SEQ, step=st.integers(1, 32768))
def test_the_32768_numbers_after_one_are_newer(b: int, step: int) -> None:
    """§9.5.1: not newer means within the 32768 values up to and including the last one."""
    assert seq_newer((b + step) % 65536, b)
    assert not seq_newer((b - step + 1) % 65536, b)


def test_sequence_examples() -> None:
    """§9.5.1's own example (after 15, 0 to 15 and 32784 to 65535 are not greater), and
    §11.7.1 at the wrap."""
    assert [s for s in range(65536) if not seq_newer(s, 15)] == [*range(16), *range(32784, 65536)]
    assert seq_newer(32783, 15)
    assert seq_newer(0, 65535)
    assert not seq_newer(65535, 0)
    assert seq_next(65535) == 0


# Values refuse what cannot be, saying where and why


@pytest.mark.parametrize(
    ("make", "where"),
    [
        (lambda: BindingUpdate(65536, 4), "BindingUpdate.sequence"),
        (lambda: BindingUpdate(1, 6), "BindingUpdate.lifetime"),
        (lambda: BindingUpdate(1, MAX_LIFETIME + 4), "BindingUpdate.lifetime"),
        (lambda: BindingAck(BAStatus(256), 1), "BindingAck.status"),
        (lambda: BindingAck(BAStatus.ACCEPTED, -1), "BindingAck.sequence"),
        (lambda: MobileNodeConfig(HOA, lifetime=0), "MobileNodeConfig.lifetime"),
        (lambda: MobileNodeConfig(HOA, refresh_fraction=1.0), "MobileNodeConfig.refresh_fraction"),
        (lambda: HomeAgentConfig(()), "HomeAgentConfig.home_prefixes"),
        (lambda: HomeAgentConfig((PREFIX,), max_lifetime=2), "HomeAgentConfig.max_lifetime"),
        (lambda: HomeRegistration(MobileNodeConfig(HOA), sequence=70000), "HomeRegistration.sequence"),
    ],
)
def test_impossible_values_raise_one_error_naming_the_field(make: Callable[[], object], where: str) -> None:
    with pytest.raises(BindingError) as caught:
        make()
    assert caught.value.where == where
    assert str(caught.value).startswith(f"{where}: ")


def test_an_unknown_status_stays_a_number() -> None:
    assert BindingAck(BAStatus(200), 1).status.label == "200"


@pytest.mark.parametrize(
    ("table", "states", "kinds"),
    [(bul.TRANSITIONS, MnState, bul.EVENT_TYPES), (cache.TRANSITIONS, CacheState, cache.EVENT_TYPES)],
    ids=["mobile node", "home agent"],
)
def test_every_state_has_a_handler_for_every_input(
    table: dict[tuple[object, type], object], states: type[enum.Enum], kinds: tuple[type, ...]
) -> None:
    """The tables are total: no (state, input) pair falls through."""
    assert set(table) == {(s, k) for s in states for k in kinds}


# The mobile node


class MnShell:
    """Feeds a HomeRegistration and checks every step against what the shell knows."""

    def __init__(self, m: HomeRegistration) -> None:
        self.m = m
        self.sa = HOA  # where the SAs are
        self.migrate: MigrateIPsec | None = None
        self.last_sent = m.sequence
        self.now = 0.0

    def feed(self, event: MnEvent, now: float) -> tuple[bul.MnAction, ...]:
        self.now = now = max(now, self.now)
        if isinstance(event, MigrateDone | MigrateFailed) and event.hoa == HOA and self.migrate is not None:
            self.sa = self.migrate.new_coa if isinstance(event, MigrateDone) else UNKNOWN_PLACE
            self.migrate = None
        actions = self.m.handle(event, now)
        for action in actions:
            if isinstance(action, MigrateIPsec):
                assert self.migrate is None, "one migrate at a time"
                assert (action.hoa, action.old_coa) == (HOA, self.sa)
                self.migrate = action
            elif isinstance(action, bul.SendBindingUpdate):
                assert seq_newer(action.bu.sequence, self.last_sent), "sequence numbers only move forward"
                self.last_sent = action.bu.sequence
                if action.bu.lifetime:
                    assert self.migrate is None, "no Binding Update before its migrate completed"
                    assert action.coa == self.sa, "a Binding Update is for where the SAs are"
                else:
                    assert action.coa == HOA
            elif isinstance(action, RestoreHome):
                assert self.migrate is None
                assert action.from_coa == self.sa != HOA
                self.sa = HOA
        self.check()
        return actions

    def check(self) -> None:
        m, now = self.m, self.now
        assert m.sa_coa == self.sa
        assert m.sequence == self.last_sent
        waiting = m.state in (MnState.REGISTERING, MnState.REFRESHING, MnState.DEREGISTERING)
        assert (m.outstanding is not None) is waiting, "a Binding Update is outstanding exactly while waiting"
        if m.outstanding is not None:
            assert m.outstanding.sequence == m.sequence, "at most one outstanding: the last sent"
            assert 1.0 <= m.interval <= MAX_BINDACK_TIMEOUT
            assert m.deadline == m.sent_at + m.interval <= now + MAX_BINDACK_TIMEOUT
        if m.state in (MnState.REGISTERED, MnState.REFRESHING):
            assert m.expiry is not None
            assert m.expiry > now, "a confirmed binding ends in the future"
        if m.state is MnState.MIGRATING:
            assert self.migrate is not None
            assert m.migrating_to == self.migrate.new_coa
        else:
            assert self.migrate is None
        if m.state is MnState.HOME:
            assert (m.sa_coa, m.timer()) == (HOA, None)

    def answer_migrate(self, ok: bool = True) -> None:
        event = MigrateDone(HOA) if ok else MigrateFailed(HOA, "refused")
        self.feed(event, self.now)


def mn_at(state: MnState) -> MnShell:
    shell = MnShell(HomeRegistration(MobileNodeConfig(HOA, lifetime=400)))
    if state is MnState.HOME:
        return shell
    shell.feed(bul.Moved(COAS[0]), 0.0)
    if state is MnState.MIGRATING:
        return shell
    shell.answer_migrate(state is not MnState.FAILED)
    if state in (MnState.REGISTERING, MnState.FAILED):
        return shell
    m = shell.m
    shell.feed(bul.BindingAckReceived(BindingAck(BAStatus.ACCEPTED, m.sequence, 400, True)), 0.5)
    if state is MnState.REFRESHING:
        shell.feed(TimerFired(), 320.0)
    if state is MnState.DEREGISTERING:
        shell.feed(bul.ReturnedHome(), 1.0)
    return shell


def mn_input(kind: type, m: HomeRegistration) -> st.SearchStrategy[MnEvent]:
    near = st.sampled_from([m.sequence, (m.sequence - 1) % 65536, (m.sequence + 1) % 65536])
    ack = st.builds(BindingAck, STATUSES, st.one_of(near, SEQ), LIFETIMES, st.booleans(), st.booleans())
    hoas = st.sampled_from([HOA, HOA, COAS[0]])
    strategies: dict[type, st.SearchStrategy[MnEvent]] = {
        bul.Moved: st.builds(bul.Moved, st.sampled_from((*COAS, HOA))),
        bul.ReturnedHome: st.just(bul.ReturnedHome()),
        bul.BindingAckReceived: st.builds(bul.BindingAckReceived, ack),
        TimerFired: st.just(TimerFired()),
        MigrateDone: st.builds(MigrateDone, hoas),
        MigrateFailed: st.builds(MigrateFailed, hoas, st.text(max_size=5)),
        bul.ErrorReceived: st.builds(bul.ErrorReceived, st.text(max_size=5)),
    }
    return strategies[kind]


@pytest.mark.parametrize("kind", bul.EVENT_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("state", list(MnState), ids=lambda s: s.name)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_mobile_node_every_state_takes_every_input(state: MnState, kind: type, data: st.DataObject) -> None:
    shell = mn_at(state)
    assert shell.m.state is state
    event = data.draw(mn_input(kind, shell.m))
    shell.feed(event, shell.now + data.draw(DELAYS))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mobile_node_invariants_hold_over_any_inputs(data: st.DataObject) -> None:
    shell = MnShell(HomeRegistration(MobileNodeConfig(HOA, lifetime=data.draw(st.sampled_from([8, 40, 400])))))
    for _ in range(data.draw(st.integers(1, 60))):
        due = shell.m.timer()
        on_time = due is not None and data.draw(st.booleans())  # the timer exactly when asked
        now = due if on_time and due is not None else shell.now + data.draw(DELAYS)
        kind = data.draw(st.sampled_from((*bul.EVENT_TYPES, TimerFired, TimerFired)))
        shell.feed(data.draw(mn_input(kind, shell.m)), now)


# The home agent


class HaShell:
    """Feeds a BindingCache and checks every step against what the shell knows."""

    HOAS = (HOA, HOA2, OUTSIDE)

    def __init__(self, c: BindingCache) -> None:
        self.c = c
        self.sa = {hoa: hoa for hoa in self.HOAS}
        self.migrate: dict[IPv6Address, MigrateIPsec] = {}
        self.now = 0.0

    def feed(self, event: HaEvent, now: float) -> tuple[cache.HaAction, ...]:
        self.now = now = max(now, self.now)
        c, cfg = self.c, self.c.config
        before = {hoa: (e, e.sequence) for hoa in self.HOAS if (e := c.entry(hoa)) is not None}
        if isinstance(event, MigrateDone | MigrateFailed) and event.hoa in self.migrate:
            pending = self.migrate.pop(event.hoa)
            self.sa[event.hoa] = pending.new_coa if isinstance(event, MigrateDone) else UNKNOWN_PLACE
        actions = c.handle(event, now)
        for action in actions:
            if isinstance(action, MigrateIPsec):
                assert action.hoa not in self.migrate, "one migrate at a time per home address"
                assert action.old_coa == self.sa[action.hoa]
                self.migrate[action.hoa] = action
            elif isinstance(action, cache.SendBindingAck):
                ack = action.ack
                if accepted(ack.status) and ack.lifetime:
                    assert action.hoa not in self.migrate, "no acceptance before the migrate completed"
                    assert action.coa == self.sa[action.hoa], "accepted only where the SAs are"
                    assert ack.lifetime <= cfg.max_lifetime
                assert not ack.key_management or cfg.key_management
                assert not ack.mobile_router or action.hoa in cfg.mobile_routers
            elif isinstance(action, RestoreHome):
                assert action.hoa not in self.migrate
                assert action.from_coa == self.sa[action.hoa] != action.hoa
                self.sa[action.hoa] = action.hoa
            elif isinstance(action, cache.BindingAccepted):
                assert action.expires_at > now
        for hoa in self.HOAS:
            entry, sequence = before.get(hoa, (None, None))
            self.check(hoa, sequence if entry is c.entry(hoa) else None)
        due = c.timer()
        assert due is None or due > now, "every expiry due was run"
        return actions

    def check(self, hoa: IPv6Address, sequence_before: int | None) -> None:
        """``sequence_before``: the entry's last accepted number before the step, if it lived through it."""
        e = self.c.entry(hoa)
        if e is None:
            assert self.c.state(hoa) is CacheState.ABSENT
            assert hoa not in self.migrate
            assert self.sa[hoa] == hoa, "no entry, no SAs away from home"
            return
        assert e.state is not CacheState.ABSENT, "the cache keeps no ABSENT entry"
        assert e.sa_coa == self.sa[hoa]
        if sequence_before is not None:
            assert e.sequence == sequence_before or seq_newer(e.sequence, sequence_before)
        if e.coa is not None:
            assert e.expiry is not None
            assert e.expiry > self.now, "a binding ends in the future"
        if e.state is CacheState.BOUND:
            assert e.coa == e.sa_coa
            assert hoa not in self.migrate
        else:
            assert e.waiting is not None
            assert e.migrating_to == self.migrate[hoa].new_coa


def ha_config(data: st.DataObject) -> HomeAgentConfig:
    max_lifetime = data.draw(st.sampled_from([8, 100, 3600]))
    routers = data.draw(st.sampled_from([frozenset(), frozenset({HOA}), frozenset({HOA, HOA2})]))
    return HomeAgentConfig((PREFIX,), max_lifetime, data.draw(st.booleans()), routers)


def ha_at(state: CacheState, config: HomeAgentConfig) -> HaShell:
    shell = HaShell(BindingCache(config))
    if state is not CacheState.ABSENT:
        shell.feed(cache.BindingUpdateReceived(HOA, COAS[0], BindingUpdate(10, 400)), 0.0)
    if state is CacheState.BOUND:
        shell.feed(MigrateDone(HOA), 0.0)
    return shell


def ha_input(kind: type, c: BindingCache) -> st.SearchStrategy[HaEvent]:
    entry = c.entry(HOA)
    last = 10 if entry is None else entry.sequence
    seq = st.one_of(st.sampled_from([seq_next(last), seq_next(last), last, (last - 1) % 65536]), SEQ)
    flags = st.booleans()
    home = st.sampled_from([True, True, True, False])
    update = st.builds(BindingUpdate, seq, LIFETIMES, flags, home, flags, flags, flags)
    hoas = st.sampled_from([HOA, HOA, HOA, HOA2, OUTSIDE])
    strategies: dict[type, st.SearchStrategy[HaEvent]] = {
        cache.BindingUpdateReceived: st.builds(
            cache.BindingUpdateReceived, hoas, st.sampled_from((*COAS, HOA)), update
        ),
        MigrateDone: st.builds(MigrateDone, hoas),
        MigrateFailed: st.builds(MigrateFailed, hoas, st.text(max_size=5)),
        TimerFired: st.just(TimerFired()),
    }
    return strategies[kind]


@pytest.mark.parametrize("kind", cache.EVENT_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("state", list(CacheState), ids=lambda s: s.name)
@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_home_agent_every_state_takes_every_input(state: CacheState, kind: type, data: st.DataObject) -> None:
    shell = ha_at(state, ha_config(data))
    assert shell.c.state(HOA) is state
    shell.feed(data.draw(ha_input(kind, shell.c)), shell.now + data.draw(DELAYS))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_home_agent_invariants_hold_over_any_inputs(data: st.DataObject) -> None:
    shell = HaShell(BindingCache(ha_config(data)))
    for _ in range(data.draw(st.integers(1, 60))):
        kind = data.draw(st.sampled_from(cache.EVENT_TYPES))
        shell.feed(data.draw(ha_input(kind, shell.c)), shell.now + data.draw(DELAYS))


# A mobile node and its home agent over a link


class Link:
    """Carries each side's messages to the other and carries out both sides' migrates."""

    def __init__(self, mn: MnShell, ha: HaShell, data: st.DataObject, *, lossy: bool) -> None:
        self.mn, self.ha, self.data, self.lossy = mn, ha, data, lossy
        self.queue: deque[tuple[bool, MnEvent | HaEvent]] = deque()  # (to the mobile node?, input)

    def lost(self) -> bool:
        return self.lossy and self.data.draw(st.booleans())

    def send_mn(self, event: MnEvent, now: float) -> None:
        self.queue.append((True, event))
        self.drain(now)

    def drain(self, now: float) -> None:
        while self.queue:
            to_mn, event = self.queue.popleft()
            if to_mn:
                self.route(True, self.mn.feed(event, now))  # type: ignore[arg-type]
            else:
                self.route(False, self.ha.feed(event, now))  # type: ignore[arg-type]

    def route(self, from_mn: bool, actions: tuple[bul.MnAction | cache.HaAction, ...]) -> None:
        for action in actions:
            if isinstance(action, MigrateIPsec):
                answer = MigrateFailed(action.hoa, "lost") if self.lost() else MigrateDone(action.hoa)
                self.queue.append((from_mn, answer))
            elif isinstance(action, bul.SendBindingUpdate) and not self.lost():
                self.queue.append((False, cache.BindingUpdateReceived(HOA, action.coa, action.bu)))
            elif isinstance(action, cache.SendBindingAck) and not self.lost():
                self.queue.append((True, bul.BindingAckReceived(action.ack)))

    def advance(self, to: float) -> None:
        for _ in range(10_000):
            timers = [(t, side) for side, t in ((True, self.mn.m.timer()), (False, self.ha.c.timer())) if t is not None]
            due = [(t, side) for t, side in timers if t <= to]
            if not due:
                return
            when, to_mn = min(due, key=lambda pair: pair[0])
            self.queue.append((to_mn, TimerFired()))
            self.drain(max(when, self.mn.now, self.ha.now))
        raise AssertionError("timers never settle")


@pytest.mark.parametrize("lossy", [False, True], ids=["lossless", "lossy"])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_mobile_node_and_home_agent_agree(lossy: bool, data: st.DataObject) -> None:
    """Whatever the movements: when the mobile node holds a confirmed binding the home
    agent holds the same one; over a lossless link they also agree when it is home."""
    mn = MnShell(HomeRegistration(MobileNodeConfig(HOA, lifetime=40)))
    ha = HaShell(BindingCache(HomeAgentConfig((PREFIX,), max_lifetime=data.draw(st.sampled_from([8, 40, 3600])))))
    link = Link(mn, ha, data, lossy=lossy)
    now = 0.0
    for _ in range(data.draw(st.integers(1, 12))):
        now += data.draw(st.floats(0.0, 120.0))
        link.advance(now)
        link.send_mn(data.draw(st.sampled_from([bul.Moved(c) for c in COAS] + [bul.ReturnedHome()])), now)
        m, binding = mn.m, ha.c.binding(HOA)
        if m.state is MnState.REGISTERED:
            assert binding is not None
            assert (binding.coa, binding.sequence) == (m.coa, m.sequence)
            assert m.expiry is not None
            assert binding.expires_at >= m.expiry
        if not lossy:
            assert m.state in (MnState.REGISTERED, MnState.HOME)
            assert (binding is None) is (m.state is MnState.HOME)
