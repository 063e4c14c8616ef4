"""``pfmigrate mn`` and ``pfmigrate ha``: the agents with real sockets on Linux.

The shell around ``agent.MobileNodeAgent`` / ``agent.HomeAgentAgent``: the key engine
named in the configuration, a Mobility Header socket (``mhsocket``), and on the
linux-xfrm backend the route-optimisation states that put the Home Address option on
the mobile node's Binding Updates and the type 2 routing header on the home agent's
Acknowledgements (``routeopt``; MIGRATE cannot move those, so they are replaced after
each move, as UMIP does). The mobile node watches its interface for a new global
address: that is its care-of address; an address on the home prefix means home; no
global address at all means it is between links, and nothing changes until one comes.

Logs are JSON lines: each note of the agent with the milliseconds since the movement
that started it (``since_move_ms``), so a handover reads step by step with its time.
"""

from __future__ import annotations

import errno
import logging
import time
from collections import deque
from collections.abc import Callable
from ipaddress import IPv6Address, IPv6Network
from pathlib import Path
from typing import Any, Final, Literal, cast

from pfmigrate.backends import registry
from pfmigrate.backends.linux import open_xfrm
from pfmigrate.engine import KeyEngine, KeyEngineError
from pfmigrate.mobility import policies, routeopt
from pfmigrate.mobility.agent import Configure, HomeAgentAgent, MobileNodeAgent, Note, Send, Step
from pfmigrate.mobility.bul import MnState
from pfmigrate.mobility.cache import CacheState
from pfmigrate.mobility.config import HAConfig, IPsec, MNConfig, Protection, Toward
from pfmigrate.mobility.control import ControlServer, Request, Waitable
from pfmigrate.mobility.ipsec import Outcome, carry_out, reconcile, targets_by_reqid
from pfmigrate.mobility.metrics import AgentMetrics
from pfmigrate.mobility.mhsocket import MobilityHeaderPort, Received
from pfmigrate.mobility.routeopt import RoSet, RouteOptimization
from pfmigrate.mobility.status import Entry, Status, policy_bundles, to_json
from pfmigrate.model import Policy

log = logging.getLogger("pfmigrate.mobility")

TENTATIVE, DADFAILED, HOMEADDRESS, DEPRECATED = 0x40, 0x08, 0x10, 0x20  # IFA_F_* flags in /proc/net/if_inet6
POLL = 0.02  # seconds between looks at the interface's addresses
#: Notes that announce the Send after them: logged (and counted) only once it went.
SENT_NOTES: Final = frozenset({"bu-sent", "ba-sent", "be-sent"})


#: What a socket says when the other end went away (keyd stopped or restarted).
GONE: Final = frozenset({
    errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ESHUTDOWN,
    errno.EBADF, errno.ENOENT,
})  # fmt: skip


def open_engine(name: str | None, keyd_socket: Path | None) -> KeyEngine:
    return registry.open_backend(name, keyd_socket=keyd_socket)


def _without_route_optimization(reason: str) -> None:
    log.warning("no route optimisation: Binding Updates go without the Home Address option",
                extra={"event": "no-route-optimisation", "reason": reason})  # fmt: skip


def route_optimization(engine: KeyEngine, *, wanted: bool = True) -> RouteOptimization | None:
    """Where the route-optimisation states go: the kernel's XFRM, whichever engine keeps
    the IPsec (they act on this host's Mobility Header packets); ``None``, said in the
    log, where this kernel has no XFRM netlink or the operator chose to go without
    (``wanted`` false: ``--no-route-optimisation``)."""
    if not wanted:
        _without_route_optimization("turned off by --no-route-optimisation or route_optimisation = false")
        return None
    if engine.name == "linux-xfrm":
        return RouteOptimization(engine)
    try:
        return RouteOptimization(open_xfrm())
    except (OSError, KeyEngineError) as exc:
        _without_route_optimization(str(exc))
        return None


