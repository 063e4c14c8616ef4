"""The agents' daemon shells on the in-process engine, with a stand-in for the Mobility
Header socket and for the interface's addresses: what arrives is carried out and
answered, a socket that refuses to send is logged while the daemon goes on, and a mobile
node between two links (no global address) is not taken for one that came home."""

from __future__ import annotations

import errno
import io
import json
import logging
from collections import deque
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from testbed.netns import in_new_netns

from pfmigrate import mip6
from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.backends.registry import open_backend
from pfmigrate.cli.mobility import keyd_reopener
from pfmigrate.engine import KeyEngine
from pfmigrate.jsonlogs import JsonFormatter
from pfmigrate.mobility import daemon, policies, routeopt
from pfmigrate.mobility.daemon import HomeAgentDaemon, MobileNodeDaemon
from pfmigrate.mobility.mhsocket import Received
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA
from tests.keyd_harness import KeydProcess
from tests.seed_scenario import without_index

HOA, HA, COA = IPv6Address(HOME_ADDRESS), IPv6Address(HOME_AGENT), IPv6Address(OLD_COA)


class Port:
    """Mobility Headers handed in by the test; what the daemon sends is kept, or refused
    with ``refuse`` while that is set."""

    def __init__(self) -> None:
        self.incoming: deque[Received] = deque()
        self.sent: list[tuple[bytes, IPv6Address, IPv6Address | None]] = []
        self.routing_headers: list[IPv6Address | None] = []
        self.refuse: int | None = None

    def send(
        self, message: bytes, dst: IPv6Address, *, src: IPv6Address | None = None, rh2: IPv6Address | None = None
    ) -> int:
        if self.refuse is not None:
            raise OSError(self.refuse, "Network is unreachable")
        self.sent.append((message, dst, src))
        self.routing_headers.append(rh2)
        return len(message)

    def receive(self, timeout: float | None = None) -> Received | None:
        return self.incoming.popleft() if self.incoming else None


def binding_update(sequence: int) -> Received:
    """A home registration from the seed's MN at its old care-of address, as Linux
    delivers it after the Home Address option: from the home address."""
    bu = mip6.BindingUpdate(sequence, mip6.BUFlags.A | mip6.BUFlags.H, lifetime=150)
    return Received(mip6.encode(bu, HOA, HA), HOA, HA, home_address_option=COA)


def acknowledgements(port: Port) -> list[mip6.BindingAck]:
    return [m for m in (mip6.decode(data, HA, dst) for data, dst, _ in port.sent) if isinstance(m, mip6.BindingAck)]


def test_a_binding_update_moves_the_tunnels_and_is_acknowledged() -> None:
    _, config = seed_configs()
    port = Port()
    with open_inprocess() as engine:
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: 100.0)
        port.incoming.append(binding_update(1))
        home_agent.turn(timeout=0.0)
        expected = policies.ha_policy_set(config, config.mobile_nodes[0], str(COA))
        assert without_index(engine.dump_policies()) == without_index(expected.policies)
    assert [(ack.status, ack.sequence) for ack in acknowledgements(port)] == [(mip6.BAStatus.ACCEPTED, 1)]
    assert port.sent[0][1:] == (HOA, HA)


def test_a_refused_send_is_logged_and_the_daemon_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    _, config = seed_configs()
    port = Port()
    with open_inprocess() as engine:
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: 100.0)
        port.refuse = errno.ENETUNREACH
        port.incoming.append(binding_update(1))
        with caplog.at_level(logging.WARNING, logger="pfmigrate.mobility"):
            home_agent.turn(timeout=0.0)
        failed = [r for r in caplog.records if r.getMessage() == "send-failed"]
        assert [(r.__dict__["errno"], r.__dict__["dst"]) for r in failed] == [(errno.ENETUNREACH, HOME_ADDRESS)]
        port.refuse = None  # the link is back; the mobile node retransmits its BU
        port.incoming.append(binding_update(2))
        home_agent.turn(timeout=0.0)
    assert [(ack.status, ack.sequence) for ack in acknowledgements(port)] == [(mip6.BAStatus.ACCEPTED, 2)]


def binding_updates(port: Port) -> list[tuple[int, int]]:
    """(sequence, lifetime) of each BU the mobile node sent."""
    updates = (mip6.decode(data, src or HOA, dst) for data, dst, src in port.sent)
    return [(m.sequence, m.lifetime) for m in updates if isinstance(m, mip6.BindingUpdate)]


def test_a_mobile_node_between_links_stays_bound_and_moves_on_at_the_next_address() -> None:
    mn_config, _ = seed_configs()
    port = Port()
    on_link: list[IPv6Address] = []
    with open_inprocess() as engine:
        mobile_node = MobileNodeDaemon(mn_config, engine, port, clock=lambda: 100.0, read=lambda _: on_link)
        mobile_node.turn(timeout=0.0)
        assert port.sent == []  # no address yet: nowhere to move to
        on_link[:] = [COA]
        mobile_node.turn(timeout=0.0)
        at_old = without_index(engine.dump_policies())
        assert at_old == without_index(policies.mn_policy_set(mn_config, str(COA)).policies)
        on_link[:] = []  # the old link is gone, the new one not yet up
        mobile_node.turn(timeout=0.0)
        assert without_index(engine.dump_policies()) == at_old
        on_link[:] = [IPv6Address(NEW_COA)]
        mobile_node.turn(timeout=0.0)
        assert without_index(engine.dump_policies()) == without_index(
            policies.mn_policy_set(mn_config, NEW_COA).policies
        )
    assert [lifetime > 0 for _, lifetime in binding_updates(port)] == [True, True]  # no deregistration between


