"""A real handover: ``pfmigrate mn`` and ``pfmigrate ha`` on Linux 6.1 (in UML), each in
its own network namespace with its own XFRM tables, the mobile node moving from one
access router to the other.

The topology (testbed/handover.py): MN, AR1, AR2, HA with the home link, a router and
a correspondent node, with the seed's addresses. Both agents run the seed's RFC 4877
set with manual keys on the linux-xfrm backend. The test shows: the first registration
from CoA1 sets up the tunnel; the MN's home-address traffic reaches the CN through it;
after the move to AR2 the MN MIGRATEs, replaces its route-optimisation state and sends
a Binding Update from CoA2, the HA MIGRATEs and acknowledges; both ends' tables (read
with ``ip xfrm``) hold CoA2 with unchanged SPIs and nothing of CoA1; the echo answers
again through the new path; and the gap is measured and printed. A second test moves
with half a second between the links, when the MN has no global address: that is no
return home, and the binding and tunnels stay until the new address comes. A third
deletes the MN's Home Address option state behind its back: the move puts it back.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from testbed.handover import (
    CN_ADDRESS,
    COA1,
    COA2,
    HOME_ADDRESS,
    HOME_AGENT,
    MN_IF,
    Node,
    Prober,
    Topology,
    UdpEcho,
    build,
)

from pfmigrate.mobility.seedconfig import FIRST_SPI, home_agent_toml, mobile_node_toml

pytestmark = pytest.mark.kernel

SPIS = [f"0x{spi:08x}" for spi in range(FIRST_SPI, FIRST_SPI + 8)]


def _number(value: object) -> object:
    """An enumerated field of the logs (``{"name": ..., "value": N}``, docs/json.md) as its number."""
    return value["value"] if isinstance(value, dict) and "value" in value else value


class Agent:
    """``pfmigrate mn|ha`` as a process in ``node``'s namespace, logging JSON lines."""

    def __init__(self, node: Node, role: str, config: str, directory: Path) -> None:
        self.config = directory / f"{role}.toml"
        self.config.write_text(config)
        self.log = directory / f"{role}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", node.name, sys.executable, "-m", "pfmigrate", role,
                 "--config", str(self.config)],
                stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )  # fmt: skip

    def events(self) -> list[dict[str, object]]:
        lines = self.log.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def wait_for(self, event: str, timeout: float = 30.0, **fields: object) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for found in self.events():
                if found.get("event") == event and all(_number(found.get(k)) == v for k, v in fields.items()):
                    return found
            assert self.process.poll() is None, f"the agent stopped:\n{self.log.read_text()}"
            time.sleep(0.02)
        raise AssertionError(f"no {event} {fields} within {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextmanager
def agents(prefix: str, directory: Path, mn_config: str) -> Iterator[tuple[Topology, Agent, Agent]]:
    """The topology with the seed's home agent running, then a mobile node on ``mn_config``;
    both stopped and the topology removed at the end."""
    topo = build(prefix)
    running: list[Agent] = []
    try:
        ha = Agent(topo.ha, "ha", home_agent_toml("linux-xfrm"), directory)
        running.append(ha)
        ha.wait_for("started", timeout=30)
        mn = Agent(topo.mn, "mn", mn_config, directory)
        running.append(mn)
        yield topo, mn, ha
    finally:
        for agent in running:
            agent.stop()
        topo.teardown()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[Topology, Agent, Agent]]:
    with agents("hov", tmp_path, mobile_node_toml("linux-xfrm", MN_IF)) as started:
        yield started


def xfrm(node: Node) -> str:
    return node.run("ip", "xfrm", "state").stdout + node.run("ip", "xfrm", "policy").stdout


def sa_endpoints(node: Node) -> dict[str, set[str]]:
    """Each SA's SPI with its two endpoints, from ``ip xfrm state``."""
    found: dict[str, set[str]] = {}
    ends: set[str] = set()
    for line in node.run("ip", "xfrm", "state").stdout.splitlines():
        words = line.split()
        if words[:1] == ["src"]:
            ends = {words[1], words[3]}
        elif "spi" in words:
            found[words[words.index("spi") + 1]] = ends
    return found


