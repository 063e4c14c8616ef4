"""docs/deploy.md's host set-up is what the kernel tier's topology runs.

The guide marks its set-up commands with fenced blocks tagged ``deploy:<part>``; its
``deploy:vars`` block gives the example's values. testbed/handover.py builds the
topology (MN, two access routers, HA, a correspondent) through ``Node.ip``,
``Node.sysctl`` and a host-wide ``ip -batch``; here those are recorded instead of run,
for the mobile node and the home agent, and compared with the guide's commands with its
variables put in. Either side changing alone fails a test: a step the topology gains or
loses, an address, a sysctl, or a step of the guide. Steps that only one side has are
listed here by name, each with the reason the guide gives.
"""

from __future__ import annotations

import re
import shlex
from collections import Counter
from pathlib import Path

import pytest
from testbed import handover, uml
from testbed.handover import Node, Topology

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"
BLOCK = re.compile(r"^```sh deploy:(?P<part>[a-z-]+)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)

# What a real host needs and the topology does not (the guide says why, section 3).
REAL_ONLY = {
    "mn-real-only": [  # an interface that exists before `default` is set keeps its own DAD setting
        "sysctl -w net.ipv6.conf.mn0.accept_dad=0",
        "sysctl -w net.ipv6.conf.mn0.dad_transmits=0",
    ],
    "ha-real-only": [  # the same, and proxy ND: the topology's home link has no one else on it
        "sysctl -w net.ipv6.conf.home0.accept_dad=0",
        "sysctl -w net.ipv6.conf.home0.dad_transmits=0",
        "sysctl -w net.ipv6.conf.home0.proxy_ndp=1",
        "ip -6 neigh add proxy 3ffe:501:ffff:100:1:2:3:4 dev home0",
    ],
}
# What the topology runs and a real host does not (a namespace's loopback starts down;
# the topology's home link is a dummy interface).
TOPOLOGY_ONLY = {"topology-only": ["ip link set lo up"], "ha-topology-only": ["ip link add home0 type dummy"]}
PARTS = {"vars", "modules", "mn", "mn-visited", "mn-move", "ha", *REAL_ONLY, *TOPOLOGY_ONLY}


def guide_blocks(text: str) -> dict[str, list[str]]:
    """Each ``deploy:<part>``'s lines (blocks of one part joined), without comments and
    blank lines, continuation lines joined."""
    blocks: dict[str, list[str]] = {}
    for match in BLOCK.finditer(text):
        body = match["body"].replace("\\\n", " ")
        lines = [line.split("#")[0].strip() for line in body.splitlines()]
        blocks.setdefault(match["part"], []).extend(line for line in lines if line)
    return blocks


def expand(lines: list[str], variables: dict[str, str]) -> list[str]:
    def one(match: re.Match[str]) -> str:
        name = match[1]
        if name not in variables:
            raise AssertionError(f"the guide uses ${name}, which its deploy:vars block does not set")
        return variables[name]

    return [" ".join(shlex.split(re.sub(r"\$([A-Z_]+)", one, line))) for line in lines]


@pytest.fixture(scope="module")
def guide() -> dict[str, list[str]]:
    blocks = guide_blocks(GUIDE.read_text())
    assert set(blocks) == PARTS, "a deploy: block was added or removed: account for it here"
    variables = dict(line.split("=", 1) for line in blocks["vars"])
    return {part: expand(lines, variables) for part, lines in blocks.items() if part != "vars"}


class Recording(Node):
    """A node that records its commands as shell commands instead of running them."""

    def ip(self, *commands: str) -> None:
        RECORDED.setdefault(self.name, []).extend(f"ip {command}" for command in commands)

    def sysctl(self, key: str, value: str | int) -> None:
        RECORDED.setdefault(self.name, []).append(f"sysctl -w {key}={value}")


RECORDED: dict[str, list[str]] = {}


@pytest.fixture(scope="module")
def topology() -> dict[str, list[str]]:
    """What the topology runs on the MN and on the HA while it is built (``build``), and
    on the MN for a move (``mn-move``). The host-wide commands may only make the veth
    cables between the namespaces: anything else would be a set-up step to account for."""
    RECORDED.clear()
    wiring: list[str] = []

    def host(*argv: str, input: str | None = None, check: bool = True) -> None:
        assert argv == ("ip", "-batch", "-"), argv
        wiring.extend((input or "").splitlines())

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(handover, "_host", host)
        names = {role: f"t-{role}" for role in ("mn", "ar1", "ar2", "ha", "router", "cn")}
        topo = Topology("t", *(Recording(name) for name in names.values()))
        handover._configure(topo)
        built = {role: list(RECORDED.get(names[role], [])) for role in ("mn", "ha")}
        RECORDED.clear()
        topo.move()
        built["mn-move"] = RECORDED.get(names["mn"], [])
    cable = re.compile(r"link add \S+ netns t-\S+ type veth peer name \S+ netns t-\S+")
    assert wiring, "the topology made no links"
    assert all(cable.fullmatch(line) for line in wiring), wiring
    return built


def test_the_guides_values_are_the_topologys() -> None:
    blocks = guide_blocks(GUIDE.read_text())
    variables = dict(line.split("=", 1) for line in blocks["vars"])
    assert variables == {
        "HOA": str(handover.HOME_ADDRESS),
        "HA": str(handover.HOME_AGENT),
        "HOME_PLEN": str(handover.HOME_PREFIX.prefixlen),
        "HOME_IF": handover.HOME_IF,
        "UPLINK": handover.UPLINK,
        "HA_UPLINK": str(handover.CORE["ha"].network_address + 2),
        "HA_GATEWAY": str(handover.CORE["ha"].network_address + 1),
        "IF": handover.MN_IF,
        "VISITED_PLEN": str(handover.VISITED1.prefixlen),
        "COA": str(handover.COA1),
        "AR": str(handover.AR1_ADDRESS),
        "NEW_COA": str(handover.COA2),
        "NEW_AR": str(handover.AR2_ADDRESS),
    }
    assert handover.VISITED2.prefixlen == handover.VISITED1.prefixlen


def test_the_mobile_node_is_set_up_as_the_topology_sets_it_up(
    guide: dict[str, list[str]], topology: dict[str, list[str]]
) -> None:
    said = guide["mn"] + guide["mn-visited"] + guide["topology-only"]
    assert Counter(said) == Counter(topology["mn"])


def test_a_move_is_what_the_topology_does_on_the_mobile_node(
    guide: dict[str, list[str]], topology: dict[str, list[str]]
) -> None:
    assert guide["mn-move"] == topology["mn-move"]


def test_the_home_agent_is_set_up_as_the_topology_sets_it_up(
    guide: dict[str, list[str]], topology: dict[str, list[str]]
) -> None:
    said = guide["ha"] + guide["ha-topology-only"] + guide["topology-only"]
    assert Counter(said) == Counter(topology["ha"])


def test_steps_of_one_side_only_are_the_ones_accounted_for(
    guide: dict[str, list[str]], topology: dict[str, list[str]]
) -> None:
    for part, lines in {**REAL_ONLY, **TOPOLOGY_ONLY}.items():
        assert guide[part] == lines, part
    ran = set(topology["mn"]) | set(topology["ha"]) | set(topology["mn-move"])
    for part in REAL_ONLY:
        assert not set(guide[part]) & ran, f"the topology now runs a step of {part}: move it to the guide's set-up"


def test_the_modules_the_guide_loads_are_the_ones_the_kernel_tier_loads(guide: dict[str, list[str]]) -> None:
    (command,) = guide["modules"]
    words = command.split()
    assert words[:2] == ["modprobe", "-a"]
    assert set(words[2:]) <= set(uml.DEFAULT_MODULES)
    assert {"xfrm_user", "esp6", "mip6", "af_key"} == set(words[2:])


def test_the_recording_sees_a_changed_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is live: a topology whose home agent stops forwarding is told apart."""
    RECORDED.clear()
    monkeypatch.setattr(handover, "_host", lambda *argv, **kw: None)
    real = handover._no_dad
    monkeypatch.setattr(handover, "_no_dad", lambda node, *, forwarding: real(node, forwarding=False))
    topo = Topology("u", *(Recording(f"u-{r}") for r in ("mn", "ar1", "ar2", "ha", "router", "cn")))
    handover._configure(topo)
    assert "sysctl -w net.ipv6.conf.all.forwarding=1" not in RECORDED["u-ha"]
    RECORDED.clear()