def test_without_xfrm_netlink_there_is_no_route_optimisation_and_it_is_said(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def no_xfrm(**_: object) -> None:
        raise OSError(errno.EPROTONOSUPPORT, "Protocol not supported")

    monkeypatch.setattr(daemon, "open_xfrm", no_xfrm)
    with open_inprocess() as engine, caplog.at_level(logging.WARNING, logger="pfmigrate.mobility"):
        assert daemon.route_optimization(engine) is None
    assert [r.__dict__["event"] for r in caplog.records] == ["no-route-optimisation"]


@pytest.mark.usefixtures("netns")
def test_route_optimisation_goes_to_the_kernel_whatever_keeps_the_ipsec() -> None:
    """On this machine's kernel, in a namespace of its own: the in-process engine keeps
    the IPsec, the kernel's XFRM gets the ro states; a kernel without ``mip6`` refuses
    them, and the daemon goes on without (said in the log) instead of failing."""

    def start() -> tuple[str, bool, list[str]]:
        mn_config, _ = seed_configs()
        with open_inprocess() as engine:
            ro = daemon.route_optimization(engine)
            assert ro is not None
            kernel = ro.engine.name
            node = MobileNodeDaemon(mn_config, engine, Port(), read=lambda _: [], ro=ro)
            node.turn(timeout=0.0)
            states = [str(s) for s in ro.states()]
            ro.engine.close()
            return kernel, node.ro is not None, states

    kernel, kept, states = in_new_netns(start)
    assert kernel == "linux-xfrm"
    assert kept == bool(states)  # kept exactly where the kernel took the base states
    if kept:
        assert any("RH2" in state for state in states)


def test_the_log_shows_each_handover_step_with_its_time_since_the_move() -> None:
    """JSON lines as ``pfmigrate mn`` writes them: each step of the move with the
    milliseconds since the new care-of address appeared, growing step by step."""
    ticks = iter(range(1_000_000))

    def clock() -> float:
        return 100.0 + next(ticks) / 1000  # a millisecond a look

    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("pfmigrate.mobility")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    mn_config, _ = seed_configs()
    try:
        with open_inprocess() as engine:
            node = MobileNodeDaemon(mn_config, engine, Port(), clock=clock, read=lambda _: [COA])
            node.turn(timeout=0.0)
    finally:
        logger.removeHandler(handler)
        logger.level = level
    steps = [json.loads(line) for line in lines.getvalue().splitlines()]
    timed = [(s["event"], s["since_move_ms"]) for s in steps if s.get("since_move_ms") is not None]
    assert [event for event, _ in timed][:1] == ["moved"]
    assert {"migrate", "migrate-done", "bu-sent"} <= {event for event, _ in timed}
    times = [ms for _, ms in timed]
    assert times == sorted(times)
    assert times[-1] > times[0]
    assert all(s["time"].endswith("Z") and s["level"] == "info" for s in steps)


def test_an_acknowledgement_finds_the_care_of_address_without_a_binding_state() -> None:
    """RFC 6275 §9.5.4: a BA goes back to where its BU came from. A refusal has no binding
    (here R, which the seed's home agent refuses with 140), and without route
    optimisation no acceptance has one either: the socket gives the type 2 routing
    header. Where a binding's ro state is there, the kernel adds it instead."""
    _, config = seed_configs()
    port = Port()
    refused = mip6.BindingUpdate(1, mip6.BUFlags.A | mip6.BUFlags.H | mip6.BUFlags.R, lifetime=150)
    with open_inprocess() as engine:
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: 100.0)
        port.incoming.append(Received(mip6.encode(refused, HOA, HA), HOA, HA, home_address_option=COA))
        home_agent.turn(timeout=0.0)
        port.incoming.append(binding_update(2))
        home_agent.turn(timeout=0.0)
        home_agent.bindings[HOA] = routeopt.home_agent_binding(HA, HOA, COA)  # (as a kernel with mip6 has it)
        port.incoming.append(binding_update(3))
        home_agent.turn(timeout=0.0)
    assert [(ack.status, ack.sequence) for ack in acknowledgements(port)] == [
        (mip6.BAStatus.MOBILE_ROUTER_OPERATION_NOT_PERMITTED, 1),
        (mip6.BAStatus.ACCEPTED, 2),
        (mip6.BAStatus.ACCEPTED, 3),
    ]
    assert [dst for _, dst, _ in port.sent] == [HOA] * 3
    assert port.routing_headers == [COA, COA, None]