def addresses(interface: str, table: Path = Path("/proc/net/if_inet6")) -> list[IPv6Address]:
    """The usable global IPv6 addresses of ``interface``: not tentative, not failed, and
    not flagged ``home`` (a home address set up for use away from home, which says
    nothing about where the node is). Deprecated ones (an old link's address Linux keeps
    until its lifetime ends) only when there is nothing better."""
    preferred: list[IPv6Address] = []
    deprecated: list[IPv6Address] = []
    for line in table.read_text().splitlines():
        raw, _, _, scope, flags, name = line.split()
        bits = int(flags, 16)
        if name == interface and int(scope, 16) == 0 and not bits & (TENTATIVE | DADFAILED | HOMEADDRESS):
            (deprecated if bits & DEPRECATED else preferred).append(IPv6Address(int(raw, 16)))
    return preferred or deprecated


HOME: Final = "home"
Location = IPv6Address | Literal["home"] | None


def location(
    config: MNConfig, read: Callable[[str], list[IPv6Address]] = addresses, current: Location = None
) -> Location:
    """Where the mobile node is: its care-of address (the interface's global address
    off the home prefix; the ``current`` one while it is still there, so that a second
    address is no move), ``HOME`` with an address on the home prefix (or only the home
    address itself), or ``None`` with no global address at all: detached, between two
    links, which is no move at all."""
    home = IPv6Network(f"{config.home_address}/{config.home_prefix_length}", strict=False)
    found = read(config.interface)
    usable = [a for a in found if a != config.home_address]
    if any(a in home for a in usable):
        return HOME
    if current in usable:
        return current
    if usable:
        return usable[0]
    return HOME if found else None