def test_a_real_handover_keeps_the_tunnel_and_its_spis(net: tuple[Topology, Agent, Agent]) -> None:
    topo, mn, ha = net
    mn.wait_for("registered", coa=str(COA1))
    for node in (topo.mn, topo.ha):
        tables = xfrm(node)
        assert f"src {COA1}" in tables or f"dst {COA1}" in tables, tables
    echo = UdpEcho(topo.cn, CN_ADDRESS)
    probe = Prober(topo.mn, HOME_ADDRESS, echo, interval=0.01)
    try:
        assert probe.wait_for_answers(20, 0.0, 15.0), "no echo from the CN through the tunnel at CoA1"
        moved = time.monotonic()
        assert topo.move() == COA2
        registered = mn.wait_for("registered", coa=str(COA2))
        ha.wait_for("bound", coa=str(COA2))
        assert probe.wait_for_answers(20, moved, 15.0), "no echo from the CN through the new path"
    finally:
        probe.stop()
        echo.close()
    transport, tunnel = {str(HOME_ADDRESS), str(HOME_AGENT)}, {str(COA2), str(HOME_AGENT)}
    for node in (topo.mn, topo.ha):
        tables = xfrm(node)
        assert str(COA1) not in tables, f"{node.name} still has the old care-of address:\n{tables}"
        found = sa_endpoints(node)
        for spi in SPIS:  # every manual SA, with its SPI unchanged, the tunnels' at CoA2
            assert found.get(spi) in (transport, tunnel), f"{node.name}: SPI {spi} is not where it belongs:\n{tables}"
        assert sum(found[spi] == tunnel for spi in SPIS) == 4, tables
    events = mn.events()
    at_coa2 = next(i for i, e in enumerate(events) if e.get("event") == "moved" and e.get("coa") == str(COA2))
    steps = [e["event"] for e in events[at_coa2:]]
    assert steps.index("migrate-done") < steps.index("bu-sent")  # IPsec moved before the BU
    for agent in (mn, ha):  # the tables were what the agents believed: nothing to repair
        assert not [e for e in agent.events() if e.get("event") == "divergence"]
    outage = probe.outage(after=moved)
    result = {
        "gap_ms": round(outage.gap * 1000, 1), "lost_probes": outage.lost, "probe_interval_ms": 10,
        "mn_saw_coa2_to_ba_ms": registered["since_move_ms"],
        "mn_saw_coa2_to_ipsec_moved_ms": mn.wait_for("migrate-done", to=str(COA2))["since_move_ms"],
    }  # fmt: skip
    print(f"\nhandover with the agents: {result}")
    if path := os.environ.get("PFMIGRATE_AGENT_HANDOVER_REPORT"):
        Path(path).write_text(json.dumps(result, indent=1))
    assert outage.gap < 5.0


def test_a_mobile_node_between_links_keeps_its_binding(net: tuple[Topology, Agent, Agent]) -> None:
    """Half a second with no global address is no return home: no deregistration, the
    tunnels stay, and the move completes at the next address."""
    topo, mn, ha = net
    mn.wait_for("registered", coa=str(COA1))
    assert topo.move(detached=0.5) == COA2
    mn.wait_for("detached")
    mn.wait_for("registered", coa=str(COA2))
    ha.wait_for("bound", coa=str(COA2))
    events = mn.events()
    assert not [e for e in events if e.get("event") == "home"], "the MN took no address for home"
    assert not [e for e in events if e.get("event") == "bu-sent" and e.get("lifetime") == 0]
    assert [e.get("coa") for e in events if e.get("event") == "moved"] == [str(COA1), str(COA2)]
    for node in (topo.mn, topo.ha):
        tables = xfrm(node)
        assert str(COA2) in tables, tables
        assert str(COA1) not in tables, tables


def test_a_route_optimisation_state_deleted_behind_the_mn_is_put_back_at_the_move(
    net: tuple[Topology, Agent, Agent],
) -> None:
    """Linux refuses to update a Home Address option state that is gone; the MN logs
    the repair, installs the state afresh and registers from the new address."""
    topo, mn, _ = net
    mn.wait_for("registered", coa=str(COA1))
    topo.mn.run("ip", "xfrm", "state", "deleteall", "proto", "hao")
    assert "proto hao" not in topo.mn.run("ip", "xfrm", "state").stdout
    assert topo.move() == COA2
    mn.wait_for("ro-repair")
    mn.wait_for("registered", coa=str(COA2))
    states = topo.mn.run("ip", "xfrm", "state").stdout
    assert "proto hao" in states, states
    assert str(COA2) in states, states


def test_a_refusal_reaches_the_mobile_node_at_its_care_of_address(tmp_path: Path) -> None:
    """The home agent refuses a Binding Update (R, from a node it does not serve as a
    mobile router: 140). No binding, so no route-optimisation state: the socket gives
    the BA its type 2 routing header, and the refusal reaches the mobile node."""
    router = mobile_node_toml("linux-xfrm", MN_IF).replace(
        "key_management_mobility = false",
        'key_management_mobility = false\nmobile_network_prefixes = ["3ffe:501:ffff:700::/64"]',
    )
    assert "mobile_network_prefixes" in router
    with agents("hrf", tmp_path, router) as (_, mn, ha):
        ha.wait_for("ba-sent", status=140)
        mn.wait_for("rejected", status=140, timeout=10)
