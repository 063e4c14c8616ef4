"""Journeys cut short anywhere: a node (a mobile node, a mobile router, one keyed by IKE
or with shared reqids; or a home agent serving two nodes) moves among places; each
move's batch, and each read-back after it, may lose one request before or after it is
carried out. Whatever the tables hold then, one read-back that loses nothing puts them
exactly at the goal, leaves the other node's entries alone, and a second finds
nothing missing.

The default suite runs a bounded share; ``make soak`` runs more
(``PFMIGRATE_JOURNEYS`` to choose).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv6Address

import pytest

from pfmigrate.backends.inprocess import _DUMPS, Hub, HubTransport, open_inprocess
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility import policies
from pfmigrate.mobility.config import Keying, ServedNode
from pfmigrate.mobility.ipsec import converge
from pfmigrate.mobility.policies import Change, Goal, PolicySet
from pfmigrate.model import Policy
from pfmigrate.sadb import Engine
from tests.lossy_world import LossyClient
from tests.soak import rounds
from tests.test_mobility_policies import COA1, COA2, COA3, HOA, HOA2, MNP, MNP2, SPIS2, home_agent, ipsec, mobile_node

JOURNEYS = rounds("PFMIGRATE_JOURNEYS", 40, 1000)
PLACES: tuple[IPv6Address | None, ...] = (None, COA1, COA2, COA3)
ELSEWHERE = IPv6Address("3ffe:501:ffff:900::9")  # where the home agent's other node is bound


class CuttingTransport(LossyClient):
    """A hub client that loses its ``cut``-th request from now, before it is carried out
    or only its answer after (dumps never: Linux pauses them)."""

    def __init__(self, inner: HubTransport) -> None:
        super().__init__(inner)
        self.cut = 0
        self.after = False

    def send(self, data: bytes) -> None:
        if data[1] in _DUMPS or self.cut <= 0:
            self.inner.send(data)
            return
        self.cut -= 1
        if self.cut:
            self.inner.send(data)
        elif self.after:
            self.inner.send(data)
            self.lose_answer()


@dataclass(frozen=True)
class Node:
    """One node's side: its sets, its moves and goals, and another node's entries that
    must be left alone (a home agent's)."""

    policy_set: Callable[[IPv6Address | None], PolicySet]
    move: Callable[[IPv6Address | None, IPv6Address | None, bool], list[Change]]
    goal: Callable[[IPv6Address | None], Goal]
    other: PolicySet | None = None


def _node(kind: str) -> Node:
    if kind.startswith("mn"):
        config = {
            "mn": mobile_node(),
            "mn-router": mobile_node(prefixes=(MNP, MNP2)),
            "mn-shared": mobile_node(ipsec(shared=True)),
            "mn-ike": mobile_node(ipsec(keying=Keying.IKE)),
        }[kind]
        return Node(
            lambda where: policies.mn_policy_set(config, where),
            lambda old, new, by_reqid: policies.mn_move(config, old, new, by_reqid=by_reqid),
            lambda where: policies.mn_goal(config, where),
        )
    shared = kind == "ha2-shared"
    first = ServedNode(HOA, (MNP,) if kind == "ha2-router" else (), ipsec(shared=shared))
    second = ServedNode(HOA2, (MNP2,) if kind == "ha2-router" else (), ipsec(reqid_base=108, spis=SPIS2, shared=shared))
    agent = home_agent(first, second)
    return Node(
        lambda where: policies.ha_policy_set(agent, first, where),
        lambda old, new, by_reqid: policies.ha_move(agent, first, old, new, by_reqid=by_reqid),
        lambda where: policies.ha_goal(agent, first, where),
        policies.ha_policy_set(agent, second, ELSEWHERE),
    )


def _tables(engine: KeyEngine) -> tuple[set[Policy], set[tuple[object, ...]]]:
    return (
        {dataclasses.replace(p, index=0) for p in engine.dump_policies()},
        {(sa.src, sa.dst, sa.spi, sa.proto, sa.mode, sa.reqid) for sa in engine.dump_sas()},
    )


def _expected(*sets: PolicySet) -> tuple[set[Policy], set[tuple[object, ...]]]:
    return (
        {p for s in sets for p in s.policies},
        {(sa.src, sa.dst, sa.spi, sa.proto, sa.mode, sa.reqid) for s in sets for sa in s.sas},
    )


def journey(seed: int, kind: str, semantics: str) -> str | None:
    """One journey; what went wrong, or ``None``."""
    rng, node = random.Random(seed), _node(kind)
    by_reqid = semantics == "pfmigrate" and kind not in ("mn-shared", "ha2-shared")
    hub = Hub(Engine(semantics=semantics))
    engine = open_inprocess(hub, timeout=0.0)
    transport = CuttingTransport(engine.transport)  # type: ignore[arg-type]
    engine.transport = transport
    believed = rng.choice(PLACES)
    policies.apply(engine, node.policy_set(believed).changes())
    if node.other is not None:
        policies.apply(engine, node.other.changes())

    def cut_somewhere() -> None:
        transport.cut, transport.after = rng.randint(1, 40), rng.random() < 0.5

    for _ in range(rng.randint(1, 5)):
        goal = rng.choice([p for p in PLACES if p != believed])
        cut_somewhere()
        try:
            policies.apply(engine, node.move(believed, goal, by_reqid))
            believed = goal
        except KeyEngineError:
            for _ in range(rng.randint(0, 3)):
                cut_somewhere()
                try:
                    converge(engine, node.goal(goal))
                    believed = goal
                    break
                except KeyEngineError:
                    continue
    transport.cut = 0
    target = node.goal(believed)
    try:
        converge(engine, target)
    except KeyEngineError as exc:
        return f"a read-back that lost nothing, to {believed}, failed: {exc}"
    wanted = _expected(node.policy_set(believed), *([node.other] if node.other else []))
    if _tables(engine) != wanted:
        have = _tables(engine)
        return f"at {believed}: SAs missing {wanted[1] - have[1]}, extra {have[1] - wanted[1]}"
    if converge(engine, target) != list(target.announcements):
        return "a second read-back found something missing"
    engine.close()
    return None


KINDS = ["mn", "mn-router", "mn-shared", "mn-ike", "ha2", "ha2-router", "ha2-shared"]


@pytest.mark.soak
@pytest.mark.parametrize("semantics", ["pfmigrate", "linux"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_read_back_reaches_the_goal_from_wherever_a_journey_was_cut(kind: str, semantics: str) -> None:
    failures = [(seed, why) for seed in range(JOURNEYS) if (why := journey(seed, kind, semantics))]
    assert not failures, f"{len(failures)} of {JOURNEYS} journeys, first: seed {failures[0][0]}: {failures[0][1]}"