class _Shell:
    """What both agents' shells share: the engine, the MH socket, the log.

    A key engine that goes away under a change (keyd restarted: the connection breaks)
    leaves its outcome unknown, as a lost answer does: given ``reopen``, the shell opens
    the engine again before the agent's next read-back, which settles it; without it,
    the daemon stops with the reason (``serve``)."""

    def __init__(
        self,
        engine: KeyEngine,
        mh: MobilityHeaderPort,
        clock: Callable[[], float],
        ro: RouteOptimization | None,
        reopen: Callable[[], KeyEngine] | None = None,
        role: str = "",
    ) -> None:
        self.engine = engine
        self.mh = mh
        self.clock = clock
        self.ro = ro
        self.reopen = reopen
        self.engine_lost = False
        self.moved_at: float | None = None
        self.metrics = AgentMetrics(role)
        self.control: ControlServer | None = None  # served while the daemon waits (``receive``)
        self.unacknowledged: set[str] = set()  # home addresses whose last BA could not be sent

    def receive(self, wait: float) -> Received | None:
        """The next Mobility Header within ``wait`` seconds; the control socket is served
        meanwhile, so a status request is answered at once, not after the wait."""
        if self.control is None:
            return self.mh.receive(wait)
        fileno = getattr(self.mh, "fileno", None)
        if fileno is None:  # (a stand-in port: serve what is there, then wait on the port)
            self.control.wait(None, 0.0)
            return self.mh.receive(wait)
        return self.mh.receive(0.0) if self.control.wait(cast(Waitable, self.mh), wait) else None

    def answer(self, request: Request) -> dict[str, Any]:
        """The control socket's answer to ``request`` (``status`` is the only command). A
        bug met here is logged; the client is told, and the daemon goes on serving."""
        try:
            return {"status": to_json(self.status())}
        except Exception:
            log.exception("control-error", extra={"event": "control-error", "command": request.command})
            raise

    def status(self) -> Status:
        raise NotImplementedError

    def bound(self) -> int:
        """How many bindings this agent holds (without reading the key engine)."""
        raise NotImplementedError

    def render_metrics(self) -> str:
        self.metrics.bindings = self.bound()
        return self.metrics.render()

    def policies(self) -> tuple[list[Policy], str | None]:
        """The engine's policies, or why they cannot be read now (for a status)."""
        if self.engine_lost:
            return [], "the key engine is away; it is opened again at the next move"
        try:
            return self.engine.dump_policies(), None
        except OSError as exc:
            return [], str(exc) if isinstance(exc, KeyEngineError) else exc.strerror or str(exc)

    def carry_out(self, step: Configure) -> Outcome:
        """``ipsec.carry_out`` on this shell's engine, opened again if it went away."""
        if self.engine_lost:
            assert self.reopen is not None
            try:
                self.engine = self.reopen()
            except OSError as exc:
                return Outcome(errno.ENOTCONN, f"the key engine is still away: {exc.strerror or exc}")
            self.engine_lost = False
            log.info("engine-back", extra={"event": "engine-back", "backend": self.engine.name})
        try:
            return carry_out(self.engine, step)
        except KeyEngineError:
            raise
        except OSError as exc:
            said = exc.strerror or str(exc)
            if exc.errno not in GONE:  # (a passing error of the socket: the outcome is unknown, that is all)
                return Outcome(exc.errno or errno.EIO, f"the key engine's socket failed: {said}")
            if self.reopen is None:
                raise
            log.warning("engine-lost", extra={"event": "engine-lost", "reason": said})
            self.engine.close()
            self.engine_lost = True
            return Outcome(exc.errno or errno.EIO, f"the key engine went away: {said}")

    def carry(self, steps: list[Step]) -> None:
        """Carry the agent's steps out in order; a key-engine change's outcome goes back to
        the agent, whose next steps come before the rest."""
        pending = deque(steps)
        while pending:
            step = pending.popleft()
            if isinstance(step, Note) and step.event in SENT_NOTES and pending and isinstance(pending[0], Send):
                sent = pending.popleft()
                assert isinstance(sent, Send)
                self.send(sent, step)  # (said only once it went)
            elif isinstance(step, Note):
                self.note(step)
            elif isinstance(step, Send):
                self.send(step)
            else:
                pending.extendleft(reversed(self.configure(step)))

    def configure(self, step: Configure) -> list[Step]:
        """Apply ``step`` to the key engine; the agent's answer to its outcome."""
        raise NotImplementedError

    @staticmethod
    def guarded(receive: Callable[[], list[Step]]) -> list[Step]:
        """The agent's steps for one received packet; a bug that packet meets is logged,
        and the daemon goes on serving (one packet must not stop a home agent)."""
        try:
            return receive()
        except Exception:
            log.exception("agent error", extra={"event": "agent-error"})
            return []

    def send(self, step: Send, said: Note | None = None) -> None:
        """Send one Mobility Header, then log ``said`` (the note announcing it); a refusal
        (no route while the link changes, say) is logged instead, and the agent's
        retransmission timer tries again. A Binding Acknowledgement that could not go
        leaves its binding unacknowledged: no ``bound`` is said for it."""
        try:
            self.mh.send(step.data, step.dst, src=step.src, rh2=self.routing_header(step))
        except OSError as exc:
            reason = exc.strerror or str(exc)
            log.warning("send-failed", extra={"event": "send-failed", "dst": str(step.dst), "errno": exc.errno,
                                              "reason": reason})  # fmt: skip
            if said is not None and said.event == "ba-sent":
                self.unacknowledged.add(str(said.fields.get("hoa")))
                self.note(Note("ba-send-failed", {**said.fields, "errno": exc.errno, "reason": reason}), log.warning)
            return
        if said is not None:
            if said.event == "ba-sent":
                self.unacknowledged.discard(str(said.fields.get("hoa")))
            self.note(said)

    def routing_header(self, step: Send) -> IPv6Address | None:
        """The care-of address for a type 2 routing header of the socket's own, if the
        packet needs one the kernel will not add."""
        return None

    def note(self, step: Note, say: Callable[..., None] = log.info) -> None:
        if step.event == "bound" and str(step.fields.get("hoa")) in self.unacknowledged:
            return  # its acknowledgement did not go: ``ba-send-failed`` said so, and it is not bound for the node
        now = self.clock()
        since = None if self.moved_at is None else round((now - self.moved_at) * 1000, 3)
        say(step.event, extra={"event": step.event, "since_move_ms": since, **step.fields})
        self.metrics.note(step.event, step.fields, now)

    def install_ro_base(self, base: RoSet) -> None:
        """The states every binding needs; a kernel that refuses them (no ``mip6``
        module: EPROTONOSUPPORT) leaves the agent without route optimisation, said in
        the log, rather than without a daemon."""
        if self.ro is None:
            return
        try:
            self.ro.remove(base, missing_ok=True)
            self.ro.install(base)
        except KeyEngineError as exc:
            _without_route_optimization(str(exc))
            self.ro = None

    def replace_ro(self, old: RoSet | None, new: RoSet | None) -> RoSet | None:
        """Put the route-optimisation states and policies of binding ``new`` in place of
        ``old``'s. Where Linux refuses (someone flushed the states, say), the old set
        is removed and the new one installed afresh; a refusal of that too is logged, and
        the next move tries again: the daemon goes on either way."""
        if self.ro is None:
            return None
        try:
            if old is not None and new is not None:
                self.ro.update(RoSet(tuple(s for s in new.states if not s.wildcard), new.policies))
            elif old is not None:
                self.ro.remove(old, missing_ok=True)
            elif new is not None:
                self.ro.remove(new, missing_ok=True)  # left by an earlier run
                self.ro.install(new)
        except KeyEngineError as exc:
            log.warning("ro-repair", extra={"event": "ro-repair", "errno": exc.errno, "reason": str(exc)})
            try:
                for gone in (old, new):
                    if gone is not None:
                        self.ro.remove(gone, missing_ok=True)
                if new is not None:
                    self.ro.install(new)
            except KeyEngineError as again:
                log.error("ro-failed", extra={"event": "ro-failed", "errno": again.errno, "reason": str(again)})
        return new


