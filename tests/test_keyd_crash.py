"""``kill -9`` keyd at random moments under load: after each restart the SAD and SPD are
exactly what was acknowledged, give or take the requests in flight, each whole.

Two client threads work on disjoint mobile nodes (their own SPIs, home addresses and
care-of addresses), adding and deleting SAs, adding policies and moving them with
MIGRATE. Each keeps a model of what keyd acknowledged. keyd is killed after a random
delay; whatever each thread was waiting for is "in flight". After the restart, each
thread's part of the state must be its acknowledged model, or that model with its
in-flight request applied entirely: a MIGRATE half applied matches neither.

keyd is also killed while it starts, in about half the rounds, before the restart that
is checked: at a random moment between its process starting and its serving, or just
after it has opened its journal (while SQLite recovers the log the last kill left, and
keyd loads and checks it). Where each kill landed, the number of
acknowledged requests checked and the losses found (which must be none) are printed.

The seed is printed; ``PFMIGRATE_CRASH_SEED`` and ``PFMIGRATE_CRASH_ROUNDS`` replay or
extend a run (1,000 rounds under ``make soak``).
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address
from pathlib import Path

import pytest

from pfmigrate.backends.keyd import open_keyd
from pfmigrate.engine import EventsLostError, KeyEngine, KeyEngineError
from pfmigrate.model import (
    ESP,
    MH,
    Dir,
    KMAddress,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    Selector,
    Template,
)
from tests import soak
from tests.keyd_harness import HA, KeydProcess, tunnel_sa

SEED = int(os.environ.get("PFMIGRATE_CRASH_SEED", "20261127"))
ROUNDS = soak.rounds("PFMIGRATE_CRASH_ROUNDS", 25, 1000)
WORKERS = 2
NODES = 4  # mobile nodes per worker
MOST_SAS = 150  # per worker: past it, it deletes (so that a long run's rounds stay as quick)
STARTUP_KILLS = 0.5  # the share of rounds with a kill while keyd starts

SAs = frozenset[tuple[int, str, str]]  # (spi, src, dst)
Policies = frozenset[tuple[str, str]]  # (home address, care-of address the template names)


@dataclass(frozen=True)
class Op:
    kind: str  # "add", "delete", "policy", "migrate"
    spi: int = 0
    node: int = 0
    coa: str = ""
    new_coa: str = ""


@dataclass
class Model:
    """What one worker believes keyd holds of its part."""

    worker: int
    sas: dict[int, tuple[str, str]] = field(default_factory=dict)
    policies: dict[int, str] = field(default_factory=dict)  # node -> care-of address
    next_spi: int = 0
    acknowledged: int = 0  # requests keyd answered

    def hoa(self, node: int) -> str:
        return ip(f"2001:db8:{self.worker + 1}:{node + 1}::1")

    def coa(self, node: int, n: int) -> str:
        return ip(f"2001:db8:c{self.worker + 1}:{node + 1}::{n}")

    def choose(self, rng: random.Random) -> Op:
        node = rng.randrange(NODES)
        if node in self.policies and rng.random() < 0.3:
            new = self.coa(node, rng.randrange(1, 50))
            if new != self.policies[node]:
                return Op("migrate", node=node, coa=self.policies[node], new_coa=new)
        if node not in self.policies:
            return Op("policy", node=node, coa=self.coa(node, 1))
        if self.sas and (rng.random() < 0.25 or len(self.sas) >= MOST_SAS):
            return Op("delete", spi=rng.choice(sorted(self.sas)))
        self.next_spi += 1
        return Op("add", spi=0x10000 * (self.worker + 1) + self.next_spi, node=node, coa=self.policies[node])

    def apply(self, op: Op) -> None:
        if op.kind == "add":
            self.sas[op.spi] = (op.coa, str(HA))
        elif op.kind == "delete":
            del self.sas[op.spi]
        elif op.kind == "policy":
            self.policies[op.node] = op.coa
        elif op.kind == "migrate":
            self.policies[op.node] = op.new_coa
            for spi, (src, dst) in list(self.sas.items()):
                if src == op.coa:
                    self.sas[spi] = (op.new_coa, dst)

    def view(self) -> tuple[SAs, Policies]:
        sas = frozenset((spi, ip(src), ip(dst)) for spi, (src, dst) in self.sas.items())
        return sas, frozenset((self.hoa(n), ip(coa)) for n, coa in self.policies.items())

    def send(self, engine: KeyEngine, op: Op) -> None:
        if op.kind == "add":
            engine.add_sa(tunnel_sa(op.spi, ip_address(op.coa), HA))
        elif op.kind == "delete":
            engine.delete_sa(HA, op.spi, ESP)
        elif op.kind == "policy":
            engine.add_policy(
                Policy(self.selector(op.node), Dir.OUT, (Template(ESP, Mode.TUNNEL, ip_address(op.coa), HA),))
            )
        else:
            bundle = MigrateBundle(ip_address(op.coa), HA, ip_address(op.new_coa), HA)
            kma = KMAddress(ip_address(op.new_coa), HA)
            engine.migrate(MigrateRequest(self.selector(op.node), Dir.OUT, (bundle,), kma))

    def selector(self, node: int) -> Selector:
        return Selector.host(self.hoa(node), HA, MH)


def ip(text: str) -> str:
    return str(IPv6Address(text))


def state_of(engine: KeyEngine, worker: int) -> tuple[SAs, Policies]:
    """The part of keyd's state that belongs to ``worker``."""
    base = 0x10000 * (worker + 1)
    sas = frozenset((sa.spi, str(sa.src), str(sa.dst)) for sa in engine.dump_sas() if base <= sa.spi < base + 0x10000)
    policies = frozenset(
        (str(p.selector.src.network_address), str(p.templates[0].src))
        for p in engine.dump_policies()
        if p.selector.src.network_address.packed[4:6] == (worker + 1).to_bytes(2, "big") and p.templates
    )
    return sas, policies


