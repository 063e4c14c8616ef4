"""The in-process backend passes what the Linux backends pass, with no kernel at all.

The same scenarios as ``tests/kernel/test_backends_linux.py`` run on pfmigrate's own
engine behind the key-engine interface, in both semantics: Linux's and pfmigrate's.
Time is a fake clock, so lifetimes expire when the test says.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Iterator
from ipaddress import ip_address

import pytest

from pfmigrate.backends.inprocess import Hub, open_inprocess, open_inprocess_async
from pfmigrate.engine import AsyncKeyEngine, KeyEngine, KeyEngineError
from pfmigrate.model import (
    ESP,
    MH,
    AcquireEvent,
    Algorithm,
    Dir,
    Event,
    EventsLost,
    ExpireEvent,
    Lifetime,
    MigrateBundle,
    MigrateEvent,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.pfkey import SA, MsgType, decode
from pfmigrate.sadb import Engine
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, OLD_COA
from tests.seed_scenario import (
    AUTH,
    ENC,
    HA,
    HOA,
    NEW,
    OLD,
    OUT_SELECTOR,
    mn_migrates,
    mn_policies,
    play_seed_move,
    tunnel_sa,
    without_index,
)

START = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["linux", "pfmigrate"])
def hub(request: pytest.FixtureRequest) -> Hub:
    return Hub(Engine(semantics=request.param), clock=Clock())


@pytest.fixture
def engine(hub: Hub) -> Iterator[KeyEngine]:
    opened = open_inprocess(hub, timeout=1.0)
    yield opened
    opened.close()


def wait_for(engine: KeyEngine, kind: type) -> Event:
    for _ in range(20):
        for event in engine.next_events(0.0):
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


def test_the_seed_scenario_moves_the_sas_and_rewrites_the_policies(engine: KeyEngine) -> None:
    play_seed_move(engine)
    assert sorted(engine.dump_sas(), key=lambda sa: sa.spi) == [tunnel_sa(0x1000, NEW, HA), tunnel_sa(0x1001, HA, NEW)]
    assert without_index(engine.dump_policies()) == without_index(mn_policies(NEW))


def test_two_clients_of_one_hub_see_one_state(hub: Hub, engine: KeyEngine) -> None:
    other = open_inprocess(hub)
    spi = engine.allocate_spi(OLD_COA, HOME_AGENT, ESP, spi_range=(0x2000, 0x2FFF))
    assert 0x2000 <= spi <= 0x2FFF
    engine.update_sa(tunnel_sa(spi, OLD, HA))
    assert other.get_sa(HOME_AGENT, spi, ESP) == tunnel_sa(spi, OLD, HA)
    engine.delete_sa(HOME_AGENT, spi, ESP)
    with pytest.raises(KeyEngineError) as gone:
        other.get_sa(HOME_AGENT, spi, ESP)
    assert gone.value.errno == 3  # ESRCH
    out_policy = mn_policies(OLD)[0]
    engine.add_policy(out_policy)
    with pytest.raises(KeyEngineError) as exists:
        engine.add_policy(out_policy)
    assert exists.value.errno == 17  # EEXIST
    updated = engine.update_policy(Policy(out_policy.selector, out_policy.dir, out_policy.templates, priority=7))
    assert other.get_policy(OUT_SELECTOR, Dir.OUT) == updated
    engine.delete_policy(OUT_SELECTOR, Dir.OUT)
    assert other.dump_policies() == []
    other.close()


def test_migrate_errors_come_back_with_linux_errnos(hub: Hub, engine: KeyEngine) -> None:
    request = mn_migrates()[0]
    with pytest.raises(KeyEngineError) as no_policy:
        engine.migrate(request)
    assert no_policy.value.errno == 2  # ENOENT
    engine.add_policy(Policy(OUT_SELECTOR, Dir.OUT, (Template(ESP, Mode.TUNNEL, HOA, HA),)))  # other endpoints
    with pytest.raises(KeyEngineError) as stale:
        engine.migrate(request)
    assert stale.value.errno == 61  # ENODATA


def test_a_repeated_migrate_fails_on_linux_and_is_a_no_op_for_pfmigrate(hub: Hub, engine: KeyEngine) -> None:
    engine.add_sa(tunnel_sa(0x1000, OLD, HA))
    engine.add_policy(mn_policies(OLD)[0])
    request = mn_migrates()[0]
    engine.migrate(request)
    before = (engine.dump_sas(), engine.dump_policies())
    if hub.engine.semantics == "linux":
        with pytest.raises(KeyEngineError) as stale:
            engine.migrate(request)
        assert stale.value.errno == 61  # ENODATA: the reply was lost, and so is the retry
    else:
        engine.migrate(request)
    assert (engine.dump_sas(), engine.dump_policies()) == before


def test_a_migrate_is_announced_to_every_listener(hub: Hub, engine: KeyEngine) -> None:
    listeners = [open_inprocess(hub) for _ in range(2)]
    for listener in listeners:
        listener.subscribe()
    engine.add_policy(mn_policies(OLD)[0])
    engine.migrate(mn_migrates()[0])
    for listener in listeners:
        event = wait_for(listener, MigrateEvent)
        assert isinstance(event, MigrateEvent)
        assert event.request == mn_migrates()[0]
        listener.close()


def test_lifetimes_expire_on_the_hubs_clock(hub: Hub, engine: KeyEngine) -> None:
    assert isinstance(hub.clock, Clock)
    engine.subscribe()
    engine.add_sa(SecurityAssociation(OLD, HA, 0x4000, auth=AUTH, enc=ENC, lifetime=Lifetime(soft_add=10, hard_add=20)))
    assert engine.next_events(0.0) == []
    hub.clock.now = START + 10
    soft = wait_for(engine, ExpireEvent)
    assert isinstance(soft, ExpireEvent)
    assert (soft.sa.spi, soft.hard) == (0x4000, False)
    hub.clock.now = START + 20
    hard = wait_for(engine, ExpireEvent)
    assert isinstance(hard, ExpireEvent)
    assert hard.hard
    assert engine.dump_sas() == []


def test_an_outgoing_packet_without_an_sa_asks_the_key_managers(hub: Hub, engine: KeyEngine) -> None:
    engine.subscribe()
    engine.add_policy(mn_policies(OLD, reqid=5)[0])
    assert hub.outgoing(HOME_ADDRESS, HOME_AGENT, proto=MH) == 11  # EAGAIN: no SA yet
    acquire = wait_for(engine, AcquireEvent)
    assert isinstance(acquire, AcquireEvent)
    assert (acquire.src, acquire.dst, acquire.proto) == (OLD, HA, ESP)


def test_asyncio_use(hub: Hub) -> None:
    async def scenario() -> list[SecurityAssociation]:
        engine = open_inprocess_async(hub)
        try:
            await engine.add_sa(tunnel_sa(0x5000, OLD, HA))
            await engine.add_policy(mn_policies(OLD)[0])
            await engine.migrate(mn_migrates()[0])
            return await engine.dump_sas()
        finally:
            engine.close()

    assert asyncio.run(scenario()) == [tunnel_sa(0x5000, NEW, HA)]


async def next_of_kind(listener: AsyncKeyEngine, kind: type) -> Event:
    for _ in range(20):  # datagrams that are no event (an SPDADD's answer...) give []
        for event in await listener.next_events(1.0):
            if isinstance(event, kind):
                return event
    raise AssertionError(f"no {kind.__name__}")


def test_asyncio_listener_hears_the_migrate_and_an_expire(hub: Hub) -> None:
    async def scenario() -> tuple[Event, Event, list[Event]]:
        async with open_inprocess_async(hub) as engine, open_inprocess_async(hub) as listener:
            listener.subscribe()
            await engine.add_sa(tunnel_sa(0x5000, OLD, HA))
            await engine.add_policy(mn_policies(OLD)[0])
            await engine.migrate(mn_migrates()[0])
            migrated = await next_of_kind(listener, MigrateEvent)
            assert isinstance(hub.clock, Clock)
            await engine.add_sa(
                SecurityAssociation(OLD, HA, 0x4000, auth=AUTH, enc=ENC, lifetime=Lifetime(soft_add=10, hard_add=20))
            )
            hub.clock.now = START + 10
            expired = await next_of_kind(listener, ExpireEvent)
            return migrated, expired, listener.poll_events()

    migrated, expired, rest = asyncio.run(scenario())
    assert isinstance(migrated, MigrateEvent)
    assert migrated.request.bundles[0].new_src == NEW
    assert isinstance(expired, ExpireEvent)
    assert (expired.sa.spi, expired.hard) == (0x4000, False)
    assert rest == []


def test_asyncio_listener_that_falls_behind_is_told_it_lost_events() -> None:
    hub = Hub(Engine(), clock=Clock(), queue_limit=4)

    async def scenario() -> list[Event]:
        async with open_inprocess_async(hub) as engine, open_inprocess_async(hub) as listener:
            listener.subscribe()
            for spi in range(0x5000, 0x5010):
                await engine.add_sa(tunnel_sa(spi, OLD, HA))
            return await listener.next_events(1.0)

    assert [type(event) for event in asyncio.run(scenario())] == [EventsLost]


def test_a_listener_in_another_thread_wakes_on_a_broadcast(hub: Hub, engine: KeyEngine) -> None:
    listener = open_inprocess(hub)
    listener.subscribe()
    heard: list[Event] = []

    def listen() -> None:
        for _ in range(3):  # the SPDADD's answer, then the MIGRATE
            heard.extend(listener.next_events(5.0))
            if any(isinstance(event, MigrateEvent) for event in heard):
                return

    thread = threading.Thread(target=listen)
    thread.start()
    time.sleep(0.05)  # let it block first
    engine.add_policy(mn_policies(OLD)[0])
    engine.migrate(mn_migrates()[0])
    thread.join(10.0)
    assert [type(event) for event in heard] == [MigrateEvent]
    listener.close()


def test_a_full_queue_is_reported_as_lost_events() -> None:
    hub = Hub(Engine(), clock=Clock(), queue_limit=2)
    engine, listener = open_inprocess(hub), open_inprocess(hub)
    listener.subscribe()
    for spi in range(0x100, 0x105):
        engine.add_sa(tunnel_sa(spi, OLD, HA))
    events = listener.next_events(0.0)
    assert len(events) == 1
    assert isinstance(events[0], EventsLost)


def test_a_gap_in_generation_numbers_is_reported_as_lost_events() -> None:
    hub = Hub(Engine(), clock=Clock())
    engine, listener = open_inprocess(hub), open_inprocess(hub)
    listener.subscribe()
    engine.add_sa(tunnel_sa(0x100, OLD, HA))
    assert listener.next_events(0.0) == []  # an ADD is no event, but its number is noted
    engine.add_sa(tunnel_sa(0x101, OLD, HA))
    events_client = max(hub.queues)  # the newest client: the listener's event channel
    hub.drain(events_client)  # the listener missed the second ADD ...
    engine.add_policy(mn_policies(OLD)[0])
    events = listener.next_events(0.0)  # ... and sees the third one's number skip
    assert len(events) == 1
    assert isinstance(events[0], EventsLost)
    assert "did not arrive" in events[0].reason


# --- found by a review of the engine interface -----------------------------------------------------


def _esp(spi: int) -> SecurityAssociation:
    return SecurityAssociation(
        ip_address("10.0.0.1"), ip_address("10.0.0.2"), spi, enc=Algorithm("cbc(aes)", bytes(16))
    )


def test_a_dump_longer_than_a_clients_queue_comes_whole() -> None:
    """As Linux makes a dump while the socket is read: made as the client reads it."""
    hub = Hub(queue_limit=64)
    engine = open_inprocess(hub)
    for spi in range(0x1000, 0x1000 + 200):
        engine.add_sa(_esp(spi))
    assert len(engine.dump_sas()) == 200
    assert len(engine.dump_sas()) == 200  # (and the client is not left busy)


def test_a_migrate_is_not_taken_as_done_from_another_clients_broadcast() -> None:
    """Linux answers a MIGRATE's success only by its broadcast, which names no sender:
    one of another policy (same tunnel, other selector) that lands first is not it."""
    hub = Hub()
    mine, other = open_inprocess(hub), open_inprocess(hub)
    hoa, ha, old, new = (ip_address(a) for a in ("2001:db8:a::1", "2001:db8:f::1", "2001:db8:1::1", "2001:db8:2::1"))
    traffic, signalling = Selector.host(hoa, "2001:db8:c::1"), Selector.host(hoa, ha, 135)  # no policy for the second
    other.add_policy(Policy(traffic, Dir.OUT, (Template(50, Mode.TUNNEL, old, ha, reqid=1),)))
    bundle = (MigrateBundle(old, ha, new, ha, reqid=1),)
    send = mine.transport.send

    def after_the_other(data: bytes) -> None:  # the other client's MIGRATE lands between drain and send
        other.migrate(MigrateRequest(traffic, Dir.OUT, bundle))
        send(data)

    mine.transport.send = after_the_other  # type: ignore[method-assign]
    with pytest.raises(KeyEngineError) as refused:
        mine.migrate(MigrateRequest(signalling, Dir.OUT, bundle))
    assert refused.value.errno == errno.ENOENT


def test_an_asyncio_client_whose_loop_ended_does_not_break_the_others() -> None:
    """Its wake-up call has no loop to go to; the request that broadcast to it succeeds
    and the clients after it in the broadcast hear it too."""
    hub = Hub()
    witness = open_inprocess(hub)

    async def left_open() -> None:
        engine = open_inprocess_async(hub)
        await engine.add_sa(_esp(0x500))  # (it now waits on this loop for what it is sent)

    asyncio.run(left_open())
    open_inprocess(hub).add_sa(_esp(0x501))  # broadcast to the ended loop's client, then to the witness
    heard = []
    while (raw := witness.transport.recv_ready()) is not None:
        heard.append(decode(raw))
    assert [(m.type, m.require(SA).spi) for m in heard] == [(MsgType.ADD, 0x500), (MsgType.ADD, 0x501)]