class Breaking:
    """A hub client that breaks (as keyd's connection does when keyd restarts) after
    ``requests`` requests; later handles come from ``reopen``, which fails ``refusals``
    times first (keyd not back yet)."""

    def __init__(self, hub: Hub, requests: int, refusals: int = 0) -> None:
        self.hub = hub
        self.left = requests
        self.refusals = refusals
        self.opened = 0

    def first(self) -> KeyEngine:
        engine = open_inprocess(self.hub)
        send = engine.transport.send

        def breaking_send(data: bytes) -> None:
            if self.left == 0:
                raise ConnectionResetError(errno.ECONNRESET, "keyd closed the connection")
            self.left -= 1
            send(data)

        engine.transport.send = breaking_send  # type: ignore[method-assign]
        return engine

    def reopen(self) -> KeyEngine:
        if self.refusals:
            self.refusals -= 1
            raise ConnectionRefusedError(errno.ECONNREFUSED, "nobody listens on that socket")
        self.opened += 1
        return open_inprocess(self.hub)


@pytest.mark.parametrize("refusals", [0, 3])
@pytest.mark.parametrize("requests", [2, 5])
def test_a_key_engine_that_goes_away_mid_move_is_opened_again_and_the_move_settled(
    requests: int, refusals: int, caplog: pytest.LogCaptureFixture
) -> None:
    """keyd restarts while the home agent moves a node's tunnels: the outcome is unknown,
    so the shell opens the engine again (once keyd is back) and the agent reads the
    tables back, applies what is missing and only then acknowledges."""
    _, config = seed_configs()
    port, hub, now = Port(), Hub(), [100.0]
    breaking = Breaking(hub, 0, refusals)
    home_agent = HomeAgentDaemon(config, open_inprocess(hub), port, clock=lambda: now[0], reopen=breaking.reopen)
    breaking.left = requests
    home_agent.engine = breaking.first()
    port.incoming.append(binding_update(1))
    with caplog.at_level(logging.INFO, logger="pfmigrate.mobility"):
        home_agent.turn(timeout=0.0)
        while not acknowledgements(port) and now[0] < 200.0:
            due = home_agent.agent.timer()
            assert due is not None, "nothing left to settle the move"
            now[0] = due
            home_agent.turn(timeout=0.0)
    events = [r.getMessage() for r in caplog.records]
    assert events.count("engine-lost") == 1
    assert events.count("engine-back") == 1
    assert breaking.opened == 1
    assert [(ack.status, ack.sequence) for ack in acknowledgements(port)] == [(mip6.BAStatus.ACCEPTED, 1)]
    expected = policies.ha_policy_set(config, config.mobile_nodes[0], str(COA))
    with open_inprocess(hub) as look:
        assert without_index(look.dump_policies()) == without_index(expected.policies)
        assert sorted(sa.spi for sa in look.dump_sas()) == sorted(sa.spi for sa in expected.sas)


def test_without_a_way_to_reopen_the_engine_a_daemon_stops_when_it_goes_away() -> None:
    _, config = seed_configs()
    hub = Hub()
    home_agent = HomeAgentDaemon(config, open_inprocess(hub), Port(), clock=lambda: 100.0)
    home_agent.engine = Breaking(hub, 1).first()
    port = home_agent.mh
    assert isinstance(port, Port)
    port.incoming.append(binding_update(1))
    with pytest.raises(ConnectionResetError):
        home_agent.turn(timeout=0.0)


def test_a_home_agent_on_keyd_settles_a_move_across_a_keyd_restart(tmp_path: Path) -> None:
    """keyd killed (-9) in the middle of a move and started again on its journal: the home
    agent hears its connection break, finds keyd not back yet (the real reopener, which
    asks for keyd again, never for the default backend), then reads the tables back
    once keyd is there and acknowledges only then."""
    keyd = KeydProcess(tmp_path)
    keyd.start()
    _, config = seed_configs()
    port, now = Port(), [100.0]
    try:
        engine = open_backend("keyd", keyd_socket=keyd.socket)
        home_agent = HomeAgentDaemon(config, engine, port, clock=lambda: now[0], reopen=keyd_reopener(keyd.socket))
        keyd.kill()  # the move meets a keyd that is gone
        port.incoming.append(binding_update(1))
        home_agent.turn(timeout=0.0)
        assert home_agent.engine_lost
        now[0] = home_agent.agent.timer() or now[0]
        home_agent.turn(timeout=0.0)  # still away: the reopener says so, nothing breaks
        assert not acknowledgements(port)
        keyd.start()
        while not acknowledgements(port) and now[0] < 200.0:
            now[0] = home_agent.agent.timer() or now[0] + 1.0
            home_agent.turn(timeout=0.0)
        assert [(ack.status, ack.sequence) for ack in acknowledgements(port)] == [(mip6.BAStatus.ACCEPTED, 1)]
        assert home_agent.engine.name == "keyd"
        expected = policies.ha_policy_set(config, config.mobile_nodes[0], str(COA))
        assert without_index(home_agent.engine.dump_policies()) == without_index(expected.policies)
        home_agent.engine.close()
    finally:
        keyd.stop()
