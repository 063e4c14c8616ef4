"""Both agents in one process: each with its own key engine (as two hosts have two
kernels), a lossless link between them carrying the Mobility Headers, and an IKE
listener on each engine that hears the MIGRATEs. The demo, the tests and the handover
benchmark run the seed's journey on it. The engines are in-process ones unless told
otherwise (no root, no kernel support); the kernel tier gives it Linux's, one network
namespace per host.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv6Address

from pfmigrate.backends.inprocess import Hub, open_inprocess
from pfmigrate.engine import KeyEngine
from pfmigrate.mobility import policies
from pfmigrate.mobility.agent import Configure, HomeAgentAgent, MobileNodeAgent, Note, Send, Step
from pfmigrate.mobility.config import HAConfig, MNConfig
from pfmigrate.mobility.ipsec import carry_out, targets_by_reqid
from pfmigrate.mobility.timeline import Timeline
from pfmigrate.model import MigrateEvent, MigrateRequest, Policy, SecurityAssociation


@dataclass
class Leg:
    """One move, measured: from the CoA change to all its MIGRATEs acknowledged on the
    mobile node (``ipsec``), and to its Binding Acknowledgement (``acknowledged``)."""

    to: str
    ipsec: float = 0.0
    acknowledged: float = 0.0
    migrates: int = 0


EngineFactory = Callable[[str], tuple[KeyEngine, KeyEngine]]
"""For one host ("MN" or "HA"): its key engine, and a second handle on the same engine
already subscribed to its events (the IKE daemon's ear)."""


def inprocess_engines(host: str) -> tuple[KeyEngine, KeyEngine]:
    hub = Hub()
    engine, listener = open_inprocess(hub), open_inprocess(hub)
    listener.subscribe()
    return engine, listener


@dataclass
class Simulation:
    mn_config: MNConfig
    ha_config: HAConfig
    by_reqid: bool | None = None  # None: as the engines allow
    clock: Callable[[], float] = time.perf_counter
    timeline: Timeline = field(default_factory=Timeline)
    engines: EngineFactory = inprocess_engines

    def __post_init__(self) -> None:
        self.mn_engine, mn_listener = self.engines("MN")
        self.ha_engine, ha_listener = self.engines("HA")
        self.listeners = {"MN engine": mn_listener, "HA engine": ha_listener}
        mn_by_reqid = targets_by_reqid(self.mn_engine) if self.by_reqid is None else self.by_reqid
        ha_by_reqid = targets_by_reqid(self.ha_engine) if self.by_reqid is None else self.by_reqid
        self.mn = MobileNodeAgent(self.mn_config, by_reqid=mn_by_reqid)
        self.ha = HomeAgentAgent(self.ha_config, by_reqid=ha_by_reqid)
        node = self.ha_config.mobile_nodes[0]
        policies.apply(self.mn_engine, policies.mn_policy_set(self.mn_config, None).changes())  # at home
        policies.apply(self.ha_engine, policies.ha_policy_set(self.ha_config, node, None).changes())
        self.start = self.clock()
        self.wire: deque[tuple[str, Send]] = deque()
        self.coa: IPv6Address | None = None

    def now(self) -> float:
        return self.clock() - self.start

    # --- the journey ---

    def move(self, coa: str | IPv6Address) -> Leg:
        """The mobile node gets care-of address ``coa``; run until the link is quiet."""
        self.coa = IPv6Address(coa)
        return self._leg(str(self.coa), lambda now: self.mn.moved(IPv6Address(coa), now))

    def go_home(self) -> Leg:
        self.coa = None
        return self._leg("home", self.mn.returned_home)

    def _leg(self, to: str, begin: Callable[[float], list[Step]]) -> Leg:
        leg = Leg(to)
        started = self.clock()
        self._run("MN", begin(self.now()), leg, started)
        while self.wire:
            who, send = self.wire.popleft()
            self._deliver(who, send, leg, started)
        return leg

    def _run(self, who: str, steps: list[Step], leg: Leg, started: float) -> None:
        pending = deque(steps)
        while pending:
            step = pending.popleft()
            if isinstance(step, Note):
                self.timeline.add(self.now(), who, step.event, step.fields)
                if who == "MN" and step.event == "ba-received":
                    leg.acknowledged = self.clock() - started
            elif isinstance(step, Send):
                peer = "HA" if who == "MN" else "MN"
                self.timeline.add(self.now(), who, "BU" if who == "MN" else "BA", {}, to=peer)
                self.wire.append((peer, step))
            else:
                pending.extendleft(reversed(self._configure(who, step, leg, started)))

    def _configure(self, who: str, step: Configure, leg: Leg, started: float) -> list[Step]:
        engine = self.mn_engine if who == "MN" else self.ha_engine
        error, reason, announced = carry_out(engine, step)
        if who == "MN":
            leg.ipsec = self.clock() - started  # every change acknowledged by the engine
        moves = sum(1 for change in step.changes if isinstance(change, MigrateRequest))
        self.timeline.add(self.now(), f"{who} engine", "read back" if step.read_back else "configured",
                          {"changes": len(step.changes), "errno": error})  # fmt: skip
        self._heard(f"{who} engine")
        if who == "MN":
            leg.migrates += moves
            return self.mn.configured(error, reason, self.now(), why=step.why, announced=announced)
        return self.ha.configured(step.hoa, error, reason, self.now(), why=step.why, announced=announced)

    def _heard(self, lane: str) -> None:
        """What the IKE daemon on that host heard: the MIGRATEs, with KMADDRESS."""
        for event in self.listeners[lane].poll_events():
            if isinstance(event, MigrateEvent):
                r = event.request
                kma = str(r.kmaddress.local) if r.kmaddress else "-"
                self.timeline.add(self.now(), lane, "IKE heard MIGRATE", {"dir": r.dir.value, "kmaddress": kma})

    def _deliver(self, who: str, send: Send, leg: Leg, started: float) -> None:
        if who == "HA":
            steps = self.ha.received(send.data, send.src, send.dst, send.coa, self.now())
        else:
            steps = self.mn.received(send.data, send.src, send.dst, self.now())
        self._run(who, steps, leg, started)

    # --- the tables ---

    def tables(self) -> dict[str, list[str]]:
        return {"MN": _describe(self.mn_engine), "HA": _describe(self.ha_engine)}

    def close(self) -> None:
        for engine in (self.mn_engine, self.ha_engine, *self.listeners.values()):
            engine.close()


def _describe(engine: KeyEngine) -> list[str]:
    lines = [_sa_line(sa) for sa in sorted(engine.dump_sas(), key=lambda sa: sa.spi)]
    return lines + [
        _policy_line(p) for p in sorted(engine.dump_policies(), key=lambda p: (p.dir.value, str(p.selector)))
    ]


def _sa_line(sa: SecurityAssociation) -> str:
    return f"SA  spi 0x{sa.spi:04x} {sa.mode.value:9} {sa.src} -> {sa.dst} reqid {sa.reqid}"


def _policy_line(policy: Policy) -> str:
    via = ", ".join(f"{t.mode.value} {t.src}->{t.dst}" if t.src else t.mode.value for t in policy.templates)
    return f"SP  {policy.dir.value:3} {policy.selector}  via {via}"
