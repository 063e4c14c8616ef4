"""The seed's mobile node as model objects, for the tests of every backend: its home
address, home agent and care-of addresses, tunnel SAs, MH policies and the MIGRATEs of
its move from the old care-of address to the new one."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_address

from pfmigrate.engine import KeyEngine
from pfmigrate.model import (
    ESP,
    MH,
    Algorithm,
    Dir,
    IPAddress,
    KMAddress,
    Lifetime,
    MigrateBundle,
    MigrateRequest,
    Mode,
    Policy,
    SecurityAssociation,
    Selector,
    Template,
)
from pfmigrate.seed import HOME_ADDRESS, HOME_AGENT, NEW_COA, OLD_COA

HOA, HA, OLD, NEW = (ip_address(a) for a in (HOME_ADDRESS, HOME_AGENT, OLD_COA, NEW_COA))
AUTH = Algorithm("hmac(sha256)", bytes(range(32)), 96)  # Linux's truncation for SHA-256 through PF_KEY
ENC = Algorithm("cbc(aes)", bytes(range(100, 116)))
LIFETIME = Lifetime(soft_add=3000, hard_add=3600)
OUT_SELECTOR = Selector.host(HOME_ADDRESS, HOME_AGENT, MH)
IN_SELECTOR = Selector.host(HOME_AGENT, HOME_ADDRESS, MH)


def tunnel_sa(
    spi: int, src: IPAddress, dst: IPAddress, reqid: int = 0, lifetime: Lifetime = LIFETIME
) -> SecurityAssociation:
    return SecurityAssociation(src, dst, spi, ESP, Mode.TUNNEL, reqid, AUTH, ENC, replay_window=32, lifetime=lifetime)


def mn_policies(coa: IPAddress, reqid: int = 0) -> list[Policy]:
    return [
        Policy(OUT_SELECTOR, Dir.OUT, (Template(ESP, Mode.TUNNEL, coa, HA, reqid),)),
        Policy(IN_SELECTOR, Dir.IN, (Template(ESP, Mode.TUNNEL, HA, coa, reqid),)),
    ]


def mn_migrates() -> list[MigrateRequest]:
    kma = KMAddress(NEW, HA)
    return [
        MigrateRequest(OUT_SELECTOR, Dir.OUT, (MigrateBundle(OLD, HA, NEW, HA),), kma),
        MigrateRequest(IN_SELECTOR, Dir.IN, (MigrateBundle(HA, OLD, HA, NEW),), kma),
    ]


def key(policy: Policy) -> tuple[str, str]:
    return (policy.dir.value, str(policy.selector))


def without_index(policies: Iterable[Policy]) -> list[Policy]:
    """Policies as configured: the engine's index left out, in a stable order."""
    return sorted((Policy(p.selector, p.dir, p.templates, p.action, p.priority) for p in policies), key=key)


def play_seed_move(engine: KeyEngine) -> None:
    """The tunnel SAs and MH policies at the old care-of address, then the MIGRATEs to
    the new one; each added policy comes back as configured, with an index."""
    engine.add_sa(tunnel_sa(0x1000, OLD, HA))
    engine.add_sa(tunnel_sa(0x1001, HA, OLD))
    for policy in mn_policies(OLD):
        added = engine.add_policy(policy)
        assert added.index != 0
        assert without_index([added]) == [policy]
    for request in mn_migrates():
        engine.migrate(request)
