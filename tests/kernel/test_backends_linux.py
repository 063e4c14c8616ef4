"""Both Linux backends pass the same conformance suite against Linux 6.1 (in UML).

The seed's scenario (the mobile node's SAs and MH policies, then its MIGRATE to the new
care-of address) runs through one backend and must leave the same state as through the
other, read back through both backends and through iproute2. MIGRATE, ACQUIRE and
EXPIRE reach listeners of either kind, whichever interface caused them.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator

import pytest

from pfmigrate.backends.linux import open_pfkey, open_pfkey_async, open_xfrm, open_xfrm_async, probe_pfkey, probe_xfrm
from pfmigrate.engine import KeyEngine, KeyEngineError, Unsupported
from pfmigrate.model import (
    ESP,
    AcquireEvent,
    Algorithm,
    Dir,
    Event,
    ExpireEvent,
    Lifetime,
    MigrateEvent,
    Mode,
    Policy,
    SAState,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.seed import HOME_AGENT, NEW_COA, OLD_COA
from tests.seed_scenario import (
    AUTH,
    ENC,
    HA,
    NEW,
    OLD,
    OUT_SELECTOR,
    key,
    mn_migrates,
    mn_policies,
    play_seed_move,
    tunnel_sa,
    without_index,
)

pytestmark = pytest.mark.kernel

OPENERS: dict[str, Callable[[], KeyEngine]] = {"pfkey": open_pfkey, "xfrm": open_xfrm}


def sas(engine: KeyEngine) -> list[SecurityAssociation]:
    return sorted(engine.dump_sas(), key=lambda sa: sa.spi)


def ip_xfrm(*args: str) -> str:
    text = subprocess.run(["ip", "xfrm", *args], check=True, capture_output=True, text=True).stdout
    return re.sub(r"index \d+", "index N", text)


@pytest.fixture
def engines() -> Iterator[dict[str, KeyEngine]]:
    opened = {name: opener() for name, opener in OPENERS.items()}
    for engine in opened.values():
        engine.flush()
    yield opened
    opened["xfrm"].flush()
    for engine in opened.values():
        engine.close()


def test_probes_find_both_interfaces_with_migrate() -> None:
    assert probe_pfkey().migrate
    assert probe_xfrm().migrate


def test_the_same_scenario_leaves_the_same_state_through_either_backend(engines: dict[str, KeyEngine]) -> None:
    seen: dict[str, tuple[object, ...]] = {}
    for name, engine in engines.items():
        engine.flush()
        play_seed_move(engine)
        # Read back through both backends: they agree with each other and with the plan.
        sa_views = [sas(reader) for reader in engines.values()]
        policy_views = [sorted(reader.dump_policies(), key=key) for reader in engines.values()]
        assert sa_views[0] == sa_views[1]
        assert policy_views[0] == policy_views[1]
        assert sa_views[0] == [tunnel_sa(0x1000, NEW, HA), tunnel_sa(0x1001, HA, NEW)]
        assert without_index(policy_views[0]) == sorted(mn_policies(NEW), key=key)
        seen[name] = (sa_views[0], without_index(policy_views[0]), ip_xfrm("state"), ip_xfrm("policy"))
    assert seen["pfkey"] == seen["xfrm"]
    state = seen["xfrm"][2]
    assert isinstance(state, str)
    assert f"src {NEW_COA} dst {HOME_AGENT}" in state
    assert OLD_COA not in state


@pytest.mark.parametrize("name", sorted(OPENERS))
def test_each_backend_gets_updates_and_deletes(engines: dict[str, KeyEngine], name: str) -> None:
    engine, other = engines[name], engines["xfrm" if name == "pfkey" else "pfkey"]
    spi = engine.allocate_spi(OLD_COA, HOME_AGENT, ESP, spi_range=(0x2000, 0x2FFF), mode=Mode.TUNNEL)
    assert 0x2000 <= spi <= 0x2FFF
    larval = other.get_sa(HOME_AGENT, spi, ESP)  # (GETSPI's SA has its mode and nothing else yet)
    assert (larval.mode, larval.state, larval.enc) == (Mode.TUNNEL, SAState.LARVAL, None)
    engine.update_sa(tunnel_sa(spi, OLD, HA))
    assert other.get_sa(HOME_AGENT, spi, ESP) == tunnel_sa(spi, OLD, HA)
    engine.delete_sa(HOME_AGENT, spi, ESP)
    with pytest.raises(KeyEngineError) as gone:
        other.get_sa(HOME_AGENT, spi, ESP)
    assert gone.value.errno == 3  # ESRCH

    [out_policy, _] = mn_policies(OLD)
    engine.add_policy(out_policy)
    with pytest.raises(KeyEngineError) as exists:
        engine.add_policy(out_policy)
    assert exists.value.errno == 17  # EEXIST
    updated = engine.update_policy(Policy(out_policy.selector, out_policy.dir, out_policy.templates, priority=7))
    assert other.get_policy(OUT_SELECTOR, Dir.OUT) == updated
    engine.delete_policy(OUT_SELECTOR, Dir.OUT)
    assert other.dump_policies() == []


@pytest.mark.parametrize("name", sorted(OPENERS))
def test_migrate_errors_come_back_with_linux_errnos(engines: dict[str, KeyEngine], name: str) -> None:
    engine = engines[name]
    [request, _] = mn_migrates()
    with pytest.raises(KeyEngineError) as no_policy:
        engine.migrate(request)
    assert no_policy.value.errno == 2  # ENOENT
    engine.add_policy(mn_policies(NEW)[0])  # the template names the new CoA already
    with pytest.raises(KeyEngineError) as stale:
        engine.migrate(request)
    assert stale.value.errno == 61  # ENODATA


def test_pfkey_says_what_it_cannot_express(engines: dict[str, KeyEngine]) -> None:
    rfc4868 = Algorithm("hmac(sha256)", bytes(32), 128)
    sa = SecurityAssociation(OLD, HA, 0x3000, auth=rfc4868, enc=ENC)
    with pytest.raises(Unsupported, match="cannot truncate hmac\\(sha256\\) to 128 bits \\(Linux uses 96\\)"):
        engines["pfkey"].add_sa(sa)
    engines["xfrm"].add_sa(sa)  # XFRM can
    assert engines["xfrm"].get_sa(HOME_AGENT, 0x3000, ESP).auth == rfc4868
    # PF_KEY cannot even show it: its answer implies Linux's default.
    assert engines["pfkey"].get_sa(HOME_AGENT, 0x3000, ESP).auth == Algorithm("hmac(sha256)", bytes(32), 96)


def wait_for(engine: KeyEngine, kind: type, timeout: float = 10.0) -> Event:
    """The next event of ``kind``; what came meanwhile is read even after the deadline,
    so that a pause of the host that outlasts it does not hide an event."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        for event in engine.next_events(left) if left > 0 else engine.poll_events():
            if isinstance(event, kind):
                return event
        if left <= 0:
            raise AssertionError(f"no {kind.__name__} from {engine.name} within {timeout} s")


