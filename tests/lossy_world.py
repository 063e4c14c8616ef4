"""A mobile node and its home agent on a virtual clock, with losses everywhere.

Both real agents (``MobileNodeAgent``, ``HomeAgentAgent``), each with its own in-process
engine (two hosts, two kernels), their timers run on one virtual clock, and a link
between them that loses Mobility Headers at random. The key engines lose too, in one of
two ways, each as Linux's ``pfkey_broadcast`` does when a receive buffer is full:

* ``answer_loss``: the answer to a request never reaches the agent, which hears
  ETIMEDOUT (the engine handles wait no time: the hub answers at once or not at all);
  half the time the request was carried out, half the time it was lost itself;
* ``broadcast_loss``: any message the engine sends a client is dropped, answers and
  broadcasts alike, and the client's next read says messages were lost (the IKE
  daemon's ear counts them).

Dumps are never cut: Linux makes a dump as its reader reads it, so it pauses rather
than drops. A handover moves the node to a random place among several care-of
addresses and home (sometimes twice or three times in a few seconds, so that a move
comes while the last is still being settled) and runs the world until it settles: nothing in flight, nothing
being read back, the mobile node registered where it is (or home) and the home
agent's binding cache saying the same. Then both tables must be exactly the policy
sets of that binding; anything else, or no settling within ``SETTLE_LIMIT``, is a
divergence.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from pfmigrate.backends.inprocess import _DUMPS, Hub, HubTransport, open_inprocess
from pfmigrate.engine import KeyEngine
from pfmigrate.mobility import policies
from pfmigrate.mobility.agent import Configure, HomeAgentAgent, MobileNodeAgent, Note, Send, Step
from pfmigrate.mobility.bul import MnState
from pfmigrate.mobility.cache import CacheState
from pfmigrate.mobility.ipsec import carry_out
from pfmigrate.mobility.seedconfig import seed_configs
from pfmigrate.model import EventsLost, Policy, SecurityAssociation
from pfmigrate.sadb import Delivery, Engine

LATENCY = 0.01  # seconds a Mobility Header takes across the link
SETTLE_LIMIT = 4 * 3600.0  # virtual seconds a handover may take to settle (bindings last up to an hour)
CARE_OF_ADDRESSES = tuple(IPv6Address(f"3ffe:501:ffff:{net:x}:1:2:3:4") for net in (0x400, 0x500, 0x600, 0x700))


class DroppingHub(Hub):
    """A hub that drops what it sends its clients at random, except the parts of a dump."""

    def __init__(self, engine: Engine, clock: Callable[[], float], lose: Callable[[], bool]) -> None:
        super().__init__(engine, clock=clock)
        self.lose = lose
        self.dropped = 0
        self.spared: set[int] = set()  # clients that lose nothing (the test's own reader)
        self._dumping = False

    def send(self, client: int, data: bytes) -> None:
        self._dumping = len(data) >= 2 and data[1] in _DUMPS
        try:
            super().send(client, data)
        finally:
            self._dumping = False

    def _make_dump(self, client: int) -> None:
        dumping, self._dumping = self._dumping, True
        try:
            super()._make_dump(client)
        finally:
            self._dumping = dumping

    def _deliver(self, deliveries: tuple[Delivery, ...]) -> None:
        if not self._dumping:
            kept = []
            for delivery in deliveries:
                if delivery.client not in self.spared and self.lose():
                    self.overflowed.add(delivery.client)  # the client's next read says so
                    self.dropped += 1
                else:
                    kept.append(delivery)
            deliveries = tuple(kept)
        super()._deliver(deliveries)


class LossyClient:
    """A hub client in front of another, which passes everything through; subclasses lose
    some of what is sent (``send``)."""

    def __init__(self, inner: HubTransport) -> None:
        self.inner = inner

    def send(self, data: bytes) -> None:
        self.inner.send(data)

    def lose_answer(self) -> None:
        """The answer to what was just sent never comes."""
        with self.inner.hub.lock:
            self.inner.hub.queues[self.inner.client].clear()

    def recv_ready(self) -> bytes | None:
        return self.inner.recv_ready()

    def recv(self, timeout: float | None) -> bytes | None:
        return self.inner.recv(timeout)

    def drain(self) -> None:
        self.inner.drain()

    def close(self) -> None:
        self.inner.close()


class AnswerLosingTransport(LossyClient):
    """A hub client whose answers are lost at random: half of those after the request was
    carried out, half with the request itself (either way the agent hears nothing)."""

    def __init__(self, inner: HubTransport, lose: Callable[[], bool], before: Callable[[], bool]) -> None:
        super().__init__(inner)
        self.lose = lose
        self.before = before
        self.lost = 0

    def send(self, data: bytes) -> None:
        if len(data) < 2 or data[1] in _DUMPS or not self.lose():
            self.inner.send(data)
            return
        self.lost += 1
        if self.before():
            return
        self.inner.send(data)
        self.lose_answer()


@dataclass
class Host:
    """One host's key engine: the agent's lossy handle, the IKE daemon's ear, and a
    lossless handle the test reads the tables with."""

    hub: Hub
    engine: KeyEngine
    ear: KeyEngine
    inspector: KeyEngine
    transport: AnswerLosingTransport | None = None

    def tables(self) -> tuple[list[tuple[object, ...]], list[Policy]]:
        return _sas(self.inspector.dump_sas()), _policies(self.inspector.dump_policies())

    def close(self) -> None:
        for handle in (self.engine, self.ear, self.inspector):
            handle.close()


def _sas(sas: list[SecurityAssociation]) -> list[tuple[object, ...]]:
    return sorted((sa.src, sa.dst, sa.spi, sa.proto, sa.mode.value, sa.reqid, sa.auth, sa.enc) for sa in sas)


def _policies(found: list[Policy] | tuple[Policy, ...]) -> list[Policy]:
    plain = [Policy(p.selector, p.dir, p.templates, p.action, p.priority) for p in found]
    return sorted(plain, key=repr)


@dataclass
class Counts:
    handovers: int = 0
    divergent: int = 0
    unsettled: int = 0
    mh_lost: int = 0
    answers_lost: int = 0
    messages_dropped: int = 0
    events_lost_heard: int = 0
    notes: Counter[str] = field(default_factory=Counter)

    def line(self, label: str) -> str:
        n = self.notes
        return (
            f"{label}: {self.handovers} handovers, {self.divergent} divergent ({self.unsettled} unsettled); "
            f"lost: {self.mh_lost} Mobility Headers, {self.answers_lost} PF_KEY answers, "
            f"{self.messages_dropped} engine messages ({self.events_lost_heard} losses heard by IKE ears); "
            f"outcome unknown {n['outcome-unknown']}, divergence {n['divergence']}, "
            f"read back again {n['read-back-again']}, converged {n['converged']}, "
            f"migrate failed {n['migrate-failed']}, 130 answered {n['ha-130']}, gave up {n['gave-up']}"
        )


class World:
    """The two agents, their engines, the link and the clock."""

    def __init__(
        self,
        seed: int,
        *,
        semantics: str = "pfmigrate",
        mh_loss: float = 0.0,
        answer_loss: float = 0.0,
        broadcast_loss: float = 0.0,
        settle_limit: float = SETTLE_LIMIT,
    ) -> None:
        self.rng = random.Random(seed)
        self.settle_limit = settle_limit
        self.now = 0.0
        self.mh_loss = mh_loss
        self.counts = Counts()
        self.mn_config, self.ha_config = seed_configs()
        self.node = self.ha_config.mobile_nodes[0]
        self.hoa = self.mn_config.home_address
        self.mn_host = self._host(semantics, answer_loss, broadcast_loss)
        self.ha_host = self._host(semantics, answer_loss, broadcast_loss)
        by_reqid = semantics == "pfmigrate"
        self.mn = MobileNodeAgent(self.mn_config, by_reqid=by_reqid)
        self.ha = HomeAgentAgent(self.ha_config, by_reqid=by_reqid)
        policies.apply(self.mn_host.inspector, policies.mn_policy_set(self.mn_config, None).changes())
        policies.apply(self.ha_host.inspector, policies.ha_policy_set(self.ha_config, self.node, None).changes())
        self.where: IPv6Address | None = None  # the mobile node's place (None: home)
        self.link: list[tuple[float, int, str, Send]] = []  # a heap: (arrival, order, to whom, what)
        self._order = itertools.count()

    def _chance(self, p: float) -> Callable[[], bool]:
        return lambda: p > 0 and self.rng.random() < p

    def _host(self, semantics: str, answer_loss: float, broadcast_loss: float) -> Host:
        hub = DroppingHub(Engine(semantics=semantics), lambda: self.now, self._chance(broadcast_loss))
        engine, ear, inspector = open_inprocess(hub, timeout=0.0), open_inprocess(hub), open_inprocess(hub)
        assert isinstance(inspector.transport, HubTransport)
        hub.spared.add(inspector.transport.client)
        ear.subscribe()
        transport = None
        if answer_loss:
            assert isinstance(engine.transport, HubTransport)
            transport = AnswerLosingTransport(engine.transport, self._chance(answer_loss), self._chance(0.5))
            engine.transport = transport
        return Host(hub, engine, ear, inspector, transport)

    # --- carrying out the agents' steps ---

    def _carry(self, who: str, steps: list[Step]) -> None:
        pending = deque(steps)
        while pending:
            step = pending.popleft()
            if isinstance(step, Note):
                self.counts.notes[step.event] += 1
                if who == "HA" and step.event == "ba-sent" and step.fields.get("status") == 130:
                    self.counts.notes["ha-130"] += 1
            elif isinstance(step, Send):
                if self.mh_loss and self.rng.random() < self.mh_loss:
                    self.counts.mh_lost += 1
                else:
                    heapq.heappush(self.link, (self.now + LATENCY, next(self._order), _peer(who), step))
            else:
                pending.extendleft(reversed(self._configure(who, step)))

    def _configure(self, who: str, step: Configure) -> list[Step]:
        host = self.mn_host if who == "MN" else self.ha_host
        error, reason, announced = carry_out(host.engine, step)
        for event in host.ear.poll_events():
            self.counts.events_lost_heard += isinstance(event, EventsLost)
        if who == "MN":
            return self.mn.configured(error, reason, self.now, why=step.why, announced=announced)
        return self.ha.configured(step.hoa, error, reason, self.now, why=step.why, announced=announced)

    def _deliver(self, to: str, send: Send) -> None:
        if to == "HA":
            self._carry("HA", self.ha.received(send.data, send.src, send.dst, send.coa, self.now))
        else:
            self._carry("MN", self.mn.received(send.data, send.src, send.dst, self.now))

    # --- time ---

    def run(self, until: float, done: Callable[[], bool] = lambda: False) -> bool:
        """Deliver and fire everything due up to ``until``; ``True`` as soon as ``done()``."""
        for _ in range(1_000_000):
            if done():
                return True
            due = [
                t for t in (self.link[0][0] if self.link else None, self.mn.timer(), self.ha.timer()) if t is not None
            ]
            if not due or min(due) > until:
                self.now = max(self.now, until)
                return done()
            self.now = max(self.now, min(due))
            while self.link and self.link[0][0] <= self.now:
                _, _, to, send = heapq.heappop(self.link)
                self._deliver(to, send)
            for who, agent in (("MN", self.mn), ("HA", self.ha)):
                timer = agent.timer()
                if timer is not None and timer <= self.now:
                    self._carry(who, agent.tick(self.now))
        raise AssertionError("the world did not come to rest: a timer fires without end")

    # --- the handovers ---

    def settled(self) -> bool:
        """Nothing in flight or being read back, and both agents say the node is ``where``."""
        if self.link or self.mn.settler.pending or self.ha.settler.pending:
            return False
        registration, binding = self.mn.registration, self.ha.cache.binding(self.hoa)
        if self.ha.cache.state(self.hoa) is CacheState.MIGRATING:
            return False
        if self.where is None:
            return registration.state is MnState.HOME and binding is None
        return (
            registration.state is MnState.REGISTERED
            and registration.coa == registration.sa_coa == self.where
            and binding is not None
            and binding.coa == self.where
        )

    def consistent(self) -> bool:
        """Both tables are the policy sets of the binding, no more and no less."""
        mn = policies.mn_policy_set(self.mn_config, self.where)
        ha = policies.ha_policy_set(self.ha_config, self.node, self.where)
        return self.mn_host.tables() == (_sas(list(mn.sas)), _policies(mn.policies)) and self.ha_host.tables() == (
            _sas(list(ha.sas)),
            _policies(ha.policies),
        )

    def handover(self) -> bool:
        """Move to a random other place (a restless node: up to two more moves, 0 to 5 s
        apart, before the first has settled) and run until it settles; whether all agrees."""
        places: list[IPv6Address | None] = [None, *CARE_OF_ADDRESSES]
        for step in range(self.rng.choice([1, 1, 2, 3])):
            if step:
                self.run(self.now + self.rng.uniform(0.0, 5.0))
            self.where = self.rng.choice([p for p in places if p != self.where])
            moved = self.mn.returned_home(self.now) if self.where is None else self.mn.moved(self.where, self.now)
            self._carry("MN", moved)
        settled = self.run(self.now + self.settle_limit, self.settled)
        agrees = settled and self.consistent()
        counts = self.counts
        counts.handovers += 1
        counts.unsettled += not settled
        counts.divergent += not agrees
        self.run(self.now + self.rng.uniform(0.0, 30.0))  # some quiet time, refreshes and all
        return agrees

    def close(self) -> None:
        counts = self.counts
        for host in (self.mn_host, self.ha_host):
            counts.answers_lost += host.transport.lost if host.transport else 0
            assert isinstance(host.hub, DroppingHub)
            counts.messages_dropped += host.hub.dropped
            host.close()


def _peer(who: str) -> str:
    return "HA" if who == "MN" else "MN"