def work(path: Path, model: Model, rng: random.Random, stop: threading.Event, inflight: list[Op | None]) -> None:
    """Send requests until keyd dies; ``inflight[0]`` is the one that got no answer."""
    try:
        engine = open_keyd(path, timeout=3.0)
    except OSError:
        return
    try:
        while not stop.is_set():
            op = model.choose(rng)
            inflight[0] = op
            model.send(engine, op)
            model.apply(op)
            model.acknowledged += 1
            inflight[0] = None
    except (KeyEngineError, OSError, EventsLostError):
        pass  # keyd is gone: the request in flight may or may not have been applied
    finally:
        with contextlib.suppress(OSError):
            engine.close()


def journal_open(pid: int, journal: Path) -> bool:
    """Whether process ``pid`` has ``journal`` open."""
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in descriptors:
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(journal):
                return True
    return False


def serving(pid: int) -> bool:
    """Whether process ``pid`` waits in its event loop (``epoll_wait``), as keyd does once
    it has started."""
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            return "epoll" in wchan.read()
    except OSError:
        return False


def kill_while_starting(keyd: KeydProcess, rng: random.Random, startup: float) -> str:
    """Start keyd and kill it before it serves: at a random moment of what a start takes
    (``startup`` seconds), or within 15 ms of its opening the journal (which it loads in
    about 10). Where it was just before the kill: "before its journal", "in its journal"
    (open, keyd not yet serving) or "serving" (it had started after all)."""
    process = keyd.launch()
    journal = Path(os.path.realpath(keyd.directory / "keyd.db"))
    if rng.random() < 0.5:
        time.sleep(rng.uniform(0.0, startup))
    else:
        deadline = time.monotonic() + 20
        while not journal_open(process.pid, journal) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0002)
        time.sleep(rng.uniform(0.0, 0.015))
    assert process.poll() is None, f"keyd stopped by itself while starting: {(keyd.directory / 'keyd.log').read_text()}"
    where = "in its journal" if journal_open(process.pid, journal) else "before its journal"
    if serving(process.pid):
        where = "serving"
    keyd.kill()
    return where


@pytest.mark.soak
def test_kill_9_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    print(f"crash test seed {SEED}, {ROUNDS} rounds (PFMIGRATE_CRASH_SEED to replay)")
    rng = random.Random(SEED)
    keyd = KeydProcess(tmp_path)
    models = [Model(w) for w in range(WORKERS)]
    kills: Counter[str] = Counter()
    losses: list[str] = []
    began = first = time.monotonic()
    done = 0
    keyd.start()
    startup = time.monotonic() - began
    try:
        for round_ in range(ROUNDS):
            stop = threading.Event()
            inflight: list[list[Op | None]] = [[None] for _ in range(WORKERS)]
            threads = [
                threading.Thread(
                    target=work, args=(keyd.socket, m, random.Random(rng.random()), stop, inflight[m.worker])
                )
                for m in models
            ]
            for thread in threads:
                thread.start()
            time.sleep(rng.uniform(0.005, 0.2))
            keyd.kill()  # the moment: whatever keyd was doing
            kills["under load"] += 1
            stop.set()
            for thread in threads:
                thread.join(10)
            if rng.random() < STARTUP_KILLS:
                kills[kill_while_starting(keyd, rng, startup)] += 1
            began = time.monotonic()
            keyd.start()
            startup = time.monotonic() - began
            reader = open_keyd(keyd.socket)
            for model, [pending] in zip(models, inflight, strict=True):
                found = state_of(reader, model.worker)
                if found == model.view():
                    continue
                if pending is None:
                    losses.append(f"round {round_}: worker {model.worker} lost acknowledged changes")
                    break
                model.apply(pending)
                if found != model.view():
                    losses.append(
                        f"round {round_}: worker {model.worker}'s {pending} half applied: keyd has "
                        f"{sorted(found[0] - model.view()[0])} {sorted(found[1] - model.view()[1])}, the model "
                        f"{sorted(model.view()[0] - found[0])} {sorted(model.view()[1] - found[1])}"
                    )
                    break
            reader.close()
            done += 1
            if losses:
                break
    finally:
        keyd.stop()
    starting = kills["before its journal"] + kills["in its journal"]
    print(
        f"crash test: {done} rounds in {time.monotonic() - first:.0f} s; kills under load {kills['under load']}, "
        f"while starting {starting} ({kills['before its journal']} before it opened its journal, "
        f"{kills['in its journal']} with it open, not yet serving; {kills['serving']} more came once it served); "
        f"acknowledged requests checked {sum(m.acknowledged for m in models)}; "
        f"SAs and policies at the end {sum(len(m.sas) + len(m.policies) for m in models)}; losses found {len(losses)}"
    )
    assert not losses, losses[0]
    assert sum(len(m.sas) for m in models) > 0