def reqids(ipsec: IPsec) -> frozenset[int]:
    """Every reqid of one node's bundles."""
    return frozenset(ipsec.reqid(p, t) for p in Protection for t in Toward if p in ipsec.protect)


def _left(expiry: float | None, now: float) -> float | None:
    return None if expiry is None else round(max(0.0, expiry - now), 3)


class MobileNodeDaemon(_Shell):
    def __init__(
        self,
        config: MNConfig,
        engine: KeyEngine,
        mh: MobilityHeaderPort,
        clock: Callable[[], float] = time.monotonic,
        read: Callable[[str], list[IPv6Address]] = addresses,
        *,
        ro: RouteOptimization | None = None,
        reopen: Callable[[], KeyEngine] | None = None,
    ):
        super().__init__(engine, mh, clock, ro, reopen, "mn")
        self.config = config
        self.read = read
        self.agent = MobileNodeAgent(config, by_reqid=targets_by_reqid(engine))
        self.where: IPv6Address | Literal["home"] = HOME  # where the agent believes it is
        self.detached = False
        self.binding: RoSet | None = None
        reconcile(engine, policies.mn_policy_set(config, None))  # at home: the transport set
        self.install_ro_base(routeopt.mobile_node_base())

    def turn(self, timeout: float = POLL) -> None:
        now = self.clock()
        steps: list[Step] = []
        where = location(self.config, self.read, self.where)
        if (where is None) != self.detached:
            self.detached = where is None
            event = "detached" if self.detached else "attached"
            log.info(event, extra={"event": event, "interface": self.config.interface})
        if where is not None and where != self.where:
            self.where, self.moved_at = where, now
            steps += self.agent.returned_home(now) if where == HOME else self.agent.moved(IPv6Address(where), now)
        due = self.agent.timer()
        if due is not None and due <= now:
            steps += self.agent.tick(now)
        self.carry(steps)
        wait = timeout if due is None else max(0.0, min(timeout, due - self.clock()))
        received = self.receive(wait)
        if received is not None:
            to = received.destination or self.config.home_address
            self.carry(self.guarded(lambda: self.agent.received(received.data, received.source, to, self.clock())))

    def bound(self) -> int:
        return int(self.agent.registration.state in (MnState.REGISTERED, MnState.REFRESHING))

    def status(self) -> Status:
        """The binding update list: this node's home registration."""
        now, machine = self.clock(), self.agent.registration
        bound = self.bound() == 1
        found, error = self.policies()
        entry = Entry(
            str(self.config.home_address), None if machine.coa == self.config.home_address else str(machine.coa),
            str(self.config.home_agent), machine.state.value, machine.sequence,
            _left(machine.expiry, now) if bound else None, machine.key_management,
            bundles=policy_bundles(found, reqids(self.config.ipsec)),
        )  # fmt: skip
        return Status("mn", self.engine.name, self.ro is not None, (entry,), error)

    def configure(self, step: Configure) -> list[Step]:
        error, why_not, announced = self.carry_out(step)
        if not error:  # the Home Address option follows the care-of address (MIGRATE cannot move it)
            target = self.agent.target
            new = routeopt.mobile_node_binding(self.config.home_address, self.config.home_agent, target) \
                if target is not None else None  # fmt: skip
            self.binding = self.replace_ro(self.binding, new)
        return self.agent.configured(error, why_not, self.clock(), why=step.why, announced=announced)