@pytest.mark.parametrize("actor", sorted(OPENERS))
def test_a_migrate_through_one_interface_is_announced_on_both(engines: dict[str, KeyEngine], actor: str) -> None:
    listeners = {name: opener() for name, opener in OPENERS.items()}
    try:
        for listener in listeners.values():
            listener.subscribe()
        engines[actor].add_policy(mn_policies(OLD)[0])
        [request, _] = mn_migrates()
        engines[actor].migrate(request)
        for name, listener in listeners.items():
            event = wait_for(listener, MigrateEvent)
            assert isinstance(event, MigrateEvent)
            assert event.request == request, name
    finally:
        for listener in listeners.values():
            listener.close()


def test_acquire_and_expire_reach_both_kinds_of_listener(engines: dict[str, KeyEngine]) -> None:
    listeners = {name: opener() for name, opener in OPENERS.items()}
    try:
        for listener in listeners.values():
            listener.subscribe()
        time.sleep(0.2)  # the PF_KEY listener's REGISTERs take effect
        selector = Selector.host("::1", "::1", 17)
        engines["xfrm"].add_policy(Policy(selector, Dir.OUT, (Template(ESP, Mode.TRANSPORT),)))
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as udp, contextlib.suppress(OSError):
            udp.sendto(b"needs an SA", ("::1", 5000))
        for listener in listeners.values():
            acquire = wait_for(listener, AcquireEvent)
            assert isinstance(acquire, AcquireEvent)
            assert (acquire.dst, acquire.proto) == (selector.dst.network_address, ESP)
        # Linux's timer skips the soft EXPIRE when it comes late enough to find the hard
        # limit passed too (a loaded machine): three seconds apart, it does not.
        expiring = Lifetime(soft_add=1, hard_add=4)
        short = SecurityAssociation(OLD, HA, 0x4000, auth=AUTH, enc=ENC, lifetime=expiring)
        engines["pfkey"].add_sa(short)
        for listener in listeners.values():
            soft = wait_for(listener, ExpireEvent)
            assert isinstance(soft, ExpireEvent)
            assert (soft.sa.spi, soft.hard) == (0x4000, False)
            hard = wait_for(listener, ExpireEvent)
            assert isinstance(hard, ExpireEvent)
            assert hard.hard
    finally:
        for listener in listeners.values():
            listener.close()


@pytest.mark.parametrize("name", sorted(OPENERS))
def test_asyncio_use(engines: dict[str, KeyEngine], name: str) -> None:
    opener = {"pfkey": open_pfkey_async, "xfrm": open_xfrm_async}[name]

    async def scenario() -> list[SecurityAssociation]:
        engine = opener()
        try:
            await engine.add_sa(tunnel_sa(0x5000, OLD, HA))
            await engine.add_policy(mn_policies(OLD)[0])
            await engine.migrate(mn_migrates()[0])
            return await engine.dump_sas()
        finally:
            engine.close()

    assert asyncio.run(scenario()) == [tunnel_sa(0x5000, NEW, HA)]