class HomeAgentDaemon(_Shell):
    def __init__(
        self,
        config: HAConfig,
        engine: KeyEngine,
        mh: MobilityHeaderPort,
        clock: Callable[[], float] = time.monotonic,
        *,
        ro: RouteOptimization | None = None,
        reopen: Callable[[], KeyEngine] | None = None,
    ):
        super().__init__(engine, mh, clock, ro, reopen, "ha")
        self.config = config
        self.agent = HomeAgentAgent(config, by_reqid=targets_by_reqid(engine))
        self.bindings: dict[IPv6Address, RoSet] = {}
        for node in config.mobile_nodes:
            reconcile(engine, policies.ha_policy_set(config, node, None))
        self.install_ro_base(routeopt.home_agent_base())

    def turn(self, timeout: float = 0.5) -> None:
        now = self.clock()
        due = self.agent.timer()
        if due is not None and due <= now:
            self.carry(self.agent.tick(now))
        wait = timeout if due is None else max(0.0, min(timeout, due - self.clock()))
        received = self.receive(wait)
        if received is None:
            return
        self.moved_at = self.clock()
        coa = received.care_of_address or received.source
        to = received.destination or self.config.address
        self.carry(self.guarded(lambda: self.agent.received(received.data, received.source, to, coa, self.clock())))

    def bound(self) -> int:
        cache = self.agent.cache
        return sum(cache.state(node.home_address) is CacheState.BOUND for node in self.config.mobile_nodes)

    def status(self) -> Status:
        """The binding cache: every served node with an entry (bound, or moving its IPsec)."""
        now, cache = self.clock(), self.agent.cache
        entries: list[Entry] = []
        found, error = self.policies()  # (read once for every node)
        for node in self.config.mobile_nodes:
            entry = cache.entry(node.home_address)
            if entry is None:
                continue
            hoa = str(node.home_address)
            entries.append(Entry(
                hoa, None if entry.coa is None else str(entry.coa), str(self.config.address), entry.state.value,
                entry.sequence, _left(entry.expiry, now), entry.key_management, hoa not in self.unacknowledged,
                policy_bundles(found, reqids(node.ipsec)),
            ))  # fmt: skip
        return Status("ha", self.engine.name, self.ro is not None, tuple(entries), error)

    def routing_header(self, step: Send) -> IPv6Address | None:
        """A Binding Acknowledgement goes to the care-of address its Binding Update came
        from (RFC 6275 §9.5.4). With a binding there, its ro state adds the routing header;
        without one (a refusal, or no route optimisation here) the socket gives it, as
        UMIP's home agent gives it to every BA. (A refusal while the node is bound at
        another address still follows that binding's state.)"""
        if step.coa != step.dst and step.dst not in self.bindings:
            return step.coa
        return None

    def configure(self, step: Configure) -> list[Step]:
        error, why_not, announced = self.carry_out(step)
        if not error:  # the type 2 routing header follows the binding
            target = self.agent.targets.get(step.hoa)
            new = routeopt.home_agent_binding(self.config.address, step.hoa, target) if target is not None else None
            replaced = self.replace_ro(self.bindings.get(step.hoa), new)
            if replaced is None:
                self.bindings.pop(step.hoa, None)
            else:
                self.bindings[step.hoa] = replaced
        return self.agent.configured(step.hoa, error, why_not, self.clock(), why=step.why, announced=announced)
